import { type Decision, decision, EPSILON_MS, whole } from "./decision.js"
import type { TokenBucketPolicy } from "./policy.js"

// GCRA. The state of a key is one number, its theoretical arrival time `tat` (epoch ms):
// the moment the bucket will be full again. A key with no state (0) is full. The bucket
// holds (windowMs - max(tat - now, 0)) / intervalMs tokens; tat beyond now + windowMs is
// debt taken on by reservations. Functions here read and write s[i] and nothing else.

/** ROUNDING is the relative spacing of doubles, 2^-52: a time t is exact to within t * ROUNDING / 2. */
const ROUNDING = 2.220446049250313e-16

/**
 * slack is how early a request may come and still count as on time. It is the core's
 * microsecond (EPSILON_MS), widened to the rounding that a burst of additions to epoch-ms
 * times can pile up: each `tat + cost * interval` near `now` rounds by up to
 * now * 2^-53, so without it a bucket of 97 per hour drained at one instant of
 * today's epoch would admit 96. It never exceeds half an interval (or the microsecond),
 * so no request is admitted earlier than half its refill time.
 */
export function slack(p: TokenBucketPolicy, now: number): number {
  // Written as one expression: it is on every decision's path, and small code is inlined.
  return Math.max(EPSILON_MS, Math.min(now * ROUNDING * p.burst, p.intervalMs * 0.5))
}

/**
 * tokens is the whole number of tokens in the bucket when it owes `debtMs` of refill.
 * It forgives the same `slack` as admission does, so `remaining` never understates
 * what limit() would admit, and never exceeds the burst.
 */
function tokens(p: TokenBucketPolicy, debtMs: number, slackMs: number): number {
  const w = p.windowMs
  const left = w - debtMs + slackMs
  // Less than half a token: 0 with no division (a bucket just emptied, as when denying).
  if (left + left < p.intervalMs) return 0
  // (w / T can round one ulp above the burst when the burst is huge.)
  const n = whole((left < w ? left : w) / p.intervalMs)
  return n <= p.burst ? n : Math.floor(p.burst)
}

/** tokenBucketLimit admits `cost` at `now` when the bucket holds it, storing the new tat. */
export function tokenBucketLimit(
  p: TokenBucketPolicy,
  s: Float64Array,
  i: number,
  now: number,
  cost: number,
): Decision {
  const stored = s[i]
  const tat = stored > now ? stored : now
  const next = tat + cost * p.intervalMs
  const slackMs = slack(p, now)
  if (next - now <= p.windowMs + slackMs) {
    s[i] = next
    return decision(true, p.burst, tokens(p, next - now, slackMs), 0, next - now)
  }
  return decision(false, p.burst, tokens(p, tat - now, slackMs), next - p.windowMs - now, tat - now)
}

/** tokenBucketPeek is tokenBucketLimit for cost 0 without writing. */
export function tokenBucketPeek(
  p: TokenBucketPolicy,
  s: Float64Array,
  i: number,
  now: number,
): Decision {
  const tat = s[i] > now ? s[i] : now
  const debt = tat - now
  const slackMs = slack(p, now)
  const allowed = debt <= p.windowMs + slackMs
  return decision(allowed, p.burst, tokens(p, debt, slackMs), allowed ? 0 : debt - p.windowMs, debt)
}

/** Grant is the outcome of a reservation: capacity committed for use at `executeAt`. */
export interface Grant {
  ok: boolean
  /** executeAt: when the reserved cost may be used (epoch ms); now when no wait. */
  executeAt: number
  /** delayMs: executeAt - now, >= 0; when not ok, the wait that would have been needed. */
  delayMs: number
  decision: Decision
}

/**
 * tokenBucketReserve commits `cost` for use at the earliest time the bucket allows it, if
 * that is within `maxWaitMs`. The bucket may go into debt: later requests queue behind.
 */
export function tokenBucketReserve(
  p: TokenBucketPolicy,
  s: Float64Array,
  i: number,
  now: number,
  cost: number,
  maxWaitMs: number,
): Grant {
  const stored = s[i]
  const tat = stored > now ? stored : now
  const next = tat + cost * p.intervalMs
  const wait = next - p.windowMs - now
  const slackMs = slack(p, now)
  const delayMs = wait <= slackMs ? 0 : wait
  if (delayMs <= maxWaitMs) {
    s[i] = next
    const remaining = tokens(p, next - now, slackMs)
    return {
      ok: true,
      executeAt: now + delayMs,
      delayMs,
      decision: decision(true, p.burst, remaining, 0, next - now),
    }
  }
  const remaining = tokens(p, tat - now, slackMs)
  return {
    ok: false,
    executeAt: now + delayMs,
    delayMs,
    decision: decision(false, p.burst, remaining, delayMs, tat - now),
  }
}

/**
 * tokenBucketCancel gives back a reservation made for `executeAt`, when that is still in
 * the future: all of its cost if no later reservation exists, less the cost of the later
 * ones otherwise (they keep their times, so admitted traffic never exceeds the policy).
 */
export function tokenBucketCancel(
  p: TokenBucketPolicy,
  s: Float64Array,
  i: number,
  now: number,
  cost: number,
  executeAt: number,
): void {
  if (executeAt <= now) return
  const full = cost * p.intervalMs
  const lastExecuteAt = s[i] - p.windowMs
  const overtaken = lastExecuteAt > executeAt ? lastExecuteAt - executeAt : 0
  const refund = full - overtaken
  if (refund > 0) s[i] -= Math.min(refund, full)
}

/** tokenBucketEmpty: the key is full at `now`, so dropping its state changes nothing. */
export function tokenBucketEmpty(
  _p: TokenBucketPolicy,
  s: Float64Array,
  i: number,
  now: number,
): boolean {
  return s[i] <= now
}

/**
 * tokenBucketConvert re-expresses a key's state under a new policy at `now`, keeping its
 * fill fraction: a bucket 30% empty stays 30% empty. Debt from reservations scales alike.
 */
export function tokenBucketConvert(
  from: TokenBucketPolicy,
  to: TokenBucketPolicy,
  s: Float64Array,
  i: number,
  now: number,
): void {
  if (s[i] > now) s[i] = now + (s[i] - now) * (to.windowMs / from.windowMs)
}

/**
 * tokenBucketAdjust charges `delta` tokens (refunds when negative) without an admission
 * test. A refund never fills past full; debt never exceeds one more bucket (2 x burst).
 */
export function tokenBucketAdjust(
  p: TokenBucketPolicy,
  s: Float64Array,
  i: number,
  now: number,
  delta: number,
): Decision {
  const tat = s[i] > now ? s[i] : now
  const next = Math.min(Math.max(tat + delta * p.intervalMs, now), now + 2 * p.windowMs)
  s[i] = next
  const debt = next - now
  return decision(true, p.burst, tokens(p, debt, slack(p, now)), 0, debt)
}
