// Sharded budgets on one real redis-server (no Cluster): the same routing, asynchronous.
// Several clients (each its own connection, store and limiter) drain a key together on a
// shared manual clock; a sharded bucket reserves, cancels and waits.

import { Redis } from "ioredis"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import {
  createLimiter,
  fixedWindow,
  type Limiter,
  manualClock,
  RedisStore,
  sharded,
  tokenBucket,
} from "../../src/index.js"
import { type RedisServer, startRedis } from "../support/redis.js"
import { seeded } from "./sharded-random.js"

const START = 1_700_000_000_000 - (1_700_000_000_000 % 3_600_000) + 60_000

let server: RedisServer
const clients: Redis[] = []

beforeAll(async () => {
  server = await startRedis()
  for (let i = 0; i < 4; i++) clients.push(new Redis({ host: server.host, port: server.port }))
})

afterAll(async () => {
  for (const c of clients) c.disconnect()
  await server?.stop()
})

describe("sharded budgets on one redis-server", () => {
  it("admits exactly the budget when four clients drain a key", async () => {
    const clock = manualClock(START)
    const limiters = clients.map(
      (client, i) =>
        createLimiter({
          policy: sharded(fixedWindow({ limit: 500, window: "1h" }), {
            shards: 4,
            random: seeded(i + 1),
          }),
          store: new RedisStore({ client, time: "client" }),
          clock,
          prefix: "single",
        }) as Limiter<false>,
    )
    let admitted = 0
    for (let round = 0; round < 5; round++) {
      const ds = await Promise.all(
        limiters.flatMap((l) => Array.from({ length: 100 }, () => l.limit("hot"))),
      )
      admitted += ds.filter((d) => d.allowed).length
      clock.advance(100)
    }
    expect(admitted).toBe(500)
    expect((await limiters[0].shardBalance("hot")).level).toBe(0)
    expect((await limiters[1].peek("hot")).remaining).toBe(0)
  })

  it("reserves on a drained sharded bucket, cancels, and waits in acquire()", async () => {
    const clock = manualClock(START)
    const limiter = createLimiter({
      policy: sharded(tokenBucket({ rate: 10, burst: 10 }), { shards: 2 }),
      store: new RedisStore({ client: clients[0], time: "client" }),
      clock,
      prefix: "single-reserve",
    }) as Limiter<false>
    for (let i = 0; i < 10; i++) expect((await limiter.limit("k")).allowed).toBe(true)
    const r = await limiter.reserve("k", { cost: 2, maxWait: "1s" })
    expect(r.ok).toBe(true)
    expect(r.delayMs).toBeCloseTo(400, 3)
    const before = (await limiter.shardBalance("k")).level
    await r.cancel()
    expect((await limiter.shardBalance("k")).level).toBeCloseTo(before + 2, 6)
    let done = false
    const waiting = limiter.acquire("k").then((d) => {
      done = true
      return d
    })
    // The store answers in real time; the wait runs on the manual clock: move it along
    // until the waiter is let through.
    let moved = 0
    for (let i = 0; i < 100 && !done; i++) {
      await new Promise((resolve) => setTimeout(resolve, 10))
      clock.advance(25)
      moved += 25
    }
    expect((await waiting).allowed).toBe(true)
    // Both shards are empty again: the first token comes to a shard (5 a second) in 200 ms.
    expect(moved).toBeGreaterThanOrEqual(200)
    expect(moved).toBeLessThanOrEqual(250)
  })
})
