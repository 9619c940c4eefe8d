// Limit resolution: which limit of each tier applies to a request, under which key. A
// ValidConfig is compiled once (per setConfig) into lookup tables holding the store
// namespaces; the tiers that apply under each mix of tenant, model class and plan are
// worked out the first time that mix is seen (a Profile), so resolving a request is a
// few map lookups, and building its keys a few reads of its fields.

import { type Policy, tokenBucket } from "../core/policy.js"
import { ArgumentError, describe } from "../errors.js"
import type { Namespace } from "../stores/store.js"
import type { ListEntry, ValidConfig } from "./config.js"
import type { DirectPlan } from "./direct.js"
import type { SpecPolicy } from "./limit-spec.js"

/** TierRequest: the fields of one request, e.g. { user, tenant, model, ip, plan? }. */
export type TierRequest = Readonly<Record<string, string | number | null | undefined>>

/** Slot: a namespace of the main store and, when onStoreError has one, of the fallback store. */
export interface Slot {
  readonly ns: Namespace
  readonly fallback: Namespace | undefined
}

/** Limit: one resolved limit of a tier, with the namespace that holds its counts. */
export interface Limit extends Slot {
  readonly tier: Tier
  readonly policy: Policy
  /** shadow: counted and reported, never denies. */
  readonly shadow: boolean
}

/** Limits: a limit per tier index; null is "unlimited", undefined "not set here". */
type Limits = readonly (Limit | null | undefined)[]

/** Tier: one tier of a compiled config. */
export interface Tier {
  readonly name: string
  readonly index: number
  readonly fields: readonly string[]
  readonly cost: boolean
  readonly penaltyMs: number
  /**
   * penalty: where blocked keys are recorded, when the tier has a penalty: a bucket of one
   * token per penalty period. A violation charges two tokens (adjust), which puts the key
   * one full period beyond empty; a cost-0 check fails exactly while it is there, so the
   * key is blocked for the penalty and no longer, on any store.
   */
  readonly penalty: Slot | undefined
  readonly own: Limit | null | undefined
  /** slots: one namespace per distinct window of the tier (what reset must clear). */
  readonly slots: readonly Slot[]
  /** key: the tier's key for the reader's request, or undefined when a field is missing. */
  readonly key: (read: Reader) => string | undefined
}

/** Step: one tier as it applies to a request under some profile. */
export interface Step {
  readonly tier: Tier
  readonly limit: Limit
  /** penalty: where the tier records blocked keys, unless it has none or is in shadow here. */
  readonly penalty: Slot | undefined
}

/** Profile: the tiers that apply, in order, for one mix of tenant, model class and plan limits. */
export interface Profile {
  readonly steps: readonly Step[]
  /** direct: the synchronous path's plan for these steps, once looked for (null: none). */
  direct?: DirectPlan | null
}

/** Compiled: a ValidConfig with its namespaces opened, ready for requests. */
export interface Compiled {
  readonly tiers: readonly Tier[]
  readonly plans: ReadonlyMap<string, Limits>
  readonly tenants: ReadonlyMap<string, { plan: string | undefined; limits: Limits | undefined }>
  readonly models: ReadonlyMap<string, string | undefined>
  readonly classes: ReadonlyMap<string, Limits | undefined>
  readonly defaultPlan: string | undefined
  readonly allow: Matcher | undefined
  readonly deny: Matcher | undefined
  /** profiles: by plan limits, then class limits, then tenant limits (made as first needed). */
  readonly profiles: Map<
    Limits | undefined,
    Map<Limits | undefined, Map<Limits | undefined, Profile>>
  >
}

/** Opener opens (or reuses) the slot for a namespace prefix and policy. */
export type Opener = (prefix: string, policy: Policy) => Slot

/** tierPrefix is the namespace prefix of a tier's counts for one window id. */
export function tierPrefix(prefix: string, tier: string, windowId: string): string {
  return `${prefix}:${tier}${windowId}`
}

/** compile opens every namespace a config can need: none are opened per request. */
export function compile(config: ValidConfig, prefix: string, open: Opener): Compiled {
  const tiers = config.tiers.map(
    (t): Tier => ({
      name: t.name,
      index: t.index,
      fields: t.fields,
      cost: t.cost,
      penaltyMs: t.penaltyMs,
      penalty:
        t.penaltyMs > 0
          ? open(
              `${prefix}:${t.name}#penalty`,
              tokenBucket({ rate: 1, period: t.penaltyMs, burst: 1 }),
            )
          : undefined,
      own: undefined,
      slots: [],
      key: keyOf(t.fields),
    }),
  )
  // Equal limits share one Limit object (a thousand tenants with the same override, one).
  const made = new Map<string, Limit>()
  const windows = tiers.map(() => new Set<string>())
  const limit = (i: number, spec: SpecPolicy | null | undefined): Limit | null | undefined => {
    if (spec === null || spec === undefined) return spec
    const tier = tiers[i]
    const id = `${i}|${spec.shadow}|${JSON.stringify(spec.policy)}`
    let l = made.get(id)
    if (l === undefined) {
      const slot = open(tierPrefix(prefix, tier.name, spec.windowId), spec.policy)
      l = { ns: slot.ns, fallback: slot.fallback, tier, policy: spec.policy, shadow: spec.shadow }
      made.set(id, l)
      const slots = tier.slots as Slot[]
      if (!windows[i].has(spec.windowId)) {
        windows[i].add(spec.windowId)
        slots.push(slot)
      }
    }
    return l
  }
  const limits = (specs: readonly (SpecPolicy | null | undefined)[]): Limits =>
    specs.map((spec, i) => limit(i, spec))
  for (const t of config.tiers)
    (tiers[t.index] as { own: Tier["own"] }).own = limit(t.index, t.limit)
  const map = <V, W>(m: ReadonlyMap<string, V>, f: (v: V) => W): Map<string, W> =>
    new Map([...m].map(([k, v]) => [k, f(v)] as const))
  // A table that sets nothing is no table: such tenants (and classes) share profiles.
  const some = (specs: readonly (SpecPolicy | null | undefined)[]): Limits | undefined =>
    specs.every((spec) => spec === undefined) ? undefined : limits(specs)
  return {
    tiers,
    plans: map(config.plans, limits),
    tenants: map(config.tenants, (t) => ({ plan: t.plan, limits: some(t.limits) })),
    models: config.models,
    classes: map(config.classes, some),
    defaultPlan: config.defaultPlan,
    allow: config.allow.length === 0 ? undefined : new Matcher(config.allow),
    deny: config.deny.length === 0 ? undefined : new Matcher(config.deny),
    profiles: new Map(),
  }
}

/**
 * profileOf answers the tiers that apply under the given limit tables: for tier i, the
 * tenant's limit, else the model class's, else the plan's, else the tier's own; null
 * (unlimited) or none at all leaves the tier out.
 */
export function profileOf(
  c: Compiled,
  tenant: Limits | undefined,
  cls: Limits | undefined,
  plan: Limits | undefined,
): Profile {
  let byClass = c.profiles.get(plan)
  if (byClass === undefined) {
    byClass = new Map()
    c.profiles.set(plan, byClass)
  }
  let byTenant = byClass.get(cls)
  if (byTenant === undefined) {
    byTenant = new Map()
    byClass.set(cls, byTenant)
  }
  let profile = byTenant.get(tenant)
  if (profile === undefined) {
    const steps: Step[] = []
    for (const tier of c.tiers) {
      const i = tier.index
      let l = tenant?.[i]
      if (l === undefined) l = cls?.[i]
      if (l === undefined) l = plan?.[i]
      if (l === undefined) l = tier.own
      if (l === null || l === undefined) continue
      steps.push({ tier, limit: l, penalty: l.shadow ? undefined : tier.penalty })
    }
    profile = { steps }
    byTenant.set(tenant, profile)
  }
  return profile
}

/** PAIR_KEYS: the most first-field values a two-field tier remembers keys for. */
const PAIR_KEYS = 16_384

/** PAIRS_PER_VALUE: the most second-field values remembered per first-field value. */
const PAIRS_PER_VALUE = 4

/** Pair: a key made from a first value (the map's key) and `second`; `next` is an older one. */
interface Pair {
  readonly second: string
  readonly key: string
  readonly next: Pair | undefined
}

/**
 * keyOf makes a tier's key function: the value itself for a one-field tier; for more
 * fields each as `<length>:<value>`, so no two different requests share a key
 * ("ab"+"c" is "2:ab1:c", "a"+"bc" is "1:a2:bc"); "*" for a global tier. Keys of one
 * tier all have the same shape, and each tier has a namespace of its own, so keys never
 * collide across tiers. Undefined when a field is missing: the tier does not apply.
 *
 * A two-field tier (user and model, the common case) remembers the keys it made for the
 * last few second values of each first value, up to PAIR_KEYS first values (then it
 * starts over): the same user and model give the same key string again, found without
 * building and hashing a new one.
 */
function keyOf(fields: readonly string[]): (read: Reader) => string | undefined {
  if (fields.length === 0) return () => "*"
  if (fields.length === 1) {
    const [name] = fields
    return (read) => read.value(name)
  }
  if (fields.length > 2) return (read) => read.key(fields)
  const [first, second] = fields
  const made = new Map<string, Pair>()
  return (read) => {
    const a = read.value(first)
    if (a === undefined) return undefined
    const b = read.value(second)
    if (b === undefined) return undefined
    const known = made.get(a)
    let n = 0
    for (let p = known; p !== undefined; p = p.next, n++) if (p.second === b) return p.key
    if (known === undefined && made.size >= PAIR_KEYS) made.clear()
    const key = pairKey(a, b)
    made.set(a, { second: b, key, next: n < PAIRS_PER_VALUE ? known : undefined })
    return key
  }
}

/** pairKey is the key of a two-field tier for the values a and b (see keyOf). */
export function pairKey(a: string, b: string): string {
  // Built flat: a template literal this long makes a rope, and a rope as a store key
  // costs every lookup of it an indirection (measured: a 4-tier check 25% slower).
  return [a.length, ":", a, b.length, ":", b].join("")
}

/**
 * Matcher answers allow / deny list questions: is any listed field of the request equal
 * to an entry's value, or (for "prefix*" entries) does it start with it.
 */
export class Matcher {
  private readonly fields = new Map<string, { exact: Set<string>; prefixes: string[] }>()

  constructor(entries: readonly ListEntry[]) {
    for (const e of entries) {
      let f = this.fields.get(e.field)
      if (f === undefined) {
        f = { exact: new Set(), prefixes: [] }
        this.fields.set(e.field, f)
      }
      if (e.prefix) f.prefixes.push(e.value)
      else f.exact.add(e.value)
    }
  }

  matches(read: Reader): boolean {
    for (const [name, f] of this.fields) {
      const v = read.value(name)
      if (v === undefined) continue
      if (f.exact.has(v)) return true
      for (const p of f.prefixes) if (v.startsWith(p)) return true
    }
    return false
  }
}

/**
 * Reader reads a request's fields as key parts: non-empty strings as they are, finite
 * numbers in their usual decimal form; undefined and null are missing; anything else
 * (an empty string, an object) is an ArgumentError. `plan` and `modelClass` are the
 * resolved plan and the model's class, not what the request says.
 */
export class Reader {
  request: TierRequest = {}
  plan: string | undefined
  modelClass: string | undefined
  maxLength: number
  /** names, values: the fields read from the current request so far (read once each). */
  private readonly names: string[] = []
  private readonly values: (string | undefined)[] = []
  private count = 0
  /** last: the profile answered last, and the limit tables it was found for. */
  private last:
    | { c: Compiled; tenant: unknown; cls: unknown; plan: unknown; profile: Profile }
    | undefined

  constructor(maxLength: number) {
    this.maxLength = maxLength
  }

  /** point starts reading `request`: nothing read yet, no plan or model class. */
  point(request: TierRequest): void {
    this.request = request
    this.count = 0
    this.plan = undefined
    this.modelClass = undefined
  }

  /**
   * resolve points the reader at a request and works out what every tier needs from it:
   * the plan (`request.plan`, else the tenant's, else the default; an unknown
   * `request.plan` is an ArgumentError), the model's class, and from their limit tables
   * the tiers that apply.
   */
  resolve(c: Compiled, request: TierRequest): Profile {
    this.point(request)
    // tenant and model matter here only when the config names some (as key fields,
    // they are read, and checked, by the tiers that use them).
    const name = c.tenants.size === 0 ? undefined : this.value("tenant")
    const tenant = name === undefined ? undefined : c.tenants.get(name)
    const plan = request.plan
    if (plan !== undefined && plan !== null) {
      if (typeof plan !== "string" || !c.plans.has(plan) || !Object.hasOwn(request, "plan")) {
        throw new ArgumentError(
          "request.plan",
          `expected one of the configured plans (${[...c.plans.keys()].join(", ")}), got ${describe(plan)}`,
        )
      }
      this.plan = plan
    } else {
      this.plan = tenant?.plan ?? c.defaultPlan
    }
    const model = c.models.size === 0 ? undefined : this.value("model")
    this.modelClass = model === undefined ? undefined : c.models.get(model)
    const t = tenant?.limits
    const k = this.modelClass === undefined ? undefined : c.classes.get(this.modelClass)
    const p = this.plan === undefined ? undefined : c.plans.get(this.plan)
    const last = this.last
    if (
      last !== undefined &&
      last.c === c &&
      last.tenant === t &&
      last.cls === k &&
      last.plan === p
    )
      return last.profile
    const profile = profileOf(c, t, k, p)
    this.last = { c, tenant: t, cls: k, plan: p, profile }
    return profile
  }

  /** value reads a field of the current request (once; later calls answer the same). */
  value(name: string): string | undefined {
    if (name === "plan") return this.plan
    if (name === "modelClass") return this.modelClass
    for (let i = 0; i < this.count; i++) if (this.names[i] === name) return this.values[i]
    const v = this.read(name)
    this.names[this.count] = name
    this.values[this.count] = v
    this.count++
    return v
  }

  private read(name: string): string | undefined {
    const v = this.request[name]
    if (typeof v === "string") {
      if (v.length === 0 || v.length > this.maxLength) {
        throw new ArgumentError(
          `request.${name}`,
          `expected 1 to ${this.maxLength} characters, got ${v.length}`,
        )
      }
      return v
    }
    if (v === undefined || v === null) return undefined
    if (typeof v === "number" && Number.isFinite(v)) return String(v)
    // Inherited, such as Object.prototype.constructor: the request does not have it.
    if (!Object.hasOwn(this.request, name)) return undefined
    throw new ArgumentError(
      `request.${name}`,
      `expected a string or a finite number, got ${describe(v)}`,
    )
  }

  /** raw reads a field as written in the request (reset reads `plan` and `modelClass` so). */
  raw(name: string): string | undefined {
    const v = Object.hasOwn(this.request, name) ? this.request[name] : undefined
    return v === undefined || v === null ? undefined : String(v)
  }

  /** key builds a key from `fields` as a tier's key function does (see keyOf), remembering nothing. */
  key(fields: readonly string[]): string | undefined {
    if (fields.length === 1) return this.value(fields[0])
    if (fields.length === 0) return "*"
    const parts: (string | number)[] = []
    for (const name of fields) {
      const v = this.value(name)
      if (v === undefined) return undefined
      parts.push(v.length, ":", v)
    }
    return parts.join("")
  }
}
