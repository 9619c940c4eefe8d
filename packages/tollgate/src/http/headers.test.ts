import { describe, expect, it } from "vitest"
import { type Decision, decision } from "../core/decision.js"
import { concurrency, fixedWindow, slidingWindowLog, tokenBucket } from "../core/policy.js"
import {
  describePolicy,
  legacyRateLimitHeaders,
  rateLimitHeader,
  rateLimitPolicyHeader,
  retryAfterHeader,
  seconds,
} from "./headers.js"

const allowed = (remaining: number, resetAfterMs: number): Decision =>
  decision(true, 10, remaining, 0, resetAfterMs)
const denied = (retryAfterMs: number, resetAfterMs: number): Decision =>
  decision(false, 10, 0, retryAfterMs, resetAfterMs)

describe("describePolicy", () => {
  it.each([
    [
      "token bucket 600/min burst 20 (refills in 2 s)",
      tokenBucket({ rate: 600, period: "1m", burst: 20 }),
      20,
      2,
    ],
    ["token bucket 5/min burst 5", tokenBucket({ rate: 5, period: "1m" }), 5, 60],
    ["token bucket 50/s burst 1 (20 ms window)", tokenBucket({ rate: 50, burst: 1 }), 50, 1],
    ["token bucket 0.5/s (burst 1, 2 s window)", tokenBucket({ rate: 0.5 }), 1, 2],
    ["fixed window 100 per minute", fixedWindow({ limit: 100, window: "1m" }), 100, 60],
    ["sliding log 10 per 1.5 s (rounded up)", slidingWindowLog({ limit: 10, window: 1500 }), 10, 2],
  ])("%s", (_name, policy, quota, windowSeconds) => {
    expect(describePolicy(policy, "default")).toEqual({ name: "default", quota, windowSeconds })
  })

  it("states a calendar window as its length: the one holding now, else a day, a week or 31 days", () => {
    const day = fixedWindow({ limit: 100, window: "day", timeZone: "Europe/Berlin" })
    const week = fixedWindow({ limit: 100, window: "week" })
    const month = fixedWindow({ limit: 100, window: "month" })
    const of = (p: typeof day, now?: number) => describePolicy(p, "q", now).windowSeconds
    expect([of(day), of(week), of(month)]).toEqual([86_400, 604_800, 2_678_400])
    // Berlin's day of the spring change has 23 hours; February 2026 has 28 days.
    expect(of(day, Date.parse("2026-03-29T12:00:00Z"))).toBe(82_800)
    expect(of(day, Date.parse("2026-03-30T12:00:00Z"))).toBe(86_400)
    expect(of(month, Date.parse("2026-02-10T00:00:00Z"))).toBe(28 * 86_400)
    expect(of(week, Date.parse("2026-02-10T00:00:00Z"))).toBe(604_800)
  })

  it("states a concurrency limit in concurrent-requests, without a window", () => {
    expect(describePolicy(concurrency({ limit: 4 }), "c")).toEqual({
      name: "c",
      quota: 4,
      unit: "concurrent-requests",
    })
  })
})

describe("rateLimitPolicyHeader", () => {
  it("writes one item per policy, unit only when not requests", () => {
    expect(
      rateLimitPolicyHeader([
        { name: "burst", quota: 100, windowSeconds: 60 },
        { name: "daily", quota: 1000, windowSeconds: 86400, unit: "requests" },
        { name: "c", quota: 4, unit: "concurrent-requests" },
      ]),
    ).toBe('"burst";q=100;w=60, "daily";q=1000;w=86400, "c";q=4;qu="concurrent-requests"')
  })

  it("escapes names", () => {
    expect(rateLimitPolicyHeader([{ name: 'a"b', quota: 1 }])).toBe('"a\\"b";q=1')
  })
})

describe("rateLimitHeader", () => {
  it("when allowed: remaining and seconds until full, rounded up", () => {
    expect(rateLimitHeader("default", allowed(7, 2500))).toBe('"default";r=7;t=3')
    expect(rateLimitHeader("default", allowed(10, 0))).toBe('"default";r=10;t=0')
  })

  it("when denied: t is the wait, so it never points past Retry-After", () => {
    const d = denied(1200, 60_000)
    expect(rateLimitHeader("default", d)).toBe('"default";r=0;t=2')
    expect(retryAfterHeader(d)).toBe("2")
  })

  it("floors fractional remaining", () => {
    expect(rateLimitHeader("p", allowed(2.9999, 1000))).toBe('"p";r=2;t=1')
  })
})

describe("retryAfterHeader", () => {
  it.each([
    [1, "1"],
    [999, "1"],
    [1000, "1"],
    [1001, "2"],
    [59_000.5, "60"],
    [0, "0"],
  ])("%d ms -> %s s", (ms, text) => {
    expect(retryAfterHeader(denied(ms, ms))).toBe(text)
  })

  it("is undefined for an unknown wait", () => {
    expect(retryAfterHeader(denied(Number.POSITIVE_INFINITY, 0))).toBeUndefined()
    expect(seconds(Number.NaN)).toBeUndefined()
  })
})

describe("legacyRateLimitHeaders", () => {
  it("gives limit, remaining and the Unix second of the reset (rounded up)", () => {
    expect(legacyRateLimitHeaders(allowed(3, 1500), 1_700_000_000_000)).toEqual({
      "X-RateLimit-Limit": "10",
      "X-RateLimit-Remaining": "3",
      "X-RateLimit-Reset": "1700000002",
    })
  })
})
