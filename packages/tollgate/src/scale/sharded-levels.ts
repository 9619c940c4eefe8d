import type { Decision } from "../core/decision.js"
import type { ShardablePolicy } from "./sharded.js"

/**
 * LEVEL_EPSILON: levels closer than this (in cost units) count as equal. A token bucket's
 * level comes from epoch-ms times, whose rounding over a few dozen admissions can leave a
 * shard at 0.99999997 of a unit it really holds; a millionth of a unit absorbs that.
 */
export const LEVEL_EPSILON = 1e-6

// A shard's level is the cost it could admit now, in cost units: fractional for a token
// bucket, and negative while it owes (reservations, or a charge that outran it). Levels
// are read from decisions: a token bucket's exactly from resetAfterMs (the time until
// full, GCRA's debt), a fixed window's as `remaining` (whole units).

/** levelOf: the level a decision reports for a shard with policy `part`. */
export function levelOf(part: ShardablePolicy, d: Decision): number {
  return part.kind === "tokenBucket" ? part.limit - d.resetAfterMs / part.intervalMs : d.remaining
}

/**
 * Levels remembers the last level seen of each shard of one key, as two numbers per
 * shard: the level and the time the shard is full again (epoch ms). From them `at(j, t)`
 * projects the level at a later time: a token bucket refills linearly until full, a fixed
 * window is full again when its window ends. A shard never seen counts as full.
 */
export class Levels {
  readonly parts: readonly ShardablePolicy[]
  /** data[2j]: level when last seen; data[2j + 1]: when full again (0: full). */
  readonly data: Float64Array

  constructor(parts: readonly ShardablePolicy[]) {
    this.parts = parts
    this.data = new Float64Array(parts.length * 2)
  }

  /** record notes shard j's decision made at `now`. */
  record(j: number, d: Decision, now: number): void {
    this.data[2 * j] = levelOf(this.parts[j], d)
    this.data[2 * j + 1] = now + d.resetAfterMs
  }

  /** recordAll notes one decision per shard, in shard order. */
  recordAll(ds: readonly Decision[], now: number): void {
    for (let j = 0; j < ds.length; j++) this.record(j, ds[j], now)
  }

  /** at: shard j's projected level at time t. */
  at(j: number, t: number): number {
    const p = this.parts[j]
    const fullAt = this.data[2 * j + 1]
    if (t >= fullAt) return p.limit
    return p.kind === "tokenBucket" ? p.limit - (fullAt - t) / p.intervalMs : this.data[2 * j]
  }

  /** all: every shard's projected level at t. */
  all(t: number): number[] {
    const out: number[] = new Array(this.parts.length)
    for (let j = 0; j < out.length; j++) out[j] = this.at(j, t)
    return out
  }

  /** measured: what measure() last found (reused, to spare an allocation per decision). */
  private readonly measured = { total: 0, spread: 0, resetAfterMs: 0 }

  /**
   * measure: in one pass over the shards at time t, the projected levels' total, their
   * spread (highest less lowest) and the time until every shard is full. The object
   * returned is reused by the next call.
   */
  measure(t: number): { total: number; spread: number; resetAfterMs: number } {
    let total = 0
    let low = Number.POSITIVE_INFINITY
    let high = Number.NEGATIVE_INFINITY
    let latest = t
    for (let j = 0; j < this.parts.length; j++) {
      const level = this.at(j, t)
      total += level
      if (level < low) low = level
      if (level > high) high = level
      const fullAt = this.data[2 * j + 1]
      if (fullAt > latest) latest = fullAt
    }
    const m = this.measured
    m.total = total
    m.spread = high - low
    m.resetAfterMs = latest - t
    return m
  }

  /** resetAfterMs: until every shard is full again. */
  resetAfterMs(t: number): number {
    let latest = t
    for (let j = 0; j < this.parts.length; j++) latest = Math.max(latest, this.data[2 * j + 1])
    return latest - t
  }

  /** forget: every shard counts as full (unknown) again. */
  forget(): void {
    this.data.fill(0)
  }

  /** fullest: the shard with the highest projected level at t. */
  fullest(t: number): number {
    let best = 0
    for (let j = 1; j < this.parts.length; j++) if (this.at(j, t) > this.at(best, t)) best = j
    return best
  }

  /**
   * retryAfterMs: the least wait from `now` until pieces() could cover `cost` from the
   * projected levels (bisection: levels only grow with time, and when every shard is full
   * the whole limit is there). 0 when it already can.
   */
  retryAfterMs(cost: number, now: number): number {
    const enough = (t: number) => pieces(this.all(t), cost) !== undefined
    if (enough(now)) return 0
    let lo = now
    let hi = now + this.resetAfterMs(now)
    if (!enough(hi)) return hi - now
    for (let i = 0; i < 60 && hi - lo > 1e-6; i++) {
      const mid = (lo + hi) / 2
      if (enough(mid)) hi = mid
      else lo = mid
    }
    return hi - now
  }
}

export function sum(levels: readonly number[]): number {
  let total = 0
  for (const level of levels) total += level
  return total
}

/** spread: the highest level less the lowest. */
export function spread(levels: readonly number[]): number {
  let low = Number.POSITIVE_INFINITY
  let high = Number.NEGATIVE_INFINITY
  for (const level of levels) {
    if (level < low) low = level
    if (level > high) high = level
  }
  return levels.length === 0 ? 0 : high - low
}

/**
 * pieces plans taking `cost` from the shards, fullest first: whole units from each, until
 * one shard holds all that is still needed (fraction included) and completes it. Returns
 * [shard, piece] pairs, or undefined when the levels cannot cover the cost that way.
 * Fractions of a unit are never split off: a token bucket's shards each hold some
 * fraction, which would otherwise turn every request into pieces from every shard. What
 * that strands is less than one unit per shard, and only until the shards refill it.
 */
export function pieces(levels: readonly number[], cost: number): [number, number][] | undefined {
  const order = levels.map((_, j) => j).sort((a, b) => levels[b] - levels[a])
  const out: [number, number][] = []
  let need = cost
  for (const j of order) {
    if (need <= LEVEL_EPSILON) break
    // A level within LEVEL_EPSILON of a whole unit counts as it; the piece asked is then
    // the level itself, which the shard admits (the difference is rounding).
    if (levels[j] + LEVEL_EPSILON >= need) {
      out.push([j, Math.min(need, levels[j])])
      need = 0
      break
    }
    const units = Math.floor(levels[j] + LEVEL_EPSILON)
    if (units < 1) break
    out.push([j, Math.min(units, levels[j])])
    need -= units
  }
  return need <= LEVEL_EPSILON ? out : undefined
}

/**
 * moves plans a rebalance: every shard's target is its share (limit / whole limit) of the
 * levels' sum. Shards above their target are charged the excess in whole units (rounded
 * down), and what that takes is refunded to the shards below, largest deficit first, each
 * at most its deficit rounded up and never past full: the sum is kept, and levels that
 * were whole units stay so (a fraction moved would strand on both sides, see pieces).
 */
export function moves(
  parts: readonly ShardablePolicy[],
  levels: readonly number[],
): { charges: number[]; refunds: number[] } {
  const n = parts.length
  let capacity = 0
  for (const p of parts) capacity += p.limit
  const total = sum(levels)
  const charges: number[] = new Array(n).fill(0)
  const refunds: number[] = new Array(n).fill(0)
  const deficits: [number, number][] = []
  let pool = 0
  for (let j = 0; j < n; j++) {
    const excess = levels[j] - (total * parts[j].limit) / capacity
    if (excess >= 1 - LEVEL_EPSILON) {
      charges[j] = Math.floor(excess + LEVEL_EPSILON)
      pool += charges[j]
    } else if (excess < 0) {
      deficits.push([j, -excess])
    }
  }
  deficits.sort((a, b) => b[1] - a[1])
  for (const [j, deficit] of deficits) {
    if (pool <= 0) break
    const room = parts[j].limit - levels[j]
    const refund = Math.min(pool, Math.ceil(deficit - LEVEL_EPSILON), room)
    refunds[j] = refund
    pool -= refund
  }
  return { charges, refunds }
}

/**
 * deal splits the whole units of `total` over the shards in proportion to their limits:
 * rounded down, the units left over going to the largest remainders, so the parts add up
 * to the whole units of `total` (a fraction of a unit is dropped).
 */
export function deal(parts: readonly ShardablePolicy[], total: number): number[] {
  let capacity = 0
  for (const p of parts) capacity += p.limit
  const units = Math.floor(total + LEVEL_EPSILON)
  const exact = parts.map((p) => (units * p.limit) / capacity)
  const out = exact.map((x) => Math.floor(x + LEVEL_EPSILON))
  let left = units - sum(out)
  const order = exact.map((_, j) => j).sort((a, b) => exact[b] - out[b] - (exact[a] - out[a]))
  for (const j of order) {
    if (left <= 0) break
    out[j]++
    left--
  }
  return out
}

/** giveBack spreads `amount` (what the charges actually took) over planned refunds, largest first. */
export function giveBack(refunds: readonly number[], amount: number): number[] {
  const out: number[] = new Array(refunds.length).fill(0)
  const order = refunds.map((_, j) => j).sort((a, b) => refunds[b] - refunds[a])
  let left = amount
  for (const j of order) {
    if (left <= 1e-9) break
    out[j] = Math.min(refunds[j], left)
    left -= out[j]
  }
  return out
}
