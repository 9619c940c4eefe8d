import { createHash } from "node:crypto"
import { readFileSync } from "node:fs"

// The Lua scripts: one file per operation in lua/, run together with the shared files of
// lua/lib/. Defining functions costs Redis time on every call (a script's chunk runs
// whole each time), so an operation on one policy kind is joined with that kind's kernel
// only: "limit.tb" is common + token-bucket + kernels + limit. The operations that mix
// kinds in one call (limit-all, refund) get every kernel.

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

/** Script: the source sent to Redis and its SHA1, the name EVALSHA knows it by. */
export interface Script {
  readonly name: string
  readonly source: string
  readonly sha: string
}

let registry: ReadonlyMap<string, Script> | undefined

function read(path: string): string {
  return readFileSync(new URL(`./lua/${path}.lua`, import.meta.url), "utf8")
}

function build(): ReadonlyMap<string, Script> {
  const files = new Map<string, string>()
  const file = (path: string) => {
    let text = files.get(path)
    if (text === undefined) {
      text = read(path)
      files.set(path, text)
    }
    return text
  }
  const script = (name: string, parts: string[]): [string, Script] => {
    const source = parts.map(file).join("\n")
    const sha = createHash("sha1").update(source).digest("hex")
    return [name, Object.freeze({ name, source, sha })]
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
