// Response header values, one pure function per standard. Nothing here reads a clock or a
// request: every input is an argument.
//
//   RateLimit-Policy  IETF HTTPAPI draft (draft-ietf-httpapi-ratelimit-headers-11): a List
//                     of policies, `"default";q=100;w=60` — quota q units per w seconds.
//   RateLimit         same draft: `"default";r=42;t=17` — r units left, effective window t s.
//   X-RateLimit-*     the older de-facto trio: Limit, Remaining, Reset (epoch seconds).
//   Retry-After       RFC 9110: whole seconds, rounded up.

import { type CalendarUnit, calendarBounds } from "../core/calendar.js"
import type { Decision } from "../core/decision.js"
import { sfInteger, sfString } from "./structured-field.js"

/** QuotaUnit: what the quota counts, from the draft's registry. */
export type QuotaUnit = "requests" | "content-bytes" | "concurrent-requests"

/** PolicyDescription is one quota policy as the RateLimit-Policy field states it. */
export interface PolicyDescription {
  /** name identifies the policy in both fields; printable ASCII. */
  name: string
  /** quota: units allowed per window (the draft's `q`); written as a whole number. */
  quota: number
  /** windowSeconds: the window in whole seconds (`w`), >= 1; omitted when undefined. */
  windowSeconds?: number
  /** unit (`qu`): omitted when "requests", the draft's default. */
  unit?: QuotaUnit
}

/** PolicyShape is what describePolicy needs from a tollgate Policy. */
export interface PolicyShape {
  kind: string
  limit: number
  windowMs: number
  /** calendar, timeZone: a fixed window of calendar days, weeks or months. */
  calendar?: CalendarUnit
  timeZone?: string
}

/**
 * CALENDAR_SECONDS: a calendar window's length when no time is given: a day, a week, and
 * the longest month (31 days), so that the stated rate errs low.
 */
const CALENDAR_SECONDS: Record<CalendarUnit, number> = {
  day: 86_400,
  week: 604_800,
  month: 31 * 86_400,
}

/** seconds rounds a duration in ms up to whole seconds (>= 0); non-finite values give undefined. */
export function seconds(ms: number): number | undefined {
  if (!Number.isFinite(ms)) return undefined
  return Math.max(0, Math.ceil(ms / 1000 - 1e-9))
}

/**
 * describePolicy states a tollgate policy as a quota per window. A token bucket is its
 * burst per the time one burst takes to refill (so q / w is its rate); a window policy is
 * its limit per its window; a concurrency policy is its limit of concurrent requests, with
 * no window. The draft allows whole seconds only: a window of a second or more is rounded
 * up (the stated rate errs low), and a shorter one is stated as what it admits per second
 * (a 50/s bucket of burst 1 shows as q=50;w=1, not q=1;w=1). A calendar window is the
 * length of the one holding `now` (a 23-hour day, a 28-day month), or without `now` a day,
 * a week or 31 days.
 */
export function describePolicy(policy: PolicyShape, name: string, now?: number): PolicyDescription {
  const quota = Math.floor(policy.limit + 1e-9)
  if (policy.kind === "concurrency") return { name, quota, unit: "concurrent-requests" }
  if (policy.calendar !== undefined) {
    if (now === undefined) return { name, quota, windowSeconds: CALENDAR_SECONDS[policy.calendar] }
    const [start, end] = calendarBounds(policy.calendar, policy.timeZone ?? "UTC", now)
    return { name, quota, windowSeconds: seconds(end - start) }
  }
  if (policy.windowMs < 1000) {
    return {
      name,
      quota: Math.floor((policy.limit * 1000) / policy.windowMs + 1e-9),
      windowSeconds: 1,
    }
  }
  return { name, quota, windowSeconds: seconds(policy.windowMs) }
}

/**
 * rateLimitPolicyHeader formats the RateLimit-Policy field for one or more policies.
 *
 * @example rateLimitPolicyHeader([{ name: "default", quota: 100, windowSeconds: 60 }])
 * // '"default";q=100;w=60'
 */
export function rateLimitPolicyHeader(policies: readonly PolicyDescription[]): string {
  return policies
    .map((p) => {
      let item = `${sfString(p.name)};q=${sfInteger(Math.max(0, p.quota))}`
      if (p.unit !== undefined && p.unit !== "requests") item += `;qu=${sfString(p.unit)}`
      if (p.windowSeconds !== undefined) item += `;w=${sfInteger(Math.max(1, p.windowSeconds))}`
      return item
    })
    .join(", ")
}

/**
 * rateLimitHeader formats the RateLimit field for a decision under the named policy.
 * `r` is the decision's remaining units; `t` is, when allowed, the seconds until the key is
 * back to full capacity, and when denied, the seconds until the request could be admitted
 * (so it never points past Retry-After, as the draft asks). Both round up.
 *
 * @example rateLimitHeader("default", decision) // '"default";r=0;t=3'
 */
export function rateLimitHeader(name: string, d: Decision): string {
  const t = seconds(d.allowed ? d.resetAfterMs : d.retryAfterMs)
  const r = sfInteger(Math.max(0, Math.floor(d.remaining)))
  return t === undefined ? `${sfString(name)};r=${r}` : `${sfString(name)};r=${r};t=${sfInteger(t)}`
}

/**
 * legacyRateLimitHeaders formats X-RateLimit-Limit, -Remaining and -Reset. Reset is the
 * Unix time (whole seconds, rounded up) when the key is back to full capacity, the form
 * GitHub and most APIs that send these use; `nowMs` is the current epoch time.
 */
export function legacyRateLimitHeaders(d: Decision, nowMs: number): Record<string, string> {
  return {
    "X-RateLimit-Limit": String(Math.floor(d.limit + 1e-9)),
    "X-RateLimit-Remaining": String(Math.max(0, Math.floor(d.remaining))),
    "X-RateLimit-Reset": String(Math.ceil((nowMs + Math.max(0, d.resetAfterMs)) / 1000)),
  }
}

/**
 * retryAfterHeader formats Retry-After for a denial: whole seconds, rounded up, so a
 * client that waits exactly that long is not early. Undefined when the wait is unknown.
 */
export function retryAfterHeader(d: Decision): string | undefined {
  const s = seconds(d.retryAfterMs)
  return s === undefined ? undefined : String(s)
}

/**
 * DEGRADED_HEADER is set when the store failed: "open" or "fallback" (the Decision's
 * `degraded`, onStoreError decided), or "closed" on the 503 of a fail-closed limiter.
 */
export const DEGRADED_HEADER = "Tollgate-Degraded"
