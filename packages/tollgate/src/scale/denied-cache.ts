import { type Decision, decision, EPSILON_MS } from "../core/decision.js"
import { assertPolicy, type Policy } from "../core/policy.js"
import { type Grant, tokenBucketLimit } from "../core/token-bucket.js"
import { ConfigError, describe } from "../errors.js"
import type {
  Check,
  MaybePromise,
  Namespace,
  NamespaceOptions,
  Store,
  SyncStore,
} from "../stores/store.js"

// A denied key is remembered as "the store denies `cost` and more until `until`". That holds
// for every algorithm whose usage only falls as time passes while nothing is admitted: a
// token bucket refills, a fixed window ends, a sliding window's old admissions leave it.
// Admissions of smaller requests in the meantime only push the moment further out. So a
// local denial before `until` is one the store would have made itself, and anything the
// cache does not deny goes to the store: the cache never admits anything on its own.

/**
 * MARGIN_MS: a cached denial ends this much before the store's own retry time. The store
 * forgives a microsecond at the boundary (EPSILON_MS) and times carry rounding error, so
 * in the last instants before `until` the store is asked instead of guessed.
 */
export const MARGIN_MS = 2 * EPSILON_MS

export interface DeniedCacheOptions {
  /**
   * maxKeys: most denied keys remembered per namespace (prefix and policy kind); beyond it
   * the key denied longest ago is forgotten (its next request goes to the store). Default
   * 10,000.
   */
  maxKeys?: number
}

export interface DeniedCacheStats {
  /** local: requests denied here, without a store call. */
  local: number
  /** forwarded: limit() calls passed on to the store. */
  forwarded: number
  /** keys: denied keys remembered now, over all namespaces. */
  keys: number
}

/** DeniedCache: a Store that answers known-denied keys itself; see deniedCache(). */
export interface DeniedCache extends Store {
  /** store: the store underneath, which decides everything not denied here. */
  readonly store: Store
  stats(): DeniedCacheStats
}

/** SyncDeniedCache: a DeniedCache over a synchronous store, synchronous itself. */
export type SyncDeniedCache = DeniedCache & SyncStore

/** Denial: what the store said about a denied key, in the limiter's time. */
interface Denial {
  /** until: the store denies `cost` or more for this key until then (epoch ms). */
  until: number
  cost: number
  /** remaining: whole units left as of the store's last answer for the key. */
  remaining: number
  /** resetAt: when the key is back to full, as of that answer (token bucket: its tat). */
  resetAt: number
}

/** Table: the denied keys of one (prefix, kind). */
interface Table {
  readonly entries: Map<string, Denial>
  /** epoch: changes whenever state may have been given back; older answers teach nothing. */
  epoch: number
}

function isPromise<T>(value: MaybePromise<T>): value is Promise<T> {
  return typeof (value as Promise<T> | undefined)?.then === "function"
}

const CACHED_KINDS = new Set([
  "tokenBucket",
  "fixedWindow",
  "slidingWindowLog",
  "slidingWindowCounter",
])

class DeniedCacheStore implements DeniedCache {
  readonly synchronous: boolean
  readonly store: Store
  readonly maxKeys: number
  readonly tables = new Map<string, Table>()
  local = 0
  forwarded = 0

  constructor(store: Store, maxKeys: number) {
    this.store = store
    this.synchronous = store.synchronous
    this.maxKeys = maxKeys
  }

  namespace(prefix: string, policy: Policy, options?: NamespaceOptions): Namespace {
    const inner = this.store.namespace(prefix, policy, options)
    // Concurrency limits end when a lease is released, which no time predicts: not cached.
    if (!CACHED_KINDS.has(policy.kind)) return inner
    const id = `${policy.kind}:${prefix}`
    let table = this.tables.get(id)
    if (table === undefined) {
      table = { entries: new Map(), epoch: 0 }
      this.tables.set(id, table)
    }
    return new CachedNamespace(this, inner, table, policy)
  }

  /** limitAll goes to the store as is: an all-or-nothing decision needs every check's state. */
  limitAll(checks: readonly Check[], now: number): MaybePromise<Decision[]> {
    return this.store.limitAll(
      checks.map((check) =>
        check.namespace instanceof CachedNamespace && check.namespace.owner === this
          ? { ...check, namespace: check.namespace.inner }
          : check,
      ),
      now,
    )
  }

  stats(): DeniedCacheStats {
    let keys = 0
    for (const table of this.tables.values()) keys += table.entries.size
    return { local: this.local, forwarded: this.forwarded, keys }
  }
}

/** CachedNamespace: a namespace of the store underneath, with its denied keys in front. */
class CachedNamespace implements Namespace {
  readonly owner: DeniedCacheStore
  readonly inner: Namespace
  private readonly table: Table
  private policy: Policy
  private readonly scratch = new Float64Array(1)

  constructor(owner: DeniedCacheStore, inner: Namespace, table: Table, policy: Policy) {
    this.owner = owner
    this.inner = inner
    this.table = table
    this.policy = policy
  }

  limit(key: string, cost: number, now: number, requestId?: string): MaybePromise<Decision> {
    const entries = this.table.entries
    // A request id may repeat an admitted request, which the store answers from memory.
    if (requestId === undefined && entries.size !== 0) {
      const e = entries.get(key)
      if (e !== undefined) {
        if (now >= e.until - MARGIN_MS) entries.delete(key)
        else if (cost >= e.cost) {
          const d = this.denial(e, cost, now)
          if (d !== undefined) {
            this.owner.local++
            return d
          }
        }
      }
    }
    this.owner.forwarded++
    const epoch = this.table.epoch
    const d = this.inner.limit(key, cost, now, requestId)
    if (isPromise(d)) return d.then((v) => this.learn(key, cost, now, epoch, v))
    return this.learn(key, cost, now, epoch, d)
  }

  /** denial is the store's answer for a request known to be denied, or undefined if unsure. */
  private denial(e: Denial, cost: number, now: number): Decision | undefined {
    const p = this.policy
    if (p.kind === "tokenBucket") {
      // The bucket as of the store's last answer: its tat. Others' admissions only push
      // the real one later, so this is the store's decision, or a kinder one.
      this.scratch[0] = e.resetAt
      const d = tokenBucketLimit(p, this.scratch, 0, now, cost)
      return d.allowed ? undefined : d
    }
    // Windows: the count stays as it was until the window ends or entries leave it.
    return decision(false, p.limit, e.remaining, e.until - now, Math.max(0, e.resetAt - now))
  }

  /** learn remembers a denial, and keeps a remembered key's state current. */
  private learn(key: string, cost: number, now: number, epoch: number, d: Decision): Decision {
    const table = this.table
    if (table.epoch !== epoch || d.degraded !== undefined) return d
    const entries = table.entries
    const e = entries.get(key)
    if (d.allowed) {
      if (e !== undefined) {
        e.remaining = d.remaining
        e.resetAt = now + d.resetAfterMs
      }
      return d
    }
    if (d.retryAfterMs <= MARGIN_MS) return d
    const until = now + d.retryAfterMs
    if (e !== undefined && now < e.until && e.cost < cost) {
      // The remembered denial covers smaller requests than this one: keep it, with the
      // newer state.
      e.remaining = d.remaining
      e.resetAt = now + d.resetAfterMs
      return d
    }
    const entry: Denial = { until, cost, remaining: d.remaining, resetAt: now + d.resetAfterMs }
    if (e === undefined && entries.size >= this.owner.maxKeys) {
      // Forget the key denied longest ago (Map order is insertion order).
      const oldest = entries.keys().next()
      if (!oldest.done) entries.delete(oldest.value)
    }
    entries.delete(key)
    entries.set(key, entry)
    return d
  }

  /** forget drops what is known about a key, and what answers in flight would teach. */
  private forget(key: string): void {
    this.table.entries.delete(key)
    this.table.epoch++
  }

  peek(key: string, now: number): MaybePromise<Decision> {
    return this.inner.peek(key, now)
  }

  reset(key: string): MaybePromise<void> {
    this.forget(key)
    return this.inner.reset(key)
  }

  reserve(key: string, cost: number, now: number, maxWaitMs: number): MaybePromise<Grant> {
    this.table.entries.delete(key)
    return this.inner.reserve(key, cost, now, maxWaitMs)
  }

  cancel(key: string, cost: number, executeAt: number, now: number): MaybePromise<void> {
    this.forget(key)
    return this.inner.cancel(key, cost, executeAt, now)
  }

  release(key: string, leaseId: string, now: number): MaybePromise<void> {
    return this.inner.release(key, leaseId, now)
  }

  setPolicy(policy: Policy, now: number): void {
    assertPolicy(policy)
    this.inner.setPolicy(policy, now)
    this.table.entries.clear()
    this.table.epoch++
    this.policy = policy
  }

  adjust(key: string, delta: number, now: number): MaybePromise<Decision> {
    this.forget(key)
    return this.inner.adjust(key, delta, now)
  }

  size(): number {
    return this.inner.size()
  }
}

/**
 * deniedCache wraps a store so that a key the store has denied is denied locally, with no
 * round trip, until the store said it could be admitted. When the store denies `cost` for
 * a key with `retryAfterMs` r, the key is remembered until now + r: requests for it with
 * a cost of at least `cost` are denied here (retryAfterMs, remaining and resetAfterMs
 * recomputed for the moment of asking), smaller ones go to the store.
 *
 * - Exact: a cached denial is one the store would make, for token buckets, fixed windows
 *   and both sliding windows, because their usage only falls while nothing is admitted.
 *   Nothing is ever admitted by the cache itself, so it never over-admits. Over a store
 *   that this process alone uses, decisions are the store's own (token bucket and fixed
 *   window field for field; sliding windows the same allowed/denied, with `remaining`
 *   as of the last store answer).
 * - Under-admission: only when the key's usage is given back behind the cache's back, as
 *   when another process resets the key or refunds cost with adjust(): this process then
 *   keeps denying until the remembered time. Local reset(), adjust(), cancel() and
 *   setPolicy() forget what they may change.
 * - Requests with a `requestId` always go to the store (a repeat is answered from its
 *   memory); concurrency limits and limitAll() pass through.
 * - Memory: at most `maxKeys` denied keys per namespace; expired ones are dropped when met.
 *
 * Times are the limiter's (`now`). With a store that decides on a clock of its own (Redis
 * by default), the remembered time is the limiter's clock at the request plus the store's
 * retryAfterMs: no later than the store's own moment, as long as the two clocks run at
 * the same rate.
 *
 * @example
 * const store = deniedCache(new RedisStore({ client }))
 * const limiter = createLimiter({ policy: fixedWindow({ limit: 1000, window: "1m" }), store })
 */
export function deniedCache(store: SyncStore, options?: DeniedCacheOptions): SyncDeniedCache
export function deniedCache(store: Store, options?: DeniedCacheOptions): DeniedCache
export function deniedCache(store: Store, options: DeniedCacheOptions = {}): DeniedCache {
  if (typeof store !== "object" || store === null || typeof store.namespace !== "function") {
    throw new ConfigError("store", `expected a Store (with namespace()), got ${describe(store)}`)
  }
  if (typeof options !== "object" || options === null) {
    throw new ConfigError("deniedCache", `expected an options object, got ${describe(options)}`)
  }
  const maxKeys = options.maxKeys ?? 10_000
  if (typeof maxKeys !== "number" || !Number.isInteger(maxKeys) || maxKeys < 1) {
    throw new ConfigError("maxKeys", `expected a whole number >= 1, got ${describe(maxKeys)}`)
  }
  return new DeniedCacheStore(store, maxKeys)
}
