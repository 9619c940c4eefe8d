import { createHash } from "node:crypto"
import { readFileSync } from "node:fs"

// The Lua code: one file per operation in lua/, run with the shared files of lua/lib/, in
// two forms. On Redis 7 and later, one function library holds every kernel and a
// function per operation (see library): it is loaded once per server. As scripts (older
// servers), a script's chunk runs whole on every call, defining its functions again, so
// an operation on one policy kind is joined with that kind's kernel only: "limit.tb" is
// common + token-bucket + kernels + limit; the operations that mix kinds in one call
// (limit-all, refund) get every kernel. A kernel file runs nothing at load but
// definitions (a library may not call string or struct functions while it loads).

/** TAG_FILES: the kernel file of each policy tag. */
const TAG_FILES = {
  tb: "token-bucket",
  fw: "fixed-window",
  swc: "sliding-window-counter",
  swl: "sliding-window-log",
  cc: "concurrency",
} as const

type Tag = keyof typeof TAG_FILES

/** OPERATIONS: each operation file and the tags it runs for ("all": one script, every kernel). */
const OPERATIONS: Record<string, readonly Tag[] | "all"> = {
  limit: ["tb", "fw", "swc", "swl", "cc"],
  peek: ["tb", "fw", "swc", "swl", "cc"],
  adjust: ["tb", "fw", "swc", "swl"],
  reserve: ["tb"],
  cancel: ["tb"],
  release: ["cc"],
  "limit-all": "all",
  refund: "all",
}

/**
 * Script: the source sent to Redis and its SHA1, the name EVALSHA knows it by, and `fn`,
 * the name FCALL knows the same operation by in the function library (see library).
 */
export interface Script {
  readonly name: string
  readonly source: string
  readonly sha: string
  readonly fn: string
}

/**
 * Library: every operation as one Redis function library (Redis 7): loaded once per
 * server (FUNCTION LOAD), its kernels are defined once there, where a script defines
 * them again on every call (some microseconds of Redis time per call).
 */
export interface Library {
  readonly name: string
  readonly source: string
}

let registry: ReadonlyMap<string, Script> | undefined
let lib: Library | undefined

/** files: the Lua files read so far, by path. */
const files = new Map<string, string>()

function read(path: string): string {
  let text = files.get(path)
  if (text === undefined) {
    text = readFileSync(new URL(`./lua/${path}.lua`, import.meta.url), "utf8")
    files.set(path, text)
  }
  return text
}

/** functionName: the library function of an operation ("limit-all": `<library>_limit_all`). */
function functionName(library: string, op: string): string {
  return `${library}_${op.replace("-", "_")}`
}

function build(): ReadonlyMap<string, Script> {
  const libName = library().name
  const script = (name: string, parts: string[]): [string, Script] => {
    const source = parts.map(read).join("\n")
    const sha = createHash("sha1").update(source).digest("hex")
    const fn = functionName(libName, name.split(".")[0])
    return [name, Object.freeze({ name, source, sha, fn })]
  }
  const all = Object.values(TAG_FILES).map((f) => `lib/${f}`)
  const entries: [string, Script][] = []
  for (const [op, tags] of Object.entries(OPERATIONS)) {
    if (tags === "all") {
      entries.push(script(op, ["lib/common", ...all, "lib/kernels", op]))
    } else {
      for (const tag of tags) {
        entries.push(
          script(`${op}.${tag}`, ["lib/common", `lib/${TAG_FILES[tag]}`, "lib/kernels", op]),
        )
      }
    }
  }
  return new Map(entries)
}

/**
 * scripts is the registry: script name -> source and SHA1. The files are read on first
 * use (a process that never opens a RedisStore never reads them).
 */
export function scripts(): ReadonlyMap<string, Script> {
  registry ??= build()
  return registry
}

/**
 * library: the function library, named after a hash of its code (a store of another
 * version loads its own beside it). The files of every kernel, then one function per
 * operation whose body is the operation's file (KEYS and ARGV its arguments).
 */
export function library(): Library {
  if (lib !== undefined) return lib
  const kernels = ["lib/common", ...Object.values(TAG_FILES).map((f) => `lib/${f}`), "lib/kernels"]
  const body = kernels.map(read).join("\n")
  const ops = Object.keys(OPERATIONS).map((op) => [op, read(op)] as const)
  const hash = createHash("sha1").update(body)
  for (const [, text] of ops) hash.update(text)
  const name = `tollgate_${hash.digest("hex").slice(0, 16)}`
  const functions = ops.map(
    ([op, text]) =>
      `redis.register_function("${functionName(name, op)}", function(KEYS, ARGV)\n${text}\nend)`,
  )
  lib = Object.freeze({ name, source: [`#!lua name=${name}`, body, ...functions].join("\n") })
  return lib
}

/** script looks one script up by name ("limit.tb", "limit-all", ...). */
export function script(name: string): Script {
  const s = scripts().get(name)
  if (s === undefined) throw new TypeError(`no Lua script named ${name}`)
  return s
}

/** The calls a store makes on its client: what ioredis `Redis` and `Cluster` both offer. */
export interface ScriptClient {
  callBuffer(command: string, args: Arg[]): Promise<unknown>
}

/** Arg: one argument of a command. */
export type Arg = string | number | Buffer
