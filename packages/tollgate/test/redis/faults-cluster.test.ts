// A Redis Cluster master killed under load (3 masters, no replicas). The keys whose slots
// lived on it can only fail: under "closed" nothing is admitted for them, under a fallback
// exactly the fallback's budget. Keys on the live masters keep their exact limits as long
// as the cluster does not require full coverage; with Redis's default (it does), the
// whole cluster refuses once it has marked the master failed, and every key falls to
// onStoreError. Restarted, the master rejoins with its slots (their state is lost) and
// its keys are decided by Redis again. No call waits longer than the timeout plus a margin.

import { Cluster, Redis } from "ioredis"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import {
  createLimiter,
  type Limiter,
  type LimiterOptions,
  MemoryStore,
  RedisStore,
  tokenBucket,
} from "../../src/index.js"
import { encodePart, slotOf } from "../../src/stores/redis/key-layout.js"
import {
  type ControlledRedis,
  keysWithoutTtl,
  type Outcome,
  type RedisClusterServers,
  startCluster,
  startControlledRedis,
  type Tally,
  tally,
} from "../support/redis.js"

const TIMEOUT_MS = 300
const MARGIN_MS = 700
const ALLOWANCE = 50
const INSTANCES = 2
const FALLBACK_BUDGET = ALLOWANCE / INSTANCES
const policy = tokenBucket({ rate: 1, period: "1h", burst: ALLOWANCE })
const PREFIX = "fault"

const report = (name: string, figures: Record<string, unknown>) => {
  if (process.env.FAULT_REPORT) console.info(name, JSON.stringify(figures))
}

let cluster: RedisClusterServers<ControlledRedis>
let client: Cluster
const admins: Redis[] = []

beforeAll(async () => {
  cluster = await startCluster(3, {
    start: startControlledRedis,
    // Keep serving the live masters' slots while one is down (Redis's default is "yes":
    // the whole cluster stops; the test switches to it later).
    args: ["--cluster-require-full-coverage", "no", "--cluster-node-timeout", "2000"],
  })
  client = new Cluster(cluster.nodes)
  client.on("error", () => {})
  client.on("node error", () => {})
  await new Promise<void>((resolve) => client.once("ready", () => resolve()))
})

afterAll(async () => {
  client?.disconnect()
  for (const a of admins) a.disconnect()
  await cluster?.stop()
})

function admin(s: ControlledRedis): Redis {
  const a = new Redis({ host: s.host, port: s.port })
  a.on("error", () => {})
  admins.push(a)
  return a
}

/** keysOn: `n` user keys starting with `stem` whose slots belong to `port`. */
async function keysOn(port: number, stem: string, n: number): Promise<string[]> {
  const ranges = await admin(cluster.servers[1]).cluster("SLOTS")
  const owner = (slot: number) => ranges.find(([from, to]) => slot >= from && slot <= to)?.[2][1]
  const keys: string[] = []
  for (let i = 0; keys.length < n; i++) {
    if (owner(slotOf(encodePart(`${stem}${i}`))) === port) keys.push(`${stem}${i}`)
  }
  return keys
}

function limiter(name: string, options: Partial<LimiterOptions>): Limiter<false> {
  return createLimiter({
    policy,
    store: new RedisStore({ client, guardPrefix: `${PREFIX}-guard` }),
    prefix: `${PREFIX}-${name}`,
    timeout: TIMEOUT_MS,
    ...options,
  })
}

/** burst fires `perKey` calls at each key at once; per key, how they ended. */
async function burst(l: Limiter<false>, keys: string[], perKey = 2 * ALLOWANCE) {
  const start = performance.now()
  const outcomes = await Promise.all(
    keys.flatMap((key) =>
      Array.from({ length: perKey }, () =>
        l.limit(key).then(
          (decision): Outcome => ({ at: 0, ms: performance.now() - start, decision }),
          (error): Outcome => ({ at: 0, ms: performance.now() - start, error }),
        ),
      ),
    ),
  )
  return keys.map((_, k) => tally(outcomes.slice(k * perKey, (k + 1) * perKey)))
}

function expectSettled(tallies: Tally[]): void {
  for (const t of tallies) {
    expect(t.others).toEqual([])
    expect(t.maxMs).toBeLessThanOrEqual(TIMEOUT_MS + MARGIN_MS)
  }
}

async function clusterState(s: ControlledRedis): Promise<string> {
  const info = (await admin(s).cluster("INFO")) as string
  return /cluster_state:(\w+)/.exec(info)?.[1] ?? "unknown"
}

async function until(what: () => Promise<boolean>, withinMs: number, label: string) {
  const start = performance.now()
  while (!(await what())) {
    if (performance.now() - start > withinMs) throw new Error(`${label}: not within ${withinMs} ms`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  return performance.now() - start
}

const summary = (ts: Tally[]) =>
  ts.map((t) => ({
    byStore: t.byStore,
    fallback: t.fallback,
    denied: t.denied,
    storeErrors: t.storeErrors,
    maxMs: Math.round(t.maxMs),
  }))

describe("a Cluster master killed under load", () => {
  it("closed: nothing on its slots, exact elsewhere; fallback: its budget; restart recovers", async () => {
    const [victim, ...live] = cluster.servers
    const dead = await keysOn(victim.port, "d", 3)
    const alive = [...(await keysOn(live[0].port, "a", 2)), ...(await keysOn(live[1].port, "a", 2))]
    const closed = limiter("cluster-closed", { breaker: false })
    const fallback = limiter("cluster-fallback", {
      breaker: false,
      onStoreError: { fallback: new MemoryStore(), instances: INSTANCES },
    })
    const breaking = limiter("cluster-breaker", { breaker: { failures: 5, cooldown: "5s" } })
    await victim.kill()

    // One master down, the others serving their slots.
    const [closedDead, closedAlive, fallbackDead, fallbackAlive] = await Promise.all([
      burst(closed, dead),
      burst(closed, alive),
      burst(fallback, dead),
      burst(fallback, alive),
    ])
    expectSettled([...closedDead, ...closedAlive, ...fallbackDead, ...fallbackAlive])
    for (const t of closedDead) expect(t).toMatchObject({ byStore: 0, storeErrors: 2 * ALLOWANCE })
    for (const t of closedAlive) expect(t).toMatchObject({ byStore: ALLOWANCE, storeErrors: 0 })
    for (const t of fallbackDead) {
      expect(t).toMatchObject({ byStore: 0, fallback: FALLBACK_BUDGET, degraded: 2 * ALLOWANCE })
    }
    for (const t of fallbackAlive) expect(t).toMatchObject({ byStore: ALLOWANCE, degraded: 0 })

    // The breaker belongs to the limiter, not to a node: failures on the dead master's
    // slots open it for every key, live ones included, until its cooldown ends.
    const breakerDead = await burst(breaking, dead)
    const breakerAlive = await burst(breaking, alive)
    expectSettled([...breakerDead, ...breakerAlive])
    for (const t of breakerAlive) {
      expect(t.storeErrors).toBe(2 * ALLOWANCE)
      expect([...t.messages.keys()]).toEqual([
        "store unavailable: circuit open after repeated failures",
      ])
    }

    // Redis's default: with full coverage required, the live masters refuse every key
    // once they have marked the master failed.
    for (const s of live) {
      await admin(s).config("SET", "cluster-require-full-coverage", "yes")
    }
    const failMs = await until(
      async () => (await Promise.all(live.map(clusterState))).every((st) => st === "fail"),
      20_000,
      "cluster_state:fail",
    )
    const fresh = [...(await keysOn(live[0].port, "f", 1)), ...(await keysOn(live[1].port, "f", 1))]
    const [downClosed, downFallback] = await Promise.all([
      burst(closed, fresh),
      burst(fallback, alive),
    ])
    expectSettled([...downClosed, ...downFallback])
    for (const t of downClosed) expect(t).toMatchObject({ byStore: 0, storeErrors: 2 * ALLOWANCE })
    // A live key under fallback: the allowance from Redis before, the fallback's budget
    // now, and never more.
    for (const t of downFallback) {
      expect(t).toMatchObject({ byStore: 0, fallback: FALLBACK_BUDGET, degraded: 2 * ALLOWANCE })
    }

    // Back: coverage no longer required, the master restarted (empty: its slots' state is
    // lost). Its keys are decided by Redis again, exactly.
    for (const s of live) await admin(s).config("SET", "cluster-require-full-coverage", "no")
    await victim.restart()
    const recoverMs = await until(
      async () => {
        try {
          return (await closed.limit(dead[0])).degraded === undefined
        } catch {
          return false
        }
      },
      20_000,
      "recovery",
    )
    const [again] = await burst(closed, await keysOn(victim.port, "r", 1))
    expect(again).toMatchObject({ byStore: ALLOWANCE, denied: ALLOWANCE, storeErrors: 0 })
    report("cluster", {
      closedDead: summary(closedDead),
      closedAlive: summary(closedAlive),
      fallbackDead: summary(fallbackDead),
      fallbackAlive: summary(fallbackAlive),
      breakerAlive: summary(breakerAlive),
      failMs: Math.round(failMs),
      downClosed: summary(downClosed),
      downFallback: summary(downFallback),
      recoverMs: Math.round(recoverMs),
    })
  }, 60_000)

  it("leaves no key without a TTL", async () => {
    const { scanned, missing } = await keysWithoutTtl(cluster.nodes, `${PREFIX}*`)
    expect(scanned).toBeGreaterThan(0)
    expect(missing).toEqual([])
  })
})
