import { afterEach, describe, expect, it, vi } from "vitest"
import { ConfigError, fromEnv, type Limiter, manualClock } from "../../src/index.js"

describe("fromEnv", () => {
  afterEach(() => {
    vi.unstubAllEnvs()
  })

  it("RATE_LIMIT_*: one token bucket, as a full Limiter", () => {
    const clock = manualClock(0)
    const limiter = fromEnv(
      { RATE_LIMIT_RATE: "10", RATE_LIMIT_PERIOD: "1s", RATE_LIMIT_BURST: "20" },
      { clock },
    ) as Limiter<true>
    expect(limiter.policy).toMatchObject({
      kind: "tokenBucket",
      rate: 10,
      periodMs: 1000,
      burst: 20,
    })
    for (let i = 0; i < 20; i++) expect(limiter.limit("k").allowed).toBe(true)
    expect(limiter.limit("k")).toMatchObject({ allowed: false, retryAfterMs: 100 })
    clock.advance(100)
    expect(limiter.limit("k").allowed).toBe(true)
  })

  it("defaults: a period of one second, a burst of the rate; values may be padded", () => {
    const limiter = fromEnv({ RATE_LIMIT_RATE: " 2.5 " }, { clock: manualClock(0) }) as Limiter
    expect(limiter.policy).toMatchObject({ rate: 2.5, periodMs: 1000, burst: 2.5 })
  })

  it("reads process.env by default", () => {
    vi.stubEnv("RATE_LIMIT_RATE", "100")
    vi.stubEnv("RATE_LIMIT_PERIOD", "1m")
    expect((fromEnv() as Limiter).policy).toMatchObject({ rate: 100, periodMs: 60_000 })
  })

  it("REQUESTS_PER_MINUTE + REQUESTS_PER_HOUR + BURST_SIZE: both windows enforced", async () => {
    const clock = manualClock(Date.UTC(2026, 0, 1))
    const limiter = fromEnv(
      { REQUESTS_PER_MINUTE: "60", REQUESTS_PER_HOUR: "100", BURST_SIZE: "10" },
      { clock },
    )
    let admitted = 0
    for (let i = 0; i < 11; i++) if ((await limiter.limit("k")).allowed) admitted++
    expect(admitted).toBe(10) // the burst
    const d = await limiter.limit("k")
    expect(d).toMatchObject({ allowed: false, tier: "minute", retryAfterMs: 1000 })
    // Steady at one a second, the minute budget is kept but the hour runs out at 100.
    for (let i = 0; i < 200; i++) {
      clock.advance(1000)
      if ((await limiter.limit("k")).allowed) admitted++
    }
    expect(admitted).toBe(100)
    expect((await limiter.limit("k")).tier).toBe("hour")
    expect(await limiter.peek("k")).toMatchObject({ limit: 100, remaining: 0 })
    expect((await limiter.limit("other")).allowed).toBe(true)
    await limiter.reset("k")
    expect((await limiter.peek("k")).remaining).toBe(10)
    expect(limiter.stats()).toMatchObject({ allowed: 101 })
  })

  it("the two-window form counts a call's cost in both windows, and refuses a cost above either", async () => {
    const limiter = fromEnv(
      { REQUESTS_PER_MINUTE: "60", REQUESTS_PER_HOUR: "100", BURST_SIZE: "10" },
      { clock: manualClock(0) },
    )
    expect((await limiter.limit("k", { cost: 4 })).allowed).toBe(true)
    expect(await limiter.peek("k")).toMatchObject({ limit: 10, remaining: 6 })
    expect((await limiter.limit("k", { cost: 7 })).allowed).toBe(false)
    expect((await limiter.limit("k", { cost: 6 })).allowed).toBe(true)
    await expect(async () => limiter.limit("k", { cost: 500 })).rejects.toMatchObject({
      code: "ERR_ARGUMENT",
    })
  })

  it("one window alone is fine", async () => {
    const limiter = fromEnv({ REQUESTS_PER_HOUR: "2" }, { clock: manualClock(0) })
    expect((await limiter.limit("k")).allowed).toBe(true)
    expect((await limiter.limit("k")).allowed).toBe(true)
    expect(await limiter.limit("k")).toMatchObject({ allowed: false, tier: "hour" })
  })

  const bad: [string, Record<string, string>, string, RegExp][] = [
    [
      "a rate that is not a number",
      { RATE_LIMIT_RATE: "fast" },
      "RATE_LIMIT_RATE",
      /expected a number > 0, got "fast"/,
    ],
    ["a zero rate", { RATE_LIMIT_RATE: "0" }, "RATE_LIMIT_RATE", /expected a number > 0/],
    [
      "a period without a unit",
      { RATE_LIMIT_RATE: "5", RATE_LIMIT_PERIOD: "60" },
      "RATE_LIMIT_PERIOD",
      /with a unit/,
    ],
    [
      "a period in fortnights",
      { RATE_LIMIT_RATE: "5", RATE_LIMIT_PERIOD: "2w" },
      "RATE_LIMIT_PERIOD",
      /with a unit/,
    ],
    [
      "a burst below one",
      { RATE_LIMIT_RATE: "5", RATE_LIMIT_BURST: "0.5" },
      "RATE_LIMIT_BURST",
      /expected a number >= 1/,
    ],
    ["a period without a rate", { RATE_LIMIT_PERIOD: "1s" }, "RATE_LIMIT_RATE", /is required/],
    [
      "a negative per-minute count",
      { REQUESTS_PER_MINUTE: "-3" },
      "REQUESTS_PER_MINUTE",
      /expected a number >= 1/,
    ],
    ["an hourly count in words", { REQUESTS_PER_HOUR: "lots" }, "REQUESTS_PER_HOUR", /got "lots"/],
    [
      "a burst size with no per-minute count",
      { REQUESTS_PER_HOUR: "5", BURST_SIZE: "3" },
      "BURST_SIZE",
      /REQUESTS_PER_MINUTE is not set/,
    ],
    ["both forms", { RATE_LIMIT_RATE: "5", REQUESTS_PER_MINUTE: "5" }, "env", /not both/],
    ["nothing set", { UNRELATED: "1" }, "env", /no limit configured/],
  ]

  it.each(bad)("rejects %s, naming the variable", (_, env, path, message) => {
    let error: unknown
    try {
      fromEnv(env)
    } catch (e) {
      error = e
    }
    expect(error).toBeInstanceOf(ConfigError)
    expect((error as ConfigError).path).toBe(path)
    expect((error as ConfigError).message).toMatch(message)
  })
})
