import { describe, expect, it } from "vitest"
import { createLimiter, MemoryStore, StoreError, tokenBucket } from "../src/index.js"
import { FlakyStore } from "./support/flaky-store.js"

const policy = tokenBucket({ rate: 1, period: "1h", burst: 10 })

describe("store failures", () => {
  it("answers through the store while it works, marked as not degraded", async () => {
    const store = new FlakyStore()
    const limiter = createLimiter({ policy, store })
    const d = await limiter.limit("k")
    expect(d.allowed).toBe(true)
    expect(d.degraded).toBeUndefined()
  })

  it("closed: a failure is a StoreError with the cause, never a denial", async () => {
    const store = new FlakyStore()
    store.mode = "fail"
    const limiter = createLimiter({ policy, store })
    const error = await Promise.resolve(limiter.limit("k")).catch((e) => e)
    expect(error).toBeInstanceOf(StoreError)
    expect(error.code).toBe("ERR_STORE")
    expect(error.cause).toBeInstanceOf(Error)
    expect(limiter.stats()).toMatchObject({ storeErrors: 1, allowed: 0, denied: 0 })
  })

  it("open: admits, says so, and counts it", async () => {
    const store = new FlakyStore()
    store.mode = "fail"
    const limiter = createLimiter({ policy, store, onStoreError: "open" })
    const d = await limiter.limit("k")
    expect(d).toMatchObject({ allowed: true, degraded: "open" })
    expect(limiter.stats()).toMatchObject({ failOpen: 1, storeErrors: 1 })
  })

  it("fallback: decides with the fallback store's share of the policy", async () => {
    const store = new FlakyStore()
    store.mode = "fail"
    const limiter = createLimiter({
      policy,
      store,
      onStoreError: { fallback: new MemoryStore(), instances: 5 },
      breaker: false,
    })
    const results = []
    for (let i = 0; i < 5; i++) results.push(await limiter.limit("k"))
    // 10 per hour over 5 instances: 2 each.
    expect(results.map((d) => d.allowed)).toEqual([true, true, false, false, false])
    expect(results.every((d) => d.degraded === "fallback")).toBe(true)
    expect(limiter.stats()).toMatchObject({ fallbacks: 5, storeErrors: 5 })
    store.mode = "ok"
    const back = await limiter.limit("k")
    expect(back.degraded).toBeUndefined()
  })

  it("times out a hung call within the timeout plus a small margin", async () => {
    const store = new FlakyStore()
    store.mode = "hang"
    const limiter = createLimiter({ policy, store, timeout: 100 })
    const started = performance.now()
    const error = await Promise.resolve(limiter.limit("k")).catch((e) => e)
    const took = performance.now() - started
    expect(error).toBeInstanceOf(StoreError)
    expect(error.message).toMatch(/timed out/)
    expect(took).toBeGreaterThanOrEqual(95)
    expect(took).toBeLessThan(1000)
    store.unhang()
  })

  it("opens the circuit after repeated failures, then probes and closes", async () => {
    const store = new FlakyStore()
    store.mode = "fail"
    const limiter = createLimiter({ policy, store, breaker: { failures: 3, cooldown: 50 } })
    for (let i = 0; i < 3; i++) await expect(limiter.limit("k")).rejects.toBeInstanceOf(StoreError)
    expect(store.calls).toBe(3)
    // Open: fails at once without calling the store.
    for (let i = 0; i < 100; i++) await expect(limiter.limit("k")).rejects.toThrow(/circuit open/)
    expect(store.calls).toBe(3)
    store.mode = "ok"
    await new Promise((resolve) => setTimeout(resolve, 80))
    // Half-open: one probe goes through; its success closes the circuit.
    expect((await limiter.limit("k")).allowed).toBe(true)
    expect((await limiter.limit("k")).allowed).toBe(true)
    expect(store.calls).toBe(5)
  })

  it("caps the calls in flight, so a stalled store cannot grow memory without bound", async () => {
    const store = new FlakyStore()
    store.mode = "hang"
    const limiter = createLimiter({
      policy,
      store,
      maxInFlight: 100,
      timeout: 10_000,
      breaker: false,
    })
    const calls = Array.from({ length: 1000 }, () =>
      Promise.resolve(limiter.limit("k")).catch((e) => e),
    )
    const settledEarly = await Promise.race([
      Promise.all(calls.slice(100)),
      new Promise((resolve) => setTimeout(() => resolve("timeout"), 1000)),
    ])
    expect(settledEarly).not.toBe("timeout")
    for (const e of settledEarly as unknown[]) expect(String(e)).toMatch(/maxInFlight/)
    expect(store.calls).toBe(100)
    store.unhang()
    const first = await Promise.all(calls.slice(0, 100))
    expect(first.filter((d) => (d as { allowed?: boolean }).allowed).length).toBe(10)
  })
})
