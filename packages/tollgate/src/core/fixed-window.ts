import { calendarBounds } from "./calendar.js"
import { COST_EPSILON, type Decision, decision, whole } from "./decision.js"
import type { FixedWindowPolicy } from "./policy.js"

// State: s[i] = start of the window the count belongs to (epoch ms), s[i+1] = cost
// admitted in that window. A count of an older window is zero.

// The last calendar window computed per policy: most calls fall in the same window.
const lastBounds = new WeakMap<FixedWindowPolicy, [number, number]>()

/** fixedWindowBounds is [start, end) of the window holding `now`. */
export function fixedWindowBounds(p: FixedWindowPolicy, now: number): [number, number] {
  if (p.calendar === undefined) {
    const start = Math.floor(now / p.windowMs) * p.windowMs
    return [start, start + p.windowMs]
  }
  const last = lastBounds.get(p)
  if (last !== undefined && now >= last[0] && now < last[1]) return last
  const bounds = calendarBounds(p.calendar, p.timeZone ?? "UTC", now)
  lastBounds.set(p, bounds)
  return bounds
}

function countAt(s: Float64Array, i: number, start: number): number {
  return s[i] >= start ? s[i + 1] : 0
}

/** fixedWindowLimit admits `cost` when the current window's count leaves room for it. */
export function fixedWindowLimit(
  p: FixedWindowPolicy,
  s: Float64Array,
  i: number,
  now: number,
  cost: number,
): Decision {
  let start: number
  let endAt: number
  if (p.calendar === undefined) {
    start = Math.floor(now / p.windowMs) * p.windowMs
    endAt = start + p.windowMs
  } else {
    ;[start, endAt] = fixedWindowBounds(p, now)
  }
  const count = countAt(s, i, start)
  const end = endAt - now
  if (count + cost <= p.limit + COST_EPSILON) {
    const next = count + cost
    if (cost > 0) {
      s[i] = Math.max(s[i], start)
      s[i + 1] = next
    }
    return decision(true, p.limit, whole(p.limit - next), 0, next > 0 ? end : 0)
  }
  return decision(false, p.limit, whole(p.limit - count), end, count > 0 ? end : 0)
}

export function fixedWindowPeek(
  p: FixedWindowPolicy,
  s: Float64Array,
  i: number,
  now: number,
): Decision {
  return fixedWindowLimit(p, s, i, now, 0)
}

export function fixedWindowEmpty(
  p: FixedWindowPolicy,
  s: Float64Array,
  i: number,
  now: number,
): boolean {
  return s[i + 1] === 0 || fixedWindowBounds(p, now)[0] > s[i]
}

/** fixedWindowAdjust adds `delta` (may be negative) to the current window's count, kept in [0, 2 x limit]. */
export function fixedWindowAdjust(
  p: FixedWindowPolicy,
  s: Float64Array,
  i: number,
  now: number,
  delta: number,
): Decision {
  const [start, end] = fixedWindowBounds(p, now)
  const next = Math.min(Math.max(countAt(s, i, start) + delta, 0), 2 * p.limit)
  s[i] = Math.max(s[i], start)
  s[i + 1] = next
  return decision(true, p.limit, whole(p.limit - next), 0, next > 0 ? end - now : 0)
}
