import { describe, expect, it } from "vitest"
import { manualClock } from "../clock.js"
import type { Decision } from "../core/decision.js"
import { concurrency, tokenBucket } from "../core/policy.js"
import { ArgumentError, ConfigError, StoreError } from "../errors.js"
import { createLimiter } from "../limiter/limiter.js"
import type { Store } from "../stores/store.js"
import { createRateLimit, type Limitable, type RequestView } from "./middleware.js"

interface Req {
  headers: Record<string, string>
  address: string | undefined
}

const view = (req: Req): RequestView => ({
  address: req.address,
  header: (name) => req.headers[name],
})

function recording(inner: Limitable): Limitable & { keys: string[] } {
  const keys: string[] = []
  return {
    keys,
    policy: inner.policy,
    limit(key: string, options?: { cost?: number }) {
      keys.push(key)
      return inner.limit(key, options)
    },
  }
}

const bucket = (burst = 3) =>
  createLimiter({ policy: tokenBucket({ rate: burst, period: "1m" }), clock: manualClock(0) })

/** failingStore is a store whose every call throws, as a Redis outage would. */
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

describe("createRateLimit: the default key", () => {
  it("10,000 distinct IPv4 clients make 10,000 keys", async () => {
    const limiter = recording(bucket())
    const check = createRateLimit<Req>({ limiter })
    for (let i = 0; i < 10_000; i++) {
      const address = `172.${16 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`
      await check({ headers: {}, address }, view({ headers: {}, address }))
    }
    expect(new Set(limiter.keys).size).toBe(10_000)
  })

  it("10,000 IPv6 addresses from one /56 make one key, and share its budget", async () => {
    const limiter = recording(bucket(3))
    const check = createRateLimit<Req>({ limiter })
    let admitted = 0
    const hex = (n: number) => n.toString(16)
    for (let i = 0; i < 10_000; i++) {
      const address = `2001:db8:9:a0${hex(i % 16)}${hex(i % 13)}:${hex(i)}:${hex((i * 7919) % 65536)}::${hex(i % 5000)}`
      const outcome = await check({ headers: {}, address }, view({ headers: {}, address }))
      if (outcome.reply === undefined) admitted++
    }
    expect(new Set(limiter.keys)).toEqual(new Set(["2001:db8:9:a000::/56"]))
    expect(admitted).toBe(3)
  })

  it("honours ipv6Prefix", async () => {
    const limiter = recording(bucket())
    const check = createRateLimit<Req>({ limiter, ipv6Prefix: 64 })
    const req = { headers: {}, address: "2001:db8:9:a0ff:1::1" }
    await check(req, view(req))
    expect(limiter.keys).toEqual(["2001:db8:9:a0ff::/64"])
  })

  it("keys a dual-stack socket's IPv4-mapped peer as IPv4", async () => {
    const limiter = recording(bucket())
    const check = createRateLimit<Req>({ limiter })
    for (const address of ["::ffff:127.0.0.1", "::ffff:7f00:1", "127.0.0.1"]) {
      await check({ headers: {}, address }, view({ headers: {}, address }))
    }
    expect(limiter.keys).toEqual(["127.0.0.1", "127.0.0.1", "127.0.0.1"])
  })
})

describe("createRateLimit: no identity", () => {
  it("answers 500 with a problem, never a shared key, when the address is unknown", async () => {
    const limiter = recording(bucket())
    const check = createRateLimit<Req>({ limiter })
    const req = { headers: {}, address: undefined }
    const outcome = await check(req, view(req))
    expect(limiter.keys).toEqual([])
    expect(outcome.reply?.status).toBe(500)
    expect(outcome.reply?.headers["Content-Type"]).toBe("application/problem+json")
    expect(JSON.parse(outcome.reply!.body).detail).toMatch(/trustedProxies/)
  })

  it("uses noKey for a key function that finds nothing", async () => {
    const limiter = recording(bucket())
    const check = createRateLimit<Req>({
      limiter,
      key: (req) => req.headers["x-api-key"],
      noKey: () => ({ status: 401, body: { error: "missing API key" } }),
    })
    const req = { headers: {}, address: "1.2.3.4" }
    const outcome = await check(req, view(req))
    expect(outcome.reply).toEqual({
      status: 401,
      headers: { "Content-Type": "application/json; charset=utf-8" },
      body: '{"error":"missing API key"}',
    })
    expect(limiter.keys).toEqual([])
  })
})

describe("createRateLimit: store failures", () => {
  it("answers 503 with Tollgate-Degraded: closed when the limiter fails closed", async () => {
    const limiter = createLimiter({ policy: tokenBucket({ rate: 5 }), store: failingStore })
    const check = createRateLimit<Req>({ limiter })
    const req = { headers: {}, address: "1.2.3.4" }
    const outcome = await check(req, view(req))
    expect(outcome.reply?.status).toBe(503)
    expect(outcome.reply?.headers["Tollgate-Degraded"]).toBe("closed")
    expect(JSON.parse(outcome.reply!.body)).toMatchObject({ status: 503, code: "ERR_STORE" })
  })

  it("admits with Tollgate-Degraded: open when the limiter fails open", async () => {
    const limiter = createLimiter({
      policy: tokenBucket({ rate: 5 }),
      store: failingStore,
      onStoreError: "open",
    })
    const check = createRateLimit<Req>({ limiter })
    const req = { headers: {}, address: "1.2.3.4" }
    const outcome = await check(req, view(req))
    expect(outcome.reply).toBeUndefined()
    expect(outcome.headers["Tollgate-Degraded"]).toBe("open")
  })

  it("lets a custom unavailable reply through, and other errors propagate", async () => {
    const store = createLimiter({ policy: tokenBucket({ rate: 5 }), store: failingStore })
    const check = createRateLimit<Req>({
      limiter: store,
      unavailable: (_req, error) => ({ status: 500, body: error.code }),
    })
    const req = { headers: {}, address: "1.2.3.4" }
    expect((await check(req, view(req))).reply?.body).toBe("ERR_STORE")
    const broken = createRateLimit<Req>({ limiter: bucket(3), cost: () => 99 })
    await expect(broken(req, view(req))).rejects.toThrow(ArgumentError)
    const thrower = createRateLimit<Req>({
      limiter: {
        limit: () => {
          throw new StoreError("down")
        },
      },
    })
    expect((await thrower(req, view(req))).reply?.status).toBe(503)
  })
})

describe("createRateLimit: headers and replies", () => {
  it("names the denying tier and states its limit when the limiter is multi-tier", async () => {
    const tiered: Limitable<{ user: string }> = {
      limit: (): Decision => ({
        allowed: false,
        limit: 1000,
        remaining: 0,
        retryAfterMs: 30_000,
        resetAfterMs: 3_600_000,
        tier: "model",
      }),
    }
    const check = createRateLimit<Req, { user: string }>({
      limiter: tiered,
      key: (req) => ({ user: req.headers["x-user"] }),
    })
    const req = { headers: { "x-user": "u1" }, address: "1.2.3.4" }
    const outcome = await check(req, view(req))
    expect(outcome.reply?.headers).toMatchObject({
      "RateLimit-Policy": '"model";q=1000',
      RateLimit: '"model";r=0;t=30',
      "Retry-After": "30",
    })
    expect(JSON.parse(outcome.reply!.body)["violated-policies"]).toEqual(["model"])
  })

  it("can turn the draft headers off and the legacy ones on", async () => {
    const clock = manualClock(1_700_000_000_000)
    const check = createRateLimit<Req>({
      limiter: bucket(3),
      standardHeaders: false,
      legacyHeaders: true,
      clock,
    })
    const req = { headers: {}, address: "1.2.3.4" }
    expect((await check(req, view(req))).headers).toEqual({
      "X-RateLimit-Limit": "3",
      "X-RateLimit-Remaining": "2",
      "X-RateLimit-Reset": "1700000020",
    })
  })

  it("returns a release for a concurrency lease", async () => {
    const limiter = createLimiter({ policy: concurrency({ limit: 1 }) })
    const check = createRateLimit<Req>({ limiter })
    const req = { headers: {}, address: "1.2.3.4" }
    const first = await check(req, view(req))
    expect(first.headers["RateLimit-Policy"]).toBe('"default";q=1;qu="concurrent-requests"')
    expect((await check(req, view(req))).reply?.status).toBe(429)
    first.release!()
    expect((await check(req, view(req))).reply).toBeUndefined()
  })

  it("encodes custom replies: strings as text, headers merged case-insensitively", async () => {
    const limiter = bucket(1)
    const check = createRateLimit<Req>({
      limiter,
      deny: (_req, d) => ({
        status: 503,
        headers: { "retry-after": "120", "content-type": "text/html" },
        body: `<p>slow down (${d.remaining})</p>`,
      }),
    })
    const req = { headers: {}, address: "1.2.3.4" }
    await check(req, view(req))
    const { reply } = await check(req, view(req))
    expect(reply?.status).toBe(503)
    expect(reply?.body).toBe("<p>slow down (0)</p>")
    expect(reply?.headers["retry-after"]).toBe("120")
    expect(reply?.headers["Retry-After"]).toBeUndefined()
    expect(reply?.headers["content-type"]).toBe("text/html")
    expect(reply?.headers.RateLimit).toBe('"default";r=0;t=60')
  })
})

describe("createRateLimit: options", () => {
  it.each([
    [{}, "limiter"],
    [{ limiter: {} }, "limiter"],
    [{ limiter: bucket(), key: "ip" }, "key"],
    [{ limiter: bucket(), trustedProxies: -1 }, "trustedProxies"],
    [{ limiter: bucket(), ipv6Prefix: 0 }, "ipv6Prefix"],
    [{ limiter: bucket(), policyName: "" }, "policyName"],
    [{ limiter: bucket(), policyName: "naïve" }, "policyName"],
    [{ limiter: bucket(), forwardedHeader: "x-real-ip" }, "forwardedHeader"],
  ])("%j is refused, naming %s", (options, path) => {
    expect(() => createRateLimit(options as never)).toThrow(ConfigError)
    try {
      createRateLimit(options as never)
    } catch (error) {
      expect((error as ConfigError).path).toBe(path)
    }
  })
})
