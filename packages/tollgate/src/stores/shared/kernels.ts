import { NUMERIC_KERNELS, type NumericKernel } from "../../core/numeric-kernels.js"
import type { Policy } from "../../core/policy.js"
import { tokenBucketConvert } from "../../core/token-bucket.js"
import { FIXED_WINDOW, SLIDING_WINDOW_COUNTER, TOKEN_BUCKET } from "./layout.js"

/** Kernel: a core numeric kernel plus the code the shared registry records for its kind. */
export interface Kernel extends NumericKernel {
  code: number
}

const CODES: Record<string, number> = {
  tokenBucket: TOKEN_BUCKET,
  fixedWindow: FIXED_WINDOW,
  slidingWindowCounter: SLIDING_WINDOW_COUNTER,
}

/** KERNELS: the policy kinds a SharedMemoryStore holds (fixed-size state only). */
export const KERNELS: Readonly<Record<string, Kernel>> = Object.fromEntries(
  Object.entries(NUMERIC_KERNELS).map(([kind, kernel]) => [kind, { ...kernel, code: CODES[kind] }]),
)

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
 * re-expressed to keep its fill fraction, unless `keepTime` (a namespace made `shared`:
 * the plans of a tier share one bucket, whose time to full carries over as it is, as in
 * MemoryStore). Windows are not converted (as in MemoryStore); the longer window is
 * kept, so that eviction never takes a count that still matters.
 */
export function convert(
  p: Policy,
  w: number,
  stored: number,
  s: Float64Array,
  i: number,
  now: number,
  keepTime = false,
): number {
  if (p.kind !== "tokenBucket") return stored > w ? stored : w
  if (stored > 0 && stored !== w && !keepTime) {
    tokenBucketConvert({ ...p, windowMs: stored }, p, s, i, now)
  }
  return w
}
