// Adaptive sharding on a MemoryStore with a manual clock: a key is one ordinary key until
// this process sees it hot, then its budget moves to shards, other processes (here other
// limiters on the same store) follow through the flag, and it moves back once cold. The
// budget is conserved through every switch.

import { describe, expect, it } from "vitest"
import {
  createLimiter,
  type Decision,
  fixedWindow,
  type Limiter,
  MemoryStore,
  manualClock,
  type ShardablePolicy,
  sharded,
  tokenBucket,
} from "../../src/index.js"
import { flagPolicy } from "../../src/scale/sharded-adaptive.js"
import { seeded } from "./sharded-random.js"

const START = 1_700_000_000_000 - (1_700_000_000_000 % 3_600_000) + 60_000

function fleet(policy: ShardablePolicy, processes = 2) {
  const clock = manualClock(START)
  const store = new MemoryStore()
  const make = (seed: number) =>
    createLimiter({
      policy: sharded(policy, {
        shards: 4,
        adaptive: { above: 50, hold: "10s", recheck: "1s" },
        random: seeded(seed),
      }),
      store,
      clock,
      prefix: "ad",
    })
  const limiters = Array.from({ length: processes }, (_, i) => make(i + 1))
  // The same prefix without sharding: it shares the ordinary keys.
  const plain = createLimiter({ policy, store, clock, prefix: "ad" })
  return { clock, store, limiters, plain }
}

/** level: the key's budget left, wherever it lives now. */
function level(limiter: Limiter<true>, key = "k"): number {
  return limiter.shardBalance(key).level
}

/**
 * intercept is `memory` with `before` run ahead of each `op` call (given its arguments) on
 * the namespaces whose prefix `which` picks.
 */
function intercept(
  memory: MemoryStore,
  which: (prefix: string) => boolean,
  op: string,
  before: (args: unknown[]) => void,
): MemoryStore {
  return new Proxy(memory, {
    get(target, name) {
      if (name !== "namespace") return Reflect.get(target, name)
      return (prefix: string, p: ShardablePolicy) => {
        const ns = target.namespace(prefix, p)
        if (!which(prefix)) return ns
        return new Proxy(ns, {
          get(inner, o) {
            const f = Reflect.get(inner, o)
            if (o !== op) return typeof f === "function" ? f.bind(inner) : f
            return (...args: unknown[]) => {
              before(args)
              return (f as (...a: unknown[]) => unknown).apply(inner, args)
            }
          },
        })
      }
    },
  })
}

/** heated: an adaptive limiter of prefix "ad" on `store`, sent 100 requests 10 ms apart. */
function heated(
  policy: ShardablePolicy,
  store: MemoryStore,
  clock: ReturnType<typeof manualClock>,
) {
  const a = createLimiter({
    policy: sharded(policy, { shards: 4, adaptive: { above: 50, hold: "10s" }, random: seeded(1) }),
    store,
    clock,
    prefix: "ad",
  })
  let admitted = 0
  for (let i = 0; i < 100; i++) {
    clock.advance(10)
    if (a.limit("k").allowed) admitted++
  }
  return { a, admitted }
}

describe("adaptive sharding", () => {
  it("keeps a cold key as one ordinary key, shared with unsharded limiters", () => {
    const { clock, limiters, plain } = fleet(fixedWindow({ limit: 1000, window: "1h" }))
    const [a] = limiters
    for (let i = 0; i < 50; i++) {
      clock.advance(100)
      expect(a.limit("k").allowed).toBe(true)
    }
    expect(a.shardBalance("k")).toMatchObject({ sharded: false, level: 950, shards: [] })
    expect(plain.peek("k").remaining).toBe(950)
  })

  it("shards a key once it is asked more than `above` times a second, keeping its budget", () => {
    const { clock, limiters, plain } = fleet(fixedWindow({ limit: 1000, window: "1h" }))
    const [a] = limiters
    let admitted = 0
    let heatedAt = -1
    for (let i = 0; i < 150; i++) {
      clock.advance(10)
      if (a.limit("k").allowed) admitted++
      const b = a.shardBalance("k")
      if (b.sharded && heatedAt < 0) heatedAt = i
      expect(admitted + b.level).toBe(1000)
    }
    // 100 a second: past 50 at the 51st request.
    expect(heatedAt).toBe(50)
    expect(a.shardBalance("k").shards).toHaveLength(4)
    // The ordinary key is drained while the key is sharded.
    expect(plain.peek("k").remaining).toBe(0)
  })

  it("brings other processes along: refused on the drained key, they find the flag", () => {
    const { clock, limiters } = fleet(fixedWindow({ limit: 1000, window: "1h" }))
    const [a, b] = limiters
    let admitted = 0
    // b uses the key a little, as one ordinary key.
    for (let i = 0; i < 5; i++) if (b.limit("k").allowed) admitted++
    expect(b.shardBalance("k").sharded).toBe(false)
    for (let i = 0; i < 100; i++) {
      clock.advance(10)
      if (a.limit("k").allowed) admitted++
    }
    expect(a.shardBalance("k").sharded).toBe(true)
    // b's next request is refused by the ordinary key, looks, and is served by the shards.
    expect(b.limit("k").allowed).toBe(true)
    admitted++
    expect(admitted + level(a)).toBe(1000)
    // Both drain the rest: exactly the budget in all.
    for (let i = 0; i < 2000; i++) {
      clock.advance(1)
      if ((i % 2 === 0 ? a : b).limit("k").allowed) admitted++
    }
    expect(admitted).toBe(1000)
  })

  it("moves only budget it took: what another process admits meanwhile is not counted twice", () => {
    for (const policy of [
      fixedWindow({ limit: 1000, window: "1h" }),
      tokenBucket({ rate: 1000, period: "1h" }),
    ]) {
      const clock = manualClock(START)
      const memory = new MemoryStore()
      // Another process on the ordinary key (unsharded), admitting 30 requests in the
      // round trips between the heating process's read of the key and its moves.
      const other = createLimiter({ policy, store: memory, clock, prefix: "ad" })
      let interleaved = 0
      let armed = true
      // The shards are read right after the ordinary key, when heating.
      const store = intercept(
        memory,
        (prefix) => prefix.includes("#") && !prefix.endsWith("#hot"),
        "peek",
        () => {
          if (armed) {
            armed = false
            for (let i = 0; i < 30; i++) if (other.limit("k").allowed) interleaved++
          }
        },
      )
      let { a, admitted } = heated(policy, store, clock)
      expect(interleaved).toBe(30)
      expect(a.shardBalance("k").sharded).toBe(true)
      // Drain whatever is left, on the shards and on the ordinary key: at most the budget
      // (and the refill of the second it took, for the bucket) in all.
      for (let i = 0; i < 3000; i++) {
        if (a.limit("k").allowed) admitted++
        if (other.limit("k").allowed) interleaved++
      }
      const refill = policy.kind === "tokenBucket" ? 1 : 0
      expect(admitted + interleaved, policy.kind).toBeLessThanOrEqual(1000 + refill)
      expect(admitted + interleaved, policy.kind).toBeGreaterThanOrEqual(1000 - 30)
    }
  })

  it("takes the level while other processes keep using the key, at an uneven pace", () => {
    // Other processes admit this many between the heating process's reading of the level
    // and each of its takes (a run on a real cluster with busy cores, as recorded). Asking
    // each time for the level shown less a margin grown from the last ask's shortfall,
    // six takes fell short and the key did not heat: the shortfall shrinks as the asks
    // come closer, whatever the pace of the others.
    const pace = [97, 14, 25, 26, 15, 15]
    for (const policy of [
      fixedWindow({ limit: 2000, window: "1h" }),
      tokenBucket({ rate: 1, period: "1h", burst: 2000 }),
    ]) {
      const clock = manualClock(START)
      const memory = new MemoryStore()
      const other = createLimiter({ policy, store: memory, clock, prefix: "ad" })
      let interleaved = 0
      let takes = 0
      const store = intercept(
        memory,
        (prefix) => prefix === "ad",
        "limit",
        ([key, cost]) => {
          // A take asks for more than one request's cost.
          if ((cost as number) > 1 && takes < pace.length) {
            for (let i = 0; i < pace[takes]; i++)
              if (other.limit(key as string).allowed) interleaved++
            takes++
          }
        },
      )
      const { a, admitted } = heated(policy, store, clock)
      expect(a.shardBalance("k").sharded, policy.kind).toBe(true)
      expect(takes, policy.kind).toBeGreaterThan(0)
      const left = a.shardBalance("k").remaining
      expect(admitted + interleaved + left, policy.kind).toBeLessThanOrEqual(2000)
      expect(admitted + interleaved + left, policy.kind).toBeGreaterThanOrEqual(1900)
    }
  })

  it("moves back only what the shards had left: a shard decision landing meanwhile counts once", () => {
    const policy = fixedWindow({ limit: 1000, window: "1h" })
    const clock = manualClock(START)
    // b's clock is 50 ms behind: it still reads the flag as set when it ran out for a.
    const behind = manualClock(START - 50)
    const memory = new MemoryStore()
    const options = { shards: 4, adaptive: { above: 50, hold: "10s", recheck: "1s" } }
    const b = createLimiter({
      policy: sharded(policy, { ...options, random: seeded(2) }),
      store: memory,
      clock: behind,
      prefix: "ad",
    })
    let interleaved = 0
    let armed = false
    // When a starts moving the budget back (its first take from a shard, or its reset of
    // the ordinary key), b admits 20 requests from the shards (fewer than would make it
    // refresh the flag: half of `above` a second).
    const hook = () => {
      if (!armed) return
      armed = false
      for (let i = 0; i < 20; i++) if (b.limit("k").allowed) interleaved++
    }
    const store = new Proxy(memory, {
      get(target, name) {
        if (name !== "namespace") return Reflect.get(target, name)
        return (prefix: string, p: typeof policy) => {
          const ns = target.namespace(prefix, p)
          const watched = prefix === "ad" ? "reset" : prefix.includes("#shard") ? "limit" : ""
          return new Proxy(ns, {
            get(inner, op) {
              const f = Reflect.get(inner, op)
              if (typeof f !== "function") return f
              if (op !== watched) return f.bind(inner)
              return (...args: unknown[]) => {
                hook()
                return (f as (...a: unknown[]) => unknown).apply(inner, args)
              }
            },
          })
        }
      },
    })
    const a = createLimiter({
      policy: sharded(policy, { ...options, random: seeded(1) }),
      store,
      clock,
      prefix: "ad",
    })
    let admitted = 0
    const advance = (ms: number) => {
      clock.advance(ms)
      behind.advance(ms)
    }
    for (let i = 0; i < 100; i++) {
      advance(10)
      if (a.limit("k").allowed) admitted++
    }
    for (let i = 0; i < 5; i++) if (b.limit("k").allowed) interleaved++
    expect(b.shardBalance("k").sharded).toBe(true)
    // The flag (a bucket of one token refilled in `hold`) runs out for a, not yet for b.
    const flag = memory.namespace("ad#hot", flagPolicy(10_000))
    advance((flag.peek("k", clock.now()) as Decision).resetAfterMs + 20)
    armed = true
    if (a.limit("k").allowed) admitted++
    expect(a.shardBalance("k").sharded).toBe(false)
    expect(interleaved).toBe(25)
    // Drain what is left, wherever it is: at most the budget in all.
    for (let i = 0; i < 3000; i++) {
      advance(1)
      if (a.limit("k").allowed) admitted++
      if (b.limit("k").allowed) interleaved++
    }
    expect(admitted + interleaved).toBeLessThanOrEqual(1000)
    expect(admitted + interleaved).toBeGreaterThanOrEqual(1000 - 25)
  })

  it("moves a key back to one ordinary key when no process saw it hot for `hold`", () => {
    const { clock, limiters, plain } = fleet(fixedWindow({ limit: 1000, window: "1h" }))
    const [a, b] = limiters
    let admitted = 0
    for (let i = 0; i < 200; i++) {
      clock.advance(10)
      if (a.limit("k").allowed) admitted++
    }
    if (b.limit("k").allowed) admitted++
    expect(a.shardBalance("k").sharded).toBe(true)
    // Quiet for longer than hold: the flag runs out.
    clock.advance(11_000)
    if (a.limit("k").allowed) admitted++
    expect(a.shardBalance("k")).toMatchObject({ sharded: false, level: 1000 - admitted })
    expect(plain.peek("k").remaining).toBe(1000 - admitted)
    // b, which still knew the key as sharded, finds the flag gone and follows.
    if (b.limit("k").allowed) admitted++
    expect(plain.peek("k").remaining).toBe(1000 - admitted)
    expect(admitted).toBe(203)
  })

  it("keeps a token bucket's ordinary key drained while the key stays hot", () => {
    const policy = tokenBucket({ rate: 100, burst: 100 })
    const { clock, limiters, plain } = fleet(policy)
    const [a] = limiters
    let admitted = 0
    for (let i = 0; i < 100; i++) {
      clock.advance(10)
      if (a.limit("k").allowed) admitted++
    }
    expect(a.shardBalance("k").sharded).toBe(true)
    // Three bucket-refill times later, the ordinary key is still empty: drained again.
    for (let i = 0; i < 300; i++) {
      clock.advance(10)
      if (a.limit("k").allowed) admitted++
      expect(plain.peek("k").remaining).toBe(0)
    }
    // Over the 4 s: no more than the burst plus the refill, and (asked at the refill rate)
    // nearly every request.
    expect(admitted).toBeLessThanOrEqual(100 + 4 * 100)
    expect(admitted).toBeGreaterThanOrEqual(390)
  })

  it("forgets the flag and every shard on reset", () => {
    const { clock, limiters } = fleet(fixedWindow({ limit: 1000, window: "1h" }))
    const [a] = limiters
    for (let i = 0; i < 100; i++) {
      clock.advance(10)
      a.limit("k")
    }
    expect(a.shardBalance("k").sharded).toBe(true)
    a.reset("k")
    expect(a.shardBalance("k")).toMatchObject({ sharded: false, level: 1000 })
  })
})
