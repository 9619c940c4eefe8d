// Envoy's RateLimitService over gRPC, called by a grpc-js client built from the
// project's own .proto files.

import * as grpc from "@grpc/grpc-js"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { loadRls } from "../src/grpc/rls.js"
import { type Running, start } from "./support.js"

const CONFIG = `
policies:
  perIp: { algorithm: fixedWindow, limit: 3, window: 1m }
domains:
  - domain: edge
    descriptors:
      - key: remote_address
        limit: perIp
      - key: path
        value: /login
        rate_limit: { unit: minute, requests_per_unit: 2 }
      - key: path
        value: /blocked
        rate_limit: { unit: second, requests_per_unit: 0 }
      - key: tenant
        descriptors:
          - key: user
            limit: { algorithm: tokenBucket, rate: 1, period: 1s, burst: 5 }
      - key: quiet
        shadow_mode: true
        rate_limit: { unit: hour, requests_per_unit: 1 }
      - key: half
        limit: { rate: 0.5, period: 1s, burst: 1 }
      - key: daily
        limit: { algorithm: fixedWindow, limit: 100, window: day }
      - key: odd
        limit: { algorithm: slidingWindowLog, limit: 7, window: 13m }
`

type Client = grpc.Client & {
  ShouldRateLimit(
    req: unknown,
    meta: grpc.Metadata,
    opts: grpc.CallOptions,
    cb: (e: grpc.ServiceError | null, r: any) => void,
  ): void
}

function client(address: string, options: grpc.ChannelOptions = {}): Client {
  const pkg = loadRls() as any
  return new pkg.envoy.service.ratelimit.v3.RateLimitService(
    address,
    grpc.credentials.createInsecure(),
    options,
  )
}

function call(c: Client, req: unknown, token?: string): Promise<any> {
  const meta = new grpc.Metadata()
  if (token !== undefined) meta.set("authorization", `Bearer ${token}`)
  return new Promise((resolve, reject) =>
    c.ShouldRateLimit(req, meta, { deadline: Date.now() + 5000 }, (e, r) =>
      e ? reject(e) : resolve(r),
    ),
  )
}

function headersOf(r: any): Record<string, string> {
  return Object.fromEntries(r.response_headers_to_add.map((h: any) => [h.key, h.value]))
}

const d = (...pairs: [string, string][]) => ({
  entries: pairs.map(([key, value]) => ({ key, value })),
})

describe("Envoy RateLimitService", () => {
  let t: Running
  let c: Client
  beforeAll(async () => {
    t = await start({ text: CONFIG })
    c = client(t.server.grpcAddress)
  })
  afterAll(async () => {
    c.close()
    await t.close()
  })

  it("answers OK, then OVER_LIMIT once the descriptor's limit is used", async () => {
    const codes: string[] = []
    let last: any
    for (let i = 0; i < 4; i++) {
      last = await call(c, { domain: "edge", descriptors: [d(["remote_address", "10.1.1.1"])] })
      codes.push(last.overall_code)
    }
    expect(codes).toEqual(["OK", "OK", "OK", "OVER_LIMIT"])
    const s = last.statuses[0]
    expect(s.code).toBe("OVER_LIMIT")
    expect(s.current_limit).toMatchObject({
      requests_per_unit: 3,
      unit: "MINUTE",
      name: "edge/remote_address",
    })
    expect(s.limit_remaining).toBe(0)
    expect(Number(s.duration_until_reset.seconds)).toBeGreaterThan(0)
    const headers = Object.fromEntries(
      last.response_headers_to_add.map((h: any) => [h.key, h.value]),
    )
    expect(headers["retry-after"]).toBeDefined()
    expect(headers.ratelimit).toMatch(/;r=0;/)
    // Another address has its own count.
    const other = await call(c, {
      domain: "edge",
      descriptors: [d(["remote_address", "10.1.1.2"])],
    })
    expect(other.statuses[0]).toMatchObject({ code: "OK", limit_remaining: 2 })
  })

  it("counts hits_addend, request-wide and per descriptor", async () => {
    const a = await call(c, {
      domain: "edge",
      hits_addend: 3,
      descriptors: [d(["tenant", "t1"], ["user", "u1"])],
    })
    expect(a.statuses[0]).toMatchObject({ code: "OK", limit_remaining: 2 })
    const b = await call(c, {
      domain: "edge",
      hits_addend: 1,
      descriptors: [{ ...d(["tenant", "t1"], ["user", "u1"]), hits_addend: { value: 3 } }],
    })
    expect(b.overall_code).toBe("OVER_LIMIT")
    expect(b.statuses[0].limit_remaining).toBe(2)
    t.clock.advance(1000)
    const c2 = await call(c, {
      domain: "edge",
      hits_addend: 3,
      descriptors: [d(["tenant", "t1"], ["user", "u1"])],
    })
    expect(c2.statuses[0]).toMatchObject({ code: "OK", limit_remaining: 0 })
  })

  it("answers several descriptors in one call, one status each, in order", async () => {
    const req = {
      domain: "edge",
      descriptors: [
        d(["path", "/login"]),
        d(["path", "/elsewhere"]),
        d(["path", "/blocked"]),
        d(["quiet", "x"]),
      ],
    }
    const a = await call(c, req)
    expect(a.statuses.map((s: any) => s.code)).toEqual(["OK", "OK", "OVER_LIMIT", "OK"])
    expect(a.overall_code).toBe("OVER_LIMIT")
    expect(a.statuses[0].current_limit).toMatchObject({ requests_per_unit: 2, unit: "MINUTE" })
    expect(a.statuses[1].current_limit).toBeNull()
    const b = await call(c, {
      domain: "edge",
      descriptors: [d(["path", "/login"]), d(["quiet", "x"])],
    })
    // The shadow rule is over its limit of 1 per hour now, and still answers OK.
    expect(b.statuses.map((s: any) => s.code)).toEqual(["OK", "OK"])
    expect(b.statuses[1].limit_remaining).toBe(0)
    const c3 = await call(c, { domain: "edge", descriptors: [d(["path", "/login"])] })
    expect(c3.overall_code).toBe("OVER_LIMIT")
    const unknown = await call(c, { domain: "other", descriptors: [d(["path", "/login"])] })
    expect(unknown.overall_code).toBe("OK")
  })

  it("OVER_LIMIT from a rule of 0 carries that rule's headers, even beside an allowed descriptor", async () => {
    const long = "a".repeat(600)
    const r = await call(c, {
      domain: "edge",
      descriptors: [d(["path", "/blocked"]), d(["remote_address", long])],
    })
    expect(r.overall_code).toBe("OVER_LIMIT")
    expect(r.statuses.map((s: any) => s.code)).toEqual(["OVER_LIMIT", "OK"])
    expect(r.statuses[1].limit_remaining).toBe(2)
    const blocked = r.statuses[0]
    expect(blocked.current_limit).toMatchObject({ requests_per_unit: 0, unit: "SECOND" })
    expect(blocked.duration_until_reset).not.toBeNull()
    // The clock stands on a whole second: the blocking window is one full second away.
    expect(Number(blocked.duration_until_reset.seconds)).toBe(1)
    expect(headersOf(r)).toEqual({
      "ratelimit-policy": '"edge/path=/blocked";q=0;w=1',
      ratelimit: '"edge/path=/blocked";r=0;t=1',
      "retry-after": "1",
    })
  })

  it("OVER_LIMIT from a rule of 0 alone carries its headers and a duration", async () => {
    const r = await call(c, { domain: "edge", descriptors: [d(["path", "/blocked"])] })
    expect(r.overall_code).toBe("OVER_LIMIT")
    expect(r.statuses[0].duration_until_reset).toEqual({ seconds: 1, nanos: 0 })
    expect(headersOf(r)["retry-after"]).toBe("1")
    expect(headersOf(r).ratelimit).toBe('"edge/path=/blocked";r=0;t=1')
  })

  it("OVER_LIMIT from hits_addend above the limit carries that rule's headers", async () => {
    // The bucket holds 5; a call of 6 can never pass, and counts nothing.
    const r = await call(c, {
      domain: "edge",
      hits_addend: 6,
      descriptors: [d(["tenant", "t9"], ["user", "u9"])],
    })
    expect(r.overall_code).toBe("OVER_LIMIT")
    const s = r.statuses[0]
    expect(s.code).toBe("OVER_LIMIT")
    expect(s.limit_remaining).toBe(5)
    // Told to come back after one whole refill of the bucket (5 tokens at 1 per second).
    expect(s.duration_until_reset).toEqual({ seconds: 5, nanos: 0 })
    expect(headersOf(r)).toEqual({
      "ratelimit-policy": '"edge/tenant/user";q=5;w=5',
      ratelimit: '"edge/tenant/user";r=5;t=5',
      "retry-after": "5",
    })
    // Beside an allowed descriptor, the over one still decides the headers.
    const both = await call(c, {
      domain: "edge",
      descriptors: [
        d(["remote_address", "10.7.7.7"]),
        { ...d(["tenant", "t9"], ["user", "u9"]), hits_addend: { value: 6 } },
      ],
    })
    expect(both.overall_code).toBe("OVER_LIMIT")
    expect(both.statuses.map((x: any) => x.code)).toEqual(["OK", "OVER_LIMIT"])
    expect(headersOf(both)["retry-after"]).toBe("5")
    expect(headersOf(both).ratelimit).toBe('"edge/tenant/user";r=5;t=5')
    // Nothing was taken by the calls that could not pass.
    const one = await call(c, {
      domain: "edge",
      descriptors: [d(["tenant", "t9"], ["user", "u9"])],
    })
    expect(one.statuses[0]).toMatchObject({ code: "OK", limit_remaining: 4 })
  })

  it("states a fractional rate in a unit where it is a whole number", async () => {
    const r = await call(c, {
      domain: "edge",
      descriptors: [d(["half", "h"]), d(["daily", "d"]), d(["odd", "o"])],
    })
    expect(r.statuses.map((s: any) => s.current_limit)).toEqual([
      // 0.5 per second would read as 0 (blocks everything) in seconds.
      { name: "edge/half", requests_per_unit: 30, unit: "MINUTE" },
      // A calendar day, not its longest span (25 hours).
      { name: "edge/daily", requests_per_unit: 100, unit: "DAY" },
      // Whole in no unit: the shortest unit of at least 1, rounded down (7 per 13 min).
      { name: "edge/odd", requests_per_unit: 32, unit: "HOUR" },
    ])
  })

  it("rejects malformed requests with INVALID_ARGUMENT", async () => {
    await expect(call(c, { domain: "", descriptors: [d(["a", "b"])] })).rejects.toMatchObject({
      code: grpc.status.INVALID_ARGUMENT,
    })
    await expect(call(c, { domain: "edge", descriptors: [] })).rejects.toMatchObject({
      code: grpc.status.INVALID_ARGUMENT,
    })
  })
})

describe("Envoy RateLimitService with a token", () => {
  it("answers UNAUTHENTICATED without the token, and counts nothing for it", async () => {
    const t = await start({ text: CONFIG }, { tokens: { decision: "grpc-secret" } })
    const c = client(t.server.grpcAddress)
    try {
      const req = { domain: "edge", descriptors: [d(["remote_address", "10.9.9.9"])] }
      for (let i = 0; i < 5; i++) {
        await expect(call(c, req)).rejects.toMatchObject({ code: grpc.status.UNAUTHENTICATED })
      }
      await expect(call(c, req, "wrong")).rejects.toMatchObject({
        code: grpc.status.UNAUTHENTICATED,
      })
      const ok = await call(c, req, "grpc-secret")
      expect(ok.statuses[0]).toMatchObject({ code: "OK", limit_remaining: 2 })
    } finally {
      c.close()
      await t.close()
    }
  })

  it("refuses messages over the size limit", async () => {
    const t = await start({ text: CONFIG }, { grpcMaxMessageBytes: 16 * 1024 })
    const c = client(t.server.grpcAddress)
    try {
      const big = { domain: "edge", descriptors: [d(["remote_address", "x".repeat(64 * 1024)])] }
      await expect(call(c, big)).rejects.toMatchObject({ code: grpc.status.RESOURCE_EXHAUSTED })
      const ok = await call(c, { domain: "edge", descriptors: [d(["remote_address", "small"])] })
      expect(ok.overall_code).toBe("OK")
    } finally {
      c.close()
      await t.close()
    }
  })
})

/** decisionsIn reads tollgate_decisions_total from /metrics: "policy result" -> count. */
function decisionsIn(text: string): Map<string, number> {
  const out = new Map<string, number>()
  const re = /^tollgate_decisions_total\{policy="([^"]*)",tier="",result="(\w+)"\} (\d+)$/gm
  for (const m of text.matchAll(re)) out.set(`${m[1]} ${m[2]}`, Number(m[3]))
  return out
}

describe("gRPC decisions on the dashboard", () => {
  it("/v1/admin/stats counts what /metrics counts for every descriptor rule, blocked ones too", async () => {
    const t = await start({ text: CONFIG }, { tokens: { admin: "adm" } })
    const c = client(t.server.grpcAddress)
    const admin = { authorization: "Bearer adm" }
    try {
      // Twice blocked by a rule of 0; twice beside it on an ordinary rule; once above a
      // bucket's capacity; the shadow rule over its limit; the ordinary rule over its limit.
      for (let i = 0; i < 2; i++) {
        await call(c, { domain: "edge", descriptors: [d(["path", "/blocked"])] }, "adm")
        await call(
          c,
          {
            domain: "edge",
            descriptors: [d(["path", "/blocked"]), d(["remote_address", "a".repeat(600)])],
          },
          "adm",
        )
      }
      await call(
        c,
        { domain: "edge", hits_addend: 9, descriptors: [d(["tenant", "t"], ["user", "u"])] },
        "adm",
      )
      for (let i = 0; i < 2; i++) {
        await call(c, { domain: "edge", descriptors: [d(["quiet", "q"])] }, "adm")
        await call(
          c,
          { domain: "edge", descriptors: [d(["remote_address", "a".repeat(600)])] },
          "adm",
        )
      }
      const metrics = decisionsIn((await t.get("/metrics")).body)
      const expected = new Map([
        ["edge/path=/blocked denied", 4],
        ["edge/remote_address allowed", 3],
        ["edge/remote_address denied", 1],
        ["edge/tenant/user denied", 1],
        ["edge/quiet allowed", 1],
        ["edge/quiet denied", 1],
      ])
      expect(metrics).toEqual(expected)
      const stats = (await t.get("/v1/admin/stats", admin)).body
      const sum = (a: number[]) => a.reduce((x, y) => x + y, 0)
      const fromStats = new Map<string, number>()
      for (const [name, s] of Object.entries(stats.series.policies) as [string, any][]) {
        if (sum(s.allowed) > 0) fromStats.set(`${name} allowed`, sum(s.allowed))
        if (sum(s.denied) > 0) fromStats.set(`${name} denied`, sum(s.denied))
      }
      expect(fromStats).toEqual(expected)
      const top = new Map(stats.topDenied.map((k: any) => [k.policy, k.denied]))
      expect(top.get("edge/path=/blocked")).toBe(4)
      expect(top.get("edge/tenant/user")).toBe(1)
    } finally {
      c.close()
      await t.close()
    }
  })
})
