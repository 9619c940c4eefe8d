// Batching as Redis sees it: the requests of one tick share script calls; a key that
// many of them share is read and written once per call, with the decisions and the
// state (TTL included) that one call each would give; the replay guard's bitmap keeps
// each call's bit for replayWindow with few writes; calls for many Cluster slots go out
// together and each is decided on its own slot.

import { Redis } from "ioredis"
import { describe, expect, it } from "vitest"
import {
  concurrency,
  createLimiter,
  type Decision,
  fixedWindow,
  MemoryStore,
  manualClock,
  type Policy,
  RedisStore,
  slidingWindowCounter,
  slidingWindowLog,
  tokenBucket,
} from "../../src/index.js"
import { keysWithoutTtl } from "../support/redis.js"
import { useCluster, useRedis } from "../support/redis-hooks.js"

const fixture = useRedis()

/** commands: how many times Redis ran each command (scripts' own calls included). */
async function commands(): Promise<Record<string, number>> {
  const info = await fixture.client.info("commandstats")
  const out: Record<string, number> = {}
  for (const m of info.matchAll(/^cmdstat_(\w+):calls=(\d+)/gm)) out[m[1]] = Number(m[2])
  return out
}

function plain(d: Decision): Record<string, unknown> {
  return {
    allowed: d.allowed,
    remaining: d.remaining,
    retryAfterMs: d.retryAfterMs + 0,
    resetAfterMs: d.resetAfterMs + 0,
  }
}

describe("one key shared by a batch", () => {
  it("is read once and written once per script call", async () => {
    const limiter = createLimiter({
      policy: tokenBucket({ rate: 1, period: "1h", burst: 150 }),
      store: new RedisStore({ client: fixture.client, maxBatch: 100 }),
      prefix: "shared",
    })
    await limiter.limit("warm-up") // the function library loaded
    await fixture.client.config("RESETSTAT")
    const decisions = await Promise.all(Array.from({ length: 200 }, () => limiter.limit("hot")))
    const ran = await commands()
    expect(ran.fcall).toBe(2)
    expect(ran.mget).toBe(2)
    expect(ran.get ?? 0).toBe(0)
    expect(ran.set).toBe(2)
    expect(decisions.filter((d) => d.allowed).length).toBe(150)
    expect(decisions.slice(0, 150).map((d) => d.remaining)).toEqual(
      Array.from({ length: 150 }, (_, i) => 149 - i),
    )
    expect(decisions.slice(150).every((d) => !d.allowed)).toBe(true)
  })

  const POLICIES: Policy[] = [
    tokenBucket({ rate: 5, burst: 4 }),
    slidingWindowLog({ limit: 4, window: "1s" }),
    slidingWindowCounter({ limit: 4, window: "1s" }),
    fixedWindow({ limit: 4, window: "1s" }),
    concurrency({ limit: 4, leaseTimeout: "1s" }),
  ]

  for (const policy of POLICIES) {
    it(`${policy.kind}: calls made in one tick at different times decide as the core does, one after another`, async () => {
      // With client time, each request is decided at its own time, also within a call.
      const prefix = `times-${policy.kind}`
      const start = 1_780_000_000_000.25
      const clock = manualClock(start)
      const redis = createLimiter({
        policy,
        clock,
        store: new RedisStore({ client: fixture.client, time: "client" }),
        prefix,
      })
      const memoryClock = manualClock(start)
      const memory = createLimiter({ policy, clock: memoryClock, store: new MemoryStore(), prefix })
      // Two ticks: the second reads what the first wrote.
      const ticks = [
        [0, 50, 0, 130, 0.5, 400, 0, 0, 220, 999, 0, 3000, 10, 0],
        [5, 0, 60, 0, 0, 120, 300, 0.25, 0, 80, 0],
      ]
      let expected: Decision[] = []
      for (const steps of ticks) {
        const pending: Promise<Decision>[] = []
        expected = []
        for (const ms of steps) {
          clock.advance(ms)
          memoryClock.advance(ms)
          pending.push(redis.limit("k", { cost: 1 }))
          expected.push(memory.limit("k", { cost: 1 }))
        }
        const got = await Promise.all(pending)
        expect(got.map(plain)).toEqual(expected.map(plain))
      }
      // The state is written once, at the last request's time: a token bucket's key
      // expires at twice the time until the bucket is full again as of then (client
      // time adds a minute).
      const keys = await fixture.client.keys(`${prefix}:*`)
      expect(keys.length).toBe(1)
      const ttl = await fixture.client.pttl(keys[0])
      if (policy.kind === "tokenBucket") {
        const full = expected[expected.length - 1].resetAfterMs
        expect(ttl).toBeGreaterThan(60_000 + 2 * full - 1000)
        expect(ttl).toBeLessThanOrEqual(60_000 + Math.ceil(2 * full))
      } else {
        expect(ttl).toBeGreaterThan(60_000 - 1000)
        expect(ttl).toBeLessThanOrEqual(60_000 + 2 * policy.windowMs)
      }
    })
  }
})

describe("calls of one tick", () => {
  it("keep their order, a reset among them included", async () => {
    const store = new RedisStore({ client: fixture.client })
    const policy = tokenBucket({ rate: 1, period: "1h", burst: 2 })
    const limiters = ["o1", "o2", "o3", "o4"].map((prefix) =>
      createLimiter({ policy, store, prefix }),
    )
    const [first] = limiters
    await first.limit("warm-up") // scripts loaded
    const before = [first.limit("k"), first.limit("k")]
    const reset = first.reset("k")
    const after = first.limit("k")
    const others = limiters.slice(1).map((l) => l.limit("k"))
    expect((await Promise.all(before)).map((d) => d.remaining)).toEqual([1, 0])
    await reset
    expect(await after).toMatchObject({ allowed: true, remaining: 1 })
    expect((await Promise.all(others)).map((d) => d.remaining)).toEqual([1, 1, 1])
  })

  it("keep their order when one needs a script or the library Redis has not seen yet", async () => {
    // As scripts, limit's is loaded and limit-all's is not: were limit-all sent by SHA1
    // first and again in full after NOSCRIPT, the plain limit behind it would be decided
    // first. As functions, on a server without the library, both follow its FUNCTION LOAD.
    const cases = [
      { functions: false, pipelined: false },
      { functions: false, pipelined: true },
      { functions: true, pipelined: false },
      { functions: true, pipelined: true },
    ]
    for (const { functions, pipelined } of cases) {
      await fixture.client.script("FLUSH")
      await fixture.client.call("FUNCTION", "FLUSH")
      // A client of its own: stores on one client share what its servers were sent.
      const client = new Redis({ host: fixture.server.host, port: fixture.server.port })
      const store = new RedisStore({ client, functions })
      const policy = slidingWindowLog({ limit: 3, window: "1h" })
      const name = `order-${functions}-${pipelined}`
      const ns = store.namespace(name, policy)
      if (!functions) await ns.limit("warm-up", 1, Date.now())
      const now = Date.now()
      // Four or more calls in one flush travel as a pipeline.
      const extra = pipelined
        ? [1, 2, 3].map((i) => store.namespace(`${name}-${i}`, policy).limit("x", 1, now))
        : []
      const all = store.limitAll([{ namespace: ns, key: "k", cost: 3 }], now)
      const one = ns.limit("k", 1, now)
      expect((await all).map((d) => d.allowed)).toEqual([true])
      expect((await one).allowed).toBe(false)
      await Promise.all(extra)
      client.disconnect()
    }
  })
})

describe("the replay guard's bitmap", () => {
  it("keeps every call's bit for replayWindow, and is refreshed only when less is left", async () => {
    const limiter = createLimiter({
      policy: tokenBucket({ rate: 100, burst: 100 }),
      store: new RedisStore({
        client: fixture.client,
        replayWindow: "20s",
        guardPrefix: "guard-ttl",
      }),
      prefix: "guard-ttl",
    })
    await limiter.limit("k")
    const [bitmap] = await fixture.client.keys("guard-ttl:call:*")
    expect(bitmap).toBeDefined()
    // A new bitmap gets the window and a tenth more.
    const first = await fixture.client.pttl(bitmap)
    expect(first).toBeGreaterThan(20_000)
    expect(first).toBeLessThanOrEqual(22_000)
    // As if 3 s had passed: more than the window is left, so a call leaves the TTL alone.
    await fixture.client.pexpire(bitmap, 21_000)
    await limiter.limit("k")
    const kept = await fixture.client.pttl(bitmap)
    expect(kept).toBeGreaterThan(20_000)
    expect(kept).toBeLessThanOrEqual(21_000)
    // As if 5 s more had passed: less than the window is left, so the call refreshes it.
    await fixture.client.pexpire(bitmap, 16_000)
    await limiter.limit("k")
    const refreshed = await fixture.client.pttl(bitmap)
    expect(refreshed).toBeGreaterThan(21_000)
    expect(refreshed).toBeLessThanOrEqual(22_000)
  })
})

describe("many Cluster slots in one tick", () => {
  const cluster = useCluster()

  it("sends them together, each decided on its own slot", async () => {
    const limiter = createLimiter({
      policy: tokenBucket({ rate: 1, period: "1h", burst: 2 }),
      store: new RedisStore({ client: cluster.client }),
      prefix: "slots",
      // A loaded test machine must not turn slow calls into failures.
      timeout: "20s",
    })
    const keys = Array.from({ length: 1500 }, (_, i) => `user:${i}`)
    const decisions = await Promise.all(
      [0, 1, 2].flatMap(() => keys.map((key) => limiter.limit(key))),
    )
    for (let k = 0; k < keys.length; k++) {
      const mine = [0, 1, 2].map((round) => decisions[round * keys.length + k])
      expect(mine.map((d) => d.allowed)).toEqual([true, true, false])
      expect(mine.map((d) => d.remaining)).toEqual([1, 0, 0])
    }
    const { scanned, missing } = await keysWithoutTtl(cluster.servers.nodes, "slots:*")
    expect(scanned).toBe(keys.length)
    expect(missing).toEqual([])
  })
})
