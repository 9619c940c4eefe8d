import {
  type Decision,
  MemoryStore,
  type Namespace,
  type Policy,
  type Store,
  type SyncNamespace,
} from "../../src/index.js"
import type { Check } from "../../src/stores/store.js"

interface Wrapped extends Namespace {
  readonly inner: SyncNamespace
}

/**
 * AsyncMemoryStore keeps state in a MemoryStore and answers every call with a promise,
 * settled a microtask later, so concurrent requests interleave as on a network store.
 * `mode = "fail"` makes every call reject; `calls` counts the calls made.
 */
export class AsyncMemoryStore implements Store {
  readonly synchronous = false
  readonly inner: MemoryStore
  mode: "ok" | "fail" = "ok"
  calls = 0

  constructor(options?: { maxKeys?: number }) {
    this.inner = new MemoryStore(options)
  }

  namespace(prefix: string, policy: Policy): Namespace {
    const inner = this.inner.namespace(prefix, policy)
    const call = <T>(fn: () => T) => this.answer(fn)
    const wrapped: Wrapped = {
      inner,
      limit: (key, cost, now, requestId) => call(() => inner.limit(key, cost, now, requestId)),
      peek: (key, now) => call(() => inner.peek(key, now)),
      reset: (key) => call(() => inner.reset(key)),
      reserve: (key, cost, now, maxWaitMs) => call(() => inner.reserve(key, cost, now, maxWaitMs)),
      cancel: (key, cost, executeAt, now) => call(() => inner.cancel(key, cost, executeAt, now)),
      release: (key, id, now) => call(() => inner.release(key, id, now)),
      adjust: (key, delta, now) => call(() => inner.adjust(key, delta, now)),
      setPolicy: (p, now) => inner.setPolicy(p, now),
      size: () => inner.size(),
    }
    return wrapped
  }

  limitAll(checks: readonly Check[], now: number): Promise<Decision[]> {
    return this.answer(() =>
      this.inner.limitAll(
        checks.map((c) => ({ ...c, namespace: (c.namespace as Wrapped).inner })),
        now,
      ),
    )
  }

  private answer<T>(fn: () => T): Promise<T> {
    this.calls++
    if (this.mode === "fail") return Promise.reject(new Error("connection refused"))
    return Promise.resolve().then(fn)
  }
}
