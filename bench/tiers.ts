// Multi-tier benchmark: a 4-tier check (createTieredLimiter) beside a single-tier check
// (createLimiter with one policy) in the same run, on the memory store and on one local
// redis-server that this benchmark starts, with 64 requests in flight.
//
//   npm run bench:tiers                     full run (about half a minute)
//   BENCH_QUICK=1 npm run bench:tiers       smoke run
//   BENCH_MAX_BATCH=1 npm run bench:tiers   Redis: one script call per check (no batching)
//
// The four tiers are those of an AI gateway: requests per user, requests per user and
// model, tokens per user (a cost budget) and requests per tenant (a token bucket); the
// single tier is requests per user. Requests come from 10,000 users (keys built once, as
// a server's parsed request fields would be) and every limit admits nearly everything,
// so the benchmark measures the decision path, not denials. Contenders take turns within
// each round; the median of the rounds is reported, with the ratio of the medians.
// Targets from the issue: the 4-tier check at >= 0.3x the single-tier decisions/s on the
// memory store, >= 0.5x on Redis (one round trip per check, not one per tier). Both
// readings of "single tier" are printed: createLimiter with one policy, and the tiered
// limiter with one tier. On the memory store a last row runs the same four limits written
// out by hand (see handWritten): what the tiered check's work around the kernels costs.
// On Redis, calls in flight are batched into shared script calls, createLimiter's and the
// tiered limiter's alike (one group of checks per request, each all or nothing); the
// last table shows script calls and Redis's own script time per decision, read from the
// server's command statistics.

import { Redis } from "ioredis"
import { slidingWindowCounterLimit } from "../packages/tollgate/src/core/sliding-window-counter.js"
import { tokenBucketLimit } from "../packages/tollgate/src/core/token-bucket.js"
import {
  createLimiter,
  createTieredLimiter,
  RedisStore,
  slidingWindowCounter,
  type TieredConfig,
  tokenBucket,
} from "../packages/tollgate/src/index.js"
import { startRedis } from "../packages/tollgate/test/support/redis.js"

const QUICK = process.env.BENCH_QUICK === "1"
const ROUNDS = QUICK ? 3 : 9
const MEMORY_MS = QUICK ? 150 : 500
const REDIS_MS = QUICK ? 400 : 1500
const IN_FLIGHT = 64
const USERS = 10_000
const TARGET_MEMORY = 0.3
const TARGET_REDIS = 0.5

const LOOSE = { limit: 1e9, window: "1h" } as const

const fourTiers: TieredConfig = {
  tiers: {
    user: { key: ["user"], limit: LOOSE },
    userModel: { key: ["user", "model"], limit: LOOSE },
    tokens: { key: ["user"], budget: "cost", limit: { limit: 1e9, window: "1m" } },
    tenant: { key: ["tenant"], limit: { rate: 1e9, period: "1m" } },
  },
}

const singlePolicy = slidingWindowCounter(LOOSE)

type Request = { user: string; model: string; tenant: string }

/**
 * handWritten is the benchmark's four limits written out by hand, for reference: the two
 * tiers keyed by user kept in one record (one lookup serves both), the user-and-model tier
 * in a small map per user, the tenant's bucket in a map of its own; the library's own
 * kernels decide, and the answer carries a decision per tier. Nothing else: no checking
 * of the request, no stats, no plans or profiles, no eviction or recency order, no undo
 * (the benchmark's limits never deny; this code would be wrong if they did). Any tiered
 * check does at least this work, so its rate bounds what the 4-tier row can reach.
 */
function handWritten(): (r: Request, cost: number) => unknown {
  const perUser = slidingWindowCounter(LOOSE)
  const tokens = slidingWindowCounter({ limit: 1e9, window: "1m" })
  const perTenant = tokenBucket({ rate: 1e9, period: "1m" })
  const users = new Map<string, number>()
  const models: Map<string, number>[] = []
  const tenants = new Map<string, number>()
  const userStates = new Float64Array(6 * USERS) // per user: the user tier's 3, the tokens tier's 3
  const pairStates = new Float64Array(3 * 4 * USERS)
  const tenantStates = new Float64Array(USERS)
  let pairs = 0
  const origin = performance.timeOrigin
  return (r, cost) => {
    const now = origin + performance.now()
    let u = users.get(r.user)
    if (u === undefined) {
      u = users.size
      users.set(r.user, u)
      models.push(new Map())
    }
    const byModel = models[u]
    let m = byModel.get(r.model)
    if (m === undefined) {
      m = pairs++
      byModel.set(r.model, m)
    }
    let t = tenants.get(r.tenant)
    if (t === undefined) {
      t = tenants.size
      tenants.set(r.tenant, t)
    }
    const user = slidingWindowCounterLimit(perUser, userStates, u * 6, now, 1)
    const userModel = slidingWindowCounterLimit(perUser, pairStates, m * 3, now, 1)
    const spent = slidingWindowCounterLimit(tokens, userStates, u * 6 + 3, now, cost)
    const tenant = tokenBucketLimit(perTenant, tenantStates, t, now, 1)
    return {
      allowed: user.allowed && userModel.allowed && spent.allowed && tenant.allowed,
      limit: user.limit,
      remaining: user.remaining,
      retryAfterMs: 0,
      resetAfterMs: user.resetAfterMs,
      tiers: { user, userModel, tokens: spent, tenant },
    }
  }
}

/** requests: one per user, with flat key strings (as parsed from a request). */
const requests = Array.from({ length: USERS }, (_, i) => ({
  user: `user-${(i * 7919) % 1_000_003}`.padEnd(16, "x"),
  model: ["small", "large", "vision"][i % 3],
  tenant: `tenant-${i % 50}`,
}))
const cost = { cost: 250 }

type Sync = (i: number) => unknown
type Async = (i: number) => Promise<unknown>

/** syncRate runs `call` for `ms` and returns decisions per second. */
function syncRate(call: Sync, ms: number): number {
  let n = 0
  const start = performance.now()
  let now = start
  while (now - start < ms) {
    for (let j = 0; j < 1000; j++) call(n++)
    now = performance.now()
  }
  return (n / (now - start)) * 1000
}

/** asyncRate keeps IN_FLIGHT calls going for `ms` and returns decisions per second. */
async function asyncRate(call: Async, ms: number): Promise<number> {
  let n = 0
  let stop = false
  const worker = async () => {
    while (!stop) await call(n++)
  }
  const start = performance.now()
  const workers = Array.from({ length: IN_FLIGHT }, worker)
  await new Promise((resolve) => setTimeout(resolve, ms))
  stop = true
  const done = n
  const elapsed = performance.now() - start
  await Promise.all(workers)
  return (done / elapsed) * 1000
}

/** run makes `count` calls one after another (one worker of a batch in flight). */
async function run(call: Async, worker: number, count: number): Promise<void> {
  for (let i = 0; i < count; i++) await call(worker * 7 + i * IN_FLIGHT)
}

/** scriptStats reads how many script calls (FCALL, EVALSHA, EVAL) the server has run, and their time (µs). */
async function scriptStats(client: Redis): Promise<{ calls: number; usec: number }> {
  const info = await client.info("commandstats")
  let calls = 0
  let usec = 0
  for (const m of info.matchAll(/cmdstat_(?:fcall|evalsha|eval):calls=(\d+),usec=(\d+)/g)) {
    calls += Number(m[1])
    usec += Number(m[2])
  }
  return { calls, usec }
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2
}

const fmt = (perSecond: number) =>
  perSecond >= 1e6 ? `${(perSecond / 1e6).toFixed(2)} M/s` : `${(perSecond / 1e3).toFixed(1)} k/s`

/**
 * report prints each contender's median rate and two ratios for the 4-tier check: against
 * createLimiter with one policy (the first row) and against the same tiered limiter with
 * one tier (the second row: what adding three tiers costs).
 */
function report(title: string, rows: [string, number[]][], target: number): void {
  const base = median(rows[0][1])
  console.log(`\n${title}`)
  for (const [name, xs] of rows) {
    const m = median(xs)
    console.log(`  ${name.padEnd(34)} ${fmt(m).padStart(10)}   ${(m / base).toFixed(2)}x`)
  }
  const four = median(rows[2][1])
  const mark = (r: number) =>
    `${r.toFixed(2)}x (target >= ${target}x: ${r >= target ? "met" : "not met"})`
  console.log(`  4 tiers / single tier (createLimiter):      ${mark(four / base)}`)
  console.log(`  4 tiers / 1 tier (createTieredLimiter):     ${mark(four / median(rows[1][1]))}`)
  if (rows.length > 3) {
    const hand = median(rows[3][1])
    console.log(`  written by hand / single tier:              ${(hand / base).toFixed(2)}x`)
  }
}

async function memory(): Promise<void> {
  const single = createLimiter({ policy: singlePolicy })
  const oneTier = createTieredLimiter({ tiers: { user: fourTiers.tiers.user } })
  const gateway = createTieredLimiter(fourTiers)
  const reference = handWritten()
  const contenders: [string, Sync][] = [
    ["single tier (createLimiter)", (i) => single.limit(requests[i % USERS].user)],
    ["1 tier (createTieredLimiter)", (i) => oneTier.limit(requests[i % USERS], cost)],
    ["4 tiers (createTieredLimiter)", (i) => gateway.limit(requests[i % USERS], cost)],
    ["4 tiers, written by hand", (i) => reference(requests[i % USERS], cost.cost)],
  ]
  for (const [, call] of contenders) syncRate(call, MEMORY_MS) // warm up
  const rates: number[][] = contenders.map(() => [])
  for (let round = 0; round < ROUNDS; round++) {
    contenders.forEach(([, call], c) => {
      rates[c].push(syncRate(call, MEMORY_MS))
    })
  }
  report(
    "memory store (synchronous), median of rounds",
    contenders.map(([name], c) => [name, rates[c]]),
    TARGET_MEMORY,
  )
}

async function redis(): Promise<void> {
  const server = await startRedis()
  const client = new Redis({ host: server.host, port: server.port })
  try {
    const store = new RedisStore({ client, maxBatch: Number(process.env.BENCH_MAX_BATCH ?? 128) })
    const single = createLimiter({ policy: singlePolicy, store, prefix: "bench-single" })
    const oneTier = createTieredLimiter({
      tiers: { user: fourTiers.tiers.user },
      store,
      prefix: "bench-one",
    })
    const gateway = createTieredLimiter({ ...fourTiers, store, prefix: "bench-tiers" })
    const contenders: [string, Async][] = [
      ["single tier (createLimiter)", (i) => single.limit(requests[i % USERS].user)],
      ["1 tier (createTieredLimiter)", (i) => oneTier.limit(requests[i % USERS], cost)],
      ["4 tiers (createTieredLimiter)", (i) => gateway.limit(requests[i % USERS], cost)],
    ]
    for (const [, call] of contenders) await asyncRate(call, REDIS_MS / 2)
    const rates: number[][] = contenders.map(() => [])
    for (let round = 0; round < Math.max(3, ROUNDS >> 1); round++) {
      for (let c = 0; c < contenders.length; c++) {
        rates[c].push(await asyncRate(contenders[c][1], REDIS_MS))
      }
    }
    report(
      `one local redis-server, ${IN_FLIGHT} in flight, median of rounds`,
      contenders.map(([name], c) => [name, rates[c]]),
      TARGET_REDIS,
    )
    // Script calls and script time per decision, from the server's own command statistics.
    console.log("  per decision:                      script calls             Redis script time")
    for (const [name, call] of contenders) {
      const before = await scriptStats(client)
      const n = 6400
      await Promise.all(Array.from({ length: IN_FLIGHT }, (_, w) => run(call, w, n / IN_FLIGHT)))
      const after = await scriptStats(client)
      const calls = (after.calls - before.calls) / n
      const usec = (after.usec - before.usec) / n
      console.log(
        `    ${name.padEnd(32)} ${calls.toFixed(2).padStart(8)}   ${usec.toFixed(1).padStart(19)} µs`,
      )
    }
  } finally {
    client.disconnect()
    await server.stop()
  }
}

console.log(`tollgate multi-tier bench (node ${process.version}${QUICK ? ", quick" : ""})`)
await memory()
await redis()
