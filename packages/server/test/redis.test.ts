// The server over a real redis-server (started by the library's test harness): two
// servers share one limit, a Redis that goes away makes /readyz fail within two check
// intervals and fail-closed decisions answer 503. Real time here, with wide margins.

import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type RedisServer, startRedis } from "../../tollgate/test/support/redis.js"
import { redisStore } from "../src/redis.js"
import { TollgateServer } from "../src/server.js"

const CONFIG = { policies: { shared: { algorithm: "slidingWindowLog", limit: 4, window: "1m" } } }

async function limit(server: TollgateServer, key: string): Promise<{ status: number; body: any }> {
  const res = await fetch(`${server.httpUrl}/v1/limit`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ policy: "shared", key }),
  })
  return { status: res.status, body: await res.json() }
}

describe("over Redis", () => {
  let redis: RedisServer
  const servers: TollgateServer[] = []
  const serve = async (extra: object = {}) => {
    const s = await TollgateServer.start({
      config: CONFIG,
      port: 0,
      grpcPort: false,
      ...(await redisStore({ url: `redis://${redis.host}:${redis.port}` })),
      ...extra,
    })
    servers.push(s)
    return s
  }

  beforeAll(async () => {
    redis = await startRedis()
  })
  afterAll(async () => {
    await Promise.all(servers.map((s) => s.close()))
    await redis?.stop()
  })

  it("shares one limit between two servers", async () => {
    const a = await serve()
    const b = await serve()
    const key = `k-${Date.now()}`
    const results = []
    for (let i = 0; i < 3; i++) results.push((await limit(a, key)).body.allowed)
    for (let i = 0; i < 3; i++) results.push((await limit(b, key)).body.allowed)
    expect(results).toEqual([true, true, true, true, false, false])
    const ready = await fetch(`${a.httpUrl}/readyz`)
    expect(ready.status).toBe(200)
    expect((await ready.json()).store).toMatchObject({ kind: "redis", healthy: true })
  })

  it("is not ready within two check intervals of Redis failing, and fails closed with 503", async () => {
    const interval = 250
    const s = await serve({ healthIntervalMs: interval })
    expect((await limit(s, "before")).status).toBe(200)
    await redis.stop()
    const stopped = performance.now()
    let notReadyAfter = Number.POSITIVE_INFINITY
    while (performance.now() - stopped < 5000) {
      const r = await fetch(`${s.httpUrl}/readyz`)
      if (r.status === 503) {
        notReadyAfter = performance.now() - stopped
        expect((await r.json()).reasons[0]).toMatch(/^store down/)
        break
      }
      await new Promise((r) => setTimeout(r, 5))
    }
    expect(notReadyAfter).toBeLessThanOrEqual(2 * interval)
    const d = await limit(s, "after")
    expect(d.status).toBe(503)
    expect(d.body.error.code).toBe("ERR_STORE")
    const metrics = await (await fetch(`${s.httpUrl}/metrics`)).text()
    expect(metrics).toMatch(/^tollgate_store_up 0$/m)
  })
})
