// The scripts as Redis sees them: the registry's SHA1s are Redis's own, the function
// library and the scripts decide alike, a flushed script cache or function library is
// reloaded transparently, a call re-sent after a lost reply does not run twice,
// TTLs match how long state matters, and a denial writes nothing.

import { Redis } from "ioredis"
import { describe, expect, it } from "vitest"
import {
  concurrency,
  createLimiter,
  fixedWindow,
  type Policy,
  RedisStore,
  StoreError,
  slidingWindowCounter,
  slidingWindowLog,
  tokenBucket,
} from "../../src/index.js"
import { scripts } from "../../src/stores/redis/scripts.js"
import { startCuttingProxy } from "../support/cutting-proxy.js"
import { keysWithoutTtl } from "../support/redis.js"
import { useRedis } from "../support/redis-hooks.js"

const fixture = useRedis()

const ALL: Policy[] = [
  tokenBucket({ rate: 10, burst: 10 }),
  slidingWindowLog({ limit: 10, window: "1m" }),
  slidingWindowCounter({ limit: 10, window: "1m" }),
  fixedWindow({ limit: 10, window: "1m" }),
  concurrency({ limit: 10, leaseTimeout: "1m" }),
]

describe("script registry", () => {
  it("has a script per operation and policy kind, each named by the SHA1 Redis computes", async () => {
    const registry = scripts()
    expect([...registry.keys()].sort()).toEqual(
      [
        ...["limit", "peek"].flatMap((op) =>
          ["tb", "fw", "swc", "swl", "cc"].map((t) => `${op}.${t}`),
        ),
        ...["tb", "fw", "swc", "swl"].map((t) => `adjust.${t}`),
        "reserve.tb",
        "cancel.tb",
        "release.cc",
        "limit-all",
        "refund",
      ].sort(),
    )
    for (const [name, s] of registry) {
      expect(await fixture.client.script("LOAD", s.source), name).toBe(s.sha)
    }
  })

  it("loads one function library per server; with functions: false the same operations run as scripts", async () => {
    const stats = async () => {
      const info = await fixture.client.info("commandstats")
      const count = (c: string) =>
        Number(new RegExp(`cmdstat_${c}:calls=(\\d+)`).exec(info)?.[1] ?? 0)
      return { fcall: count("fcall"), scripts: count("evalsha") + count("eval") }
    }
    const decide = async (functions: boolean) => {
      const out: unknown[] = []
      for (const policy of ALL) {
        const store = new RedisStore({ client: fixture.client, functions, time: "client" })
        const ns = store.namespace(`modes-${functions}-${policy.kind}`, policy)
        const now = 1_780_000_000_000
        for (let i = 0; i < 12; i++) out.push(await ns.limit("k", 1, now + i * 100))
        out.push(await ns.peek("k", now + 1200))
      }
      // Lease ids differ between stores; everything else must not.
      return out.map((d) => ({ ...(d as object), lease: undefined }))
    }
    await fixture.client.config("RESETSTAT")
    const withFunctions = await decide(true)
    expect(await stats()).toMatchObject({ scripts: 0 })
    await fixture.client.config("RESETSTAT")
    const withScripts = await decide(false)
    expect(await stats()).toMatchObject({ fcall: 0 })
    expect(withScripts).toEqual(withFunctions)
    const libraries = (await fixture.client.call("FUNCTION", "LIST")) as unknown[][]
    const names = libraries.map((l) => String(l[1]))
    expect(names.filter((n) => n.startsWith("tollgate_"))).toHaveLength(1)
  })

  it("sends the library once per server for every store on one client", async () => {
    const client = new Redis({ host: fixture.server.host, port: fixture.server.port })
    try {
      await fixture.client.config("RESETSTAT")
      for (let i = 0; i < 3; i++) {
        const store = new RedisStore({ client })
        const limiter = createLimiter({ policy: ALL[i], store, prefix: `once-${i}` })
        expect((await limiter.limit("k")).allowed).toBe(true)
      }
      const info = await fixture.client.info("commandstats")
      expect(/cmdstat_function\|load:calls=(\d+)/.exec(info)?.[1]).toBe("1")
      expect(/cmdstat_fcall:calls=(\d+)/.exec(info)?.[1]).toBe("3")
    } finally {
      client.disconnect()
    }
  })

  it("falls back to scripts where functions are refused, losing no call", async () => {
    // A user that may not load or call functions (as on a server before Redis 7, whose
    // answer is "unknown command" instead): the FUNCTION LOAD and the FCALLs sent behind
    // it are refused without running, and every call is decided by a script instead.
    await fixture.client.call(
      "ACL",
      "SETUSER",
      "nofunctions",
      "on",
      ">secret",
      "~*",
      "+@all",
      "-function",
      "-fcall",
      "-fcall_ro",
    )
    const client = new Redis({
      host: fixture.server.host,
      port: fixture.server.port,
      username: "nofunctions",
      password: "secret",
    })
    try {
      await fixture.client.config("RESETSTAT")
      const store = new RedisStore({ client })
      const limiter = createLimiter({ policy: ALL[0], store, prefix: "nofn" })
      const decisions = await Promise.all(Array.from({ length: 15 }, () => limiter.limit("k")))
      expect(decisions.filter((d) => d.allowed)).toHaveLength(10)
      expect((await limiter.limit("k")).allowed).toBe(false)
      const info = await fixture.client.info("commandstats")
      const calls = (c: string) =>
        Number(new RegExp(`cmdstat_${c}:calls=(\\d+)`).exec(info)?.[1] ?? 0)
      expect(calls("evalsha") + calls("eval")).toBeGreaterThan(0)
      expect(calls("fcall")).toBe(0)
    } finally {
      client.disconnect()
      await fixture.client.call("ACL", "DELUSER", "nofunctions")
    }
  })

  it("recovers from SCRIPT FLUSH and FUNCTION FLUSH, also in the middle of a burst", async () => {
    for (const [policy, functions] of ALL.flatMap((p) => [
      [p, true] as const,
      [p, false] as const,
    ])) {
      const limiter = createLimiter({
        policy,
        store: new RedisStore({ client: fixture.client, functions }),
        prefix: `flush-${policy.kind}-${functions}`,
      })
      const flush = async () => {
        await fixture.client.script("FLUSH")
        await fixture.client.call("FUNCTION", "FLUSH")
      }
      expect((await limiter.limit("k")).allowed).toBe(true)
      await flush()
      expect((await limiter.limit("k")).allowed).toBe(true)
      // Flush while 200 requests from 20 connections are in flight: all are answered, and
      // exactly the allowance is admitted.
      const others = Array.from(
        { length: 20 },
        () => new Redis({ host: fixture.server.host, port: fixture.server.port }),
      )
      try {
        const limiters = others.map((c) =>
          createLimiter({
            policy,
            store: new RedisStore({ client: c, functions }),
            prefix: `flush2-${policy.kind}-${functions}`,
          }),
        )
        const pending = Array.from({ length: 200 }, (_, i) =>
          limiters[i % limiters.length].limit("k"),
        )
        await flush()
        const decisions = await Promise.all(pending)
        expect(decisions.filter((d) => d.allowed).length, `${policy.kind} ${functions}`).toBe(10)
      } finally {
        for (const c of others) c.disconnect()
      }
    }
  })
})

describe("options", () => {
  it("rejects bad options with a ConfigError naming the field", () => {
    const bad: [unknown, string][] = [
      [{}, "client"],
      [{ client: {} }, "client"],
      [{ client: fixture.client, time: "local" }, "time"],
      [{ client: fixture.client, maxBatch: 0 }, "maxBatch"],
      [{ client: fixture.client, replayWindow: "soon" }, "replayWindow"],
      [{ client: fixture.client, guardPrefix: "" }, "guardPrefix"],
      [{ client: fixture.client, functions: "yes" }, "functions"],
    ]
    for (const [options, path] of bad) {
      expect(() => new RedisStore(options as never), path).toThrow(
        expect.objectContaining({ code: "ERR_CONFIG", path }),
      )
    }
  })
})

describe("batching", () => {
  it("decides requests of one tick in few script calls, each as if alone", async () => {
    const store = new RedisStore({ client: fixture.client, maxBatch: 100 })
    const limiter = createLimiter({
      policy: tokenBucket({ rate: 1, period: "1h", burst: 300 }),
      store,
      prefix: "batch",
    })
    await limiter.limit("warm-up") // the library loaded (again, after the flushes above)
    await fixture.client.config("RESETSTAT")
    const decisions = await Promise.all(
      Array.from({ length: 1000 }, (_, i) => limiter.limit(`k${i % 2}`)),
    )
    const stats = await fixture.client.info("commandstats")
    // Script calls: FCALL of the function library (a script, EVALSHA or EVAL, on servers
    // without functions).
    let calls = 0
    for (const command of ["fcall", "evalsha", "eval"]) {
      calls += Number(new RegExp(`cmdstat_${command}:calls=(\\d+)`).exec(stats)?.[1] ?? 0)
    }
    // One request alone (nothing was outstanding), then the rest in calls of at most 100.
    expect(calls).toBeGreaterThanOrEqual(10)
    expect(calls).toBeLessThanOrEqual(12)
    // In arrival order, per key: 300 admitted each, remaining counting down.
    for (const key of [0, 1]) {
      const mine = decisions.filter((_, i) => i % 2 === key)
      expect(mine.filter((d) => d.allowed).length).toBe(300)
      expect(mine.slice(0, 300).map((d) => d.remaining)).toEqual(
        Array.from({ length: 300 }, (_, i) => 299 - i),
      )
    }
  })
})

describe("replay guard", () => {
  it("refuses a call the client re-sends after losing its reply, so it counts once", async () => {
    const proxy = await startCuttingProxy(fixture.server)
    // ioredis's default: unfulfilled commands are sent again after a reconnect.
    const resending = new Redis({
      host: proxy.host,
      port: proxy.port,
      autoResendUnfulfilledCommands: true,
    })
    try {
      for (const policy of ALL) {
        const limiter = createLimiter({
          policy,
          store: new RedisStore({ client: resending }),
          prefix: `replay-${policy.kind}`,
          timeout: 10_000,
        })
        await limiter.limit("warm-up") // scripts loaded, connection ready
        proxy.cutNextReply()
        const lost = await limiter.limit("k", { cost: 3 }).then(
          (d) => d,
          (error: unknown) => error,
        )
        const seen = `${policy.kind}; replies cut: ${proxy.dropped.join(" | ")}`
        expect(lost, seen).toBeInstanceOf(StoreError)
        expect((lost as Error).message, seen).toMatch(/ran once/)
        // The call ran exactly once: 3 of 10 consumed, not 6.
        const after = await limiter.peek("k")
        expect(after.remaining, seen).toBe(7)
      }
      expect(proxy.cuts).toBe(ALL.length)
    } finally {
      resending.disconnect()
      await proxy.close()
    }
  })
})

describe("state in Redis", () => {
  it("gives each key a TTL equal to how long its state matters", async () => {
    const store = new RedisStore({ client: fixture.client })
    const ttl = async (key: string) => fixture.client.pttl(key)
    // Token bucket: 2 of 10 tokens at 100 ms each -> full again in 200 ms. The TTL is
    // set to twice that, so that the next writes fit in it and keep it.
    const tb = createLimiter({ policy: tokenBucket({ rate: 10, burst: 10 }), store, prefix: "ttl" })
    const first = (await tb.limit("k", { cost: 2 })).resetAfterMs
    const tbTtl = await ttl("ttl:tb:{k}")
    expect(tbTtl).toBeGreaterThan(2 * first - 100)
    expect(tbTtl).toBeLessThanOrEqual(Math.ceil(2 * first))
    await tb.limit("k", { cost: 1 }) // full again in 300 ms: within the TTL, which stays
    expect(await ttl("ttl:tb:{k}")).toBeLessThanOrEqual(tbTtl)
    // Full in 500 ms: past the TTL, which becomes twice that.
    const third = (await tb.limit("k", { cost: 2 })).resetAfterMs
    expect(await ttl("ttl:tb:{k}")).toBeGreaterThan(Math.max(2 * third - 100, tbTtl))
    expect(await ttl("ttl:tb:{k}")).toBeLessThanOrEqual(Math.ceil(2 * third))
    // Sliding log: a window longer than its newest entry stays in it, so that the writes
    // of the next window need not extend it.
    const log = createLimiter({
      policy: slidingWindowLog({ limit: 5, window: "30s" }),
      store,
      prefix: "ttl",
    })
    await log.limit("k")
    expect(await ttl("ttl:swl:{k}")).toBeGreaterThan(59_000)
    expect(await ttl("ttl:swl:{k}")).toBeLessThanOrEqual(60_000)
    // Sliding counter: until the current window has also slid out (at most 2 windows).
    const counter = createLimiter({
      policy: slidingWindowCounter({ limit: 5, window: "30s" }),
      store,
      prefix: "ttl",
    })
    const reset = (await counter.limit("k")).resetAfterMs
    const swcTtl = await ttl("ttl:swc:{k}")
    expect(Math.abs(swcTtl - reset)).toBeLessThan(100)
    expect(swcTtl).toBeLessThanOrEqual(60_000)
    await counter.limit("k") // the same window: the TTL is kept as it is
    expect(await ttl("ttl:swc:{k}")).toBeLessThanOrEqual(swcTtl)
    // Fixed window: until the window ends.
    const fixed = createLimiter({
      policy: fixedWindow({ limit: 5, window: "30s" }),
      store,
      prefix: "ttl",
    })
    const end = (await fixed.limit("k")).resetAfterMs
    expect(Math.abs((await ttl("ttl:fw:{k}")) - end)).toBeLessThan(100)
    // Concurrency: until the last lease expires.
    const cc = createLimiter({
      policy: concurrency({ limit: 5, leaseTimeout: "20s" }),
      store,
      prefix: "ttl",
    })
    const leased = await cc.limit("k")
    expect(await ttl("ttl:cc:{k}")).toBeGreaterThan(19_000)
    await leased.lease?.release()
    expect(await fixture.client.exists("ttl:cc:{k}")).toBe(0) // nothing in flight: no state
    // Request ids: for the policy's window.
    await log.limit("k", { requestId: "once" })
    expect(await ttl("ttl:swl:{k}:r:once")).toBeGreaterThan(29_000)
    // A full bucket has no state at all.
    await tb.limit("fresh", { cost: 0 })
    expect(await fixture.client.exists("ttl:tb:{fresh}")).toBe(0)
  })

  it("writes nothing for a denied request", async () => {
    const store = new RedisStore({ client: fixture.client })
    for (const policy of [
      tokenBucket({ rate: 1, period: "1h", burst: 2 }),
      slidingWindowLog({ limit: 2, window: "1h" }),
      slidingWindowCounter({ limit: 2, window: "1h" }),
      fixedWindow({ limit: 2, window: "1h" }),
      concurrency({ limit: 2, leaseTimeout: "1h" }),
    ]) {
      const limiter = createLimiter({ policy, store, prefix: "deny" })
      await limiter.limit("k", { cost: 2 })
      const dump = async () => {
        const keys = (await fixture.client.keys("deny:*")).sort()
        return Promise.all(keys.map(async (k) => [k, await fixture.client.dump(k)]))
      }
      const before = await dump()
      for (let i = 0; i < 5; i++) expect((await limiter.limit("k")).allowed).toBe(false)
      expect(await dump(), policy.kind).toEqual(before)
    }
  })

  it("leaves no key without a TTL", async () => {
    const { scanned, missing } = await keysWithoutTtl([fixture.server], "*")
    expect(scanned).toBeGreaterThan(10)
    expect(missing).toEqual([])
  })
})
