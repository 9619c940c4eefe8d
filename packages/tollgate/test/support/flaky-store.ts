import type { Decision } from "../../src/core/decision.js"
import type { Policy } from "../../src/core/policy.js"
import { MemoryStore } from "../../src/stores/memory-store.js"
import type { Check, Namespace, Store } from "../../src/stores/store.js"

/**
 * FlakyStore is an asynchronous store for testing failure handling: it keeps state in a
 * MemoryStore and answers through promises, and can be told to fail or to hang.
 */
export class FlakyStore implements Store {
  readonly synchronous = false
  mode: "ok" | "fail" | "hang" = "ok"
  calls = 0
  private readonly inner = new MemoryStore()
  private readonly hung: (() => void)[] = []

  namespace(prefix: string, policy: Policy): Namespace {
    const ns = this.inner.namespace(prefix, policy)
    const call = <T>(fn: () => T): Promise<T> => this.answer(fn)
    return {
      limit: (key, cost, now, requestId) => call(() => ns.limit(key, cost, now, requestId)),
      peek: (key, now) => call(() => ns.peek(key, now)),
      reset: (key) => call(() => ns.reset(key)),
      reserve: (key, cost, now, maxWaitMs) => call(() => ns.reserve(key, cost, now, maxWaitMs)),
      cancel: (key, cost, executeAt, now) => call(() => ns.cancel(key, cost, executeAt, now)),
      release: (key, id, now) => call(() => ns.release(key, id, now)),
      adjust: (key, delta, now) => call(() => ns.adjust(key, delta, now)),
      setPolicy: (p, now) => ns.setPolicy(p, now),
      size: () => ns.size(),
    }
  }

  limitAll(checks: readonly Check[], now: number): Promise<Decision[]> {
    return this.answer(() => this.inner.limitAll(checks, now))
  }

  /** unhang lets every hung call finish (with its real answer). */
  unhang(): void {
    for (const go of this.hung.splice(0)) go()
  }

  private answer<T>(fn: () => T): Promise<T> {
    this.calls++
    if (this.mode === "fail") return Promise.reject(new Error("connection refused"))
    if (this.mode === "hang") return new Promise((resolve) => this.hung.push(() => resolve(fn())))
    return Promise.resolve().then(fn)
  }
}
