// Graceful shutdown: requests in flight are answered, /readyz turns 503 while draining,
// new connections are refused afterwards; waits beyond the grace period are cut short
// with a 503 answer rather than dropped.

import { describe, expect, it } from "vitest"
import { type Running, start } from "./support.js"

const CONFIG = { policies: { one: { algorithm: "tokenBucket", rate: 1, period: "1s", burst: 1 } } }

async function refused(t: Running): Promise<boolean> {
  try {
    await t.get("/healthz")
    return false
  } catch {
    return true
  }
}

describe("graceful shutdown", () => {
  it("answers a request in flight before closing, then refuses new connections", async () => {
    const t = await start(CONFIG)
    await t.post("/v1/limit", { policy: "one", key: "k" })
    // An acquire that waits for the clock: in flight when close() starts.
    const inFlight = t.post("/v1/acquire", { policy: "one", key: "k", maxWait: "5s" })
    await new Promise((r) => setTimeout(r, 50))
    const closing = t.server.close()
    expect(t.server.health()).toMatchObject({ ready: false, reasons: ["shutting down"] })
    t.clock.advance(1000)
    const a = await inFlight
    expect(a.status).toBe(200)
    expect(a.body.allowed).toBe(true)
    await closing
    expect(await refused(t)).toBe(true)
  })

  it("cuts waits short after the grace period, answering them 503", async () => {
    const t = await start(CONFIG, { shutdownTimeoutMs: 200 })
    await t.post("/v1/limit", { policy: "one", key: "k" })
    const inFlight = t.post("/v1/acquire", { policy: "one", key: "k", maxWait: "5s" })
    await new Promise((r) => setTimeout(r, 50))
    const started = Date.now()
    await t.server.close()
    const a = await inFlight
    expect(a.status).toBe(503)
    expect(a.body.error.code).toBe("ERR_UNAVAILABLE")
    expect(Date.now() - started).toBeLessThan(3000)
  })
})
