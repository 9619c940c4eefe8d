import { describe, expect, it } from "vitest"
import {
  ConfigError,
  createTieredLimiter,
  manualClock,
  type TieredConfig,
} from "../../src/index.js"

const valid: TieredConfig = {
  tiers: {
    user: { key: ["user"] },
    tokens: { key: ["user"], budget: "cost" },
  },
  plans: {
    free: {
      limits: { user: { limit: 100, window: "1h" }, tokens: { rate: 20_000, period: "1m" } },
    },
    premium: { limits: { user: { limit: 1000, window: "1h" } } },
  },
  tenants: { acme: { plan: "premium" } },
  models: { "gpt-4.1": { class: "large" } },
  modelClasses: { large: { limits: { user: { limit: 10, window: "1m" } } } },
  defaultPlan: "free",
}

/** broken: the valid config with one part replaced (a shallow path of keys). */
function broken(path: string[], value: unknown): unknown {
  const copy = structuredClone(valid) as unknown as Record<string, unknown>
  let at = copy
  for (const key of path.slice(0, -1)) {
    at[key] ??= {}
    at = at[key] as Record<string, unknown>
  }
  at[path[path.length - 1]] = value
  return copy
}

const cases: [string, unknown, string, RegExp][] = [
  [
    "a tenant on an unknown plan",
    broken(["tenants", "acme", "plan"], "gold"),
    "tenants.acme.plan",
    /^tenants\.acme\.plan: unknown plan "gold"; expected one of "free", "premium"$/,
  ],
  [
    "a tier key that is not a list",
    broken(["tiers", "user", "key"], "user"),
    "tiers.user.key",
    /expected an array of request field names/,
  ],
  [
    "an unknown budget",
    broken(["tiers", "tokens", "budget"], "tokens"),
    "tiers.tokens.budget",
    /expected "requests" or "cost", got "tokens"/,
  ],
  [
    "an unknown algorithm",
    broken(["tiers", "user", "algorithm"], "leakyBucket"),
    "tiers.user.algorithm",
    /expected one of "tokenBucket", .*got "leakyBucket"/,
  ],
  [
    "a plan limit for a tier that does not exist",
    broken(["plans", "free", "limits", "users"], { limit: 5, window: "1m" }),
    "plans.free.limits.users",
    /unknown tier "users"; the tiers are "user", "tokens"/,
  ],
  [
    "a window that is not a duration",
    broken(["plans", "premium", "limits", "user"], { limit: 5, window: "1 fortnight" }),
    "plans.premium.limits.user.window",
    /expected a duration > 0/,
  ],
  [
    "a limit of zero",
    broken(["plans", "premium", "limits", "user"], { limit: 0, window: "1h" }),
    "plans.premium.limits.user.limit",
    /expected a finite number >= 1, got 0/,
  ],
  [
    "a model in a class that does not exist (a name that needs brackets)",
    broken(["models", "gpt-4.1", "class"], "huge"),
    'models["gpt-4.1"].class',
    /unknown model class "huge"; expected one of "large"/,
  ],
  [
    "an unknown default plan",
    broken(["defaultPlan"], "basic"),
    "defaultPlan",
    /unknown plan "basic"/,
  ],
  [
    "an allow entry without a field",
    broken(["allow"], ["user:admin", "admin"]),
    "allow[1]",
    /expected "field:value" or "field:prefix\*"/,
  ],
  [
    "a negative rate in a tenant override",
    broken(["tenants", "acme", "overrides"], { tokens: { rate: -1 } }),
    "tenants.acme.overrides.tokens.rate",
    /expected a finite number > 0, got -1/,
  ],
  [
    "a misspelt field",
    broken(["tiers", "user", "limt"], { limit: 5, window: "1m" }),
    "tiers.user.limt",
    /unknown field; expected one of key, budget/,
  ],
  [
    "a misspelt field in a limit",
    broken(["plans", "premium", "limits", "user"], { limit: 5, windw: "1m" }),
    "plans.premium.limits.user.windw",
    /unknown field; a window limit has limit, window, timeZone, shadow/,
  ],
  [
    "a calendar window in a token-bucket tier",
    broken(["tiers", "tokens", "limit"], { limit: 1_000_000, window: "month" }),
    "tiers.tokens.limit.window",
    /calendar windows \("month"\) need a fixedWindow tier/,
  ],
  [
    "an unknown time zone",
    broken(["tiers", "quota"], {
      key: ["tenant"],
      limit: { limit: 5, window: "month", timeZone: "Mars/Olympus" },
    }),
    "tiers.quota.limit.timeZone",
    /expected an IANA time zone/,
  ],
  [
    "a penalty that is not a duration",
    broken(["tiers", "user", "penalty"], "-5m"),
    "tiers.user.penalty",
    /expected a finite duration > 0/,
  ],
  ["a reserved tier name", broken(["tiers", "deny"], { key: [] }), "tiers.deny", /is reserved/],
  [
    "a tier name with a space",
    broken(["tiers", "per user"], { key: ["user"] }),
    'tiers["per user"]',
    /a tier name is 1 to 64 letters/,
  ],
  [
    "both limit and rate",
    broken(["plans", "premium", "limits", "user"], { limit: 5, window: "1m", rate: 5 }),
    "plans.premium.limits.user",
    /either limit \(with window\) or rate, not both/,
  ],
  ["a misspelt top-level field", broken(["tier"], {}), "tier", /unknown field/],
  ["no tiers", broken(["tiers"], {}), "tiers", /at least one tier/],
  [
    "a key field listed twice",
    broken(["tiers", "user", "key"], ["user", "user"]),
    "tiers.user.key[1]",
    /"user" is listed twice/,
  ],
]

describe("tiers config", () => {
  it.each(cases)("rejects %s, naming the path", (_, config, path, message) => {
    let error: unknown
    try {
      createTieredLimiter(config as TieredConfig)
    } catch (e) {
      error = e
    }
    expect(error).toBeInstanceOf(ConfigError)
    expect((error as ConfigError).code).toBe("ERR_CONFIG")
    expect((error as ConfigError).path).toBe(path)
    expect((error as ConfigError).message.startsWith(`${path}: `)).toBe(true)
    expect((error as ConfigError).message).toMatch(message)
  })

  it("accepts the valid config, JSON round trip included", () => {
    expect(() => createTieredLimiter(valid)).not.toThrow()
    expect(() => createTieredLimiter(JSON.parse(JSON.stringify(valid)))).not.toThrow()
  })

  it("never half-applies: a bad setConfig leaves the running config as it was", () => {
    const g = createTieredLimiter({ ...valid, clock: manualClock(0) })
    expect(g.usage({ user: "a" }).tiers.user.limit).toBe(100)
    const bad = broken(["tenants", "acme", "plan"], "gold") as TieredConfig
    expect(() => g.setConfig({ ...bad, defaultPlan: "premium" })).toThrow(ConfigError)
    expect(g.usage({ user: "a" }).tiers.user.limit).toBe(100)
    g.setConfig({ ...valid, defaultPlan: "premium" })
    expect(g.usage({ user: "a" }).tiers.user.limit).toBe(1000)
  })

  it("resolves a tier's limit: tenant override, model class, plan, the tier's own", () => {
    const g = createTieredLimiter({
      clock: manualClock(0),
      tiers: { user: { key: ["user"], limit: { limit: 10, window: "1h" } } },
      plans: { pro: { limits: { user: { limit: 20, window: "1h" } } } },
      modelClasses: { large: { limits: { user: { limit: 30, window: "1h" } } } },
      models: { big: { class: "large" } },
      tenants: {
        acme: { plan: "pro", overrides: { user: { limit: 40, window: "1h" } } },
        free: { overrides: { user: "unlimited" } },
      },
    })
    const limit = (request: Record<string, string>) => g.usage(request).tiers.user?.limit
    expect(limit({ user: "u" })).toBe(10)
    expect(limit({ user: "u", plan: "pro" })).toBe(20)
    expect(limit({ user: "u", plan: "pro", model: "big" })).toBe(30)
    expect(limit({ user: "u", tenant: "acme", model: "big" })).toBe(40)
    expect(limit({ user: "u", tenant: "free", model: "big" })).toBeUndefined()
    // Unknown tenants and models are just not configured: the plan and tier apply.
    expect(limit({ user: "u", tenant: "nobody", model: "other" })).toBe(10)
  })

  it("infers each tier's algorithm from its limits and keeps one per tier", () => {
    const clock = manualClock(Date.UTC(2026, 0, 1))
    const g = createTieredLimiter({
      clock,
      tiers: {
        bucket: { key: ["k"], limit: { rate: 1, period: "1s", burst: 3 } },
        quota: { key: ["k"], limit: { limit: 2, window: "day" } },
        exact: { key: ["k"], algorithm: "slidingWindowLog", limit: { limit: 5, window: "1m" } },
        smooth: { key: ["k"], algorithm: "tokenBucket", limit: { limit: 60, window: "1m" } },
      },
    })
    const u = g.usage({ k: "x" })
    expect(u.tiers.bucket.limit).toBe(3)
    expect(u.tiers.smooth.limit).toBe(60)
    g.limit({ k: "x" })
    g.limit({ k: "x" })
    const d = g.limit({ k: "x" })
    expect(d.tier).toBe("quota")
    // A calendar day: the retry is the rest of the UTC day.
    expect(d.retryAfterMs).toBe(86_400_000)
    expect(() =>
      createTieredLimiter({
        tiers: { t: { key: [], algorithm: "fixedWindow", limit: { rate: 5 } } },
      }),
    ).toThrow(/^tiers\.t\.limit: a \{ rate \} limit needs a tokenBucket tier/)
  })
})
