import type { Decision } from "../../core/decision.js"
import {
  fixedWindowAdjust,
  fixedWindowEmpty,
  fixedWindowLimit,
  fixedWindowPeek,
} from "../../core/fixed-window.js"
import type { Policy } from "../../core/policy.js"
import {
  slidingWindowCounterAdjust,
  slidingWindowCounterEmpty,
  slidingWindowCounterLimit,
  slidingWindowCounterPeek,
} from "../../core/sliding-window-counter.js"
import {
  tokenBucketAdjust,
  tokenBucketConvert,
  tokenBucketEmpty,
  tokenBucketLimit,
  tokenBucketPeek,
} from "../../core/token-bucket.js"
import { FIXED_WINDOW, SLIDING_WINDOW_COUNTER, TOKEN_BUCKET } from "./layout.js"

/** Kernel: the core functions of one policy kind, over `width` state numbers at s[i..]. */
export interface Kernel {
  /** code: the kind as the shared registry records it. */
  code: number
  width: number
  limit(p: Policy, s: Float64Array, i: number, now: number, cost: number): Decision
  peek(p: Policy, s: Float64Array, i: number, now: number): Decision
  empty(p: Policy, s: Float64Array, i: number, now: number): boolean
  adjust(p: Policy, s: Float64Array, i: number, now: number, delta: number): Decision
}

// Each kernel is typed for its own policy; the table is indexed by policy kind, so a kernel
// only ever sees its own kind of policy.
function kernel<P extends Policy>(k: {
  code: number
  width: number
  limit(p: P, s: Float64Array, i: number, now: number, cost: number): Decision
  peek(p: P, s: Float64Array, i: number, now: number): Decision
  empty(p: P, s: Float64Array, i: number, now: number): boolean
  adjust(p: P, s: Float64Array, i: number, now: number, delta: number): Decision
}): Kernel {
  return k as unknown as Kernel
}

/** KERNELS: the policy kinds a SharedMemoryStore holds (fixed-size state only). */
export const KERNELS: Readonly<Record<string, Kernel>> = {
  tokenBucket: kernel({
    code: TOKEN_BUCKET,
    width: 1,
    limit: tokenBucketLimit,
    peek: tokenBucketPeek,
    empty: tokenBucketEmpty,
    adjust: tokenBucketAdjust,
  }),
  fixedWindow: kernel({
    code: FIXED_WINDOW,
    width: 2,
    limit: fixedWindowLimit,
    peek: fixedWindowPeek,
    empty: fixedWindowEmpty,
    adjust: fixedWindowAdjust,
  }),
  slidingWindowCounter: kernel({
    code: SLIDING_WINDOW_COUNTER,
    width: 3,
    limit: slidingWindowCounterLimit,
    peek: slidingWindowCounterPeek,
    empty: slidingWindowCounterEmpty,
    adjust: slidingWindowCounterAdjust,
  }),
}

const f32 = new Float32Array(1)
const i32 = new Int32Array(f32.buffer)

/** window32 is `ms` (> 0) as the nearest float32 at or above it: what a slot records. */
export function window32(ms: number): number {
  f32[0] = ms
  if (f32[0] < ms) i32[0]++
  return f32[0]
}

/**
 * convert readies state s[i..] recorded under window `stored` (a slot's window32, 0 when
 * none) for policy `p` whose window32 is `w`, and returns the window to record. A token
 * bucket written under another windowMs (another thread's policy, or before setPolicy) is
 * re-expressed to keep its fill fraction. Windows are not converted (as in MemoryStore);
 * the longer window is kept, so that eviction never takes a count that still matters.
 */
export function convert(
  p: Policy,
  w: number,
  stored: number,
  s: Float64Array,
  i: number,
  now: number,
): number {
  if (p.kind !== "tokenBucket") return stored > w ? stored : w
  if (stored > 0 && stored !== w) tokenBucketConvert({ ...p, windowMs: stored }, p, s, i, now)
  return w
}
