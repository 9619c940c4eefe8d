import { randomUUID } from "node:crypto"
import { type Clock, systemClock } from "../clock.js"
import { type Decision, decision, type Lease, whole } from "../core/decision.js"
import { assertPolicy, type Policy, sharePolicy } from "../core/policy.js"
import type { Grant } from "../core/token-bucket.js"
import { type Duration, parseDuration } from "../duration.js"
import {
  ArgumentError,
  ConfigError,
  describe,
  RateLimitError,
  StoreError,
  TollgateError,
  UnsupportedError,
} from "../errors.js"
import { isSharded, sameLayout } from "../scale/sharded.js"
import { type ShardBalance, ShardedNamespace } from "../scale/sharded-namespace.js"
import { MemoryStore } from "../stores/memory-store.js"
import { hasSink, limitInto, type Sink } from "../stores/sink.js"
import type { MaybePromise, Namespace, Store, SyncStore } from "../stores/store.js"
import { checkCost, checkKey, checkOptions, checkWait } from "../validate.js"
import { Monotonic } from "./monotonic.js"
import { Scheduler } from "./scheduler.js"
import { type GuardOptions, StoreGuard } from "./store-guard.js"

/** OnStoreError: what a limiter does when its store fails or times out. */
export type OnStoreError = "closed" | "open" | FallbackOptions

/**
 * FallbackOptions: decide with another store (typically a MemoryStore) while the main one
 * fails. The fallback enforces the policy divided by `instances` (default 1), so that N
 * instances falling back together admit at most the policy's budget.
 */
export interface FallbackOptions {
  fallback: Store
  instances?: number
}

export interface LimiterOptions {
  policy: Policy
  /** store: where state lives; default a new MemoryStore. */
  store?: Store
  /** prefix: namespace; limiters with different prefixes never share state. Default "tollgate". */
  prefix?: string
  /** clock: default systemClock (monotonic, epoch-anchored). */
  clock?: Clock
  /** clockTolerance: a clock step back up to this counts as no time passed; default 100 ms. */
  clockTolerance?: Duration
  /** onStoreError: "closed" (throw StoreError, default), "open" (allow) or { fallback }. */
  onStoreError?: OnStoreError
  /** timeout: ms budget for one call to an asynchronous store; default 1000. */
  timeout?: Duration
  /** maxInFlight: calls outstanding to an asynchronous store; beyond it calls fail at once (StoreError). Default 10,000. */
  maxInFlight?: number
  /** breaker: open the circuit after `failures` consecutive store failures, for `cooldown`; false: never. Default { failures: 5, cooldown: "1s" }. */
  breaker?: { failures?: number; cooldown?: Duration } | false
  /** maxKeyLength: longest key accepted; default 512. */
  maxKeyLength?: number
  /** maxQueue: most waiters per key in acquire(); default unbounded. */
  maxQueue?: number
}

export interface LimitOptions {
  /** cost: units this request takes, finite, >= 0 and <= the policy's limit; default 1. */
  cost?: number
  /** requestId: repeats of an admitted request with this id consume nothing. */
  requestId?: string
}

export interface AcquireOptions {
  cost?: number
  /** maxWait: reject at once with RateLimitError if the wait would be longer; default unbounded. */
  maxWait?: Duration
  /** signal: aborting leaves the queue and rejects with the signal's reason. */
  signal?: AbortSignal
}

export interface ReserveOptions {
  cost?: number
  /** maxWait: a reservation further out than this is not made (ok: false); default unbounded. */
  maxWait?: Duration
}

/**
 * Reservation: `cost` committed now for use at `executeAt` (epoch ms, in the limiter's
 * clock). `cancel()` before then gives the capacity back, less whatever later
 * reservations already depend on. When `ok` is false nothing was committed and `delayMs`
 * is the wait that would have been needed.
 */
export interface Reservation {
  readonly id: string
  readonly key: string
  readonly cost: number
  readonly ok: boolean
  readonly executeAt: number
  readonly delayMs: number
  readonly decision: Decision
  cancel(): MaybePromise<void>
}

export interface LimiterStats {
  allowed: number
  denied: number
  /** denyRate: denied / (allowed + denied), 0 before any decision. */
  denyRate: number
  /** keys: keys with state in this limiter's namespace (-1 when the store cannot tell). */
  keys: number
  storeErrors: number
  /** fallbacks: decisions made by the fallback store. */
  fallbacks: number
  /** failOpen: requests admitted because the store failed and onStoreError is "open". */
  failOpen: number
  /** waiting: acquire() calls queued now. */
  waiting: number
}

type Answer<S extends boolean, T> = S extends true ? T : Promise<T>

/**
 * Limiter enforces one policy per key. Over a synchronous store (the default MemoryStore)
 * `limit`, `peek`, `reset` answer directly; over an asynchronous one they return promises.
 * `await` works on both.
 */
export interface Limiter<S extends boolean = boolean> {
  readonly policy: Policy
  readonly prefix: string
  /** clock: the clock this limiter reads (for wrappers that wait on the same time). */
  readonly clock: Clock
  /** limit consumes `cost` for `key` if the policy allows it now. Never waits. */
  limit(key: string, options?: LimitOptions): Answer<S, Decision>
  /** peek is the decision for cost 0: nothing is consumed. */
  peek(key: string): Answer<S, Decision>
  /** reset forgets the key's state. */
  reset(key: string): Answer<S, void>
  /** acquire waits in FIFO order per key until the request is admitted. */
  acquire(key: string, options?: AcquireOptions): Promise<Decision>
  /** reserve commits capacity now for use later (token bucket only). */
  reserve(key: string, options?: ReserveOptions): Promise<Reservation>
  /** setPolicy changes the policy at runtime; admitted requests stay admitted. */
  setPolicy(policy: Policy): void
  stats(): LimiterStats
  /** shardBalance reports each shard's level of `key` (a sharded() policy only: UnsupportedError otherwise). */
  shardBalance(key: string): Answer<S, ShardBalance>
}

interface Waiter {
  key: string
  cost: number
  /** reserved: a token-bucket waiter whose capacity is committed for `at`. */
  reserved: boolean
  /** at: when it runs next (reserved: its executeAt; else its next try, for the head). */
  at: number
  /** deadline: when a waiter that is not reserved gives up. */
  deadline: number
  /**
   * first: its first try is still to be decided (a waiter queued before its first store
   * call, over an asynchronous store): a denial it could not outwait rejects it at once.
   */
  first: boolean
  grant: Decision | undefined
  /** since: when the grant was made. */
  since: number
  done: boolean
  resolve(d: Decision): void
  reject(error: unknown): void
  signal: AbortSignal | undefined
  onAbort: (() => void) | undefined
}

interface Queue {
  waiters: Waiter[]
  busy: boolean
}

type Job = { waiter: Waiter; deadline: boolean }

function isPromise<T>(value: MaybePromise<T>): value is Promise<T> {
  return typeof (value as Promise<T> | undefined)?.then === "function"
}

/**
 * rejectInstead makes the named methods of a limiter over an asynchronous store answer a
 * bad call with a rejected promise, as they answer everything else, rather than throw
 * before returning. (Own properties of that limiter only: a limiter over the memory store
 * keeps the plain methods.)
 */
export function rejectInstead<T extends object>(
  target: T,
  names: readonly (keyof T & string)[],
): void {
  for (const name of names) {
    const method = target[name] as (...args: unknown[]) => unknown
    Object.defineProperty(target, name, {
      configurable: true,
      writable: true,
      value: (...args: unknown[]) => {
        try {
          return method.apply(target, args)
        } catch (error) {
          return Promise.reject(error)
        }
      },
    })
  }
}

export function guardOptions(options: LimiterOptions): GuardOptions {
  const timeoutMs = options.timeout === undefined ? 1000 : parseDuration(options.timeout, "timeout")
  const maxInFlight = options.maxInFlight ?? 10_000
  if (typeof maxInFlight !== "number" || !Number.isInteger(maxInFlight) || maxInFlight < 1) {
    throw new ConfigError(
      "maxInFlight",
      `expected a whole number >= 1, got ${describe(maxInFlight)}`,
    )
  }
  const b = options.breaker ?? {}
  if (b !== false && (typeof b !== "object" || b === null)) {
    throw new ConfigError(
      "breaker",
      `expected { failures?, cooldown? } or false, got ${describe(b)}`,
    )
  }
  let breaker: GuardOptions["breaker"] = false
  if (b !== false) {
    const failures = b.failures ?? 5
    if (typeof failures !== "number" || !Number.isInteger(failures) || failures < 1) {
      throw new ConfigError(
        "breaker.failures",
        `expected a whole number >= 1, got ${describe(failures)}`,
      )
    }
    breaker = {
      failures,
      cooldownMs: b.cooldown === undefined ? 1000 : parseDuration(b.cooldown, "breaker.cooldown"),
    }
  }
  return { timeoutMs, maxInFlight, breaker }
}

/** then applies fn to a value now, or to a promise's value when it settles. */
function then<T, U>(value: MaybePromise<T>, fn: (v: T) => U | Promise<U>): Promise<U> {
  if (isPromise(value)) return value.then(fn)
  try {
    return Promise.resolve(fn(value))
  } catch (error) {
    return Promise.reject(error)
  }
}

/** Outcome: how a limiter ends a limit() call that a store answered into a LimitCall. */
interface Outcome {
  count(d: Decision): Decision
  failed(error: unknown, key: string, cost: number, now: number): MaybePromise<Decision>
}

type Settle = (value: Decision | PromiseLike<Decision>) => void

let settleNext: Settle = () => {}
let failNext: (reason: unknown) => void = () => {}

/** capture is the executor of limit()'s promises: it hands their resolving functions out without a closure per call. */
function capture(resolve: Settle, reject: (reason: unknown) => void): void {
  settleNext = resolve
  failNext = reject
}

/**
 * LimitCall: one limit() through a store with the fast path (stores/sink.ts): the sink of
 * the store's answer, which settles the promise limit() returned.
 */
class LimitCall implements Sink<Decision> {
  readonly outcome: Outcome
  readonly key: string
  readonly cost: number
  readonly now: number
  readonly settle: Settle
  readonly fail: (reason: unknown) => void

  constructor(outcome: Outcome, key: string, cost: number, now: number) {
    this.outcome = outcome
    this.key = key
    this.cost = cost
    this.now = now
    this.settle = settleNext
    this.fail = failNext
  }

  resolve(d: Decision): void {
    let answer: Decision
    try {
      answer = this.outcome.count(d)
    } catch (error) {
      this.fail(error)
      return
    }
    this.settle(answer)
  }

  reject(error: unknown): void {
    let answer: MaybePromise<Decision>
    try {
      answer = this.outcome.failed(error, this.key, this.cost, this.now)
    } catch (failure) {
      this.fail(failure)
      return
    }
    this.settle(answer)
  }
}

function denied(d: Decision, retryAfterMs: number): Decision {
  return { ...d, allowed: false, retryAfterMs: Math.max(d.retryAfterMs, retryAfterMs) }
}

class RateLimiter implements Limiter<boolean> {
  readonly prefix: string
  #policy: Policy
  readonly #store: Store
  #ns: Namespace
  readonly #sync: boolean
  readonly #time: Monotonic
  readonly #onStoreError: OnStoreError
  #fallback: Namespace | undefined
  /** #sharded: the unguarded namespace of a sharded() policy, for shardBalance. */
  #sharded: ShardedNamespace | undefined
  readonly #guard: StoreGuard | undefined
  readonly #maxKeyLength: number
  readonly #maxQueue: number
  #allowed = 0
  #denied = 0
  #storeErrors = 0
  #fallbacks = 0
  #failOpen = 0
  #waiting = 0
  readonly #queues = new Map<string, Queue>()
  readonly #scheduler: Scheduler<Job>
  /** #outcome: how limit() calls answered through the fast path end (made once). */
  readonly #outcome: Outcome = {
    count: (d) => this.#count(d),
    failed: (error, key, cost, now) => this.#failed(error, key, cost, now),
  }

  constructor(options: LimiterOptions) {
    if (typeof options !== "object" || options === null) {
      throw new ConfigError("createLimiter", `expected an options object, got ${describe(options)}`)
    }
    assertPolicy(options.policy)
    this.#policy = options.policy
    const prefix = options.prefix ?? "tollgate"
    if (typeof prefix !== "string" || prefix.length === 0 || prefix.length > 256) {
      throw new ConfigError(
        "prefix",
        `expected a string of 1 to 256 characters, got ${describe(prefix)}`,
      )
    }
    this.prefix = prefix
    const store = options.store ?? new MemoryStore()
    if (typeof store !== "object" || store === null || typeof store.namespace !== "function") {
      throw new ConfigError("store", `expected a Store (with namespace()), got ${describe(store)}`)
    }
    this.#store = store
    this.#sync = store.synchronous === true
    const clock = options.clock ?? systemClock
    if (typeof clock !== "object" || clock === null || typeof clock.now !== "function") {
      throw new ConfigError("clock", `expected a clock with now(), got ${describe(clock)}`)
    }
    this.#time = new Monotonic(
      clock,
      options.clockTolerance === undefined
        ? 100
        : parseDuration(options.clockTolerance, "clockTolerance", true),
    )
    // Checked whatever the store, so that a bad value is found before a switch to Redis.
    const guarded = guardOptions(options)
    this.#guard = this.#sync ? undefined : new StoreGuard(guarded)
    this.#ns = this.#open(this.#policy)
    if (!this.#sync) rejectInstead(this, ["limit", "peek", "reset", "shardBalance"])
    const onStoreError = options.onStoreError ?? "closed"
    if (onStoreError === "closed" || onStoreError === "open") {
      this.#onStoreError = onStoreError
    } else if (
      typeof onStoreError === "object" &&
      onStoreError !== null &&
      typeof onStoreError.fallback?.namespace === "function"
    ) {
      const instances = onStoreError.instances ?? 1
      if (typeof instances !== "number" || !Number.isInteger(instances) || instances < 1) {
        throw new ConfigError(
          "onStoreError.instances",
          `expected a whole number >= 1, got ${describe(instances)}`,
        )
      }
      this.#onStoreError = onStoreError
      this.#fallback = onStoreError.fallback.namespace(prefix, sharePolicy(this.#policy, instances))
    } else {
      throw new ConfigError(
        "onStoreError",
        `expected "closed", "open" or { fallback: store, instances? }, got ${describe(onStoreError)}`,
      )
    }
    const maxKeyLength = options.maxKeyLength ?? 512
    if (!Number.isInteger(maxKeyLength) || maxKeyLength < 1) {
      throw new ConfigError(
        "maxKeyLength",
        `expected a whole number >= 1, got ${describe(maxKeyLength)}`,
      )
    }
    this.#maxKeyLength = maxKeyLength
    const maxQueue = options.maxQueue ?? Number.POSITIVE_INFINITY
    if (typeof maxQueue !== "number" || Number.isNaN(maxQueue) || maxQueue < 0) {
      throw new ConfigError("maxQueue", `expected a number >= 0, got ${describe(maxQueue)}`)
    }
    this.#maxQueue = maxQueue
    this.#scheduler = new Scheduler<Job>(
      clock,
      () => this.#now(),
      (job, at) => this.#run(job, at),
    )
  }

  get policy(): Policy {
    return this.#policy
  }

  get clock(): Clock {
    return this.#time.clock
  }

  /** #open opens the store's namespace for a policy, guarded when the store is asynchronous. */
  #open(policy: Policy): Namespace {
    this.#sharded = isSharded(policy)
      ? new ShardedNamespace(this.#store, this.prefix, policy)
      : undefined
    const ns = this.#sharded ?? this.#store.namespace(this.prefix, policy)
    return this.#guard === undefined ? ns : this.#guard.wrap(ns)
  }

  /** #now is the limiter's time: the clock, never going backwards (see Monotonic). */
  #now(): number {
    return this.#time.now()
  }

  #cost(options: LimitOptions | AcquireOptions | undefined): number {
    checkOptions(options)
    const cost = options === undefined || options.cost === undefined ? 1 : options.cost
    checkCost(cost, this.#policy.limit)
    return cost
  }

  limit(key: string, options?: LimitOptions): MaybePromise<Decision> {
    // The common call, limit(key), is checked inline; every policy's limit is >= 1, so the
    // default cost of 1 needs no check.
    if (typeof key !== "string" || key.length === 0 || key.length > this.#maxKeyLength) {
      checkKey(key, this.#maxKeyLength)
    }
    let cost = 1
    let requestId: string | undefined
    if (options !== undefined) {
      cost = this.#cost(options)
      if (options.requestId !== undefined) {
        checkKey(options.requestId, this.#maxKeyLength, "requestId")
        requestId = options.requestId
      }
    }
    const now = this.#time.now()
    if (this.#waiting !== 0 && this.#policy.kind !== "tokenBucket") {
      const queue = this.#queues.get(key)
      if (queue !== undefined) return this.#behind(key, queue, now)
    }
    if (this.#sync) {
      let d: Decision
      try {
        d = this.#ns.limit(key, cost, now, requestId) as Decision
      } catch (error) {
        return this.#failed(error, key, cost, now)
      }
      return this.#count(d)
    }
    return this.#limitAsync(key, cost, now, requestId)
  }

  /**
   * #limitAsync decides through an asynchronous store. Over one with the fast path (the
   * RedisStore) the store answers a LimitCall, and the promise returned is the only one
   * made for the call.
   */
  #limitAsync(
    key: string,
    cost: number,
    now: number,
    requestId: string | undefined,
  ): Promise<Decision> {
    const ns = this.#ns
    if (hasSink(ns)) {
      const promise = new Promise<Decision>(capture)
      const call = new LimitCall(this.#outcome, key, cost, now)
      try {
        ns[limitInto](call, key, cost, now, requestId)
      } catch (error) {
        call.reject(error)
      }
      return promise
    }
    let d: MaybePromise<Decision>
    try {
      d = ns.limit(key, cost, now, requestId)
    } catch (error) {
      try {
        return Promise.resolve(this.#failed(error, key, cost, now))
      } catch (failure) {
        return Promise.reject(failure)
      }
    }
    if (!isPromise(d)) {
      // Answered at once (a store wrapper deciding locally): one settled promise.
      try {
        return Promise.resolve(this.#outcome.count(d))
      } catch (error) {
        return Promise.reject(error)
      }
    }
    return d.then(this.#outcome.count, (error: unknown) => this.#failed(error, key, cost, now))
  }

  /** #count records a decision in the stats and turns a raw lease into a Lease. */
  #count(d: Decision): Decision {
    if (d.allowed) this.#allowed++
    else this.#denied++
    if (d.lease !== undefined) d.lease = this.#lease(d.lease)
    return d
  }

  #lease(raw: Pick<Lease, "id" | "key" | "cost" | "expiresAt">): Lease {
    const ns = this.#ns
    let released: MaybePromise<void> | undefined
    const release = (): MaybePromise<void> => {
      if (released === undefined) released = this.#release(ns, raw.key, raw.id)
      return released
    }
    return {
      id: raw.id,
      key: raw.key,
      cost: raw.cost,
      expiresAt: raw.expiresAt - this.#time.offset,
      release,
      [Symbol.dispose]: () => {
        const r = release()
        if (isPromise(r)) r.catch(() => {})
      },
      [Symbol.asyncDispose]: async () => {
        await release()
      },
    }
  }

  #release(ns: Namespace, key: string, id: string): MaybePromise<void> {
    const r = this.#plain(() => ns.release(key, id, this.#now()))
    if (isPromise(r)) return r.then(() => this.#wake(key))
    this.#wake(key)
  }

  /** #failed decides for a failed store call, as onStoreError says. */
  #failed(error: unknown, key: string, cost: number, now: number): MaybePromise<Decision> {
    if (error instanceof TollgateError && !(error instanceof StoreError)) throw error
    this.#storeErrors++
    const mode = this.#onStoreError
    if (mode === "closed") {
      throw error instanceof StoreError
        ? error
        : new StoreError(`store failed: ${(error as Error)?.message ?? String(error)}`, {
            cause: error,
          })
    }
    if (mode === "open") {
      this.#failOpen++
      this.#allowed++
      const d = decision(true, this.#policy.limit, whole(this.#policy.limit - cost), 0, 0)
      d.degraded = "open"
      return d
    }
    this.#fallbacks++
    const mark = (d: Decision) => {
      d.degraded = "fallback"
      return this.#count(d)
    }
    const d = this.#fallback!.limit(key, cost, now)
    return isPromise(d) ? d.then(mark) : mark(d)
  }

  /** #behind answers limit() for a key with waiters queued: they go first. */
  #behind(key: string, queue: Queue, now: number): MaybePromise<Decision> {
    const head = queue.waiters[0]
    // A head whose first try is in flight has no time yet: the store's answer says.
    const wait = head.first ? 0 : Math.max(0, head.at - now)
    const deny = (d: Decision) => {
      this.#denied++
      return denied(d, wait)
    }
    const d = this.#ns.peek(key, now)
    return isPromise(d) ? Promise.resolve(d).then(deny) : deny(d)
  }

  peek(key: string): MaybePromise<Decision> {
    checkKey(key, this.#maxKeyLength)
    return this.#plain(() => this.#ns.peek(key, this.#now()))
  }

  reset(key: string): MaybePromise<void> {
    checkKey(key, this.#maxKeyLength)
    return this.#plain(() => this.#ns.reset(key))
  }

  /**
   * #plain runs a store call that admits nothing (peek, reset, cancel, release): a store
   * failure becomes a counted StoreError whatever onStoreError says, since there is no
   * decision to fall back on.
   */
  #plain<T>(call: () => MaybePromise<T>): MaybePromise<T> {
    const failed = (error: unknown): never => {
      if (error instanceof TollgateError && !(error instanceof StoreError)) throw error
      this.#storeErrors++
      throw error instanceof StoreError
        ? error
        : new StoreError(`store failed: ${(error as Error)?.message ?? String(error)}`, {
            cause: error,
          })
    }
    let r: MaybePromise<T>
    try {
      r = call()
    } catch (error) {
      return failed(error)
    }
    if (isPromise(r)) return r.catch(failed)
    // Over an asynchronous store the caller gets a promise even when a store wrapper
    // answered at once.
    return this.#sync ? r : Promise.resolve(r)
  }

  setPolicy(policy: Policy): void {
    assertPolicy(policy)
    const now = this.#now()
    if (policy.kind === this.#policy.kind && sameLayout(policy, this.#policy)) {
      this.#ns.setPolicy(policy, now)
      if (typeof this.#onStoreError === "object") {
        this.#fallback?.setPolicy(sharePolicy(policy, this.#onStoreError.instances ?? 1), now)
      }
    } else {
      this.#ns = this.#open(policy)
      if (typeof this.#onStoreError === "object") {
        this.#fallback = this.#onStoreError.fallback.namespace(
          this.prefix,
          sharePolicy(policy, this.#onStoreError.instances ?? 1),
        )
      }
    }
    this.#policy = policy
  }

  stats(): LimiterStats {
    const total = this.#allowed + this.#denied
    return {
      allowed: this.#allowed,
      denied: this.#denied,
      denyRate: total === 0 ? 0 : this.#denied / total,
      keys: this.#ns.size(),
      storeErrors: this.#storeErrors,
      fallbacks: this.#fallbacks,
      failOpen: this.#failOpen,
      waiting: this.#waiting,
    }
  }

  shardBalance(key: string): MaybePromise<ShardBalance> {
    checkKey(key, this.#maxKeyLength)
    const sharded = this.#sharded
    if (sharded === undefined) {
      throw new UnsupportedError("shardBalance needs a policy from sharded()")
    }
    return this.#plain(() => sharded.balance(key, this.#now()))
  }

  reserve(key: string, options?: ReserveOptions): Promise<Reservation> {
    try {
      checkKey(key, this.#maxKeyLength)
      const cost = this.#cost(options)
      const maxWait = checkWait(options?.maxWait)
      if (this.#policy.kind !== "tokenBucket") {
        throw new UnsupportedError(`reserve needs a tokenBucket policy, not ${this.#policy.kind}`)
      }
      const now = this.#now()
      return then(this.#reserveGrant(key, cost, now, maxWait), (grant) =>
        this.#reservation(key, cost, grant),
      )
    } catch (error) {
      return Promise.reject(error)
    }
  }

  #reservation(key: string, cost: number, grant: Grant): Reservation {
    let cancelled = !grant.ok
    const ns = this.#ns
    const cancel = (): MaybePromise<void> => {
      if (cancelled) return
      cancelled = true
      const now = this.#now()
      if (now >= grant.executeAt || grant.decision.degraded !== undefined) return
      return this.#plain(() => ns.cancel(key, cost, grant.executeAt, now))
    }
    return {
      id: randomUUID(),
      key,
      cost,
      ok: grant.ok,
      executeAt: grant.executeAt - this.#time.offset,
      delayMs: grant.delayMs,
      decision: grant.decision,
      cancel,
    }
  }

  /** #reserveGrant reserves through the store, deciding per onStoreError if it fails. */
  #reserveGrant(key: string, cost: number, now: number, maxWait: number): MaybePromise<Grant> {
    const counted = (grant: Grant): Grant => {
      if (grant.ok) this.#allowed++
      else this.#denied++
      return grant
    }
    const failed = (error: unknown): MaybePromise<Grant> =>
      then(this.#failed(error, key, cost, now), (d) => ({
        ok: d.allowed,
        executeAt: now,
        delayMs: 0,
        decision: d,
      }))
    let g: MaybePromise<Grant>
    try {
      g = this.#ns.reserve(key, cost, now, maxWait)
    } catch (error) {
      return failed(error)
    }
    return isPromise(g) ? Promise.resolve(g).then(counted, failed) : counted(g)
  }

  acquire(key: string, options?: AcquireOptions): Promise<Decision> {
    try {
      checkKey(key, this.#maxKeyLength)
      const cost = this.#cost(options)
      const maxWait = checkWait(options?.maxWait)
      const signal = options?.signal
      if (signal !== undefined && !(signal instanceof AbortSignal)) {
        throw new ArgumentError("signal", `expected an AbortSignal, got ${describe(signal)}`)
      }
      signal?.throwIfAborted()
      const now = this.#now()
      const queue = this.#queues.get(key)
      if (queue !== undefined && queue.waiters.length >= this.#maxQueue) {
        const last = queue.waiters[queue.waiters.length - 1]
        return this.#reject(
          key,
          now,
          last.at - now,
          `the queue for this key is full (${this.#maxQueue} waiting)`,
        )
      }
      if (this.#policy.kind === "tokenBucket") {
        return then(this.#reserveGrant(key, cost, now, maxWait), (grant) => {
          if (!grant.ok) throw new RateLimitError(grant.decision)
          if (grant.delayMs === 0 && !this.#queues.has(key)) return grant.decision
          // A waiter is counted when it is served (#run), and not at all if it is aborted.
          this.#allowed--
          const w = this.#waiter(key, cost, true, grant.executeAt, grant.decision)
          w.since = now
          return this.#enqueue(w, signal)
        })
      }
      if (queue !== undefined) {
        if (maxWait === 0) return this.#reject(key, now, queue.waiters[0].at - now, undefined)
        const w = this.#waiter(key, cost, false, Number.POSITIVE_INFINITY, undefined)
        w.deadline = now + maxWait
        return this.#enqueue(w, signal)
      }
      if (!this.#sync) {
        // Queued before its first store call, so that calls arriving during the round
        // trip wait behind it (and limit() on the key is denied) as over a memory store.
        const w = this.#waiter(key, cost, false, Number.POSITIVE_INFINITY, undefined)
        w.deadline = now + maxWait
        w.first = true
        const waiting = this.#enqueue(w, signal)
        this.#wake(key)
        return waiting
      }
      return then(this.#limitSafe(key, cost, now), (d) => {
        if (d.allowed) return d
        if (d.retryAfterMs > maxWait) throw new RateLimitError(d)
        this.#denied--
        const w = this.#waiter(key, cost, false, now + d.retryAfterMs, undefined)
        w.deadline = now + maxWait
        return this.#enqueue(w, signal)
      })
    } catch (error) {
      return Promise.reject(error)
    }
  }

  /** #reject fails an acquire() at once, with a denied decision carrying `waitMs`. */
  #reject(key: string, now: number, waitMs: number, why: string | undefined): Promise<never> {
    this.#denied++
    return Promise.resolve(this.#peekSafe(key, now)).then((d) => {
      const deniedDecision = denied(d, waitMs)
      throw new RateLimitError(
        deniedDecision,
        why === undefined ? undefined : `rate limited: ${why}`,
      )
    })
  }

  #limitSafe(key: string, cost: number, now: number): MaybePromise<Decision> {
    const failed = (error: unknown) => this.#failed(error, key, cost, now)
    try {
      const d = this.#ns.limit(key, cost, now)
      return isPromise(d) ? Promise.resolve(d).then((v) => this.#count(v), failed) : this.#count(d)
    } catch (error) {
      return failed(error)
    }
  }

  #peekSafe(key: string, now: number): MaybePromise<Decision> {
    const unknown = () => decision(false, this.#policy.limit, 0, 0, 0)
    try {
      const d = this.#ns.peek(key, now)
      return isPromise(d) ? Promise.resolve(d).catch(unknown) : d
    } catch {
      return unknown()
    }
  }

  #waiter(
    key: string,
    cost: number,
    reserved: boolean,
    at: number,
    grant: Decision | undefined,
  ): Waiter {
    return {
      key,
      cost,
      reserved,
      at,
      deadline: Number.POSITIVE_INFINITY,
      first: false,
      grant,
      since: this.#time.last,
      done: false,
      resolve: () => {},
      reject: () => {},
      signal: undefined,
      onAbort: undefined,
    }
  }

  #enqueue(w: Waiter, signal: AbortSignal | undefined): Promise<Decision> {
    return new Promise<Decision>((resolve, reject) => {
      w.resolve = resolve
      w.reject = reject
      let queue = this.#queues.get(w.key)
      if (queue === undefined) {
        queue = { waiters: [], busy: false }
        this.#queues.set(w.key, queue)
      }
      queue.waiters.push(w)
      this.#waiting++
      if (w.at !== Number.POSITIVE_INFINITY)
        this.#scheduler.schedule(w.at, { waiter: w, deadline: false })
      // A first try in flight is not cut off: its answer says whether it can wait (#settle).
      if (w.deadline !== Number.POSITIVE_INFINITY && !w.first)
        this.#scheduler.schedule(w.deadline, { waiter: w, deadline: true })
      if (signal !== undefined) {
        w.signal = signal
        w.onAbort = () => this.#abort(w)
        signal.addEventListener("abort", w.onAbort, { once: true })
      }
    })
  }

  /** #leave takes a waiter out of its queue; it reports whether it was the head. */
  #leave(w: Waiter): boolean {
    w.done = true
    this.#waiting--
    // With nobody waiting every scheduled entry is stale: drop them and the timer.
    if (this.#waiting === 0) this.#scheduler.clear()
    if (w.signal !== undefined && w.onAbort !== undefined)
      w.signal.removeEventListener("abort", w.onAbort)
    const queue = this.#queues.get(w.key)
    if (queue === undefined) return false
    const index = queue.waiters.indexOf(w)
    if (index === 0) queue.waiters.shift()
    else if (index > 0) queue.waiters.splice(index, 1)
    if (queue.waiters.length === 0) this.#queues.delete(w.key)
    return index === 0
  }

  #run(job: Job, at: number): void {
    const w = job.waiter
    if (w.done) return
    if (job.deadline) {
      const wasHead = this.#leave(w)
      this.#denied++
      const now = this.#now()
      w.reject(
        new RateLimitError(
          decision(false, this.#policy.limit, 0, Math.max(0, w.at - now), 0),
          "rate limited: maxWait elapsed in the queue",
        ),
      )
      if (wasHead) this.#wake(w.key)
      return
    }
    if (w.at !== at) return
    if (w.reserved) {
      this.#leave(w)
      this.#allowed++
      const d = w.grant!
      w.resolve({ ...d, resetAfterMs: Math.max(0, d.resetAfterMs - (this.#now() - w.since)) })
      return
    }
    this.#wake(w.key)
  }

  /** #wake lets the head waiter of a key try again now (non-reserved waiters). */
  #wake(key: string): void {
    const queue = this.#queues.get(key)
    if (queue === undefined || queue.busy || queue.waiters[0].reserved) return
    queue.busy = true
    const step = (): void => {
      while (queue.waiters.length > 0) {
        const w = queue.waiters[0]
        const now = this.#now()
        let result: MaybePromise<Decision>
        try {
          result = this.#ns.limit(w.key, w.cost, now)
        } catch (error) {
          result = Promise.reject(error)
        }
        if (isPromise(result)) {
          Promise.resolve(result)
            .catch((error) => this.#failed(error, w.key, w.cost, now))
            .then(
              (d) => {
                if (this.#settle(w, d, now)) step()
                else queue.busy = false
              },
              (error) => {
                if (!w.done) {
                  this.#leave(w)
                  w.reject(error)
                }
                step()
              },
            )
          return
        }
        if (!this.#settle(w, result, now)) break
      }
      queue.busy = false
    }
    step()
  }

  /** #settle resolves the head waiter if admitted (true), or schedules its next try. */
  #settle(w: Waiter, d: Decision, now: number): boolean {
    if (w.done) {
      // Aborted while the store answered: give back what it took.
      if (d.allowed && d.lease !== undefined) void this.#ns.release(w.key, d.lease.id, now)
      return true
    }
    if (d.allowed) {
      this.#leave(w)
      w.resolve(this.#count(d))
      return true
    }
    if (w.cost > this.#policy.limit) {
      // setPolicy lowered the limit below this waiter's cost after it queued: it can never
      // be admitted, and would otherwise try again at every refill, for ever.
      this.#leave(w)
      this.#denied++
      w.reject(
        new RateLimitError(
          d,
          `rate limited: cost ${w.cost} is above the policy's limit of ${this.#policy.limit} since setPolicy, so it can never be admitted`,
        ),
      )
      return true
    }
    if (w.first && now + d.retryAfterMs > w.deadline) {
      // As acquire() over a memory store: a wait longer than maxWait is refused at once.
      this.#leave(w)
      this.#denied++
      w.reject(new RateLimitError(d))
      return true
    }
    if (w.first) {
      w.first = false
      if (w.deadline !== Number.POSITIVE_INFINITY)
        this.#scheduler.schedule(w.deadline, { waiter: w, deadline: true })
    }
    w.at = now + Math.max(d.retryAfterMs, 1e-3)
    this.#scheduler.schedule(w.at, { waiter: w, deadline: false })
    return false
  }

  /**
   * #abort takes an aborted waiter out. A token-bucket waiter's reservation is given back,
   * and over a synchronous store the waiters behind it are re-reserved, so they move up.
   */
  #abort(w: Waiter): void {
    if (w.done) return
    const queue = this.#queues.get(w.key)
    const behind = queue === undefined ? [] : queue.waiters.slice(queue.waiters.indexOf(w) + 1)
    const wasHead = this.#leave(w)
    w.reject(w.signal!.reason)
    const now = this.#now()
    if (!w.reserved) {
      if (wasHead) this.#wake(w.key)
      return
    }
    // The policy changed kind since this waiter reserved: nothing to give back here.
    if (this.#policy.kind !== "tokenBucket") return
    if (!this.#sync) {
      Promise.resolve(this.#ns.cancel(w.key, w.cost, w.at, now)).catch(() => {})
      return
    }
    for (let i = behind.length - 1; i >= 0; i--)
      this.#ns.cancel(w.key, behind[i].cost, behind[i].at, now)
    this.#ns.cancel(w.key, w.cost, w.at, now)
    for (const b of behind) {
      const grant = this.#ns.reserve(w.key, b.cost, now, Number.POSITIVE_INFINITY) as Grant
      b.at = grant.executeAt
      b.grant = grant.decision
      b.since = now
      this.#scheduler.schedule(b.at, { waiter: b, deadline: false })
    }
  }
}

/**
 * createLimiter builds a Limiter for one policy.
 *
 * @example
 * const limiter = createLimiter({ policy: tokenBucket({ rate: 10, burst: 20 }) })
 * const d = limiter.limit(userId)
 * if (!d.allowed) reply(429, { retryAfterMs: d.retryAfterMs })
 */
export function createLimiter(options: LimiterOptions & { store?: SyncStore }): Limiter<true>
export function createLimiter(options: LimiterOptions): Limiter<false>
export function createLimiter(options: LimiterOptions): Limiter<boolean> {
  return new RateLimiter(options)
}
