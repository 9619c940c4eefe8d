// The shape of a server config file, as a zod schema. It checks structure and types and
// names the path of the first problem; the numbers themselves (rate > 0, durations, time
// zones) are checked again by the library's policy factories, and the multi-tier sections
// by createTieredLimiter, so a value is judged by the same rules everywhere.

import { z } from "zod"

/** NAME: policy names and domain names: letters, digits, `_`, `-`, `.`; up to 64. */
const NAME = /^[A-Za-z0-9_.-]{1,64}$/

const duration = z.union([z.number(), z.string()], {
  error: 'expected a duration: ms, or a string such as "250ms", "1s", "1m", "1h", "1d"',
})

export const ALGORITHMS = [
  "tokenBucket",
  "slidingWindowLog",
  "slidingWindowCounter",
  "fixedWindow",
  "concurrency",
] as const

/**
 * policySpec: one limit written as data. The fields that apply depend on the algorithm;
 * without `algorithm`, `rate` means a token bucket, a calendar window a fixed window, and
 * any other `{ limit, window }` a sliding window counter (the same rule as the tiers).
 */
export const policySpec = z.strictObject({
  algorithm: z.enum(ALGORITHMS).optional(),
  rate: z.number().optional(),
  period: duration.optional(),
  burst: z.number().optional(),
  limit: z.number().optional(),
  window: duration.optional(),
  timeZone: z.string().optional(),
  leaseTimeout: duration.optional(),
})
export type PolicySpec = z.infer<typeof policySpec>

/** envoyRateLimit: Envoy's own way of writing a limit, for configs carried over from it. */
const envoyRateLimit = z.strictObject({
  unit: z.enum(["second", "minute", "hour", "day"]),
  requests_per_unit: z.number().int().min(0),
})

export interface DescriptorRule {
  key: string
  value?: string
  limit?: string | PolicySpec
  rate_limit?: z.infer<typeof envoyRateLimit>
  shadow_mode?: boolean
  descriptors?: DescriptorRule[]
}

/**
 * descriptorRule: one node of a domain's descriptor tree. `key` (and `value`, when given)
 * match one entry of a request's descriptor; `limit` names a policy or writes one inline;
 * `rate_limit` is Envoy's `{ unit, requests_per_unit }` form (a fixed window of one unit;
 * 0 blocks everything); `descriptors` match the entries that follow.
 */
export const descriptorRule: z.ZodType<DescriptorRule> = z.lazy(() =>
  z
    .strictObject({
      key: z.string().min(1),
      value: z.string().optional(),
      limit: z.union([z.string().regex(NAME, "expected a policy name"), policySpec]).optional(),
      rate_limit: envoyRateLimit.optional(),
      shadow_mode: z.boolean().optional(),
      descriptors: z.array(descriptorRule).optional(),
    })
    .refine((r) => r.limit === undefined || r.rate_limit === undefined, {
      message: "give either limit or rate_limit, not both",
    }),
)

const domain = z.strictObject({
  domain: z.string().min(1).max(256),
  descriptors: z.array(descriptorRule),
})

/**
 * nginxSection: how GET /v1/auth (nginx auth_request, or any forward-auth proxy) keys its
 * decisions: the first of `keyHeaders` the request carries, else the client address as the
 * proxy reports it in X-Forwarded-For (`trustedProxies` hops, default 1: nginx itself).
 */
const nginxSection = z.strictObject({
  policy: z.string().regex(NAME, "expected a policy name"),
  keyHeaders: z.array(z.string().min(1).toLowerCase()).default([]),
  trustedProxies: z.number().int().min(0).default(1),
  forwardedHeader: z.enum(["x-forwarded-for", "forwarded"]).default("x-forwarded-for"),
})

export const serverConfig = z
  .strictObject({
    /** version: a label for this config (dashboard, /healthz, metrics); default: a content hash. */
    version: z.union([z.string(), z.number()]).transform(String).optional(),
    policies: z.record(z.string().regex(NAME, "expected a policy name"), policySpec).default({}),
    domains: z.array(domain).default([]),
    nginx: nginxSection.optional(),
    // The multi-tier sections: passed as they are to createTieredLimiter, which checks them.
    tiers: z.record(z.string(), z.unknown()).optional(),
    plans: z.record(z.string(), z.unknown()).optional(),
    tenants: z.record(z.string(), z.unknown()).optional(),
    models: z.record(z.string(), z.unknown()).optional(),
    modelClasses: z.record(z.string(), z.unknown()).optional(),
    defaultPlan: z.string().optional(),
    allow: z.array(z.unknown()).optional(),
    deny: z.array(z.unknown()).optional(),
  })
  .superRefine((c, ctx) => {
    const seen = new Set<string>()
    c.domains.forEach((d, i) => {
      if (seen.has(d.domain)) {
        ctx.addIssue({
          code: "custom",
          path: ["domains", i, "domain"],
          message: `domain "${d.domain}" is listed twice`,
        })
      }
      seen.add(d.domain)
    })
    if (c.nginx !== undefined && !Object.hasOwn(c.policies, c.nginx.policy)) {
      ctx.addIssue({
        code: "custom",
        path: ["nginx", "policy"],
        message: `unknown policy "${c.nginx.policy}"; the policies are ${names(c.policies)}`,
      })
    } else if (c.nginx !== undefined && c.policies[c.nginx.policy].algorithm === "concurrency") {
      // A proxy's sub-request has no "done" call: a lease taken for it is never released.
      ctx.addIssue({
        code: "custom",
        path: ["nginx", "policy"],
        message: `policy "${c.nginx.policy}" is a concurrency policy; /v1/auth could never release its leases, so it takes a rate policy`,
      })
    }
    for (const section of ["plans", "tenants", "models", "modelClasses", "defaultPlan"] as const) {
      if (c[section] !== undefined && c.tiers === undefined) {
        ctx.addIssue({
          code: "custom",
          path: [section],
          message: "needs a tiers section to apply to",
        })
      }
    }
  })

export type ServerConfigInput = z.input<typeof serverConfig>
export type ServerConfig = z.output<typeof serverConfig>

function names(record: Record<string, unknown>): string {
  const list = Object.keys(record).map((n) => `"${n}"`)
  return list.length === 0 ? "none" : list.join(", ")
}

/** issuePath renders a zod issue path as `domains[0].descriptors[1].key`. */
export function issuePath(path: readonly PropertyKey[]): string {
  let out = ""
  for (const part of path) {
    if (typeof part === "number") out += `[${part}]`
    else if (typeof part === "string" && /^[A-Za-z_$][\w$-]*$/.test(part)) {
      out += out === "" ? part : `.${part}`
    } else out += `[${JSON.stringify(String(part))}]`
  }
  return out
}
