import {
  cloneLeaseState,
  concurrencyEmpty,
  concurrencyLimit,
  concurrencyPeek,
  concurrencyRelease,
  type LeaseState,
  newLeaseState,
} from "../core/concurrency.js"
import type { Decision } from "../core/decision.js"
import { NUMERIC_KERNELS as NUMERIC, type NumericKernel } from "../core/numeric-kernels.js"
import { assertPolicy, type Policy } from "../core/policy.js"
import {
  cloneLogState,
  type LogState,
  newLogState,
  slidingWindowLogAdjust,
  slidingWindowLogEmpty,
  slidingWindowLogLimit,
  slidingWindowLogPeek,
} from "../core/sliding-window-log.js"
import {
  type Grant,
  tokenBucketCancel,
  tokenBucketConvert,
  tokenBucketReserve,
} from "../core/token-bucket.js"
import { ArgumentError, ConfigError, describe, UnsupportedError } from "../errors.js"
import { type KeyBudget, KeyTable } from "./key-table.js"
import type { Check, SyncNamespace, SyncStore } from "./store.js"

export interface MemoryStoreOptions {
  /** maxKeys: the most keys held across all namespaces; beyond it the least recently used key is dropped. Default 1,000,000. */
  maxKeys?: number
}

interface Remembered {
  decision: Decision
  expiresAt: number
}

/** STATE_WIDTH: room for the numeric state of any kind (numbers per key). */
const STATE_WIDTH = Math.max(...Object.values(NUMERIC).map((k) => k.width))

/** FAST_CHECKS: the most checks limitAll decides on its numeric pass (a multi-tier check has a few). */
const FAST_CHECKS = 16

/**
 * Touch: one check of a limitAll in progress and how to take it back. Reused from call to
 * call (the store is synchronous, so one call runs at a time).
 */
class Touch {
  ns!: MemoryNamespace
  key = ""
  /** slot: the key's slot when it had state, else -1 (its state waits in `numbers` / `object` of `owner`). */
  slot = -1
  /** owner: for a key with no state yet, the first touch of that key in this call (it holds the state). */
  owner: Touch = this
  /** numbers: the slot's numbers before this check, or (slot -1) the new key's state. */
  readonly numbers = new Float64Array(STATE_WIDTH)
  /** object: the state object before this check (a copy), or (slot -1) the new key's state. */
  object: unknown
  /** lease: the lease a concurrency check takes once the whole call is admitted. */
  lease: Decision["lease"]

  release(): void {
    this.object = undefined
    this.lease = undefined
    this.owner = this
  }
}

/** Shared is the state behind one (prefix, kind): every namespace opened on it sees it. */
interface Shared {
  table: KeyTable<unknown>
  /** requests: admitted decisions by request id, oldest first, for idempotent retries. */
  requests: Map<string, Remembered>
  policy: Policy
  /** leases: the last lease id handed out (concurrency). */
  leases: number
}

/**
 * MemoryStore: the embedded default store. Synchronous, compact (about 75 bytes per
 * token-bucket key, key string included), no timer per key. State that carries no
 * information is dropped lazily; at `maxKeys` the least recently used key is dropped, so a
 * flood of distinct keys cannot exhaust memory. Keys are opaque: "__proto__" is a key like
 * any other.
 */
export class MemoryStore implements SyncStore {
  readonly synchronous = true as const
  readonly maxKeys: number
  private readonly shared = new Map<string, Shared>()
  private readonly budget: KeyBudget
  /** touches: the records of the checks of the limitAll in progress. */
  private readonly touches: Touch[] = []
  /** fastSlots, fastStates: scratch of limitAll's numeric pass (NumericNamespace.limitDistinct). */
  private readonly fastSlots = new Int32Array(FAST_CHECKS)
  private readonly fastStates = new Float64Array(FAST_CHECKS * STATE_WIDTH)

  constructor(options: MemoryStoreOptions = {}) {
    if (typeof options !== "object" || options === null) {
      throw new ConfigError("MemoryStore", `expected an options object, got ${describe(options)}`)
    }
    const maxKeys = options.maxKeys ?? 1_000_000
    if (typeof maxKeys !== "number" || !Number.isInteger(maxKeys) || maxKeys < 1) {
      throw new ConfigError("maxKeys", `expected a whole number >= 1, got ${describe(maxKeys)}`)
    }
    this.maxKeys = maxKeys
    this.budget = {
      size: 0,
      maxKeys,
      evictElsewhere: () => {
        let largest: KeyTable<unknown> | undefined
        for (const s of this.shared.values()) {
          if (largest === undefined || s.table.size > largest.size) largest = s.table
        }
        largest?.evictOldest()
      },
    }
  }

  /** size is the number of keys held across all namespaces. */
  get size(): number {
    return this.budget.size
  }

  /**
   * limitAll admits every check or none, in one pass: the checks run in order on the live
   * state (a new key's state waits aside until the end), each remembering what it
   * changed, so a check sees what earlier checks of the same call on the same key took.
   * When one is denied, every change is taken back, newest first, and the decisions are
   * those of that run: for distinct keys, whether each check alone would pass.
   */
  limitAll(checks: readonly Check[], now: number): Decision[] {
    const n = checks.length
    let numeric = n <= FAST_CHECKS
    for (let i = 0; i < n; i++) {
      const ns = checks[i].namespace
      if (!(ns instanceof MemoryNamespace) || ns.store !== this) {
        throw new ArgumentError(
          `checks[${i}].namespace`,
          "expected a namespace of this MemoryStore",
        )
      }
      if (!(ns instanceof NumericNamespace)) numeric = false
    }
    if (numeric) {
      // Token buckets, windows and counters on distinct keys (a multi-tier check): decided
      // on the live state directly.
      const d = NumericNamespace.limitDistinct(checks, now, this.fastSlots, this.fastStates)
      if (d !== undefined) return d
    }
    const touches = this.touches
    while (touches.length < n) touches.push(new Touch())
    const decisions: Decision[] = []
    let allowed = true
    let staged = 0
    try {
      for (; staged < n; staged++) {
        const c = checks[staged]
        const t = touches[staged]
        const ns = c.namespace as unknown as MemoryNamespace
        const d = ns.stage(t, c.key, c.cost, now, touches, staged)
        decisions.push(d)
        if (!d.allowed) allowed = false
      }
      if (allowed) {
        for (let i = 0; i < n; i++) touches[i].ns.commit(touches[i], decisions[i], now)
      }
    } finally {
      if (!allowed || staged < n)
        for (let i = staged - 1; i >= 0; i--) touches[i].ns.undo(touches[i])
      for (let i = 0; i < staged; i++) touches[i].release()
    }
    return decisions
  }

  /**
   * lanes prepares repeated all-or-nothing checks on a fixed list of namespaces of this
   * store (a multi-tier check's tiers), or answers undefined when they do not qualify:
   * each must be a token bucket, fixed window or sliding window counter of this store, and
   * no two may share a table (a prefix and kind), so no two checks share a key.
   * (For the tiered limiter's synchronous path; not part of the Store interface.)
   * @internal
   */
  lanes(namespaces: readonly unknown[]): Lanes | undefined {
    const tables = new Set<KeyTable<unknown>>()
    for (const ns of namespaces) {
      if (!(ns instanceof NumericNamespace) || ns.store !== this) return undefined
      const table = ns.lane().table
      if (tables.has(table)) return undefined
      tables.add(table)
    }
    return new Lanes(namespaces.map((ns) => (ns as NumericNamespace).lane()))
  }

  namespace(prefix: string, policy: Policy): SyncNamespace {
    assertPolicy(policy)
    if (typeof prefix !== "string")
      throw new ConfigError("prefix", `expected a string, got ${describe(prefix)}`)
    const id = `${policy.kind}:${prefix}`
    let shared = this.shared.get(id)
    if (shared === undefined) {
      const created: Shared = { table: undefined as never, requests: new Map(), policy, leases: 0 }
      created.table = this.table(created)
      shared = created
      this.shared.set(id, shared)
    }
    if (policy.kind === "slidingWindowLog") return new LogNamespace(this, shared, policy)
    if (policy.kind === "concurrency") return new LeaseNamespace(this, shared, policy)
    return new NumericNamespace(this, shared, policy)
  }

  /** table makes the key table of a (prefix, kind); emptiness is judged by the policy in force. */
  private table(shared: Shared): KeyTable<unknown> {
    const numeric = NUMERIC[shared.policy.kind]
    if (numeric !== undefined) {
      const table: KeyTable<unknown> = new KeyTable(numeric.width, this.budget, (slot, now) =>
        numeric.empty(shared.policy, table.data, slot * numeric.width, now),
      )
      return table
    }
    if (shared.policy.kind === "slidingWindowLog") {
      const table: KeyTable<unknown> = new KeyTable(0, this.budget, (slot, now) =>
        slidingWindowLogEmpty(
          shared.policy as Extract<Policy, { kind: "slidingWindowLog" }>,
          table.objects[slot] as LogState,
          now,
        ),
      )
      return table
    }
    const table: KeyTable<unknown> = new KeyTable(0, this.budget, (slot, now) =>
      concurrencyEmpty(table.objects[slot] as LeaseState, now),
    )
    return table
  }
}

/** The parts every memory namespace shares: request-id memory, reset, size. */
abstract class MemoryNamespace {
  readonly store: MemoryStore
  protected readonly shared: Shared
  protected policy: Policy

  constructor(store: MemoryStore, shared: Shared, policy: Policy) {
    this.store = store
    this.shared = shared
    this.policy = policy
  }

  abstract limitNow(key: string, cost: number, now: number): Decision
  abstract adjust(key: string, delta: number, now: number): Decision
  /**
   * stage: limit() as one check of a limitAll (touches[index] is `t`). A key with state
   * changes in place, `t` keeping what it held before; a new key's state is kept in the
   * touch that first saw it in this call (found among touches[0..index)), not yet placed.
   */
  abstract stage(
    t: Touch,
    key: string,
    cost: number,
    now: number,
    touches: readonly Touch[],
    index: number,
  ): Decision
  /** commit finishes an admitted check: places a new key, hands out a lease. */
  abstract commit(t: Touch, d: Decision, now: number): void
  /** undo puts back the state the key had before this check (touches are undone newest first). */
  abstract undo(t: Touch): void

  /** begin fills in a touch for `key`; it answers the slot (or -1 and sets t.owner). */
  protected begin(t: Touch, key: string, touches: readonly Touch[], index: number): number {
    t.ns = this
    t.key = key
    const slot = this.shared.table.find(key)
    t.slot = slot
    if (slot < 0) {
      for (let j = 0; j < index; j++) {
        const o = touches[j]
        if (o.slot < 0 && o.owner === o && o.key === key && o.ns.shared === this.shared) {
          t.owner = o
          return slot
        }
      }
      t.owner = t
    }
    return slot
  }

  /**
   * beginObject: begin for the kinds whose state is an object. It answers the state the
   * check decides on: the key's own (a copy kept in t.object for undo), or, for a new key,
   * the state held by the first touch of that key in this call (made fresh there).
   */
  protected beginObject<S>(
    t: Touch,
    key: string,
    touches: readonly Touch[],
    index: number,
    fresh: () => S,
    clone: (st: S) => S,
  ): S {
    const slot = this.begin(t, key, touches, index)
    if (slot >= 0) {
      const st = this.shared.table.objects[slot] as S
      t.object = clone(st)
      return st
    }
    if (t.owner === t) t.object = fresh()
    return t.owner.object as S
  }

  limit(key: string, cost: number, now: number, requestId?: string): Decision {
    if (requestId === undefined) return this.limitNow(key, cost, now)
    return this.limitOnce(key, cost, now, requestId)
  }

  /**
   * limitOnce is limit() with a request id (apart from limit(), so that the common call is
   * small enough for the compiler to inline it whole).
   */
  private limitOnce(key: string, cost: number, now: number, requestId: string): Decision {
    const requests = this.shared.requests
    const id = `${key.length}:${key}${requestId}`
    const seen = requests.get(id)
    if (seen !== undefined && seen.expiresAt > now) return { ...seen.decision }
    const d = this.limitNow(key, cost, now)
    if (d.allowed) {
      for (let n = 0; n < 2; n++) {
        const oldest = requests.entries().next()
        if (oldest.done) break
        if (oldest.value[1].expiresAt > now && requests.size < this.store.maxKeys) break
        requests.delete(oldest.value[0])
      }
      requests.delete(id)
      requests.set(id, { decision: { ...d }, expiresAt: now + this.policy.windowMs })
    }
    return d
  }

  reset(key: string): void {
    this.shared.table.delete(key)
  }

  reserve(_key: string, _cost: number, _now: number, _maxWaitMs: number): Grant {
    throw new UnsupportedError(`reserve needs a tokenBucket policy, not ${this.policy.kind}`)
  }

  cancel(_key: string, _cost: number, _executeAt: number, _now: number): void {
    throw new UnsupportedError(`cancel needs a tokenBucket policy, not ${this.policy.kind}`)
  }

  release(_key: string, _leaseId: string, _now: number): void {
    throw new UnsupportedError(`release needs a concurrency policy, not ${this.policy.kind}`)
  }

  setPolicy(policy: Policy, _now: number): void {
    assertPolicy(policy)
    if (policy.kind !== this.policy.kind) {
      throw new ConfigError(
        "policy",
        `a namespace keeps its kind (${this.policy.kind}), got ${policy.kind}`,
      )
    }
    this.policy = policy
    this.shared.policy = policy
  }

  size(): number {
    return this.shared.table.size
  }
}

/** Token bucket, fixed window and sliding window counter: fixed-width numeric state. */
class NumericNamespace extends MemoryNamespace implements SyncNamespace {
  private readonly kernel: NumericKernel
  private readonly scratch: Float64Array

  constructor(store: MemoryStore, shared: Shared, policy: Policy) {
    super(store, shared, policy)
    this.kernel = NUMERIC[policy.kind]
    this.scratch = new Float64Array(this.kernel.width)
  }

  /**
   * limitDistinct is limitAll for checks on numeric namespaces of one store, decided on
   * the live state with no per-check records: each key's state changed in place (its
   * numbers before kept in `states`), a new key's state aside in `states` until every
   * check has passed, everything put back when one denies or throws. It answers undefined,
   * having done nothing, when two checks share a key (limitAll's general pass handles
   * that). `slots` and `states` are scratch for at least checks.length checks.
   */
  static limitDistinct(
    checks: readonly Check[],
    now: number,
    slots: Int32Array,
    states: Float64Array,
  ): Decision[] | undefined {
    const n = checks.length
    for (let i = 1; i < n; i++) {
      const a = checks[i].namespace as NumericNamespace
      for (let j = 0; j < i; j++) {
        const b = checks[j].namespace as NumericNamespace
        if (a.shared === b.shared && checks[i].key === checks[j].key) return undefined
      }
    }
    const decisions: Decision[] = []
    let allowed = true
    let staged = 0
    try {
      for (; staged < n; staged++) {
        const i = staged
        const c = checks[i]
        const ns = c.namespace as NumericNamespace
        const k = ns.kernel
        const table = ns.shared.table
        slots[i] = -1
        const slot = table.find(c.key)
        slots[i] = slot
        const at = i * STATE_WIDTH
        let d: Decision
        if (slot >= 0) {
          const data = table.data
          const from = slot * k.width
          for (let j = 0; j < k.width; j++) states[at + j] = data[from + j]
          d = k.limit(ns.policy, data, from, now, c.cost)
        } else {
          states.fill(0, at, at + STATE_WIDTH)
          d = k.limit(ns.policy, states, at, now, c.cost)
        }
        decisions.push(d)
        if (!d.allowed) allowed = false
      }
    } finally {
      // A check that threw (a calendar window at a time Date cannot hold) changes nothing.
      if (staged < n) NumericNamespace.undo(checks, staged, slots, states)
    }
    if (!allowed) {
      NumericNamespace.undo(checks, n, slots, states)
      return decisions
    }
    for (let i = 0; i < n; i++) {
      if (slots[i] >= 0) continue
      const ns = checks[i].namespace as NumericNamespace
      const k = ns.kernel
      const at = i * STATE_WIDTH
      if (k.empty(ns.policy, states, at, now)) continue
      const table = ns.shared.table
      const to = table.add(checks[i].key, now) * k.width
      const data = table.data
      for (let j = 0; j < k.width; j++) data[to + j] = states[at + j]
    }
    return decisions
  }

  /** undo puts back the state of the first `count` checks' keys, newest first. */
  private static undo(
    checks: readonly Check[],
    count: number,
    slots: Int32Array,
    states: Float64Array,
  ): void {
    for (let i = count - 1; i >= 0; i--) {
      if (slots[i] < 0) continue
      const ns = checks[i].namespace as NumericNamespace
      const w = ns.kernel.width
      const data = ns.shared.table.data
      const to = slots[i] * w
      for (let j = 0; j < w; j++) data[to + j] = states[i * STATE_WIDTH + j]
    }
  }

  /** lane: what Lanes needs of this namespace (its policy as it is now). */
  lane(): Lane {
    return { table: this.shared.table, kernel: this.kernel, policy: this.policy }
  }

  limitNow(key: string, cost: number, now: number): Decision {
    const table = this.shared.table
    const k = this.kernel
    const slot = table.find(key)
    if (slot >= 0) return k.limit(this.policy, table.data, slot * k.width, now, cost)
    return this.limitNew(key, cost, now)
  }

  /**
   * limitNew decides for a key with no state (apart from limitNow, which the compiler then
   * inlines whole with the kernel).
   */
  private limitNew(key: string, cost: number, now: number): Decision {
    const table = this.shared.table
    const k = this.kernel
    const s = this.scratch
    s.fill(0)
    const d = k.limit(this.policy, s, 0, now, cost)
    if (d.allowed && !k.empty(this.policy, s, 0, now)) {
      const added = table.add(key, now)
      table.data.set(s, added * k.width)
    }
    return d
  }

  stage(
    t: Touch,
    key: string,
    cost: number,
    now: number,
    touches: readonly Touch[],
    index: number,
  ): Decision {
    const k = this.kernel
    const slot = this.begin(t, key, touches, index)
    if (slot < 0) {
      const state = t.owner.numbers
      if (t.owner === t) state.fill(0)
      return k.limit(this.policy, state, 0, now, cost)
    }
    const data = this.shared.table.data
    const at = slot * k.width
    const before = t.numbers
    for (let j = 0; j < k.width; j++) before[j] = data[at + j]
    return k.limit(this.policy, data, at, now, cost)
  }

  commit(t: Touch, _d: Decision, now: number): void {
    if (t.slot >= 0 || t.owner !== t) return
    const k = this.kernel
    const state = t.numbers
    if (k.empty(this.policy, state, 0, now)) return
    const table = this.shared.table
    const at = table.add(t.key, now) * k.width
    const data = table.data
    for (let j = 0; j < k.width; j++) data[at + j] = state[j]
  }

  undo(t: Touch): void {
    if (t.slot < 0) return
    const k = this.kernel
    const data = this.shared.table.data
    const at = t.slot * k.width
    for (let j = 0; j < k.width; j++) data[at + j] = t.numbers[j]
  }

  adjust(key: string, delta: number, now: number): Decision {
    const table = this.shared.table
    const k = this.kernel
    let slot = table.find(key)
    if (slot < 0) {
      this.scratch.fill(0)
      const d = k.adjust(this.policy, this.scratch, 0, now, delta)
      if (!k.empty(this.policy, this.scratch, 0, now)) {
        slot = table.add(key, now)
        table.data.set(this.scratch, slot * k.width)
      }
      return d
    }
    return k.adjust(this.policy, table.data, slot * k.width, now, delta)
  }

  peek(key: string, now: number): Decision {
    const table = this.shared.table
    const k = this.kernel
    const slot = table.map.get(key)
    if (slot !== undefined) return k.peek(this.policy, table.data, slot * k.width, now)
    this.scratch.fill(0)
    return k.peek(this.policy, this.scratch, 0, now)
  }

  override reserve(key: string, cost: number, now: number, maxWaitMs: number): Grant {
    if (this.policy.kind !== "tokenBucket") return super.reserve(key, cost, now, maxWaitMs)
    const table = this.shared.table
    let slot = table.find(key)
    if (slot >= 0) return tokenBucketReserve(this.policy, table.data, slot, now, cost, maxWaitMs)
    const s = this.scratch
    s[0] = 0
    const grant = tokenBucketReserve(this.policy, s, 0, now, cost, maxWaitMs)
    if (grant.ok && s[0] > now) {
      slot = table.add(key, now)
      table.data[slot] = s[0]
    }
    return grant
  }

  override cancel(key: string, cost: number, executeAt: number, now: number): void {
    if (this.policy.kind !== "tokenBucket") {
      super.cancel(key, cost, executeAt, now)
      return
    }
    const slot = this.shared.table.map.get(key)
    if (slot !== undefined)
      tokenBucketCancel(this.policy, this.shared.table.data, slot, now, cost, executeAt)
  }

  override setPolicy(policy: Policy, now: number): void {
    const from = this.policy
    super.setPolicy(policy, now)
    if (
      from.kind === "tokenBucket" &&
      policy.kind === "tokenBucket" &&
      from.windowMs !== policy.windowMs
    ) {
      const data = this.shared.table.data
      this.shared.table.forEach((slot) => {
        tokenBucketConvert(from, policy, data, slot, now)
      })
    }
  }
}

/** Sliding window log: a list of admissions per key. */
class LogNamespace extends MemoryNamespace implements SyncNamespace {
  limitNow(key: string, cost: number, now: number): Decision {
    const p = this.policy as Extract<Policy, { kind: "slidingWindowLog" }>
    const table = this.shared.table
    const slot = table.find(key)
    if (slot >= 0) return slidingWindowLogLimit(p, table.objects[slot] as LogState, now, cost)
    const st = newLogState()
    const d = slidingWindowLogLimit(p, st, now, cost)
    if (d.allowed && st.sum > 0) table.objects[table.add(key, now)] = st
    return d
  }

  stage(
    t: Touch,
    key: string,
    cost: number,
    now: number,
    touches: readonly Touch[],
    index: number,
  ): Decision {
    const p = this.policy as Extract<Policy, { kind: "slidingWindowLog" }>
    const st = this.beginObject(t, key, touches, index, newLogState, cloneLogState)
    return slidingWindowLogLimit(p, st, now, cost)
  }

  commit(t: Touch, _d: Decision, now: number): void {
    if (t.slot >= 0 || t.owner !== t) return
    const st = t.object as LogState
    if (st.sum > 0) this.shared.table.objects[this.shared.table.add(t.key, now)] = st
  }

  undo(t: Touch): void {
    if (t.slot >= 0) this.shared.table.objects[t.slot] = t.object
  }

  adjust(key: string, delta: number, now: number): Decision {
    const p = this.policy as Extract<Policy, { kind: "slidingWindowLog" }>
    const table = this.shared.table
    const slot = table.find(key)
    if (slot >= 0) return slidingWindowLogAdjust(p, table.objects[slot] as LogState, now, delta)
    const st = newLogState()
    const d = slidingWindowLogAdjust(p, st, now, delta)
    if (st.sum > 0) table.objects[table.add(key, now)] = st
    return d
  }

  peek(key: string, now: number): Decision {
    const p = this.policy as Extract<Policy, { kind: "slidingWindowLog" }>
    const slot = this.shared.table.map.get(key)
    return slidingWindowLogPeek(
      p,
      (slot === undefined ? newLogState() : this.shared.table.objects[slot]) as LogState,
      now,
    )
  }
}

/** Concurrency: the leases in flight per key. */
class LeaseNamespace extends MemoryNamespace implements SyncNamespace {
  limitNow(key: string, cost: number, now: number): Decision {
    const p = this.policy as Extract<Policy, { kind: "concurrency" }>
    const table = this.shared.table
    const id = `${++this.shared.leases}`
    let slot = table.find(key)
    let st: LeaseState
    if (slot >= 0) {
      st = table.objects[slot] as LeaseState
    } else {
      st = newLeaseState()
    }
    const d = concurrencyLimit(p, st, now, cost, id)
    if (d.allowed && cost > 0) {
      if (slot < 0) {
        slot = table.add(key, now)
        table.objects[slot] = st
      }
      d.lease = { id, key, cost, expiresAt: now + p.leaseTimeoutMs } as Decision["lease"]
    }
    return d
  }

  stage(
    t: Touch,
    key: string,
    cost: number,
    now: number,
    touches: readonly Touch[],
    index: number,
  ): Decision {
    const p = this.policy as Extract<Policy, { kind: "concurrency" }>
    const st = this.beginObject(t, key, touches, index, newLeaseState, cloneLeaseState)
    const id = `${++this.shared.leases}`
    const d = concurrencyLimit(p, st, now, cost, id)
    if (d.allowed && cost > 0) {
      t.lease = { id, key, cost, expiresAt: now + p.leaseTimeoutMs } as Decision["lease"]
    }
    return d
  }

  commit(t: Touch, d: Decision, now: number): void {
    if (t.lease !== undefined) d.lease = t.lease
    if (t.slot >= 0 || t.owner !== t) return
    const st = t.object as LeaseState
    if (st.leases.length > 0) this.shared.table.objects[this.shared.table.add(t.key, now)] = st
  }

  undo(t: Touch): void {
    if (t.slot >= 0) this.shared.table.objects[t.slot] = t.object
  }

  adjust(_key: string, _delta: number, _now: number): Decision {
    throw new UnsupportedError("adjust needs a token bucket or window policy, not concurrency")
  }

  peek(key: string, now: number): Decision {
    const p = this.policy as Extract<Policy, { kind: "concurrency" }>
    const slot = this.shared.table.map.get(key)
    return concurrencyPeek(
      p,
      (slot === undefined ? newLeaseState() : this.shared.table.objects[slot]) as LeaseState,
      now,
    )
  }

  override release(key: string, leaseId: string, _now: number): void {
    const slot = this.shared.table.map.get(key)
    if (slot !== undefined)
      concurrencyRelease(this.shared.table.objects[slot] as LeaseState, leaseId)
  }
}

/** Lane: one namespace of a Lanes: its key table, kernel and policy. */
interface Lane {
  readonly table: KeyTable<unknown>
  readonly kernel: NumericKernel
  readonly policy: Policy
}

/**
 * Lanes checks one key on each of a fixed list of numeric namespaces, all or nothing, on
 * the live state (as limitAll does for such checks), for a caller that remembers where
 * keys were found. For lane i, `where[i]` is -1 (nothing remembered: the table's Map is
 * asked) or the offset h in `hints` of the caller's record for keys[i]: the slot the key
 * was found in (-1: not found), and the table's epoch and placed then (see KeyTable.at).
 * check() uses it to skip the Map and brings it up to date. A record must only ever be
 * used for one key of one lane. The policies are those of the namespaces when the Lanes
 * was made. One check runs at a time (the store is synchronous).
 */
export class Lanes {
  readonly size: number
  private readonly lanes: readonly Lane[]
  /** slots, saved: each check's slot (-1: a new key) and its state before the check. */
  private readonly slots: Int32Array
  private readonly saved: Float64Array

  constructor(lanes: readonly Lane[]) {
    this.lanes = lanes
    this.size = lanes.length
    this.slots = new Int32Array(lanes.length)
    this.saved = new Float64Array(lanes.length * STATE_WIDTH)
  }

  /**
   * check decides keys[i] at cost costs[i] on lane i, for every lane; out[i] gets each
   * decision. Answers whether all were admitted: if not, or if a kernel throws, no state
   * has changed.
   */
  check(
    keys: readonly string[],
    costs: Float64Array,
    hints: Int32Array,
    where: Int32Array,
    now: number,
    out: Decision[],
  ): boolean {
    const { lanes, slots, saved } = this
    const n = lanes.length
    let allowed = true
    let staged = 0
    try {
      for (; staged < n; staged++) {
        const i = staged
        const lane = lanes[i]
        const table = lane.table
        const k = lane.kernel
        const h = where[i]
        const slot =
          h < 0 ? table.find(keys[i]) : table.at(keys[i], hints[h], hints[h + 1], hints[h + 2])
        slots[i] = slot
        const at = i * STATE_WIDTH
        let d: Decision
        if (slot >= 0) {
          if (h >= 0) remember(hints, h, slot, table)
          const data = table.data
          const from = slot * k.width
          for (let j = 0; j < k.width; j++) saved[at + j] = data[from + j]
          d = k.limit(lane.policy, data, from, now, costs[i])
        } else {
          saved.fill(0, at, at + STATE_WIDTH)
          d = k.limit(lane.policy, saved, at, now, costs[i])
        }
        out[i] = d
        if (!d.allowed) allowed = false
      }
    } finally {
      if (staged < n) this.undo(staged)
    }
    if (!allowed) {
      this.undo(n)
      return false
    }
    for (let i = 0; i < n; i++) {
      if (slots[i] >= 0) continue
      const lane = lanes[i]
      const k = lane.kernel
      const at = i * STATE_WIDTH
      if (k.empty(lane.policy, saved, at, now)) continue
      const table = lane.table
      const slot = table.add(keys[i], now)
      const to = slot * k.width
      const data = table.data
      for (let j = 0; j < k.width; j++) data[to + j] = saved[at + j]
      if (where[i] >= 0) remember(hints, where[i], slot, table)
    }
    return true
  }

  /** undo puts back the state of the first `count` checks' keys, newest first. */
  private undo(count: number): void {
    for (let i = count - 1; i >= 0; i--) {
      const slot = this.slots[i]
      if (slot < 0) continue
      const w = this.lanes[i].kernel.width
      const data = this.lanes[i].table.data
      const to = slot * w
      for (let j = 0; j < w; j++) data[to + j] = this.saved[i * STATE_WIDTH + j]
    }
  }
}

/** remember records in hints[h..h+2] that a key is at `slot` of `table` now. */
function remember(hints: Int32Array, h: number, slot: number, table: KeyTable<unknown>): void {
  hints[h] = slot
  hints[h + 1] = table.epoch
  hints[h + 2] = table.placed
}
