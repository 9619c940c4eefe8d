// Property tests: every algorithm, driven through createLimiter with a manual clock and the
// default MemoryStore over random sequences of (advance the clock by dt, request cost), is
// compared decision by decision with the plain models of reference-models.ts, and checked
// against the guarantee it makes on its own.

import fc from "fast-check"
import { describe, expect, it } from "vitest"
import {
  concurrency,
  createLimiter,
  type Decision,
  fixedWindow,
  type Lease,
  type Limiter,
  manualClock,
  type Policy,
  slidingWindowCounter,
  slidingWindowLog,
  tokenBucket,
} from "../src/index.js"
import {
  allows,
  COST_SLACK,
  concurrencyModel,
  EARLY_MS,
  firstTime,
  fixedWindowModel,
  isFull,
  type ReferenceModel,
  slidingWindowCounterModel,
  slidingWindowLogModel,
  tokenBucketModel,
  wholeRemaining,
  windowIndex,
} from "./reference-models.js"

/**
 * How close a reported duration must be to the model's: the microsecond of EARLY_MS (the
 * library may or may not subtract it) and a few floating-point steps at epoch scale.
 */
const CLOSE_MS = 2e-3

/** The keys every sequence spreads over; "__proto__" must behave like any other key. */
const KEYS = ["k", "__proto__", "tenant:{a}"]

interface Case {
  name: string
  policy: Policy
  model: () => ReferenceModel
  /** unitMs: the typical step of the clock; dt is a whole number of units plus a fraction. */
  unitMs: number
  /** exact: all the policy's times are exact in binary, at any epoch. */
  exact: boolean
}

function bucketCase(rate: number, period: number, burst: number | undefined): Case {
  const policy = tokenBucket({ rate, period, burst })
  const interval = policy.intervalMs
  const exact = Number.isInteger(interval * 1024)
  return {
    name: `tokenBucket rate ${rate}/${period}ms burst ${policy.burst}`,
    policy,
    model: () => tokenBucketModel(rate, period, policy.burst),
    unitMs: exact ? interval : 50,
    exact,
  }
}

function windowCase(
  kind: "slidingWindowLog" | "slidingWindowCounter" | "fixedWindow",
  limit: number,
  windowMs: number,
): Case {
  const factories = { slidingWindowLog, slidingWindowCounter, fixedWindow }
  const models = {
    slidingWindowLog: slidingWindowLogModel,
    slidingWindowCounter: slidingWindowCounterModel,
    fixedWindow: fixedWindowModel,
  }
  return {
    name: `${kind} limit ${limit} window ${windowMs}ms`,
    policy: factories[kind]({ limit, window: windowMs }),
    model: () => models[kind](limit, windowMs),
    unitMs: windowMs / 8,
    exact: true,
  }
}

function leaseCase(limit: number, leaseTimeoutMs: number): Case {
  return {
    name: `concurrency limit ${limit} lease ${leaseTimeoutMs}ms`,
    policy: concurrency({ limit, leaseTimeout: leaseTimeoutMs }),
    model: () => concurrencyModel(limit, leaseTimeoutMs),
    unitMs: leaseTimeoutMs / 8,
    exact: true,
  }
}

const CASES: Record<string, Case[]> = {
  tokenBucket: [
    bucketCase(10, 1000, 5),
    bucketCase(4, 1000, undefined),
    bucketCase(1, 100, 3),
    bucketCase(0.5, 1000, 2),
    bucketCase(2.5, 1000, undefined),
    bucketCase(3, 1000, 6),
    bucketCase(7, 1000, 5),
    bucketCase(600, 60_000, 20),
  ],
  slidingWindowLog: [
    windowCase("slidingWindowLog", 3, 1000),
    windowCase("slidingWindowLog", 5, 250),
    windowCase("slidingWindowLog", 1, 60_000),
    windowCase("slidingWindowLog", 2.5, 100),
  ],
  slidingWindowCounter: [
    windowCase("slidingWindowCounter", 3, 1000),
    windowCase("slidingWindowCounter", 5, 250),
    windowCase("slidingWindowCounter", 1, 60_000),
    windowCase("slidingWindowCounter", 2.5, 100),
  ],
  fixedWindow: [
    windowCase("fixedWindow", 3, 1000),
    windowCase("fixedWindow", 5, 250),
    windowCase("fixedWindow", 1, 60_000),
    windowCase("fixedWindow", 2.5, 100),
  ],
  concurrency: [leaseCase(3, 1000), leaseCase(1, 100), leaseCase(4.5, 250)],
}

const EPOCH = 1_700_000_000_000

interface Op {
  key: number
  steps: number
  fraction: number
  /** cost, as whole units plus a fraction; capped at the policy's limit. */
  units: number
  costFraction: number
  /** retry: after a denial, wait exactly retryAfterMs and send the same request again. */
  retry: boolean
  /** release: give back one of the leases held (concurrency), by position. */
  release: number | null
}

/** Fractions exact in binary at any epoch: the reference comparison must be exact. */
const EXACT_FRACTIONS = [0, 0, 0, 0, 0.5, 0.25, 0.125]
/** Any fractions: for properties that must hold whatever the rounding. */
const ANY_FRACTIONS = [0, 0, 0, 0.1, 0.3, 0.5, 1 / 3, 0.7, 0.25, 0.01]

function opArb(fractions: number[]): fc.Arbitrary<Op> {
  return fc.record({
    key: fc.oneof({ weight: 4, arbitrary: fc.constant(0) }, fc.nat({ max: KEYS.length - 1 })),
    steps: fc.oneof(fc.constant(0), fc.nat({ max: 4 }), fc.nat({ max: 20 })),
    fraction: fc.constantFrom(...fractions),
    units: fc.nat({ max: 6 }),
    costFraction: fc.oneof({ weight: 4, arbitrary: fc.constant(0) }, fc.constantFrom(...fractions)),
    retry: fc.boolean(),
    release: fc.option(fc.nat({ max: 7 }), { freq: 3 }),
  })
}

function costOf(op: Op, limit: number): number {
  return Math.min(limit, op.units + op.costFraction)
}

interface Run {
  c: Case
  start: number
  ops: Op[]
}

function runArb(cases: Case[], fractions: number[], exactOnly: boolean): fc.Arbitrary<Run> {
  return fc
    .record({
      c: fc.constantFrom(...cases),
      epoch: fc.boolean(),
      offset: fc.constantFrom(0, 0.5, 0.1, 123.25, 999.875),
      ops: fc.array(opArb(fractions), { minLength: 1, maxLength: 50 }),
    })
    .map(({ c, epoch, offset, ops }) => {
      // At epoch scale one floating-point step is 2^-12 ms: with an interval that is not
      // exact in binary, rounding there adds up past the microsecond the library forgives,
      // so the exact comparison runs such a policy near 0 (the other properties do not).
      const atEpoch = epoch && (c.exact || !exactOnly)
      const exactOffset = exactOnly ? Math.floor(offset * 8) / 8 : offset
      return { c, start: (atEpoch ? EPOCH : 0) + exactOffset, ops }
    })
}

/** A lease held by the test, with the id the reference model gave it. */
interface Held {
  key: number
  lease: Lease
  modelId: number
}

/** A recorded admission of the limiter under test. */
interface Admitted {
  t: number
  cost: number
  lease: Lease | undefined
  releasedAt: number
}

interface Driver {
  limiter: Limiter<true>
  clock: ReturnType<typeof manualClock>
  /** admitted: everything the limiter admitted, per key index. */
  admitted: Admitted[][]
  held: Held[]
}

/**
 * How a run treats an op's `retry` flag after a denial: "replay" waits retryAfterMs and
 * sends the request again (to land on exact boundaries), "expect" also demands that the
 * second try is admitted and that the denial named a positive wait.
 */
type RetryMode = "replay" | "expect"

function drive(
  run: Run,
  retry: RetryMode,
  step: (d: Driver, key: number, cost: number, label: string) => Decision,
  onRelease: (h: Held) => void = () => {},
): Driver {
  const clock = manualClock(run.start)
  const limiter = createLimiter({ policy: run.c.policy, clock })
  const d: Driver = { limiter, clock, admitted: KEYS.map(() => []), held: [] }
  run.ops.forEach((op, i) => {
    clock.advance(op.steps * run.c.unitMs + op.fraction)
    const cost = costOf(op, run.c.policy.limit)
    const label = `step ${i} (t=${clock.now()}, key ${KEYS[op.key]}, cost ${cost})`
    if (op.release !== null && d.held.length > 0) {
      const [h] = d.held.splice(op.release % d.held.length, 1)
      for (const a of d.admitted[h.key]) {
        if (a.lease === h.lease && a.releasedAt === Number.POSITIVE_INFINITY) {
          a.releasedAt = clock.now()
        }
      }
      h.lease.release()
      onRelease(h)
    }
    const first = step(d, op.key, cost, label)
    if (first.allowed || !op.retry) return
    if (retry === "expect") {
      expect(first.retryAfterMs, `${label}: a denial must name a wait > 0`).toBeGreaterThan(0)
      expect(Number.isFinite(first.retryAfterMs), `${label}: retryAfterMs is finite`).toBe(true)
    }
    clock.advance(first.retryAfterMs)
    const again = step(d, op.key, cost, `${label}, retried after ${first.retryAfterMs} ms`)
    if (retry === "expect") {
      expect(
        again.allowed,
        `${label}: denied again after waiting retryAfterMs ${first.retryAfterMs} (then told to wait ${again.retryAfterMs} ms)`,
      ).toBe(true)
    }
  })
  return d
}

/** request sends one limit() and records what it admitted. */
function request(d: Driver, key: number, cost: number, label: string): Decision {
  const before = d.limiter.peek(KEYS[key])
  const decision = d.limiter.limit(KEYS[key], { cost })
  const now = d.clock.now()
  if (decision.allowed) {
    d.admitted[key].push({
      t: now,
      cost,
      lease: decision.lease,
      releasedAt: Number.POSITIVE_INFINITY,
    })
  } else {
    expect(d.limiter.peek(KEYS[key]), `${label}: a denial changed the key's state`).toEqual(before)
  }
  return decision
}

function horizon(c: Case): number {
  return 2 * c.policy.windowMs + 1
}

/** expectMatches compares a decision (made for `cost`, after admitting it if allowed) with the model. */
function expectMatches(
  got: Decision,
  model: ReferenceModel,
  c: Case,
  now: number,
  cost: number,
  label: string,
): void {
  expect(got.limit, `${label}: limit`).toBe(model.limit)
  expect(got.remaining, `${label}: remaining`).toBe(wholeRemaining(model, now))
  const retry = got.allowed ? 0 : firstTime(now, horizon(c), (t) => allows(model, t, cost)) - now
  expect(
    Math.abs(got.retryAfterMs - retry),
    `${label}: retryAfterMs ${got.retryAfterMs} vs ${retry}`,
  ).toBeLessThanOrEqual(CLOSE_MS)
  const reset = firstTime(now, horizon(c), (t) => isFull(model, t)) - now
  expect(
    Math.abs(got.resetAfterMs - reset),
    `${label}: resetAfterMs ${got.resetAfterMs} vs ${reset}`,
  ).toBeLessThanOrEqual(CLOSE_MS)
}

function matchesReference(run: Run): void {
  const models = KEYS.map(() => run.c.model())
  let allowed = 0
  let denied = 0
  const d = drive(
    run,
    "replay",
    (driver, key, cost, label) => {
      const model = models[key]
      const now = driver.clock.now()
      expectMatches(driver.limiter.peek(KEYS[key]), model, run.c, now, 0, `${label}: peek`)
      const expected = allows(model, now, cost)
      const got = request(driver, key, cost, label)
      expect(got.allowed, `${label}: allowed`).toBe(expected)
      if (got.allowed) {
        allowed++
        const id = model.admit(now, cost)
        if (got.lease !== undefined) driver.held.push({ key, lease: got.lease, modelId: id })
      } else {
        denied++
      }
      expectMatches(got, model, run.c, now, cost, label)
      return got
    },
    (h) => models[h.key].release(h.modelId),
  )
  expect(d.limiter.stats()).toMatchObject({ allowed, denied })
}

/**
 * selfCheck drives the limiter alone. `before` runs ahead of each request; when it returns
 * a number, a request of at most that cost must be admitted.
 */
function selfCheck(
  run: Run,
  retry: RetryMode,
  before: (d: Driver, key: number, label: string) => number | undefined = () => undefined,
): Driver {
  return drive(run, retry, (driver, key, cost, label) => {
    const promised = before(driver, key, label)
    const got = request(driver, key, cost, label)
    if (promised !== undefined && cost <= promised) {
      expect(
        got.allowed,
        `${label}: peek said ${promised} remaining, cost ${cost} was denied`,
      ).toBe(true)
    }
    if (got.allowed && got.lease !== undefined) {
      driver.held.push({ key, lease: got.lease, modelId: 0 })
    }
    return got
  })
}

/** remainingIsExact: a peek's `remaining` is the largest whole cost admitted right now. */
function remainingIsExact(d: Driver, key: number, label: string): number {
  const k = KEYS[key]
  const peeked = d.limiter.peek(k)
  const n = peeked.remaining
  expect(Number.isInteger(n) && n >= 0, `${label}: remaining ${n} is a whole number`).toBe(true)
  if (n + 1 <= d.limiter.policy.limit) {
    const over = d.limiter.limit(k, { cost: n + 1 })
    expect(over.allowed, `${label}: peek said ${n} remaining, but cost ${n + 1} was admitted`).toBe(
      false,
    )
    expect(d.limiter.peek(k)).toEqual(peeked)
  }
  return n
}

function expectInvariant(run: Run, d: Driver): void {
  const p = run.c.policy
  d.admitted.forEach((list, key) => {
    const label = (i: number) => `key ${KEYS[key]}, from admission ${i} at t=${list[i].t}`
    if (p.kind === "tokenBucket") {
      // Any interval [t_i, t_j] of length d: admitted cost <= burst + rate * d / period.
      for (let i = 0; i < list.length; i++) {
        let sum = 0
        for (let j = i; j < list.length; j++) {
          sum += list[j].cost
          const span = list[j].t - list[i].t + EARLY_MS
          const bound = p.burst + (p.rate * span) / p.periodMs + COST_SLACK
          expect(sum, `${label(i)} to ${j}: ${sum} > ${bound}`).toBeLessThanOrEqual(bound)
        }
      }
    } else if (p.kind === "slidingWindowLog") {
      // Any window-long interval [t_i, t_i + window): admitted cost <= limit.
      for (let i = 0; i < list.length; i++) {
        let sum = 0
        for (const a of list) {
          if (a.t >= list[i].t && a.t < list[i].t + p.windowMs - EARLY_MS) sum += a.cost
        }
        expect(sum, label(i)).toBeLessThanOrEqual(p.limit + COST_SLACK)
      }
    } else if (p.kind === "fixedWindow" || p.kind === "slidingWindowCounter") {
      // Per epoch-aligned window: admitted cost <= limit (the counter's estimate is never
      // below its current window's count, so it keeps this too).
      const perWindow = new Map<number, number>()
      for (const a of list) {
        const n = windowIndex(a.t, p.windowMs)
        perWindow.set(n, (perWindow.get(n) ?? 0) + a.cost)
      }
      for (const [n, sum] of perWindow) {
        expect(sum, `key ${KEYS[key]}, window ${n}`).toBeLessThanOrEqual(p.limit + COST_SLACK)
      }
    } else {
      // At each admission: the leases still held (not released, not expired) fit the limit.
      // A lease counts as ended within the library's stated microsecond (EARLY_MS).
      for (let i = 0; i < list.length; i++) {
        const t = list[i].t + EARLY_MS
        let inFlight = 0
        for (const a of list.slice(0, i + 1)) {
          if (a.lease !== undefined && a.lease.expiresAt > t && a.releasedAt > t) inFlight += a.cost
        }
        expect(inFlight, label(i)).toBeLessThanOrEqual(p.limit + COST_SLACK)
      }
    }
  })
}

const INVARIANT: Record<string, string> = {
  tokenBucket: "admits at most burst + rate*d/period in any interval of length d",
  slidingWindowLog: "admits at most limit in any window-long interval",
  slidingWindowCounter: "admits at most limit in any aligned window",
  fixedWindow: "admits at most limit in any aligned window",
  concurrency: "never holds more than limit in flight",
}

const RUNS = 800

function op(units: number, more: Partial<Op> = {}): Op {
  return {
    key: 0,
    steps: 0,
    fraction: 0,
    units,
    costFraction: 0,
    retry: false,
    release: null,
    ...more,
  }
}

function example(kind: string, name: string, start: number, ops: Op[]): [Run] {
  const c = CASES[kind].find((x) => x.name === name)
  if (c === undefined) throw new Error(`no case named ${name}`)
  return [{ c, start, ops }]
}

/** Counterexamples fast-check found and shrank, replayed ahead of the random runs. */
const FOUND: Record<string, { retry?: [Run][]; remaining?: [Run][] }> = {
  tokenBucket: {
    // At epoch scale, taking 2 of 6 tokens (interval 333.33 ms) reports 3 remaining, yet 4 fit.
    remaining: [example("tokenBucket", "tokenBucket rate 3/1000ms burst 6", EPOCH, [op(2), op(0)])],
  },
  slidingWindowLog: {
    // 125.7 + 999.9999999999998 lands one step short of the entry's expiry: denied again, with
    // retryAfterMs 0.
    retry: [
      example("slidingWindowLog", "slidingWindowLog limit 3 window 1000ms", 0, [
        op(1, { steps: 1, fraction: 0.7, retry: true }),
        op(3, { retry: true }),
        op(1, { retry: true }),
      ]),
    ],
  },
  slidingWindowCounter: {
    // At epoch scale the instant 1333.33 ms on is not representable; the clock lands just
    // short of it: denied again, with retryAfterMs 0.
    retry: [
      example("slidingWindowCounter", "slidingWindowCounter limit 3 window 1000ms", EPOCH, [
        op(3),
        op(1, { retry: true }),
      ]),
    ],
  },
  concurrency: {
    // 25.01 + 87.5 falls one step short of the lease's expiry at 112.51.
    retry: [
      example("concurrency", "concurrency limit 1 lease 100ms", 0, [
        op(1, { steps: 1, fraction: 0.01, retry: true }),
        op(0, { steps: 1 }),
        op(1, { retry: true }),
      ]),
    ],
  },
}

describe.each(Object.keys(CASES))("%s", (kind) => {
  const cases = CASES[kind]

  it("decides exactly as the reference model, step by step", () => {
    fc.assert(fc.property(runArb(cases, EXACT_FRACTIONS, true), matchesReference), {
      numRuns: RUNS,
    })
  })

  it(INVARIANT[kind], () => {
    fc.assert(
      fc.property(runArb(cases, ANY_FRACTIONS, false), (run) => {
        expectInvariant(run, selfCheck(run, "replay"))
      }),
      { numRuns: RUNS },
    )
  })

  it("a denial consumes nothing, and waiting its retryAfterMs admits the same request", () => {
    fc.assert(
      fc.property(
        runArb(cases, ANY_FRACTIONS, false).map((run) => ({
          ...run,
          ops: run.ops.map((op) => ({ ...op, retry: true })),
        })),
        (run) => {
          selfCheck(run, "expect")
        },
      ),
      { numRuns: RUNS, examples: FOUND[kind]?.retry ?? [] },
    )
  })

  it("a peek's remaining is the largest whole cost admitted right now", () => {
    fc.assert(
      fc.property(runArb(cases, ANY_FRACTIONS, false), (run) => {
        selfCheck(run, "replay", remainingIsExact)
      }),
      { numRuns: RUNS, examples: FOUND[kind]?.remaining ?? [] },
    )
  })
})
