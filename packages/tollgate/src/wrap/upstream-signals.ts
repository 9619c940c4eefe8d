// What an upstream's response says about its rate limit, read from the status and
// headers alone. Pure: the current time is an argument.
//
//   Retry-After                    delay-seconds or an HTTP-date (RFC 9110)
//   RateLimit / RateLimit-Policy   IETF HTTPAPI draft: r (remaining), t (seconds), q/w (quota per window)
//   x-ratelimit-remaining[-*]      the de-facto family (GitHub, OpenAI, ...), with
//   x-ratelimit-limit[-*]          x-ratelimit-reset[-*] as delta seconds, epoch seconds
//   x-ratelimit-reset[-*]          or a duration like "1s", "6m0s", "250ms"

import { type BareItem, parseStructuredList, SfToken } from "../http/structured-field.js"

/** HeaderSource: a fetch Headers object, or node-style headers (lowercase names). */
export type HeaderSource =
  | {
      get(name: string): string | null
      forEach(callback: (value: string, name: string) => void): void
    }
  | Record<string, string | string[] | number | undefined>

/** ResponseLike is what feedback reads: a fetch Response fits. */
export interface ResponseLike {
  status: number
  headers: HeaderSource
}

/** UpstreamSignals: what one response said. Times are epoch ms on the caller's clock. */
export interface UpstreamSignals {
  /** throttled: the status was 429 or 503. */
  throttled: boolean
  /** retryAt: when Retry-After says to come back (only read on 429 / 503). */
  retryAt?: number
  /** remaining / limit: the most constrained budget the headers report (lowest remaining / limit). */
  remaining?: number
  limit?: number
  /** resetAt: when that budget resets, if the headers say. */
  resetAt?: number
  /** ratePerSecond: the lowest quota / window of the RateLimit-Policy "requests" policies. */
  ratePerSecond?: number
}

function toMap(headers: HeaderSource): Map<string, string> {
  const map = new Map<string, string>()
  if (typeof headers.forEach === "function" && typeof headers.get === "function") {
    ;(headers as { forEach(cb: (value: string, name: string) => void): void }).forEach(
      (value, name) => {
        map.set(name.toLowerCase(), value)
      },
    )
    return map
  }
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue
    map.set(name.toLowerCase(), Array.isArray(value) ? value.join(", ") : String(value))
  }
  return map
}

/**
 * httpDate reads an HTTP-date (RFC 9110: IMF-fixdate, or the obsolete RFC 850 and asctime
 * forms; all start with a day name) as epoch ms, never earlier than `nowMs`.
 */
function httpDate(value: string, nowMs: number): number | undefined {
  if (!/^(mon|tue|wed|thu|fri|sat|sun)[a-z]*,? /i.test(value)) return undefined
  const date = Date.parse(value)
  return Number.isNaN(date) ? undefined : Math.max(nowMs, date)
}

/** parseRetryAfter reads Retry-After: whole seconds, or an HTTP-date. Returns epoch ms. */
export function parseRetryAfter(value: string, nowMs: number): number | undefined {
  const v = value.trim()
  if (/^\d+$/.test(v)) return nowMs + Number(v) * 1000
  return httpDate(v, nowMs)
}

const DURATION_PART = /(\d+(?:\.\d+)?)(ms|h|m|s)/y
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }

/**
 * parseReset reads an x-ratelimit-reset value: a duration ("1s", "6m0s", "20ms"), a number
 * of seconds, or (numbers above 10^9) a Unix time in seconds. Returns epoch ms.
 */
export function parseReset(value: string, nowMs: number): number | undefined {
  const v = value.trim()
  if (/^\d+(\.\d+)?$/.test(v)) {
    const n = Number(v)
    return n > 1e9 ? Math.max(nowMs, n * 1000) : nowMs + n * 1000
  }
  let ms = 0
  DURATION_PART.lastIndex = 0
  let matched = 0
  for (let m = DURATION_PART.exec(v); m !== null; m = DURATION_PART.exec(v)) {
    ms += Number(m[1]) * UNIT_MS[m[2]]
    matched = DURATION_PART.lastIndex
  }
  if (matched === v.length && matched > 0) return nowMs + ms
  return httpDate(v, nowMs)
}

function name(value: BareItem | unknown): string | undefined {
  if (typeof value === "string") return value
  if (value instanceof SfToken) return value.value
  return undefined
}

function wholeNumber(value: BareItem | undefined): number | undefined {
  return typeof value === "number" && Number.isInteger(value) && value >= 0 ? value : undefined
}

interface Budget {
  remaining: number
  limit?: number
  resetAt?: number
}

/** tighter picks the budget closer to running out (by fraction left, else by count). */
function tighter(a: Budget | undefined, b: Budget): Budget {
  if (a === undefined) return b
  const fa = a.limit ? a.remaining / a.limit : a.remaining === 0 ? 0 : Number.POSITIVE_INFINITY
  const fb = b.limit ? b.remaining / b.limit : b.remaining === 0 ? 0 : Number.POSITIVE_INFINITY
  if (fa !== fb) return fb < fa ? b : a
  return b.remaining < a.remaining ? b : a
}

/**
 * readUpstreamSignals reads one response's status and headers. Malformed fields are
 * ignored, as the draft asks; a response without any rate-limit header reports only
 * `throttled`.
 */
export function readUpstreamSignals(
  status: number,
  headers: HeaderSource,
  nowMs: number,
): UpstreamSignals {
  const h = toMap(headers)
  const signals: UpstreamSignals = { throttled: status === 429 || status === 503 }
  const retryAfter = h.get("retry-after")
  if (signals.throttled && retryAfter !== undefined) {
    const at = parseRetryAfter(retryAfter, nowMs)
    if (at !== undefined) signals.retryAt = at
  }

  // RateLimit-Policy: quotas by policy name, and the lowest request rate among them.
  const quotas = new Map<string, number>()
  const policies = parseStructuredList(h.get("ratelimit-policy") ?? "") ?? []
  for (const item of policies) {
    const policy = name(item.value)
    const q = wholeNumber(item.params.get("q"))
    if (policy === undefined || q === undefined) continue
    quotas.set(policy, q)
    const unit = item.params.get("qu")
    const w = wholeNumber(item.params.get("w"))
    if ((unit === undefined || unit === "requests") && w !== undefined && w > 0) {
      signals.ratePerSecond = Math.min(signals.ratePerSecond ?? Number.POSITIVE_INFINITY, q / w)
    }
  }

  let budget: Budget | undefined
  for (const item of parseStructuredList(h.get("ratelimit") ?? "") ?? []) {
    const policy = name(item.value)
    const r = wholeNumber(item.params.get("r"))
    if (policy === undefined || r === undefined) continue
    const t = wholeNumber(item.params.get("t"))
    budget = tighter(budget, {
      remaining: r,
      limit: quotas.get(policy),
      resetAt: t === undefined ? undefined : nowMs + t * 1000,
    })
  }

  for (const [header, value] of h) {
    const match = /^x-ratelimit-remaining(-.+)?$/.exec(header)
    if (match === null) continue
    const remaining = Number(value.trim())
    if (!Number.isFinite(remaining) || remaining < 0) continue
    const suffix = match[1] ?? ""
    const limit = Number(h.get(`x-ratelimit-limit${suffix}`)?.trim())
    const reset = h.get(`x-ratelimit-reset${suffix}`)
    budget = tighter(budget, {
      remaining,
      limit: Number.isFinite(limit) && limit > 0 ? limit : undefined,
      resetAt: reset === undefined ? undefined : parseReset(reset, nowMs),
    })
  }

  if (budget !== undefined) {
    signals.remaining = budget.remaining
    if (budget.limit !== undefined) signals.limit = budget.limit
    if (budget.resetAt !== undefined) signals.resetAt = budget.resetAt
  }
  return signals
}
