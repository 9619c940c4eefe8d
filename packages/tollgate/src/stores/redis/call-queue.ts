import { randomBytes } from "node:crypto"
import { StoreError } from "../../errors.js"
import { encodePart, slotTag } from "./key-layout.js"
import { type Arg, run, type Script, type ScriptClient } from "./scripts.js"

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
}

interface Call {
  kind: CallKind
  items: Item[]
}

/** Lane: the calls for one Cluster slot (or the whole server), sent in order. */
interface Lane {
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

export interface CallQueueOptions {
  client: ScriptClient & { del(keys: string[]): Promise<unknown> }
  time: "server" | "client"
  maxBatch: number
  replayWindowMs: number
  guardPrefix: string
}

/** GUARD_BITS: calls per guard bitmap (8 KiB); later calls go to the next bitmap. */
const GUARD_BITS = 65536

const REPLAYED = "TOLLGATE_REPLAYED"

/**
 * CallQueue batches store operations. An operation becomes an Item queued on its slot's
 * lane (one per Cluster slot, one for a single server). Items of one owner and kind that
 * arrive while the lane waits on Redis travel together: at the end of the tick (or when
 * maxBatch is reached) they become one EVALSHA that decides them all, in arrival order,
 * inside one atomic script, so decisions keep the exact semantics of one call each while
 * sharing one round trip. An item for an idle lane goes at once: no round trip to share.
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

  constructor(options: CallQueueOptions) {
    this.options = options
    this.guardBase = `${encodePart(options.guardPrefix)}:call:`
    this.timeArg = options.time === "server" ? "s" : "c"
  }

  /** id: this store's random identity (lease ids and guard keys start with it). */
  readonly id = randomBytes(12).toString("base64url")

  /**
   * push queues an item for `slot` (-1 on a single server). While the lane has calls
   * outstanding, items wait for the end of the tick and travel together; a call that
   * reaches maxBatch goes out at once (with everything queued before it on its lane), so
   * Redis starts on it while later items are still being made.
   */
  push(slot: number, owner: object, kind: CallKind, item: Item): void {
    const lane = this.lane(slot)
    let call = lane.open.get(owner)
    if (call === undefined || call.kind !== kind) {
      call = { kind, items: [] }
      if (!lane.queued) {
        lane.queued = true
        this.dirty.push(lane)
      }
      lane.calls.push(call)
      lane.open.set(owner, call)
    }
    call.items.push(item)
    // A full call, or any call while the lane has nothing outstanding (no round trip to
    // share, so waiting for the end of the tick would only add latency), goes now.
    if (call.items.length >= this.options.maxBatch || lane.outstanding === 0) this.sendLane(lane)
    else if (!this.scheduled) {
      this.scheduled = true
      setImmediate(this.flush)
    }
  }

  /** close makes the next item of `owner` start a new call (it must follow what came before). */
  close(owner: object): void {
    for (const lane of this.dirty) lane.open.delete(owner)
  }

  /** flush sends every queued call now. */
  readonly flush = (): void => {
    this.scheduled = false
    const lanes = this.dirty
    this.dirty = []
    for (const lane of lanes) {
      lane.queued = false
      this.sendLane(lane)
    }
  }

  /** sendLane sends a lane's queued calls, in order. */
  private sendLane(lane: Lane): void {
    const calls = lane.calls
    if (calls.length === 0) return
    lane.calls = []
    lane.open.clear()
    for (const call of calls) this.send(lane, call)
  }

  private lane(slot: number): Lane {
    let lane = this.lanes.get(slot)
    if (lane === undefined) {
      lane = {
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

  private send(lane: Lane, call: Call): void {
    const { kind, items } = call
    let reply: Promise<unknown>
    if (kind.script === "del") {
      const keys: string[] = []
      for (const item of items) for (const k of item.keys) keys.push(k)
      reply = this.options.client.del(keys)
    } else {
      // KEYS: the guard bitmap, then the items' keys. ARGV: one string packing the header
      // (time mode, guard bit or -1, guard TTL), the kind's header (the policy) and the
      // items' arguments (see pack).
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
      reply = run(this.options.client, kind.script, argv)
    }
    lane.outstanding++
    reply.then(
      (value) => {
        lane.outstanding--
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
      },
      (error: unknown) => {
        lane.outstanding--
        const failure = storeError(error)
        for (const item of items) item.reject(failure)
      },
    )
  }
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
  let size = 0
  const measure = (args: readonly (string | number)[]) => {
    for (const a of args) size += typeof a === "number" ? 8 : 2 + Buffer.byteLength(a)
  }
  measure(header)
  measure(policy)
  for (const item of items) measure(item.args)
  const out = Buffer.allocUnsafe(size)
  let at = 0
  const write = (args: readonly (string | number)[]) => {
    for (const a of args) {
      if (typeof a === "number") at = out.writeDoubleLE(a, at)
      else {
        const n = out.write(a, at + 2)
        out.writeUInt16LE(n, at)
        at += 2 + n
      }
    }
  }
  write(header)
  write(policy)
  for (const item of items) write(item.args)
  return out
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
