import { COST_EPSILON, type Decision, decision, EPSILON_MS, whole } from "./decision.js"
import type { SlidingWindowLogPolicy } from "./policy.js"

/**
 * LogState: the admissions of the last window, oldest first, from index `head`: times[j]
 * (epoch ms) with costs[j]. Admissions at the same millisecond share one entry, so a key
 * holds at most `limit` entries for whole costs. `sum` is the cost of the live entries.
 */
export interface LogState {
  times: number[]
  costs: number[]
  head: number
  sum: number
}

export function newLogState(): LogState {
  return { times: [], costs: [], head: 0, sum: 0 }
}

/**
 * trim drops entries that left the window: an entry at t counts while now - t < windowMs
 * (less the microsecond of slack every algorithm allows, so waiting retryAfterMs suffices).
 */
function trim(p: SlidingWindowLogPolicy, st: LogState, now: number): void {
  const horizon = now - p.windowMs + EPSILON_MS
  let h = st.head
  const n = st.times.length
  while (h < n && st.times[h] <= horizon) {
    st.sum -= st.costs[h]
    h++
  }
  if (h === n) {
    st.times.length = 0
    st.costs.length = 0
    st.head = 0
    st.sum = 0
  } else if (h > 16 && h * 2 > n) {
    st.times.splice(0, h)
    st.costs.splice(0, h)
    st.head = 0
  } else {
    st.head = h
  }
}

function resetAfter(p: SlidingWindowLogPolicy, st: LogState, now: number): number {
  const n = st.times.length
  return n === st.head ? 0 : Math.max(0, st.times[n - 1] + p.windowMs - now)
}

/** slidingWindowLogLimit admits `cost` when the last window's admissions leave room for it. */
export function slidingWindowLogLimit(
  p: SlidingWindowLogPolicy,
  st: LogState,
  now: number,
  cost: number,
): Decision {
  trim(p, st, now)
  if (st.sum + cost <= p.limit + COST_EPSILON) {
    if (cost > 0) {
      const last = st.times.length - 1
      if (last >= st.head && st.times[last] >= now) {
        st.costs[last] += cost
      } else {
        st.times.push(now)
        st.costs.push(cost)
      }
      st.sum += cost
    }
    return decision(true, p.limit, whole(p.limit - st.sum), 0, resetAfter(p, st, now))
  }
  // Denied: the request fits once enough of the oldest entries have left the window.
  const excess = st.sum + cost - p.limit - COST_EPSILON
  let freed = 0
  let retry = p.windowMs
  for (let j = st.head; j < st.times.length; j++) {
    freed += st.costs[j]
    if (freed >= excess) {
      retry = st.times[j] + p.windowMs - now
      break
    }
  }
  return decision(false, p.limit, whole(p.limit - st.sum), retry, resetAfter(p, st, now))
}

export function slidingWindowLogPeek(
  p: SlidingWindowLogPolicy,
  st: LogState,
  now: number,
): Decision {
  return slidingWindowLogLimit(p, st, now, 0)
}

export function slidingWindowLogEmpty(
  p: SlidingWindowLogPolicy,
  st: LogState,
  now: number,
): boolean {
  const n = st.times.length
  return n === st.head || st.times[n - 1] + p.windowMs <= now + EPSILON_MS
}

/**
 * slidingWindowLogAdjust records `delta` more cost at `now`, or for a negative delta takes
 * cost back from the newest entries. The window never holds more than 2 x limit.
 */
export function slidingWindowLogAdjust(
  p: SlidingWindowLogPolicy,
  st: LogState,
  now: number,
  delta: number,
): Decision {
  trim(p, st, now)
  if (delta > 0) {
    const add = Math.min(delta, 2 * p.limit - st.sum)
    if (add > 0) {
      const last = st.times.length - 1
      if (last >= st.head && st.times[last] >= now) st.costs[last] += add
      else {
        st.times.push(now)
        st.costs.push(add)
      }
      st.sum += add
    }
  } else {
    let back = -delta
    while (back > 0 && st.times.length > st.head) {
      const last = st.times.length - 1
      const take = Math.min(back, st.costs[last])
      st.costs[last] -= take
      st.sum -= take
      back -= take
      if (st.costs[last] <= COST_EPSILON) {
        st.times.pop()
        st.costs.pop()
      }
    }
    if (st.times.length === st.head) {
      st.times.length = 0
      st.costs.length = 0
      st.head = 0
      st.sum = 0
    }
  }
  return decision(true, p.limit, whole(p.limit - st.sum), 0, resetAfter(p, st, now))
}

/** cloneLogState copies a log, for checks that must not write. */
export function cloneLogState(st: LogState): LogState {
  return { times: st.times.slice(st.head), costs: st.costs.slice(st.head), head: 0, sum: st.sum }
}
