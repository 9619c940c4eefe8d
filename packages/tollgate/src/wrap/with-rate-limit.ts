// withRateLimit: put a limiter in front of any async function.

import type { Clock } from "../clock.js"
import type { Decision } from "../core/decision.js"
import type { Policy } from "../core/policy.js"
import type { Duration } from "../duration.js"
import { ConfigError, describe, RateLimitError } from "../errors.js"
import type { AcquireOptions, Reservation, ReserveOptions } from "../limiter/limiter.js"
import { checkWait } from "../validate.js"
import { keepAlive, sleep, timersOf } from "./timers.js"

type MaybePromise<T> = T | Promise<T>

/** WrapLimiter is what withRateLimit uses of a Limiter (createLimiter gives all of it). */
export interface WrapLimiter {
  limit(key: string, options?: { cost?: number }): MaybePromise<Decision>
  acquire(key: string, options?: AcquireOptions): Promise<Decision>
  reserve?(key: string, options?: ReserveOptions): Promise<Reservation>
  readonly policy?: Policy
}

export interface WithRateLimitOptions<A extends unknown[]> {
  /** limiter: wrapped functions that share a limiter and a key share one budget. */
  limiter: WrapLimiter
  /** key: a string, or a function of the call's arguments; default "default". */
  key?: string | ((...args: A) => string)
  /** cost: a number, or a function of the call's arguments; default 1. */
  cost?: number | ((...args: A) => number)
  /** wait: true (default) waits for capacity; false throws RateLimitError at once when denied. */
  wait?: boolean
  /** maxWait: throw RateLimitError at once if the wait would be longer; default unbounded. */
  maxWait?: Duration
  /** onWait: called with the wait (ms) and the key before each wait. */
  onWait?: (ms: number, key: string) => void
  /** signal: aborts a call still waiting (a signal, or a function of the call's arguments). */
  signal?: AbortSignal | ((...args: A) => AbortSignal | undefined)
  /** clock: timers for waits on a token bucket; give the limiter's clock. Default: real time. */
  clock?: Clock
}

/**
 * withRateLimit returns a function with `fn`'s parameters that runs `fn` once the limiter
 * admits the call, and resolves to `fn`'s awaited result.
 *
 * Waiting is first come, first served: on a token bucket each call reserves its turn at
 * once (so `onWait` learns the exact wait, and an abort gives the turn back); on other
 * policies a denied call joins the limiter's queue (`acquire`). With `wait: false` a
 * denied call throws RateLimitError, which carries `retryAfterMs`. A concurrency
 * policy's lease is released when `fn` settles. An aborted call rejects with the signal's
 * reason and does not run `fn`.
 *
 * @example
 * const limiter = createLimiter({ policy: tokenBucket({ rate: 5 }) })
 * const search = withRateLimit(api.search, { limiter, onWait: (ms) => log(`waiting ${ms} ms`) })
 * await search("query")
 */
export function withRateLimit<A extends unknown[], R>(
  fn: (...args: A) => R,
  options: WithRateLimitOptions<A>,
): (...args: A) => Promise<Awaited<R>> {
  if (typeof fn !== "function") {
    throw new ConfigError("withRateLimit", `expected a function to wrap, got ${describe(fn)}`)
  }
  if (typeof options !== "object" || options === null) {
    throw new ConfigError("withRateLimit", `expected an options object, got ${describe(options)}`)
  }
  const { limiter, key = "default", cost = 1, wait = true, onWait, signal } = options
  if (
    typeof limiter !== "object" ||
    limiter === null ||
    typeof limiter.limit !== "function" ||
    typeof limiter.acquire !== "function"
  ) {
    throw new ConfigError(
      "limiter",
      `expected a Limiter from createLimiter(), got ${describe(limiter)}`,
    )
  }
  if (typeof key !== "string" && typeof key !== "function") {
    throw new ConfigError("key", `expected a string or a function, got ${describe(key)}`)
  }
  if (typeof cost !== "number" && typeof cost !== "function") {
    throw new ConfigError("cost", `expected a number or a function, got ${describe(cost)}`)
  }
  if (onWait !== undefined && typeof onWait !== "function") {
    throw new ConfigError("onWait", `expected a function, got ${describe(onWait)}`)
  }
  const maxWait = checkWait(options.maxWait)
  const timers = timersOf(options.clock)
  const reserves = limiter.policy?.kind === "tokenBucket" && typeof limiter.reserve === "function"

  /** admit resolves once the call may run, with the decision that admitted it. */
  async function admit(k: string, c: number, s: AbortSignal | undefined): Promise<Decision> {
    s?.throwIfAborted()
    if (!wait) {
      const d = await limiter.limit(k, { cost: c })
      if (!d.allowed) throw new RateLimitError(d)
      return d
    }
    if (reserves) {
      const r = await limiter.reserve!(k, { cost: c, maxWait })
      if (!r.ok) throw new RateLimitError(r.decision)
      if (r.delayMs > 0) {
        onWait?.(r.delayMs, k)
        try {
          await sleep(timers, r.executeAt - timers.now(), s)
        } catch (error) {
          await r.cancel()
          throw error
        }
      }
      return r.decision
    }
    const d = await limiter.limit(k, { cost: c })
    if (d.allowed) return d
    if (d.retryAfterMs > maxWait) throw new RateLimitError(d)
    onWait?.(d.retryAfterMs, k)
    return keepAlive(limiter.acquire(k, { cost: c, maxWait, signal: s }))
  }

  return async function rateLimited(this: unknown, ...args: A): Promise<Awaited<R>> {
    const k = typeof key === "function" ? key(...args) : key
    const c = typeof cost === "function" ? cost(...args) : cost
    const s = typeof signal === "function" ? signal(...args) : signal
    const d = await admit(k, c, s)
    try {
      return await fn.apply(this, args)
    } finally {
      if (d.lease !== undefined) await d.lease.release()
    }
  }
}
