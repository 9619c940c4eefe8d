// adaptiveLimiter: a client-side limiter that learns an upstream's limit from its answers.
//
// The rate follows AIMD (additive increase, multiplicative decrease), as TCP finds a
// link's capacity: each successful call while callers are queued adds `increase / rate`,
// so a busy limiter gains `increase` per period; a 429 / 503, or the upstream reporting
// that its remaining budget is low, multiplies the rate by `decrease`. The rate never
// leaves [minRate, maxRate], and never exceeds the quota / window the upstream advertises
// in RateLimit-Policy. Retry-After, and a budget at 0 with a reset time, pause all calls
// until then.
//
// Underneath is a tollgate Limiter: a token bucket whose policy is swapped (setPolicy) as
// the rate moves. Calls take their turns through a TurnQueue (turn-queue.ts): first come,
// first served, with pauses and batch slots.

import type { Clock } from "../clock.js"
import { tokenBucket } from "../core/policy.js"
import { type Duration, parseDuration } from "../duration.js"
import { ArgumentError, ConfigError, describe } from "../errors.js"
import { createLimiter, type Limiter } from "../limiter/limiter.js"
import { type Timers, timersOf } from "./timers.js"
import { type Slot, TurnQueue } from "./turn-queue.js"
import { type ResponseLike, readUpstreamSignals, type UpstreamSignals } from "./upstream-signals.js"

export interface AdaptiveLimiterOptions {
  /** initialRate: calls per period to start with; within [minRate, maxRate]. */
  initialRate: number
  /** minRate: the rate never goes below this (> 0). */
  minRate: number
  /** maxRate: the rate never goes above this. */
  maxRate: number
  /** period: the unit of the rates; default "1s". */
  period?: Duration
  /** burst: calls that may go back to back after an idle spell; default 1 (evenly spaced). */
  burst?: number
  /** increase: rate added per period of successful, queued calls; default 1. */
  increase?: number
  /** decrease: factor applied to the rate when throttled, in (0, 1); default 0.8. */
  decrease?: number
  /** lowRemaining: a reported budget at or below this fraction of its limit counts as low; default 0.1. */
  lowRemaining?: number
  /** maxPause: the longest pause a Retry-After or reset may impose; default "10m". */
  maxPause?: Duration
  /** clock: default real time; in tests a manualClock. */
  clock?: Clock
}

/** AdaptiveFeedback is what one response changed. */
export interface AdaptiveFeedback {
  signals: UpstreamSignals
  /** rate after this response (calls per period). */
  rate: number
  /** change: what happened to the rate. */
  change: "increase" | "decrease" | "none"
  /** pausedUntil: epoch ms until which calls are held (<= now when not paused). */
  pausedUntil: number
}

export interface AdaptiveStats {
  rate: number
  /** ceiling: the upstream's advertised rate (calls per period), Infinity when unknown. */
  ceiling: number
  successes: number
  throttled: number
  increases: number
  decreases: number
  pauses: number
  waiting: number
}

export interface AcquireTurnOptions {
  /** cost: units of the rate this call takes; default 1 (at most `burst`). */
  cost?: number
  /** signal: aborting leaves the queue; the promise rejects with the signal's reason. */
  signal?: AbortSignal
}

/** AdaptiveLimiter paces calls to one upstream and learns from its responses. */
export interface AdaptiveLimiter {
  /** rate: the current rate, calls per period. */
  readonly rate: number
  /** pausedUntil: epoch ms until which calls are held. */
  readonly pausedUntil: number
  /** limiter: the token-bucket Limiter underneath (its policy follows the rate). */
  readonly limiter: Limiter<true>
  /** clock: the clock this limiter reads (its timers wait). */
  readonly clock: Timers
  /** acquire waits, first come first served, until this call may go. */
  acquire(options?: AcquireTurnOptions): Promise<void>
  /** reserve books `count` calls at the current rate, after everyone already queued. */
  reserve(count: number, options?: { signal?: AbortSignal }): Promise<Slot[]>
  /** feedback learns from a response; `startedAt` is when its call went (epoch ms, default now). */
  feedback(response: ResponseLike, startedAt?: number): AdaptiveFeedback
  stats(): AdaptiveStats
}

export type { Slot }

function rateOption(value: unknown, path: string): number {
  if (typeof value !== "number" || !Number.isFinite(value) || value <= 0) {
    throw new ConfigError(path, `expected a finite number > 0, got ${describe(value)}`)
  }
  return value
}

function fraction(value: unknown, path: string, fallback: number, open: boolean): number {
  if (value === undefined) return fallback
  if (
    typeof value !== "number" ||
    !(value >= 0 && value <= 1) ||
    (open && (value === 0 || value === 1))
  ) {
    throw new ConfigError(
      path,
      `expected a number ${open ? "between 0 and 1, exclusive" : "from 0 to 1"}, got ${describe(value)}`,
    )
  }
  return value
}

class Adaptive implements AdaptiveLimiter {
  readonly limiter: Limiter<true>
  readonly clock: Timers
  readonly #min: number
  readonly #max: number
  readonly #periodMs: number
  readonly #burst: number
  readonly #increase: number
  readonly #decrease: number
  readonly #low: number
  readonly #maxPauseMs: number
  #rate: number
  /** #ceiling: the upstream's advertised rate, per period; Infinity until it says. */
  #ceiling = Number.POSITIVE_INFINITY
  /** #lastDecreaseAt: when the rate was last cut; responses to calls sent before it do not cut again. */
  #lastDecreaseAt = Number.NEGATIVE_INFINITY
  readonly #turns: TurnQueue
  #successes = 0
  #throttled = 0
  #increases = 0
  #decreases = 0
  #pauses = 0

  constructor(options: AdaptiveLimiterOptions) {
    if (typeof options !== "object" || options === null) {
      throw new ConfigError(
        "adaptiveLimiter",
        `expected an options object, got ${describe(options)}`,
      )
    }
    this.#min = rateOption(options.minRate, "minRate")
    this.#max = rateOption(options.maxRate, "maxRate")
    const initial = rateOption(options.initialRate, "initialRate")
    if (this.#min > this.#max) {
      throw new ConfigError("minRate", `minRate ${this.#min} is above maxRate ${this.#max}`)
    }
    if (initial < this.#min || initial > this.#max) {
      throw new ConfigError(
        "initialRate",
        `expected a rate within [minRate, maxRate] = [${this.#min}, ${this.#max}], got ${initial}`,
      )
    }
    this.#periodMs = options.period === undefined ? 1000 : parseDuration(options.period, "period")
    this.#burst = options.burst === undefined ? 1 : rateOption(options.burst, "burst")
    this.#increase = options.increase === undefined ? 1 : rateOption(options.increase, "increase")
    this.#decrease = fraction(options.decrease, "decrease", 0.8, true)
    this.#low = fraction(options.lowRemaining, "lowRemaining", 0.1, false)
    this.#maxPauseMs =
      options.maxPause === undefined ? 600_000 : parseDuration(options.maxPause, "maxPause")
    this.clock = timersOf(options.clock)
    this.#rate = initial
    this.limiter = createLimiter({
      policy: this.#policy(initial),
      clock: this.clock,
      prefix: "adaptive",
    })
    this.#turns = new TurnQueue(this.limiter, this.clock, "upstream")
  }

  #policy(rate: number) {
    return tokenBucket({ rate, period: this.#periodMs, burst: Math.max(1, this.#burst) })
  }

  get rate(): number {
    return this.#rate
  }

  get pausedUntil(): number {
    return this.#turns.pausedUntil
  }

  #setRate(rate: number): void {
    const next = Math.min(
      Math.max(rate, this.#min),
      Math.min(this.#max, Math.max(this.#ceiling, this.#min)),
    )
    if (next === this.#rate) return
    this.#rate = next
    this.limiter.setPolicy(this.#policy(next))
  }

  acquire(options?: AcquireTurnOptions): Promise<void> {
    const cost = options?.cost ?? 1
    if (typeof cost !== "number" || !(cost >= 0) || cost > Math.max(1, this.#burst)) {
      return Promise.reject(
        new ArgumentError(
          "cost",
          `expected a number from 0 to the burst (${Math.max(1, this.#burst)}), got ${describe(cost)}`,
        ),
      )
    }
    return this.#turns.turn(cost, options?.signal)
  }

  reserve(count: number, options?: { signal?: AbortSignal }): Promise<Slot[]> {
    if (!Number.isInteger(count) || count < 1) {
      return Promise.reject(
        new ArgumentError("count", `expected a whole number >= 1, got ${describe(count)}`),
      )
    }
    return this.#turns.book(count, options?.signal)
  }

  #pause(until: number, now: number): void {
    if (this.#turns.pause(Math.min(until, now + this.#maxPauseMs))) this.#pauses++
  }

  /** #cut multiplies the rate down once per round trip: calls sent before the last cut do not cut again. */
  #cut(startedAt: number, now: number, soft: boolean): boolean {
    if (startedAt < this.#lastDecreaseAt) return false
    if (soft && now - this.#lastDecreaseAt < this.#periodMs) return false
    this.#lastDecreaseAt = now
    this.#decreases++
    this.#setRate(this.#rate * this.#decrease)
    this.#turns.replan()
    return true
  }

  feedback(response: ResponseLike, startedAt?: number): AdaptiveFeedback {
    const now = this.clock.now()
    const sent = startedAt ?? now
    const signals = readUpstreamSignals(response.status, response.headers, now)
    let change: AdaptiveFeedback["change"] = "none"
    if (signals.ratePerSecond !== undefined) {
      this.#ceiling = (signals.ratePerSecond * this.#periodMs) / 1000
      this.#setRate(this.#rate)
    }
    const { remaining, limit, resetAt } = signals
    if (signals.throttled) {
      this.#throttled++
      if (this.#cut(sent, now, false)) change = "decrease"
      const until = signals.retryAt ?? (remaining === 0 ? resetAt : undefined)
      if (until !== undefined) this.#pause(until, now)
    } else {
      this.#successes++
      const low =
        remaining !== undefined &&
        (remaining === 0 || (limit !== undefined && remaining <= limit * this.#low))
      if (remaining === 0 && resetAt !== undefined) this.#pause(resetAt, now)
      if (low) {
        if (this.#cut(sent, now, true)) change = "decrease"
      } else if (this.#turns.waited && this.#rate < Math.min(this.#max, this.#ceiling)) {
        this.#increases++
        this.#setRate(this.#rate + this.#increase / this.#rate)
        change = "increase"
      }
    }
    return { signals, rate: this.#rate, change, pausedUntil: this.#turns.pausedUntil }
  }

  stats(): AdaptiveStats {
    return {
      rate: this.#rate,
      ceiling: this.#ceiling,
      successes: this.#successes,
      throttled: this.#throttled,
      increases: this.#increases,
      decreases: this.#decreases,
      pauses: this.#pauses,
      waiting: this.#turns.waiting,
    }
  }
}

/**
 * adaptiveLimiter builds a limiter for calls to one rate-limited upstream. Call
 * `acquire()` before each call and `feedback(response, startedAt)` after it (or let
 * throttledFetch do both). Rates are calls per `period`; it starts at `initialRate` and
 * moves within [minRate, maxRate] by AIMD (see the file comment). Concurrent callers are
 * served in arrival order.
 *
 * @example
 * const upstream = adaptiveLimiter({ initialRate: 5, minRate: 1, maxRate: 100 })
 * await upstream.acquire()
 * const started = upstream.clock.now()
 * upstream.feedback(await fetch(url), started)
 */
export function adaptiveLimiter(options: AdaptiveLimiterOptions): AdaptiveLimiter {
  return new Adaptive(options)
}
