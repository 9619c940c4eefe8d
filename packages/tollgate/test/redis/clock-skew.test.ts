// Clock skew: app servers whose clocks disagree by +-2 s share one limit exactly, because
// the scripts decide on Redis's clock; the times handed back (reservations, leases) are
// in each caller's own clock. The counter-test shows the same traffic deciding on the
// callers' clocks over-admits. A refill takes 2 s, far longer than the test runs.

import { Redis } from "ioredis"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import {
  concurrency,
  createLimiter,
  fixedWindow,
  type Limiter,
  manualClock,
  type Policy,
  RedisStore,
  slidingWindowCounter,
  slidingWindowLog,
  tokenBucket,
} from "../../src/index.js"
import { keysWithoutTtl, type RedisServer, startRedis } from "../support/redis.js"

const SKEWS = [-2000, 0, 2000]

let server: RedisServer
let clients: Redis[]

beforeAll(async () => {
  server = await startRedis()
  clients = SKEWS.map(() => new Redis({ host: server.host, port: server.port }))
})

afterAll(async () => {
  for (const c of clients ?? []) c.disconnect()
  await server?.stop()
})

/** skewed: one limiter per app server, each with its own connection and a clock off by its skew. */
function skewed(policy: Policy, prefix: string, time: "server" | "client" = "server") {
  const base = Date.now()
  return SKEWS.map((skew, i) => {
    const clock = manualClock(base + skew)
    const store = new RedisStore({ client: clients[i], time })
    return { clock, limiter: createLimiter({ policy, store, prefix, clock }) as Limiter<false> }
  })
}

async function admitted(limiters: { limiter: Limiter<false> }[], each: number): Promise<number> {
  let count = 0
  // Each server in turn, then all at once.
  for (const { limiter } of limiters) {
    for (let i = 0; i < each; i++) if ((await limiter.limit("k")).allowed) count++
  }
  const together = await Promise.all(
    limiters.flatMap(({ limiter }) => Array.from({ length: each }, () => limiter.limit("k"))),
  )
  return count + together.filter((d) => d.allowed).length
}

describe("clock skew between app servers", () => {
  const policies: Policy[] = [
    tokenBucket({ rate: 1, period: "2s", burst: 10 }),
    slidingWindowLog({ limit: 10, window: "2s" }),
    slidingWindowCounter({ limit: 10, window: "1h" }),
    fixedWindow({ limit: 10, window: "10d" }),
    concurrency({ limit: 10, leaseTimeout: "1h" }),
  ]
  for (const policy of policies) {
    it(`${policy.kind}: +-2 s apart, one limit exactly`, async () => {
      expect(await admitted(skewed(policy, `skew-${policy.kind}`), 10)).toBe(10)
    })
  }

  it("deciding on the callers' clocks instead would over-admit (why server time is the default)", async () => {
    const policy = tokenBucket({ rate: 1, period: "2s", burst: 10 })
    // -2 s takes all 10; at 0 the bucket looks 2 s (one token) fuller, at +2 s again.
    expect(await admitted(skewed(policy, "skew-client", "client"), 10)).toBe(12)
  })

  it("hands back reservation and lease times in each caller's own clock", async () => {
    const bucket = skewed(tokenBucket({ rate: 1, period: "1s", burst: 1 }), "skew-times")
    const delays: number[] = []
    for (const { clock, limiter } of bucket) {
      const r = await limiter.reserve("k")
      expect(r.ok).toBe(true)
      expect(r.executeAt - clock.now()).toBeCloseTo(r.delayMs, 6)
      delays.push(r.delayMs)
    }
    // One token a second, one in the bucket: 0, ~1 s, ~2 s, whatever each clock says.
    expect(delays[0]).toBe(0)
    expect(delays[1]).toBeGreaterThan(900)
    expect(delays[2]).toBeGreaterThan(1900)
    const leases = skewed(concurrency({ limit: 3, leaseTimeout: "30s" }), "skew-leases")
    for (const { clock, limiter } of leases) {
      const d = await limiter.limit("k")
      expect(d.lease!.expiresAt - clock.now()).toBeCloseTo(30_000, 6)
    }
  })

  it("leaves no key without a TTL", async () => {
    const { scanned, missing } = await keysWithoutTtl([server], "skew-*")
    expect(scanned).toBeGreaterThan(5)
    expect(missing).toEqual([])
  })
})
