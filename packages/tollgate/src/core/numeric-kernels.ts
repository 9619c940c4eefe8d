import type { Decision } from "./decision.js"
import {
  fixedWindowAdjust,
  fixedWindowEmpty,
  fixedWindowLimit,
  fixedWindowPeek,
} from "./fixed-window.js"
import type { Policy } from "./policy.js"
import {
  slidingWindowCounterAdjust,
  slidingWindowCounterEmpty,
  slidingWindowCounterLimit,
  slidingWindowCounterPeek,
} from "./sliding-window-counter.js"
import {
  tokenBucketAdjust,
  tokenBucketEmpty,
  tokenBucketLimit,
  tokenBucketPeek,
} from "./token-bucket.js"

/**
 * NumericKernel: the core functions of one policy kind whose state is `width` numbers at
 * s[i..] (all zeros: no state). Stores that keep state in typed arrays use these.
 */
export interface NumericKernel {
  width: number
  limit(p: Policy, s: Float64Array, i: number, now: number, cost: number): Decision
  peek(p: Policy, s: Float64Array, i: number, now: number): Decision
  empty(p: Policy, s: Float64Array, i: number, now: number): boolean
  adjust(p: Policy, s: Float64Array, i: number, now: number, delta: number): Decision
}

// Each kernel is typed for its own policy; the table is indexed by policy kind, so a kernel
// only ever sees its own kind of policy.
function kernel<P extends Policy>(k: {
  width: number
  limit(p: P, s: Float64Array, i: number, now: number, cost: number): Decision
  peek(p: P, s: Float64Array, i: number, now: number): Decision
  empty(p: P, s: Float64Array, i: number, now: number): boolean
  adjust(p: P, s: Float64Array, i: number, now: number, delta: number): Decision
}): NumericKernel {
  return k as unknown as NumericKernel
}

/** NUMERIC_KERNELS: the policy kinds with fixed-size numeric state, by kind. */
export const NUMERIC_KERNELS: Readonly<Record<string, NumericKernel>> = {
  tokenBucket: kernel({
    width: 1,
    limit: tokenBucketLimit,
    peek: tokenBucketPeek,
    empty: tokenBucketEmpty,
    adjust: tokenBucketAdjust,
  }),
  fixedWindow: kernel({
    width: 2,
    limit: fixedWindowLimit,
    peek: fixedWindowPeek,
    empty: fixedWindowEmpty,
    adjust: fixedWindowAdjust,
  }),
  slidingWindowCounter: kernel({
    width: 3,
    limit: slidingWindowCounterLimit,
    peek: slidingWindowCounterPeek,
    empty: slidingWindowCounterEmpty,
    adjust: slidingWindowCounterAdjust,
  }),
}
