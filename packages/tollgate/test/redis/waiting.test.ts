// Waiting over Redis: acquire() keeps arrival order per key (per process) from the moment
// it is called, not from the moment its first store reply arrives, so calls made during
// that round trip queue behind it, as they do over the memory store. Time is the test's
// manual clock (the store decides on the caller's time).

import { describe, expect, it } from "vitest"
import {
  createLimiter,
  fixedWindow,
  flush,
  type Limiter,
  type ManualClock,
  manualClock,
  type Policy,
  RateLimitError,
  RedisStore,
  slidingWindowLog,
} from "../../src/index.js"
import { useRedis } from "../support/redis-hooks.js"

const redis = useRedis()

const START = Date.parse("2026-01-01T00:00:00Z") // a multiple of the 3 s window

/** replied waits until Redis has answered every call the limiter sent before this one. */
async function replied(limiter: Limiter): Promise<void> {
  await new Promise((r) => setImmediate(r))
  await limiter.peek("k")
  await flush()
}

/** retryArmed waits (for Redis's replies, not for time to pass) until the limiter set a timer. */
async function retryArmed(clock: ManualClock): Promise<void> {
  for (let i = 0; i < 400 && clock.pending === 0; i++) await new Promise((r) => setTimeout(r, 5))
  expect(clock.pending).toBe(1)
}

describe.each([
  ["fixed window", fixedWindow({ limit: 2, window: "3s" })],
  ["sliding window log", slidingWindowLog({ limit: 2, window: "3s" })],
] as [string, Policy][])("acquire over RedisStore, %s", (name, policy) => {
  const limiterFor = (prefix: string) => {
    const clock = manualClock(START)
    const store = new RedisStore({ client: redis.client, time: "client" })
    return { clock, limiter: createLimiter({ policy, store, clock, prefix: `${prefix}:${name}` }) }
  }

  it("serves waiters in the order acquire() was called, even before the first store reply", async () => {
    const { clock, limiter } = limiterFor("fifo")
    await limiter.limit("k") // 1 of 2 taken
    const order: string[] = []
    const big = limiter.acquire("k", { cost: 2 }).then(() => order.push("big"))
    const small = limiter.acquire("k", { cost: 1 }).then(() => order.push("small"))
    // Asked while the first waiter's store call is in flight: the waiters go first.
    expect((await limiter.limit("k")).allowed).toBe(false)
    expect(limiter.stats().waiting).toBe(2)
    expect(order).toEqual([])
    await retryArmed(clock) // big's first reply: denied, a retry set for the next window
    clock.advance(3000) // the next window (the log: the first request has slid out)
    await big
    expect(order).toEqual(["big"])
    await retryArmed(clock)
    clock.advance(3000)
    await small
    expect(order).toEqual(["big", "small"])
    expect(limiter.stats()).toMatchObject({ allowed: 3, denied: 1, waiting: 0 })
  })

  it("a first try in flight is not cut off by its deadline: maxWait 0 still takes what is free", async () => {
    const { clock, limiter } = limiterFor("maxwait0")
    const first = limiter.acquire("k", { maxWait: 0 })
    clock.advance(0) // the deadline (now) passes while the store call is in flight
    expect((await first).allowed).toBe(true)
    await limiter.limit("k") // full
    await expect(limiter.acquire("k", { maxWait: 0 })).rejects.toBeInstanceOf(RateLimitError)
    expect(limiter.stats()).toMatchObject({ allowed: 2, denied: 1, waiting: 0 })
  })

  it("a waiter whose first try was denied still gives up at its deadline", async () => {
    const { clock, limiter } = limiterFor("deadline")
    await limiter.limit("k", { cost: 2 })
    const waiting = limiter.acquire("k", { cost: 2, maxWait: "5s" }) // the window turns in 3 s
    await replied(limiter)
    // Another app server takes the next window's capacity first: the retry at 3 s is
    // denied again, and the deadline at 5 s comes before the window after.
    const other = createLimiter({
      policy,
      store: new RedisStore({ client: redis.client, time: "client" }),
      clock: manualClock(START + 3000),
      prefix: `deadline:${name}`,
    })
    expect((await other.limit("k", { cost: 2 })).allowed).toBe(true)
    clock.advance(3000)
    await replied(limiter)
    clock.advance(2000)
    await expect(waiting).rejects.toBeInstanceOf(RateLimitError)
    expect(limiter.stats()).toMatchObject({ waiting: 0 })
  })

  it("refuses at once a first try whose wait would exceed maxWait, leaving the waiter behind it queued", async () => {
    const { limiter } = limiterFor("maxwait")
    await limiter.limit("k", { cost: 2 })
    const refused = limiter.acquire("k", { maxWait: "1s" })
    const patient = limiter.acquire("k", { maxWait: "10s" })
    await expect(refused).rejects.toBeInstanceOf(RateLimitError)
    expect(limiter.stats()).toMatchObject({ denied: 1, waiting: 1 })
    void patient.catch(() => {})
    expect((await limiter.peek("k")).remaining).toBe(0)
  })
})
