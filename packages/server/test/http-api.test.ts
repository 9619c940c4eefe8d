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
    // RateLimit-Policy comes with RateLimit, as the docs promise for every decision answer:
    // the binding tier's quota under the name RateLimit uses ("tiers" until one denies);
    // a tier's window depends on the plan, so none is given.
    expect(ok.headers.get("ratelimit-policy")).toBe('"tiers";q=2')
    expect(ok.headers.get("ratelimit")).toMatch(/^"tiers";r=1;t=\d+$/)
    await t.post("/v1/check", { request: { user: "u1" } })
    const denied = await t.post("/v1/check", { request: { user: "u1" } })
    expect(denied.body).toMatchObject({ allowed: false, tier: "user" })
    expect(denied.headers.get("ratelimit")).toMatch(/^"user";r=0;t=\d+$/)
    expect(denied.headers.get("ratelimit-policy")).toBe('"user";q=2')
    expect(denied.headers.get("retry-after")).toMatch(/^\d+$/)
    // What the library refuses is named as the body field it came from.
    const refused: [unknown, string][] = [
      [{ request: { user: "" } }, "body.request.user"],
      [{ request: { user: "u2", plan: "gold" } }, "body.request.plan"],
    ]
    for (const [body, path] of refused) {
      const a = await t.post("/v1/check", body)
      expect(a.status, JSON.stringify(body)).toBe(400)
      expect(a.body.error).toMatchObject({ code: "ERR_ARGUMENT", path })
    }
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
    expect(above.body.error).toMatchObject({ code: "ERR_ARGUMENT", path: "body.cost" })
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

/** The reviewer's config: a slow token bucket and two concurrency policies. */
const LEASES = {
  policies: {
    api: { algorithm: "tokenBucket", rate: 1, period: "1m", burst: 3 },
    c1: { algorithm: "concurrency", limit: 2, leaseTimeout: "5m" },
    c2: { algorithm: "concurrency", limit: 2, leaseTimeout: "5m" },
  },
}

describe("HTTP API: concurrency leases", () => {
  let t: Running
  beforeAll(async () => {
    t = await start(LEASES)
  })
  afterAll(() => t.close())

  const held = async (policy: string, key: string) =>
    2 - (await t.get(`/v1/keys/${policy}/${key}`)).body.remaining

  it("gives every lease an id of its own, and a release frees exactly the lease it names", async () => {
    const a = await t.post("/v1/limit", { policy: "c1", key: "same" })
    const b = await t.post("/v1/limit", { policy: "c2", key: "same" })
    const c = await t.post("/v1/limit", { policy: "c1", key: "other" })
    for (const x of [a, b, c]) {
      expect(x.body.allowed).toBe(true)
      expect(Object.keys(x.body.lease).sort()).toEqual(["expiresAt", "id"])
      expect(x.body.lease.expiresAt).toBe(t.clock.now() + 300_000)
      // Usable in a URL as it is.
      expect(encodeURIComponent(x.body.lease.id)).toBe(x.body.lease.id)
    }
    const ids = new Set([a.body.lease.id, b.body.lease.id, c.body.lease.id])
    expect(ids.size).toBe(3)

    expect((await t.del(`/v1/leases/${b.body.lease.id}`)).status).toBe(204)
    expect(await held("c2", "same")).toBe(0)
    expect(await held("c1", "same")).toBe(1)
    expect(await held("c1", "other")).toBe(1)

    expect((await t.del(`/v1/leases/${a.body.lease.id}`)).status).toBe(204)
    expect(await held("c1", "same")).toBe(0)
    expect(await held("c1", "other")).toBe(1)
    const again = await t.del(`/v1/leases/${a.body.lease.id}`)
    expect(again.status).toBe(404)
    expect(again.body.error.code).toBe("ERR_NOT_FOUND")
    // The store's own ids ("1", "2", ...) name nothing on the server.
    expect((await t.del("/v1/leases/1")).status).toBe(404)
    expect(await held("c1", "other")).toBe(1)
  })

  it("answers a repeated requestId with the same lease id", async () => {
    const first = await t.post("/v1/limit", { policy: "c2", key: "idem", requestId: "job-1" })
    const again = await t.post("/v1/limit", { policy: "c2", key: "idem", requestId: "job-1" })
    expect(again.body.lease.id).toBe(first.body.lease.id)
    expect(await held("c2", "idem")).toBe(1)
    expect((await t.del(`/v1/leases/${first.body.lease.id}`)).status).toBe(204)
    expect(await held("c2", "idem")).toBe(0)
  })

  it("registers the leases a batch hands out, so they can be released", async () => {
    const a = await t.post("/v1/limit/batch", {
      requests: [
        { policy: "c1", key: "batch" },
        { policy: "api", key: "batch" },
        { policy: "c2", key: "batch" },
      ],
    })
    expect(a.status).toBe(200)
    const [l1, plain, l2] = a.body.decisions
    expect(plain.lease).toBeUndefined()
    expect(l1.lease.id).not.toBe(l2.lease.id)
    expect(await held("c1", "batch")).toBe(1)
    expect((await t.del(`/v1/leases/${l1.lease.id}`)).status).toBe(204)
    expect(await held("c1", "batch")).toBe(0)
    expect(await held("c2", "batch")).toBe(1)
    expect((await t.del(`/v1/leases/${l2.lease.id}`)).status).toBe(204)
    expect(await held("c2", "batch")).toBe(0)
  })

  it("registers a lease taken by /v1/acquire", async () => {
    const a = await t.post("/v1/acquire", { policy: "c1", key: "acq", maxWait: 0 })
    expect(a.status).toBe(200)
    expect(await held("c1", "acq")).toBe(1)
    expect((await t.del(`/v1/leases/${a.body.lease.id}`)).status).toBe(204)
    expect(await held("c1", "acq")).toBe(0)
  })
})

describe("HTTP API: keys in the path, errors in the documented shape", () => {
  let t: Running
  beforeAll(async () => {
    t = await start(LEASES)
  })
  afterAll(() => t.close())

  /** documented: the body is the documented error body and nothing else. */
  const documented = (body: { error: Record<string, unknown> }, code: string) => {
    expect(Object.keys(body)).toEqual(["error"])
    expect(body.error).toMatchObject({ code, message: expect.any(String) })
    const extra = Object.keys(body.error).filter((k) => !["code", "message", "path"].includes(k))
    expect(extra).toEqual([])
  }

  it("peeks and resets a 512-character key that needs URL encoding", async () => {
    // "€" is three bytes of UTF-8: nine characters once encoded, the longest a key gets.
    const keys = ["€/ %?#é+".repeat(64), "€".repeat(512)]
    for (const key of keys) {
      expect(key.length).toBe(512)
      const path = `/v1/keys/api/${encodeURIComponent(key)}`
      for (let i = 0; i < 2; i++) {
        expect((await t.post("/v1/limit", { policy: "api", key })).body.allowed).toBe(true)
      }
      const peek = await t.get(path)
      expect(peek.status, JSON.stringify(peek.body)).toBe(200)
      expect(peek.body.remaining).toBe(1)
      expect((await t.del(path)).status).toBe(204)
      expect((await t.get(path)).body.remaining).toBe(3)
    }
    // The body and the path name the same key: a neighbour is untouched.
    expect((await t.get(`/v1/keys/api/${encodeURIComponent("€/ %?#é+")}`)).body.remaining).toBe(3)
  })

  it("refuses a key over 512 characters with 400 naming where it came from", async () => {
    const long = "k".repeat(513)
    const peek = await t.get(`/v1/keys/api/${long}`)
    expect(peek.status).toBe(400)
    expect(peek.body.error).toMatchObject({ code: "ERR_ARGUMENT", path: "params.key" })
    const reset = await t.del(`/v1/keys/api/${long}`)
    expect(reset.status).toBe(400)
    expect(reset.body.error).toMatchObject({ code: "ERR_ARGUMENT", path: "params.key" })
    const body = await t.post("/v1/limit", { policy: "api", key: long })
    expect(body.status).toBe(400)
    expect(body.body.error).toMatchObject({ code: "ERR_ARGUMENT", path: "body.key" })
    // Far longer than any key could be: 414, in the documented body.
    const huge = await t.get(`/v1/keys/api/${"k".repeat(6000)}`)
    expect(huge.status).toBe(414)
    documented(huge.body, "ERR_TOO_LARGE")
  })

  it("answers a malformed URL and an unknown route in the documented body", async () => {
    const bad = await t.get("/v1/keys/api/%ZZ")
    expect(bad.status).toBe(400)
    documented(bad.body, "ERR_ARGUMENT")
    const badReset = await t.del("/v1/keys/api/%ZZ")
    expect(badReset.status).toBe(400)
    documented(badReset.body, "ERR_ARGUMENT")
    const missing = await t.get("/v1/nowhere")
    expect(missing.status).toBe(404)
    documented(missing.body, "ERR_NOT_FOUND")
  })

  it("answers invalid bodies with ERR_ARGUMENT and the path of the field", async () => {
    for (const route of ["/v1/acquire", "/v1/reserve"]) {
      const a = await t.post(route, { policy: "api", key: "x", maxWait: "abc" })
      expect(a.status, route).toBe(400)
      expect(a.body.error, route).toMatchObject({ code: "ERR_ARGUMENT", path: "body.maxWait" })
      expect(a.body.error.message).toMatch(/^body\.maxWait: /)
      const cost = await t.post(route, { policy: "api", key: "x", cost: 4 })
      expect(cost.status, route).toBe(400)
      expect(cost.body.error, route).toMatchObject({ code: "ERR_ARGUMENT", path: "body.cost" })
      expect(cost.body.error.message).toMatch(/^body\.cost: /)
    }
    const cost = await t.post("/v1/limit", { policy: "api", key: "x", cost: 4 })
    expect(cost.body.error).toMatchObject({ code: "ERR_ARGUMENT", path: "body.cost" })
    expect(cost.body.error.message).toMatch(/^body\.cost: /)
    const batch = await t.post("/v1/limit/batch", {
      requests: [
        { policy: "api", key: "x" },
        { policy: "api", key: "x" },
        { policy: "api", key: 5 },
      ],
    })
    expect(batch.status).toBe(400)
    expect(batch.body.error).toMatchObject({ code: "ERR_ARGUMENT", path: "body.requests[2].key" })
    const batchKey = await t.post("/v1/limit/batch", {
      requests: [
        { policy: "c1", key: "first" },
        { policy: "api", key: "k".repeat(513) },
      ],
    })
    expect(batchKey.status).toBe(400)
    expect(batchKey.body.error).toMatchObject({
      code: "ERR_ARGUMENT",
      path: "body.requests[1].key",
    })
    // Refused before anything was decided: no lease is left behind.
    expect((await t.get("/v1/keys/c1/first")).body.remaining).toBe(2)
    expect((await t.get("/v1/keys/api/x")).body.remaining).toBe(3)
  })

  it("answers 415 for every body that is not JSON", async () => {
    const json = JSON.stringify({ policy: "api", key: "ct" })
    for (const type of [
      "text/plain",
      "text/plain; charset=utf-8",
      "application/x-www-form-urlencoded",
      "application/octet-stream",
    ]) {
      const a = await t.post("/v1/limit", json, { "content-type": type })
      expect(a.status, type).toBe(415)
      documented(a.body, "ERR_ARGUMENT")
    }
    // No content type at all, with a body.
    const res = await fetch(`${t.url}/v1/limit`, {
      method: "POST",
      body: new TextEncoder().encode(json),
    })
    expect(res.status).toBe(415)
    documented(await res.json(), "ERR_ARGUMENT")
    // Nothing was counted; JSON with a charset is JSON.
    const ok = await t.post("/v1/limit", json, {
      "content-type": "application/json; charset=utf-8",
    })
    expect(ok.body).toMatchObject({ allowed: true, remaining: 2 })
  })
})
