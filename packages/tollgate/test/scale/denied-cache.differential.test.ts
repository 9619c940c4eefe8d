// Differential test: a limiter over deniedCache(MemoryStore) and one over a bare
// MemoryStore get the same random sequence of requests, clock moves, resets and refunds.
// The cache must never admit what the store denies (nor deny what it admits: over a store
// that one process alone uses, nothing else changes the state behind its back). For token
// buckets and fixed windows every field of every decision must be the store's.

import fc from "fast-check"
import { describe, expect, it } from "vitest"
import {
  createLimiter,
  type Decision,
  deniedCache,
  fixedWindow,
  MemoryStore,
  manualClock,
  type Policy,
  slidingWindowCounter,
  slidingWindowLog,
  tokenBucket,
} from "../../src/index.js"

type Op =
  | { op: "limit"; key: string; cost: number; repeat: number }
  | { op: "advance"; ms: number }
  /** wait: advance to the last denial's retry time, give or take `delta` ms (boundaries). */
  | { op: "wait"; delta: number }
  | { op: "reset"; key: string }
  | { op: "refund"; key: string; units: number }

const POLICIES: { policy: Policy; exact: boolean }[] = [
  { policy: tokenBucket({ rate: 5, period: "1s", burst: 5 }), exact: true },
  { policy: tokenBucket({ rate: 0.5, period: "1s", burst: 3 }), exact: true },
  { policy: tokenBucket({ rate: 1000, period: "1m", burst: 40 }), exact: true },
  { policy: fixedWindow({ limit: 5, window: "1s" }), exact: true },
  { policy: fixedWindow({ limit: 3, window: "250ms" }), exact: true },
  { policy: slidingWindowLog({ limit: 4, window: "1s" }), exact: false },
  { policy: slidingWindowCounter({ limit: 4, window: "1s" }), exact: false },
  { policy: slidingWindowCounter({ limit: 10, window: "300ms" }), exact: false },
]

function ops(limit: number): fc.Arbitrary<Op[]> {
  const key = fc.constantFrom("a", "b")
  const cost = fc.oneof(
    { weight: 6, arbitrary: fc.integer({ min: 1, max: Math.ceil(limit / 3) }) },
    { weight: 1, arbitrary: fc.constantFrom(0, limit) },
    { weight: 1, arbitrary: fc.constantFrom(0.5, 1.25) },
  )
  return fc.array(
    fc.oneof(
      {
        weight: 12,
        arbitrary: fc.record({
          op: fc.constant("limit" as const),
          key,
          cost,
          repeat: fc.integer({ min: 1, max: 6 }),
        }),
      },
      {
        weight: 6,
        arbitrary: fc.record({
          op: fc.constant("advance" as const),
          ms: fc.oneof(
            fc.integer({ min: 0, max: 60 }),
            fc.integer({ min: 100, max: 2500 }),
            fc.double({ min: 0, max: 5, noNaN: true }),
          ),
        }),
      },
      {
        weight: 4,
        arbitrary: fc.record({
          op: fc.constant("wait" as const),
          delta: fc.constantFrom(-1, -0.01, -0.002, -0.001, -0.0005, 0, 0.0005, 0.001, 0.01, 1),
        }),
      },
      { weight: 1, arbitrary: fc.record({ op: fc.constant("reset" as const), key }) },
      {
        weight: 1,
        arbitrary: fc.record({
          op: fc.constant("refund" as const),
          key,
          units: fc.integer({ min: 1, max: 2 }),
        }),
      },
    ),
    { minLength: 1, maxLength: 80 },
  )
}

describe("deniedCache against the bare store", () => {
  for (const { policy, exact } of POLICIES) {
    const name = `${policy.kind} limit ${policy.limit}, window ${policy.windowMs} ms`
    it(`${name}: ${exact ? "identical decisions" : "the same admissions"}`, () => {
      let local = 0
      fc.assert(
        fc.property(ops(policy.limit), fc.integer({ min: 0, max: 10_000 }), (steps, offset) => {
          // Epoch-sized times, so rounding behaves as in production.
          const clock = manualClock(1_700_000_000_000 + offset)
          const cache = deniedCache(new MemoryStore())
          const cached = createLimiter({ policy, store: cache, clock })
          const bareStore = new MemoryStore()
          const bare = createLimiter({ policy, store: bareStore, clock })
          const refunds = [
            cache.namespace("tollgate", policy),
            bareStore.namespace("tollgate", policy),
          ]
          let retry = 0
          for (const [i, step] of steps.entries()) {
            if (step.op === "advance") clock.advance(step.ms)
            else if (step.op === "wait") clock.advance(Math.max(0, retry + step.delta))
            else if (step.op === "reset") {
              cached.reset(step.key)
              bare.reset(step.key)
            } else if (step.op === "refund") {
              for (const ns of refunds) ns.adjust(step.key, -step.units, clock.now())
            } else {
              for (let n = 0; n < step.repeat; n++) {
                const got: Decision = cached.limit(step.key, { cost: step.cost })
                const want: Decision = bare.limit(step.key, { cost: step.cost })
                if (!want.allowed) retry = want.retryAfterMs
                const at = `step ${i}.${n} (${JSON.stringify(step)}) at ${clock.now()}`
                expect(got.allowed, at).toBe(want.allowed)
                if (exact) {
                  expect(got.remaining, at).toBe(want.remaining)
                  expect(got.limit, at).toBe(want.limit)
                  expect(got.retryAfterMs, at).toBeCloseTo(want.retryAfterMs, 6)
                  expect(got.resetAfterMs, at).toBeCloseTo(want.resetAfterMs, 6)
                }
              }
            }
          }
          local += cache.stats().local
        }),
        { numRuns: 150 },
      )
      // The comparison means something only if the cache did answer on its own.
      expect(local).toBeGreaterThan(200)
    })
  }
})
