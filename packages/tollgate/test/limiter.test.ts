import { describe, expect, it } from "vitest"
import {
  concurrency,
  createLimiter,
  fixedWindow,
  MemoryStore,
  manualClock,
  type Store,
  slidingWindowCounter,
  slidingWindowLog,
  tokenBucket,
} from "../src/index.js"

describe("limiter", () => {
  it("reports the GCRA decision fields", () => {
    const clock = manualClock(0)
    const limiter = createLimiter({ policy: tokenBucket({ rate: 10, burst: 5 }), clock })
    expect(limiter.limit("k", { cost: 2 })).toEqual({
      allowed: true,
      limit: 5,
      remaining: 3,
      retryAfterMs: 0,
      resetAfterMs: 200,
    })
    expect(limiter.limit("k", { cost: 4 })).toEqual({
      allowed: false,
      limit: 5,
      remaining: 3,
      retryAfterMs: 100,
      resetAfterMs: 200,
    })
  })

  it("peek consumes nothing", () => {
    const clock = manualClock(0)
    const limiter = createLimiter({ policy: slidingWindowLog({ limit: 2, window: "1s" }), clock })
    for (let i = 0; i < 5; i++) expect(limiter.peek("k").remaining).toBe(2)
    limiter.limit("k")
    expect(limiter.peek("k").remaining).toBe(1)
  })

  it("reset forgets the key", () => {
    const limiter = createLimiter({
      policy: fixedWindow({ limit: 1, window: "1h" }),
      clock: manualClock(),
    })
    limiter.limit("k")
    expect(limiter.limit("k").allowed).toBe(false)
    limiter.reset("k")
    expect(limiter.limit("k").allowed).toBe(true)
  })

  it("requestId returns the first decision again and consumes nothing", () => {
    const clock = manualClock(0)
    const limiter = createLimiter({
      policy: tokenBucket({ rate: 1, period: "1h", burst: 3 }),
      clock,
    })
    const first = limiter.limit("k", { requestId: "req-1" })
    expect(first.remaining).toBe(2)
    clock.advance(1000)
    expect(limiter.limit("k", { requestId: "req-1" })).toEqual(first)
    expect(limiter.peek("k").remaining).toBe(2)
    // The same id on another key is another request.
    expect(limiter.limit("other", { requestId: "req-1" }).remaining).toBe(2)
    // After the policy's window (3 h to refill fully) the id is forgotten.
    clock.advance(3 * 3_600_000)
    expect(limiter.limit("k", { requestId: "req-1" }).remaining).toBe(2)
  })

  it("stats count decisions and keys", () => {
    const limiter = createLimiter({
      policy: tokenBucket({ rate: 1, period: "1h", burst: 1 }),
      clock: manualClock(),
    })
    limiter.limit("a")
    limiter.limit("a")
    limiter.limit("b")
    limiter.limit("a")
    expect(limiter.stats()).toMatchObject({
      allowed: 2,
      denied: 2,
      denyRate: 0.5,
      keys: 2,
      storeErrors: 0,
    })
  })

  it("a concurrency lease is released explicitly, by dispose, or by expiry", async () => {
    const clock = manualClock(0)
    const limiter = createLimiter({ policy: concurrency({ limit: 2, leaseTimeout: "10s" }), clock })
    const a = limiter.limit("k")
    const b = limiter.limit("k")
    expect(limiter.limit("k").allowed).toBe(false)
    a.lease!.release()
    a.lease!.release() // idempotent
    expect(limiter.peek("k").remaining).toBe(1)
    {
      using lease = limiter.limit("k").lease!
      expect(lease.cost).toBe(1)
      expect(limiter.peek("k").remaining).toBe(0)
    }
    expect(limiter.peek("k").remaining).toBe(1)
    await b.lease![Symbol.asyncDispose]()
    expect(limiter.peek("k").remaining).toBe(2)
    const c = limiter.limit("k", { cost: 2 })
    expect(c.lease?.expiresAt).toBe(10_000)
    expect(limiter.limit("k").retryAfterMs).toBe(10_000)
    clock.advance(10_000)
    expect(limiter.limit("k").allowed).toBe(true)
  })

  it("sliding window counter weighs the previous window", () => {
    const clock = manualClock(0)
    const limiter = createLimiter({
      policy: slidingWindowCounter({ limit: 10, window: "1s" }),
      clock,
    })
    for (let i = 0; i < 10; i++) expect(limiter.limit("k").allowed).toBe(true)
    expect(limiter.limit("k").allowed).toBe(false)
    clock.advance(1500) // previous window (10) weighs 50%
    expect(limiter.peek("k").remaining).toBe(5)
    const denied = (() => {
      for (let i = 0; i < 5; i++) limiter.limit("k")
      return limiter.limit("k")
    })()
    expect(denied.allowed).toBe(false)
    // 10 * (1 - e/1000) + 5 + 1 <= 10  =>  e >= 600 ms into the window: 100 ms from now.
    expect(denied.retryAfterMs).toBeCloseTo(100, 6)
    clock.advance(100)
    expect(limiter.limit("k").allowed).toBe(true)
  })

  it("durations accept strings", () => {
    expect(tokenBucket({ rate: 5, period: "1m" }).intervalMs).toBe(12_000)
    expect(fixedWindow({ limit: 1, window: "250ms" }).windowMs).toBe(250)
    expect(fixedWindow({ limit: 1, window: "1.5h" }).windowMs).toBe(5_400_000)
    expect(fixedWindow({ limit: 1, window: "1d" }).windowMs).toBe(86_400_000)
  })
  it("answers with promises over an asynchronous store, even when it answers at once", async () => {
    // A store wrapper (local leases, a denied cache) may answer without asking its store.
    const memory = new MemoryStore()
    const store: Store = {
      synchronous: false,
      namespace: (prefix, policy) => memory.namespace(prefix, policy),
      limitAll: (checks, now) => memory.limitAll(checks, now),
    }
    const limiter = createLimiter({
      policy: tokenBucket({ rate: 1, period: "1h", burst: 2 }),
      store,
      clock: manualClock(),
    })
    const limited = limiter.limit("k")
    const peeked = limiter.peek("k")
    const reset = limiter.reset("k")
    expect(limited).toBeInstanceOf(Promise)
    expect(peeked).toBeInstanceOf(Promise)
    expect(reset).toBeInstanceOf(Promise)
    expect((await limited).remaining).toBe(1)
    expect((await peeked).remaining).toBe(1)
    await reset
    expect((await limiter.peek("k")).remaining).toBe(2)
    expect(limiter.stats().allowed).toBe(1)
  })
})
