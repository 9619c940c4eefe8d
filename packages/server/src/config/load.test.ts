import { describe, expect, it } from "vitest"
import { ConfigError, MemoryStore, manualClock } from "../lib.js"
import { prepareLimits } from "../limits.js"
import { checkConfig, parseConfig } from "./load.js"

/** errorOf loads text completely (schema, policies, rules, tiers) and returns the error path. */
function errorOf(text: string): string {
  try {
    const loaded = parseConfig(text)
    const clock = manualClock(0)
    prepareLimits(
      loaded,
      { store: new MemoryStore(), clock, onStoreError: "closed", timeoutMs: 1000 },
      undefined,
    )
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError)
    return (error as ConfigError).path
  }
  throw new Error("expected a ConfigError")
}

describe("config errors name their path", () => {
  it.each([
    ["policies:\n  api: { rate: -1 }\n", "policies.api.rate"],
    ["policies:\n  api: { algorithm: tokenBucket, limit: 3 }\n", "policies.api.limit"],
    [
      "policies:\n  api: { algorithm: fixedWindow, limit: 3, window: 1 parsec }\n",
      "policies.api.window",
    ],
    ["policies:\n  api: { algorithm: magic, limit: 3 }\n", "policies.api.algorithm"],
    ["policies:\n  'bad name!': { rate: 1 }\n", 'policies["bad name!"]'],
    ["polices: {}\n", ""],
    [
      "domains:\n  - domain: d\n    descriptors:\n      - key: a\n        limit: nope\n",
      "domains[0].descriptors[0].limit",
    ],
    [
      "domains:\n  - domain: d\n    descriptors:\n      - { key: a }\n      - { key: a }\n",
      "domains[0].descriptors[1]",
    ],
    [
      "domains:\n  - domain: d\n    descriptors:\n      - key: a\n        descriptors:\n          - { key: b, rate_limit: { unit: fortnight, requests_per_unit: 1 } }\n",
      "domains[0].descriptors[0].descriptors[0].rate_limit.unit",
    ],
    ["nginx: { policy: missing }\n", "nginx.policy"],
    [
      "policies:\n  c: { algorithm: concurrency, limit: 2 }\nnginx: { policy: c }\n",
      "nginx.policy",
    ],
    ["tiers:\n  user: { key: user }\n", "tiers.user.key"],
    ["plans: {}\n", "plans"],
  ])("%s -> %s", (text, path) => {
    expect(errorOf(text)).toBe(path)
  })

  it.each([
    [
      "policies:\n  __proto__: { limit: 5, window: 1m }\n  api: { rate: 1 }\n",
      "policies.__proto__",
    ],
    ["policies:\n  api: { rate: 1 }\n  constructor: { rate: 1 }\n", "policies.constructor"],
    ["policies:\n  prototype: { rate: 1 }\n", "policies.prototype"],
    ['{"policies": {"api": {"rate": 1}, "__proto__": {"rate": 2}}}', "policies.__proto__"],
    ["policies:\n  api: { rate: 1, __proto__: { rate: 2 } }\n", "policies.api.__proto__"],
    ["__proto__: { policies: {} }\n", "__proto__"],
    [
      "tiers:\n  user: { key: [user] }\nplans:\n  __proto__: { limits: { user: { limit: 1, window: 1m } } }\n",
      "plans.__proto__",
    ],
    [
      "tiers:\n  user: { key: [user] }\nplans:\n  free: { limits: { constructor: { limit: 1, window: 1m } } }\n",
      "plans.free.limits.constructor",
    ],
    ["tenants:\n  prototype: { plan: free }\n", "tenants.prototype"],
    [
      "domains:\n  - domain: d\n    descriptors:\n      - key: a\n        limit: { __proto__: { rate: 1 } }\n",
      "domains[0].descriptors[0].limit.__proto__",
    ],
  ])("a reserved name is refused, not dropped: %s -> %s", (text, path) => {
    expect(errorOf(text)).toBe(path)
    try {
      parseConfig(text)
    } catch (error) {
      expect((error as ConfigError).message).toContain("reserved name")
    }
  })

  it("refuses an object config whose maps carry a prototype or a reserved name", () => {
    // An object literal's `__proto__:` sets the prototype: the policy would vanish.
    const viaLiteral = { policies: { __proto__: { rate: 1 }, api: { rate: 2 } } }
    expect(() => checkConfig(viaLiteral)).toThrow(ConfigError)
    try {
      checkConfig(viaLiteral)
    } catch (error) {
      expect((error as ConfigError).path).toBe("policies")
    }
    const own = JSON.parse('{"policies": {"__proto__": {"rate": 1}}}')
    try {
      checkConfig(own)
      throw new Error("expected a ConfigError")
    } catch (error) {
      expect(error).toBeInstanceOf(ConfigError)
      expect((error as ConfigError).path).toBe("policies.__proto__")
    }
  })

  it("keeps names that merely look like reserved ones", () => {
    const loaded = parseConfig("policies:\n  proto: { rate: 1 }\n  Constructor: { rate: 2 }\n")
    expect(Object.keys(loaded.config.policies)).toEqual(["proto", "Constructor"])
  })

  it("accepts the example config", () => {
    const loaded = parseConfig("policies:\n  api: { rate: 5, burst: 10 }\nversion: 7\n")
    expect(loaded.version).toBe("7")
    expect(loaded.config.policies.api).toEqual({ rate: 5, burst: 10 })
  })
})
