// A token bucket written under another policy of its prefix, on Redis: limiters (say, a
// fleet midway through a setPolicy rollout) keep its fill fraction; namespaces opened as
// `shared` (a tier's plans, which share one bucket by design) keep the time at which it
// is full again, as the memory store does. Time is the test's manual clock.

import { describe, expect, it } from "vitest"
import { createLimiter, manualClock, RedisStore, tokenBucket } from "../../src/index.js"
import { useRedis } from "../support/redis-hooks.js"

const redis = useRedis()

const NOW = Date.parse("2026-01-01T00:00:00Z")
const perMinute = tokenBucket({ rate: 2000, period: "1m" }) // full in 60 s
const perSecond = tokenBucket({ rate: 100, period: "1s", burst: 5000 }) // full in 50 s

describe("a token bucket written under another policy, on Redis", () => {
  it("keeps its fill fraction for another limiter of the prefix", async () => {
    const store = new RedisStore({ client: redis.client, time: "client" })
    const clock = manualClock(NOW)
    const a = createLimiter({ policy: perMinute, store, clock, prefix: "fleet" })
    const b = createLimiter({ policy: perSecond, store, clock, prefix: "fleet" })
    await a.limit("k", { cost: 1000 }) // half spent
    expect((await b.peek("k")).remaining).toBe(2500)
  })

  it("keeps the time it is full again for namespaces opened as shared", async () => {
    const store = new RedisStore({ client: redis.client, time: "client" })
    const a = store.namespace("plans", perMinute, { shared: true })
    const b = store.namespace("plans", perSecond, { shared: true })
    await a.limit("k", 1000, NOW) // full again in 30 s
    const d = await b.peek("k", NOW)
    expect(d).toMatchObject({ remaining: 2000, resetAfterMs: 30_000 })
  })
})
