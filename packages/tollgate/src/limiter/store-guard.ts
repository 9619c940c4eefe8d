import { StoreError, TollgateError } from "../errors.js"
import type { MaybePromise, Namespace } from "../stores/store.js"

export interface BreakerOptions {
  /** failures: consecutive store failures that open the circuit; default 5. */
  failures: number
  /** cooldownMs: how long the circuit stays open before one probe call is let through. */
  cooldownMs: number
}

export interface GuardOptions {
  /** timeoutMs: budget for one store call. */
  timeoutMs: number
  /** maxInFlight: store calls outstanding at once; beyond it calls fail at once. */
  maxInFlight: number
  /** breaker: circuit breaker settings, or false for none. */
  breaker: BreakerOptions | false
}

interface Pending {
  deadline: number
  fail: () => void
}

function isPromise<T>(value: MaybePromise<T>): value is Promise<T> {
  return typeof (value as Promise<T> | undefined)?.then === "function"
}

/** A store failure, as opposed to a typed refusal (bad argument, unsupported operation). */
function isStoreFailure(error: unknown): boolean {
  return !(error instanceof TollgateError) || error instanceof StoreError
}

/**
 * StoreGuard protects callers from an asynchronous store that is slow or gone: every call
 * is bounded by a timeout (one sweeping timer for all calls, not one per call), at most
 * `maxInFlight` calls are outstanding (so a stalled store cannot grow memory without
 * bound), and after `breaker.failures` consecutive failures the circuit opens: calls fail
 * at once for `cooldownMs`, then a single probe call goes through; its success closes the
 * circuit. Every refusal is a StoreError, which the limiter hands to `onStoreError`.
 * Times here are real (performance.now): store I/O happens in real time.
 */
export class StoreGuard {
  readonly options: GuardOptions
  private inFlight = 0
  private failures = 0
  private openUntil = 0
  private probing = false
  private readonly pending = new Set<Pending>()
  private sweeper: ReturnType<typeof setInterval> | undefined

  constructor(options: GuardOptions) {
    this.options = options
  }

  /** state: "closed" (normal), "open" (failing fast) or "half-open" (one probe allowed). */
  get state(): "closed" | "open" | "half-open" {
    if (this.openUntil === 0) return "closed"
    return performance.now() < this.openUntil ? "open" : "half-open"
  }

  get outstanding(): number {
    return this.inFlight
  }

  /** run starts one store call under the guard. */
  run<T>(start: () => MaybePromise<T>): Promise<T> {
    const breaker = this.options.breaker
    let probe = false
    if (this.openUntil !== 0) {
      if (performance.now() < this.openUntil || this.probing) {
        return Promise.reject(
          new StoreError("store unavailable: circuit open after repeated failures"),
        )
      }
      probe = true
      this.probing = true
    }
    if (this.inFlight >= this.options.maxInFlight) {
      if (probe) this.probing = false
      return Promise.reject(
        new StoreError(
          `store overloaded: ${this.inFlight} calls in flight (maxInFlight ${this.options.maxInFlight})`,
        ),
      )
    }
    let value: MaybePromise<T>
    try {
      value = start()
    } catch (error) {
      this.settled(isStoreFailure(error), probe, breaker)
      return Promise.reject(error)
    }
    if (!isPromise(value)) {
      this.settled(false, probe, breaker)
      return Promise.resolve(value)
    }
    this.inFlight++
    return new Promise<T>((resolve, reject) => {
      let done = false
      const entry: Pending = {
        deadline: performance.now() + this.options.timeoutMs,
        fail: () => {
          if (done) return
          done = true
          this.finish(entry)
          this.settled(true, probe, breaker)
          reject(new StoreError(`store call timed out after ${this.options.timeoutMs} ms`))
        },
      }
      this.pending.add(entry)
      this.arm()
      value.then(
        (v) => {
          if (done) return
          done = true
          this.finish(entry)
          this.settled(false, probe, breaker)
          resolve(v)
        },
        (error) => {
          if (done) return
          done = true
          this.finish(entry)
          this.settled(isStoreFailure(error), probe, breaker)
          reject(error)
        },
      )
    })
  }

  /** wrap returns a Namespace whose asynchronous calls all go through this guard. */
  wrap(ns: Namespace): Namespace {
    return {
      limit: (key, cost, now, requestId) => this.run(() => ns.limit(key, cost, now, requestId)),
      peek: (key, now) => this.run(() => ns.peek(key, now)),
      reset: (key) => this.run(() => ns.reset(key)),
      reserve: (key, cost, now, maxWaitMs) => this.run(() => ns.reserve(key, cost, now, maxWaitMs)),
      cancel: (key, cost, executeAt, now) => this.run(() => ns.cancel(key, cost, executeAt, now)),
      release: (key, leaseId, now) => this.run(() => ns.release(key, leaseId, now)),
      adjust: (key, delta, now) => this.run(() => ns.adjust(key, delta, now)),
      setPolicy: (policy, now) => ns.setPolicy(policy, now),
      size: () => ns.size(),
    }
  }

  private settled(failed: boolean, probe: boolean, breaker: BreakerOptions | false): void {
    if (probe) this.probing = false
    if (!failed) {
      this.failures = 0
      this.openUntil = 0
      return
    }
    this.failures++
    if (breaker !== false && (probe || this.failures >= breaker.failures)) {
      this.openUntil = performance.now() + breaker.cooldownMs
    }
  }

  private finish(entry: Pending): void {
    this.inFlight--
    this.pending.delete(entry)
    if (this.pending.size === 0 && this.sweeper !== undefined) {
      clearInterval(this.sweeper)
      this.sweeper = undefined
    }
  }

  private arm(): void {
    if (this.sweeper !== undefined) return
    const every = Math.min(50, Math.max(1, this.options.timeoutMs / 10))
    this.sweeper = setInterval(() => {
      const now = performance.now()
      for (const entry of this.pending) if (entry.deadline <= now) entry.fail()
    }, every)
    this.sweeper.unref?.()
  }
}
