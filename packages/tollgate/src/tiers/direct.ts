// The synchronous path of a tiered check on a MemoryStore: the request's tiers checked
// with one limitAll of the store (which decides token buckets, windows and counters on
// distinct keys straight on its tables), without the per-check records, the attempt and
// the failure handling an asynchronous store needs. It takes the common case only (every
// tier enforcing and without a penalty; no request id); anything else goes the general
// way.

import { MemoryStore } from "../stores/memory-store.js"
import type { Check, Namespace, Store } from "../stores/store.js"
import { type Counter, Entry, outcome, type TieredDecision } from "./outcome.js"
import type { Profile, Reader, Tier } from "./resolve.js"

/**
 * DirectPlan checks a profile's tiers on a MemoryStore. One plan serves one profile of
 * one compiled config; it holds one reused check per tier (its key and cost, for
 * limitAll) and one reused Entry (its decision, for `outcome`), so it is used by one call
 * at a time, as a synchronous store is.
 */
export class DirectPlan {
  private readonly store: MemoryStore
  private readonly tiers: readonly Tier[]
  private readonly entries: readonly Entry[]
  private readonly checks: { namespace: Namespace; key: string; cost: number }[]

  private constructor(store: MemoryStore, profile: Profile) {
    this.store = store
    this.tiers = profile.steps.map((s) => s.tier)
    this.entries = profile.steps.map((s) => new Entry("tier", s.limit, "", 0, s.limit, s.tier, -1))
    this.checks = profile.steps.map((s) => ({ namespace: s.limit.ns, key: "", cost: 0 }))
  }

  /**
   * of makes the plan for a profile, or answers null when the store is not a MemoryStore
   * or some tier needs the general path (a penalty, shadow mode).
   */
  static of(store: Store, profile: Profile): DirectPlan | null {
    if (!(store instanceof MemoryStore) || profile.steps.length === 0) return null
    for (const step of profile.steps) {
      if (step.penalty !== undefined || step.limit.shadow) return null
    }
    return new DirectPlan(store, profile)
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
    const { tiers, entries, checks } = this
    for (let i = 0; i < checks.length; i++) {
      const key = tiers[i].key(read)
      if (key === undefined) return undefined
      const units = tiers[i].cost ? cost : 1
      if (units > entries[i].limit!.policy.limit) return undefined
      checks[i].key = key
      checks[i].cost = units
    }
    const results = this.store.limitAll(checks as readonly Check[], now)
    let allowed = true
    for (let i = 0; i < entries.length; i++) {
      entries[i].result = results[i]
      if (!results[i].allowed) allowed = false
    }
    return outcome(entries, allowed, counters)
  }
}
