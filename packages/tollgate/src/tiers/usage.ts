// usage(): what each tier that applies to a request holds right now, read without
// counting anything (peek), for dashboards, admin tools and "quota left" responses.

import type { Decision } from "../core/decision.js"
import type { MaybePromise } from "../stores/store.js"
import type { Compiled, Reader, TierRequest } from "./resolve.js"

/** TierUsage: one tier's current state for a request's key. */
export interface TierUsage {
  limit: number
  remaining: number
  /** used: limit - remaining: what is counted now (rounded up to whole units). */
  used: number
  /** retryAfterMs: 0 unless the key is in debt (after a settle above the estimate) or blocked. */
  retryAfterMs: number
  resetAfterMs: number
  shadow?: true
  /** blocked: the key is serving the tier's penalty; retryAfterMs is what is left of it. */
  blocked?: true
}

/** TieredUsage: the resolved plan and model class, and every applicable tier's state. */
export interface TieredUsage {
  plan: string | undefined
  modelClass: string | undefined
  /** listed: the request is on the allow or deny list (its tiers are still reported). */
  listed?: "allow" | "deny"
  tiers: Record<string, TierUsage>
}

/** Read runs one store read (through the guard when the store is asynchronous). */
type Read = (call: () => MaybePromise<Decision>) => MaybePromise<Decision>

/** usageOf peeks every tier (and penalty) that applies to the request. */
export function usageOf(
  c: Compiled,
  read: Reader,
  request: TierRequest,
  now: number,
  run: Read,
): MaybePromise<TieredUsage> {
  const steps = read.resolve(c, request).steps
  const report: TieredUsage = { plan: read.plan, modelClass: read.modelClass, tiers: {} }
  if (c.deny?.matches(read)) report.listed = "deny"
  else if (c.allow?.matches(read)) report.listed = "allow"
  const names: string[] = []
  const shadows: boolean[] = []
  const peeks: MaybePromise<Decision>[] = []
  const blocks: (MaybePromise<Decision> | undefined)[] = []
  for (const { tier, limit, penalty } of steps) {
    const key = tier.key(read)
    if (key === undefined) continue
    names.push(tier.name)
    shadows.push(limit.shadow)
    peeks.push(run(() => limit.ns.peek(key, now)))
    blocks.push(penalty === undefined ? undefined : run(() => penalty.ns.peek(key, now)))
  }
  const build = (ds: readonly Decision[], bs: readonly (Decision | undefined)[]): TieredUsage => {
    names.forEach((name, i) => {
      const d = ds[i]
      const u: TierUsage = {
        limit: d.limit,
        remaining: d.remaining,
        used: Math.max(0, Math.ceil(d.limit - d.remaining)),
        retryAfterMs: d.retryAfterMs,
        resetAfterMs: d.resetAfterMs,
      }
      if (shadows[i]) u.shadow = true
      const b = bs[i]
      if (b !== undefined && !b.allowed) {
        u.blocked = true
        u.retryAfterMs = Math.max(u.retryAfterMs, b.retryAfterMs)
      }
      report.tiers[name] = u
    })
    return report
  }
  const isPromise = (v: unknown) => typeof (v as Promise<unknown> | undefined)?.then === "function"
  if (!peeks.some(isPromise) && !blocks.some(isPromise)) {
    return build(peeks as Decision[], blocks as (Decision | undefined)[])
  }
  return Promise.all([Promise.all(peeks), Promise.all(blocks)]).then(([ds, bs]) => build(ds, bs))
}
