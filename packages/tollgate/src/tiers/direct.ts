// The synchronous path of a tiered check on a MemoryStore. It takes the common case only
// (every tier enforcing, without a penalty, on a token bucket or window; no request id)
// and decides it with the store's Lanes, without the per-check records, the attempt and
// the failure handling an asynchronous store needs; anything else goes the general way.
//
// Most tiers of a gateway are keyed by one field (the user: requests per user, tokens per
// user, requests per user and model). A plan keeps a row per value of that field, with
// where each of those tiers' keys sits in the store's tables, so a request that comes
// again finds all of them with one Map lookup instead of one per tier (and its two-field
// keys without building them again).

import type { Decision } from "../core/decision.js"
import { type Lanes, MemoryStore } from "../stores/memory-store.js"
import type { Store } from "../stores/store.js"
import { bound, type Counter, closer, type TierDecision, type TieredDecision } from "./outcome.js"
import { type Limit, type Profile, pairKey, type Reader, type Tier } from "./resolve.js"

/** ROWS_CAP: the most principals a plan remembers (fewer when the store holds fewer keys). */
const ROWS_CAP = 262_144

/** PAIRS: the second-field values a principal's row remembers per two-field tier. */
const PAIRS = 2

/** HINT: the numbers of one remembered slot (slot, epoch, placed: see Lanes). */
const HINT = 3

/** How a step's key is made: from the main field alone, from it and one more, or otherwise. */
const OWN = 1
const PAIR = 2
const OTHER = 0

/**
 * DirectPlan checks a profile's tiers on a MemoryStore. One plan serves one profile of one
 * compiled config; its scratch (keys, costs, decisions) is reused from call to call, so
 * it is used by one call at a time, as a synchronous store is.
 *
 * The main field is the first key field of the most tiers. Each value of it seen (a
 * principal) gets a row: where the keys of its one-field tiers were found in their tables,
 * and for each two-field tier the last PAIRS second values, with their keys and slots. The
 * rows are a ring: past `cap` principals the oldest row is reused.
 */
export class DirectPlan {
  private readonly lanes: Lanes
  private readonly tiers: readonly Tier[]
  private readonly limits: readonly Limit[]
  private readonly names: readonly string[]
  /** field: the main field (undefined: no two tiers share a first field). */
  private readonly field: string | undefined
  /** how, seconds: per step, how its key is made, and the second field of a PAIR step. */
  private readonly how: Uint8Array
  private readonly seconds: readonly string[]
  /** base: per step, where its part of a row starts (in `rows` and, for PAIR steps, `pairs`). */
  private readonly base: Int32Array
  private readonly pairBase: Int32Array
  private readonly stride: number
  private readonly pairStride: number
  private readonly cap: number
  /** index: principal -> row; principals: row -> principal; next: the row to reuse. */
  private readonly index = new Map<string, number>()
  private readonly principals: string[] = []
  private next = 0
  private rows: Int32Array
  /**
   * pairs: per row and PAIR step, the remembered second values, each followed by its key
   * (side by side: one memory read finds both).
   */
  private readonly pairs: string[] = []
  private readonly keys: string[]
  private readonly costs: Float64Array
  private readonly where: Int32Array
  private readonly out: Decision[] = []
  /** template: the `tiers` object of a decision, with every tier's property (see answer). */
  private readonly template: Record<string, TierDecision>
  /** first: the first four tiers' names (see answer). */
  private readonly first: readonly string[]

  private constructor(lanes: Lanes, profile: Profile, cap: number) {
    const steps = profile.steps
    this.lanes = lanes
    this.tiers = steps.map((s) => s.tier)
    this.limits = steps.map((s) => s.limit)
    this.names = steps.map((s) => s.tier.name)
    const uses = new Map<string, number>()
    for (const { tier } of steps) {
      if (tier.fields.length === 1 || tier.fields.length === 2) {
        uses.set(tier.fields[0], (uses.get(tier.fields[0]) ?? 0) + 1)
      }
    }
    let field: string | undefined
    for (const [name, n] of uses) {
      if (n > 1 && (field === undefined || n > uses.get(field)!)) field = name
    }
    this.field = field
    this.how = Uint8Array.from(steps, ({ tier: { fields } }) =>
      field === undefined || fields[0] !== field ? OTHER : fields.length === 1 ? OWN : PAIR,
    )
    this.seconds = steps.map(({ tier: { fields } }) => fields[1] ?? "")
    this.base = new Int32Array(steps.length)
    this.pairBase = new Int32Array(steps.length)
    let stride = 0
    let pairStride = 0
    for (let i = 0; i < steps.length; i++) {
      this.base[i] = stride
      this.pairBase[i] = pairStride
      if (this.how[i] === OWN) stride += HINT
      if (this.how[i] === PAIR) {
        stride += PAIRS * HINT
        pairStride += 2 * PAIRS
      }
    }
    this.stride = stride
    this.pairStride = pairStride
    this.cap = cap
    this.rows = new Int32Array(Math.min(cap, 64) * stride)
    this.keys = steps.map(() => "")
    this.costs = new Float64Array(steps.length)
    this.where = new Int32Array(steps.length)
    const none = { allowed: false, limit: 0, remaining: 0, retryAfterMs: 0, resetAfterMs: 0 }
    this.template = {}
    for (const name of this.names) this.template[name] = none
    this.first = this.names.slice(0, 4)
  }

  /**
   * of makes the plan for a profile, or answers null when the store is not a MemoryStore
   * or some tier needs the general path (a penalty, shadow mode, a sliding window log or
   * concurrency limit).
   */
  static of(store: Store, profile: Profile): DirectPlan | null {
    if (!(store instanceof MemoryStore) || profile.steps.length === 0) return null
    for (const step of profile.steps) {
      if (step.penalty !== undefined || step.limit.shadow) return null
    }
    const lanes = store.lanes(profile.steps.map((s) => s.limit.ns))
    if (lanes === undefined) return null
    return new DirectPlan(lanes, profile, Math.min(ROWS_CAP, store.maxKeys))
  }

  /**
   * decide checks the reader's request, or answers undefined, having changed no state,
   * when the general path must: a tier's key field is missing (the tier does not apply)
   * or the cost is above a tier's limit (an error the general path reports).
   */
  decide(
    read: Reader,
    cost: number,
    now: number,
    counters: readonly Counter[],
  ): TieredDecision | undefined {
    const { tiers, limits, how, keys, costs, where } = this
    const n = tiers.length
    let row = -1
    let main: string | undefined
    if (this.field !== undefined) {
      // Read here rather than by read.value, whose one read of every field is slower than
      // a read of one field (the common string checked as read.value checks it).
      const v = read.request[this.field]
      main =
        typeof v === "string" && v.length > 0 && v.length <= read.maxLength
          ? v
          : read.value(this.field)
      if (main !== undefined) row = this.row(main)
    }
    for (let i = 0; i < n; i++) {
      const units = tiers[i].cost ? cost : 1
      if (units > limits[i].policy.limit) return undefined
      costs[i] = units
      const h = how[i]
      if (h === OWN && main !== undefined) {
        keys[i] = main
        where[i] = row * this.stride + this.base[i]
        continue
      }
      if (h === PAIR && main !== undefined) {
        const v = read.request[this.seconds[i]]
        const second =
          typeof v === "string" && v.length > 0 && v.length <= read.maxLength
            ? v
            : read.value(this.seconds[i])
        if (second === undefined) return undefined
        this.pair(row, i, main, second)
        continue
      }
      const key = tiers[i].key(read)
      if (key === undefined) return undefined
      keys[i] = key
      where[i] = -1
    }
    const allowed = this.lanes.check(keys, costs, this.rows, where, now, this.out)
    return this.answer(allowed, counters)
  }

  /** row finds or makes the row of a principal, reusing the oldest past `cap`. */
  private row(principal: string): number {
    const found = this.index.get(principal)
    if (found !== undefined) return found
    const row = this.next
    if (row < this.principals.length) {
      this.index.delete(this.principals[row])
    } else if ((row + 1) * this.stride > this.rows.length) {
      const grown = new Int32Array(Math.min(this.cap, 2 * (row + 1)) * this.stride)
      grown.set(this.rows)
      this.rows = grown
    }
    this.next = row + 1 < this.cap ? row + 1 : 0
    this.principals[row] = principal
    this.index.set(principal, row)
    this.rows.fill(-1, row * this.stride, (row + 1) * this.stride)
    const p = row * this.pairStride
    for (let j = 0; j < this.pairStride; j++) this.pairs[p + j] = ""
    return row
  }

  /**
   * pair sets step i's key and hint for the principal's second value: a remembered one,
   * or a new key made in place of the older of the two remembered.
   */
  private pair(row: number, i: number, main: string, second: string): void {
    const p = row * this.pairStride + this.pairBase[i]
    const h = row * this.stride + this.base[i]
    const pairs = this.pairs
    if (pairs[p] === second) {
      this.keys[i] = pairs[p + 1]
      this.where[i] = h
      return
    }
    if (pairs[p + 2] === second) {
      this.keys[i] = pairs[p + 3]
      this.where[i] = h + HINT
      return
    }
    // The newer moves to the second place; the new value takes the first.
    const rows = this.rows
    pairs[p + 2] = pairs[p]
    pairs[p + 3] = pairs[p + 1]
    rows.copyWithin(h + HINT, h, h + HINT)
    const key = pairKey(main, second)
    pairs[p] = second
    pairs[p + 1] = key
    rows.fill(-1, h, h + HINT)
    this.keys[i] = key
    this.where[i] = h
  }

  /**
   * answer builds the decision from the lanes' decisions and counts it in each tier. The
   * binding tier: when denied, the denying tier with the longest wait; when allowed, the
   * tier closest to its limit (as outcome() chooses).
   */
  private answer(allowed: boolean, counters: readonly Counter[]): TieredDecision {
    const { tiers, names, out } = this
    // A copy of the template has every tier's property already, in order: filling it in
    // adds none (adding them one by one, by name, costs more than the rest of the answer).
    const record: Record<string, TierDecision> = { ...this.template }
    const n = tiers.length
    // The first four by name, each at a place of its own (where it is always the same name).
    record[this.first[0]] = out[0]
    if (n > 1) record[this.first[1]] = out[1]
    if (n > 2) record[this.first[2]] = out[2]
    if (n > 3) record[this.first[3]] = out[3]
    let bind = out[0]
    let at = 0
    for (let i = 0; i < n; i++) {
      const d = out[i]
      if (i > 3) record[names[i]] = d
      const c = counters[tiers[i].index]
      c.checked++
      if (!d.allowed) c.denied++
      else if (allowed) c.allowed++
      if (i === 0) continue
      if (
        allowed
          ? closer(d, bind)
          : !d.allowed && (bind.allowed || d.retryAfterMs > bind.retryAfterMs)
      ) {
        bind = d
        at = i
      }
    }
    return bound(allowed, bind, names[at], record)
  }
}
