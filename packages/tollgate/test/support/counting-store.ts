import type { Decision, Namespace, Policy, Store, SyncStore } from "../../src/index.js"
import type { Check } from "../../src/stores/store.js"

/** Call: one call that reached the store underneath a wrapper. */
export interface Call {
  op: "limit" | "peek" | "reset" | "reserve" | "cancel" | "release" | "adjust"
  key: string
  /** amount: the cost of limit/reserve/cancel, the delta of adjust. */
  amount: number
}

/**
 * CountingStore passes every call on to a real store (a MemoryStore in these tests) and
 * records it, so a test can tell which decisions took a round trip and what was asked.
 */
export class CountingStore implements Store {
  readonly synchronous: boolean
  readonly calls: Call[] = []
  readonly inner: Store

  constructor(inner: Store) {
    this.inner = inner
    this.synchronous = inner.synchronous
  }

  count(op: Call["op"]): number {
    return this.calls.filter((c) => c.op === op).length
  }

  namespace(prefix: string, policy: Policy): Namespace {
    const ns = this.inner.namespace(prefix, policy)
    const log = (op: Call["op"], key: string, amount: number) =>
      this.calls.push({ op, key, amount })
    const wrapped: Namespace & { inner: Namespace } = {
      inner: ns,
      limit: (key, cost, now, requestId) => {
        log("limit", key, cost)
        return ns.limit(key, cost, now, requestId)
      },
      peek: (key, now) => {
        log("peek", key, 0)
        return ns.peek(key, now)
      },
      reset: (key) => {
        log("reset", key, 0)
        return ns.reset(key)
      },
      reserve: (key, cost, now, maxWaitMs) => {
        log("reserve", key, cost)
        return ns.reserve(key, cost, now, maxWaitMs)
      },
      cancel: (key, cost, executeAt, now) => {
        log("cancel", key, cost)
        return ns.cancel(key, cost, executeAt, now)
      },
      release: (key, leaseId, now) => {
        log("release", key, 0)
        return ns.release(key, leaseId, now)
      },
      adjust: (key, delta, now) => {
        log("adjust", key, delta)
        return ns.adjust(key, delta, now)
      },
      setPolicy: (p, now) => ns.setPolicy(p, now),
      size: () => ns.size(),
    }
    return wrapped
  }

  limitAll(checks: readonly Check[], now: number) {
    return this.inner.limitAll(
      checks.map((c) => ({
        ...c,
        namespace: (c.namespace as unknown as { inner: Namespace }).inner,
      })),
      now,
    ) as Decision[]
  }
}

/** countingSync: a CountingStore over a synchronous store, typed as the SyncStore it is. */
export function countingSync(inner: SyncStore): CountingStore & SyncStore {
  return new CountingStore(inner) as CountingStore & SyncStore
}
