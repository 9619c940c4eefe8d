// The synchronous path of a tiered check on a MemoryStore: the request's tiers decided
// on the store's key tables directly, all or nothing, without the store calls, the
// per-check records and the retry machinery an asynchronous store needs. It takes the
// common case only (every tier numeric, enforcing, without a penalty; no request id)
// and decides exactly as MemoryStore.limitAll would: each tier's check on the live
// state in order, a new key's state aside until every check has passed, everything put
// back when one denies. Anything else goes the general way.

import type { Decision } from "../core/decision.js"
import type { NumericKernel } from "../core/numeric-kernels.js"
import type { Policy } from "../core/policy.js"
import type { KeyTable } from "../stores/key-table.js"
import { type Direct, directOf } from "../stores/memory-store.js"
import { type Counter, Entry, outcome, type TieredDecision } from "./outcome.js"
import type { Profile, Reader, Tier } from "./resolve.js"

/** WIDTH: room for any numeric kernel's state. */
const WIDTH = 4

/**
 * DirectPlan decides a profile's tiers on the tables of a MemoryStore. One plan serves
 * one profile of one compiled config; it holds scratch space and one reused Entry per
 * tier (each carries the tier's decision for `outcome` until the next call), so it is
 * used by one call at a time, as a synchronous store is.
 */
export class DirectPlan {
  private readonly tiers: readonly Tier[]
  private readonly tables: readonly KeyTable<unknown>[]
  private readonly kernels: readonly NumericKernel[]
  private readonly policies: readonly Policy[]
  private readonly entries: readonly Entry[]
  /** per call: each tier's key, units and slot (-1: the key has no state yet). */
  private readonly keys: string[]
  private readonly units: Float64Array
  private readonly slots: Int32Array
  /** before: per tier, the state of a key that had one, as it was before this call. */
  private readonly before: Float64Array
  /** fresh: per tier, the state of a key that had none, until the call is admitted. */
  private readonly fresh: Float64Array[]

  private constructor(profile: Profile, directs: readonly Direct[]) {
    const n = directs.length
    this.tiers = profile.steps.map((s) => s.tier)
    this.tables = directs.map((d) => d.table)
    this.kernels = directs.map((d) => d.kernel)
    this.policies = directs.map((d) => d.policy)
    this.entries = profile.steps.map((s) => new Entry("tier", s.limit, "", 0, s.limit, s.tier, -1))
    this.keys = new Array<string>(n).fill("")
    this.units = new Float64Array(n)
    this.slots = new Int32Array(n)
    this.before = new Float64Array(n * WIDTH)
    this.fresh = directs.map(() => new Float64Array(WIDTH))
  }

  /**
   * of makes the plan for a profile, or answers null when some tier needs the general
   * path: a penalty, shadow mode, or state that is not numeric (or not in a MemoryStore).
   */
  static of(profile: Profile): DirectPlan | null {
    if (profile.steps.length === 0) return null
    const directs: Direct[] = []
    for (const step of profile.steps) {
      if (step.penalty !== undefined || step.limit.shadow) return null
      const d = directOf(step.limit.ns)
      if (d === undefined || d.kernel.width > WIDTH) return null
      directs.push(d)
    }
    return new DirectPlan(profile, directs)
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
    const n = this.entries.length
    const { tiers, keys, units, policies } = this
    for (let i = 0; i < n; i++) {
      const key = tiers[i].key(read)
      if (key === undefined) return undefined
      const u = tiers[i].cost ? cost : 1
      if (u > policies[i].limit) return undefined
      keys[i] = key
      units[i] = u
    }
    const { tables, kernels, entries, slots, before, fresh } = this
    let allowed = true
    let staged = 0
    try {
      for (; staged < n; staged++) {
        const i = staged
        const table = tables[i]
        const k = kernels[i]
        const slot = table.find(keys[i])
        slots[i] = slot
        let d: Decision
        if (slot >= 0) {
          const data = table.data
          const at = slot * k.width
          for (let j = 0; j < k.width; j++) before[i * WIDTH + j] = data[at + j]
          d = k.limit(policies[i], data, at, now, units[i])
        } else {
          const s = fresh[i]
          s.fill(0)
          d = k.limit(policies[i], s, 0, now, units[i])
        }
        entries[i].result = d
        if (!d.allowed) allowed = false
      }
    } finally {
      // A check that threw (a calendar window at a time Date cannot hold) changes nothing.
      if (staged < n) this.undo(staged)
    }
    if (allowed) {
      for (let i = 0; i < n; i++) {
        if (slots[i] >= 0) continue
        const k = kernels[i]
        const s = fresh[i]
        if (k.empty(policies[i], s, 0, now)) continue
        const table = tables[i]
        const at = table.add(keys[i], now) * k.width
        const data = table.data
        for (let j = 0; j < k.width; j++) data[at + j] = s[j]
      }
    } else {
      this.undo(n)
    }
    return outcome(entries, allowed, counters)
  }

  /** undo puts back the state of the first `count` tiers' keys, newest first. */
  private undo(count: number): void {
    const { tables, kernels, slots, before } = this
    for (let i = count - 1; i >= 0; i--) {
      if (slots[i] < 0) continue
      const data = tables[i].data
      const w = kernels[i].width
      const at = slots[i] * w
      for (let j = 0; j < w; j++) data[at + j] = before[i * WIDTH + j]
    }
  }
}
