import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { start } from "./server.js"

describe("examples/hono-app", () => {
  let server: Awaited<ReturnType<typeof start>>
  beforeAll(async () => {
    server = await start()
  })
  afterAll(() => server.close())

  const hello = (key?: string) =>
    fetch(`${server.url}/api/hello`, { headers: key === undefined ? {} : { "x-api-key": key } })

  it("limits each key by its plan", async () => {
    for (let i = 0; i < 5; i++) expect((await hello("free-1")).status).toBe(200)
    const denied = await hello("free-1")
    expect(denied.status).toBe(429)
    expect(denied.headers.get("ratelimit-policy")).toBe('"free";q=5;w=1')
    expect((await hello("free-2")).status).toBe(200)
    for (let i = 0; i < 20; i++) expect((await hello("pro-1")).status).toBe(200)
    const pro = await hello("pro-1")
    expect(pro.headers.get("ratelimit-policy")).toBe('"pro";q=100;w=2')
  })

  it("answers 401 without a key, or with an empty or overlong one", async () => {
    for (const key of [undefined, "", "free-".repeat(200)]) {
      const res = await hello(key)
      expect(res.status).toBe(401)
      expect(await res.json()).toEqual({ error: "send your API key in x-api-key" })
    }
  })
})
