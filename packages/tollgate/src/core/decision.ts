/**
 * Decision is the answer to one rate-limit question. A denied request consumed nothing.
 * Times are milliseconds from the moment of the decision.
 */
export interface Decision {
  /** allowed is true when the request was admitted (and its cost consumed). */
  allowed: boolean
  /** limit is the policy's capacity: the burst of a token bucket, the limit of a window. */
  limit: number
  /** remaining is how many whole cost units could still be admitted right now, >= 0. */
  remaining: number
  /** retryAfterMs is how long until the same request could be admitted; 0 when allowed. */
  retryAfterMs: number
  /** resetAfterMs is how long until the key is back to full capacity, >= 0. */
  resetAfterMs: number
  /** tier names the tier that denied, for multi-tier limiters. */
  tier?: string
  /** degraded is set only when the store failed and `onStoreError` decided instead. */
  degraded?: "fallback" | "open"
  /** lease is set when a concurrency policy admitted the request: release it when done. */
  lease?: Lease
}

/**
 * Lease is one admitted unit of a concurrency policy. `release()` gives it back (idempotent);
 * it also ends by itself at `expiresAt`. `using lease = decision.lease` releases on scope exit.
 */
export interface Lease {
  readonly id: string
  readonly key: string
  readonly cost: number
  /** expiresAt is when the lease ends by itself (epoch ms). */
  readonly expiresAt: number
  release(): void | Promise<void>
  [Symbol.dispose](): void
  [Symbol.asyncDispose](): Promise<void>
}

/** decision builds a Decision; every Decision of the core has this one shape. */
export function decision(
  allowed: boolean,
  limit: number,
  remaining: number,
  retryAfterMs: number,
  resetAfterMs: number,
): Decision {
  return { allowed, limit, remaining, retryAfterMs, resetAfterMs }
}

/**
 * EPSILON_MS absorbs floating-point error in time arithmetic on epoch-ms values (one ulp
 * there is ~0.0002 ms): a request up to one microsecond early counts as on time.
 */
export const EPSILON_MS = 1e-3

/** COST_EPSILON absorbs rounding error when fractional costs are summed. */
export const COST_EPSILON = 1e-9

/** whole is the number of whole units in x (x may carry rounding error just below an integer). */
export function whole(x: number): number {
  return x <= 0 ? 0 : Math.floor(x + 1e-9)
}
