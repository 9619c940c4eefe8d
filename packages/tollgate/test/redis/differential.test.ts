// Differential: random operation sequences go through the MemoryStore (the TypeScript
// core) and through RedisStore (the Lua scripts) with `time: "client"` and the same
// timestamps; every decision, grant and lease must be identical, number for number.
// Operations issued together ("burst") travel in one script call on the Redis side, so
// batching must keep the exact semantics of one call each.

import fc from "fast-check"
import { describe, expect, it } from "vitest"
import {
  concurrency,
  type Decision,
  fixedWindow,
  type Grant,
  MemoryStore,
  type Policy,
  slidingWindowCounter,
  slidingWindowLog,
  tokenBucket,
} from "../../src/index.js"
import type { Check, Namespace } from "../../src/stores/store.js"
import { keysWithoutTtl } from "../support/redis.js"
import { useClientTimeStore } from "../support/redis-hooks.js"

// maxBatch 3: bursts of more than three operations span several calls.
const fixture = useClientTimeStore()
let run = 0
// TOLLGATE_DIFF_RUNS: scenarios per property (raise it for a deeper search).
const RUNS = Number(process.env.TOLLGATE_DIFF_RUNS ?? 60)

type Op =
  | { t: "advance"; ms: number }
  | { t: "limit"; key: string; cost: number; requestId?: string }
  | { t: "peek"; key: string }
  | { t: "reset"; key: string }
  | { t: "adjust"; key: string; delta: number }
  | { t: "reserve"; key: string; cost: number; maxWait: number }
  | { t: "cancel"; which: number }
  | { t: "release"; which: number }
  | { t: "setPolicy"; which: number }
  | { t: "burst"; ops: { key: string; cost: number; requestId?: string }[] }

const KEYS = ["a", "b", "{x}", "a:b"]
const COSTS = [0, 1, 1, 1, 2, 3, 0.5, 0.25, 0.1, 0.3, 1.7]
const DELTAS = [-3, -1, -0.5, -0.1, 0, 0.5, 1, 2, 5]

const key = fc.constantFrom(...KEYS)
const cost = fc.constantFrom(...COSTS)
const requestId = fc.option(fc.constantFrom("r1", "r2"), { nil: undefined, freq: 3 })

function opArb(kind: Policy["kind"], windowMs: number, policies: number): fc.Arbitrary<Op> {
  const steps = [
    0,
    0.001,
    0.3,
    1,
    windowMs / 100,
    windowMs / 7,
    windowMs / 2,
    windowMs,
    3 * windowMs,
  ]
  const common: fc.Arbitrary<Op>[] = [
    fc.constantFrom(...steps).map((ms) => ({ t: "advance", ms }) as Op),
    fc.constantFrom(...steps).map((ms) => ({ t: "advance", ms }) as Op),
    fc.record({ key, cost, requestId }).map((o) => ({ t: "limit", ...o }) as Op),
    fc.record({ key, cost, requestId }).map((o) => ({ t: "limit", ...o }) as Op),
    fc.record({ key }).map((o) => ({ t: "peek", ...o }) as Op),
    fc.record({ key }).map((o) => ({ t: "reset", ...o }) as Op),
    fc.nat(policies - 1).map((which) => ({ t: "setPolicy", which }) as Op),
    fc
      .array(fc.record({ key, cost, requestId }), { minLength: 2, maxLength: 7 })
      .map((ops) => ({ t: "burst", ops }) as Op),
  ]
  if (kind !== "concurrency") {
    common.push(
      fc
        .record({ key, delta: fc.constantFrom(...DELTAS) })
        .map((o) => ({ t: "adjust", ...o }) as Op),
    )
  }
  if (kind === "tokenBucket") {
    common.push(
      fc
        .record({
          key,
          cost,
          maxWait: fc.constantFrom(
            0,
            windowMs / 3,
            windowMs,
            10 * windowMs,
            Number.POSITIVE_INFINITY,
          ),
        })
        .map((o) => ({ t: "reserve", ...o }) as Op),
      fc
        .record({ key, cost, maxWait: fc.constant(Number.POSITIVE_INFINITY) })
        .map((o) => ({ t: "reserve", ...o }) as Op),
      fc.nat(20).map((which) => ({ t: "cancel", which }) as Op),
    )
  }
  if (kind === "concurrency") {
    common.push(fc.nat(20).map((which) => ({ t: "release", which }) as Op))
    common.push(fc.nat(20).map((which) => ({ t: "release", which }) as Op))
  }
  return fc.oneof(...common)
}

const POLICIES: Record<Policy["kind"], Policy[]> = {
  tokenBucket: [
    tokenBucket({ rate: 10, burst: 5 }),
    tokenBucket({ rate: 2, period: "1m", burst: 3 }),
    tokenBucket({ rate: 3.3, burst: 2.5 }),
    tokenBucket({ rate: 0.5, burst: 10 }),
    tokenBucket({ rate: 7, period: 250, burst: 4 }),
  ],
  slidingWindowLog: [
    slidingWindowLog({ limit: 5, window: "1s" }),
    slidingWindowLog({ limit: 3.5, window: 100 }),
    slidingWindowLog({ limit: 10, window: "1m" }),
  ],
  slidingWindowCounter: [
    slidingWindowCounter({ limit: 5, window: "1s" }),
    slidingWindowCounter({ limit: 3.5, window: 100 }),
    slidingWindowCounter({ limit: 10, window: "1m" }),
  ],
  fixedWindow: [
    fixedWindow({ limit: 5, window: "1s" }),
    fixedWindow({ limit: 3.5, window: 7 }),
    fixedWindow({ limit: 4, window: "day", timeZone: "Europe/Berlin" }),
    fixedWindow({ limit: 10, window: "1h" }),
  ],
  concurrency: [
    concurrency({ limit: 3, leaseTimeout: "1s" }),
    concurrency({ limit: 2.5, leaseTimeout: 100 }),
    concurrency({ limit: 5, leaseTimeout: "1m" }),
  ],
}

/** plain makes a decision comparable: -0 reads as 0, a lease as its cost and expiry. */
function plain(d: Decision): Record<string, unknown> {
  const out: Record<string, unknown> = {
    allowed: d.allowed,
    limit: d.limit + 0,
    remaining: d.remaining + 0,
    retryAfterMs: d.retryAfterMs + 0,
    resetAfterMs: d.resetAfterMs + 0,
  }
  if (d.lease !== undefined)
    out.lease = { cost: d.lease.cost, expiresAt: d.lease.expiresAt, key: d.lease.key }
  return out
}

function plainGrant(g: Grant): Record<string, unknown> {
  return {
    ok: g.ok,
    executeAt: g.executeAt + 0,
    delayMs: g.delayMs + 0,
    decision: plain(g.decision),
  }
}

interface Scenario {
  start: number
  initial: number
  ops: Op[]
}

function scenarioArb(kind: Policy["kind"]): fc.Arbitrary<Scenario> {
  const policies = POLICIES[kind]
  return fc.nat(policies.length - 1).chain((initial) =>
    fc.record({
      start: fc.integer({ min: 0, max: 86_400_000 }).map((ms) => 1_780_000_000_000 + ms + 0.25),
      initial: fc.constant(initial),
      ops: fc.array(opArb(kind, policies[initial].windowMs, policies.length), {
        minLength: 1,
        maxLength: 40,
      }),
    }),
  )
}

// MemoryStore judges whether a key's state can be dropped (its lazy sweep) with the policy
// the (prefix, kind) was first opened with, even after setPolicy; a smaller window there
// drops state that still matters under the new policy. Opening the pair first with a
// window long enough that nothing ever looks droppable keeps that out of the comparison.
const NEVER_EMPTY: Partial<Record<Policy["kind"], Policy>> = {
  slidingWindowLog: slidingWindowLog({ limit: 1, window: "10000d" }),
  slidingWindowCounter: slidingWindowCounter({ limit: 1, window: "10000d" }),
  fixedWindow: fixedWindow({ limit: 1, window: "10000d" }),
}

function memoryNamespace(prefix: string, policy: Policy): Namespace {
  const memoryStore = new MemoryStore()
  const sentinel = NEVER_EMPTY[policy.kind]
  if (sentinel !== undefined) memoryStore.namespace(prefix, sentinel)
  return memoryStore.namespace(prefix, policy)
}

async function runScenario(kind: Policy["kind"], scenario: Scenario): Promise<void> {
  const policies = POLICIES[kind]
  let policy = policies[scenario.initial]
  let shortest = policy.windowMs
  const prefix = `diff${run++}`
  const memory = memoryNamespace(prefix, policy)
  const redis = fixture.store.namespace(prefix, policy)
  let now = scenario.start
  const reservations: { key: string; cost: number; executeAt: [number, number] }[] = []
  const leases: { key: string; ids: [string, string] }[] = []
  const leaseIds = new Map<string, string>()

  const sameDecision = (m: Decision, r: Decision, step: string) => {
    expect(plain(r), step).toEqual(plain(m))
    if (m.lease !== undefined && r.lease !== undefined) {
      const known = leaseIds.get(m.lease.id)
      if (known === undefined) {
        leaseIds.set(m.lease.id, r.lease.id)
        leases.push({ key: m.lease.key, ids: [m.lease.id, r.lease.id] })
      } else expect(r.lease.id, `${step}: a repeated request returns its first lease`).toBe(known)
    }
  }

  for (let i = 0; i < scenario.ops.length; i++) {
    const op = scenario.ops[i]
    const step = `step ${i} at ${now}: ${JSON.stringify(op)}`
    switch (op.t) {
      case "advance":
        now += op.ms
        break
      case "limit": {
        const c = Math.min(op.cost, policy.limit)
        sameDecision(
          memory.limit(op.key, c, now, op.requestId) as Decision,
          await redis.limit(op.key, c, now, op.requestId),
          step,
        )
        break
      }
      case "burst": {
        const ms = op.ops.map(
          (o) => memory.limit(o.key, Math.min(o.cost, policy.limit), now, o.requestId) as Decision,
        )
        const rs = await Promise.all(
          op.ops.map((o) => redis.limit(o.key, Math.min(o.cost, policy.limit), now, o.requestId)),
        )
        for (const [j, m] of ms.entries()) sameDecision(m, rs[j], `${step} [${j}]`)
        break
      }
      case "peek":
        sameDecision(memory.peek(op.key, now) as Decision, await redis.peek(op.key, now), step)
        break
      case "reset":
        memory.reset(op.key)
        await redis.reset(op.key)
        break
      case "adjust":
        sameDecision(
          memory.adjust(op.key, op.delta, now) as Decision,
          await redis.adjust(op.key, op.delta, now),
          step,
        )
        break
      case "reserve": {
        const c = Math.min(op.cost, policy.limit)
        const m = memory.reserve(op.key, c, now, op.maxWait) as Grant
        const r = await redis.reserve(op.key, c, now, op.maxWait)
        expect(plainGrant(r), step).toEqual(plainGrant(m))
        if (m.ok) reservations.push({ key: op.key, cost: c, executeAt: [m.executeAt, r.executeAt] })
        break
      }
      case "cancel": {
        if (reservations.length === 0) break
        const res = reservations.splice(op.which % reservations.length, 1)[0]
        memory.cancel(res.key, res.cost, res.executeAt[0], now)
        await redis.cancel(res.key, res.cost, res.executeAt[1], now)
        break
      }
      case "release": {
        if (leases.length === 0) break
        const lease = leases[op.which % leases.length]
        memory.release(lease.key, lease.ids[0], now)
        await redis.release(lease.key, lease.ids[1], now)
        break
      }
      case "setPolicy":
        // A log's entries that left its window come back under a longer one only where
        // they were not yet dropped (a write prunes them; MemoryStore's peek and sweep do
        // too, Redis's TTL in real time): which ones is timing, not semantics. So a log's
        // window never grows past the shortest it has had.
        if (kind === "slidingWindowLog" && policies[op.which].windowMs > shortest) break
        policy = policies[op.which]
        shortest = Math.min(shortest, policy.windowMs)
        memory.setPolicy(policy, now)
        redis.setPolicy(policy, now)
        break
    }
    // A window whose counts fell to zero is state that MemoryStore may or may not still
    // hold (its sweep drops empty state as other keys arrive; RedisStore drops it at
    // once), and when a held one is written again, its window start outlives a change to
    // a shorter window. Dropping such keys on both sides keeps that timing out of the
    // comparison; under the policy in force they decide alike either way.
    if (kind === "fixedWindow" || kind === "slidingWindowCounter") {
      for (const k of KEYS) {
        if ((memory.peek(k, now) as Decision).resetAfterMs === 0) {
          memory.reset(k)
          await redis.reset(k)
        }
      }
    }
  }
  // Finally every key must read the same on both sides.
  for (const k of KEYS) {
    sameDecision(memory.peek(k, now) as Decision, await redis.peek(k, now), `final peek of ${k}`)
  }
}

describe("RedisStore and MemoryStore decide alike (differential)", () => {
  for (const kind of Object.keys(POLICIES) as Policy["kind"][]) {
    it(
      kind,
      async () => {
        await fc.assert(
          fc.asyncProperty(scenarioArb(kind), (s) => runScenario(kind, s)),
          { numRuns: RUNS },
        )
      },
      30_000 + RUNS * 20,
    )
  }

  it(
    "limitAll across algorithms: all or nothing, alike",
    async () => {
      // The last policy has a namespace of its own (another prefix): a log long enough
      // that Redis reads it in parts.
      const mixed: Policy[] = [
        tokenBucket({ rate: 5, burst: 3 }),
        slidingWindowLog({ limit: 4, window: "1s" }),
        fixedWindow({ limit: 5, window: "1s" }),
        slidingWindowCounter({ limit: 4, window: "1s" }),
        concurrency({ limit: 3, leaseTimeout: "1s" }),
        slidingWindowLog({ limit: 12, window: "1s" }),
      ]
      type Call =
        | { t: "all"; checks: { ns: number; key: string; cost: number }[] }
        | { t: "one"; ns: number; key: string; cost: number }
      // together: calls made in one tick; on the Redis side limitAll groups then share
      // script calls (and a plain limit among them must keep its place).
      type MixedOp = { t: "advance"; ms: number } | Call | { t: "together"; calls: Call[] }
      const check = fc.record({
        ns: fc.nat(mixed.length - 1),
        key: fc.constantFrom("a", "b"),
        cost,
      })
      // twice: one key checked two or three times in one limitAll (with another check
      // before or after them): the later checks must see what the earlier ones took.
      const twice = fc
        .record({
          ns: fc.nat(mixed.length - 1),
          key: fc.constantFrom("a", "b"),
          costs: fc.array(cost, { minLength: 2, maxLength: 3 }),
          other: fc.option(check, { nil: undefined }),
          otherFirst: fc.boolean(),
        })
        .map(({ ns, key, costs, other, otherFirst }) => {
          const same = costs.map((c) => ({ ns, key, cost: c }))
          const checks =
            other === undefined ? same : otherFirst ? [other, ...same] : [...same, other]
          return { t: "all", checks } as MixedOp
        })
      const op: fc.Arbitrary<MixedOp> = fc.oneof(
        fc.constantFrom(0, 1, 50, 300, 1000).map((ms) => ({ t: "advance", ms }) as MixedOp),
        fc
          .array(check, { minLength: 1, maxLength: 4 })
          .map((checks) => ({ t: "all", checks }) as MixedOp),
        fc
          .array(check, { minLength: 1, maxLength: 4 })
          .map((checks) => ({ t: "all", checks }) as MixedOp),
        twice,
        twice,
        check.map((c) => ({ t: "one", ...c }) as MixedOp),
      )
      const call: fc.Arbitrary<Call> = fc.oneof(
        fc
          .array(check, { minLength: 1, maxLength: 4 })
          .map((checks) => ({ t: "all", checks }) as Call),
        twice as fc.Arbitrary<Call>,
        check.map((c) => ({ t: "one", ...c }) as Call),
      )
      const ops = fc.array(
        fc.oneof(
          { arbitrary: op, weight: 4 },
          {
            arbitrary: fc
              .array(call, { minLength: 2, maxLength: 8 })
              .map((calls) => ({ t: "together", calls }) as MixedOp),
            weight: 1,
          },
        ),
        { minLength: 1, maxLength: 30 },
      )
      await fc.assert(
        fc.asyncProperty(ops, async (ops) => {
          const prefix = `all${run++}`
          const memoryStore = new MemoryStore()
          const name = (i: number) => (i === mixed.length - 1 ? `${prefix}-long` : prefix)
          const m = mixed.map((p, i) => memoryStore.namespace(name(i), p))
          const r = mixed.map((p, i) => fixture.store.namespace(name(i), p))
          let now = 1_780_000_000_000.5
          const checks = (o: Call & { t: "all" }, spaces: Namespace[]): Check[] =>
            o.checks.map((c) => ({
              namespace: spaces[c.ns],
              key: c.key,
              cost: Math.min(c.cost, mixed[c.ns].limit),
            }))
          const onMemory = (o: Call): Decision[] =>
            o.t === "one"
              ? [m[o.ns].limit(o.key, Math.min(o.cost, mixed[o.ns].limit), now) as Decision]
              : memoryStore.limitAll(checks(o, m), now)
          const onRedis = async (o: Call): Promise<Decision[]> =>
            o.t === "one"
              ? [await r[o.ns].limit(o.key, Math.min(o.cost, mixed[o.ns].limit), now)]
              : fixture.store.limitAll(checks(o, r), now)
          for (let i = 0; i < ops.length; i++) {
            const o = ops[i]
            const step = `step ${i}: ${JSON.stringify(o)}`
            if (o.t === "advance") now += o.ms
            else if (o.t === "together") {
              const md = o.calls.map(onMemory)
              const rd = await Promise.all(o.calls.map(onRedis))
              for (let j = 0; j < md.length; j++) {
                expect(rd[j].map(plain), `${step} [${j}]`).toEqual(md[j].map(plain))
              }
            } else {
              const md = onMemory(o)
              expect((await onRedis(o)).map(plain), step).toEqual(md.map(plain))
            }
          }
          // Both sides hold the same state in the end.
          for (let ns = 0; ns < mixed.length; ns++) {
            for (const k of ["a", "b"]) {
              const md = m[ns].peek(k, now) as Decision
              expect(plain(await r[ns].peek(k, now)), `final peek of ${k} in ${ns}`).toEqual(
                plain(md),
              )
            }
          }
        }),
        { numRuns: RUNS },
      )
    },
    30_000 + RUNS * 20,
  )

  it("limitAll counts one key checked twice together, alike", async () => {
    // Each check alone would pass; together they exceed the limit: both stores deny the
    // call and leave the key as it was.
    const cases: [Policy, number, number][] = [
      [tokenBucket({ rate: 1, period: "1h", burst: 5 }), 3, 3],
      [slidingWindowLog({ limit: 5, window: "1h" }), 3, 3],
      [slidingWindowCounter({ limit: 5, window: "1h" }), 3, 3],
      [fixedWindow({ limit: 5, window: "1h" }), 3, 3],
      [concurrency({ limit: 5, leaseTimeout: "1h" }), 3, 3],
    ]
    const now = 1_780_000_000_000.5
    for (const [policy, first, second] of cases) {
      const prefix = `twice${run++}`
      const memoryStore = new MemoryStore()
      const m = memoryStore.namespace(prefix, policy)
      const r = fixture.store.namespace(prefix, policy)
      for (const [ns, s] of [
        [m, memoryStore],
        [r, fixture.store],
      ] as const) {
        const step = `${policy.kind} on ${s === fixture.store ? "redis" : "memory"}`
        // A key with state already, and a new one.
        expect((await ns.limit("old", 1, now)).allowed, step).toBe(true)
        for (const key of ["old", "new"]) {
          const before = plain(await ns.peek(key, now))
          const ds = await s.limitAll(
            [
              { namespace: ns, key, cost: first },
              { namespace: ns, key, cost: second },
            ],
            now,
          )
          expect(
            ds.map((d) => d.allowed),
            `${step}, ${key}`,
          ).toEqual([true, false])
          expect(ds[0].lease, step).toBeUndefined()
          expect(plain(await ns.peek(key, now)), `${step}, ${key}: nothing consumed`).toEqual(
            before,
          )
          // Within the limit together, both are admitted and both counted.
          const ok = await s.limitAll(
            [
              { namespace: ns, key, cost: 1 },
              { namespace: ns, key, cost: 1 },
            ],
            now,
          )
          expect(
            ok.map((d) => d.allowed),
            step,
          ).toEqual([true, true])
          expect(ok[1].remaining, step).toBe(ok[0].remaining - 1)
        }
      }
      for (const key of ["old", "new"]) {
        expect(plain(await r.peek(key, now)), `${policy.kind}: ${key} alike`).toEqual(
          plain(m.peek(key, now) as Decision),
        )
      }
    }
  })

  it("limitAll: a log checked twice is read as the first check left it, alike", async () => {
    // The newest entry is later than the call's time (a caller whose clock is behind), so
    // the first check adds to it, and the second, denied, must count it grown to find its
    // retry time. With three entries Redis reads the log in parts.
    const policy = slidingWindowLog({ limit: 5, window: "1h" })
    const now = 1_780_000_000_000.5
    for (const entries of [
      [[10, 1]],
      [
        [-20, 0.5],
        [-10, 0.5],
        [10, 1],
      ],
    ]) {
      const prefix = `log${run++}`
      const memoryStore = new MemoryStore()
      const m = memoryStore.namespace(prefix, policy)
      const r = fixture.store.namespace(prefix, policy)
      for (const [at, c] of entries) {
        m.limit("k", c, now + at)
        await r.limit("k", c, now + at)
      }
      const checks = (namespace: Namespace): Check[] => [
        { namespace, key: "k", cost: 2 },
        { namespace, key: "k", cost: 5 },
      ]
      const md = memoryStore.limitAll(checks(m), now)
      const rd = await fixture.store.limitAll(checks(r), now)
      expect(md.map((d) => d.allowed)).toEqual([true, false])
      expect(md[1].retryAfterMs).toBe(3_600_000 + 10)
      expect(rd.map(plain), JSON.stringify(entries)).toEqual(md.map(plain))
    }
  })

  it("leaves no key without a TTL", async () => {
    const { scanned, missing } = await keysWithoutTtl([fixture.server], "*")
    expect(scanned).toBeGreaterThan(100)
    expect(missing).toEqual([])
  })
})
