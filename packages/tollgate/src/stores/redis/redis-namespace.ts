import type { Decision } from "../../core/decision.js"
import { assertPolicy, type Policy } from "../../core/policy.js"
import type { Grant } from "../../core/token-bucket.js"
import { ConfigError, UnsupportedError } from "../../errors.js"
import { forgetDue } from "../reservations.js"
import { limitInto, type Sink, type SinkNamespace } from "../sink.js"
import type { CallKind, CallQueue, Item } from "./call-queue.js"
import {
  calendarBounds,
  HISTORY_LENGTH,
  type History,
  policyArgs,
  readDecision,
  readLimit,
} from "./codec.js"
import { encodePart, requestKey, slotOf, stateKey, TAGS } from "./key-layout.js"
import { scripts } from "./scripts.js"

type Op = "limit" | "peek" | "reserve" | "cancel" | "release" | "adjust" | "reset"

/** Engine: what a namespace needs from its store. */
export interface Engine {
  readonly queue: CallQueue
  readonly cluster: boolean
  readonly serverTime: boolean
  nextLeaseId(): string
}

/** Target: where one user key's state lives. */
export interface Target {
  state: string
  /** slot: the Cluster slot, or -1 on a single server. */
  slot: number
}

const ignore = (): void => undefined
const readDecisionReply = (reply: unknown, at: number): Decision =>
  readDecision(reply as Buffer, at)

type Read = (reply: unknown, at: number, length: number, key: string) => unknown

/** Queued: one operation's item in the call queue; its answer goes to `sink`. */
class Queued implements Item {
  readonly keys: string[]
  readonly args: (string | number)[]
  readonly now: number
  readonly key: string
  readonly read: Read
  readonly sink: Sink<unknown>

  constructor(
    keys: string[],
    args: (string | number)[],
    now: number,
    key: string,
    read: Read,
    sink: Sink<unknown>,
  ) {
    this.keys = keys
    this.args = args
    this.now = now
    this.key = key
    this.read = read
    this.sink = sink
  }

  resolve(answer: unknown): void {
    this.sink.resolve(answer)
  }

  reject(error: unknown): void {
    this.sink.reject(error)
  }
}

let captured: Sink<unknown> = { resolve: ignore, reject: ignore }

/** capture is the executor of the namespace's promises: it keeps their resolving functions as a sink. */
function capture<T>(resolve: (answer: T) => void, reject: (error: unknown) => void): void {
  captured = { resolve: resolve as (answer: unknown) => void, reject }
}

/**
 * RedisNamespace: one limiter's state in Redis, for one (prefix, policy kind). Every
 * operation returns a promise; operations of one tick travel together (see CallQueue).
 */
export class RedisNamespace implements SinkNamespace {
  readonly store: object
  readonly prefix: string
  private policyNow: Policy
  private readonly engine: Engine
  private readonly encodedPrefix: string
  private readonly tag: string
  /**
   * history: token bucket policies, [windowMs, changedAt, generation], for converting old
   * buckets. Generations count down from -1 in a namespace made with `shared` (the scripts
   * then keep the time to full of a bucket another policy wrote), up from 0 otherwise.
   */
  private history: History
  /** kinds: the calls of each operation this policy kind supports, for the current policy. */
  private kinds: Partial<Record<Op, CallKind>>
  private calendar: number[] | undefined
  /**
   * reservations: with server time, "state key + executeAt in the caller's clock" ->
   * executeAt in Redis's clock, so cancel() finds the reservation's exact time.
   */
  private readonly reservations = new Map<string, number>()

  constructor(store: object, engine: Engine, prefix: string, policy: Policy, shared = false) {
    this.store = store
    this.engine = engine
    this.prefix = prefix
    this.policyNow = policy
    this.encodedPrefix = encodePart(prefix)
    this.tag = TAGS[policy.kind]
    this.history = [[policy.windowMs, 0, shared ? -1 : 0]]
    this.kinds = this.makeKinds()
  }

  get policy(): Policy {
    return this.policyNow
  }

  /** target: the Redis key and slot of a user key. */
  target(key: string): Target {
    const encoded = encodePart(key)
    return { state: stateKey(this.encodedPrefix, this.tag, encoded), slot: this.slot(encoded) }
  }

  /** slot: the Cluster slot of an encoded user key (-1 on a single server). */
  private slot(encoded: string): number {
    return this.engine.cluster ? slotOf(encoded) : -1
  }

  /** args: the policy as the scripts read it, for callers whose times span [from, to]. */
  args(from: number, to: number): (string | number)[] {
    const p = this.policyNow
    if (p.kind !== "fixedWindow" || p.calendar === undefined) return policyArgs(p, this.history)
    const c = this.calendar
    // Reuse the bounds while the callers' times stay a whole window inside them.
    if (c === undefined || from < c[1] || to >= c[c.length - 2]) {
      this.calendar = calendarBounds(p, from, to)
    }
    return policyArgs(p, this.history, this.calendar)
  }

  private makeKinds(): Partial<Record<Op, CallKind>> {
    const p = this.policyNow
    // Calendar windows need bounds around the items' times; every other policy reads
    // the same for all calls.
    const fixed = p.kind === "fixedWindow" && p.calendar !== undefined ? undefined : this.args(0, 0)
    const header = (items: readonly Item[]) => {
      if (fixed !== undefined) return fixed
      let from = Number.POSITIVE_INFINITY
      let to = Number.NEGATIVE_INFINITY
      for (const item of items) {
        if (item.now < from) from = item.now
        if (item.now > to) to = item.now
      }
      return this.args(from, to)
    }
    const kinds: Partial<Record<Op, CallKind>> = {
      reset: { script: "del", guarded: false, whole: false, header },
    }
    for (const op of ["limit", "peek", "reserve", "cancel", "release", "adjust"] as const) {
      const s = scripts().get(`${op}.${this.tag}`)
      // A peek only drops what has expired, which a repeat would drop alike: no guard.
      if (s !== undefined) {
        kinds[op] = { script: s, guarded: op !== "peek", whole: false, header }
      }
    }
    return kinds
  }

  private call<T>(
    op: Op,
    key: string,
    slot: number,
    keys: string[],
    args: (string | number)[],
    now: number,
    read: (reply: unknown, at: number, length: number, key: string) => T,
  ): Promise<T> {
    const promise = new Promise<T>(capture<T>)
    this.engine.queue.push(
      slot,
      this,
      this.kinds[op]!,
      new Queued(keys, args, now, key, read, captured),
    )
    return promise
  }

  limit(key: string, cost: number, now: number, requestId?: string): Promise<Decision> {
    const promise = new Promise<Decision>(capture<Decision>)
    this[limitInto](captured, key, cost, now, requestId)
    return promise
  }

  /** [limitInto]: limit, answered into `sink` (the fast path of stores/sink.ts). */
  [limitInto](
    sink: Sink<Decision>,
    key: string,
    cost: number,
    now: number,
    requestId: string | undefined,
  ): void {
    const e = encodePart(key)
    const state = stateKey(this.encodedPrefix, this.tag, e)
    const leaseId = this.policyNow.kind === "concurrency" ? this.engine.nextLeaseId() : ""
    let keys: string[]
    let args: (string | number)[]
    if (requestId === undefined) {
      keys = [state]
      args = [cost, now, 0, leaseId]
    } else {
      keys = [state, requestKey(state, requestId)]
      args = [cost, now, 1, leaseId]
    }
    const op = new Queued(keys, args, now, key, readLimit, sink as Sink<unknown>)
    this.engine.queue.push(this.slot(e), this, this.kinds.limit!, op)
  }

  peek(key: string, now: number): Promise<Decision> {
    const e = encodePart(key)
    const state = stateKey(this.encodedPrefix, this.tag, e)
    return this.call("peek", key, this.slot(e), [state], [now], now, readDecisionReply)
  }

  reset(key: string): Promise<void> {
    const e = encodePart(key)
    const state = stateKey(this.encodedPrefix, this.tag, e)
    return this.call("reset", key, this.slot(e), [state], [], 0, ignore)
  }

  reserve(key: string, cost: number, now: number, maxWaitMs: number): Promise<Grant> {
    if (this.policyNow.kind !== "tokenBucket") {
      throw new UnsupportedError(`reserve needs a tokenBucket policy, not ${this.policyNow.kind}`)
    }
    const e = encodePart(key)
    const state = stateKey(this.encodedPrefix, this.tag, e)
    return this.call(
      "reserve",
      key,
      this.slot(e),
      [state],
      [cost, now, maxWaitMs],
      now,
      (reply, at) => {
        const r = reply as Buffer
        const grant: Grant = {
          ok: r[at] === 1,
          executeAt: r.readDoubleLE(at + 1),
          delayMs: r.readDoubleLE(at + 9),
          decision: readDecision(r, at + 25),
        }
        if (grant.ok && grant.delayMs > 0 && this.engine.serverTime) {
          this.remember(`${state}\n${grant.executeAt}`, r.readDoubleLE(at + 17), now)
        }
        return grant
      },
    )
  }

  private remember(id: string, executeAt: number, now: number): void {
    const kept = this.reservations
    forgetDue(kept, now)
    kept.set(id, executeAt)
  }

  cancel(key: string, cost: number, executeAt: number, now: number): Promise<void> {
    if (this.policyNow.kind !== "tokenBucket") {
      throw new UnsupportedError(`cancel needs a tokenBucket policy, not ${this.policyNow.kind}`)
    }
    const e = encodePart(key)
    const state = stateKey(this.encodedPrefix, this.tag, e)
    const id = `${state}\n${executeAt}`
    const exact = this.reservations.get(id)
    let args: (string | number)[] = [cost, now, executeAt, 0]
    if (exact !== undefined) {
      this.reservations.delete(id)
      args = [cost, now, exact, 1]
    }
    return this.call("cancel", key, this.slot(e), [state], args, now, ignore)
  }

  release(key: string, leaseId: string, now: number): Promise<void> {
    if (this.policyNow.kind !== "concurrency") {
      throw new UnsupportedError(`release needs a concurrency policy, not ${this.policyNow.kind}`)
    }
    const e = encodePart(key)
    const state = stateKey(this.encodedPrefix, this.tag, e)
    return this.call("release", key, this.slot(e), [state], [leaseId, now], now, ignore)
  }

  adjust(key: string, delta: number, now: number): Promise<Decision> {
    if (this.policyNow.kind === "concurrency") {
      throw new UnsupportedError("adjust needs a token bucket or window policy, not concurrency")
    }
    const e = encodePart(key)
    const state = stateKey(this.encodedPrefix, this.tag, e)
    return this.call("adjust", key, this.slot(e), [state], [delta, now], now, readDecisionReply)
  }

  /**
   * setPolicy switches to a policy of the same kind. Operations already queued keep the
   * policy they were made under. Token buckets are converted lazily, as each is next
   * read: a bucket written before the change keeps its fill fraction as of the change
   * time `now` (the last HISTORY_LENGTH changes are remembered for this).
   */
  setPolicy(policy: Policy, now: number): void {
    assertPolicy(policy)
    const from = this.policyNow
    if (policy.kind !== from.kind) {
      throw new ConfigError(
        "policy",
        `a namespace keeps its kind (${from.kind}), got ${policy.kind}`,
      )
    }
    if (policy.kind === "tokenBucket" && policy.windowMs !== from.windowMs) {
      const last = this.history[this.history.length - 1][2]
      const generation = last < 0 ? last - 1 : last + 1
      this.history = [...this.history, [policy.windowMs, now, generation]].slice(
        -HISTORY_LENGTH,
      ) as History
    }
    this.policyNow = policy
    this.calendar = undefined
    this.kinds = this.makeKinds()
  }

  /** size: Redis cannot count a namespace's keys cheaply, so -1. */
  size(): number {
    return -1
  }
}
