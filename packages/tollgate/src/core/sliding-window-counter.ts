import { COST_EPSILON, type Decision, decision, EPSILON_MS, whole } from "./decision.js"
import type { SlidingWindowCounterPolicy } from "./policy.js"

// State: s[i] = start of the current fixed window, s[i+1] = its count, s[i+2] = the count
// of the window before it. The estimate of the sliding window ending at `now` is
//   previous * (1 - elapsed / windowMs) + current,   elapsed = now - start.

/** slidingWindowCounterLimit admits `cost` when the weighted estimate leaves room for it. */
/**
 * onGrid is a recorded window start as a start of this policy's windows: itself when it is
 * one, else the start of the window holding it (a start recorded under another window
 * length, before setPolicy, would otherwise match no window and its counts be lost). The
 * Lua twin computes the same, operation for operation.
 */
function onGrid(t: number, w: number): number {
  return Math.floor(t / w + 0.5) * w === t ? t : Math.floor(t / w) * w
}

export function slidingWindowCounterLimit(
  p: SlidingWindowCounterPolicy,
  s: Float64Array,
  i: number,
  now: number,
  cost: number,
): Decision {
  const w = p.windowMs
  const start = Math.floor(now / w) * w
  const at = onGrid(s[i], w)
  let current = 0
  let previous = 0
  if (at >= start) {
    current = s[i + 1]
    previous = s[i + 2]
  } else if (at === start - w) {
    previous = s[i + 1]
  }
  // The microsecond of slack every algorithm allows: waiting retryAfterMs suffices.
  const elapsed = now - start + EPSILON_MS
  const estimate = previous * Math.max(0, 1 - elapsed / w) + current
  if (estimate + cost <= p.limit + COST_EPSILON) {
    if (cost > 0) {
      s[i] = Math.max(at, start)
      s[i + 1] = current + cost
      s[i + 2] = previous
    }
    const after = current + cost
    const reset = after > 0 ? start + 2 * w - now : previous > 0 ? start + w - now : 0
    return decision(true, p.limit, whole(p.limit - estimate - cost), 0, reset)
  }
  // Denied: find when the estimate falls far enough. Within this window only the previous
  // count decays; if the current count alone is too much, wait for it to decay next window.
  let retry: number
  if (current + cost <= p.limit + COST_EPSILON) {
    const e = w * (1 - (p.limit - current - cost) / previous)
    retry = start + e - now
  } else {
    const e = w * (1 - (p.limit - cost) / current)
    retry = start + w + e - now
  }
  const reset = current > 0 ? start + 2 * w - now : previous > 0 ? start + w - now : 0
  return decision(false, p.limit, whole(p.limit - estimate), Math.max(retry, 0), reset)
}

export function slidingWindowCounterPeek(
  p: SlidingWindowCounterPolicy,
  s: Float64Array,
  i: number,
  now: number,
): Decision {
  return slidingWindowCounterLimit(p, s, i, now, 0)
}

export function slidingWindowCounterEmpty(
  p: SlidingWindowCounterPolicy,
  s: Float64Array,
  i: number,
  now: number,
): boolean {
  return (s[i + 1] === 0 && s[i + 2] === 0) || s[i] + 2 * p.windowMs <= now
}

/** slidingWindowCounterAdjust adds `delta` (may be negative) to the current window's count, kept in [0, 2 x limit]. */
export function slidingWindowCounterAdjust(
  p: SlidingWindowCounterPolicy,
  s: Float64Array,
  i: number,
  now: number,
  delta: number,
): Decision {
  slidingWindowCounterLimit(p, s, i, now, 0)
  const w = p.windowMs
  const start = Math.floor(now / w) * w
  const at = onGrid(s[i], w)
  s[i] = at
  if (at < start) {
    s[i + 2] = at === start - w ? s[i + 1] : 0
    s[i + 1] = 0
    s[i] = start
  }
  s[i + 1] = Math.min(Math.max(s[i + 1] + delta, 0), 2 * p.limit)
  const d = slidingWindowCounterLimit(p, s, i, now, 0)
  d.allowed = true
  d.retryAfterMs = 0
  return d
}
