import { describe, expect, it } from "vitest"
import { parseReset, parseRetryAfter, readUpstreamSignals } from "./upstream-signals.js"

const NOW = Date.parse("2025-01-01T00:00:00Z")

describe("parseRetryAfter", () => {
  it("reads delay-seconds and HTTP-dates", () => {
    expect(parseRetryAfter("3", NOW)).toBe(NOW + 3000)
    expect(parseRetryAfter(" 0 ", NOW)).toBe(NOW)
    expect(parseRetryAfter("Wed, 01 Jan 2025 00:00:05 GMT", NOW)).toBe(NOW + 5000)
    // a date in the past means "now"
    expect(parseRetryAfter("Tue, 31 Dec 2024 23:59:00 GMT", NOW)).toBe(NOW)
  })

  it("ignores what it cannot read", () => {
    expect(parseRetryAfter("soon", NOW)).toBeUndefined()
    expect(parseRetryAfter("-5", NOW)).toBeUndefined()
  })
})

describe("parseReset", () => {
  it.each([
    ["2", NOW + 2000],
    ["0.5", NOW + 500],
    ["1s", NOW + 1000],
    ["20ms", NOW + 20],
    ["6m0s", NOW + 360_000],
    ["1h2m3.5s", NOW + 3_723_500],
    [String(NOW / 1000 + 30), NOW + 30_000],
    ["Wed, 01 Jan 2025 00:01:00 GMT", NOW + 60_000],
  ])("%s", (text, at) => {
    expect(parseReset(text, NOW)).toBe(at)
  })

  it("ignores what it cannot read", () => {
    expect(parseReset("later", NOW)).toBeUndefined()
    expect(parseReset("5 minutes", NOW)).toBeUndefined()
  })
})

describe("readUpstreamSignals", () => {
  it("marks 429 and 503 as throttled and reads Retry-After only on them", () => {
    expect(readUpstreamSignals(429, { "retry-after": "2" }, NOW)).toEqual({
      throttled: true,
      retryAt: NOW + 2000,
    })
    expect(readUpstreamSignals(503, new Headers({ "Retry-After": "1" }), NOW).retryAt).toBe(
      NOW + 1000,
    )
    expect(readUpstreamSignals(200, { "retry-after": "2" }, NOW)).toEqual({ throttled: false })
    expect(readUpstreamSignals(500, {}, NOW)).toEqual({ throttled: false })
  })

  it("reads the draft's RateLimit and RateLimit-Policy fields", () => {
    const headers = new Headers({
      "RateLimit-Policy": '"burst";q=100;w=60, "daily";q=1000;w=86400',
      RateLimit: '"burst";r=40;t=30, "daily";r=990;t=3000',
    })
    expect(readUpstreamSignals(200, headers, NOW)).toEqual({
      throttled: false,
      remaining: 40,
      limit: 100,
      resetAt: NOW + 30_000,
      ratePerSecond: 1000 / 86400,
    })
  })

  it("picks the budget closest to running out", () => {
    const headers = {
      "ratelimit-policy": '"a";q=10;w=1, "b";q=1000;w=60',
      ratelimit: '"a";r=9;t=1, "b";r=50;t=40',
    }
    expect(readUpstreamSignals(200, headers, NOW)).toMatchObject({ remaining: 50, limit: 1000 })
  })

  it("counts only request quotas towards the rate", () => {
    const headers = {
      "ratelimit-policy": '"bytes";q=65535;qu="content-bytes";w=10, "req";q=20;w=2',
    }
    expect(readUpstreamSignals(200, headers, NOW).ratePerSecond).toBe(10)
  })

  it("ignores malformed fields as a whole", () => {
    const headers = {
      "ratelimit-policy": '"default";q=100;w=60,',
      ratelimit: "default;r=oops",
    }
    expect(readUpstreamSignals(200, headers, NOW)).toEqual({ throttled: false })
  })

  it("reads x-ratelimit-* families, with suffixes and without", () => {
    const openai = {
      "x-ratelimit-limit-requests": "60",
      "x-ratelimit-remaining-requests": "59",
      "x-ratelimit-reset-requests": "1s",
      "x-ratelimit-limit-tokens": "150000",
      "x-ratelimit-remaining-tokens": "6000",
      "x-ratelimit-reset-tokens": "6m0s",
    }
    expect(readUpstreamSignals(200, openai, NOW)).toMatchObject({
      remaining: 6000,
      limit: 150000,
      resetAt: NOW + 360_000,
    })
    const github = new Headers({
      "X-RateLimit-Limit": "5000",
      "X-RateLimit-Remaining": "0",
      "X-RateLimit-Reset": String(NOW / 1000 + 120),
    })
    expect(readUpstreamSignals(200, github, NOW)).toMatchObject({
      remaining: 0,
      limit: 5000,
      resetAt: NOW + 120_000,
    })
  })

  it("takes node-style header arrays", () => {
    expect(readUpstreamSignals(200, { ratelimit: ['"a";r=1', '"b";r=0;t=5'] }, NOW)).toMatchObject({
      remaining: 0,
      resetAt: NOW + 5000,
    })
  })
})
