import { type Policy, sharePolicy, tokenBucket } from "../core/policy.js"
import { ArgumentError, describe } from "../errors.js"
import { rejectInstead } from "../limiter/limiter.js"
import type { Monotonic } from "../limiter/monotonic.js"
import type { MaybePromise, Store, SyncStore } from "../stores/store.js"
import { checkKey, checkOptions } from "../validate.js"
import { type Attempt, after, Checker } from "./checker.js"
import { checkConfig, type TieredConfig } from "./config.js"
import { DirectPlan } from "./direct.js"
import { runtime, type TieredLimiterOptions } from "./options.js"
import {
  type Counter,
  Entry,
  type TieredDecision,
  type TieredStats,
  type TierStats,
  tierStats,
  unlimited,
} from "./outcome.js"
import {
  type Compiled,
  compile,
  type Profile,
  Reader,
  type Slot,
  type TierRequest,
} from "./resolve.js"
import { type TieredUsage, usageOf } from "./usage.js"

/** TieredLimitOptions: the options of a tiered limit() call. */
export interface TieredLimitOptions {
  /** cost: what the request costs in "cost" tiers (e.g. tokens); default 1. "requests" tiers count 1. */
  cost?: number
  /** requestId: a repeat of an admitted request with this id is admitted without being counted. */
  requestId?: string
}

/**
 * TieredReservation: an estimate charged up front. `settle(actualCost)` charges the
 * difference on the cost tiers (a refund when the estimate was high; extra, possibly
 * into bounded debt, when low); `cancel()` gives back everything charged. Whichever is
 * called first counts; later calls do nothing. When `ok` is false nothing was charged.
 */
export interface TieredReservation {
  readonly ok: boolean
  readonly decision: TieredDecision
  /** cost: the estimate charged on the cost tiers. */
  readonly cost: number
  settle(actualCost: number): MaybePromise<void>
  cancel(): MaybePromise<void>
}

type Answer<S extends boolean, T> = S extends true ? T : Promise<T>

/**
 * TieredLimiter checks a request against every tier that applies to it, all or nothing:
 * when any tier denies, no tier is charged. Over a synchronous store (MemoryStore) it
 * answers directly; over an asynchronous one it answers with promises, making one store
 * call (`limitAll`) per check, however many tiers apply.
 */
export interface TieredLimiter<S extends boolean = boolean> {
  readonly prefix: string
  /** limit admits and counts the request in every tier that applies, or denies and counts nothing. */
  limit(request: TierRequest, options?: TieredLimitOptions): Answer<S, TieredDecision>
  /** reserve charges an estimated cost now, to be settled once the real cost is known. */
  reserve(request: TierRequest, options?: { cost?: number }): Answer<S, TieredReservation>
  /** usage reports each applicable tier's state for the request, counting nothing. */
  usage(request: TierRequest): Answer<S, TieredUsage>
  /**
   * reset forgets a principal's counts and penalties in every tier keyed only by fields the
   * principal gives (`{ user: "alice" }`: the tiers keyed by ["user"]); `{}` resets the
   * global tiers. Answers the names of the tiers reset.
   */
  reset(principal: TierRequest): Answer<S, string[]>
  stats(): TieredStats
  /** setConfig validates a whole new config, then switches to it at once; counts carry over. */
  setConfig(config: TieredConfig): void
}

function checkRequest(request: unknown, name: string): asserts request is TierRequest {
  if (typeof request !== "object" || request === null || Array.isArray(request)) {
    throw new ArgumentError(name, `expected an object of request fields, got ${describe(request)}`)
  }
}

function checkAmount(value: unknown, name: string): number {
  if (typeof value !== "number" || !Number.isFinite(value) || value < 0) {
    throw new ArgumentError(name, `expected a finite number >= 0, got ${describe(value)}`)
  }
  return value
}

class TieredRateLimiter implements TieredLimiter<boolean> {
  readonly prefix: string
  readonly #store: Store
  readonly #fallback: Store | undefined
  readonly #instances: number
  readonly #time: Monotonic
  readonly #checker: Checker
  readonly #reader: Reader
  readonly #slots = new Map<string, Slot>()
  /** #requestSlots: the request-id namespace per window length (few distinct values). */
  readonly #requestSlots = new Map<number, Slot>()
  #compiled!: Compiled
  #counters: Counter[] = []

  constructor(options: TieredLimiterOptions) {
    const r = runtime(options)
    this.prefix = r.prefix
    this.#store = r.store
    this.#fallback = r.fallback
    this.#instances = r.instances
    this.#time = r.time
    this.#checker = new Checker(r)
    this.#reader = new Reader(r.maxKeyLength)
    this.setConfig(r.config)
    if (r.store.synchronous !== true) rejectInstead(this, ["limit", "reserve", "usage", "reset"])
  }

  setConfig(config: TieredConfig): void {
    const compiled = compile(checkConfig(config), this.prefix, (prefix, policy) =>
      this.#open(prefix, policy),
    )
    const old = new Map(this.#compiled?.tiers.map((t, i) => [t.name, this.#counters[i]]))
    this.#counters = compiled.tiers.map(
      (t) => old.get(t.name) ?? { checked: 0, allowed: 0, denied: 0, shadowDenied: 0 },
    )
    this.#compiled = compiled
  }

  /** #open gives the slot for (prefix, policy), opening its namespaces the first time. */
  #open(prefix: string, policy: Policy): Slot {
    const id = `${prefix}\u0000${JSON.stringify(policy)}`
    let slot = this.#slots.get(id)
    if (slot === undefined) {
      slot = {
        // A tier's plans share one namespace per window on purpose (see docs/tiers.md).
        ns: this.#store.namespace(prefix, policy, { shared: true }),
        fallback: this.#fallback?.namespace(prefix, sharePolicy(policy, this.#instances), {
          shared: true,
        }),
      }
      this.#slots.set(id, slot)
    }
    return slot
  }

  /**
   * #prepare resolves a request into its checks, or into a decision when a list decides
   * or no tier applies. Cost tiers get `cost`, request tiers 1; a penalty check (cost 0)
   * goes just before its tier's check.
   */
  #prepare(request: TierRequest, cost: number): Entry[] | TieredDecision {
    const profile = this.#resolve(request)
    return "steps" in profile ? this.#entries(profile.steps, cost) : profile
  }

  /** #resolve answers the request's profile, or the decision of an allow or deny list. */
  #resolve(request: TierRequest): Profile | TieredDecision {
    checkRequest(request, "request")
    const c = this.#compiled
    const read = this.#reader
    const profile = read.resolve(c, request)
    if (c.deny?.matches(read)) {
      this.#checker.totals.listedDenied++
      this.#checker.totals.denied++
      const d = unlimited(false)
      d.tier = "deny"
      d.listed = "deny"
      return d
    }
    if (c.allow?.matches(read)) {
      this.#checker.totals.listedAllowed++
      this.#checker.totals.allowed++
      const d = unlimited(true)
      d.listed = "allow"
      return d
    }
    return profile
  }

  /** #entries makes a profile's checks for one request (see #prepare). */
  #entries(steps: Profile["steps"], cost: number): Entry[] | TieredDecision {
    const read = this.#reader
    const entries: Entry[] = []
    for (let i = 0; i < steps.length; i++) {
      const { tier, limit, penalty } = steps[i]
      const key = tier.key(read)
      if (key === undefined) continue
      const units = tier.cost ? cost : 1
      if (units > limit.policy.limit) {
        throw new ArgumentError(
          "cost",
          `cost ${units} is above tier "${tier.name}"'s limit of ${limit.policy.limit} for this request, so it could never be admitted`,
        )
      }
      let at = -1
      if (penalty !== undefined) {
        at = entries.length
        entries.push(new Entry("penalty", penalty, key, 0, undefined, tier, -1))
      }
      entries.push(new Entry("tier", limit, key, units, limit, tier, at))
    }
    if (entries.length > 0) return entries
    this.#checker.totals.allowed++
    return unlimited(true)
  }

  limit(request: TierRequest, options?: TieredLimitOptions): MaybePromise<TieredDecision> {
    let cost = 1
    let requestId: string | undefined
    if (options !== undefined) {
      checkOptions(options)
      if (options.cost !== undefined) cost = checkAmount(options.cost, "cost")
      requestId = options.requestId
      if (requestId !== undefined) checkKey(requestId, this.#reader.maxLength, "requestId")
    }
    const now = this.#time.now()
    const profile = this.#resolve(request)
    if (!("steps" in profile))
      return this.#checker.guard === undefined ? profile : Promise.resolve(profile)
    if (requestId === undefined && this.#checker.guard === undefined) {
      if (profile.direct === undefined) profile.direct = DirectPlan.of(this.#store, profile)
      let d: TieredDecision | undefined
      try {
        d = profile.direct?.decide(this.#reader, cost, now, this.#counters)
      } catch {
        // Nothing was changed; the general path meets the same failure and answers it as
        // onStoreError says.
        d = undefined
      }
      if (d !== undefined) {
        const totals = this.#checker.totals
        if (d.allowed) totals.allowed++
        else totals.denied++
        return d
      }
    }
    const prepared = this.#entries(profile.steps, cost)
    if (!Array.isArray(prepared))
      return this.#checker.guard === undefined ? prepared : Promise.resolve(prepared)
    const att = this.#attempt(prepared, now)
    if (requestId !== undefined) this.#requestId(att, requestId)
    return this.#checker.decide(att)
  }

  reserve(request: TierRequest, options?: { cost?: number }): MaybePromise<TieredReservation> {
    let estimate = 1
    if (options !== undefined) {
      checkOptions(options)
      if (options.cost !== undefined) estimate = checkAmount(options.cost, "cost")
    }
    const now = this.#time.now()
    const prepared = this.#prepare(request, estimate)
    if (!Array.isArray(prepared)) {
      const r = this.#reservation(undefined, prepared, estimate)
      return this.#checker.guard === undefined ? r : Promise.resolve(r)
    }
    const att = this.#attempt(prepared, now)
    return after(this.#checker.decide(att), (d) => this.#reservation(att, d, estimate))
  }

  #attempt(entries: Entry[], now: number): Attempt {
    return {
      entries,
      now,
      counters: this.#counters,
      requestKey: undefined,
      requestWindowMs: 0,
      fallback: false,
      dropped: 0,
    }
  }

  /**
   * #requestId adds the check that recognises a repeat: a bucket of one token per window
   * (the longest window among the request's tiers), keyed by the id and the request's tier
   * keys. The first admitted request takes the token; a repeat finds it gone.
   */
  #requestId(att: Attempt, requestId: string): void {
    let key = `${requestId.length}:${requestId}`
    let windowMs = 0
    for (const e of att.entries) {
      if (e.kind !== "tier") continue
      key += `/${e.tier!.index}=${e.key.length}:${e.key}`
      windowMs = Math.max(windowMs, e.limit!.policy.windowMs)
    }
    let slot = this.#requestSlots.get(windowMs)
    if (slot === undefined) {
      slot = this.#open(
        `${this.prefix}#request-ids`,
        tokenBucket({ rate: 1, period: windowMs, burst: 1 }),
      )
      this.#requestSlots.set(windowMs, slot)
    }
    att.requestKey = key
    att.requestWindowMs = windowMs
    att.entries.push(new Entry("request-id", slot, key, 1, undefined, undefined, -1))
  }

  #reservation(att: Attempt | undefined, d: TieredDecision, estimate: number): TieredReservation {
    const charged =
      att === undefined || !d.allowed || d.degraded === "open" || d.duplicate
        ? []
        : att.entries.filter((e) => e.kind === "tier" && e.active)
    const fallback = att?.fallback ?? false
    let done = charged.length === 0
    const nothing = (): MaybePromise<void> =>
      this.#checker.guard === undefined ? undefined : Promise.resolve()
    const adjust = (delta: (e: Entry) => number): MaybePromise<void> => {
      const now = this.#time.now()
      const calls = charged
        .filter((e) => delta(e) !== 0)
        .map((e) => () => (fallback ? e.slot.fallback! : e.slot.ns).adjust(e.key, delta(e), now))
      return after(this.#checker.each(fallback, calls, false), nothing)
    }
    return {
      ok: d.allowed,
      decision: d,
      cost: estimate,
      settle: (actualCost: number) => {
        const actual = checkAmount(actualCost, "actualCost")
        if (done) return nothing()
        done = true
        return adjust((e) => (e.tier!.cost ? actual - estimate : 0))
      },
      cancel: () => {
        if (done) return nothing()
        done = true
        return adjust((e) => -e.cost)
      },
    }
  }

  usage(request: TierRequest): MaybePromise<TieredUsage> {
    checkRequest(request, "request")
    const now = this.#time.now()
    return usageOf(this.#compiled, this.#reader, request, now, (call) => this.#checker.read(call))
  }

  reset(principal: TierRequest): MaybePromise<string[]> {
    checkRequest(principal, "principal")
    const read = this.#reader
    read.point(principal)
    read.plan = read.raw("plan")
    read.modelClass = read.raw("modelClass")
    const given = Object.keys(principal).some((k) => principal[k] != null)
    const names: string[] = []
    const calls: (() => MaybePromise<unknown>)[] = []
    for (const tier of this.#compiled.tiers) {
      if (tier.fields.length > 0 !== given) continue
      const key = tier.key(read)
      if (key === undefined) continue
      names.push(tier.name)
      const slots = tier.penalty === undefined ? tier.slots : [...tier.slots, tier.penalty]
      for (const slot of slots) {
        calls.push(() => slot.ns.reset(key))
        if (slot.fallback !== undefined) calls.push(() => slot.fallback!.reset(key))
      }
    }
    return after(this.#checker.each(false, calls, false), () => names)
  }

  stats(): TieredStats {
    const t = this.#checker.totals
    const total = t.allowed + t.denied
    const tiers: Record<string, TierStats> = {}
    this.#compiled.tiers.forEach((tier, i) => {
      tiers[tier.name] = tierStats(this.#counters[i])
    })
    return {
      allowed: t.allowed,
      denied: t.denied,
      denyRate: total === 0 ? 0 : t.denied / total,
      shadowDenied: t.shadowDenied,
      blocked: t.blocked,
      listed: { allowed: t.listedAllowed, denied: t.listedDenied },
      duplicates: t.duplicates,
      storeErrors: t.storeErrors,
      fallbacks: t.fallbacks,
      failOpen: t.failOpen,
      tiers,
    }
  }
}

/**
 * createTieredLimiter builds a multi-tier limiter from a TieredConfig plus store options
 * (store, prefix, clock, onStoreError, timeout… as for createLimiter). The config is
 * validated completely first: a ConfigError names the path of the first bad field. Each
 * tier keeps its counts under `<prefix>:<tier>`, shared by every plan, so a principal
 * whose plan changes keeps what it has used.
 *
 * @example
 * const gateway = createTieredLimiter({
 *   tiers: { user: { key: ["user"] }, tokens: { key: ["user"], budget: "cost" } },
 *   plans: { free: { limits: { user: { limit: 100, window: "1h" }, tokens: { limit: 20_000, window: "1m" } } } },
 *   defaultPlan: "free",
 * })
 * const r = gateway.reserve({ user: "u1" }, { cost: 1000 })
 * if (r.ok) r.settle(await callModel())
 */
export function createTieredLimiter(
  options: TieredLimiterOptions & { store?: SyncStore },
): TieredLimiter<true>
export function createTieredLimiter(options: TieredLimiterOptions): TieredLimiter<false>
export function createTieredLimiter(options: TieredLimiterOptions): TieredLimiter<boolean> {
  return new TieredRateLimiter(options)
}
