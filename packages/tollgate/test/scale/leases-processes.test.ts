// Several Node processes, each with its own ioredis connection, RedisStore and limiter,
// hammer one key on a real redis-server. Without leases the admitted total is exactly
// the allowance; with leases it stays within the documented bound: at most N * kMax over
// what the exact policy allows in any interval (docs/hot-keys.md). Time is Redis's own;
// the fleet reads Redis's clock around each phase to know how long the policy refilled.

import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { localLeases, MemoryStore, tokenBucket } from "../../src/index.js"
import { type Fleet, type RunSpec, startFleet } from "../support/hot-key-fleet.js"
import { type RedisServer, startRedis } from "../support/redis.js"

const N = 3

let redis: RedisServer
let fleet: Fleet

beforeAll(async () => {
  redis = await startRedis()
  fleet = await startFleet(N, redis.host, redis.port)
})

afterAll(async () => {
  await fleet?.stop()
  await redis?.stop()
})

type Options = Extract<RunSpec["policy"], { kind: "tokenBucket" }>["options"]

/** kMax: the largest pocket localLeases takes for this policy and options. */
function kMax(options: Options, leases: RunSpec["leases"]): number {
  return localLeases(new MemoryStore(), leases).maxLease(tokenBucket(options))
}

/** prepareLeases readies the fleet to hammer "hot" with `inFlight` requests per process, through leases. */
function prepareLeases(
  prefix: string,
  options: Options,
  leases: RunSpec["leases"],
  inFlight: number,
): Promise<void> {
  return fleet.prepare({
    mode: "leases",
    policy: { kind: "tokenBucket", options },
    prefix,
    key: "hot",
    inFlight,
    leases,
  })
}

const sum = (stats: Record<string, number>[], field: string) =>
  stats.reduce((s, x) => s + (x[field] ?? 0), 0)

describe(`one hot key, ${N} processes on one redis-server`, () => {
  it("without leases: admits exactly the allowance", async () => {
    // One token an hour: nothing refills during the run, so the allowance is the burst.
    await fleet.prepare({
      mode: "plain",
      policy: { kind: "tokenBucket", options: { rate: 1, period: "1h", burst: 3000 } },
      prefix: "exact",
      key: "hot",
      inFlight: 16,
    })
    const run = await fleet.phase(1200)
    await fleet.finish()
    expect(run.errors).toBe(0)
    expect(run.allowed).toBe(3000)
    expect(run.denied).toBeGreaterThan(3000) // the key was hammered well past its budget
  })

  it("with leases: within N * kMax of the allowance, nearly every decision made locally", async () => {
    const options = { rate: 2000, period: "1s", burst: 500 }
    const leases = { period: "50ms", maxShare: 0.02 }
    const k = kMax(options, leases)
    expect(k).toBe(10)
    await prepareLeases("leased", options, leases, 16)
    const run = await fleet.phase(1500)
    const stats = await fleet.finish()
    expect(run.errors).toBe(0)
    // The bucket was full when the run began; Redis's clock says how long it refilled.
    const allowance = options.burst + (options.rate * run.redisMs) / 1000
    const bound = allowance + N * k
    console.log(
      `leases: admitted ${run.allowed} of an allowance of ${allowance.toFixed(0)} ` +
        `(bound ${bound.toFixed(0)}), ${run.denied} denied; ` +
        `${sum(stats, "leases")} leases, ${sum(stats, "localAllowed")} admitted and ` +
        `${sum(stats, "localDenied")} denied locally`,
    )
    expect(run.allowed).toBeLessThanOrEqual(bound)
    // Under-admission is bounded too: what the store and the pockets held at the end,
    // and a quarter second of slack for the phase's start and end.
    expect(run.allowed).toBeGreaterThan(allowance - options.burst - N * k - options.rate / 4)
    expect(run.denied).toBeGreaterThan(run.allowed)
    expect(sum(stats, "leases")).toBeGreaterThan(0)
    expect(sum(stats, "localAllowed")).toBeGreaterThan(0)
    const local = sum(stats, "localAllowed") + sum(stats, "localDenied")
    expect(local).toBeGreaterThan(0.9 * (run.allowed + run.denied))
  })

  it("with leases: units carried in pockets across a pause stay within the bound", async () => {
    // Hammer until the key is hot and pockets are held; pause while the store refills to
    // its full burst (the pockets live for 1 s); hammer again. The second phase may
    // admit the full bucket, its refill and whatever the pockets still held: the exact
    // policy would admit the first two only.
    const options = { rate: 2000, period: "1s", burst: 1000 }
    const leases = { period: "1s", maxShare: 0.02 }
    const k = kMax(options, leases)
    expect(k).toBe(20)
    await prepareLeases("carried", options, leases, 8)
    const first = await fleet.phase(1300)
    await new Promise((resolve) => setTimeout(resolve, 600))
    const second = await fleet.phase(300)
    const stats = await fleet.finish()
    expect(first.errors + second.errors).toBe(0)
    const exact = options.burst + (options.rate * second.redisMs) / 1000
    console.log(
      `after the pause: admitted ${second.allowed}, the exact policy at most ${exact.toFixed(0)}, ` +
        `over by ${(second.allowed - exact).toFixed(0)} (bound ${N * k}); ` +
        `${sum(stats, "leases")} leases in all`,
    )
    expect(second.allowed).toBeLessThanOrEqual(exact + N * k)
    expect(sum(stats, "leases")).toBeGreaterThan(0)
  })
})
