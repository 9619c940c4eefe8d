// A LimitSpec is how a tiers config writes one limit: plain data (numbers and duration
// strings), so the same config can come from YAML. This file checks a spec's shape and
// turns it into a Policy under its tier's algorithm.

import type { CalendarUnit } from "../core/calendar.js"
import {
  fixedWindow,
  type Policy,
  slidingWindowCounter,
  slidingWindowLog,
  tokenBucket,
} from "../core/policy.js"
import { type Duration, toMs } from "../duration.js"
import { ConfigError, describe } from "../errors.js"

/**
 * LimitSpec: one limit in a tiers config.
 *
 * - `{ limit, window }`: `limit` units per `window` (a duration such as "1h", or a calendar
 *   "day" / "week" / "month" with an optional IANA `timeZone`, default UTC).
 * - `{ rate, period?, burst? }`: a token bucket, as tokenBucket() reads it.
 * - `"unlimited"`: the tier does not apply (nothing is counted).
 *
 * `shadow: true` on either object form computes and reports the limit but never denies.
 */
export type LimitSpec = "unlimited" | WindowLimitSpec | RateLimitSpec

/** WindowLimitSpec: `limit` units per `window`. */
export interface WindowLimitSpec {
  limit: number
  window: Duration | CalendarUnit
  timeZone?: string
  shadow?: boolean
}

/** RateLimitSpec: a token bucket, as tokenBucket() reads its options. */
export interface RateLimitSpec {
  rate: number
  period?: Duration
  burst?: number
  shadow?: boolean
}

/** TierAlgorithm: the policy kinds a tier can count with (all of them support adjust). */
export type TierAlgorithm =
  | "tokenBucket"
  | "slidingWindowLog"
  | "slidingWindowCounter"
  | "fixedWindow"

/** ALGORITHMS: every TierAlgorithm, in the order error messages list them. */
export const ALGORITHMS: readonly TierAlgorithm[] = [
  "tokenBucket",
  "slidingWindowLog",
  "slidingWindowCounter",
  "fixedWindow",
]

/** SpecPolicy: a LimitSpec made concrete. `windowId` tells which windows may share state. */
export interface SpecPolicy {
  policy: Policy
  shadow: boolean
  /**
   * windowId: "" for token buckets (any two share state: a key carries its time-to-full);
   * for window algorithms the window itself ("@3600000ms", "@month.Europe/Berlin"), since a
   * count only means something within the window it was counted in.
   */
  windowId: string
}

const WINDOW_FIELDS = new Set(["limit", "window", "timeZone", "shadow"])
const RATE_FIELDS = new Set(["rate", "period", "burst", "shadow"])
const CALENDAR = new Set(["day", "week", "month"])
const SHAPES = '"unlimited", { limit, window, timeZone? } or { rate, period?, burst? }'

/** isCalendar tells whether a window names a calendar unit. */
export function isCalendar(window: unknown): window is CalendarUnit {
  return typeof window === "string" && CALENDAR.has(window)
}

/** field is `path.name`, or `path["name"]` when the name is not a plain identifier. */
export function field(path: string, name: string): string {
  if (/^[A-Za-z_$][\w$-]*$/.test(name)) return path === "" ? name : `${path}.${name}`
  return `${path}[${JSON.stringify(name)}]`
}

/** checkSpec checks the shape of a LimitSpec (not yet its algorithm) and returns it. */
export function checkSpec(value: unknown, path: string): LimitSpec {
  if (value === "unlimited") return value
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ConfigError(path, `expected ${SHAPES}, got ${describe(value)}`)
  }
  const spec = value as Record<string, unknown>
  const isRate = Object.hasOwn(spec, "rate")
  if (isRate === Object.hasOwn(spec, "limit")) {
    throw new ConfigError(
      path,
      isRate
        ? "give either limit (with window) or rate, not both"
        : `expected ${SHAPES}, got an object with neither limit nor rate`,
    )
  }
  const allowed = isRate ? RATE_FIELDS : WINDOW_FIELDS
  for (const name of Object.keys(spec)) {
    if (!allowed.has(name)) {
      throw new ConfigError(
        field(path, name),
        `unknown field; a ${isRate ? "rate" : "window"} limit has ${[...allowed].join(", ")}`,
      )
    }
  }
  if (spec.shadow !== undefined && typeof spec.shadow !== "boolean") {
    throw new ConfigError(
      field(path, "shadow"),
      `expected true or false, got ${describe(spec.shadow)}`,
    )
  }
  if (isRate) return spec as unknown as RateLimitSpec
  const limit = spec.limit
  if (typeof limit !== "number" || !Number.isFinite(limit) || limit < 1) {
    throw new ConfigError(
      field(path, "limit"),
      `expected a finite number >= 1, got ${describe(limit)}`,
    )
  }
  const window = spec.window
  if (!isCalendar(window)) {
    const ms = toMs(window)
    if (!Number.isFinite(ms) || ms <= 0) {
      throw new ConfigError(
        field(path, "window"),
        `expected a duration > 0 ("30s", "1m", "1h", "1d" or ms) or "day", "week", "month", got ${describe(window)}`,
      )
    }
    if (spec.timeZone !== undefined) {
      throw new ConfigError(
        field(path, "timeZone"),
        'applies only to calendar windows ("day", "week", "month")',
      )
    }
  }
  return spec as unknown as WindowLimitSpec
}

/**
 * inferAlgorithm picks a tier's algorithm from its specs when the config names none: a
 * token bucket if any spec is a rate, a fixed window if any uses a calendar window, else a
 * sliding window counter (3 numbers per key, no burst at window edges).
 */
export function inferAlgorithm(specs: readonly LimitSpec[]): TierAlgorithm {
  if (specs.some((s) => s !== "unlimited" && "rate" in s)) return "tokenBucket"
  if (specs.some((s) => s !== "unlimited" && "window" in s && isCalendar(s.window))) {
    return "fixedWindow"
  }
  return "slidingWindowCounter"
}

/**
 * specPolicy turns a checked spec into a policy of the tier's algorithm, or null for
 * "unlimited". Errors name the spec's field. Under a token bucket, `{ limit, window }`
 * reads as `limit` tokens per `window` with a burst of `limit`.
 */
export function specPolicy(
  spec: LimitSpec,
  algorithm: TierAlgorithm,
  path: string,
): SpecPolicy | null {
  if (spec === "unlimited") return null
  const shadow = spec.shadow === true
  if ("rate" in spec) {
    if (algorithm !== "tokenBucket") {
      throw new ConfigError(
        path,
        `a { rate } limit needs a tokenBucket tier, and this tier counts with ${algorithm}; write { limit, window } instead`,
      )
    }
    const policy = repath(path, () =>
      tokenBucket({ rate: spec.rate, period: spec.period, burst: spec.burst }),
    )
    return { policy, shadow, windowId: "" }
  }
  const { limit, window, timeZone } = spec
  if (isCalendar(window) && algorithm !== "fixedWindow") {
    throw new ConfigError(
      field(path, "window"),
      `calendar windows ("${window}") need a fixedWindow tier, and this tier counts with ${algorithm}`,
    )
  }
  let policy: Policy
  switch (algorithm) {
    case "tokenBucket":
      policy = repath(path, () => tokenBucket({ rate: limit, period: window, burst: limit }))
      break
    case "fixedWindow":
      policy = repath(path, () => fixedWindow({ limit, window, timeZone }))
      break
    case "slidingWindowLog":
      policy = repath(path, () => slidingWindowLog({ limit, window }))
      break
    case "slidingWindowCounter":
      policy = repath(path, () => slidingWindowCounter({ limit, window }))
      break
  }
  return { policy, shadow, windowId: windowId(policy) }
}

function windowId(policy: Policy): string {
  if (policy.kind === "tokenBucket") return ""
  if (policy.kind === "fixedWindow" && policy.calendar !== undefined) {
    return `@${policy.calendar}.${policy.timeZone}`
  }
  return `@${policy.windowMs}ms`
}

// Factory errors name the factory's own field ("rate", "window"); say where in the config.
const FACTORY_FIELDS: Record<string, string> = {
  rate: "rate",
  period: "period",
  burst: "burst",
  limit: "limit",
  window: "window",
  timeZone: "timeZone",
}

function repath(path: string, build: () => Policy): Policy {
  try {
    return build()
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error
    const message = error.message.startsWith(`${error.path}: `)
      ? error.message.slice(error.path.length + 2)
      : error.message
    const name = FACTORY_FIELDS[error.path]
    throw new ConfigError(name === undefined ? path : field(path, name), message)
  }
}
