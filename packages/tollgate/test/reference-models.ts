// Reference models for the property tests: each algorithm restated as plainly as possible,
// from a list of the admissions it made. No timestamps folded into one number, no running
// sums, no trimming: every question is answered by looking at the whole list again. They
// are slow on purpose, and meant to be read next to DESIGN.md, not next to src/core.
//
// Times are epoch ms, exactly as the limiter's clock reports them.

/** Tolerance for sums of fractional costs (the library uses the same one). */
export const COST_SLACK = 1e-9

/**
 * EARLY_MS: a request up to one microsecond early counts as on time. The library states this
 * for its time arithmetic (floating-point steps on epoch-ms values are ~0.0002 ms); the
 * models apply it the same way to every algorithm: a question asked at `t` is answered as
 * of `t + EARLY_MS`.
 */
export const EARLY_MS = 1e-3

/** ReferenceModel: the state of one key, as the list of what was admitted. */
export interface ReferenceModel {
  /** limit: the capacity (burst of a bucket, limit of a window). */
  readonly limit: number
  /** used: the capacity taken at time `t` (>= the last admission), if nothing more is admitted. */
  used(t: number): number
  /** admit records an admission of `cost` at `t`; for leases it returns the lease's id. */
  admit(t: number, cost: number): number
  /** release ends a lease early (concurrency only). */
  release(id: number): void
}

interface Admission {
  t: number
  cost: number
}

/**
 * tokenBucketModel: a bucket of `burst` tokens, full at the start, gaining `rate` tokens
 * per `periodMs` continuously and never holding more than `burst`. Each admission takes
 * its cost out. The fill is replayed from the first admission on every question.
 */
export function tokenBucketModel(rate: number, periodMs: number, burst: number): ReferenceModel {
  const admissions: Admission[] = []
  const tokensAt = (t: number): number => {
    let tokens = burst
    let last = Number.NaN
    for (const a of admissions) {
      if (!Number.isNaN(last)) tokens = Math.min(burst, tokens + ((a.t - last) * rate) / periodMs)
      tokens -= a.cost
      last = a.t
    }
    if (Number.isNaN(last)) return burst
    return Math.min(burst, tokens + ((t - last) * rate) / periodMs)
  }
  return {
    limit: burst,
    used: (t) => burst - tokensAt(t),
    admit(t, cost) {
      admissions.push({ t, cost })
      return admissions.length
    },
    release() {},
  }
}

/**
 * slidingWindowLogModel: an admission at `a` still counts at `t` while it lies within the
 * last `windowMs`, i.e. while a > t - windowMs.
 */
export function slidingWindowLogModel(limit: number, windowMs: number): ReferenceModel {
  const admissions: Admission[] = []
  return {
    limit,
    used(t) {
      let sum = 0
      for (const a of admissions) if (a.t > t - windowMs) sum += a.cost
      return sum
    },
    admit(t, cost) {
      admissions.push({ t, cost })
      return admissions.length
    },
    release() {},
  }
}

/** windowIndex numbers the epoch-aligned windows of `windowMs`: window n is [n*w, (n+1)*w). */
export function windowIndex(t: number, windowMs: number): number {
  return Math.floor(t / windowMs)
}

/** fixedWindowModel: what was admitted in the epoch-aligned window that holds `t`. */
export function fixedWindowModel(limit: number, windowMs: number): ReferenceModel {
  const admissions: Admission[] = []
  return {
    limit,
    used(t) {
      let sum = 0
      for (const a of admissions) {
        if (windowIndex(a.t, windowMs) === windowIndex(t, windowMs)) sum += a.cost
      }
      return sum
    },
    admit(t, cost) {
      admissions.push({ t, cost })
      return admissions.length
    },
    release() {},
  }
}

/**
 * slidingWindowCounterModel: DESIGN's approximation, straight from the admissions: the
 * current epoch-aligned window counts fully, the one before it counts in proportion to how
 * much of it the sliding window ending at `t` still covers.
 */
export function slidingWindowCounterModel(limit: number, windowMs: number): ReferenceModel {
  const admissions: Admission[] = []
  return {
    limit,
    used(t) {
      const n = windowIndex(t, windowMs)
      let current = 0
      let previous = 0
      for (const a of admissions) {
        const m = windowIndex(a.t, windowMs)
        if (m === n) current += a.cost
        else if (m === n - 1) previous += a.cost
      }
      const start = n * windowMs
      return previous * (1 - (t - start) / windowMs) + current
    },
    admit(t, cost) {
      admissions.push({ t, cost })
      return admissions.length
    },
    release() {},
  }
}

/**
 * concurrencyModel: every admission with a cost is a lease that holds its cost until it is
 * released or until `leaseTimeoutMs` after it was admitted (gone at exactly that instant).
 */
export function concurrencyModel(limit: number, leaseTimeoutMs: number): ReferenceModel {
  const leases: { id: number; cost: number; expiresAt: number; released: boolean }[] = []
  return {
    limit,
    used(t) {
      let sum = 0
      for (const l of leases) if (!l.released && l.expiresAt > t) sum += l.cost
      return sum
    },
    admit(t, cost) {
      const id = leases.length + 1
      if (cost > 0) leases.push({ id, cost, expiresAt: t + leaseTimeoutMs, released: false })
      return id
    },
    release(id) {
      for (const l of leases) if (l.id === id) l.released = true
    },
  }
}

/** allows: a request of `cost` at `t` fits in what is left. */
export function allows(model: ReferenceModel, t: number, cost: number): boolean {
  return model.used(t + EARLY_MS) + cost <= model.limit + COST_SLACK
}

/** wholeRemaining: the whole cost units left at `t`: the largest whole cost `allows` admits. */
export function wholeRemaining(model: ReferenceModel, t: number): number {
  const left = model.limit - model.used(t + EARLY_MS)
  return left <= 0 ? 0 : Math.floor(left + COST_SLACK)
}

/** isFull: nothing of the capacity is taken at `t`. */
export function isFull(model: ReferenceModel, t: number): boolean {
  return model.used(t + EARLY_MS) <= COST_SLACK
}

/**
 * firstTime is the earliest time in [from, from + horizonMs] at which `holds` is true,
 * found by bisection. `holds` must stay true once it becomes true (all the models only
 * free capacity as time passes). Precise to one floating-point step.
 */
export function firstTime(from: number, horizonMs: number, holds: (t: number) => boolean): number {
  if (holds(from)) return from
  let lo = from
  let hi = from + horizonMs
  if (!holds(hi)) throw new Error(`reference model: nothing frees up within ${horizonMs} ms`)
  for (;;) {
    const mid = lo + (hi - lo) / 2
    if (mid <= lo || mid >= hi) return hi
    if (holds(mid)) hi = mid
    else lo = mid
  }
}
