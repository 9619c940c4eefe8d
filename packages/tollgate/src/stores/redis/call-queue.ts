import { randomBytes } from "node:crypto"
import { StoreError } from "../../errors.js"
import { encodePart, slotTag } from "./key-layout.js"
import { type Arg, library, type Script, type ScriptClient } from "./scripts.js"

/** Item: one operation's share of a script call, and where its reply goes. */
export interface Item {
  keys: string[]
  args: (string | number)[]
  /** now: the caller's time (epoch ms), for headers that depend on it (calendar windows). */
  now: number
  /** key: the user key, for the reader. */
  key: string
  /**
   * read turns the item's reply into its answer: for a batched call, the `length` bytes of
   * `reply` (one Buffer for the whole call) from `at`; for a `whole` call, the reply itself.
   */
  read(reply: unknown, at: number, length: number, key: string): unknown
  resolve(answer: unknown): void
  reject(error: unknown): void
}

/**
 * CallKind: what a call runs. Items of one kind that arrive in the same tick for the same
 * slot travel in one call; a namespace makes new kinds when its policy changes, so items
 * queued before a change keep the policy they were made under.
 */
export interface CallKind {
  /** script: the Lua script, or "del" for a plain DEL of the items' keys. */
  readonly script: Script | "del"
  /** guarded: the call writes, so a re-sent copy must not run again. */
  readonly guarded: boolean
  /**
   * whole: the reply goes whole to the call's one item. Otherwise it is one string of
   * every item's reply in turn, each prefixed with its byte length (16 bits).
   */
  readonly whole: boolean
  /** header: the arguments that precede the items (the policy). */
  header(items: readonly Item[]): readonly (string | number)[]
  /**
   * tail: an item joins an open call only while that call is the newest on its lane. For
   * calls whose items span several namespaces (limit-all), which must keep their place
   * among those namespaces' own calls.
   */
  readonly tail?: boolean
}

interface Call {
  kind: CallKind
  items: Item[]
}

/** Lane: the calls for one Cluster slot (or the whole server), sent in order. */
interface Lane {
  /** slot: the Cluster slot, or -1 on a single server. */
  readonly slot: number
  /** tag: a hash tag of the lane's slot, for the replay guard's keys. */
  readonly tag: string
  /** seq: calls guarded so far; each gets its own bit in the guard bitmaps. */
  seq: number
  calls: Call[]
  /** open: per owner (a namespace), the call its next item of the same kind joins. */
  readonly open: Map<object, Call>
  /** queued: the lane is in the list the end-of-tick flush goes through. */
  queued: boolean
  /** outstanding: calls sent on this lane and not answered yet. */
  outstanding: number
}

/** PipelineClient: the pipelines of ioredis `Redis` and `Cluster`, as the queue uses them. */
interface PipelineClient {
  pipeline?(): {
    callBuffer(command: string, args: Arg[]): unknown
    exec(): Promise<[error: Error | null, value: unknown][] | null>
  }
  /** slots: on a Cluster, the nodes serving each slot. */
  readonly slots?: readonly (readonly string[] | undefined)[]
  /** nodes: on a Cluster, its connections to the nodes of a role. */
  nodes?(role: "master"): readonly NodeClient[]
}

/** NodeClient: one connection of a Cluster, to one node. */
interface NodeClient extends ScriptClient {
  readonly options: { readonly host?: string; readonly port?: number }
}

export interface CallQueueOptions {
  client: ScriptClient & PipelineClient & { del(keys: string[]): Promise<unknown> }
  time: "server" | "client"
  maxBatch: number
  replayWindowMs: number
  guardPrefix: string
  /** functions: run the operations as a Redis function library where the server has them. */
  functions: boolean
}

/** GUARD_BITS: calls per guard bitmap (8 KiB); later calls go to the next bitmap. */
const GUARD_BITS = 65536

const REPLAYED = "TOLLGATE_REPLAYED"
/**
 * MAX_OUTSTANDING: calls a lane has at Redis before its next waits for a reply. Two keep
 * both sides busy (Redis runs one while this process reads the other's reply and makes
 * the next) and let the items that arrive meanwhile gather into few calls.
 */
const MAX_OUTSTANDING = 2
/** SPLIT_AT: an idle lane's only call goes as two from this many items on (see flush). */
const SPLIT_AT = 8
/** PIPELINE_MIN: calls to one server in one flush that go as a pipeline (fewer: one by one). */
const PIPELINE_MIN = 4

/**
 * CallQueue batches store operations. An operation becomes an Item queued on its slot's
 * lane (one per Cluster slot, one for a single server). Items of one owner and kind that
 * arrive in the same tick, or while the lane has MAX_OUTSTANDING calls at Redis, travel
 * together: at the end of the tick (or when maxBatch is reached) they become one FCALL
 * (or EVALSHA) that decides them all, in arrival order, inside one atomic script, so
 * decisions keep the exact semantics of one call each while sharing one round trip. The calls of one
 * flush that go to the same server travel in one pipeline (one write).
 *
 * Each writing call carries a replay guard: its own bit in a bitmap kept in Redis for
 * `replayWindowMs`. A client that lost the reply and sent the same call again (ioredis
 * re-sends unfulfilled commands after a reconnect, a Cluster client after a failover)
 * finds the bit set: the copy does nothing and its items fail with StoreError, instead of
 * counting twice.
 */
export class CallQueue {
  private readonly options: CallQueueOptions
  private readonly lanes = new Map<number, Lane>()
  private dirty: Lane[] = []
  private scheduled = false
  private readonly guardBase: string
  private readonly timeArg: string
  /** servers: what this client's servers have been sent (shared by stores on one client). */
  private readonly servers: Servers

  constructor(options: CallQueueOptions) {
    this.options = options
    this.guardBase = `${encodePart(options.guardPrefix)}:call:`
    this.timeArg = options.time === "server" ? "s" : "c"
    let servers = SERVERS.get(options.client)
    if (servers === undefined) {
      servers = { loaded: new Map(), libraryOn: new Set(), functions: "try" }
      SERVERS.set(options.client, servers)
    }
    this.servers = servers
  }

  /** id: this store's random identity (lease ids and guard keys start with it). */
  readonly id = randomBytes(12).toString("base64url")

  /**
   * push queues an item for `slot` (-1 on a single server). It goes at the end of the
   * tick, with the items of the same owner and kind queued meanwhile; a call that
   * reaches maxBatch goes at once (with everything queued before it on its lane), so
   * Redis starts on it while later items are still being made.
   */
  push(slot: number, owner: object, kind: CallKind, item: Item): void {
    const lane = this.lane(slot)
    let call = lane.open.get(owner)
    if (
      call === undefined ||
      call.kind !== kind ||
      (kind.tail === true && lane.calls[lane.calls.length - 1] !== call)
    ) {
      call = { kind, items: [] }
      // A call spanning namespaces (limit-all) keeps its place: what comes after it on
      // this lane must not join calls made before it.
      if (kind.tail === true) lane.open.clear()
      if (!lane.queued) {
        lane.queued = true
        this.dirty.push(lane)
      }
      lane.calls.push(call)
      lane.open.set(owner, call)
    }
    call.items.push(item)
    if (call.items.length >= this.options.maxBatch) this.sendLane(lane)
    else if (!this.scheduled) {
      this.scheduled = true
      process.nextTick(this.flush)
    }
  }

  /** close makes the next item of `owner` start a new call (it must follow what came before). */
  close(owner: object): void {
    for (const lane of this.dirty) lane.open.delete(owner)
  }

  /**
   * flush sends the queued calls of every lane with fewer than MAX_OUTSTANDING calls
   * outstanding; the others keep theirs until a reply comes back (and collect more items
   * meanwhile). It runs at the end of a tick (process.nextTick: once the promise callbacks
   * of the tick have run, so the requests that a reply sets off travel together). An
   * idle lane's only call is split in two, so that Redis decides the second half while
   * this process reads the first's reply and makes the next call: from then on two calls
   * take turns, and neither side waits for the other.
   */
  readonly flush = (): void => {
    this.scheduled = false
    const lanes = this.dirty
    this.dirty = []
    const ready: Ready[] = []
    for (const lane of lanes) {
      if (lane.calls.length === 0) {
        lane.queued = false
        continue
      }
      if (lane.outstanding >= MAX_OUTSTANDING) {
        this.dirty.push(lane)
        continue
      }
      lane.queued = false
      const calls = lane.calls
      if (lane.outstanding === 0 && calls.length === 1) {
        const { kind, items } = calls[0]
        if (!kind.whole && items.length >= SPLIT_AT) {
          const half = Math.ceil(items.length / 2)
          calls[0] = { kind, items: items.slice(0, half) }
          calls.push({ kind, items: items.slice(half) })
        }
      }
      for (const call of calls) ready.push({ lane, call })
      lane.calls = []
      lane.open.clear()
    }
    this.sendAll(ready)
  }

  /** sendLane sends a lane's queued calls, in order. */
  private sendLane(lane: Lane): void {
    const calls = lane.calls
    if (calls.length === 0) return
    lane.calls = []
    lane.open.clear()
    const ready: Ready[] = []
    for (const call of calls) ready.push({ lane, call })
    this.sendAll(ready)
  }

  private lane(slot: number): Lane {
    let lane = this.lanes.get(slot)
    if (lane === undefined) {
      lane = {
        slot,
        tag: slot < 0 ? "-" : slotTag(slot),
        seq: 0,
        calls: [],
        open: new Map(),
        queued: false,
        outstanding: 0,
      }
      this.lanes.set(slot, lane)
    }
    return lane
  }

  /**
   * sendAll sends calls, in order per lane. PIPELINE_MIN or more calls for one server (on
   * a Cluster: for the same nodes) go in one pipeline: one write instead of one each,
   * which outweighs what a pipeline costs from four calls on.
   */
  private sendAll(ready: Ready[]): void {
    const client = this.options.client
    // A DEL (reset) goes one by one, with the calls around it, to keep their order.
    if (
      ready.length < PIPELINE_MIN ||
      typeof client.pipeline !== "function" ||
      ready.some((r) => r.call.kind.script === "del")
    ) {
      for (const r of ready) this.send(r.lane, r.call)
      return
    }
    const slots = client.slots
    const groups = new Map<string, Ready[]>()
    for (const r of ready) {
      const node = r.lane.slot < 0 || slots === undefined ? "" : (slots[r.lane.slot]?.join() ?? "")
      const group = groups.get(node)
      if (group === undefined) groups.set(node, [r])
      else group.push(r)
    }
    for (const group of groups.values()) {
      if (group.length < PIPELINE_MIN) {
        for (const r of group) this.send(r.lane, r.call)
        continue
      }
      const pipeline = client.pipeline()
      const argvs: Arg[][] = []
      for (const { lane, call } of group) {
        const argv = this.argv(lane, call)
        argvs.push(argv)
        pipeline.callBuffer(this.prepare(lane, call.kind.script as Script, argv), argv)
        lane.outstanding++
      }
      pipeline.exec().then(
        (results) => {
          for (let i = 0; i < group.length; i++) {
            const { lane, call } = group[i]
            const [error, value] = results?.[i] ?? [new Error("no reply in the pipeline"), null]
            if (error === null || error === undefined) {
              this.answer(lane, call, value)
            } else if (notRun(error)) {
              // Nothing ran (the server lost its scripts, the slot moved): send it alone.
              this.recover(error, call.kind.script as Script)
              lane.outstanding--
              this.run(lane, call, argvs[i])
            } else this.fail(lane, call, error)
          }
        },
        () => {
          // The pipeline was refused before it was sent (slots moved between nodes):
          // send each call alone. A call that did run refuses its copy (replay guard).
          for (let i = 0; i < group.length; i++) {
            const { lane, call } = group[i]
            lane.outstanding--
            this.run(lane, call, argvs[i])
          }
        },
      )
    }
  }

  /**
   * argv: a script call's arguments after the script's name (argv[0], left empty).
   * KEYS: the guard bitmap, then the items' keys. ARGV: one string packing the header
   * (time mode, guard bit or -1, guard TTL), the kind's header (the policy) and the
   * items' arguments (see pack).
   */
  private argv(lane: Lane, call: Call): Arg[] {
    const { kind, items } = call
    let numKeys = 1
    for (const item of items) numKeys += item.keys.length
    let bit = -1
    let guard = `${this.guardBase}{${lane.tag}}`
    if (kind.guarded) {
      const seq = lane.seq++
      bit = seq % GUARD_BITS
      guard = `${guard}:${this.id}:${Math.floor(seq / GUARD_BITS)}`
    }
    const argv: Arg[] = ["", numKeys, guard]
    for (const item of items) for (const k of item.keys) argv.push(k)
    argv.push(pack([this.timeArg, bit, this.options.replayWindowMs], kind.header(items), items))
    return argv
  }

  private send(lane: Lane, call: Call): void {
    const { kind, items } = call
    if (kind.script === "del") {
      const keys: string[] = []
      for (const item of items) for (const k of item.keys) keys.push(k)
      this.track(lane, call, this.options.client.del(keys))
    } else this.run(lane, call, this.argv(lane, call))
  }

  /** node: the server a lane's calls go to ("" on a single server), as `loaded` keys it. */
  private node(lane: Lane): string {
    const slots = this.options.client.slots
    return lane.slot < 0 || slots === undefined ? "" : (slots[lane.slot]?.join() ?? "")
  }

  /**
   * prepare puts what runs the script into argv[0] and returns the command: FCALL of its
   * function, once the library was sent to the lane's server (sent now, ahead of this
   * call on the same connection, the first time); else its SHA1, or its source the first
   * time this server sees it.
   */
  private prepare(lane: Lane, script: Script, argv: Arg[]): "eval" | "evalsha" | "fcall" {
    const node = this.node(lane)
    const servers = this.servers
    if (
      this.options.functions &&
      servers.functions !== "no" &&
      (servers.libraryOn.has(node) || this.loadLibrary(node))
    ) {
      argv[0] = script.fn
      return "fcall"
    }
    let scripts = servers.loaded.get(node)
    if (scripts === undefined) {
      scripts = new Set()
      servers.loaded.set(node, scripts)
    }
    if (scripts.has(script)) {
      argv[0] = script.sha
      return "evalsha"
    }
    scripts.add(script)
    argv[0] = script.source
    return "eval"
  }

  /**
   * loadLibrary sends FUNCTION LOAD to a server, on the connection its calls
   * take; false when it cannot be sent that way (a Cluster whose node is not known yet):
   * the call then goes as a script.
   */
  private loadLibrary(node: string): boolean {
    const client = this.options.client
    let target: ScriptClient = client
    if (node !== "") {
      const address = node.split(",")[0]
      const found = client
        .nodes?.("master")
        .find((n) => `${n.options.host}:${n.options.port}` === address)
      if (found === undefined) return false
      target = found
    }
    const servers = this.servers
    servers.libraryOn.add(node)
    const { source } = library()
    target.callBuffer("function", ["LOAD", "REPLACE", source]).then(
      () => {
        if (servers.functions === "try") servers.functions = "yes"
      },
      () => {
        servers.libraryOn.delete(node)
        // A server without functions (before Redis 7), a user not allowed to load them,
        // or a library the server refuses: scripts from now on, unless functions already
        // worked here (then the next call loads it again). The FCALL sent behind it
        // fails without running and is sent again (recover).
        if (servers.functions === "try") servers.functions = "no"
      },
    )
    return true
  }

  /**
   * run sends one script call. A reply that says nothing ran (the server restarted,
   * failed over or had its scripts or functions flushed; a server without functions)
   * sends it again, as the answer requires; the calls sent behind it meanwhile have run
   * first, so around such an event calls may be decided out of their order (each still
   * atomic, none twice).
   */
  private run(lane: Lane, call: Call, argv: Arg[]): void {
    const script = call.kind.script as Script
    const client = this.options.client
    const reply = client.callBuffer(this.prepare(lane, script, argv), argv).catch((error) => {
      if (!reloads(error)) throw error
      this.recover(error, script)
      return client.callBuffer(this.prepare(lane, script, argv), argv)
    })
    this.track(lane, call, reply)
  }

  /** recover forgets what a reply says the server lacks: the script, the library, functions. */
  private recover(error: unknown, script: Script): void {
    const message = error instanceof Error ? error.message : ""
    const servers = this.servers
    if (message.startsWith("NOSCRIPT")) {
      for (const scripts of servers.loaded.values()) scripts.delete(script)
    } else if (message.startsWith("ERR Function not found")) {
      servers.libraryOn.clear()
    } else if (/\bfcall\b/i.test(message)) {
      // Not known, or not allowed to this user: scripts from now on.
      servers.functions = "no"
      servers.libraryOn.clear()
    }
  }

  private track(lane: Lane, call: Call, reply: Promise<unknown>): void {
    lane.outstanding++
    reply.then(
      (value) => this.answer(lane, call, value),
      (error: unknown) => this.fail(lane, call, error),
    )
  }

  /** answer hands a call's reply to its items. */
  private answer(lane: Lane, call: Call, value: unknown): void {
    this.returned(lane)
    const { kind, items } = call
    if (kind.whole || kind.script === "del") {
      for (const item of items) settle(item, value, 0, 0)
      return
    }
    const reply = value as Buffer
    let at = 0
    for (const item of items) {
      const length = reply.readUInt16LE(at)
      settle(item, reply, at + 2, length)
      at += 2 + length
    }
  }

  private fail(lane: Lane, call: Call, error: unknown): void {
    this.returned(lane)
    const failure = storeError(error)
    for (const item of call.items) item.reject(failure)
  }

  /** returned: a call of `lane` came back; calls it held back may go now. */
  private returned(lane: Lane): void {
    lane.outstanding--
    if (lane.queued && lane.calls.length > 0 && !this.scheduled) {
      this.scheduled = true
      process.nextTick(this.flush)
    }
  }
}

/**
 * Servers: what the servers behind one client have been sent, for every store on that
 * client (a process that makes a store per limiter loads the library once per server).
 */
interface Servers {
  /**
   * loaded: per server (on a Cluster: the nodes of a slot), the scripts sent to it. A
   * script goes in full (EVAL, which also caches it there) the first time, by its SHA1
   * after that. Loading first keeps calls in order: were the first call a NOSCRIPT
   * EVALSHA sent again later, the calls behind it on the lane would run before it.
   */
  readonly loaded: Map<string, Set<Script>>
  /** libraryOn: the servers (as `loaded`) the function library was sent to. */
  readonly libraryOn: Set<string>
  /**
   * functions: whether the servers run the function library (Redis 7 and later): "try"
   * until the first FUNCTION LOAD answers, "no" for older servers (or a user not allowed
   * to load or call functions). A function library defines its kernels once per server,
   * where a script defines them again on every call.
   */
  functions: "try" | "yes" | "no"
}

const SERVERS = new WeakMap<object, Servers>()

/** Ready: a call about to be sent, and its lane. */
interface Ready {
  lane: Lane
  call: Call
}

/** notRun: errors that Redis replies before running a command, so sending it again is safe. */
function notRun(error: unknown): boolean {
  const message = error instanceof Error ? error.message : ""
  return /^(NOSCRIPT|MOVED|ASK|TRYAGAIN|CLUSTERDOWN)\b/.test(message) || reloads(error)
}

/**
 * reloads: the server lacks what the call named (a script, the function library, or
 * functions at all), so nothing ran and the call can go again once that is sent.
 */
function reloads(error: unknown): boolean {
  const message = error instanceof Error ? error.message : ""
  return /^(NOSCRIPT|ERR Function not found|ERR unknown command .?fcall|NOPERM.*\bfcall\b)/i.test(
    message,
  )
}

function settle(item: Item, reply: unknown, at: number, length: number): void {
  let answer: unknown
  try {
    answer = item.read(reply, at, length, item.key)
  } catch (error) {
    item.reject(error)
    return
  }
  item.resolve(answer)
}

/**
 * pack writes a call's arguments into one buffer, the scripts' single ARGV: numbers as
 * little-endian doubles (8 bytes, exact), strings as their UTF-8 byte length (16 bits)
 * and bytes. One binary argument costs the client and Redis less than many small ones.
 */
function pack(
  header: readonly (string | number)[],
  policy: readonly (string | number)[],
  items: readonly Item[],
): Buffer {
  let size = measure(header) + measure(policy)
  for (const item of items) size += measure(item.args)
  const out = Buffer.allocUnsafe(size)
  let at = write(out, 0, header)
  at = write(out, at, policy)
  for (const item of items) at = write(out, at, item.args)
  return out
}

/** measure: the bytes `args` take packed. */
function measure(args: readonly (string | number)[]): number {
  let size = 0
  for (const a of args) {
    if (typeof a === "number") size += 8
    else size += a.length === 0 ? 2 : 2 + Buffer.byteLength(a)
  }
  return size
}

/** write packs `args` into `out` from `at`; it returns the position after them. */
function write(out: Buffer, at: number, args: readonly (string | number)[]): number {
  for (const a of args) {
    if (typeof a === "number") at = out.writeDoubleLE(a, at)
    else if (a.length === 0) {
      out[at] = 0
      out[at + 1] = 0
      at += 2
    } else {
      const n = out.write(a, at + 2)
      out.writeUInt16LE(n, at)
      at += 2 + n
    }
  }
  return at
}

function storeError(error: unknown): StoreError {
  const message = error instanceof Error ? error.message : String(error)
  if (message.startsWith(REPLAYED)) {
    return new StoreError(
      "redis: the connection dropped after this call was sent and the client sent it again; it ran once, but its decisions were lost",
      { cause: error },
    )
  }
  return new StoreError(`redis: ${message}`, { cause: error })
}
