// Sharded budgets on a real 3-master Redis Cluster. Each "client" is a process of its own
// as far as tollgate can tell: its own Cluster connection, RedisStore and limiter. The
// clients share a manual clock (the stores run on client time), so a fixed window or a
// bucket stays put while they drain it: what they admit together can be counted exactly.

import { Cluster, Redis } from "ioredis"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import {
  createLimiter,
  fixedWindow,
  type Limiter,
  type ManualClock,
  manualClock,
  RedisStore,
  type ShardablePolicy,
  type ShardedOptions,
  sharded,
  tokenBucket,
} from "../../src/index.js"
import { shardKeys } from "../../src/scale/sharded-keys.js"
import { encodePart, slotOf, stateKey, TAGS } from "../../src/stores/redis/key-layout.js"
import { keysWithoutTtl, type RedisClusterServers, startCluster } from "../support/redis.js"
import { seeded } from "./sharded-random.js"

const START = 1_700_000_000_000 - (1_700_000_000_000 % 3_600_000) + 60_000

let cluster: RedisClusterServers
const clients: Cluster[] = []
let admin: Redis

beforeAll(async () => {
  cluster = await startCluster(3)
  for (let i = 0; i < 8; i++) {
    const c = new Cluster(cluster.nodes)
    c.on("error", () => {})
    clients.push(c)
  }
  admin = new Redis(cluster.nodes[0])
}, 60_000)

afterAll(async () => {
  for (const c of clients) c.disconnect()
  admin?.disconnect()
  await cluster?.stop()
})

/** fleet: one limiter per client, all on the same policy, prefix and manual clock. */
function fleet(
  policy: ShardablePolicy,
  options: ShardedOptions,
  prefix: string,
  size = clients.length,
): { clock: ManualClock; limiters: Limiter<false>[] } {
  const clock = manualClock(START)
  const limiters = clients.slice(0, size).map(
    (client, i) =>
      createLimiter({
        policy: sharded(policy, { random: seeded(i + 1), ...options }),
        store: new RedisStore({ client, time: "client" }),
        clock,
        prefix,
      }) as Limiter<false>,
  )
  return { clock, limiters }
}

/**
 * round: every limiter sends `inFlight` requests at once, `waves` times; returns the cost
 * admitted and how many were refused while their decision still showed the cost
 * remaining (refused in a race between clients: the false denials).
 */
async function round(
  limiters: Limiter<false>[],
  key: string,
  inFlight: number,
  waves: number,
  cost: () => number,
): Promise<{ admitted: number; raced: number }> {
  let admitted = 0
  let raced = 0
  await Promise.all(
    limiters.map(async (limiter) => {
      for (let w = 0; w < waves; w++) {
        const costs = Array.from({ length: inFlight }, cost)
        const ds = await Promise.all(costs.map((c) => limiter.limit(key, { cost: c })))
        ds.forEach((d, i) => {
          if (d.allowed) admitted += costs[i]
          else if (d.remaining >= costs[i]) raced++
        })
      }
    }),
  )
  return { admitted, raced }
}

/** drainAll: rounds until one admits nothing (the clock moves past the local refusals between rounds). */
async function drainAll(
  limiters: Limiter<false>[],
  clock: ManualClock,
  key: string,
  cost: () => number,
): Promise<{ admitted: number; raced: number; rounds: number }> {
  let admitted = 0
  let raced = 0
  let rounds = 0
  for (;;) {
    rounds++
    const r = await round(limiters, key, 16, 20, rounds === 1 ? cost : () => 1)
    admitted += r.admitted
    raced += r.raced
    clock.advance(100)
    if (r.admitted === 0) return { admitted, raced, rounds }
  }
}

describe("sharded budgets on a 3-master cluster", () => {
  it("puts a key's shards on different slots, one per master", async () => {
    const { limiters } = fleet(fixedWindow({ limit: 30, window: "1h" }), { shards: 3 }, "slots", 1)
    const [limiter] = limiters
    for (const key of ["user:7", "{tenant}", "ключ"]) {
      for (let i = 0; i < 30; i++) await limiter.limit(key)
      const names = shardKeys(key, 3)
      const slots: number[] = []
      const owners = new Set<string>()
      const ranges = await admin.cluster("SLOTS")
      for (const [i, name] of names.entries()) {
        const redisKey = stateKey(
          encodePart(`slots#shard${i}/3`),
          TAGS.fixedWindow,
          encodePart(name),
        )
        const slot = (await admin.cluster("KEYSLOT", redisKey)) as number
        expect(slot).toBe(slotOf(encodePart(name)))
        expect(await clients[0].exists(redisKey)).toBe(1)
        slots.push(slot)
        const owner = ranges.find(([from, to]) => slot >= from && slot <= to)!
        owners.add(`${owner[2][0]}:${owner[2][1]}`)
      }
      expect(new Set(slots).size).toBe(3)
      expect(owners.size).toBe(3)
    }
  })

  it("admits exactly the budget when many clients drain a sharded fixed window", async () => {
    const { clock, limiters } = fleet(
      fixedWindow({ limit: 2000, window: "1h" }),
      { shards: 6 },
      "drain-fw",
    )
    const r = await drainAll(limiters, clock, "hot", () => 1)
    expect(r.admitted).toBe(2000)
    const b = await limiters[0].shardBalance("hot")
    expect(b.level).toBe(0)
    console.log(
      `sharded fixed window, 8 clients x 16 in flight: admitted ${r.admitted} of 2000 in ${r.rounds} rounds; refused in races: ${r.raced}`,
    )
  })

  it("admits exactly the budget when many clients drain a sharded bucket with mixed costs", async () => {
    const { clock, limiters } = fleet(
      tokenBucket({ rate: 1, period: "1d", burst: 1500 }),
      { shards: 5 },
      "drain-tb",
    )
    const random = seeded(99)
    const r = await drainAll(limiters, clock, "hot", () => 1 + Math.floor(random() * 4))
    // Rounds move the clock by 100 ms: the bucket refills a few millionths of a unit.
    expect(r.admitted).toBe(1500)
    console.log(
      `sharded token bucket, costs 1-4: admitted ${r.admitted} of 1500 in ${r.rounds} rounds; refused in races: ${r.raced}`,
    )
  })

  it("rebalances a skewed load back within the threshold, creating no budget", async () => {
    const threshold = 50
    const { clock, limiters } = fleet(
      fixedWindow({ limit: 6000, window: "1h" }),
      // random() == 0: every request picks shards 0 and 1.
      { shards: 6, random: () => 0, rebalance: { threshold, interval: "5ms" } },
      "skew",
      4,
    )
    let admitted = 0
    for (let r = 0; r < 15; r++) {
      admitted += (await round(limiters, "hot", 25, 2, () => 1)).admitted
      clock.advance(10)
    }
    // Without rebalancing shards 0 and 1 (1000 each) would be empty by now.
    expect(admitted).toBe(3000)
    // Rebalances run beside the requests; a cost-0 request notices a drift and starts one.
    let b = await limiters[0].shardBalance("hot")
    for (let i = 0; i < 100 && b.spread > threshold; i++) {
      clock.advance(10)
      await limiters[i % 4].limit("hot", { cost: 0 })
      await new Promise((resolve) => setTimeout(resolve, 20))
      b = await limiters[0].shardBalance("hot")
    }
    expect(b.spread).toBeLessThanOrEqual(threshold)
    // A rebalance may still be between its charges and its refunds: let it finish.
    await new Promise((resolve) => setTimeout(resolve, 200))
    b = await limiters[0].shardBalance("hot")
    expect(b.spread).toBeLessThanOrEqual(threshold)
    expect(admitted + b.level).toBeLessThanOrEqual(6000)
    console.log(
      `skewed load: spread ${b.spread} (threshold ${threshold}), levels ${b.shards.map((s) => s.level).join(" ")}; budget left unused by races: ${6000 - admitted - b.level}`,
    )
    expect(admitted + b.level).toBeGreaterThanOrEqual(6000 - threshold)
  })

  it("shards a hot key adaptively; another client follows; every key has a TTL", async () => {
    const { clock, limiters } = fleet(
      fixedWindow({ limit: 5000, window: "1h" }),
      { shards: 3, adaptive: { above: 100, hold: "30s", recheck: "1s" } },
      "adaptive",
      2,
    )
    const [a, b] = limiters
    let admitted = 0
    if ((await b.limit("hot")).allowed) admitted++
    for (let i = 0; i < 300; i++) {
      clock.advance(2)
      if ((await a.limit("hot")).allowed) admitted++
    }
    expect((await a.shardBalance("hot")).sharded).toBe(true)
    expect((await b.limit("hot")).allowed).toBe(true)
    admitted++
    const balance = await a.shardBalance("hot")
    expect(admitted + balance.level).toBe(5000)
    const ttl = await keysWithoutTtl(cluster.nodes, "adaptive*")
    expect(ttl.scanned).toBeGreaterThanOrEqual(5)
    expect(ttl.missing).toEqual([])
  })
})
