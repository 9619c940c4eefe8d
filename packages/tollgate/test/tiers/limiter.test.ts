import { describe, expect, it } from "vitest"
import {
  ArgumentError,
  createTieredLimiter,
  MemoryStore,
  manualClock,
  StoreError,
  type TieredConfig,
} from "../../src/index.js"
import { AsyncMemoryStore } from "./async-store.js"

const perUser: TieredConfig = {
  tiers: {
    user: { key: ["user"], limit: { limit: 3, window: "1m" } },
    global: { key: [], limit: { limit: 1000, window: "1m" } },
  },
}

describe("createTieredLimiter", () => {
  it("answers directly on a synchronous store and with promises on an asynchronous one", async () => {
    const sync = createTieredLimiter({ ...perUser, clock: manualClock(0) })
    const d = sync.limit({ user: "a" })
    expect(d).not.toBeInstanceOf(Promise)
    expect(d.allowed).toBe(true)
    expect(sync.usage({ user: "a" })).not.toBeInstanceOf(Promise)
    const store = new AsyncMemoryStore()
    const async = createTieredLimiter({ ...perUser, store, clock: manualClock(0) })
    const p = async.limit({ user: "a" })
    expect(p).toBeInstanceOf(Promise)
    expect((await p).allowed).toBe(true)
    // One store call per check, however many tiers.
    expect(store.calls).toBe(1)
  })

  it("allow and deny lists: exact values and prefixes, deny first, nothing counted", () => {
    const g = createTieredLimiter({
      ...perUser,
      clock: manualClock(0),
      allow: ["user:admin", "ip:10.0.*"],
      deny: ["user:mallory", "ip:10.0.66.*"],
    })
    for (let i = 0; i < 5; i++) expect(g.limit({ user: "admin" }).listed).toBe("allow")
    expect(g.usage({ user: "admin" }).tiers.user.used).toBe(0)
    expect(g.limit({ user: "x", ip: "10.0.1.2" })).toMatchObject({ allowed: true, listed: "allow" })
    expect(g.limit({ user: "mallory" })).toMatchObject({
      allowed: false,
      tier: "deny",
      listed: "deny",
      retryAfterMs: Number.POSITIVE_INFINITY,
    })
    expect(g.limit({ user: "admin", ip: "10.0.66.1" }).listed).toBe("deny")
    // "user:admin" is a value, not a prefix.
    expect(g.limit({ user: "administrator" }).listed).toBeUndefined()
    expect(g.usage({ user: "mallory" }).listed).toBe("deny")
    expect(g.stats().listed).toEqual({ allowed: 6, denied: 2 })
  })

  it("a repeated request id is admitted once and counted once, on any instance", () => {
    const store = new MemoryStore()
    const clock = manualClock(0)
    const a = createTieredLimiter({ ...perUser, store, clock, prefix: "gw" })
    const b = createTieredLimiter({ ...perUser, store, clock, prefix: "gw" })
    const first = a.limit({ user: "u" }, { requestId: "req-1" })
    const again = a.limit({ user: "u" }, { requestId: "req-1" })
    expect(again).toMatchObject({ allowed: true, remaining: first.remaining, duplicate: true })
    expect(b.limit({ user: "u" }, { requestId: "req-1" }).duplicate).toBe(true)
    expect(a.usage({ user: "u" }).tiers.user.used).toBe(1)
    // The same id from another user is another request.
    expect(a.limit({ user: "v" }, { requestId: "req-1" }).duplicate).toBeUndefined()
    expect(a.stats()).toMatchObject({ allowed: 3, duplicates: 1 })
    // A denied request is not remembered: its retry is decided afresh.
    a.limit({ user: "u" })
    a.limit({ user: "u" })
    expect(a.limit({ user: "u" }, { requestId: "req-2" }).allowed).toBe(false)
    clock.advance(120_000)
    expect(a.limit({ user: "u" }, { requestId: "req-2" })).toMatchObject({ allowed: true })
  })

  it("a tier whose key field is missing does not apply; bad values are ArgumentErrors", () => {
    const g = createTieredLimiter({
      clock: manualClock(0),
      tiers: {
        user: { key: ["user"], limit: { limit: 1, window: "1m" } },
        tokens: { key: ["user"], budget: "cost", limit: { limit: 100, window: "1m" } },
        tenant: { key: ["tenant"], limit: { limit: 5, window: "1m" } },
      },
      plans: { free: {} },
    })
    expect(Object.keys(g.limit({ tenant: "t" }).tiers)).toEqual(["tenant"])
    expect(Object.keys(g.limit({ user: "u", tenant: null }).tiers)).toEqual(["user", "tokens"])
    expect(() => g.limit({ user: "" })).toThrow(ArgumentError)
    expect(() => g.limit({ user: { id: 1 } } as never)).toThrow(/^request\.user: expected a string/)
    expect(() => g.limit({ user: "u", plan: "gold" })).toThrow(/^request\.plan: expected one of/)
    expect(() => g.limit({ user: "w" }, { cost: 101 })).toThrow(
      /^cost: cost 101 is above tier "tokens"'s limit of 100/,
    )
    expect(() => g.limit({ user: "w" }, { cost: -1 })).toThrow(ArgumentError)
    expect(() => g.limit("user" as never)).toThrow(/^request: expected an object/)
    expect(() => g.limit({ user: "x".repeat(513) })).toThrow(/1 to 512 characters/)
    // Numbers are fine, in their usual decimal form; inherited names are not fields.
    expect(g.limit({ user: 42 }).allowed).toBe(true)
    expect(g.limit({ user: "42" }).allowed).toBe(false)
    expect(Object.keys(g.limit({ constructor: "x", tenant: "t" } as never).tiers)).toEqual([
      "tenant",
    ])
  })

  it("keys of several fields never collide", () => {
    const g = createTieredLimiter({
      clock: manualClock(0),
      tiers: { pair: { key: ["a", "b"], limit: { limit: 1, window: "1h" } } },
    })
    expect(g.limit({ a: "x", b: "yz" }).allowed).toBe(true)
    expect(g.limit({ a: "xy", b: "z" }).allowed).toBe(true)
    expect(g.limit({ a: "1:x", b: "y" }).allowed).toBe(true)
    expect(g.limit({ a: "__proto__", b: "constructor" }).allowed).toBe(true)
    expect(g.limit({ a: "x", b: "yz" }).allowed).toBe(false)
  })

  it("binds to the tier closest to its limit, and on denial to the longest wait", () => {
    const clock = manualClock(0)
    const g = createTieredLimiter({
      clock,
      tiers: {
        burst: { key: ["user"], limit: { rate: 2, period: "1s" } },
        hourly: { key: ["user"], limit: { limit: 10, window: "1h" }, algorithm: "fixedWindow" },
      },
    })
    const u = { user: "u" }
    expect(g.limit(u)).toMatchObject({ limit: 2, remaining: 1 }) // 1/2 left beats 9/10
    g.limit(u)
    for (let i = 0; i < 3; i++) {
      clock.advance(1000)
      g.limit(u)
      g.limit(u)
    }
    clock.advance(1000)
    expect(g.limit(u)).toMatchObject({ allowed: true, limit: 10, remaining: 1 }) // 1/10 beats 1/2
    expect(g.limit(u)).toMatchObject({ allowed: true, remaining: 0 })
    const d = g.limit(u)
    expect(d).toMatchObject({ allowed: false, tier: "hourly", limit: 10 })
    expect(d.retryAfterMs).toBe(3_600_000 - clock.now())
    expect(d.tiers.burst).toMatchObject({ allowed: false, retryAfterMs: 500 })
  })

  it("time never runs backwards: a clock step back grants nothing", () => {
    const clock = manualClock(10 * 3_600_000)
    const g = createTieredLimiter({
      clock,
      tiers: {
        user: { key: ["user"], limit: { limit: 1, window: "1h" }, algorithm: "fixedWindow" },
      },
    })
    expect(g.limit({ user: "u" }).allowed).toBe(true)
    clock.set(5 * 3_600_000)
    expect(g.limit({ user: "u" }).allowed).toBe(false)
    clock.advance(3_600_000)
    expect(g.limit({ user: "u" }).allowed).toBe(true)
  })

  it('onStoreError "closed" throws StoreError with the cause; nothing is counted', async () => {
    const store = new AsyncMemoryStore()
    store.mode = "fail"
    const g = createTieredLimiter({ ...perUser, store, clock: manualClock(0) })
    const error = await Promise.resolve(g.limit({ user: "u" })).catch((e) => e)
    expect(error).toBeInstanceOf(StoreError)
    expect(error.cause).toBeInstanceOf(Error)
    expect(g.stats()).toMatchObject({ allowed: 0, denied: 0, storeErrors: 1 })
    await expect(g.usage({ user: "u" })).rejects.toBeInstanceOf(StoreError)
  })

  it('onStoreError "open" admits and says so', async () => {
    const store = new AsyncMemoryStore()
    store.mode = "fail"
    const g = createTieredLimiter({
      ...perUser,
      store,
      clock: manualClock(0),
      onStoreError: "open",
    })
    const d = await g.limit({ user: "u" })
    expect(d).toMatchObject({ allowed: true, degraded: "open", limit: 3 })
    const r = await g.reserve({ user: "u" }, { cost: 1 })
    await r.settle(5)
    expect(g.stats()).toMatchObject({ failOpen: 2, storeErrors: 2, allowed: 2 })
  })

  it("a fallback store decides with each instance's share while the store is down", async () => {
    const store = new AsyncMemoryStore()
    store.mode = "fail"
    const g = createTieredLimiter({
      tiers: { user: { key: ["user"], limit: { limit: 6, window: "1m" } } },
      store,
      clock: manualClock(0),
      onStoreError: { fallback: new MemoryStore(), instances: 3 },
      breaker: false,
    })
    const results = []
    for (let i = 0; i < 3; i++) results.push(await g.limit({ user: "u" }))
    expect(results.map((d) => d.allowed)).toEqual([true, true, false])
    expect(results.every((d) => d.degraded === "fallback")).toBe(true)
    store.mode = "ok"
    expect((await g.limit({ user: "u" })).degraded).toBeUndefined()
    expect(g.stats()).toMatchObject({ fallbacks: 3, storeErrors: 3 })
  })

  it("no module exports `then`, so a dynamic import is not taken for a promise", async () => {
    const root = await import("../../src/index.js")
    expect("then" in root).toBe(false)
    expect(typeof root.createTieredLimiter).toBe("function")
  })

  it("stats count per tier and in total", () => {
    const g = createTieredLimiter({ ...perUser, clock: manualClock(0) })
    for (let i = 0; i < 5; i++) g.limit({ user: "u" })
    const s = g.stats()
    expect(s).toMatchObject({ allowed: 3, denied: 2, denyRate: 0.4 })
    expect(s.tiers.user).toEqual({
      checked: 5,
      allowed: 3,
      denied: 2,
      shadowDenied: 0,
      denyRate: 0.4,
    })
    expect(s.tiers.global).toMatchObject({ checked: 5, allowed: 3, denied: 0 })
  })
})
