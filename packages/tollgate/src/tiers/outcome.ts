// What a tiered check answers: the per-tier details, the binding tier, and the counters
// behind stats(). Pure functions over the checks of one request and their decisions.

import type { Decision } from "../core/decision.js"
import type { Check, Namespace } from "../stores/store.js"
import type { Limit, Slot, Tier } from "./resolve.js"

/** TierDecision: one tier's part of a TieredDecision. */
export interface TierDecision {
  /** allowed: this tier alone would admit the request (a shadow tier may say false and not deny). */
  allowed: boolean
  limit: number
  /** remaining: whole units left in this tier, as if this request were counted. */
  remaining: number
  retryAfterMs: number
  resetAfterMs: number
  /** shadow: the tier is in shadow mode here: reported, never denying. */
  shadow?: true
  /** blocked: the key is serving this tier's penalty; retryAfterMs covers the rest of it. */
  blocked?: true
}

/**
 * TieredDecision: a Decision for a whole request. The top-level fields are those of the
 * binding tier: when denied, the denying tier with the longest wait (named in `tier`);
 * when allowed, the tier closest to its limit (smallest remaining / limit). With no tier
 * applied (allow list, "unlimited", only shadow tiers) limit and remaining are Infinity.
 */
export interface TieredDecision extends Decision {
  /** tiers: every tier that applied to the request, by name, in check order. */
  tiers: Record<string, TierDecision>
  /** listed: set when an allow or deny list decided, without counting anything. */
  listed?: "allow" | "deny"
  /** duplicate: a repeat of an admitted request id; nothing was counted this time. */
  duplicate?: true
}

/** TierStats: counters of one tier since the limiter was made. */
export interface TierStats {
  /** checked: requests the tier applied to and that were decided by the store. */
  checked: number
  /** allowed: checked requests that were admitted (and so counted in this tier). */
  allowed: number
  /** denied: requests this tier denied (several tiers may deny one request). */
  denied: number
  /** shadowDenied: requests this tier would have denied, admitted because it is in shadow mode. */
  shadowDenied: number
  /** denyRate: denied / checked, 0 before any check. */
  denyRate: number
}

/** TieredStats: what stats() answers: totals, and counters per tier. */
export interface TieredStats {
  allowed: number
  denied: number
  /** denyRate: denied / (allowed + denied), 0 before any decision. */
  denyRate: number
  /** shadowDenied: requests admitted only because the tiers that would deny them are in shadow mode. */
  shadowDenied: number
  /** blocked: denials of keys serving a penalty. */
  blocked: number
  /** listed: decisions made by the allow and deny lists (also counted in allowed / denied). */
  listed: { allowed: number; denied: number }
  /** duplicates: repeats of admitted request ids (counted in `allowed`). */
  duplicates: number
  storeErrors: number
  fallbacks: number
  failOpen: number
  tiers: Record<string, TierStats>
}

/** Counter: the mutable counters behind TierStats. */
export interface Counter {
  checked: number
  allowed: number
  denied: number
  shadowDenied: number
}

/** Entry: one check of a request, with what it is for and, once decided, its decision. */
export class Entry implements Check {
  readonly namespace: Namespace
  readonly key: string
  readonly cost: number
  readonly kind: "tier" | "penalty" | "request-id"
  readonly slot: Slot
  /** limit, tier: set for tier entries (tier also for penalty entries). */
  readonly limit: Limit | undefined
  readonly tier: Tier | undefined
  /** penalty: for a tier entry, the index of its penalty entry, else -1. */
  readonly penalty: number
  /** active: still part of the all-or-nothing check (a failing shadow tier is dropped). */
  active = true
  result: Decision | undefined = undefined

  constructor(
    kind: Entry["kind"],
    slot: Slot,
    key: string,
    cost: number,
    limit: Limit | undefined,
    tier: Tier | undefined,
    penalty: number,
  ) {
    this.namespace = slot.ns
    this.key = key
    this.cost = cost
    this.kind = kind
    this.slot = slot
    this.limit = limit
    this.tier = tier
    this.penalty = penalty
  }
}

/** unlimited is the decision for a request no enforcing tier limits. */
export function unlimited(allowed: boolean): TieredDecision {
  return {
    allowed,
    limit: Number.POSITIVE_INFINITY,
    remaining: allowed ? Number.POSITIVE_INFINITY : 0,
    retryAfterMs: allowed ? 0 : Number.POSITIVE_INFINITY,
    resetAfterMs: 0,
    tiers: {},
  }
}

/**
 * outcome builds the decision for a request from its decided entries and, when given
 * counters, counts it in each tier: checked; allowed when admitted and counted; denied
 * (or shadowDenied) when the tier's own check, or its penalty, said no.
 */
export function outcome(
  entries: readonly Entry[],
  allowed: boolean,
  counters: readonly Counter[] | undefined,
): TieredDecision {
  const tiers: Record<string, TierDecision> = {}
  let bind: TierDecision | undefined
  let bindName = ""
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i]
    if (e.kind !== "tier") continue
    // The store's decision has the TierDecision fields and belongs to this request: it
    // is used as it is, and copied only when something must be added.
    let td: TierDecision = e.result!
    const name = e.tier!.name
    const c = counters?.[e.tier!.index]
    if (e.limit!.shadow) {
      tiers[name] = { ...td, shadow: true }
      if (c !== undefined) {
        c.checked++
        if (!td.allowed) c.shadowDenied++
        else if (allowed) c.allowed++
      }
      continue
    }
    const p = e.penalty >= 0 ? entries[e.penalty].result! : undefined
    if (p !== undefined && !p.allowed) {
      td = {
        ...td,
        allowed: false,
        retryAfterMs: Math.max(td.retryAfterMs, p.retryAfterMs),
        blocked: true,
      }
    }
    tiers[name] = td
    if (c !== undefined) {
      c.checked++
      if (!td.allowed) c.denied++
      else if (allowed) c.allowed++
    }
    if (allowed) {
      if (bind === undefined || closer(td, bind)) {
        bind = td
        bindName = name
      }
    } else if (!td.allowed && (bind === undefined || td.retryAfterMs > bind.retryAfterMs)) {
      bind = td
      bindName = name
    }
  }
  if (bind === undefined) {
    const d = unlimited(allowed)
    d.tiers = tiers
    return d
  }
  return bound(allowed, bind, bindName, tiers)
}

/** bound: the decision for a request whose binding tier (see TieredDecision) is `bind`, named `name`. */
export function bound(
  allowed: boolean,
  bind: TierDecision,
  name: string,
  tiers: Record<string, TierDecision>,
): TieredDecision {
  const d: TieredDecision = {
    allowed,
    limit: bind.limit,
    remaining: bind.remaining,
    retryAfterMs: allowed ? 0 : bind.retryAfterMs,
    resetAfterMs: bind.resetAfterMs,
    tiers,
  }
  if (!allowed) d.tier = name
  return d
}

/** closer: a is nearer its limit than b (by the share left, then by units left). */
export function closer(a: TierDecision, b: TierDecision): boolean {
  const fa = a.remaining / a.limit
  const fb = b.remaining / b.limit
  return fa < fb || (fa === fb && a.remaining < b.remaining)
}

/** tierStats turns counters into TierStats. */
export function tierStats(c: Counter): TierStats {
  return { ...c, denyRate: c.checked === 0 ? 0 : c.denied / c.checked }
}
