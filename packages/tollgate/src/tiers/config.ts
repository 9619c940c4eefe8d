// The tiers config: plain data (JSON / YAML friendly) checked field by field. Checking
// either returns a complete ValidConfig or throws one ConfigError naming the bad field's
// path; nothing is ever half-applied.

import { type Duration, parseDuration } from "../duration.js"
import { ConfigError, describe } from "../errors.js"
import {
  ALGORITHMS,
  checkSpec,
  field,
  inferAlgorithm,
  type LimitSpec,
  type SpecPolicy,
  specPolicy,
  type TierAlgorithm,
} from "./limit-spec.js"

/**
 * TierConfig: one named tier. A request is counted in a tier under the key made of its
 * `key` fields (`[]`: one key for everyone).
 */
export interface TierConfig {
  /** key: request fields forming the key, e.g. ["user", "model"]; [] is one global key. */
  key: string[]
  /** budget: "requests" (each call costs 1, the default) or "cost" (the call's cost, e.g. tokens). */
  budget?: "requests" | "cost"
  /** algorithm: how the tier counts; default inferred from its limits (see docs/tiers.md). */
  algorithm?: TierAlgorithm
  /** limit: the limit for requests no plan, model class or tenant sets one for. */
  limit?: LimitSpec
  /** shadow: compute, count and report this tier, but never deny for it. */
  shadow?: boolean
  /** penalty: once a key exceeds this tier, deny that key for this long. */
  penalty?: Duration
}

/** PlanConfig: a QoS plan (free, premium, internal...) setting limits per tier. */
export interface PlanConfig {
  limits?: Record<string, LimitSpec>
  /** shadow: the limits this plan sets are computed and reported but never deny. */
  shadow?: boolean
}

/** TenantConfig: a tenant's plan and its own limits, which win over every other source. */
export interface TenantConfig {
  plan?: string
  overrides?: Record<string, LimitSpec>
}

/** ModelConfig: a model the gateway serves. */
export interface ModelConfig {
  /** class: a key of `modelClasses`; requests for this model get that class's limits. */
  class?: string
}

/** ModelClassConfig: limits shared by the models of one class. */
export interface ModelClassConfig {
  limits?: Record<string, LimitSpec>
}

/**
 * TieredConfig: everything a tiered limiter enforces. Tiers are checked in the order
 * their keys are written. For tier T, the limit is the first found of: the tenant's
 * override, the model class's limit, the plan's limit (`request.plan`, else the tenant's
 * plan, else `defaultPlan`), the tier's own `limit`; with none, T does not apply.
 */
export interface TieredConfig {
  tiers: Record<string, TierConfig>
  plans?: Record<string, PlanConfig>
  tenants?: Record<string, TenantConfig>
  models?: Record<string, ModelConfig>
  modelClasses?: Record<string, ModelClassConfig>
  defaultPlan?: string
  /** allow: "field:value" or "field:prefix*" entries admitted without being counted. */
  allow?: string[]
  /** deny: "field:value" or "field:prefix*" entries always denied (tier "deny"); deny wins over allow. */
  deny?: string[]
}

/** Limits: a limit per tier index; null is "unlimited", undefined "not set here". */
export type Limits = (SpecPolicy | null | undefined)[]

/** ValidTier: a checked tier, its algorithm settled. */
export interface ValidTier {
  readonly name: string
  readonly index: number
  readonly fields: readonly string[]
  /** cost: true when the tier counts the request's cost, false when it counts requests. */
  readonly cost: boolean
  readonly algorithm: TierAlgorithm
  /** penaltyMs: how long a key is blocked after exceeding the tier; 0 for no penalty. */
  readonly penaltyMs: number
  readonly limit: SpecPolicy | null | undefined
}

/** ListEntry: one allow / deny entry: `field` equal to `value`, or starting with it. */
export interface ListEntry {
  readonly field: string
  readonly value: string
  readonly prefix: boolean
}

/** ValidConfig: a config that passed every check, with its policies built. */
export interface ValidConfig {
  readonly tiers: readonly ValidTier[]
  readonly plans: ReadonlyMap<string, Limits>
  readonly tenants: ReadonlyMap<string, { plan: string | undefined; limits: Limits }>
  /** models: model name -> class name (undefined: no class). */
  readonly models: ReadonlyMap<string, string | undefined>
  readonly classes: ReadonlyMap<string, Limits>
  readonly defaultPlan: string | undefined
  readonly allow: readonly ListEntry[]
  readonly deny: readonly ListEntry[]
}

const TOP = new Set([
  "tiers",
  "plans",
  "tenants",
  "models",
  "modelClasses",
  "defaultPlan",
  "allow",
  "deny",
])
const RESERVED_TIERS = new Set(["allow", "deny", "__proto__"])
const TIER_NAME = /^[A-Za-z0-9_-]{1,64}$/
const FIELD_NAME = /^[A-Za-z_$][\w$-]*$/

type Obj = Record<string, unknown>

function object(value: unknown, path: string): Obj {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ConfigError(path, `expected an object, got ${describe(value)}`)
  }
  return value as Obj
}

/** only checks that an object holds no fields but the named ones. */
function only(value: Obj, names: readonly string[], path: string): void {
  for (const name of Object.keys(value)) {
    if (!names.includes(name)) {
      throw new ConfigError(field(path, name), `unknown field; expected one of ${names.join(", ")}`)
    }
  }
}

function optionalObject(value: unknown, path: string): Obj {
  return value === undefined ? {} : object(value, path)
}

function bool(value: unknown, path: string): boolean {
  if (value === undefined) return false
  if (typeof value !== "boolean") {
    throw new ConfigError(path, `expected true or false, got ${describe(value)}`)
  }
  return value
}

interface Pending {
  tier: number
  spec: LimitSpec
  path: string
  shadow: boolean
  set: (limit: SpecPolicy | null) => void
}

/**
 * checkConfig validates a TieredConfig completely and returns it in the form the limiter
 * uses (policies built, names resolved), or throws ConfigError naming the first bad field.
 */
export function checkConfig(value: unknown): ValidConfig {
  const config = object(value, "config")
  only(config, [...TOP], "")
  const pending: Pending[] = []

  const rawTiers = object(config.tiers, "tiers")
  const names = Object.keys(rawTiers)
  if (names.length === 0) throw new ConfigError("tiers", "expected at least one tier")
  const index = new Map<string, number>()
  const shells = names.map((name, i) => {
    const path = field("tiers", name)
    if (!TIER_NAME.test(name) || RESERVED_TIERS.has(name)) {
      throw new ConfigError(
        path,
        RESERVED_TIERS.has(name)
          ? `"${name}" is reserved; choose another tier name`
          : "a tier name is 1 to 64 letters, digits, _ or -",
      )
    }
    index.set(name, i)
    const tier = object(rawTiers[name], path)
    only(tier, ["key", "budget", "algorithm", "limit", "shadow", "penalty"], path)
    const fields = tier.key
    if (!Array.isArray(fields)) {
      throw new ConfigError(
        field(path, "key"),
        `expected an array of request field names ([] for one global key), got ${describe(fields)}`,
      )
    }
    fields.forEach((f, j) => {
      if (typeof f !== "string" || !FIELD_NAME.test(f)) {
        throw new ConfigError(
          `${field(path, "key")}[${j}]`,
          `expected a field name (letters, digits, _, $ or -), got ${describe(f)}`,
        )
      }
      if (fields.indexOf(f) !== j) {
        throw new ConfigError(`${field(path, "key")}[${j}]`, `"${f}" is listed twice`)
      }
    })
    const budget = tier.budget ?? "requests"
    if (budget !== "requests" && budget !== "cost") {
      throw new ConfigError(
        field(path, "budget"),
        `expected "requests" or "cost", got ${describe(budget)}`,
      )
    }
    const algorithm = tier.algorithm
    if (algorithm !== undefined && !ALGORITHMS.includes(algorithm as TierAlgorithm)) {
      throw new ConfigError(
        field(path, "algorithm"),
        `expected one of ${ALGORITHMS.map((a) => `"${a}"`).join(", ")}, got ${describe(algorithm)}`,
      )
    }
    const shadow = bool(tier.shadow, field(path, "shadow"))
    const penaltyMs =
      tier.penalty === undefined ? 0 : parseDuration(tier.penalty, field(path, "penalty"))
    if (tier.penalty !== undefined && penaltyMs < 1) {
      throw new ConfigError(field(path, "penalty"), `expected at least 1 ms, got ${penaltyMs} ms`)
    }
    const shell = {
      name,
      index: i,
      fields: Object.freeze([...fields] as string[]),
      cost: budget === "cost",
      algorithm: algorithm as TierAlgorithm | undefined,
      shadow,
      penaltyMs,
      limit: undefined as SpecPolicy | null | undefined,
    }
    if (tier.limit !== undefined) {
      const specPath = field(path, "limit")
      pending.push({
        tier: i,
        spec: checkSpec(tier.limit, specPath),
        path: specPath,
        shadow,
        set: (limit) => {
          shell.limit = limit
        },
      })
    }
    return shell
  })

  /** limits reads a { [tier]: LimitSpec } object into a Limits array (filled in later). */
  const limits = (value: unknown, path: string, shadow: boolean): Limits => {
    const out: Limits = new Array(names.length).fill(undefined)
    const specs = optionalObject(value, path)
    for (const name of Object.keys(specs)) {
      const specPath = field(path, name)
      const i = index.get(name)
      if (i === undefined) {
        throw new ConfigError(
          specPath,
          `unknown tier "${name}"; the tiers are ${names.map((n) => `"${n}"`).join(", ")}`,
        )
      }
      pending.push({
        tier: i,
        spec: checkSpec(specs[name], specPath),
        path: specPath,
        shadow: shadow || shells[i].shadow,
        set: (limit) => {
          out[i] = limit
        },
      })
    }
    return out
  }

  const plans = new Map<string, Limits>()
  const rawPlans = optionalObject(config.plans, "plans")
  for (const name of Object.keys(rawPlans)) {
    const path = field("plans", name)
    const plan = object(rawPlans[name], path)
    only(plan, ["limits", "shadow"], path)
    const shadow = bool(plan.shadow, field(path, "shadow"))
    plans.set(name, limits(plan.limits, field(path, "limits"), shadow))
  }
  const known = (kind: string, map: ReadonlyMap<string, unknown>, value: unknown, path: string) => {
    if (typeof value !== "string" || !map.has(value)) {
      const list = [...map.keys()].map((k) => `"${k}"`).join(", ")
      throw new ConfigError(
        path,
        typeof value === "string"
          ? `unknown ${kind} "${value}"${list === "" ? ` (no ${kind}s are configured)` : `; expected one of ${list}`}`
          : `expected the name of a ${kind}, got ${describe(value)}`,
      )
    }
    return value
  }

  const classes = new Map<string, Limits>()
  const rawClasses = optionalObject(config.modelClasses, "modelClasses")
  for (const name of Object.keys(rawClasses)) {
    const path = field("modelClasses", name)
    const cls = object(rawClasses[name], path)
    only(cls, ["limits"], path)
    classes.set(name, limits(cls.limits, field(path, "limits"), false))
  }

  const models = new Map<string, string | undefined>()
  const rawModels = optionalObject(config.models, "models")
  for (const name of Object.keys(rawModels)) {
    const path = field("models", name)
    const model = object(rawModels[name], path)
    only(model, ["class"], path)
    models.set(
      name,
      model.class === undefined
        ? undefined
        : known("model class", classes, model.class, field(path, "class")),
    )
  }

  const tenants = new Map<string, { plan: string | undefined; limits: Limits }>()
  const rawTenants = optionalObject(config.tenants, "tenants")
  for (const name of Object.keys(rawTenants)) {
    const path = field("tenants", name)
    const tenant = object(rawTenants[name], path)
    only(tenant, ["plan", "overrides"], path)
    const plan =
      tenant.plan === undefined ? undefined : known("plan", plans, tenant.plan, field(path, "plan"))
    tenants.set(name, { plan, limits: limits(tenant.overrides, field(path, "overrides"), false) })
  }

  const defaultPlan =
    config.defaultPlan === undefined
      ? undefined
      : known("plan", plans, config.defaultPlan, "defaultPlan")
  const allow = list(config.allow, "allow")
  const deny = list(config.deny, "deny")

  // Each tier counts with one algorithm, so a key's state means the same under every plan.
  const algorithms = shells.map(
    (shell) =>
      shell.algorithm ??
      inferAlgorithm(pending.filter((p) => p.tier === shell.index).map((p) => p.spec)),
  )
  for (const p of pending) {
    const made = specPolicy(p.spec, algorithms[p.tier], p.path)
    p.set(made === null ? null : { ...made, shadow: made.shadow || p.shadow })
  }
  const tiers: ValidTier[] = shells.map((shell) =>
    Object.freeze({
      name: shell.name,
      index: shell.index,
      fields: shell.fields,
      cost: shell.cost,
      algorithm: algorithms[shell.index],
      penaltyMs: shell.penaltyMs,
      limit: shell.limit,
    }),
  )
  return { tiers, plans, tenants, models, classes, defaultPlan, allow, deny }
}

function list(value: unknown, path: string): ListEntry[] {
  if (value === undefined) return []
  if (!Array.isArray(value)) {
    throw new ConfigError(
      path,
      `expected an array of "field:value" or "field:prefix*" strings, got ${describe(value)}`,
    )
  }
  return value.map((entry, i) => {
    const at = `${path}[${i}]`
    const colon = typeof entry === "string" ? entry.indexOf(":") : -1
    if (typeof entry !== "string" || colon < 1 || !FIELD_NAME.test(entry.slice(0, colon))) {
      throw new ConfigError(
        at,
        `expected "field:value" or "field:prefix*" (e.g. "user:admin", "ip:10.0.*"), got ${describe(entry)}`,
      )
    }
    const rest = entry.slice(colon + 1)
    const prefix = rest.endsWith("*")
    return { field: entry.slice(0, colon), value: prefix ? rest.slice(0, -1) : rest, prefix }
  })
}
