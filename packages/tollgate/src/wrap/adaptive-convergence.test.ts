// Acceptance: an adaptive client against an upstream that allows 50 requests per second
// and answers 429 with Retry-After above that. After a warm-up, the client must get
// 80-100% of 50/s through, and fewer than 5% of its calls may be refused. Time is a
// stepping manual clock: three simulated minutes take about a second.

import { describe, expect, it } from "vitest"
import { fixedWindow, type Policy, tokenBucket } from "../core/policy.js"
import {
  describePolicy,
  rateLimitHeader,
  rateLimitPolicyHeader,
  retryAfterHeader,
} from "../http/headers.js"
import { createLimiter } from "../limiter/limiter.js"
import { steppingClock } from "../test-support/stepping-clock.js"
import { throttledFetch } from "./throttled-fetch.js"

const START = Date.parse("2025-01-01T00:00:00Z")
const RATE = 50
const WARMUP_S = 60
const MEASURE_S = 120

interface Run {
  achievedPerSecond: number
  refusedShare: number
  /** admittedBound: the most the upstream can admit in the window (its burst included). */
  admittedBound: number
}

/**
 * simulate runs `workers` callers in a loop, each awaiting its turn, for warm-up plus
 * measurement; the upstream is a tollgate limiter on the same clock answering like an
 * HTTP API would.
 */
async function simulate(
  policy: Policy,
  burst: number,
  draftHeaders: boolean,
  workers = 4,
): Promise<Run> {
  const clock = steppingClock(START)
  const upstream = createLimiter({ policy, clock })
  const log: { at: number; ok: boolean }[] = []
  const fakeFetch = async (_url: string) => {
    const d = upstream.limit("client")
    log.push({ at: clock.now(), ok: d.allowed })
    const headers: Record<string, string> = {}
    if (draftHeaders) {
      headers["RateLimit-Policy"] = rateLimitPolicyHeader([describePolicy(policy, "default")])
      headers.RateLimit = rateLimitHeader("default", d)
    }
    if (!d.allowed) headers["Retry-After"] = retryAfterHeader(d)!
    return new Response(d.allowed ? "ok" : null, { status: d.allowed ? 200 : 429, headers })
  }
  const api = throttledFetch(fakeFetch, { initialRate: 10, minRate: 1, maxRate: 500, clock })
  let running = true
  const loops = Array.from({ length: workers }, async () => {
    while (running) await api("https://upstream.test/item")
  })
  await clock.run((WARMUP_S + MEASURE_S) * 1000)
  running = false
  await clock.run(60_000)
  await Promise.all(loops)
  const from = START + WARMUP_S * 1000
  const to = from + MEASURE_S * 1000
  const measured = log.filter((e) => e.at >= from && e.at < to)
  const admitted = measured.filter((e) => e.ok).length
  return {
    achievedPerSecond: admitted / MEASURE_S,
    refusedShare: (measured.length - admitted) / measured.length,
    admittedBound: (RATE * MEASURE_S + burst) / MEASURE_S,
  }
}

describe("adaptive limiter against a 50 req/s upstream", () => {
  it.each([
    [
      "token bucket 50/s, burst 10, Retry-After only",
      tokenBucket({ rate: RATE, burst: 10 }),
      10,
      false,
    ],
    [
      "fixed window of 50 per second, Retry-After only",
      fixedWindow({ limit: RATE, window: "1s" }),
      0,
      false,
    ],
    [
      "token bucket 50/s, burst 10, with RateLimit headers",
      tokenBucket({ rate: RATE, burst: 10 }),
      10,
      true,
    ],
  ])(
    "%s: 80 to 100 percent of the rate, under 5 percent refused",
    async (_name, policy, burst, draft) => {
      const run = await simulate(policy, burst, draft)
      const report = JSON.stringify(run)
      expect(run.achievedPerSecond, report).toBeGreaterThanOrEqual(0.8 * RATE)
      // 100% of 50/s, plus the upstream's burst spread over the measured window
      expect(run.achievedPerSecond, report).toBeLessThanOrEqual(run.admittedBound)
      expect(run.refusedShare, report).toBeLessThan(0.05)
    },
  )
})
