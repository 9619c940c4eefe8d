import { describe, expect, it } from "vitest"
import {
  concurrency,
  createLimiter,
  fixedWindow,
  flush,
  manualClock,
  RateLimitError,
  slidingWindowLog,
  tokenBucket,
} from "../src/index.js"

// Records the order in which promises settle.
function track<T>(promises: Promise<T>[]): {
  order: number[]
  all: Promise<PromiseSettledResult<T>[]>
} {
  const order: number[] = []
  promises.forEach((p, i) => {
    p.then(
      () => order.push(i),
      () => order.push(-i - 1),
    )
  })
  return { order, all: Promise.allSettled(promises) }
}

describe("acquire: FIFO waiting", () => {
  it("serves a token bucket's waiters in arrival order under mixed costs", async () => {
    const clock = manualClock(0)
    const limiter = createLimiter({ policy: tokenBucket({ rate: 10, burst: 10 }), clock })
    limiter.limit("k", { cost: 10 })
    const costs = [5, 1, 10, 1, 3, 1]
    const { order, all } = track(costs.map((cost) => limiter.acquire("k", { cost })))
    expect(limiter.stats().waiting).toBe(costs.length)
    clock.advance(10_000)
    await all
    expect(order).toEqual([0, 1, 2, 3, 4, 5])
  })

  it("resolves each token-bucket waiter exactly when its tokens exist", async () => {
    const clock = manualClock(0)
    const limiter = createLimiter({ policy: tokenBucket({ rate: 10, burst: 10 }), clock })
    limiter.limit("k", { cost: 10 })
    const times: number[] = []
    const waits = [5, 1, 10].map((cost) =>
      limiter.acquire("k", { cost }).then(() => times.push(clock.now())),
    )
    for (let t = 0; t < 20; t++) {
      clock.advance(100)
      await flush()
    }
    await Promise.all(waits)
    // 5 tokens take 500 ms, then 1 more 100 ms, then 10 more 1000 ms.
    expect(times).toEqual([500, 600, 1600])
  })

  it("does not starve a large waiter behind a stream of small ones (token bucket)", async () => {
    const clock = manualClock(0)
    const limiter = createLimiter({ policy: tokenBucket({ rate: 10, burst: 50 }), clock })
    limiter.limit("k", { cost: 50 })
    let bigDoneAt = -1
    const big = limiter.acquire("k", { cost: 50 }).then(() => {
      bigDoneAt = clock.now()
    })
    const small: Promise<unknown>[] = []
    let smallAllowedBeforeBig = 0
    for (let i = 0; i < 100; i++) {
      clock.advance(50)
      if (limiter.limit("k").allowed && bigDoneAt < 0) smallAllowedBeforeBig++
      small.push(limiter.acquire("k"))
    }
    await big
    expect(bigDoneAt).toBe(5000)
    expect(smallAllowedBeforeBig).toBe(0)
    clock.advance(60_000)
    await Promise.all(small)
  })

  it("does not starve a large waiter behind a stream of small ones (sliding window log)", async () => {
    const clock = manualClock(0)
    const limiter = createLimiter({ policy: slidingWindowLog({ limit: 50, window: "10s" }), clock })
    for (let i = 0; i < 50; i++) limiter.limit("k")
    const order: string[] = []
    const big = limiter.acquire("k", { cost: 50 }).then(() => order.push("big"))
    const small: Promise<unknown>[] = []
    for (let i = 0; i < 20; i++) {
      clock.advance(100)
      expect(limiter.limit("k").allowed).toBe(false)
      small.push(limiter.acquire("k").then(() => order.push("small")))
    }
    clock.advance(10_000)
    await big
    clock.advance(20_000)
    await Promise.all(small)
    expect(order[0]).toBe("big")
    expect(order.length).toBe(21)
  })

  it("rejects at once with RateLimitError when the wait would exceed maxWait", async () => {
    const clock = manualClock(0)
    const limiter = createLimiter({ policy: tokenBucket({ rate: 1, burst: 1 }), clock })
    limiter.limit("k")
    const error = await limiter.acquire("k", { maxWait: 500 }).catch((e) => e)
    expect(error).toBeInstanceOf(RateLimitError)
    expect(error.code).toBe("ERR_RATE_LIMITED")
    expect(error.retryAfterMs).toBeCloseTo(1000, 6)
    expect(limiter.stats().waiting).toBe(0)
    // Nothing was reserved by the refused call: one second later a request passes.
    clock.advance(1000)
    expect(limiter.limit("k").allowed).toBe(true)
  })

  it("waits within maxWait", async () => {
    const clock = manualClock(0)
    const limiter = createLimiter({ policy: fixedWindow({ limit: 1, window: "1s" }), clock })
    limiter.limit("k")
    const p = limiter.acquire("k", { maxWait: "1s" })
    clock.advance(1000)
    await expect(p).resolves.toMatchObject({ allowed: true })
  })

  it("a window waiter that outlives maxWait in the queue is rejected at its deadline", async () => {
    const clock = manualClock(0)
    const limiter = createLimiter({ policy: fixedWindow({ limit: 1, window: "1s" }), clock })
    limiter.limit("k")
    const first = limiter.acquire("k", { maxWait: "1s" })
    const second = limiter.acquire("k", { maxWait: 300 })
    const result = second.catch((e) => e)
    clock.advance(300)
    expect(await result).toBeInstanceOf(RateLimitError)
    clock.advance(700)
    await expect(first).resolves.toMatchObject({ allowed: true })
  })

  it("abort rejects with the signal's reason and the waiters behind move up", async () => {
    const clock = manualClock(0)
    const limiter = createLimiter({ policy: tokenBucket({ rate: 10, burst: 10 }), clock })
    limiter.limit("k", { cost: 10 })
    const controller = new AbortController()
    const times: number[] = []
    const a = limiter.acquire("k", { cost: 5 }).then(() => times.push(clock.now()))
    const b = limiter.acquire("k", { cost: 5, signal: controller.signal })
    const c = limiter.acquire("k", { cost: 5 }).then(() => times.push(clock.now()))
    const reason = new Error("user went away")
    const bResult = b.catch((e) => e)
    clock.advance(100)
    controller.abort(reason)
    expect(await bResult).toBe(reason)
    for (let t = 0; t < 20; t++) {
      clock.advance(100)
      await flush()
    }
    await Promise.all([a, c])
    // Without b, c needs the 5 tokens after a's: 1000 ms instead of 1500 ms.
    expect(times).toEqual([500, 1000])
    // The first limit and the two served waiters; the aborted one never got through.
    expect(limiter.stats()).toMatchObject({ waiting: 0, allowed: 3, denied: 0 })
  })

  it("a waiter is counted once, when it is served", async () => {
    for (const policy of [
      tokenBucket({ rate: 1, burst: 1 }),
      fixedWindow({ limit: 1, window: "1s" }),
    ]) {
      const clock = manualClock(0)
      const limiter = createLimiter({ policy, clock })
      limiter.limit("k")
      const waiting = limiter.acquire("k")
      expect(limiter.stats()).toMatchObject({ allowed: 1, denied: 0, waiting: 1 })
      clock.advance(1000)
      await flush()
      await waiting
      expect(limiter.stats(), policy.kind).toMatchObject({ allowed: 2, denied: 0, waiting: 0 })
    }
  })

  it("an already aborted signal rejects at once and reserves nothing", async () => {
    const clock = manualClock(0)
    const limiter = createLimiter({ policy: tokenBucket({ rate: 1, burst: 1 }), clock })
    const reason = new Error("stop")
    await expect(limiter.acquire("k", { signal: AbortSignal.abort(reason) })).rejects.toBe(reason)
    expect(limiter.peek("k").remaining).toBe(1)
  })

  it("maxQueue rejects at once when the key's queue is full", async () => {
    const clock = manualClock(0)
    const limiter = createLimiter({
      policy: tokenBucket({ rate: 1, burst: 1 }),
      clock,
      maxQueue: 2,
    })
    limiter.limit("k")
    const a = limiter.acquire("k")
    const b = limiter.acquire("k")
    await expect(limiter.acquire("k")).rejects.toBeInstanceOf(RateLimitError)
    // Another key has its own queue.
    const other = limiter.acquire("other")
    clock.advance(2000)
    await Promise.all([a, b, other])
  })

  it("10,000 waiters across 1,000 keys complete in order per key, with one timer", async () => {
    const clock = manualClock(0)
    const limiter = createLimiter({ policy: tokenBucket({ rate: 100, burst: 1 }), clock })
    const order = new Map<string, number[]>()
    const all: Promise<unknown>[] = []
    for (let i = 0; i < 10_000; i++) {
      const key = `key-${i % 1000}`
      all.push(
        limiter.acquire(key).then(() => {
          const list = order.get(key) ?? []
          order.set(key, list)
          list.push(i)
        }),
      )
    }
    expect(limiter.stats().waiting).toBe(10_000 - 1000)
    expect(clock.pending).toBe(1)
    clock.advance(1000)
    await Promise.all(all)
    expect(order.size).toBe(1000)
    for (const list of order.values()) {
      expect(list.length).toBe(10)
      expect(list).toEqual([...list].sort((x, y) => x - y))
    }
    expect(clock.pending).toBe(0)
  })

  it("a concurrency waiter is admitted when a lease is released", async () => {
    const clock = manualClock(0)
    const limiter = createLimiter({ policy: concurrency({ limit: 1, leaseTimeout: "1h" }), clock })
    const first = limiter.limit("k")
    expect(first.allowed).toBe(true)
    let second: Awaited<ReturnType<typeof limiter.acquire>> | undefined
    const p = limiter.acquire("k").then((d) => {
      second = d
    })
    clock.advance(10)
    await Promise.resolve()
    expect(second).toBeUndefined()
    first.lease!.release()
    await p
    expect(second?.allowed).toBe(true)
    expect(second?.lease).toBeDefined()
  })
})

describe("acquire after setPolicy lowers the limit", () => {
  // Found by the fuzz test: a waiter whose cost the new limit can never hold used to try
  // again at every refill for ever (with a manual clock, advance(1e9) ran for minutes).
  it("rejects a waiter whose cost is now above the limit, and the waiters behind go on", async () => {
    const clock = manualClock(0)
    const limiter = createLimiter({ policy: slidingWindowLog({ limit: 4, window: "1m" }), clock })
    expect(limiter.limit("k").allowed).toBe(true)
    const big = limiter.acquire("k", { cost: 4 })
    const small = limiter.acquire("k", { cost: 1 })
    const bigError = big.catch((e: unknown) => e)
    limiter.setPolicy(tokenBucket({ rate: 2, burst: 3 }))
    // The head tries again once the window's entry would have expired (60 s).
    clock.advance(61_000)
    await flush()
    const error = await Promise.race([bigError, flush().then(() => "still waiting")])
    expect(error).toBeInstanceOf(RateLimitError)
    expect((error as Error).message).toMatch(/cost 4 is above the policy's limit of 3/)
    expect((await small).allowed).toBe(true)
    expect(limiter.stats().waiting).toBe(0)
    expect(clock.pending).toBe(0)
  })
})

describe("reserve", () => {
  it("commits capacity for later and cancel gives it back", async () => {
    const clock = manualClock(0)
    const limiter = createLimiter({ policy: tokenBucket({ rate: 10, burst: 10 }), clock })
    limiter.limit("k", { cost: 10 })
    const r = await limiter.reserve("k", { cost: 5 })
    expect(r.ok).toBe(true)
    expect(r.delayMs).toBeCloseTo(500, 6)
    expect(r.executeAt).toBeCloseTo(500, 6)
    clock.advance(500)
    expect(limiter.limit("k").allowed).toBe(false)
    const r2 = await limiter.reserve("k", { cost: 5 })
    expect(r2.delayMs).toBeCloseTo(500, 6)
    await r2.cancel()
    clock.advance(100)
    expect(limiter.limit("k").allowed).toBe(true)
  })

  it("cancel refunds only what later reservations do not depend on", async () => {
    const clock = manualClock(0)
    const limiter = createLimiter({ policy: tokenBucket({ rate: 10, burst: 10 }), clock })
    limiter.limit("k", { cost: 10 })
    const first = await limiter.reserve("k", { cost: 5 }) // at 500
    const second = await limiter.reserve("k", { cost: 3 }) // at 800
    expect(second.executeAt).toBeCloseTo(800, 6)
    await first.cancel()
    // The later reservation keeps its time (800), so only 2 of the 5 tokens come back:
    // a new request of 3 acts at 900 (a full refund would have let it act at 600).
    const third = await limiter.reserve("k", { cost: 3 })
    expect(third.executeAt).toBeCloseTo(900, 6)
  })

  it("is not ok beyond maxWait and commits nothing", async () => {
    const clock = manualClock(0)
    const limiter = createLimiter({ policy: tokenBucket({ rate: 1, burst: 2 }), clock })
    limiter.limit("k", { cost: 2 })
    const r = await limiter.reserve("k", { cost: 2, maxWait: 1000 })
    expect(r.ok).toBe(false)
    expect(r.delayMs).toBeCloseTo(2000, 6)
    clock.advance(2000)
    expect(limiter.limit("k", { cost: 2 }).allowed).toBe(true)
  })

  it("cancel after executeAt does nothing", async () => {
    const clock = manualClock(0)
    const limiter = createLimiter({ policy: tokenBucket({ rate: 1, burst: 1 }), clock })
    limiter.limit("k")
    const r = await limiter.reserve("k")
    clock.advance(1000)
    await r.cancel()
    expect(limiter.limit("k").allowed).toBe(false)
  })
})
