// A tiered limiter on a MemoryStore checks the common case (tiers enforcing, without a
// penalty; no request id) with one limitAll and no per-check records; everything else
// goes the general way (the Checker). Both must decide alike: here a limiter on a
// MemoryStore and one on the same state behind promises (always the general way) take
// the same random requests, reservations and usage reads, and must answer the same. (The
// store's own pass for numeric checks is held to its general pass in limit-all.test.ts.)

import fc from "fast-check"
import { describe, expect, it } from "vitest"
import {
  createTieredLimiter,
  MemoryStore,
  manualClock,
  type TieredConfig,
  type TierRequest,
} from "../../src/index.js"
import { AsyncMemoryStore } from "./async-store.js"

const START = 1_780_000_000_000

const KEYS = [[], ["user"], ["tenant"], ["user", "model"], ["model", "user"], ["model"]]
const ALGORITHMS = ["tokenBucket", "slidingWindowCounter", "fixedWindow", "slidingWindowLog"]

const tier = fc.record({
  key: fc.constantFrom(...KEYS),
  cost: fc.boolean(),
  algorithm: fc.constantFrom(...ALGORITHMS),
  limit: fc.integer({ min: 1, max: 6 }),
  windowS: fc.constantFrom(1, 5, 30),
  // Shadow mode and penalties send a request's check the general way on both sides.
  shadow: fc.constantFrom(false, false, false, true),
  penalty: fc.constantFrom(0, 0, 0, 2),
})

type TierCase = typeof tier extends fc.Arbitrary<infer T> ? T : never

function config(tiers: TierCase[]): TieredConfig {
  const out: TieredConfig["tiers"] = {}
  tiers.forEach((t, i) => {
    const limit =
      t.algorithm === "tokenBucket"
        ? { rate: t.limit, period: `${t.windowS}s` }
        : { limit: t.limit, window: `${t.windowS}s` }
    out[`t${i}`] = {
      key: t.key,
      budget: t.cost ? "cost" : "requests",
      algorithm: t.algorithm as never,
      limit,
      ...(t.shadow ? { shadow: true } : {}),
      ...(t.penalty > 0 ? { penalty: `${t.penalty}s` } : {}),
    }
  })
  return { tiers: out }
}

/** field: one of a few values, or (less often) missing. */
const field = (...values: string[]) =>
  fc.constantFrom<string | undefined>(...values, values[0], undefined)
// Four users and three models: with maxKeys 3 the synchronous path's rows are reused
// (it remembers as many principals as the store holds keys), and a user's third model
// takes the place of one of the two it remembers.
const request = fc.record({
  user: field("u1", "u2", "u3", "u4"),
  model: field("small", "large", "vision"),
  tenant: field("acme", "initech"),
})

const op = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      t: fc.constant("limit" as const),
      request,
      // Mostly within the smallest limits; now and then above (an error, alike).
      cost: fc.constantFrom(0, 1, 1, 1, 2, 3, 8),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      t: fc.constant("advance" as const),
      ms: fc.integer({ min: 1, max: 4000 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      t: fc.constant("reserve" as const),
      request,
      cost: fc.integer({ min: 0, max: 3 }),
      actual: fc.integer({ min: 0, max: 5 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("usage" as const), request }) },
  // A reset frees keys under the slots the synchronous path remembers.
  {
    weight: 1,
    arbitrary: fc.record({ t: fc.constant("reset" as const), user: field("u1", "u2", "u3") }),
  },
)

/** plain: a request without its missing fields (a tier keyed by one does not apply). */
function plain(r: Record<string, string | undefined>): TierRequest {
  return Object.fromEntries(Object.entries(r).filter(([, v]) => v !== undefined))
}

/** outcome: what a call answered, or the error it threw, comparable across the two limiters. */
async function outcome(call: () => unknown): Promise<unknown> {
  try {
    const v = await call()
    return {
      ok: JSON.parse(JSON.stringify(v)),
      order: Object.keys((v as { tiers?: object }).tiers ?? {}),
    }
  } catch (error) {
    return { error: (error as Error).message }
  }
}

describe("the synchronous path of a tiered limiter on a MemoryStore", () => {
  // With 3 keys at most, keys are evicted all along: both ways must evict the same ones.
  it.each([
    { maxKeys: 1_000_000, runs: 1000 },
    { maxKeys: 3, runs: 500 },
  ])(
    "decides as the general path does, state and stats included (maxKeys $maxKeys)",
    async ({ maxKeys, runs }) => {
      await fc.assert(
        fc.asyncProperty(
          fc.array(tier, { minLength: 1, maxLength: 4 }),
          fc.array(op, { minLength: 1, maxLength: 60 }),
          async (tiers, ops) => {
            const clock = manualClock(START)
            const cfg = config(tiers)
            const direct = createTieredLimiter({
              ...cfg,
              store: new MemoryStore({ maxKeys }),
              clock,
            })
            const general = createTieredLimiter({
              ...cfg,
              store: new AsyncMemoryStore({ maxKeys }),
              clock,
            })
            for (let i = 0; i < ops.length; i++) {
              const o = ops[i]
              const step = `op ${i}: ${JSON.stringify(o)}`
              if (o.t === "advance") {
                clock.advance(o.ms)
                continue
              }
              if (o.t === "reset") {
                const who = o.user === undefined ? {} : { user: o.user }
                expect(direct.reset(who), step).toEqual(await general.reset(who))
                continue
              }
              const r = plain(o.request)
              if (o.t === "limit") {
                const a = await outcome(() => direct.limit(r, { cost: o.cost }))
                const b = await outcome(() => general.limit(r, { cost: o.cost }))
                expect(a, step).toEqual(b)
              } else if (o.t === "reserve") {
                const a = await outcome(async () => {
                  const res = direct.reserve(r, { cost: o.cost })
                  res.settle(o.actual)
                  return res.decision
                })
                const b = await outcome(async () => {
                  const res = await general.reserve(r, { cost: o.cost })
                  await res.settle(o.actual)
                  return res.decision
                })
                expect(a, step).toEqual(b)
              } else {
                expect(await outcome(() => direct.usage(r)), step).toEqual(
                  await outcome(() => general.usage(r)),
                )
              }
            }
            expect(direct.stats()).toEqual(general.stats())
          },
        ),
        { numRuns: runs },
      )
    },
    60_000,
  )
})

describe("a failure inside the synchronous path", () => {
  // A calendar window at the very end of Date's range cannot be computed: the check fails
  // after the first tier has been counted. Both ways put it back and answer alike.
  it.each(["closed", "open"] as const)(
    "is answered as the general path answers it (onStoreError %s)",
    async (onStoreError) => {
      const bucket = { key: ["user"], limit: { rate: 5, period: "1h" } }
      const cfg: TieredConfig = {
        tiers: {
          bucket,
          daily: {
            key: ["user"],
            limit: { limit: 5, window: "day", timeZone: "America/New_York" },
          },
        },
      }
      const clock = manualClock(START)
      const store = new MemoryStore()
      const direct = createTieredLimiter({ ...cfg, store, clock, onStoreError })
      const general = createTieredLimiter({
        ...cfg,
        store: new AsyncMemoryStore(),
        clock,
        onStoreError,
      })
      const r = { user: "u" }
      expect(await outcome(() => direct.limit(r))).toEqual(await outcome(() => general.limit(r)))
      clock.set(8.64e15 - 1000)
      for (let i = 0; i < 3; i++) {
        expect(await outcome(() => direct.limit(r))).toEqual(await outcome(() => general.limit(r)))
      }
      expect(direct.stats()).toEqual(general.stats())
      // The bucket's key was put back each time: after so long it is full, not three short.
      const bucketOnly = createTieredLimiter({ tiers: { bucket }, store, clock })
      expect(bucketOnly.usage(r).tiers.bucket.remaining).toBe(5)
    },
  )
})
