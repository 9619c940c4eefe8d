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
