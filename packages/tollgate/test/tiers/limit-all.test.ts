// Store.limitAll, the step under every tiered check: all or nothing on every store, one
// key checked twice in one call counts twice, and MemoryStore's one-pass version puts
// back exactly what it changed when a check denies.

import fc from "fast-check"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import {
  concurrency,
  createTieredLimiter,
  type Decision,
  fixedWindow,
  MemoryStore,
  manualClock,
  type Policy,
  slidingWindowCounter,
  slidingWindowLog,
  tokenBucket,
  UnsupportedError,
} from "../../src/index.js"
import type { Namespace, Store } from "../../src/stores/store.js"
import { prefix, STORES } from "./stores.js"

const NOW = 1_780_000_000_000.5

/** Limits of 5 over an hour: nothing refills or expires while a test runs. */
const POLICIES: Policy[] = [
  tokenBucket({ rate: 5, period: "1h", burst: 5 }),
  slidingWindowLog({ limit: 5, window: "1h" }),
  slidingWindowCounter({ limit: 5, window: "1h" }),
  fixedWindow({ limit: 5, window: "1h" }),
  concurrency({ limit: 5, leaseTimeout: "1h" }),
]

/** open: the namespace of `policy` on `store`, or undefined where the store has no such kind. */
function open(store: Store, policy: Policy): Namespace | undefined {
  try {
    return store.namespace(prefix(), policy)
  } catch (error) {
    if (error instanceof UnsupportedError) return undefined
    throw error
  }
}

/** state: what a key holds, as peek reports it. */
async function state(ns: Namespace, key: string): Promise<Partial<Decision>> {
  const d = await ns.peek(key, NOW)
  return { remaining: d.remaining, resetAfterMs: d.resetAfterMs }
}

describe.each(STORES)("limitAll on $name", (storeCase) => {
  beforeAll(() => storeCase.start(), 60_000)
  afterAll(() => storeCase.stop())

  it("counts one key checked twice together: together over the limit, neither is counted", async () => {
    const store = storeCase.store()
    let tried = 0
    for (const policy of POLICIES) {
      const ns = open(store, policy)
      if (ns === undefined) continue
      tried++
      const step = policy.kind
      expect((await ns.limit("old", 1, NOW)).allowed, step).toBe(true)
      for (const key of ["old", "new"]) {
        const before = await state(ns, key)
        // Each alone would pass (3 of 5, or of 4 left); together they would not.
        const twice = await store.limitAll(
          [
            { namespace: ns, key, cost: 3 },
            { namespace: ns, key, cost: 3 },
          ],
          NOW,
        )
        expect(
          twice.map((d) => d.allowed),
          `${step} ${key}`,
        ).toEqual([true, false])
        expect(twice[0].lease, `${step} ${key}: no lease from a denied call`).toBeUndefined()
        expect(await state(ns, key), `${step} ${key}: nothing counted`).toEqual(before)
        // Within the limit together: both admitted, the second seeing the first.
        const both = await store.limitAll(
          [
            { namespace: ns, key, cost: 1 },
            { namespace: ns, key, cost: 1 },
          ],
          NOW,
        )
        expect(
          both.map((d) => d.allowed),
          `${step} ${key}`,
        ).toEqual([true, true])
        expect(both[1].remaining, `${step} ${key}`).toBe(both[0].remaining - 1)
        expect((await state(ns, key)).remaining, `${step} ${key}`).toBe(both[1].remaining)
      }
    }
    expect(tried).toBeGreaterThanOrEqual(3)
  })

  it("consumes every check or none, across algorithms", async () => {
    const store = storeCase.store()
    const spaces = POLICIES.map((p) => open(store, p)).filter((ns) => ns !== undefined)
    const checks = (cost: number) => spaces.map((namespace) => ({ namespace, key: "k", cost }))
    expect((await store.limitAll(checks(2), NOW)).every((d) => d.allowed)).toBe(true)
    // The last namespace now denies a cost of 4; the others would each admit 3.
    const last = spaces[spaces.length - 1]
    await last.limit("k", 1, NOW)
    const before = await Promise.all(spaces.map((ns) => state(ns, "k")))
    const denied = await store.limitAll(
      spaces.map((namespace, i) => ({
        namespace,
        key: "k",
        cost: i === spaces.length - 1 ? 4 : 3,
      })),
      NOW,
    )
    expect(denied.map((d) => d.allowed)).toEqual(spaces.map((_, i) => i < spaces.length - 1))
    expect(denied.some((d) => d.lease !== undefined)).toBe(false)
    expect(await Promise.all(spaces.map((ns) => state(ns, "k")))).toEqual(before)
  })
})

describe("MemoryStore.limitAll in one pass", () => {
  it("puts back exactly what earlier checks changed when a later one denies", () => {
    const store = new MemoryStore()
    const spaces = POLICIES.map((p) => store.namespace("undo", p))
    // Give every key some history: partly used, at different times.
    spaces.forEach((ns, i) => {
      ns.limit("a", 1 + (i % 2), NOW - 1000 * (i + 1))
      ns.limit("b", 2, NOW - 500)
    })
    const keys = ["a", "b", "c"]
    const snapshot = () => spaces.flatMap((ns) => keys.map((k) => ns.peek(k, NOW)))
    const before = snapshot()
    const sizes = spaces.map((ns) => ns.size())
    // Every check but the last would pass; the last (b: 2 used, asks 4) denies.
    const ds = store.limitAll(
      [
        ...spaces.flatMap((namespace) => [
          { namespace, key: "a", cost: 1 },
          { namespace, key: "c", cost: 2 },
          { namespace, key: "a", cost: 1 },
        ]),
        { namespace: spaces[0], key: "b", cost: 4 },
      ],
      NOW,
    )
    expect(ds.slice(0, -1).every((d) => d.allowed)).toBe(true)
    expect(ds[ds.length - 1].allowed).toBe(false)
    expect(snapshot()).toEqual(before)
    expect(spaces.map((ns) => ns.size())).toEqual(sizes) // "c" was never placed
  })

  it("decides token buckets, windows and counters on distinct keys as the general pass does", () => {
    // Such calls take a pass of their own (no per-check records). The same calls with one
    // more check, a sliding window log asked for nothing, take the general pass; both
    // must answer and leave the state alike, evictions included.
    const policies: Policy[] = [
      tokenBucket({ rate: 3, period: "10s", burst: 4 }),
      slidingWindowCounter({ limit: 4, window: "10s" }),
      fixedWindow({ limit: 4, window: "10s" }),
      fixedWindow({ limit: 5, window: "day", timeZone: "America/New_York" }),
      tokenBucket({ rate: 2, period: "10s", burst: 3 }), // the first one's prefix: shared state
    ]
    const open = (store: MemoryStore) =>
      policies.map((p, i) => store.namespace(i === 4 ? "p0" : `p${i}`, p))
    const check = fc.record({
      ns: fc.integer({ min: 0, max: policies.length - 1 }),
      key: fc.constantFrom("a", "b"),
      cost: fc.constantFrom(0, 1, 1, 2, 3),
    })
    const op = fc.oneof(
      fc.record({ advance: fc.integer({ min: 1, max: 6000 }) }),
      fc.record({ checks: fc.array(check, { minLength: 1, maxLength: 4 }) }),
    )
    fc.assert(
      fc.property(fc.constantFrom(3, 1000), fc.array(op, { maxLength: 40 }), (maxKeys, ops) => {
        const fast = new MemoryStore({ maxKeys })
        const general = new MemoryStore({ maxKeys })
        const a = open(fast)
        const b = open(general)
        const nothing = general.namespace("nothing", slidingWindowLog({ limit: 1, window: "1s" }))
        let now = NOW
        ops.forEach((o, i) => {
          if ("advance" in o) {
            now += o.advance
            return
          }
          const step = `op ${i}: ${JSON.stringify(o)}`
          const da = fast.limitAll(
            o.checks.map((c) => ({ namespace: a[c.ns], key: c.key, cost: c.cost })),
            now,
          )
          const db = general.limitAll(
            [
              ...o.checks.map((c) => ({ namespace: b[c.ns], key: c.key, cost: c.cost })),
              { namespace: nothing, key: "k", cost: 0 },
            ],
            now,
          )
          expect(da, step).toEqual(db.slice(0, -1))
          for (let n = 0; n < policies.length; n++) {
            for (const key of ["a", "b"]) {
              expect(a[n].peek(key, now), `${step}, ${n} ${key}`).toEqual(b[n].peek(key, now))
            }
          }
          expect(fast.size, step).toBe(general.size)
        })
      }),
      { numRuns: 400 },
    )
  })

  it("hands out leases only when the whole call is admitted", () => {
    const store = new MemoryStore()
    const leases = store.namespace("leases", concurrency({ limit: 2, leaseTimeout: "1m" }))
    const bucket = store.namespace("leases", tokenBucket({ rate: 1, period: "1h", burst: 1 }))
    const call = () =>
      store.limitAll(
        [
          { namespace: leases, key: "k", cost: 1 },
          { namespace: bucket, key: "k", cost: 1 },
        ],
        NOW,
      )
    const first = call()
    expect(first.map((d) => d.allowed)).toEqual([true, true])
    expect(first[0].lease).toMatchObject({ key: "k", cost: 1, expiresAt: NOW + 60_000 })
    const second = call() // the bucket is empty: denied, and no lease is taken
    expect(second.map((d) => d.allowed)).toEqual([true, false])
    expect(second[0].lease).toBeUndefined()
    expect(leases.peek("k", NOW).remaining).toBe(1)
  })

  it("refuses a foreign namespace before changing anything", () => {
    const store = new MemoryStore()
    const ns = store.namespace("p", tokenBucket({ rate: 1, period: "1h", burst: 3 }))
    const foreign = new MemoryStore().namespace(
      "p",
      tokenBucket({ rate: 1, period: "1h", burst: 3 }),
    )
    expect(() =>
      store.limitAll(
        [
          { namespace: ns, key: "k", cost: 1 },
          { namespace: foreign, key: "k", cost: 1 },
        ],
        NOW,
      ),
    ).toThrow(expect.objectContaining({ code: "ERR_ARGUMENT", argument: "checks[1].namespace" }))
    expect(ns.peek("k", NOW).remaining).toBe(3)
    expect(ns.size()).toBe(0)
    expect(store.limitAll([], NOW)).toEqual([])
  })

  it("decides a long call and a short one after it independently", () => {
    const store = new MemoryStore()
    const ns = store.namespace("p", fixedWindow({ limit: 10, window: "1h" }))
    const many = Array.from({ length: 8 }, (_, i) => ({ namespace: ns, key: `k${i}`, cost: 1 }))
    expect(store.limitAll(many, NOW).every((d) => d.allowed)).toBe(true)
    const two = store.limitAll(
      [
        { namespace: ns, key: "k0", cost: 9 },
        { namespace: ns, key: "k9", cost: 1 },
      ],
      NOW,
    )
    expect(two.map((d) => d.remaining)).toEqual([0, 9])
    expect(ns.size()).toBe(9)
  })
})

describe("tiered keys and fields", () => {
  it("keeps a two-field key's count per pair, however many second values a first one has", () => {
    const store = new MemoryStore()
    const g = createTieredLimiter({
      tiers: { userModel: { key: ["user", "model"], limit: { limit: 1, window: "1h" } } },
      store,
      clock: manualClock(NOW),
    })
    const models = ["m1", "m2", "m3", "m4", "m5", "m6", "m7"]
    for (const model of models) expect(g.limit({ user: "u", model }).allowed, model).toBe(true)
    // Every pair is spent, also those made longest ago.
    for (const model of [...models].reverse()) {
      expect(g.limit({ user: "u", model }).allowed, model).toBe(false)
    }
    expect(g.limit({ user: "u2", model: "m1" }).allowed).toBe(true)
    // The keys are the documented <length>:<value> pairs, in the tier's namespace.
    const ns = store.namespace(
      "tiers:userModel@3600000ms",
      slidingWindowCounter({ limit: 1, window: "1h" }),
    )
    for (const model of models) expect(ns.peek(`1:u2:${model}`, NOW).remaining, model).toBe(0)
    expect(ns.size()).toBe(models.length + 1)
  })

  it("reads each request field once per check", () => {
    const g = createTieredLimiter({
      tiers: {
        user: { key: ["user"], limit: { limit: 10, window: "1h" } },
        userModel: { key: ["user", "model"], limit: { limit: 10, window: "1h" } },
        tokens: { key: ["user"], budget: "cost", limit: { limit: 1000, window: "1m" } },
      },
      clock: manualClock(NOW),
    })
    let reads = 0
    const request = {
      get user() {
        reads++
        return "u"
      },
      model: "m",
    }
    expect(g.limit(request, { cost: 5 }).allowed).toBe(true)
    expect(reads).toBe(1)
    expect(g.limit(request, { cost: 5 }).tiers.user.remaining).toBe(8)
    expect(reads).toBe(2)
  })

  it("a new config takes effect at once for requests resolved before it", () => {
    const g = createTieredLimiter({
      tiers: { user: { key: ["user"] } },
      plans: { free: { limits: { user: { limit: 1, window: "1h" } } } },
      defaultPlan: "free",
      clock: manualClock(NOW),
    })
    expect(g.limit({ user: "u" }).allowed).toBe(true)
    expect(g.limit({ user: "u" }).allowed).toBe(false)
    g.setConfig({
      tiers: { user: { key: ["user"] } },
      plans: { free: { limits: { user: { limit: 3, window: "1h" } } } },
      defaultPlan: "free",
    })
    expect(g.limit({ user: "u" })).toMatchObject({ allowed: true, limit: 3, remaining: 1 })
  })
})
