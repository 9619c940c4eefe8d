// The HTTP API end to end on loopback, with fetch as the client: decisions and their
// headers, refills by moving the manual clock, and every error status.

import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { MemoryStore, type Store } from "../src/lib.js"
import { bearer, CONFIG, type Running, start } from "./support.js"

/** SwitchableStore: a MemoryStore behind an asynchronous face that can be made to fail. */
function switchable(): Store & { down: boolean } {
  const inner = new MemoryStore()
  const s = {
    synchronous: false as const,
    down: false,
    namespace(prefix: string, policy: never) {
      const ns = inner.namespace(prefix, policy) as unknown as Record<
        string,
        (...a: unknown[]) => unknown
      >
      return new Proxy(ns, {
        get(target, name) {
          const v = target[name as string]
          if (typeof v !== "function" || name === "setPolicy" || name === "size")
            return v?.bind?.(target) ?? v
          return async (...args: unknown[]) => {
            if (s.down) throw new Error("connection refused")
            return v.apply(target, args)
          }
        },
      }) as never
    },
    async limitAll(checks: never, now: number) {
      if (s.down) throw new Error("connection refused")
      return inner.limitAll(checks, now)
    },
  }
  return s
}

describe("HTTP API", () => {
  let t: Running
  beforeAll(async () => {
    t = await start({
      ...CONFIG,
      tiers: { user: { key: ["user"], limit: { limit: 2, window: "1m" } } },
    })
  })
  afterAll(() => t.close())

  it("decides with POST /v1/limit: 200 allowed or denied, RateLimit headers, refills with the clock", async () => {
    const statuses: boolean[] = []
    for (let i = 0; i < 4; i++) {
      const a = await t.post("/v1/limit", { policy: "api", key: "alice" })
      expect(a.status).toBe(200)
      statuses.push(a.body.allowed)
      if (i === 0) {
        expect(a.body).toMatchObject({ allowed: true, limit: 3, remaining: 2, policy: "api" })
        expect(a.headers.get("ratelimit-policy")).toBe('"api";q=3;w=3')
        expect(a.headers.get("ratelimit")).toBe('"api";r=2;t=1')
        expect(a.headers.get("retry-after")).toBeNull()
      }
      if (i === 3) {
        expect(a.body).toMatchObject({ allowed: false, remaining: 0, retryAfterMs: 1000 })
        expect(a.headers.get("retry-after")).toBe("1")
        expect(a.headers.get("ratelimit")).toBe('"api";r=0;t=1')
      }
    }
    expect(statuses).toEqual([true, true, true, false])
    t.clock.advance(1000)
    expect((await t.post("/v1/limit", { policy: "api", key: "alice" })).body.allowed).toBe(true)
    expect((await t.post("/v1/limit", { policy: "api", key: "bob" })).body.remaining).toBe(2)
  })

  it("repeats the first decision for a repeated requestId", async () => {
    const first = await t.post("/v1/limit", { policy: "window", key: "idem", requestId: "r1" })
    const again = await t.post("/v1/limit", { policy: "window", key: "idem", requestId: "r1" })
    expect(again.body).toEqual(first.body)
    expect((await t.get("/v1/keys/window/idem")).body.remaining).toBe(1)
  })

  it("decides a batch in order, and refuses batches with a bad item before counting any", async () => {
    const a = await t.post("/v1/limit/batch", {
      requests: [
        { policy: "window", key: "b1" },
        { policy: "window", key: "b1" },
        { policy: "window", key: "b1" },
        { policy: "api", key: "b2", cost: 2 },
      ],
    })
    expect(a.status).toBe(200)
    expect(a.body.decisions.map((d: { allowed: boolean }) => d.allowed)).toEqual([
      true,
      true,
      false,
      true,
    ])
    expect(a.body.decisions[3]).toMatchObject({ policy: "api", remaining: 1 })
    const bad = await t.post("/v1/limit/batch", {
      requests: [
        { policy: "api", key: "b3" },
        { policy: "nope", key: "b3" },
      ],
    })
    expect(bad.status).toBe(400)
    expect(bad.body.error).toMatchObject({ code: "ERR_ARGUMENT", path: "body.requests[1].policy" })
    expect((await t.get("/v1/keys/api/b3")).body.remaining).toBe(3)
  })

  it("peeks without consuming and resets a key", async () => {
    await t.post("/v1/limit", { policy: "window", key: "pk" })
    const p1 = await t.get("/v1/keys/window/pk")
    const p2 = await t.get("/v1/keys/window/pk")
    expect(p1.status).toBe(200)
    expect(p1.body.remaining).toBe(1)
    expect(p2.body.remaining).toBe(1)
    expect((await t.del("/v1/keys/window/pk")).status).toBe(204)
    expect((await t.get("/v1/keys/window/pk")).body.remaining).toBe(2)
    expect((await t.get("/v1/keys/nope/pk")).status).toBe(404)
  })

  it("acquire waits for capacity (the clock moves), and answers 429 when the wait is too long", async () => {
    for (let i = 0; i < 3; i++) await t.post("/v1/limit", { policy: "api", key: "acq" })
    const waiting = t.post("/v1/acquire", { policy: "api", key: "acq", maxWait: "5s" })
    await new Promise((r) => setTimeout(r, 50))
    t.clock.advance(1000)
    const a = await waiting
    expect(a.status).toBe(200)
    expect(a.body.allowed).toBe(true)
    const tooLong = await t.post("/v1/acquire", { policy: "api", key: "acq", maxWait: 10 })
    expect(tooLong.status).toBe(429)
    expect(tooLong.body.error.code).toBe("ERR_RATE_LIMITED")
    expect(tooLong.headers.get("retry-after")).toBe("1")
    const overCap = await t.post("/v1/acquire", { policy: "api", key: "acq", maxWait: "1h" })
    expect(overCap.status).toBe(400)
    expect(overCap.body.error.path).toBe("body.maxWait")
  })

  it("reserves capacity and gives it back on DELETE /v1/reservations/:id", async () => {
    for (let i = 0; i < 3; i++) await t.post("/v1/limit", { policy: "api", key: "res" })
    const r = await t.post("/v1/reserve", { policy: "api", key: "res", maxWait: "10s" })
    expect(r.status).toBe(200)
    expect(r.body).toMatchObject({ ok: true, delayMs: 1000 })
    expect((await t.del(`/v1/reservations/${r.body.id}`)).status).toBe(204)
    expect((await t.del(`/v1/reservations/${r.body.id}`)).status).toBe(404)
    // Given back: one second on, the next request is allowed again.
    t.clock.advance(1000)
    expect((await t.post("/v1/limit", { policy: "api", key: "res" })).body.allowed).toBe(true)
    const unsupported = await t.post("/v1/reserve", { policy: "window", key: "res" })
    expect(unsupported.status).toBe(400)
    expect(unsupported.body.error.code).toBe("ERR_UNSUPPORTED")
  })

  it("hands out concurrency leases and releases them", async () => {
    const a = await t.post("/v1/limit", { policy: "slots", key: "job" })
    expect(a.body.allowed).toBe(true)
    expect((await t.post("/v1/limit", { policy: "slots", key: "job" })).body.allowed).toBe(false)
    expect((await t.del(`/v1/leases/${a.body.lease.id}`)).status).toBe(204)
    expect((await t.post("/v1/limit", { policy: "slots", key: "job" })).body.allowed).toBe(true)
  })

  it("checks a multi-tier request with POST /v1/check", async () => {
    const ok = await t.post("/v1/check", { request: { user: "u1" } })
    expect(ok.status).toBe(200)
    expect(ok.body.tiers.user).toMatchObject({ allowed: true, remaining: 1 })
    await t.post("/v1/check", { request: { user: "u1" } })
    const denied = await t.post("/v1/check", { request: { user: "u1" } })
    expect(denied.body).toMatchObject({ allowed: false, tier: "user" })
    expect(denied.headers.get("ratelimit")).toMatch(/^"user";r=0;t=\d+$/)
  })

  it("answers 400 with the path for bad input", async () => {
    const cases: [unknown, string][] = [
      [{ policy: "api" }, "body.key"],
      [{ policy: "api", key: "k", cost: -1 }, "body.cost"],
      [{ policy: "api", key: "k", cost: "1" }, "body.cost"],
      [{ policy: "api", key: "k", extra: true }, "body.extra"],
      [{ policy: "nope", key: "k" }, "body.policy"],
      [{ policy: "api", key: "" }, "body.key"],
    ]
    for (const [body, path] of cases) {
      const a = await t.post("/v1/limit", body)
      expect(a.status, JSON.stringify(body)).toBe(400)
      expect(a.body.error).toMatchObject({ code: "ERR_ARGUMENT", path })
    }
    const above = await t.post("/v1/limit", { policy: "api", key: "k", cost: 4 })
    expect(above.status).toBe(400)
    expect(above.body.error.code).toBe("ERR_ARGUMENT")
    const json = await t.post("/v1/limit", "{not json")
    expect(json.status).toBe(400)
    expect(json.body.error.code).toBe("ERR_ARGUMENT")
  })

  it("answers 404 for unknown routes and 413 for oversized bodies", async () => {
    const a = await t.get("/v2/nothing")
    expect(a.status).toBe(404)
    expect(a.body.error.code).toBe("ERR_NOT_FOUND")
    const big = await t.post("/v1/limit", { policy: "api", key: "x".repeat(2 * 1024 * 1024) })
    expect(big.status).toBe(413)
    expect(big.body.error.code).toBe("ERR_TOO_LARGE")
  })

  it("keeps metrics free of user keys", async () => {
    for (let i = 0; i < 200; i++) await t.post("/v1/limit", { policy: "window", key: `many-${i}` })
    const text = (await t.get("/metrics")).body as string
    expect(text).not.toContain("many-")
    expect(text).toMatch(/tollgate_decisions_total\{policy="window",tier="",result="allowed"\} \d+/)
    expect(text).toMatch(/tollgate_decision_duration_seconds_count\{api="http"\} \d+/)
    const series = text.split("\n").filter((l) => l.startsWith("tollgate_decisions_total{"))
    expect(series.length).toBeLessThan(12)
  })
})

describe("HTTP API with tokens", () => {
  let t: Running
  beforeAll(async () => {
    t = await start(CONFIG, { tokens: { decision: "dec-token", admin: "adm-token" } })
  })
  afterAll(() => t.close())

  it("answers 401 without a valid token, and such calls change no state", async () => {
    const none = await t.post("/v1/limit", { policy: "window", key: "k" })
    expect(none.status).toBe(401)
    expect(none.body.error.code).toBe("ERR_UNAUTHORIZED")
    expect(none.headers.get("www-authenticate")).toMatch(/^Bearer/)
    const wrong = await t.post("/v1/limit", { policy: "window", key: "k" }, bearer("nope"))
    expect(wrong.status).toBe(401)
    expect((await t.del("/v1/keys/window/k")).status).toBe(401)
    const peek = await t.get("/v1/keys/window/k", bearer("dec-token"))
    expect(peek.body.remaining).toBe(2)
    expect(
      (await t.post("/v1/limit", { policy: "window", key: "k" }, bearer("dec-token"))).status,
    ).toBe(200)
  })

  it("answers 403 for the decision token on admin endpoints; the admin token works everywhere", async () => {
    const a = await t.del("/v1/keys/window/k", bearer("dec-token"))
    expect(a.status).toBe(403)
    expect(a.body.error.code).toBe("ERR_FORBIDDEN")
    expect((await t.get("/v1/keys/window/k", bearer("dec-token"))).body.remaining).toBe(1)
    expect((await t.del("/v1/keys/window/k", bearer("adm-token"))).status).toBe(204)
    expect((await t.get("/v1/keys/window/k", bearer("adm-token"))).body.remaining).toBe(2)
    expect((await t.get("/v1/admin/stats", bearer("dec-token"))).status).toBe(403)
    expect((await t.get("/v1/admin/stats", bearer("adm-token"))).status).toBe(200)
  })
})

describe("HTTP API over a failing store", () => {
  it("answers 503 ERR_STORE when the store is down and the server fails closed", async () => {
    const store = switchable()
    const t = await start(CONFIG, { store, storeProbe: async () => {} })
    try {
      expect((await t.post("/v1/limit", { policy: "api", key: "s" })).status).toBe(200)
      store.down = true
      const a = await t.post("/v1/limit", { policy: "api", key: "s" })
      expect(a.status).toBe(503)
      expect(a.body.error.code).toBe("ERR_STORE")
      expect(a.headers.get("tollgate-degraded")).toBe("closed")
      const metrics = (await t.get("/metrics")).body as string
      expect(metrics).toMatch(/tollgate_store_errors_total\{api="http"\} 1/)
      expect(metrics).toMatch(/result="error"\} 1/)
    } finally {
      await t.close()
    }
  })

  it("decides from memory with --on-store-error fallback, marked degraded", async () => {
    const store = switchable()
    const t = await start(CONFIG, { store, onStoreError: "fallback" })
    try {
      store.down = true
      const a = await t.post("/v1/limit", { policy: "window", key: "f" })
      expect(a.status).toBe(200)
      expect(a.body).toMatchObject({ allowed: true, degraded: "fallback" })
      expect(a.headers.get("tollgate-degraded")).toBe("fallback")
      expect((await t.get("/metrics")).body).toMatch(
        /tollgate_store_fallbacks_total\{mode="fallback"\} 1/,
      )
    } finally {
      await t.close()
    }
  })
})
