import { COST_EPSILON, type Decision, decision, whole } from "./decision.js"
import type { FixedWindowPolicy } from "./policy.js"

// State: s[i] = start of the window the count belongs to (epoch ms, aligned to windowMs),
// s[i+1] = cost admitted in that window. A count of an older window is zero.

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
  const start = Math.floor(now / p.windowMs) * p.windowMs
  const count = countAt(s, i, start)
  const end = start + p.windowMs - now
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
  return s[i + 1] === 0 || s[i] + p.windowMs <= now
}

/** fixedWindowAdjust adds `delta` (may be negative) to the current window's count, kept in [0, 2 x limit]. */
export function fixedWindowAdjust(
  p: FixedWindowPolicy,
  s: Float64Array,
  i: number,
  now: number,
  delta: number,
): Decision {
  const start = Math.floor(now / p.windowMs) * p.windowMs
  const next = Math.min(Math.max(countAt(s, i, start) + delta, 0), 2 * p.limit)
  s[i] = Math.max(s[i], start)
  s[i + 1] = next
  return decision(true, p.limit, whole(p.limit - next), 0, next > 0 ? start + p.windowMs - now : 0)
}
