import { describe, expect, it } from "vitest"
import { ConfigError, MemoryStore, manualClock } from "../lib.js"
import { prepareLimits } from "../limits.js"
import { parseConfig } from "./load.js"

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
    ["tiers:\n  user: { key: user }\n", "tiers.user.key"],
    ["plans: {}\n", "plans"],
  ])("%s -> %s", (text, path) => {
    expect(errorOf(text)).toBe(path)
  })

  it("accepts the example config", () => {
    const loaded = parseConfig("policies:\n  api: { rate: 5, burst: 10 }\nversion: 7\n")
    expect(loaded.version).toBe("7")
    expect(loaded.config.policies.api).toEqual({ rate: 5, burst: 10 })
  })
})
