// The behaviour every framework adapter must show, over real HTTP on loopback. Each
// framework's test file gives a Harness (start a server with the middleware in front of
// GET /hello and GET /health) and runs this suite. Limiters use a manual clock, so
// nothing refills while a test runs.

import { afterEach, describe, expect, it } from "vitest"
import {
  concurrency,
  createLimiter,
  type Decision,
  type Limitable,
  manualClock,
  type Policy,
  type RateLimitOptions,
  type Store,
  tokenBucket,
} from "../../src/index.js"
import { draftHeaders } from "./draft-grammar.js"

export interface Server {
  url: string
  close(): Promise<void>
}

export interface Harness<Req> {
  /** start serves GET /hello and GET /health behind one middleware per options object, in order. */
  start(options: RateLimitOptions<Req, string>[]): Promise<Server>
  header(req: Req, name: string): string | undefined
  path(req: Req): string
}

const START = 1_700_000_000_000

/** setup: 5 requests per minute, burst 5, on a clock that does not move. */
function setup(policy: Policy = tokenBucket({ rate: 5, period: "1m" })) {
  const clock = manualClock(START)
  return { clock, limiter: createLimiter({ policy, clock }) }
}

function recording(inner: Limitable): Limitable & { keys: string[] } {
  const keys: string[] = []
  return {
    keys,
    policy: inner.policy,
    limit(key: string, options?: { cost?: number }): Decision | Promise<Decision> {
      keys.push(key)
      return inner.limit(key, options)
    },
  }
}

const failingStore: Store = {
  synchronous: true,
  namespace() {
    const fail = () => {
      throw new Error("connection refused")
    }
    return {
      limit: fail,
      peek: fail,
      reset: fail,
      reserve: fail,
      cancel: fail,
      release: fail,
      setPolicy() {},
      adjust: fail,
      size: () => 0,
    }
  },
  limitAll() {
    throw new Error("connection refused")
  },
}

function randomIpv4(): string {
  return Array.from({ length: 4 }, () => Math.floor(Math.random() * 256)).join(".")
}

function randomSpoof(): string {
  const parts = Array.from({ length: Math.floor(Math.random() * 4) }, () => {
    const r = Math.random()
    if (r < 0.6) return randomIpv4()
    if (r < 0.8) return `2001:db8::${Math.floor(Math.random() * 65536).toString(16)}`
    return "unknown"
  })
  return parts.join(", ")
}

export function contract<Req>(framework: string, h: Harness<Req>): void {
  describe(`${framework} middleware over HTTP`, () => {
    let server: Server | undefined
    afterEach(async () => {
      await server?.close()
      server = undefined
    })

    async function start(
      options: RateLimitOptions<Req, string> | RateLimitOptions<Req, string>[],
    ): Promise<Server> {
      server = await h.start(Array.isArray(options) ? options : [options])
      return server
    }

    const get = (path: string, headers: Record<string, string> = {}) =>
      fetch(`${server!.url}${path}`, { headers })

    it("admits the allowance with headers, then answers 429 with headers per the draft", async () => {
      const { limiter } = setup()
      await start({ limiter })
      for (let i = 0; i < 5; i++) {
        const res = await get("/hello")
        expect(res.status, `request ${i}`).toBe(200)
        expect(await res.text()).toBe("hello")
        const { policy, limit } = draftHeaders(res)
        expect(policy, `request ${i}`).toEqual([{ name: "default", q: 5, w: 60 }])
        // 5 per minute: each request takes 12 s of refill; t is the time until full
        expect(limit, `request ${i}`).toEqual([{ name: "default", r: 4 - i, t: 12 * (i + 1) }])
        expect(res.headers.get("retry-after")).toBeNull()
      }
      const res = await get("/hello")
      expect(res.status).toBe(429)
      expect(res.headers.get("content-type")).toMatch(/^application\/problem\+json/)
      expect(res.headers.get("retry-after")).toBe("12")
      const { policy, limit } = draftHeaders(res)
      expect(policy).toEqual([{ name: "default", q: 5, w: 60 }])
      expect(limit).toEqual([{ name: "default", r: 0, t: 12 }])
      expect(Number(res.headers.get("retry-after"))).toBeGreaterThanOrEqual(limit[0].t!)
      expect(await res.json()).toMatchObject({
        type: "https://iana.org/assignments/http-problem-types#quota-exceeded",
        status: 429,
        "violated-policies": ["default"],
      })
      expect(res.headers.get("x-ratelimit-limit")).toBeNull()
    })

    it("lets skipped requests through, unlimited and without headers", async () => {
      const { limiter } = setup()
      await start({ limiter, skip: (req) => h.path(req) === "/health" })
      for (let i = 0; i < 5; i++) expect((await get("/hello")).status).toBe(200)
      expect((await get("/hello")).status).toBe(429)
      for (let i = 0; i < 10; i++) {
        const res = await get("/health")
        expect(res.status).toBe(200)
        expect(res.headers.get("ratelimit")).toBeNull()
        expect(res.headers.get("ratelimit-policy")).toBeNull()
      }
    })

    it("uses a custom key, and its noKey answer when the key is missing", async () => {
      const { limiter } = setup()
      await start({
        limiter,
        key: (req) => h.header(req, "x-api-key"),
        noKey: () => ({ status: 401, body: { error: "API key required" } }),
      })
      for (let i = 0; i < 5; i++)
        expect((await get("/hello", { "x-api-key": "alice" })).status).toBe(200)
      expect((await get("/hello", { "x-api-key": "alice" })).status).toBe(429)
      expect((await get("/hello", { "x-api-key": "bob" })).status).toBe(200)
      const res = await get("/hello")
      expect(res.status).toBe(401)
      expect(await res.json()).toEqual({ error: "API key required" })
    })

    it("ignores a spoofed X-Forwarded-For when no proxy is trusted", async () => {
      const { limiter } = setup()
      const keyed = recording(limiter)
      await start({ limiter: keyed })
      const statuses: number[] = []
      for (let i = 0; i < 8; i++) {
        statuses.push((await get("/hello", { "x-forwarded-for": randomIpv4() })).status)
      }
      expect(statuses).toEqual([200, 200, 200, 200, 200, 429, 429, 429])
      expect(new Set(keyed.keys)).toEqual(new Set(["127.0.0.1"]))
    })

    it("with one trusted proxy, keys on the entry the proxy appended", async () => {
      const { limiter } = setup()
      const keyed = recording(limiter)
      await start({ limiter: keyed, trustedProxies: 1 })
      const res = await get("/hello", { "x-forwarded-for": "6.6.6.6, 198.51.100.7" })
      expect(res.status).toBe(200)
      await get("/hello", { "x-forwarded-for": "198.51.100.8" })
      expect(keyed.keys).toEqual(["198.51.100.7", "198.51.100.8"])
    })

    it("with one trusted proxy, 1,000 requests with random spoofed entries admit at most the limit", async () => {
      const { limiter } = setup()
      await start({ limiter, trustedProxies: 1 })
      let admitted = 0
      for (let batch = 0; batch < 50; batch++) {
        const results = await Promise.all(
          Array.from({ length: 20 }, () => {
            const spoof = randomSpoof()
            const xff = spoof === "" ? "198.51.100.7" : `${spoof}, 198.51.100.7`
            return get("/hello", { "x-forwarded-for": xff }).then(async (r) => {
              await r.arrayBuffer()
              return r.status
            })
          }),
        )
        admitted += results.filter((s) => s === 200).length
        expect(results.every((s) => s === 200 || s === 429)).toBe(true)
      }
      expect(admitted).toBeLessThanOrEqual(5)
      expect(admitted).toBe(5)
      // a different client behind the same proxy still has its whole budget
      expect((await get("/hello", { "x-forwarded-for": "198.51.100.9" })).status).toBe(200)
    })

    it("keys IPv6 clients by their /56: one budget inside it, another outside", async () => {
      const { limiter } = setup()
      const keyed = recording(limiter)
      await start({ limiter: keyed, trustedProxies: 1 })
      const inside = () =>
        `2001:db8:abcd:12${Math.floor(Math.random() * 256)
          .toString(16)
          .padStart(
            2,
            "0",
          )}:${Math.floor(Math.random() * 65536).toString(16)}::${Math.floor(Math.random() * 65536).toString(16)}`
      const statuses: number[] = []
      for (let i = 0; i < 8; i++) {
        statuses.push((await get("/hello", { "x-forwarded-for": inside() })).status)
      }
      expect(statuses).toEqual([200, 200, 200, 200, 200, 429, 429, 429])
      expect(new Set(keyed.keys)).toEqual(new Set(["2001:db8:abcd:1200::/56"]))
      expect((await get("/hello", { "x-forwarded-for": "2001:db8:abcd:1300::1" })).status).toBe(200)
    })

    it("keys both spellings of an IPv4-mapped address as that IPv4 address", async () => {
      const { limiter } = setup()
      const keyed = recording(limiter)
      await start({ limiter: keyed, trustedProxies: 1 })
      const spellings = ["::ffff:1.2.3.4", "::ffff:102:304", "1.2.3.4", "::FFFF:0102:0304"]
      const statuses: number[] = []
      for (let i = 0; i < 6; i++) {
        statuses.push((await get("/hello", { "x-forwarded-for": spellings[i % 4] })).status)
      }
      expect(statuses).toEqual([200, 200, 200, 200, 200, 429])
      expect(new Set(keyed.keys)).toEqual(new Set(["1.2.3.4"]))
    })

    it("reads the Forwarded header when told to", async () => {
      const { limiter } = setup()
      const keyed = recording(limiter)
      await start({ limiter: keyed, trustedProxies: 1, forwardedHeader: "forwarded" })
      await get("/hello", {
        forwarded: 'for=6.6.6.6, for="[2001:db8:1:2::1]:4711";proto=https',
        "x-forwarded-for": "9.9.9.9",
      })
      expect(keyed.keys).toEqual(["2001:db8:1::/56"])
    })

    it("answers a request without a usable client identity with an explicit error", async () => {
      const { limiter } = setup()
      const keyed = recording(limiter)
      await start({ limiter: keyed, trustedProxies: 1 })
      for (const headers of [{}, { "x-forwarded-for": "unknown" }] as Record<string, string>[]) {
        const res = await get("/hello", headers)
        expect(res.status).toBe(500)
        expect(res.headers.get("content-type")).toMatch(/^application\/problem\+json/)
        expect(((await res.json()) as { detail: string }).detail).toMatch(
          /client address could not be determined/,
        )
      }
      expect(keyed.keys).toEqual([])
    })

    it("answers 503 when the store fails closed, and marks fail-open answers", async () => {
      const closed = createLimiter({ policy: tokenBucket({ rate: 5 }), store: failingStore })
      await start({ limiter: closed })
      let res = await get("/hello")
      expect(res.status).toBe(503)
      expect(res.headers.get("tollgate-degraded")).toBe("closed")
      expect(await res.json()).toMatchObject({ status: 503, code: "ERR_STORE" })
      await server!.close()
      const open = createLimiter({
        policy: tokenBucket({ rate: 5 }),
        store: failingStore,
        onStoreError: "open",
      })
      await start({ limiter: open })
      res = await get("/hello")
      expect(res.status).toBe(200)
      expect(res.headers.get("tollgate-degraded")).toBe("open")
    })

    it("sends the legacy X-RateLimit headers when asked", async () => {
      const { limiter, clock } = setup()
      await start({ limiter, legacyHeaders: true, clock })
      const res = await get("/hello")
      expect(res.headers.get("x-ratelimit-limit")).toBe("5")
      expect(res.headers.get("x-ratelimit-remaining")).toBe("4")
      expect(res.headers.get("x-ratelimit-reset")).toBe(String((START + 12_000) / 1000))
      expect(res.headers.get("ratelimit")).not.toBeNull()
    })

    it("charges the cost the cost function gives", async () => {
      const { limiter } = setup()
      await start({ limiter, cost: (req) => Number(h.header(req, "x-cost") ?? 1) })
      let res = await get("/hello", { "x-cost": "3" })
      expect(draftHeaders(res).limit[0].r).toBe(2)
      res = await get("/hello", { "x-cost": "3" })
      expect(res.status).toBe(429)
      expect(res.headers.get("retry-after")).toBe("12")
      expect((await get("/hello", { "x-cost": "2" })).status).toBe(200)
    })

    it("sends a custom deny response, keeping the rate-limit headers", async () => {
      const { limiter } = setup()
      await start({
        limiter,
        deny: (_req, d) => ({
          body: { message: "slow down", waitSeconds: Math.ceil(d.retryAfterMs / 1000) },
        }),
      })
      for (let i = 0; i < 5; i++) await get("/hello")
      const res = await get("/hello")
      expect(res.status).toBe(429)
      expect(res.headers.get("content-type")).toMatch(/^application\/json/)
      expect(await res.json()).toEqual({ message: "slow down", waitSeconds: 12 })
      expect(res.headers.get("retry-after")).toBe("12")
      expect(draftHeaders(res).limit).toEqual([{ name: "default", r: 0, t: 12 }])
    })

    it("stacks limiters: both policies are listed, and the tighter one denies", async () => {
      const { limiter } = setup()
      const strict = createLimiter({
        policy: tokenBucket({ rate: 2, period: "1m" }),
        clock: manualClock(START),
      })
      await start([{ limiter }, { limiter: strict, policyName: "strict" }])
      for (let i = 0; i < 2; i++) {
        const { policy, limit } = draftHeaders(await get("/hello"))
        expect(policy).toEqual(
          expect.arrayContaining([
            { name: "default", q: 5, w: 60 },
            { name: "strict", q: 2, w: 60 },
          ]),
        )
        expect(limit).toEqual(
          expect.arrayContaining([
            { name: "default", r: 4 - i, t: 12 * (i + 1) },
            { name: "strict", r: 1 - i, t: 30 * (i + 1) },
          ]),
        )
      }
      const res = await get("/hello")
      expect(res.status).toBe(429)
      expect(res.headers.get("retry-after")).toBe("30")
      expect(((await res.json()) as Record<string, unknown>)["violated-policies"]).toEqual([
        "strict",
      ])
      expect(draftHeaders(res).limit).toContainEqual({ name: "strict", r: 0, t: 30 })
    })

    // The lease is released when the response is done: a second request finds it free.
    it("holds a concurrency lease for the request and releases it after", async () => {
      const { limiter } = setup(concurrency({ limit: 1 }))
      await start({ limiter })
      for (let i = 0; i < 3; i++) {
        const res = await get("/hello")
        expect(res.status, `request ${i}`).toBe(200)
        expect(draftHeaders(res).policy).toEqual([
          { name: "default", q: 1, qu: "concurrent-requests" },
        ])
      }
    })
  })
}
