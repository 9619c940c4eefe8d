import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { start } from "./server.js"

describe("examples/express-api", () => {
  let server: Awaited<ReturnType<typeof start>>
  beforeAll(async () => {
    server = await start()
  })
  afterAll(() => server.close())

  it("limits searches per API key, lists both policies, and never limits /health", async () => {
    const search = (key: string) =>
      fetch(`${server.url}/search?q=x`, { headers: { "x-api-key": key } })
    let res = await search("demo")
    expect(res.status).toBe(200)
    expect(res.headers.get("ratelimit-policy")).toBe('"default";q=40;w=2, "search";q=10;w=60')
    expect(res.headers.get("ratelimit")).toMatch(/^"default";r=39;t=1, "search";r=9;t=6$/)
    expect(res.headers.get("x-ratelimit-limit")).toBe("10")
    for (let i = 0; i < 9; i++) expect((await search("demo")).status).toBe(200)
    res = await search("demo")
    expect(res.status).toBe(429)
    expect(res.headers.get("retry-after")).toBe("6")
    expect(((await res.json()) as Record<string, unknown>)["violated-policies"]).toEqual(["search"])
    expect((await search("other")).status).toBe(200)
    // A key that looks like an address spends its own budget, not the address's; an empty
    // or overlong header counts by address (and is no error).
    for (let i = 0; i < 10; i++) await search("127.0.0.1")
    expect((await fetch(`${server.url}/search`)).status).toBe(200)
    expect((await search("")).status).toBe(200)
    expect((await search("k".repeat(600))).status).toBe(200)
    const health = await fetch(`${server.url}/health`)
    expect(health.status).toBe(200)
    expect(health.headers.get("ratelimit")).toBeNull()
  })
})
