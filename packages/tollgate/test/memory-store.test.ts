import { describe, expect, it } from "vitest"
import {
  concurrency,
  createLimiter,
  fixedWindow,
  MemoryStore,
  manualClock,
  slidingWindowCounter,
  slidingWindowLog,
  tokenBucket,
} from "../src/index.js"

describe("MemoryStore", () => {
  it("treats prototype names as ordinary keys", () => {
    const limiter = createLimiter({
      policy: tokenBucket({ rate: 1, period: "1h", burst: 2 }),
      clock: manualClock(),
    })
    for (const key of ["__proto__", "constructor", "hasOwnProperty", "toString", "a:b", "{x}"]) {
      expect(limiter.limit(key).allowed).toBe(true)
      expect(limiter.limit(key).allowed).toBe(true)
      expect(limiter.limit(key).allowed, key).toBe(false)
    }
    expect(Object.keys(Object.prototype)).toEqual([])
    expect(limiter.stats().keys).toBe(6)
  })

  it("never answers a dropped key with the state of the key that took its place", () => {
    // A hot key's slot is remembered between calls; reset, eviction and the lazy sweep
    // must all forget it, or the next key placed in that slot would be read for it.
    const store = new MemoryStore({ maxKeys: 1 })
    const limiter = createLimiter({
      policy: tokenBucket({ rate: 1, period: "1h", burst: 3 }),
      store,
      clock: manualClock(),
    })
    expect(limiter.limit("a").remaining).toBe(2)
    expect(limiter.limit("a").remaining).toBe(1)
    expect(limiter.limit("b").remaining).toBe(2) // evicts "a"; "b" takes its slot
    expect(limiter.limit("a").remaining).toBe(2) // a fresh bucket, not b's
    expect(limiter.limit("a").remaining).toBe(1)
    limiter.reset("a")
    expect(store.size).toBe(0)
    expect(limiter.limit("a").remaining).toBe(2)
    expect(store.size).toBe(1)
    expect(limiter.limit("a").remaining).toBe(1)
  })

  it("keeps namespaces apart by prefix and by algorithm", () => {
    const store = new MemoryStore()
    const clock = manualClock()
    const a = createLimiter({
      policy: tokenBucket({ rate: 1, period: "1h", burst: 1 }),
      prefix: "a",
      store,
      clock,
    })
    const b = createLimiter({
      policy: tokenBucket({ rate: 1, period: "1h", burst: 1 }),
      prefix: "b",
      store,
      clock,
    })
    const w = createLimiter({
      policy: fixedWindow({ limit: 1, window: "1h" }),
      prefix: "a",
      store,
      clock,
    })
    expect(a.limit("k").allowed).toBe(true)
    expect(b.limit("k").allowed).toBe(true)
    expect(w.limit("k").allowed).toBe(true)
    expect(a.limit("k").allowed).toBe(false)
    // Same prefix and algorithm share state, as they would on Redis.
    const a2 = createLimiter({
      policy: tokenBucket({ rate: 1, period: "1h", burst: 1 }),
      prefix: "a",
      store,
      clock,
    })
    expect(a2.limit("k").allowed).toBe(false)
  })

  it("drops state that carries no information as new keys arrive", () => {
    const clock = manualClock()
    const store = new MemoryStore()
    const limiter = createLimiter({ policy: tokenBucket({ rate: 10, burst: 10 }), store, clock })
    for (let i = 0; i < 1000; i++) limiter.limit(`k${i}`)
    expect(store.size).toBe(1000)
    clock.advance(1000) // every bucket is full again
    for (let i = 0; i < 1000; i++) limiter.limit(`new${i}`)
    expect(store.size).toBeLessThan(1100)
  })

  it("evicts the least recently used key at maxKeys", () => {
    const clock = manualClock()
    const store = new MemoryStore({ maxKeys: 3 })
    const limiter = createLimiter({
      policy: tokenBucket({ rate: 1, period: "1h", burst: 1 }),
      store,
      clock,
    })
    limiter.limit("a")
    limiter.limit("b")
    limiter.limit("c")
    limiter.limit("a") // a is used again
    limiter.limit("d") // evicts b, the least recently used
    expect(store.size).toBe(3)
    expect(limiter.peek("a").remaining).toBe(0)
    expect(limiter.peek("b").remaining).toBe(1)
    expect(limiter.peek("c").remaining).toBe(0)
    expect(limiter.peek("d").remaining).toBe(0)
  })

  it("evicts in least-recently-used order over a large table", () => {
    const clock = manualClock()
    const store = new MemoryStore({ maxKeys: 1000 })
    const limiter = createLimiter({
      policy: tokenBucket({ rate: 1, period: "1h", burst: 1 }),
      store,
      clock,
    })
    for (let i = 0; i < 1000; i++) limiter.limit(`k${i}`)
    for (let i = 0; i < 100; i++) limiter.limit(`k${i}`) // the oldest hundred are used again
    for (let i = 0; i < 100; i++) limiter.limit(`n${i}`) // evicts k100..k199
    for (let i = 0; i < 100; i++) expect(limiter.peek(`k${i}`).remaining, `k${i}`).toBe(0)
    for (let i = 100; i < 200; i++) expect(limiter.peek(`k${i}`).remaining, `k${i}`).toBe(1)
    for (let i = 200; i < 1000; i++) expect(limiter.peek(`k${i}`).remaining).toBe(0)
  })

  it("rejects bad options with ConfigError", () => {
    expect(() => new MemoryStore({ maxKeys: 0 })).toThrow(
      expect.objectContaining({ code: "ERR_CONFIG" }),
    )
    expect(() => new MemoryStore({ maxKeys: 1.5 })).toThrow(
      expect.objectContaining({ code: "ERR_CONFIG" }),
    )
  })

  it("answers every policy kind synchronously", () => {
    const clock = manualClock()
    for (const policy of [
      tokenBucket({ rate: 1 }),
      slidingWindowLog({ limit: 1, window: "1s" }),
      slidingWindowCounter({ limit: 1, window: "1s" }),
      fixedWindow({ limit: 1, window: "1s" }),
      concurrency({ limit: 1 }),
    ]) {
      const limiter = createLimiter({ policy, clock })
      const d = limiter.limit("k")
      expect(d).not.toBeInstanceOf(Promise)
      expect(d.allowed).toBe(true)
      expect(limiter.limit("k").allowed, policy.kind).toBe(false)
    }
  })

  it("all-or-nothing checks consume every part or none", () => {
    const clock = manualClock()
    const store = new MemoryStore()
    const user = store.namespace("user", tokenBucket({ rate: 1, period: "1h", burst: 5 }))
    const model = store.namespace("model", fixedWindow({ limit: 2, window: "1h" }))
    const check = () =>
      store.limitAll(
        [
          { namespace: user, key: "u", cost: 1 },
          { namespace: model, key: "m", cost: 1 },
        ],
        clock.now(),
      )
    expect(check().map((d) => d.allowed)).toEqual([true, true])
    expect(check().map((d) => d.allowed)).toEqual([true, true])
    expect(check().map((d) => d.allowed)).toEqual([true, false])
    expect(user.peek("u", clock.now()).remaining).toBe(3)
  })

  it("adjust settles an estimate: refunds never fill past full, debt is bounded", () => {
    const clock = manualClock()
    const store = new MemoryStore()
    const ns = store.namespace("t", tokenBucket({ rate: 100, period: "1m", burst: 100 }))
    ns.limit("k", 50, clock.now())
    expect(ns.adjust("k", -20, clock.now()).remaining).toBe(70)
    expect(ns.adjust("k", -1000, clock.now()).remaining).toBe(100)
    ns.adjust("k", 1000, clock.now())
    const d = ns.peek("k", clock.now())
    expect(d.remaining).toBe(0)
    expect(d.resetAfterMs).toBeCloseTo(120_000, 6)
  })

  it("lazy cleanup judges state by the policy in force after setPolicy", () => {
    const clock = manualClock(0)
    const store = new MemoryStore()
    const ns = store.namespace("w", fixedWindow({ limit: 4, window: 7 }))
    ns.setPolicy(fixedWindow({ limit: 4, window: "1d" }), 0)
    clock.set(10)
    ns.limit("a", 2, clock.now())
    for (let i = 0; i < 10; i++) ns.limit(`x${i}`, 1, clock.now())
    expect(ns.peek("a", clock.now()).remaining).toBe(2)
  })
})
