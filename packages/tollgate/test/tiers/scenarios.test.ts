// The tiered limiter's scenarios, run on every store in STORES: the AI-gateway case from
// the issue, all-or-nothing under concurrency, shadow mode, penalties, calendar quotas,
// estimate-then-settle and runtime plan changes.

import { afterAll, beforeAll, describe, expect, it } from "vitest"
import {
  createTieredLimiter,
  type ManualClock,
  manualClock,
  type TieredConfig,
  type TieredLimiter,
} from "../../src/index.js"
import { prefix, STORES } from "./stores.js"

const MINUTE = 60_000

/** The gateway of the issue: free and premium plans, a high-cost model class, tenant acme. */
const gatewayConfig: TieredConfig = {
  tiers: {
    userModel: { key: ["user", "model"] },
    tokens: { key: ["user"], budget: "cost" },
    modelClass: { key: ["modelClass"] },
  },
  plans: {
    free: {
      limits: {
        userModel: { limit: 100, window: "1h" },
        tokens: { limit: 20_000, window: "1m" },
      },
    },
    premium: {
      limits: {
        userModel: { limit: 1000, window: "1h" },
        tokens: { limit: 100_000, window: "1m" },
      },
    },
    internal: { limits: { userModel: "unlimited", tokens: "unlimited" } },
  },
  modelClasses: { "high-cost": { limits: { modelClass: { limit: 10, window: "1m" } } } },
  models: { "big-1": { class: "high-cost" }, "big-2": { class: "high-cost" }, "small-1": {} },
  tenants: {
    acme: { plan: "premium", overrides: { tokens: { limit: 250_000, window: "1m" } } },
    globex: { plan: "premium" },
  },
  defaultPlan: "free",
}

describe.each(STORES)("tiered limiter on $name", (store) => {
  beforeAll(() => store.start(), 60_000)
  afterAll(() => store.stop())

  let clock: ManualClock
  const gateway = (config: TieredConfig, start = Date.UTC(2026, 0, 5, 9)): TieredLimiter => {
    clock = manualClock(start)
    // A generous store timeout: a loaded test machine must not turn slow calls into failures.
    return createTieredLimiter({
      ...config,
      store: store.store(),
      prefix: prefix(),
      clock,
      timeout: "20s",
    })
  }

  describe("the AI gateway", () => {
    it("denies the 101st free request in an hour, naming the per-user tier", async () => {
      const g = gateway(gatewayConfig)
      const alice = { user: "alice", model: "small-1" }
      for (let i = 0; i < 100; i++) {
        expect((await g.limit(alice)).allowed, `request ${i + 1}`).toBe(true)
      }
      const d = await g.limit(alice)
      expect(d).toMatchObject({ allowed: false, tier: "userModel", limit: 100, remaining: 0 })
      expect(d.retryAfterMs).toBeGreaterThan(0)
      expect(d.tiers.userModel.allowed).toBe(false)
      expect(d.tiers.tokens.allowed).toBe(true)
      // The denied request was counted nowhere: 100 tokens (cost 1 each), not 101.
      expect((await g.usage(alice)).tiers.tokens.used).toBe(100)
      // Another model has its own count; the per-user token budget is shared.
      expect((await g.limit({ user: "alice", model: "small-2" })).allowed).toBe(true)
      clock.advance(d.retryAfterMs)
      expect((await g.limit(alice)).allowed).toBe(true)
    })

    it("gives premium 1,000 per hour, and acme's override its token budget", async () => {
      const g = gateway(gatewayConfig)
      const bob = { user: "bob", tenant: "acme", model: "small-1" }
      const u = await g.usage(bob)
      expect(u.plan).toBe("premium")
      expect(u.tiers.userModel.limit).toBe(1000)
      expect(u.tiers.tokens.limit).toBe(250_000)
      let admitted = 0
      for (let i = 0; i < 1001; i++) if ((await g.limit(bob)).allowed) admitted++
      expect(admitted).toBe(1000)
      // A request's own plan wins over the tenant's.
      expect((await g.usage({ ...bob, plan: "free" })).tiers.userModel.limit).toBe(100)
    })

    it("a denial at the model-class tier charges no user tier", async () => {
      const g = gateway(gatewayConfig)
      for (let i = 0; i < 10; i++) {
        const d = await g.limit(
          { user: `u${i}`, model: i % 2 === 0 ? "big-1" : "big-2" },
          { cost: 500 },
        )
        expect(d.allowed, `user ${i}`).toBe(true)
      }
      const late = { user: "late", model: "big-1" }
      const d = await g.limit(late, { cost: 500 })
      expect(d).toMatchObject({ allowed: false, tier: "modelClass" })
      expect(d.tiers.userModel.allowed).toBe(true)
      expect(d.tiers.tokens.allowed).toBe(true)
      const u = await g.usage(late)
      expect(u.modelClass).toBe("high-cost")
      expect(u.tiers.userModel.used).toBe(0)
      expect(u.tiers.tokens.used).toBe(0)
      expect(u.tiers.modelClass.used).toBe(10)
      // The class is shared by its models; unclassified models are not limited by it.
      expect((await g.limit({ user: "u0", model: "big-2" })).tier).toBe("modelClass")
      expect((await g.limit({ user: "late", model: "small-1" })).allowed).toBe(true)
      clock.advance(2 * MINUTE)
      expect((await g.limit(late, { cost: 500 })).allowed).toBe(true)
    })

    it("estimate 1,000 tokens, settle 400: 600 are back; settle is idempotent", async () => {
      const g = gateway(gatewayConfig)
      const carol = { user: "carol", model: "small-1" }
      const r = await g.reserve(carol, { cost: 1000 })
      expect(r.ok).toBe(true)
      expect((await g.usage(carol)).tiers.tokens.remaining).toBe(19_000)
      await r.settle(400)
      expect((await g.usage(carol)).tiers.tokens.remaining).toBe(19_600)
      await r.settle(400)
      await r.settle(50)
      await r.cancel()
      const u = await g.usage(carol)
      expect(u.tiers.tokens.remaining).toBe(19_600)
      // The request itself stays counted once in the request tier.
      expect(u.tiers.userModel.used).toBe(1)
    })

    it("cancel gives back the estimate and the request; a low estimate goes into bounded debt", async () => {
      const g = gateway(gatewayConfig)
      const dave = { user: "dave", model: "small-1" }
      const r = await g.reserve(dave, { cost: 5000 })
      await r.cancel()
      await r.settle(100)
      let u = await g.usage(dave)
      expect(u.tiers.tokens.used).toBe(0)
      expect(u.tiers.userModel.used).toBe(0)
      // The real cost was far above the estimate: the key goes into debt (at most 2x).
      const low = await g.reserve(dave, { cost: 1000 })
      await low.settle(90_000)
      u = await g.usage(dave)
      expect(u.tiers.tokens.remaining).toBe(0)
      const d = await g.limit(dave, { cost: 1 })
      expect(d).toMatchObject({ allowed: false, tier: "tokens" })
      // Debt is bounded at one more budget: the window after next is clear again.
      clock.advance(2 * MINUTE)
      expect((await g.limit(dave, { cost: 1 })).allowed).toBe(true)
    })

    it("a denied reservation charges nothing, and settling it does nothing", async () => {
      const g = gateway(gatewayConfig)
      const erin = { user: "erin", model: "small-1" }
      expect((await g.limit(erin, { cost: 19_500 })).allowed).toBe(true)
      const r = await g.reserve(erin, { cost: 1000 })
      expect(r.ok).toBe(false)
      expect(r.decision.tier).toBe("tokens")
      await r.settle(0)
      await r.cancel()
      const u = await g.usage(erin)
      expect(u.tiers.tokens.used).toBe(19_500)
      expect(u.tiers.userModel.used).toBe(1)
    })

    it("the internal plan skips its unlimited tiers but not the model class", async () => {
      const g = gateway(gatewayConfig)
      const ops = { user: "ops", model: "small-1", plan: "internal" }
      for (let i = 0; i < 150; i++) expect((await g.limit(ops, { cost: 5000 })).allowed).toBe(true)
      const d = await g.limit(ops)
      expect(Object.keys(d.tiers)).toEqual([])
      expect(d.limit).toBe(Number.POSITIVE_INFINITY)
      const big = await g.limit({ ...ops, model: "big-1" })
      expect(Object.keys(big.tiers)).toEqual(["modelClass"])
    })

    it("moving a tenant to another plan at runtime keeps what its users have used", async () => {
      const g = gateway(gatewayConfig)
      const frank = { user: "frank", tenant: "globex", model: "small-1" }
      for (let i = 0; i < 150; i++) expect((await g.limit(frank)).allowed).toBe(true)
      g.setConfig({ ...gatewayConfig, tenants: { globex: { plan: "free" } } })
      const d = await g.limit(frank)
      expect(d).toMatchObject({ allowed: false, tier: "userModel", limit: 100 })
      g.setConfig(gatewayConfig)
      expect((await g.limit(frank)).allowed).toBe(true)
      expect((await g.usage(frank)).tiers.userModel.used).toBe(151)
    })

    it("a token-bucket tier carries the time its bucket is full again across plans of different refill times", async () => {
      // free: 2,000 tokens a minute (full in 60 s); pro: 100 a second, bursts of 5,000
      // (full in 50 s). 1,000 spent on free leaves the bucket full again in 30 s: on pro
      // that is 20 s of its 50, 2,000 tokens, less the one this request takes.
      const g = gateway({
        tiers: { tokens: { key: ["user"], budget: "cost" } },
        plans: {
          free: { limits: { tokens: { limit: 2000, window: "1m" } } },
          pro: { limits: { tokens: { rate: 100, period: "1s", burst: 5000 } } },
        },
        defaultPlan: "free",
      })
      expect((await g.limit({ user: "zed" }, { cost: 1000 })).tiers.tokens.remaining).toBe(1000)
      const pro = await g.limit({ user: "zed", plan: "pro" }, { cost: 1 })
      expect(pro.tiers.tokens).toMatchObject({ remaining: 1999, resetAfterMs: 30_010 })
      // and back: 30.01 s to full is 1,000.33 tokens spent of free's 2,000
      expect((await g.usage({ user: "zed" })).tiers.tokens.remaining).toBe(999)
    })

    it("reset forgets a principal in the tiers its fields key", async () => {
      const g = gateway(gatewayConfig)
      const gina = { user: "gina", model: "small-1" }
      for (let i = 0; i < 5; i++) await g.limit(gina, { cost: 100 })
      expect(await g.reset({ user: "gina" })).toEqual(["tokens"])
      let u = await g.usage(gina)
      expect(u.tiers.tokens.used).toBe(0)
      expect(u.tiers.userModel.used).toBe(5)
      expect(await g.reset({ user: "gina", model: "small-1" })).toEqual(["userModel", "tokens"])
      u = await g.usage(gina)
      expect(u.tiers.userModel.used).toBe(0)
    })
  })

  describe("all or nothing", () => {
    const twoTiers = (order: "pool first" | "user first"): TieredConfig => {
      const pool = { key: [], limit: { limit: 1000, window: "1h" } }
      const user = { key: ["user"], limit: { limit: 1, window: "1h" } }
      return { tiers: order === "pool first" ? { pool, user } : { user, pool } }
    }

    for (const order of ["pool first", "user first"] as const) {
      it(`50 concurrent clients that pass one tier and fail another leave the first unchanged (${order})`, async () => {
        const g = gateway(twoTiers(order))
        const clients = Array.from({ length: 50 }, (_, i) => ({ user: `c${i}` }))
        for (const c of clients) expect((await g.limit(c)).allowed).toBe(true)
        expect((await g.usage({ user: "c0" })).tiers.pool.used).toBe(50)
        const burst = await Promise.all(
          clients.flatMap((c) => Array.from({ length: 5 }, () => g.limit(c))),
        )
        expect(burst.every((d) => !d.allowed && d.tier === "user")).toBe(true)
        expect((await g.usage({ user: "c0" })).tiers.pool.used).toBe(50)
        expect(g.stats().tiers.pool).toMatchObject({ checked: 300, allowed: 50, denied: 0 })
        expect(g.stats().tiers.user).toMatchObject({ checked: 300, allowed: 50, denied: 250 })
      })
    }

    it("under contention, the shared tier counts exactly the admitted requests", async () => {
      const g = gateway({
        tiers: {
          pool: { key: [], limit: { limit: 100, window: "1h" } },
          user: { key: ["user"], limit: { limit: 3, window: "1h" } },
        },
      })
      const results = await Promise.all(
        Array.from({ length: 50 }, (_, i) =>
          Promise.all(Array.from({ length: 5 }, () => g.limit({ user: `c${i}` }))),
        ),
      )
      const admitted = results.flat().filter((d) => d.allowed).length
      // Across Cluster slots a check holds capacity in one slot while the next decides, and
      // gives it back if that one denies: meanwhile others may be turned away (transient
      // under-admission), never admitted beyond the limit.
      if (store.atomic) expect(admitted).toBe(100)
      expect(admitted).toBeLessThanOrEqual(100)
      for (const perClient of results) {
        expect(perClient.filter((d) => d.allowed).length).toBeLessThanOrEqual(3)
      }
      expect((await g.usage({ user: "c0" })).tiers.pool.used).toBe(admitted)
      // Nothing a denial took is kept: newcomers get exactly the rest of the pool.
      let more = 0
      for (let i = 0; i < 200; i++) if ((await g.limit({ user: `new${i}` })).allowed) more++
      expect(admitted + more).toBe(100)
    })
  })

  describe("shadow mode", () => {
    const tiers = (shadow: boolean): TieredConfig => ({
      tiers: {
        ip: { key: ["ip"], limit: { limit: 1000, window: "1h" } },
        user: { key: ["user"], limit: { limit: 5, window: "1m" }, shadow },
      },
    })

    it("admits everything while its stats match what enforcing would have denied", async () => {
      const shadow = gateway(tiers(true))
      const shadowClock = clock
      const enforcing = gateway(tiers(false))
      const enforcingClock = clock
      const pattern = [3, 9, 1, 7, 12, 5, 6]
      let wouldDeny = 0
      for (let round = 0; round < pattern.length; round++) {
        for (let i = 0; i < pattern[round]; i++) {
          const request = { user: `u${i % 3}`, ip: "10.0.0.1" }
          const s = await shadow.limit(request)
          const e = await enforcing.limit(request)
          expect(s.allowed).toBe(true)
          expect(s.tiers.user.shadow).toBe(true)
          expect(s.tiers.user.allowed, `round ${round} request ${i}`).toBe(e.allowed)
          if (!e.allowed) wouldDeny++
        }
        shadowClock.advance(20_000)
        enforcingClock.advance(20_000)
      }
      expect(wouldDeny).toBeGreaterThan(0)
      const s = shadow.stats()
      const e = enforcing.stats()
      expect(s.denied).toBe(0)
      expect(s.tiers.user.denied).toBe(0)
      expect(s.tiers.user.shadowDenied).toBe(e.tiers.user.denied)
      expect(s.shadowDenied).toBe(e.denied)
      expect(e.denied).toBe(wouldDeny)
      // The enforcing tier beside it counted every admitted request.
      expect((await shadow.usage({ ip: "10.0.0.1" })).tiers.ip.used).toBe(43)
    })

    it("a shadow plan's limits never deny; other plans keep enforcing", async () => {
      const g = gateway({
        tiers: { user: { key: ["user"] } },
        plans: {
          trial: { limits: { user: { limit: 2, window: "1h" } }, shadow: true },
          paid: { limits: { user: { limit: 2, window: "1h" } } },
        },
      })
      for (let i = 0; i < 4; i++)
        expect((await g.limit({ user: "t", plan: "trial" })).allowed).toBe(true)
      for (let i = 0; i < 2; i++)
        expect((await g.limit({ user: "p", plan: "paid" })).allowed).toBe(true)
      expect((await g.limit({ user: "p", plan: "paid" })).allowed).toBe(false)
      expect(g.stats().tiers.user).toMatchObject({ shadowDenied: 2, denied: 1 })
    })
  })

  describe("penalties", () => {
    it("a key that exceeds a penalty tier is blocked for exactly the penalty", async () => {
      const g = gateway({
        tiers: { login: { key: ["ip"], limit: { limit: 5, window: "1m" }, penalty: "15m" } },
      })
      const attacker = { ip: "203.0.113.9" }
      for (let i = 0; i < 5; i++) expect((await g.limit(attacker)).allowed).toBe(true)
      // The request that starts the block is told to wait all of it.
      const exceeded = await g.limit(attacker)
      expect(exceeded).toMatchObject({ allowed: false, tier: "login", retryAfterMs: 15 * MINUTE })
      expect(exceeded.tiers.login).toMatchObject({ blocked: true, retryAfterMs: 15 * MINUTE })
      clock.advance(5 * MINUTE) // the window alone would admit again by now
      let d = await g.limit(attacker)
      expect(d).toMatchObject({ allowed: false, tier: "login", retryAfterMs: 10 * MINUTE })
      expect(d.tiers.login.blocked).toBe(true)
      expect((await g.usage(attacker)).tiers.login.blocked).toBe(true)
      clock.advance(10 * MINUTE - 1)
      d = await g.limit(attacker)
      expect(d).toMatchObject({ allowed: false, retryAfterMs: 1 })
      clock.advance(1)
      expect((await g.limit(attacker)).allowed).toBe(true)
      // Other keys were never affected; the counts say why the attacker was turned away.
      expect((await g.limit({ ip: "198.51.100.1" })).allowed).toBe(true)
      expect(g.stats()).toMatchObject({ blocked: 2, denied: 3 })
    })

    it("reset lifts a penalty", async () => {
      const g = gateway({
        tiers: { login: { key: ["ip"], limit: { limit: 1, window: "1m" }, penalty: "1h" } },
      })
      await g.limit({ ip: "a" })
      expect((await g.limit({ ip: "a" })).allowed).toBe(false)
      expect(await g.reset({ ip: "a" })).toEqual(["login"])
      expect((await g.limit({ ip: "a" })).allowed).toBe(true)
    })
    it("a request that starts a block while another tier denies it waits for the longer of the two", async () => {
      const g = gateway({
        tiers: {
          login: { key: ["ip"], limit: { limit: 1, window: "1m" }, penalty: "10m" },
          daily: { key: ["ip"], limit: { limit: 1, window: "1d" } },
        },
      })
      expect((await g.limit({ ip: "a" })).allowed).toBe(true)
      const d = await g.limit({ ip: "a" })
      // login starts a 10-minute block; the daily tier waits until tomorrow, and binds.
      expect(d).toMatchObject({ allowed: false, tier: "daily" })
      expect(d.retryAfterMs).toBeGreaterThan(10 * MINUTE)
      expect(d.tiers.login).toMatchObject({ blocked: true, retryAfterMs: 10 * MINUTE })
    })
  })

  describe("calendar quotas", () => {
    it("a monthly quota resets at the month boundary of its time zone, across a DST change", async () => {
      // Berlin leaves summer time on 2026-10-25; its November starts at 2026-10-31T23:00Z.
      const g = gateway(
        {
          tiers: {
            quota: {
              key: ["tenant"],
              limit: { limit: 3, window: "month", timeZone: "Europe/Berlin" },
            },
          },
        },
        Date.parse("2026-10-20T12:00:00Z"),
      )
      const acme = { tenant: "acme" }
      for (let i = 0; i < 3; i++) expect((await g.limit(acme)).allowed).toBe(true)
      const d = await g.limit(acme)
      expect(d).toMatchObject({ allowed: false, tier: "quota" })
      expect(clock.now() + d.retryAfterMs).toBe(Date.parse("2026-10-31T23:00:00Z"))
      clock.set(Date.parse("2026-10-31T22:59:59.999Z"))
      expect((await g.limit(acme)).allowed).toBe(false)
      clock.set(Date.parse("2026-10-31T23:00:00Z"))
      expect((await g.limit(acme)).allowed).toBe(true)
      expect((await g.usage(acme)).tiers.quota.used).toBe(1)
    })
  })
})
