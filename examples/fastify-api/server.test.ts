import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { start } from "./server.js"

describe("examples/fastify-api", () => {
  let server: Awaited<ReturnType<typeof start>>
  beforeAll(async () => {
    server = await start(0, "127.0.0.1", { reportMs: 300 })
  })
  afterAll(() => server.close())

  it("admits two report builds at a time; the third in flight gets 429", async () => {
    const statuses = await Promise.all(
      [1, 2, 3].map((i) => fetch(`${server.url}/reports/r${i}`).then((r) => r.status)),
    )
    expect(statuses.sort()).toEqual([200, 200, 429])
    // the leases are back once the builds answered
    const res = await fetch(`${server.url}/reports/again`)
    expect(res.status).toBe(200)
    expect(res.headers.get("ratelimit-policy")).toBe(
      '"default";q=30;w=18, "reports-in-flight";q=2;qu="concurrent-requests"',
    )
  })

  it("keeps the app-wide limit on the other routes only", async () => {
    const res = await fetch(`${server.url}/`)
    expect(res.status).toBe(200)
    expect(res.headers.get("ratelimit-policy")).toBe('"default";q=30;w=18')
  })
})
