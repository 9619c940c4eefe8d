import { type Clock, systemClock } from "../clock.js"
import { COST_EPSILON, type Decision, decision, whole } from "../core/decision.js"
import {
  assertPolicy,
  type FixedWindowPolicy,
  type Policy,
  type TokenBucketPolicy,
} from "../core/policy.js"
import { type Grant, tokenBucketLimit, tokenBucketPeek } from "../core/token-bucket.js"
import { type Duration, parseDuration } from "../duration.js"
import { ConfigError, describe } from "../errors.js"
import type {
  Check,
  MaybePromise,
  Namespace,
  NamespaceOptions,
  Store,
  SyncStore,
} from "../stores/store.js"
import { MARGIN_MS } from "./denied-cache.js"

// How a hot key is decided here (the numbers are units of cost):
//
//   pocket   units this process took from the store in one call and has not used yet
//   mirror   the key's state as of the store's last answer (a token bucket's tat; a fixed
//            window's end and what was left in it)
//
// A request is served from the pocket when it holds enough. Otherwise, if the mirror says
// the store cannot give the request's cost, it is denied here (as the store would deny
// it: others only consume more). Otherwise one call asks the store for a new pocket of k
// units, k from the key's rate (or what the mirror says is left, if less). While it is
// out, the key's other requests wait for it and are then decided with its answer, as one
// batch: from the new pocket in arrival order, and if the store had less than a full
// pocket left, the rest are denied; if it had more, each asks the store itself. Over an
// asynchronous store the next pocket is asked for when half of this one is spent, so a
// steadily hot key rarely waits. Cold keys (k below minLease) go straight to the store.
//
// Over-admission bound. Count the units in the store plus those in pockets: every unit
// served left that sum, the store refills it at the policy's rate only, and each pocket
// holds at most kMax. So the fleet acts like the policy with up to N * kMax more capacity
// (N processes holding pockets on the key): in any interval it admits at most N * kMax
// more than the exact policy would. Fixed-window pockets end with their window and are
// given back only within it, so with clocks that agree a window admits exactly its
// limit; clocks that disagree by d let pockets spill up to d into the next window, still
// within N * kMax.

export interface LocalLeasesOptions {
  /**
   * period: how long a pocket lives before its unused units go back to the store, and the
   * span over which a key's rate is measured. Default "100ms".
   */
  period?: Duration
  /**
   * maxShare: a pocket holds at most this fraction of the policy's limit (burst or window
   * limit): kMax = floor(maxShare * limit). N processes over-admit at most N * kMax.
   * Default 0.01.
   */
  maxShare?: number
  /**
   * minLease: a key gets pockets only when rate * period reaches this many units; below it
   * (a cold key) each request is the store's. Default 4.
   */
  minLease?: number
  /** maxKeys: most keys tracked per namespace (rates and pockets); default 10,000. */
  maxKeys?: number
  /** clock: read by flush() and close() for the time of giving back; default systemClock. */
  clock?: Clock
}

export interface LocalLeasesStats {
  /** leases: pockets taken from the store. */
  leases: number
  /** localAllowed / localDenied: requests decided here, without a store call. */
  localAllowed: number
  localDenied: number
  /** forwarded: requests whose answer is the store's own (cold keys, other kinds, request ids). */
  forwarded: number
  /** storeCalls: calls made to the store: pockets, forwarded requests, give-backs. */
  storeCalls: number
  /** returnedUnits: unused units given back to the store. */
  returnedUnits: number
  /** returnErrors: give-backs that failed (those units stay consumed until the state expires). */
  returnErrors: number
  /** pockets: keys holding units now. */
  pockets: number
}

/** LocalLeases: a Store whose hot keys are decided from local pockets; see localLeases(). */
export interface LocalLeases extends Store {
  /** store: the store underneath, which holds the authoritative state. */
  readonly store: Store
  /** maxLease: kMax for a policy: the most units one pocket holds (0: never leased). */
  maxLease(policy: Policy): number
  /** flush gives every pocket's unused units back to the store now. */
  flush(): Promise<void>
  /** close flushes and stops leasing: later requests go straight to the store. */
  close(): Promise<void>
  stats(): LocalLeasesStats
}

/** SyncLocalLeases: LocalLeases over a synchronous store, synchronous itself. */
export type SyncLocalLeases = LocalLeases & SyncStore

type Leased = TokenBucketPolicy | FixedWindowPolicy

/** KeyState: one key's rate, pocket and mirror. */
interface KeyState {
  key: string
  /** hits: cost units asked for since `since`; rate: units per ms over the span before. */
  hits: number
  since: number
  rate: number
  /** units: the pocket, >= 0; expiresAt: when it ends (0: no pocket). */
  units: number
  expiresAt: number
  /** pocketWindowEnd (fixed window): the end of the window the pocket was taken in. */
  pocketWindowEnd: number
  /** tat (token bucket mirror): when the bucket is full again as of the store's last answer; 0: unknown. */
  tat: number
  /** windowEnd, avail (fixed window mirror): the window's end (0: unknown) and whole units left in it. */
  windowEnd: number
  avail: number
  /** short: the store's last answer left less than a lease (or than one unit, after a forward). */
  short: boolean
  /** learnedAt: the time of the request the store's last answer was for. */
  learnedAt: number
  /** pending: the pocket call in flight, which the key's other requests wait for. */
  pending: Promise<unknown> | undefined
  /** dead: the key was reset or dropped; answers for this state change nothing. */
  dead: boolean
}

/** Shared: what every namespace of one (prefix, kind) of the wrapper sees. */
interface Shared {
  policy: Leased
  kMax: number
  readonly states: Map<string, KeyState>
  nextSweep: number
  /** ns: the namespace opened last on it, which flush() gives pockets back through. */
  ns: LeaseNamespace | undefined
}

interface Settings {
  periodMs: number
  maxShare: number
  minLease: number
  maxKeys: number
  clock: Clock
}

function isPromise<T>(value: MaybePromise<T>): value is Promise<T> {
  return typeof (value as Promise<T> | undefined)?.then === "function"
}

/** then applies fn to a value now, or to a promise's value when it settles. */
function then<T, U>(value: MaybePromise<T>, fn: (v: T) => MaybePromise<U>): MaybePromise<U> {
  return isPromise(value) ? value.then(fn) : fn(value)
}

const ignore = (): void => {}

class LeaseStore implements LocalLeases {
  readonly synchronous: boolean
  readonly store: Store
  readonly settings: Settings
  readonly shared = new Map<string, Shared>()
  readonly returning = new Set<Promise<unknown>>()
  closed = false
  counts = {
    leases: 0,
    localAllowed: 0,
    localDenied: 0,
    forwarded: 0,
    storeCalls: 0,
    returnedUnits: 0,
    returnErrors: 0,
  }

  constructor(store: Store, settings: Settings) {
    this.store = store
    this.synchronous = store.synchronous
    this.settings = settings
  }

  maxLease(policy: Policy): number {
    if (policy.kind !== "tokenBucket" && policy.kind !== "fixedWindow") return 0
    const k = Math.floor(this.settings.maxShare * policy.limit + COST_EPSILON)
    return k >= this.settings.minLease ? k : 0
  }

  namespace(prefix: string, policy: Policy, options?: NamespaceOptions): Namespace {
    const inner = this.store.namespace(prefix, policy, options)
    // Pockets need a budget that only time gives back: token buckets and fixed windows.
    if (policy.kind !== "tokenBucket" && policy.kind !== "fixedWindow") return inner
    // Pockets (and the denials mirrored from the store) are per policy: two limiters of one
    // prefix with different policies share the store's state, never each other's terms.
    const id = `${policy.kind}:${prefix}:${JSON.stringify(policy)}`
    let shared = this.shared.get(id)
    if (shared === undefined) {
      shared = {
        policy,
        kMax: this.maxLease(policy),
        states: new Map(),
        nextSweep: 0,
        ns: undefined,
      }
      this.shared.set(id, shared)
    }
    return new LeaseNamespace(this, inner, shared)
  }

  /** limitAll goes to the store as is (pockets serve single requests only). */
  limitAll(checks: readonly Check[], now: number): MaybePromise<Decision[]> {
    return this.store.limitAll(
      checks.map((check) =>
        check.namespace instanceof LeaseNamespace && check.namespace.owner === this
          ? { ...check, namespace: check.namespace.inner }
          : check,
      ),
      now,
    )
  }

  flush(): Promise<void> {
    const now = this.settings.clock.now()
    for (const shared of this.shared.values()) shared.ns?.flushAll(now)
    return Promise.all([...this.returning]).then(ignore)
  }

  close(): Promise<void> {
    this.closed = true
    return this.flush()
  }

  stats(): LocalLeasesStats {
    let pockets = 0
    for (const shared of this.shared.values()) {
      for (const s of shared.states.values()) if (s.units > 0) pockets++
    }
    return { ...this.counts, pockets }
  }
}

class LeaseNamespace implements Namespace {
  readonly owner: LeaseStore
  readonly inner: Namespace
  private readonly shared: Shared
  private readonly scratch = new Float64Array(1)

  constructor(owner: LeaseStore, inner: Namespace, shared: Shared) {
    this.owner = owner
    this.inner = inner
    this.shared = shared
    shared.ns = this
  }

  limit(key: string, cost: number, now: number, requestId?: string): MaybePromise<Decision> {
    const shared = this.shared
    if (this.owner.closed || requestId !== undefined || shared.kMax === 0) {
      return this.forward(undefined, key, cost, now, requestId)
    }
    if (now >= shared.nextSweep) this.sweep(now)
    let s = shared.states.get(key)
    if (s === undefined) s = this.add(key, now)
    const periodMs = this.owner.settings.periodMs
    if (now - s.since >= periodMs) {
      s.rate = s.hits / (now - s.since)
      s.hits = 0
      s.since = now
    }
    s.hits += cost
    return this.decide(s, cost, now)
  }

  /** decide answers one request of a tracked key (again after waiting for a pocket call). */
  private decide(s: KeyState, cost: number, now: number, waited = false): MaybePromise<Decision> {
    if (s.expiresAt !== 0 && now >= s.expiresAt) this.end(s, now)
    if (s.expiresAt !== 0 && s.units + COST_EPSILON >= cost) {
      s.units = Math.max(0, s.units - cost)
      this.owner.counts.localAllowed++
      if (s.pending === undefined && !this.owner.synchronous) this.refill(s, now)
      return this.answer(s, now)
    }
    const k = this.leaseSize(s, cost)
    if (k === 0) return this.forward(s, s.key, cost, now, undefined)
    const denied = this.mirrorDenial(s, cost, now)
    if (denied !== undefined) {
      this.owner.counts.localDenied++
      return denied
    }
    // The store was running short at its last answer. A request that waited for that
    // answer is decided with it, as if in one batch with that call. One that finds the
    // next call already out is not queued behind it (a saturated key's surplus), while
    // that answer is recent: within a period, and within its window.
    if (s.short && (waited || (s.pending !== undefined && this.recentlyShort(s, now)))) {
      this.owner.counts.localDenied++
      return this.shortDenial(s, cost, now)
    }
    // The store had plenty, but the pocket it gave is spent: ask for this request alone,
    // so that no request waits for more than one answer besides its own.
    if (waited) return this.forward(s, s.key, cost, now, undefined)
    if (s.pending !== undefined) {
      const again = () => this.decide(this.current(s, now), cost, now, true)
      return s.pending.then(again, again)
    }
    const r = this.take(s, cost, Math.max(cost, Math.min(k, this.storeAvail(s, now))), now, 0)
    if (isPromise(r)) {
      s.pending = r
      const done = () => {
        if (s.pending === r) s.pending = undefined
      }
      r.then(done, done)
    }
    return r
  }

  /** current: the live state of s's key (s itself unless it was reset or dropped meanwhile). */
  private current(s: KeyState, now: number): KeyState {
    if (!s.dead) return s
    return this.shared.states.get(s.key) ?? this.add(s.key, now)
  }

  /** leaseSize: k for the key's rate, capped at kMax; 0 for a cold key or a cost k cannot cover. */
  private leaseSize(s: KeyState, cost: number): number {
    const k = Math.min(this.shared.kMax, Math.floor(s.rate * this.owner.settings.periodMs))
    return k >= this.owner.settings.minLease && k >= cost ? k : 0
  }

  /**
   * take asks the store for `size` units (>= cost): the request's cost plus a pocket. When
   * refused, it asks for what the store said was left (once), and last of all for the
   * request's cost alone, so the request's own answer is the store's.
   */
  private take(
    s: KeyState,
    cost: number,
    size: number,
    now: number,
    attempt: number,
  ): MaybePromise<Decision> {
    const counts = this.owner.counts
    counts.storeCalls++
    return then(this.inner.limit(s.key, size, now), (d) => {
      // Reset meanwhile: the store forgot what this call took, and so does the pocket.
      if (s.dead) return d
      this.learn(s, d, now, this.leaseSize(s, cost))
      if (d.allowed) {
        if (size > cost) this.fill(s, size - cost, now)
        else counts.forwarded++
        return this.answer(s, now)
      }
      if (size <= cost) {
        counts.forwarded++
        return d
      }
      const denied = this.mirrorDenial(s, cost, now)
      if (denied !== undefined) {
        counts.localDenied++
        return denied
      }
      const next = attempt === 0 ? Math.max(cost, Math.min(d.remaining, size - 1)) : cost
      return this.take(s, cost, next, now, attempt + 1)
    })
  }

  /** fill puts `units` just granted by the store (and learned) into the key's pocket. */
  private fill(s: KeyState, units: number, now: number): void {
    this.owner.counts.leases++
    const p = this.shared.policy
    s.expiresAt = now + this.owner.settings.periodMs
    if (p.kind === "fixedWindow") {
      // Units left from an earlier window count for nothing now.
      if (Math.abs(s.pocketWindowEnd - s.windowEnd) >= p.windowMs / 2) s.units = 0
      s.expiresAt = Math.min(s.expiresAt, s.windowEnd)
      s.pocketWindowEnd = s.windowEnd
    }
    s.units += units
  }

  /**
   * refill asks for the next pocket while half of this one is left (asynchronous stores
   * only), so that a hot key's requests need not wait for a round trip. It asks for what
   * tops the pocket up to k, no more, so a pocket never holds more than kMax.
   */
  private refill(s: KeyState, now: number): void {
    const k = this.leaseSize(s, 0)
    if (k === 0 || s.units >= k / 2) return
    const size = Math.floor(Math.min(k - s.units, this.storeAvail(s, now)))
    if (size < k / 4) return
    this.owner.counts.storeCalls++
    let call: MaybePromise<Decision>
    try {
      call = this.inner.limit(s.key, size, now)
    } catch {
      return // the next request that needs the store finds out
    }
    const r = Promise.resolve(call).then(
      (d) => {
        if (s.dead) return
        this.learn(s, d, now, k)
        if (d.allowed) this.fill(s, size, now)
      },
      ignore, // the next request that needs the store finds out
    )
    s.pending = r
    r.then(() => {
      if (s.pending === r) s.pending = undefined
    })
  }

  /** forward sends a request to the store and returns its answer, keeping the mirror. */
  private forward(
    s: KeyState | undefined,
    key: string,
    cost: number,
    now: number,
    requestId: string | undefined,
  ): MaybePromise<Decision> {
    const counts = this.owner.counts
    counts.forwarded++
    counts.storeCalls++
    const d = this.inner.limit(key, cost, now, requestId)
    if (s === undefined) return d
    return then(d, (v) => {
      if (!s.dead) this.learn(s, v, now)
      return v
    })
  }

  /**
   * learn keeps the mirror: the key's state as the store's answer at `now` describes it,
   * and whether it had less than `need` units left.
   */
  private learn(s: KeyState, d: Decision, now: number, need = 1): void {
    s.short = d.remaining < need
    s.learnedAt = now
    if (this.shared.policy.kind === "tokenBucket") {
      s.tat = now + d.resetAfterMs
    } else if (d.resetAfterMs > 0) {
      s.windowEnd = now + d.resetAfterMs
      s.avail = d.remaining
    } else {
      s.windowEnd = 0
    }
  }

  /** storeAvail: whole units the mirror says the store has now (an upper bound). */
  private storeAvail(s: KeyState, now: number): number {
    const p = this.shared.policy
    if (p.kind === "tokenBucket") {
      this.scratch[0] = s.tat
      return tokenBucketPeek(p, this.scratch, 0, now).remaining
    }
    return now < s.windowEnd ? s.avail : p.limit
  }

  /**
   * mirrorDenial is a denial when the mirror shows that the store cannot give `cost` now
   * (judged MARGIN_MS later, to be sure), else undefined.
   */
  private mirrorDenial(s: KeyState, cost: number, now: number): Decision | undefined {
    const p = this.shared.policy
    const pocket = whole(s.units)
    if (p.kind === "tokenBucket") {
      if (s.tat <= now) return undefined
      this.scratch[0] = s.tat
      const d = tokenBucketLimit(p, this.scratch, 0, now + MARGIN_MS, cost)
      if (d.allowed) return undefined
      return decision(
        false,
        p.limit,
        Math.min(p.limit, d.remaining + pocket),
        d.retryAfterMs + MARGIN_MS,
        s.tat - now,
      )
    }
    if (now >= s.windowEnd - MARGIN_MS || cost < s.avail + 1) return undefined
    const left = s.windowEnd - now
    return decision(false, p.limit, Math.min(p.limit, s.avail + pocket), left, left)
  }

  /** recentlyShort: the store's last answer, which left it short, still describes the key. */
  private recentlyShort(s: KeyState, now: number): boolean {
    if (now - s.learnedAt >= this.owner.settings.periodMs) return false
    return this.shared.policy.kind === "tokenBucket" || now < s.windowEnd - MARGIN_MS
  }

  /** shortDenial: a denial for a request that waited for an answer that left the store short. */
  private shortDenial(s: KeyState, cost: number, now: number): Decision {
    const p = this.shared.policy
    const pocket = whole(s.units)
    if (p.kind === "tokenBucket") {
      this.scratch[0] = s.tat
      const d = tokenBucketLimit(p, this.scratch, 0, now, cost)
      // A bucket refills continuously: by now the cost may be back already, in which case
      // the hint is the time the cost takes to come back.
      const retry = d.allowed ? cost * p.intervalMs : d.retryAfterMs
      return decision(false, p.limit, pocket, retry, Math.max(0, s.tat - now))
    }
    const left = Math.max(0, s.windowEnd - now)
    return decision(false, p.limit, Math.min(p.limit, s.avail + pocket), left, left)
  }

  /** answer is the decision for a request admitted at `now`, as this process knows the key. */
  private answer(s: KeyState, now: number): Decision {
    const p = this.shared.policy
    const remaining = Math.min(p.limit, whole(s.units) + this.storeAvail(s, now))
    const end = p.kind === "tokenBucket" ? s.tat : s.windowEnd
    return decision(true, p.limit, remaining, 0, Math.max(0, end - now))
  }

  /** end closes a key's pocket, giving unused units back while they still count. */
  private end(s: KeyState, now: number): void {
    const units = s.units
    s.units = 0
    s.expiresAt = 0
    if (units <= COST_EPSILON || s.dead) return
    // A fixed window's pocket is worth something only in its own window: given back
    // later, it would make room in the next one.
    if (this.shared.policy.kind === "fixedWindow" && now >= s.pocketWindowEnd - MARGIN_MS) return
    const owner = this.owner
    owner.counts.returnedUnits += units
    owner.counts.storeCalls++
    let r: MaybePromise<Decision>
    try {
      r = this.inner.adjust(s.key, -units, now)
    } catch {
      owner.counts.returnErrors++
      return
    }
    if (!isPromise(r)) {
      if (!s.dead) this.learn(s, r, now)
      return
    }
    const p = r.then(
      (d) => {
        if (!s.dead) this.learn(s, d, now)
      },
      () => {
        owner.counts.returnErrors++
      },
    )
    owner.returning.add(p)
    p.then(() => owner.returning.delete(p))
  }

  /** add starts tracking a key, making room when maxKeys are tracked. */
  private add(key: string, now: number): KeyState {
    const states = this.shared.states
    if (states.size >= this.owner.settings.maxKeys) {
      this.sweep(now)
      if (states.size >= this.owner.settings.maxKeys) {
        // Drop the key tracked longest (Map order), giving its pocket back first.
        const oldest = states.values().next()
        if (!oldest.done) this.drop(oldest.value, now)
      }
    }
    const s: KeyState = {
      key,
      hits: 0,
      since: now,
      rate: 0,
      units: 0,
      expiresAt: 0,
      pocketWindowEnd: 0,
      tat: 0,
      windowEnd: 0,
      avail: 0,
      short: false,
      learnedAt: 0,
      pending: undefined,
      dead: false,
    }
    states.set(key, s)
    return s
  }

  private drop(s: KeyState, now: number): void {
    this.end(s, now)
    s.dead = true
    this.shared.states.delete(s.key)
  }

  /** sweep ends expired pockets and forgets keys idle for a few periods (once per period). */
  private sweep(now: number): void {
    const periodMs = this.owner.settings.periodMs
    this.shared.nextSweep = now + periodMs
    for (const s of this.shared.states.values()) {
      if (s.expiresAt !== 0 && now >= s.expiresAt) this.end(s, now)
      if (s.expiresAt === 0 && s.pending === undefined && now - s.since >= 4 * periodMs) {
        this.drop(s, now)
      }
    }
  }

  /** flushAll gives every pocket back now. */
  flushAll(now: number): void {
    for (const s of this.shared.states.values()) if (s.expiresAt !== 0) this.end(s, now)
  }

  peek(key: string, now: number): MaybePromise<Decision> {
    const s = this.shared.states.get(key)
    return then(this.inner.peek(key, now), (d) => {
      if (s === undefined || s.dead) return d
      this.learn(s, d, now)
      const pocket = s.expiresAt > now ? whole(s.units) : 0
      return { ...d, remaining: Math.min(d.limit, d.remaining + pocket) }
    })
  }

  reset(key: string): MaybePromise<void> {
    const s = this.shared.states.get(key)
    if (s !== undefined) {
      // The store forgets what the pocket took: so must the pocket.
      s.units = 0
      s.expiresAt = 0
      s.dead = true
      this.shared.states.delete(key)
    }
    return this.inner.reset(key)
  }

  reserve(key: string, cost: number, now: number, maxWaitMs: number): MaybePromise<Grant> {
    const s = this.shared.states.get(key)
    return then(this.inner.reserve(key, cost, now, maxWaitMs), (grant) => {
      if (s !== undefined && !s.dead) this.learn(s, grant.decision, now)
      return grant
    })
  }

  cancel(key: string, cost: number, executeAt: number, now: number): MaybePromise<void> {
    const s = this.shared.states.get(key)
    // Capacity comes back: the mirror would be too strict, so it is forgotten.
    if (s !== undefined) {
      s.tat = 0
      s.windowEnd = 0
    }
    return this.inner.cancel(key, cost, executeAt, now)
  }

  release(key: string, leaseId: string, now: number): MaybePromise<void> {
    return this.inner.release(key, leaseId, now)
  }

  setPolicy(policy: Policy, now: number): void {
    assertPolicy(policy)
    // Pockets are given back under the policy they were taken under (a store applies
    // calls in order), then every mirror is forgotten.
    this.flushAll(now)
    this.inner.setPolicy(policy, now)
    const shared = this.shared
    shared.policy = policy as Leased
    shared.kMax = this.owner.maxLease(policy)
    for (const s of shared.states.values()) {
      s.tat = 0
      s.windowEnd = 0
    }
  }

  adjust(key: string, delta: number, now: number): MaybePromise<Decision> {
    const s = this.shared.states.get(key)
    return then(this.inner.adjust(key, delta, now), (d) => {
      if (s !== undefined && !s.dead) this.learn(s, d, now)
      return d
    })
  }

  size(): number {
    return this.inner.size()
  }
}

/**
 * localLeases wraps a store (a RedisStore in practice) so that a process serves a hot
 * key's decisions locally: one store call takes a lease of k units of the key's budget,
 * and the next requests are admitted from it with no round trip, until it is spent or
 * `period` ends; unused units then go back to the store (adjust). k follows the key's
 * rate in this process (about rate * period), at most kMax = floor(maxShare * limit);
 * a key whose k would be below `minLease` is cold and each of its requests is the
 * store's. Applies to token buckets and fixed windows; other policies pass through.
 *
 * - Bound: with N processes leasing one key, the admitted total in any interval exceeds
 *   what the exact policy allows by at most N * kMax units (see docs/hot-keys.md). A
 *   fixed window whose clocks agree with the store's admits exactly its limit.
 * - Denials: when the store cannot give a lease, the process asks for what is left, then
 *   for the request's cost alone. What the store said is remembered (its bucket's tat, or
 *   its window's end and count), and a request that it shows cannot be admitted is denied
 *   locally, as the denied cache does. Requests that arrive while a lease call is out
 *   wait for its answer (one call in flight per key) and are decided with it: served from
 *   the new pocket, denied if the store had less than a full pocket left, otherwise sent
 *   to the store. No request waits for more than one answer besides its own.
 * - Under-admission: units in pockets are unavailable to other processes until used or
 *   given back (at most N * kMax), and a denial remembered here outlives a reset or
 *   refund made by another process until the remembered time.
 * - Requests with a `requestId` and limitAll() go to the store. Local reset() drops the
 *   key's pocket; setPolicy() gives pockets back first.
 * - Call flush() (or close()) at shutdown so that unused units are not held until their
 *   state expires. Pockets are otherwise given back lazily, when the key or any key of
 *   the namespace is next used after they end; no timers run.
 *
 * @example
 * const store = localLeases(new RedisStore({ client }), { period: "100ms", maxShare: 0.01 })
 * const limiter = createLimiter({ policy: tokenBucket({ rate: 50_000 }), store })
 * process.on("SIGTERM", () => store.close())
 */
export function localLeases(store: SyncStore, options?: LocalLeasesOptions): SyncLocalLeases
export function localLeases(store: Store, options?: LocalLeasesOptions): LocalLeases
export function localLeases(store: Store, options: LocalLeasesOptions = {}): LocalLeases {
  if (typeof store !== "object" || store === null || typeof store.namespace !== "function") {
    throw new ConfigError("store", `expected a Store (with namespace()), got ${describe(store)}`)
  }
  if (typeof options !== "object" || options === null) {
    throw new ConfigError("localLeases", `expected an options object, got ${describe(options)}`)
  }
  const periodMs = parseDuration(options.period ?? 100, "period")
  const maxShare = options.maxShare ?? 0.01
  if (typeof maxShare !== "number" || !(maxShare > 0 && maxShare <= 1)) {
    throw new ConfigError("maxShare", `expected a number in (0, 1], got ${describe(maxShare)}`)
  }
  const minLease = options.minLease ?? 4
  if (typeof minLease !== "number" || !Number.isFinite(minLease) || minLease < 1) {
    throw new ConfigError("minLease", `expected a finite number >= 1, got ${describe(minLease)}`)
  }
  const maxKeys = options.maxKeys ?? 10_000
  if (typeof maxKeys !== "number" || !Number.isInteger(maxKeys) || maxKeys < 1) {
    throw new ConfigError("maxKeys", `expected a whole number >= 1, got ${describe(maxKeys)}`)
  }
  const clock = options.clock ?? systemClock
  if (typeof clock !== "object" || clock === null || typeof clock.now !== "function") {
    throw new ConfigError("clock", `expected a clock with now(), got ${describe(clock)}`)
  }
  return new LeaseStore(store, { periodMs, maxShare, minLease, maxKeys, clock })
}
