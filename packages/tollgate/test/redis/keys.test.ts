// Keys: user keys with braces, colons, newlines, prototype names, astral characters and
// 512 characters are ordinary keys, isolated from each other, from other prefixes and
// from other algorithms; the Cluster slot of a key's state depends on the user key alone.

import fc from "fast-check"
import { Cluster, Redis } from "ioredis"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { MAX_WINDOW_MS } from "../../src/core/policy.js"
import {
  concurrency,
  createLimiter,
  createTieredLimiter,
  fixedWindow,
  type Policy,
  RedisStore,
  slidingWindowCounter,
  slidingWindowLog,
  tokenBucket,
} from "../../src/index.js"
import { encodePart, SLOTS, slotOf, stateKey, TAGS } from "../../src/stores/redis/key-layout.js"
import {
  keysWithoutTtl,
  type RedisClusterServers,
  type RedisServer,
  startCluster,
  startRedis,
} from "../support/redis.js"

const ODD_KEYS = [
  "{",
  "}",
  "{}",
  "{x}",
  "}{",
  ":",
  "a:b",
  "a:{b}:c",
  "line\nbreak",
  "\r\n",
  "__proto__",
  "constructor",
  "%7B",
  "%",
  "😀",
  "𝄞{😀}",
  "x".repeat(512),
  "😀".repeat(256),
  "ключ",
  " ",
]

/** decodePart reverses encodePart (test-only), to show the encoding loses nothing. */
function decodePart(encoded: string): string {
  return encoded.replace(/%(25|3A|7B|7D|u[0-9A-F]{4})/g, (_, code: string) =>
    code.startsWith("u")
      ? String.fromCharCode(Number.parseInt(code.slice(1), 16))
      : String.fromCharCode(Number.parseInt(code, 16)),
  )
}

describe("key encoding", () => {
  it("leaves no separator or brace and loses nothing", () => {
    fc.assert(
      fc.property(
        fc.string({
          unit: fc.constantFrom("a", ":", "{", "}", "%", "\n", "😀", "\uD800", "\uDC00", "7", "B"),
        }),
        (s) => {
          const e = encodePart(s)
          expect(e).not.toMatch(/[:{}]/)
          // Well-formed UTF-16: every surrogate is part of a pair.
          expect(e).not.toMatch(
            /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/,
          )
          expect(decodePart(e)).toBe(s)
        },
      ),
      { numRuns: 2000 },
    )
  })

  it("maps distinct (prefix, algorithm, key) triples to distinct Redis keys", () => {
    const parts = ["a", "a:b", "b", "b:c", "{", "}", "a:fw", "fw", ":", "%3A", "{a}"]
    const seen = new Map<string, string>()
    for (const prefix of parts) {
      for (const tag of Object.values(TAGS)) {
        for (const key of parts) {
          const redisKey = stateKey(encodePart(prefix), tag, encodePart(key))
          const triple = JSON.stringify([prefix, tag, key])
          expect(seen.get(redisKey) ?? triple, redisKey).toBe(triple)
          seen.set(redisKey, triple)
        }
      }
    }
  })

  it("keeps lone surrogates apart (UTF-8 would merge them)", () => {
    expect(encodePart("\uD800")).not.toBe(encodePart("\uDFFF"))
    expect(Buffer.from(encodePart("\uD800"))).not.toEqual(Buffer.from(encodePart("\uDFFF")))
  })
})

const POLICIES: Policy[] = [
  tokenBucket({ rate: 1, period: "1h", burst: 1 }),
  slidingWindowLog({ limit: 1, window: "1h" }),
  slidingWindowCounter({ limit: 1, window: "1h" }),
  fixedWindow({ limit: 1, window: "1h" }),
  concurrency({ limit: 1, leaseTimeout: "1h" }),
]

let single: RedisServer
let cluster: RedisClusterServers
let singleClient: Redis
let clusterClient: Cluster

beforeAll(async () => {
  ;[single, cluster] = await Promise.all([startRedis(), startCluster()])
  singleClient = new Redis({ host: single.host, port: single.port })
  clusterClient = new Cluster(cluster.nodes)
})

afterAll(async () => {
  singleClient?.disconnect()
  clusterClient?.disconnect()
  await Promise.all([single?.stop(), cluster?.stop()])
})

describe.each(["single", "cluster"] as const)("odd keys on %s", (topology) => {
  const client = () => (topology === "single" ? singleClient : clusterClient)

  for (const policy of POLICIES) {
    it(`${policy.kind}: every key is its own`, async () => {
      const store = new RedisStore({ client: client() })
      const limiter = createLimiter({ policy, store, prefix: `keys:{${policy.kind}}` })
      // Each key admits once; every other key is still untouched afterwards.
      for (const [i, key] of ODD_KEYS.entries()) {
        expect((await limiter.limit(key)).allowed, `first request for key #${i}`).toBe(true)
        expect((await limiter.limit(key)).allowed, `second request for key #${i}`).toBe(false)
      }
      // Another prefix that looks like a split of this one, and another algorithm, share nothing.
      const other = createLimiter({ policy, store, prefix: "keys", maxKeyLength: 1024 })
      for (const key of ODD_KEYS) {
        expect((await other.peek(`{${policy.kind}}:${key}`)).remaining).toBe(1)
      }
      const otherKind = POLICIES.find((p) => p.kind !== policy.kind)!
      const sibling = createLimiter({ policy: otherKind, store, prefix: `keys:{${policy.kind}}` })
      for (const key of ODD_KEYS) expect((await sibling.peek(key)).remaining).toBe(1)
    })
  }

  it("leaves no key without a TTL", async () => {
    const servers = topology === "single" ? [single] : cluster.nodes
    const { scanned, missing } = await keysWithoutTtl(servers, "keys*")
    expect(scanned).toBe(POLICIES.length * ODD_KEYS.length)
    expect(missing).toEqual([])
  })
})

describe("bad keys over RedisStore", () => {
  it("are answered with a rejected promise (ArgumentError), never a throw", async () => {
    const store = new RedisStore({ client: singleClient })
    const limiter = createLimiter({ policy: tokenBucket({ rate: 1 }), store, prefix: "bad" })
    const gateway = createTieredLimiter({
      tiers: { user: { key: ["user"], limit: { limit: 5, window: "1m" } } },
      store,
      prefix: "bad",
    })
    const calls: [string, () => unknown][] = [
      ['limit("")', () => limiter.limit("")],
      ["limit(k, { cost: -1 })", () => limiter.limit("k", { cost: -1 })],
      ['peek("")', () => limiter.peek("")],
      ['reset("")', () => limiter.reset("")],
      ['tiered limit({ user: "" })', () => gateway.limit({ user: "" })],
      ["tiered usage(null)", () => gateway.usage(null as never)],
      ["tiered reset({ user: {} })", () => gateway.reset({ user: {} as never })],
      [
        "tiered reserve(k, { cost: NaN })",
        () => gateway.reserve({ user: "u" }, { cost: Number.NaN }),
      ],
    ]
    for (const [name, call] of calls) {
      let answer: unknown
      expect(() => {
        answer = call()
      }, name).not.toThrow()
      expect(answer, name).toBeInstanceOf(Promise)
      await expect(answer, name).rejects.toMatchObject({ code: "ERR_ARGUMENT" })
    }
  })
})

describe("the longest windows", () => {
  it("work on Redis as on the memory store (expiry times stay within Redis's range)", async () => {
    const store = new RedisStore({ client: singleClient })
    for (const policy of [
      tokenBucket({ rate: 1, period: MAX_WINDOW_MS, burst: 1 }),
      slidingWindowLog({ limit: 1, window: MAX_WINDOW_MS }),
      slidingWindowCounter({ limit: 1, window: MAX_WINDOW_MS }),
      fixedWindow({ limit: 1, window: MAX_WINDOW_MS }),
      concurrency({ limit: 1, leaseTimeout: MAX_WINDOW_MS }),
    ]) {
      const limiter = createLimiter({ policy, store, prefix: "longest" })
      expect((await limiter.limit("k")).allowed, policy.kind).toBe(true)
      expect((await limiter.limit("k")).allowed, policy.kind).toBe(false)
    }
  })
})

describe("Cluster slots", () => {
  it("depend on the user key alone, as Redis computes them", async () => {
    const node = new Redis({ host: cluster.nodes[0].host, port: cluster.nodes[0].port })
    try {
      for (const key of [...ODD_KEYS, "user:42", "a", "b"]) {
        const encoded = encodePart(key)
        const expected = slotOf(encoded)
        expect(expected).toBeLessThan(SLOTS)
        for (const prefix of ["p", "p:{q}", "{"]) {
          for (const tag of Object.values(TAGS)) {
            const redisKey = stateKey(encodePart(prefix), tag, encoded)
            expect(
              await node.cluster("KEYSLOT", redisKey),
              `${prefix} ${tag} ${JSON.stringify(key)}`,
            ).toBe(expected)
          }
        }
      }
    } finally {
      node.disconnect()
    }
  })

  it("spread a namespace over every master", async () => {
    const store = new RedisStore({ client: clusterClient })
    const limiter = createLimiter({
      policy: tokenBucket({ rate: 1, period: "1h", burst: 2 }),
      store,
      prefix: "spread",
    })
    const keys = Array.from({ length: 300 }, (_, i) => `user:${i}`)
    const first = await Promise.all(keys.map((k) => limiter.limit(k, { cost: 2 })))
    expect(first.every((d) => d.allowed)).toBe(true)
    const second = await Promise.all(keys.map((k) => limiter.limit(k)))
    expect(second.some((d) => d.allowed)).toBe(false)
    for (const node of cluster.nodes) {
      const direct = new Redis({ host: node.host, port: node.port })
      try {
        expect(await direct.dbsize()).toBeGreaterThan(0)
      } finally {
        direct.disconnect()
      }
    }
  })
})
