// limitAll on a Cluster: checks whose keys share a slot are decided by one script; checks
// in different slots are consumed slot by slot and refunded when a later one denies, so
// nothing is admitted beyond any policy, and a refund leaves no capacity behind.

import { Cluster } from "ioredis"
import { beforeAll, describe, expect, it } from "vitest"
import {
  concurrency,
  fixedWindow,
  type Namespace,
  type Policy,
  RedisStore,
  slidingWindowCounter,
  slidingWindowLog,
  tokenBucket,
} from "../../src/index.js"
import { encodePart, slotOf } from "../../src/stores/redis/key-layout.js"
import type { Check } from "../../src/stores/store.js"
import { keysWithoutTtl } from "../support/redis.js"
import { useCluster } from "../support/redis-hooks.js"

const cluster = useCluster()
let store: RedisStore

beforeAll(() => {
  store = new RedisStore({ client: cluster.client })
})

/** keysInDistinctSlots: n user keys starting with `stem`, no two in the same slot. */
function keysInDistinctSlots(stem: string, n: number): string[] {
  const keys: string[] = []
  const slots = new Set<number>()
  for (let i = 0; keys.length < n; i++) {
    const key = `${stem}${i}`
    const slot = slotOf(encodePart(key))
    if (!slots.has(slot)) {
      slots.add(slot)
      keys.push(key)
    }
  }
  return keys
}

const now = () => Date.now()

describe("limitAll on a Cluster", () => {
  const TIERS: Policy[] = [
    tokenBucket({ rate: 1, period: "1h", burst: 2 }),
    slidingWindowLog({ limit: 2, window: "1h" }),
    slidingWindowCounter({ limit: 2, window: "10d" }),
    fixedWindow({ limit: 2, window: "10d" }),
    concurrency({ limit: 2, leaseTimeout: "1h" }),
  ]

  it("refunds every slot consumed before a denial, for every algorithm", async () => {
    const spaces = TIERS.map((p) => store.namespace("cl-refund", p))
    const [first, ...rest] = keysInDistinctSlots("tier", TIERS.length + 1)
    // `blocked` is used up in the fixed window; every other tier gets a fresh key.
    const blocked = store.namespace("cl-refund", fixedWindow({ limit: 1, window: "10d" }))
    expect((await blocked.limit(first, 1, now())).allowed).toBe(true)
    const checks: Check[] = [
      ...spaces.map((namespace, i) => ({ namespace, key: rest[i], cost: 1 })),
      { namespace: blocked, key: first, cost: 1 },
    ]
    const decisions = await store.limitAll(checks, now())
    expect(decisions.map((d) => d.allowed)).toEqual([true, true, true, true, true, false])
    expect(decisions.some((d) => d.lease !== undefined)).toBe(false)
    // Nothing of the consumed tiers is left behind: each is back to full.
    for (const [i, ns] of spaces.entries()) {
      expect((await ns.peek(rest[i], now())).remaining, TIERS[i].kind).toBe(2)
    }
  })

  it("consumes nothing after the slot that denies, and reports what each alone would do", async () => {
    const [a, b] = keysInDistinctSlots("order", 2)
    const small = store.namespace("cl-order", tokenBucket({ rate: 1, period: "1h", burst: 1 }))
    const big = store.namespace("cl-order", slidingWindowLog({ limit: 5, window: "1h" }))
    expect((await small.limit(a, 1, now())).allowed).toBe(true)
    const decisions = await store.limitAll(
      [
        { namespace: small, key: a, cost: 1 },
        { namespace: big, key: b, cost: 2 },
      ],
      now(),
    )
    expect(decisions.map((d) => d.allowed)).toEqual([false, true])
    expect(decisions[1].remaining).toBe(3) // a probe: what it would leave if consumed
    expect((await big.peek(b, now())).remaining).toBe(5)
  })

  it("admits all and hands out leases when every slot allows", async () => {
    const [a, b, c] = keysInDistinctSlots("all", 3)
    const bucket = store.namespace("cl-all", tokenBucket({ rate: 1, period: "1h", burst: 3 }))
    const leases = store.namespace("cl-all", concurrency({ limit: 3, leaseTimeout: "1h" }))
    const windowed = store.namespace("cl-all", fixedWindow({ limit: 3, window: "10d" }))
    const decisions = await store.limitAll(
      [
        { namespace: bucket, key: a, cost: 2 },
        { namespace: leases, key: b, cost: 1 },
        { namespace: windowed, key: c, cost: 3 },
      ],
      now(),
    )
    expect(decisions.map((d) => [d.allowed, d.remaining])).toEqual([
      [true, 1],
      [true, 2],
      [true, 0],
    ])
    expect(decisions[1].lease?.key).toBe(b)
    await leases.release(b, decisions[1].lease!.id, now())
    expect((await leases.peek(b, now())).remaining).toBe(3)
  })

  it("decides checks of one user key in one script, atomically", async () => {
    const bucket = store.namespace("cl-same", tokenBucket({ rate: 1, period: "1h", burst: 1 }))
    const log = store.namespace("cl-same", slidingWindowLog({ limit: 1, window: "1h" }))
    const decisions = await Promise.all(
      Array.from({ length: 20 }, () =>
        store.limitAll(
          [
            { namespace: bucket, key: "same", cost: 1 },
            { namespace: log, key: "same", cost: 1 },
          ],
          now(),
        ),
      ),
    )
    expect(decisions.filter((ds) => ds.every((d) => d.allowed)).length).toBe(1)
    expect(
      decisions.filter((ds) => ds.some((d) => d.allowed) && !ds.every((d) => d.allowed)),
    ).toEqual([])
  })

  it("never over-admits under concurrent cross-slot checks, and leaks no capacity", async () => {
    const [x, y] = keysInDistinctSlots("race", 2)
    const connections = Array.from({ length: 16 }, () => new Cluster(cluster.servers.nodes))
    try {
      const stores = connections.map((c) => new RedisStore({ client: c }))
      const tiers = (s: RedisStore): Namespace[] => [
        s.namespace("cl-race", tokenBucket({ rate: 1, period: "1h", burst: 50 })),
        s.namespace("cl-race", fixedWindow({ limit: 30, window: "10d" })),
      ]
      const results = await Promise.all(
        Array.from({ length: 400 }, (_, i) => {
          const s = stores[i % stores.length]
          const [bucket, windowed] = tiers(s)
          return s.limitAll(
            [
              { namespace: bucket, key: x, cost: 1 },
              { namespace: windowed, key: y, cost: 1 },
            ],
            now(),
          )
        }),
      )
      const admitted = results.filter((ds) => ds.every((d) => d.allowed)).length
      expect(admitted).toBeGreaterThan(0)
      expect(admitted).toBeLessThanOrEqual(30)
      // After the refunds, each tier holds exactly what was admitted.
      const [bucket, windowed] = tiers(store)
      expect((await bucket.peek(x, now())).remaining).toBe(50 - admitted)
      expect((await windowed.peek(y, now())).remaining).toBe(30 - admitted)
    } finally {
      for (const c of connections) c.disconnect()
    }
  })

  it("leaves no key without a TTL on any master", async () => {
    const { scanned, missing } = await keysWithoutTtl(cluster.servers.nodes, "cl-*")
    expect(scanned).toBeGreaterThan(5)
    expect(missing).toEqual([])
  })
})
