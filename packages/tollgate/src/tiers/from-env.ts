// fromEnv: a limiter configured by environment variables, for twelve-factor services
// that want one without writing code.

import { type Decision, whole } from "../core/decision.js"
import { tokenBucket } from "../core/policy.js"
import { toMs } from "../duration.js"
import { ConfigError, describe } from "../errors.js"
import { createLimiter, type Limiter, type LimiterOptions } from "../limiter/limiter.js"
import type { MaybePromise } from "../stores/store.js"
import type { TieredLimiterOptions } from "./options.js"
import { createTieredLimiter } from "./tiered-limiter.js"
import type { TieredUsage } from "./usage.js"

/** EnvLimiter: what fromEnv returns: the keyed calls of a Limiter. */
export interface EnvLimiter {
  limit(key: string, options?: { cost?: number; requestId?: string }): MaybePromise<Decision>
  /** peek: the decision for cost 0; nothing is counted. */
  peek(key: string): MaybePromise<Decision>
  reset(key: string): MaybePromise<void>
  stats(): { allowed: number; denied: number; denyRate: number }
}

/** EnvLimiterOptions: everything createLimiter takes except the policy, which the variables give. */
export type EnvLimiterOptions = Omit<LimiterOptions, "policy" | "maxQueue">

type Env = Readonly<Record<string, string | undefined>>

function read(env: Env, name: string): string | undefined {
  const value = env[name]
  if (value === undefined) return undefined
  if (typeof value !== "string") {
    throw new ConfigError(name, `expected a string, got ${describe(value)}`)
  }
  const trimmed = value.trim()
  return trimmed === "" ? undefined : trimmed
}

/** number reads a positive decimal number; `atLeastOne` for sizes and counts. */
function number(env: Env, name: string, atLeastOne: boolean): number | undefined {
  const text = read(env, name)
  if (text === undefined) return undefined
  const n = /^\d*\.?\d+$/.test(text) ? Number(text) : Number.NaN
  if (!Number.isFinite(n) || n <= 0 || (atLeastOne && n < 1)) {
    throw new ConfigError(
      name,
      `expected a number ${atLeastOne ? ">= 1" : "> 0"}, got ${describe(text)}`,
    )
  }
  return n
}

function duration(env: Env, name: string): number | undefined {
  const text = read(env, name)
  if (text === undefined) return undefined
  const ms = /^\d*\.?\d+$/.test(text) ? Number.NaN : toMs(text)
  if (!Number.isFinite(ms) || ms <= 0) {
    throw new ConfigError(
      name,
      `expected a duration with a unit, such as "500ms", "1s", "1m", "1h", got ${describe(text)}`,
    )
  }
  return ms
}

/**
 * fromEnv builds a limiter from environment variables (default `process.env`).
 *
 * - `RATE_LIMIT_RATE` (> 0, required for this form), `RATE_LIMIT_PERIOD` (a duration with
 *   its unit, default "1s"), `RATE_LIMIT_BURST` (>= 1, default the rate): one token
 *   bucket; the result is a full Limiter from createLimiter.
 * - `REQUESTS_PER_MINUTE` and/or `REQUESTS_PER_HOUR`, with `BURST_SIZE` (the minute
 *   bucket's size, default the per-minute rate): both windows enforced, all or nothing.
 *   Per minute is a token bucket; per hour a sliding window (at most that many in any
 *   hour, approximately).
 *
 * A bad or missing value throws ConfigError naming the variable. A plain number is not a
 * period: "60" could mean seconds or milliseconds, so a unit is required.
 *
 * @example
 * // RATE_LIMIT_RATE=100 RATE_LIMIT_PERIOD=1m RATE_LIMIT_BURST=20
 * const limiter = fromEnv()
 * const d = await limiter.limit(apiKey)
 */
export function fromEnv(env: Env = process.env, options: EnvLimiterOptions = {}): EnvLimiter {
  if (typeof env !== "object" || env === null) {
    throw new ConfigError("env", `expected an object of variables, got ${describe(env)}`)
  }
  const rate = number(env, "RATE_LIMIT_RATE", false)
  const period = duration(env, "RATE_LIMIT_PERIOD")
  const burst = number(env, "RATE_LIMIT_BURST", true)
  const perMinute = number(env, "REQUESTS_PER_MINUTE", true)
  const perHour = number(env, "REQUESTS_PER_HOUR", true)
  const burstSize = number(env, "BURST_SIZE", true)
  const single = rate !== undefined || period !== undefined || burst !== undefined
  const windows = perMinute !== undefined || perHour !== undefined || burstSize !== undefined
  if (single && windows) {
    throw new ConfigError(
      "env",
      "set either RATE_LIMIT_* or REQUESTS_PER_MINUTE / REQUESTS_PER_HOUR / BURST_SIZE, not both",
    )
  }
  if (single) {
    if (rate === undefined) {
      throw new ConfigError(
        "RATE_LIMIT_RATE",
        "is required when RATE_LIMIT_PERIOD or RATE_LIMIT_BURST is set",
      )
    }
    const policy = tokenBucket({ rate, period: period ?? 1000, burst })
    return createLimiter({ ...options, policy }) as Limiter<boolean>
  }
  if (!windows) {
    throw new ConfigError(
      "env",
      "no limit configured: set RATE_LIMIT_RATE (with RATE_LIMIT_PERIOD, RATE_LIMIT_BURST) or REQUESTS_PER_MINUTE / REQUESTS_PER_HOUR (with BURST_SIZE)",
    )
  }
  if (burstSize !== undefined && perMinute === undefined) {
    throw new ConfigError(
      "BURST_SIZE",
      "sizes the per-minute bucket, and REQUESTS_PER_MINUTE is not set",
    )
  }
  // Both windows count `cost` (as the single bucket does), not one per call.
  const tiers: Record<string, { key: string[]; budget: "cost"; limit: object }> = {}
  if (perMinute !== undefined) {
    tiers.minute = {
      key: ["key"],
      budget: "cost",
      limit: { rate: perMinute, period: "1m", burst: burstSize },
    }
  }
  if (perHour !== undefined) {
    tiers.hour = { key: ["key"], budget: "cost", limit: { limit: perHour, window: "1h" } }
  }
  const gateway = createTieredLimiter({ ...options, tiers } as TieredLimiterOptions)
  const asDecision = (u: TieredUsage): Decision => peekDecision(u)
  return {
    limit: (key, opts) => gateway.limit({ key }, opts),
    peek: (key) => {
      const u = gateway.usage({ key })
      return u instanceof Promise ? u.then(asDecision) : asDecision(u)
    },
    reset: (key) => {
      const r = gateway.reset({ key })
      return r instanceof Promise ? r.then(() => {}) : undefined
    },
    stats: () => gateway.stats(),
  }
}

/** peekDecision folds a key's usage into one Decision: the tier closest to its limit decides. */
function peekDecision(u: TieredUsage): Decision {
  let d: Decision | undefined
  let retryAfterMs = 0
  for (const t of Object.values(u.tiers)) {
    retryAfterMs = Math.max(retryAfterMs, t.retryAfterMs)
    if (d === undefined || t.remaining / t.limit < d.remaining / d.limit) {
      d = {
        allowed: true,
        limit: t.limit,
        remaining: whole(t.remaining),
        retryAfterMs: 0,
        resetAfterMs: t.resetAfterMs,
      }
    }
  }
  d ??= {
    allowed: true,
    limit: Number.POSITIVE_INFINITY,
    remaining: Number.POSITIVE_INFINITY,
    retryAfterMs: 0,
    resetAfterMs: 0,
  }
  d.allowed = retryAfterMs === 0
  d.retryAfterMs = retryAfterMs
  return d
}
