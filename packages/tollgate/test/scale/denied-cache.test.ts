import { describe, expect, it } from "vitest"
import {
  ConfigError,
  concurrency,
  createLimiter,
  type Decision,
  deniedCache,
  fixedWindow,
  MemoryStore,
  manualClock,
  slidingWindowLog,
  tokenBucket,
} from "../../src/index.js"
import { countingSync } from "../support/counting-store.js"
import { AsyncMemoryStore } from "../tiers/async-store.js"

function setup<P extends Parameters<typeof createLimiter>[0]["policy"]>(policy: P, start = 0) {
  const clock = manualClock(start)
  const counting = countingSync(new MemoryStore())
  const store = deniedCache(counting)
  const limiter = createLimiter({ policy, store, clock })
  // A second limiter straight on the same state: what the store itself would answer.
  const bare = createLimiter({ policy, store: counting.inner as MemoryStore, clock })
  return { clock, counting, store, limiter, bare }
}

describe("deniedCache", () => {
  it("denies a fixed window's exhausted key locally until the window ends", () => {
    const { clock, counting, store, limiter, bare } = setup(fixedWindow({ limit: 3, window: "1s" }))
    for (let i = 0; i < 3; i++) expect(limiter.limit("k").allowed).toBe(true)
    const first = limiter.limit("k")
    expect(first).toMatchObject({ allowed: false, remaining: 0, retryAfterMs: 1000 })
    const asked = counting.count("limit")
    expect(asked).toBe(4)
    const steps = [0, 100, 250, 649]
    for (const [i, ms] of steps.entries()) {
      clock.advance(ms)
      const d = limiter.limit("k")
      expect(d, `step ${i}`).toEqual(bare.limit("k")) // denied there too: nothing consumed
      expect(d, `step ${i}`).toEqual({
        allowed: false,
        limit: 3,
        remaining: 0,
        retryAfterMs: 1000 - clock.now(),
        resetAfterMs: 1000 - clock.now(),
      })
    }
    expect(counting.count("limit")).toBe(asked)
    expect(store.stats()).toMatchObject({ local: steps.length, forwarded: 4, keys: 1 })
    clock.set(1000)
    expect(limiter.limit("k").allowed).toBe(true)
    expect(counting.count("limit")).toBe(asked + 1)
    expect(store.stats().keys).toBe(0)
  })

  it("sends smaller costs to the store and keeps the smallest denied cost", () => {
    const { clock, counting, limiter } = setup(tokenBucket({ rate: 1, period: "1s", burst: 10 }))
    expect(limiter.limit("k", { cost: 8 }).allowed).toBe(true)
    expect(limiter.limit("k", { cost: 5 }).allowed).toBe(false) // store: denied for 3 s
    const calls = () => counting.count("limit")
    expect(calls()).toBe(2)
    expect(limiter.limit("k", { cost: 6 }).allowed).toBe(false) // local
    expect(calls()).toBe(2)
    expect(limiter.limit("k", { cost: 2 }).allowed).toBe(true) // below 5: the store admits
    expect(calls()).toBe(3)
    expect(limiter.limit("k", { cost: 1 }).allowed).toBe(false) // the store denies 1 now
    expect(calls()).toBe(4)
    clock.advance(500)
    expect(limiter.limit("k", { cost: 1 }).allowed).toBe(false) // local: 1 >= 1
    expect(calls()).toBe(4)
    clock.advance(500) // one token back: the cached denial of cost 1 has run out
    expect(limiter.limit("k", { cost: 1 }).allowed).toBe(true)
    expect(calls()).toBe(5)
  })

  it("recomputes a token bucket's denial for a larger cost as the store would", () => {
    const { clock, counting, limiter, bare } = setup(
      tokenBucket({ rate: 10, period: "1s", burst: 20 }),
    )
    expect(limiter.limit("k", { cost: 19 }).allowed).toBe(true)
    expect(limiter.limit("k", { cost: 3 })).toMatchObject({ allowed: false, retryAfterMs: 200 })
    for (const [i, [ms, cost]] of [
      [10, 3],
      [40, 7],
      [33.5, 20],
      [0, 4],
    ].entries()) {
      clock.advance(ms)
      const calls = counting.count("limit")
      const local = limiter.limit("k", { cost })
      expect(counting.count("limit"), `step ${i}: no round trip`).toBe(calls)
      const truth = bare.limit("k", { cost }) // denied too, so nothing consumed
      expect(truth.allowed, `step ${i}`).toBe(false)
      expect(local.allowed).toBe(false)
      expect(local.remaining, `step ${i}`).toBe(truth.remaining)
      expect(local.retryAfterMs, `step ${i}`).toBeCloseTo(truth.retryAfterMs, 9)
      expect(local.resetAfterMs, `step ${i}`).toBeCloseTo(truth.resetAfterMs, 9)
    }
  })

  it("forgets a key on reset, refund, cancel and setPolicy", () => {
    const policy = tokenBucket({ rate: 1, period: "1h", burst: 2 })
    const { counting, store, limiter } = setup(policy)
    const deny = () => {
      while (limiter.limit("k").allowed) {}
      expect(limiter.limit("k").allowed).toBe(false) // answered locally
      expect(store.stats().keys).toBe(1)
    }
    deny()
    limiter.reset("k")
    expect(store.stats().keys).toBe(0)
    expect(limiter.limit("k").allowed).toBe(true)

    deny()
    const ns = store.namespace("tollgate", policy)
    ns.adjust("k", -1, 0)
    expect(store.stats().keys).toBe(0)
    expect(limiter.limit("k").allowed).toBe(true)

    deny()
    ns.cancel("k", 1, 1e9, 0)
    expect(store.stats().keys).toBe(0)

    deny()
    limiter.setPolicy(tokenBucket({ rate: 1, period: "1h", burst: 4 }))
    expect(store.stats().keys).toBe(0)
    const before = counting.count("limit")
    limiter.limit("k")
    expect(counting.count("limit")).toBe(before + 1)
  })

  it("lets another process's reset go unseen until the remembered time (under-admission)", () => {
    const clock = manualClock(0)
    const shared = new MemoryStore()
    const policy = fixedWindow({ limit: 2, window: "10s" })
    const a = createLimiter({ policy, store: deniedCache(shared), clock })
    const b = createLimiter({ policy, store: shared, clock })
    a.limit("k")
    a.limit("k")
    expect(a.limit("k").allowed).toBe(false)
    b.reset("k") // another process: this one's cache cannot know
    clock.advance(1000)
    expect(b.peek("k").remaining).toBe(2)
    expect(a.limit("k").allowed).toBe(false) // the store would have admitted it
    clock.set(10_000)
    expect(a.limit("k").allowed).toBe(true)
  })

  it("sends requests with a requestId to the store, which answers repeats from memory", () => {
    const { counting, limiter } = setup(fixedWindow({ limit: 1, window: "1m" }))
    expect(limiter.limit("k", { requestId: "r1" }).allowed).toBe(true)
    expect(limiter.limit("k").allowed).toBe(false)
    expect(limiter.limit("k").allowed).toBe(false) // local
    const calls = counting.count("limit")
    expect(limiter.limit("k", { requestId: "r1" }).allowed).toBe(true) // the first answer again
    expect(counting.count("limit")).toBe(calls + 1)
  })

  it("caches sliding window log denials too, and passes concurrency limits through", () => {
    const swl = setup(slidingWindowLog({ limit: 2, window: "1s" }))
    swl.limiter.limit("k")
    swl.clock.advance(300)
    swl.limiter.limit("k")
    expect(swl.limiter.limit("k")).toMatchObject({ allowed: false, retryAfterMs: 700 })
    swl.clock.advance(699)
    expect(swl.limiter.limit("k").allowed).toBe(false)
    expect(swl.store.stats().local).toBe(1)
    swl.clock.advance(1)
    expect(swl.limiter.limit("k").allowed).toBe(true)

    const cc = setup(concurrency({ limit: 1 }))
    const lease = cc.limiter.limit("k").lease!
    expect(cc.limiter.limit("k").allowed).toBe(false)
    lease.release()
    expect(cc.limiter.limit("k").allowed).toBe(true) // never answered from a cache
    expect(cc.store.stats()).toMatchObject({ local: 0, keys: 0 })
  })

  it("remembers at most maxKeys denied keys, forgetting the oldest", () => {
    const clock = manualClock(0)
    const counting = countingSync(new MemoryStore())
    const store = deniedCache(counting, { maxKeys: 2 })
    const limiter = createLimiter({ policy: fixedWindow({ limit: 1, window: "1m" }), store, clock })
    for (const key of ["a", "b", "c"]) {
      limiter.limit(key)
      limiter.limit(key)
    }
    expect(store.stats().keys).toBe(2)
    const calls = counting.count("limit")
    limiter.limit("c")
    limiter.limit("b")
    expect(counting.count("limit")).toBe(calls)
    limiter.limit("a") // forgotten: asked again
    expect(counting.count("limit")).toBe(calls + 1)
  })

  it("over an asynchronous store, ignores answers that were in flight across a reset", async () => {
    const clock = manualClock(0)
    const inner = new AsyncMemoryStore()
    const store = deniedCache(inner)
    const limiter = createLimiter({ policy: fixedWindow({ limit: 1, window: "1m" }), store, clock })
    expect((await limiter.limit("k")).allowed).toBe(true)
    const pending = limiter.limit("k")
    await limiter.reset("k")
    expect((await pending).allowed).toBe(false)
    expect(store.stats().keys).toBe(0) // the denial predates the reset: not remembered
    expect((await limiter.limit("k")).allowed).toBe(true)
    expect((await limiter.limit("k")).allowed).toBe(false)
    const calls = inner.calls
    expect((await limiter.limit("k")).allowed).toBe(false)
    expect(inner.calls).toBe(calls)
  })

  it("passes limitAll through to the store", () => {
    const store = deniedCache(new MemoryStore())
    const policy = fixedWindow({ limit: 1, window: "1m" })
    const a = store.namespace("a", policy)
    const b = store.namespace("b", policy)
    const checks = [
      { namespace: a, key: "k", cost: 1 },
      { namespace: b, key: "k", cost: 1 },
    ]
    const all = () => (store.limitAll(checks, 0) as Decision[]).map((d) => d.allowed)
    expect(all()).toEqual([true, true])
    expect(all()).toEqual([false, false])
  })

  it("refuses what is not a store, and bad options", () => {
    expect(() => deniedCache({} as never)).toThrow(ConfigError)
    expect(() => deniedCache(new MemoryStore(), { maxKeys: 0 })).toThrow(/maxKeys/)
    expect(() => deniedCache(new MemoryStore(), { maxKeys: 1.5 })).toThrow(ConfigError)
    expect(() => deniedCache(new MemoryStore(), null as never)).toThrow(ConfigError)
  })
})
