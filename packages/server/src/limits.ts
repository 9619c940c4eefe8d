// LimitSet: the limiters one config version enforces — named policies, Envoy descriptor
// rules per domain, and the multi-tier limiter. A new config is applied in two steps:
// prepareLimits checks all of it and builds what is new without touching what runs
// (throwing ConfigError with the path of the first problem), and only then the returned
// commit switches over. A policy or rule that keeps its name keeps its counts: the same
// limiter is reused, and a changed policy of the same algorithm is applied with
// setPolicy (a token bucket keeps its fill fraction). A changed algorithm starts afresh.

import type { LoadedConfig } from "./config/load.js"
import { samePolicy, toPolicy } from "./config/policy.js"
import type { DescriptorRule } from "./config/schema.js"
import { buildTree, type RuleNode } from "./descriptors.js"
import {
  type Clock,
  ConfigError,
  createLimiter,
  createTieredLimiter,
  describePolicy,
  fixedWindow,
  type Limiter,
  MemoryStore,
  type OnStoreError,
  type Policy,
  rateLimitPolicyHeader,
  type Store,
  type TieredConfig,
  type TieredLimiter,
} from "./lib.js"

/** LimitRuntime: what every limiter of the server shares, built by the composition root. */
/** MAX_KEY_LENGTH: the longest key (in characters) a named policy takes over HTTP. */
export const MAX_KEY_LENGTH = 512

export interface LimitRuntime {
  store: Store
  clock: Clock
  onStoreError: OnStoreError
  /** timeoutMs: budget for one call to an asynchronous store. */
  timeoutMs: number
}

/** Enforced: one limiter with what the edges need to describe it. */
export interface Enforced {
  /** name: the policy name, or `<domain>/<rule id>` for a descriptor rule. */
  readonly name: string
  readonly policy: Policy
  readonly limiter: Limiter
  /** policyHeader: the RateLimit-Policy field value for this limiter. */
  readonly policyHeader: string
}

/** Envoy unit numbers (RateLimitResponse.RateLimit.Unit). */
export const UNIT = {
  UNKNOWN: 0,
  SECOND: 1,
  MINUTE: 2,
  HOUR: 3,
  DAY: 4,
  MONTH: 5,
  YEAR: 6,
  WEEK: 7,
}

export interface EnvoyLimit {
  name: string
  requests_per_unit: number
  unit: number
}

/** RuleLimit: what a descriptor rule enforces. `block` rules (0 per unit) deny everything. */
export interface RuleLimit {
  readonly enforced: Enforced | undefined
  readonly block: boolean
  readonly shadow: boolean
  readonly envoy: EnvoyLimit
  /** policyHeader: the rule's RateLimit-Policy value (`q=0` and its unit for a block rule). */
  readonly policyHeader: string
  /**
   * windowMs: one whole window of the rule: the unit of a block rule, else the policy's
   * window (for a token bucket, the time it takes to refill from empty). A call that can
   * never pass is told to come back after this long.
   */
  readonly windowMs: number
}

export interface NginxSettings {
  policy: string
  keyHeaders: string[]
  trustedProxies: number
  forwardedHeader: "x-forwarded-for" | "forwarded"
}

export interface LimitSet {
  readonly version: string
  readonly source: string
  readonly loadedAt: number
  readonly policies: ReadonlyMap<string, Enforced>
  readonly domains: ReadonlyMap<string, RuleNode<RuleLimit>["children"]>
  readonly tiered: TieredLimiter | undefined
  readonly nginx: NginxSettings | undefined
}

const TIER_SECTIONS = [
  "tiers",
  "plans",
  "tenants",
  "models",
  "modelClasses",
  "defaultPlan",
  "allow",
  "deny",
] as const

const UNITS: [number, number][] = [
  [1000, UNIT.SECOND],
  [60_000, UNIT.MINUTE],
  [3_600_000, UNIT.HOUR],
  [86_400_000, UNIT.DAY],
]

/**
 * PER_UNIT: the units a limit may be stated in, shortest first, with Envoy's lengths
 * (its reference service counts a month as 30 days and a year as 365).
 */
const PER_UNIT: [number, number][] = [
  ...UNITS,
  [7 * 86_400_000, UNIT.WEEK],
  [30 * 86_400_000, UNIT.MONTH],
  [365 * 86_400_000, UNIT.YEAR],
]

const CALENDAR_UNIT = { day: UNIT.DAY, week: UNIT.WEEK, month: UNIT.MONTH }

/**
 * envoyLimit states a policy as Envoy's requests per unit. The unit is ours to choose:
 * the shortest unit no shorter than the policy's period or window in which the count is
 * a whole number (0.5 per second is 30 per minute), else the shortest in which it is at
 * least 1, rounded down. A calendar window is stated in its own unit.
 */
export function envoyLimit(policy: Policy, name: string): EnvoyLimit {
  if (policy.kind === "concurrency") {
    return { name, requests_per_unit: Math.floor(policy.limit), unit: UNIT.UNKNOWN }
  }
  if (policy.kind === "fixedWindow" && policy.calendar !== undefined) {
    return {
      name,
      requests_per_unit: Math.floor(policy.limit),
      unit: CALENDAR_UNIT[policy.calendar],
    }
  }
  const [amount, span] =
    policy.kind === "tokenBucket" ? [policy.rate, policy.periodMs] : [policy.limit, policy.windowMs]
  let roundedDown: EnvoyLimit | undefined
  for (const [ms, unit] of PER_UNIT) {
    if (ms < span) continue
    const per = (amount * ms) / span
    const whole = Math.round(per)
    if (whole >= 1 && Math.abs(per - whole) <= 1e-9 * per) {
      return { name, requests_per_unit: whole, unit }
    }
    if (roundedDown === undefined && per >= 1) {
      roundedDown = { name, requests_per_unit: Math.floor(per + 1e-9), unit }
    }
  }
  if (roundedDown !== undefined) return roundedDown
  const [ms, unit] = PER_UNIT[PER_UNIT.length - 1]
  return { name, requests_per_unit: Math.floor((amount * ms) / span + 1e-9), unit }
}

const SAFE_PREFIX = /^[\w.\-=/]{1,200}$/

/** rulePrefix is the store namespace of a descriptor rule's counts. */
function rulePrefix(domain: string, id: string): string {
  const raw = `${domain}:${id}`
  if (SAFE_PREFIX.test(domain) && SAFE_PREFIX.test(id) && raw.length <= 200) return `envoy:${raw}`
  // Braces or odd characters in a prefix could steer Redis Cluster slots: hash them away.
  let h = 0x811c9dc5
  let g = 0x01000193
  for (let i = 0; i < raw.length; i++) {
    h = Math.imul(h ^ raw.charCodeAt(i), 0x01000193) >>> 0
    g = Math.imul(g ^ raw.charCodeAt(i), 0x5bd1e995) >>> 0
  }
  return `envoy:#${h.toString(36)}${g.toString(36)}`
}

/**
 * prepareLimits checks a config completely and builds the limiters it needs, reusing
 * those of `previous` by name. It changes nothing that is running; the function it
 * returns applies the new set (and must be called at most once).
 */
export function prepareLimits(
  loaded: LoadedConfig,
  runtime: LimitRuntime,
  previous: LimitSet | undefined,
): () => LimitSet {
  const { config } = loaded
  const pending: (() => void)[] = []

  const enforce = (
    name: string,
    prefix: string,
    policy: Policy,
    old: Enforced | undefined,
    maxKeyLength: number,
  ): Enforced => {
    const policyHeader = rateLimitPolicyHeader([describePolicy(policy, name)])
    if (old !== undefined && old.policy.kind === policy.kind) {
      if (!samePolicy(old.policy, policy)) pending.push(() => old.limiter.setPolicy(policy))
      return { name, policy, limiter: old.limiter, policyHeader }
    }
    const limiter = createLimiter({
      policy,
      store: runtime.store,
      clock: runtime.clock,
      prefix,
      onStoreError: runtime.onStoreError,
      timeout: runtime.timeoutMs,
      maxKeyLength,
    })
    return { name, policy, limiter, policyHeader }
  }

  const policies = new Map<string, Enforced>()
  for (const [name, spec] of Object.entries(config.policies)) {
    const policy = toPolicy(spec, `policies.${name}`)
    policies.set(
      name,
      enforce(name, `policy:${name}`, policy, previous?.policies.get(name), MAX_KEY_LENGTH),
    )
  }

  const oldRules = new Map<string, Enforced>()
  for (const [domain, root] of previous?.domains ?? []) collect(domain, root, oldRules)

  const domains = new Map<string, RuleNode<RuleLimit>["children"]>()
  config.domains.forEach((d, i) => {
    const limitOf = (rule: DescriptorRule, id: string, path: string): RuleLimit | undefined => {
      const shadow = rule.shadow_mode === true
      const name = `${d.domain}/${id}`
      let policy: Policy
      if (rule.rate_limit !== undefined) {
        const unitMs = { second: 1000, minute: 60_000, hour: 3_600_000, day: 86_400_000 }[
          rule.rate_limit.unit
        ]
        const per = rule.rate_limit.requests_per_unit
        if (per === 0) {
          return {
            enforced: undefined,
            block: true,
            shadow,
            envoy: { name, requests_per_unit: 0, unit: UNITS.find(([ms]) => ms === unitMs)![1] },
            policyHeader: rateLimitPolicyHeader([{ name, quota: 0, windowSeconds: unitMs / 1000 }]),
            windowMs: unitMs,
          }
        }
        policy = fixedWindow({ limit: per, window: unitMs })
      } else if (typeof rule.limit === "string") {
        const named = policies.get(rule.limit)
        if (named === undefined) {
          throw new ConfigError(
            `${path}.limit`,
            `unknown policy "${rule.limit}"; the policies are ${[...policies.keys()].map((n) => `"${n}"`).join(", ") || "none"}`,
          )
        }
        policy = named.policy
      } else if (rule.limit !== undefined) {
        policy = toPolicy(rule.limit, `${path}.limit`)
      } else {
        return undefined
      }
      const enforced = enforce(name, rulePrefix(d.domain, id), policy, oldRules.get(name), 4096)
      return {
        enforced,
        block: false,
        shadow,
        envoy: envoyLimit(policy, name),
        policyHeader: enforced.policyHeader,
        windowMs: policy.windowMs,
      }
    }
    domains.set(d.domain, buildTree(d.descriptors, `domains[${i}].descriptors`, limitOf))
  })

  const tierSections: Record<string, unknown> = {}
  for (const section of TIER_SECTIONS) {
    if (config[section] !== undefined) tierSections[section] = config[section]
  }
  const hasTiers = config.tiers !== undefined
  if (hasTiers) {
    // A throwaway limiter checks the sections completely before anything changes.
    createTieredLimiter({ ...(tierSections as object as TieredConfig), store: new MemoryStore() })
  }

  return () => {
    for (const apply of pending) apply()
    let tiered: TieredLimiter | undefined
    if (hasTiers) {
      tiered = previous?.tiered
      if (tiered !== undefined) tiered.setConfig(tierSections as object as TieredConfig)
      else {
        tiered = createTieredLimiter({
          ...(tierSections as object as TieredConfig),
          store: runtime.store,
          clock: runtime.clock,
          onStoreError: runtime.onStoreError,
          timeout: runtime.timeoutMs,
          prefix: "tiers",
        })
      }
    }
    return {
      version: loaded.version,
      source: loaded.source,
      loadedAt: runtime.clock.now(),
      policies,
      domains,
      tiered,
      nginx: config.nginx,
    }
  }
}

function collect(
  domain: string,
  children: RuleNode<RuleLimit>["children"],
  out: Map<string, Enforced>,
): void {
  for (const group of children.values()) {
    const nodes = [...group.exact.values()]
    if (group.any !== undefined) nodes.push(group.any)
    for (const node of nodes) {
      if (node.limit?.enforced !== undefined) out.set(`${domain}/${node.id}`, node.limit.enforced)
      collect(domain, node.children, out)
    }
  }
}
