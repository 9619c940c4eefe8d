import { type Duration, parseDuration } from "../duration.js"
import { ConfigError, describe } from "../errors.js"
import { CALENDAR_SPAN_MS, type CalendarUnit, isTimeZone } from "./calendar.js"

/** Policy is a validated, immutable description of one limit. Build it with a factory. */
export type Policy =
  | TokenBucketPolicy
  | SlidingWindowLogPolicy
  | SlidingWindowCounterPolicy
  | FixedWindowPolicy
  | ConcurrencyPolicy

interface PolicyBase {
  /** limit is the capacity: the most cost one key can hold or admit at once. */
  readonly limit: number
  /** windowMs is how long a key's state matters after its last use (its TTL in a store). */
  readonly windowMs: number
}

export interface TokenBucketPolicy extends PolicyBase {
  readonly kind: "tokenBucket"
  /** rate tokens are added every periodMs; fractional rates are fine. */
  readonly rate: number
  readonly periodMs: number
  /** burst is the bucket size (== limit). */
  readonly burst: number
  /** intervalMs is the emission interval T = periodMs / rate: the time one token takes. */
  readonly intervalMs: number
}

export interface SlidingWindowLogPolicy extends PolicyBase {
  readonly kind: "slidingWindowLog"
}
export interface SlidingWindowCounterPolicy extends PolicyBase {
  readonly kind: "slidingWindowCounter"
}
export interface FixedWindowPolicy extends PolicyBase {
  readonly kind: "fixedWindow"
  /** calendar: windows are calendar days, weeks or months in `timeZone` instead of fixed lengths. */
  readonly calendar?: CalendarUnit
  readonly timeZone?: string
}
export interface ConcurrencyPolicy extends PolicyBase {
  readonly kind: "concurrency"
  /** leaseTimeoutMs is how long a lease lives unless released first (== windowMs). */
  readonly leaseTimeoutMs: number
}

export interface TokenBucketOptions {
  /** rate: tokens per period, > 0 (fractional allowed). */
  rate: number
  /** period: default "1s". */
  period?: Duration
  /** burst: bucket size >= 1, default `rate` (at least 1). */
  burst?: number
}

export interface WindowOptions {
  /** limit: cost units admitted per window, >= 1. */
  limit: number
  window: Duration
}

export interface FixedWindowOptions {
  /** limit: cost units admitted per window, >= 1. */
  limit: number
  /** window: a duration (aligned to the epoch), or "day", "week" (ISO, Monday first) or "month" for calendar windows. */
  window: Duration | CalendarUnit
  /** timeZone: IANA name for calendar windows; default "UTC". */
  timeZone?: string
}

export interface ConcurrencyOptions {
  /** limit: cost units in flight at once, >= 1. */
  limit: number
  /** leaseTimeout: a lease not released by then ends by itself; default "1m". */
  leaseTimeout?: Duration
}

function options(value: unknown, factory: string): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ConfigError(factory, `expected an options object, got ${describe(value)}`)
  }
  return value as Record<string, unknown>
}

function positive(value: unknown, path: string): number {
  if (typeof value !== "number" || !Number.isFinite(value) || value <= 0) {
    throw new ConfigError(path, `expected a finite number > 0, got ${describe(value)}`)
  }
  return value
}

function capacity(value: unknown, path: string): number {
  if (typeof value !== "number" || !Number.isFinite(value) || value < 1) {
    throw new ConfigError(path, `expected a finite number >= 1, got ${describe(value)}`)
  }
  return value
}

/**
 * MAX_WINDOW_MS: the longest window a policy may have (1e18 ms, some 31 million years:
 * long enough for a bucket that in practice never refills). Every store keeps state for
 * a window or two past now; Redis counts expiry times in whole milliseconds within a
 * 64-bit integer, which a window of 1e19 ms would overflow on every call.
 */
export const MAX_WINDOW_MS = 1e18

/** span checks a policy's window (ms) against MAX_WINDOW_MS. */
function span(ms: number, path: string, what: string): number {
  if (ms > MAX_WINDOW_MS) {
    throw new ConfigError(path, `${what} is ${ms} ms; the most is ${MAX_WINDOW_MS} ms`)
  }
  return ms
}

/**
 * tokenBucket: `rate` tokens per `period`, in a bucket of `burst`, full at the start.
 * Implemented as GCRA: one timestamp per key. The default burst is the rate (one period's
 * worth), rounded up to at least 1.
 *
 * @example tokenBucket({ rate: 600, period: "1m", burst: 20 })
 */
export function tokenBucket(opts: TokenBucketOptions): TokenBucketPolicy {
  const o = options(opts, "tokenBucket")
  const rate = positive(o.rate, "rate")
  const periodMs = o.period === undefined ? 1000 : parseDuration(o.period, "period")
  const burst = o.burst === undefined ? Math.max(1, rate) : capacity(o.burst, "burst")
  const intervalMs = periodMs / rate
  if (!Number.isFinite(intervalMs) || intervalMs <= 0 || !Number.isFinite(intervalMs * burst)) {
    throw new ConfigError("rate", `rate ${rate} per ${periodMs} ms gives no usable interval`)
  }
  span(
    intervalMs * burst,
    "rate",
    `the time to refill ${burst} tokens at ${rate} per ${periodMs} ms`,
  )
  return Object.freeze({
    kind: "tokenBucket",
    rate,
    periodMs,
    burst,
    limit: burst,
    intervalMs,
    windowMs: intervalMs * burst,
  })
}

function windowPolicy<K extends string>(kind: K, opts: WindowOptions) {
  const o = options(opts, kind)
  const limit = capacity(o.limit, "limit")
  const windowMs = parseDuration(o.window, "window")
  if (windowMs < 1)
    throw new ConfigError("window", `expected at least 1 ms, got ${describe(o.window)}`)
  span(windowMs, "window", "the window")
  return Object.freeze({ kind, limit, windowMs })
}

/** slidingWindowLog: exact; at most `limit` cost units in any `window`-long interval. */
export function slidingWindowLog(opts: WindowOptions): SlidingWindowLogPolicy {
  return windowPolicy("slidingWindowLog", opts)
}

/**
 * slidingWindowCounter: approximates a sliding window with two fixed windows, weighting the
 * previous one by how much of it still overlaps the sliding window. Three numbers per key.
 */
export function slidingWindowCounter(opts: WindowOptions): SlidingWindowCounterPolicy {
  return windowPolicy("slidingWindowCounter", opts)
}

/**
 * fixedWindow: a counter per window. Windows of a duration are aligned to the epoch;
 * calendar windows ("day", "week", "month") start at local midnight in `timeZone`.
 *
 * @example fixedWindow({ limit: 1_000_000, window: "month", timeZone: "Europe/Berlin" })
 */
export function fixedWindow(opts: FixedWindowOptions): FixedWindowPolicy {
  const o = options(opts, "fixedWindow")
  if (o.window === "day" || o.window === "week" || o.window === "month") {
    const limit = capacity(o.limit, "limit")
    const timeZone = o.timeZone ?? "UTC"
    if (typeof timeZone !== "string" || !isTimeZone(timeZone)) {
      throw new ConfigError(
        "timeZone",
        `expected an IANA time zone such as "Europe/Berlin", got ${describe(timeZone)}`,
      )
    }
    return Object.freeze({
      kind: "fixedWindow",
      limit,
      windowMs: CALENDAR_SPAN_MS[o.window],
      calendar: o.window,
      timeZone,
    })
  }
  if (o.timeZone !== undefined) {
    throw new ConfigError("timeZone", 'applies only to calendar windows ("day", "week", "month")')
  }
  return windowPolicy("fixedWindow", opts as WindowOptions)
}

/** concurrency: at most `limit` cost units in flight; each admission is a Lease. */
export function concurrency(opts: ConcurrencyOptions): ConcurrencyPolicy {
  const o = options(opts, "concurrency")
  const limit = capacity(o.limit, "limit")
  const leaseTimeoutMs =
    o.leaseTimeout === undefined ? 60_000 : parseDuration(o.leaseTimeout, "leaseTimeout")
  if (leaseTimeoutMs < 1) {
    throw new ConfigError("leaseTimeout", `expected at least 1 ms, got ${describe(o.leaseTimeout)}`)
  }
  span(leaseTimeoutMs, "leaseTimeout", "the lease timeout")
  return Object.freeze({ kind: "concurrency", limit, windowMs: leaseTimeoutMs, leaseTimeoutMs })
}

const KINDS = new Set([
  "tokenBucket",
  "slidingWindowLog",
  "slidingWindowCounter",
  "fixedWindow",
  "concurrency",
])

/** assertPolicy throws ConfigError unless `value` is a Policy made by one of the factories. */
export function assertPolicy(value: unknown, path = "policy"): asserts value is Policy {
  const p = value as Partial<Record<string, unknown>> | null
  const finite = (x: unknown, min: number) =>
    typeof x === "number" && Number.isFinite(x) && x >= min
  const valid =
    typeof p === "object" &&
    p !== null &&
    Object.isFrozen(p) &&
    KINDS.has(p.kind as string) &&
    finite(p.limit, 1) &&
    finite(p.windowMs, Number.MIN_VALUE) &&
    (p.kind !== "tokenBucket" ||
      (finite(p.intervalMs, Number.MIN_VALUE) &&
        finite(p.rate, Number.MIN_VALUE) &&
        p.burst === p.limit)) &&
    (p.kind !== "concurrency" || p.leaseTimeoutMs === p.windowMs)
  if (!valid) {
    throw new ConfigError(
      path,
      `expected a policy from tokenBucket(), slidingWindowLog(), slidingWindowCounter(), fixedWindow() or concurrency(), got ${describe(value)}`,
    )
  }
}

/**
 * sharePolicy is one of `instances` equal shares of a policy: rate and capacity divided,
 * capacity kept at least 1. N instances each enforcing their share admit at most the
 * whole policy's budget together (a fallback for when the shared store is down).
 */
export function sharePolicy<P extends Policy>(policy: P, instances: number): P {
  if (instances === 1) return policy
  const limit = Math.max(1, policy.limit / instances)
  switch (policy.kind) {
    case "tokenBucket":
      return tokenBucket({
        rate: policy.rate / instances,
        period: policy.periodMs,
        burst: limit,
      }) as P
    case "concurrency":
      return concurrency({ limit, leaseTimeout: policy.leaseTimeoutMs }) as P
    default:
      return Object.freeze({ ...policy, limit }) as unknown as P
  }
}
