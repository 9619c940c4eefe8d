// No over-admission: 64 processes' worth of separate connections (each its own ioredis
// client, RedisStore and limiter) fire 5,000 requests at one key at once, and exactly the
// policy's allowance is admitted, for every algorithm, on one server and on a 3-master
// Cluster. Time is Redis's own; the policies refill too slowly to matter while it runs.

import { Cluster, Redis } from "ioredis"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import {
  concurrency,
  createLimiter,
  fixedWindow,
  type Policy,
  RedisStore,
  slidingWindowCounter,
  slidingWindowLog,
  tokenBucket,
} from "../../src/index.js"
import {
  keysWithoutTtl,
  type RedisClusterServers,
  type RedisServer,
  startCluster,
  startRedis,
} from "../support/redis.js"

const CONNECTIONS = 64
const REQUESTS = 5000
const ALLOWANCE = 100

const POLICIES: Policy[] = [
  tokenBucket({ rate: 1, period: "1h", burst: ALLOWANCE }),
  slidingWindowLog({ limit: ALLOWANCE, window: "10d" }),
  slidingWindowCounter({ limit: ALLOWANCE, window: "10d" }),
  fixedWindow({ limit: ALLOWANCE, window: "10d" }),
  concurrency({ limit: ALLOWANCE, leaseTimeout: "1h" }),
]

let single: RedisServer
let cluster: RedisClusterServers
const clients: (Redis | Cluster)[] = []

beforeAll(async () => {
  ;[single, cluster] = await Promise.all([startRedis(), startCluster()])
})

afterAll(async () => {
  for (const c of clients) c.disconnect()
  await Promise.all([single?.stop(), cluster?.stop()])
})

async function connect(topology: "single" | "cluster"): Promise<(Redis | Cluster)[]> {
  const opened: (Redis | Cluster)[] = []
  for (let i = 0; i < CONNECTIONS; i++) {
    opened.push(
      topology === "single"
        ? new Redis({ host: single.host, port: single.port })
        : new Cluster(cluster.nodes),
    )
  }
  clients.push(...opened)
  await Promise.all(
    opened.map(
      (c) =>
        new Promise<void>((resolve, reject) => {
          if (c.status === "ready") resolve()
          c.once("ready", () => resolve())
          c.once("error", reject)
        }),
    ),
  )
  return opened
}

describe.each(["single", "cluster"] as const)("no over-admission on %s", (topology) => {
  let connections: (Redis | Cluster)[]
  beforeAll(async () => {
    connections = await connect(topology)
  })

  for (const policy of POLICIES) {
    it(`${policy.kind}: ${CONNECTIONS} connections, ${REQUESTS} requests, ${ALLOWANCE} admitted`, async () => {
      const prefix = `over-${topology}`
      const limiters = connections.map((client) =>
        createLimiter({ policy, store: new RedisStore({ client }), prefix, timeout: 20_000 }),
      )
      const decisions = await Promise.all(
        Array.from({ length: REQUESTS }, (_, i) => limiters[i % CONNECTIONS].limit("hot")),
      )
      const admitted = decisions.filter((d) => d.allowed).length
      expect(admitted).toBe(ALLOWANCE)
      const after = await limiters[0].peek("hot")
      expect(after.remaining).toBe(0)
      // Every limiter saw the same story: each decision's remaining is below the limit
      // and a denial never claims room.
      for (const d of decisions) if (!d.allowed) expect(d.remaining).toBe(0)
    })
  }

  it("leaves no key without a TTL", async () => {
    const servers = topology === "single" ? [single] : cluster.nodes
    const { scanned, missing } = await keysWithoutTtl(servers, "over-*")
    expect(scanned).toBe(POLICIES.length)
    expect(missing).toEqual([])
  })
})
