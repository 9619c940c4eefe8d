import { Cluster, Redis } from "ioredis"
import { afterAll, beforeAll } from "vitest"
import { RedisStore } from "../../src/index.js"
import { type RedisClusterServers, type RedisServer, startCluster, startRedis } from "./redis.js"

// Test hooks around redis.ts: a server (or a Cluster) and one client to it, started before
// the tests of the enclosing describe (or file) and stopped after them. The fields are set
// once beforeAll has run: read them in tests and in hooks registered later. These live
// apart from redis.ts because the benchmarks import that file outside vitest.

export interface RedisFixture {
  readonly server: RedisServer
  readonly client: Redis
}

export interface ClusterFixture {
  readonly servers: RedisClusterServers
  readonly client: Cluster
}

/** useRedis: a redis-server (startRedis) and a client to it, for the enclosing suite. */
export function useRedis(): RedisFixture {
  const fixture = {} as { server: RedisServer; client: Redis }
  beforeAll(async () => {
    fixture.server = await startRedis()
    fixture.client = new Redis({ host: fixture.server.host, port: fixture.server.port })
  })
  afterAll(async () => {
    fixture.client?.disconnect()
    await fixture.server?.stop()
  })
  return fixture
}

/** ClientTimeFixture: a redis-server, a client to it, and a RedisStore over that client. */
export interface ClientTimeFixture extends RedisFixture {
  readonly store: RedisStore
}

/**
 * useClientTimeStore: useRedis, and a RedisStore that decides on the times the test passes
 * (`time: "client"`, as the TypeScript core does) with maxBatch 3, so that operations
 * issued together span several script calls: what differential tests hold against a
 * MemoryStore.
 */
export function useClientTimeStore(): ClientTimeFixture {
  const fixture = useRedis()
  const out = {
    get server() {
      return fixture.server
    },
    get client() {
      return fixture.client
    },
    store: undefined as unknown as RedisStore,
  }
  beforeAll(() => {
    out.store = new RedisStore({ client: fixture.client, time: "client", maxBatch: 3 })
  })
  return out
}

/** useCluster: a 3-master Cluster (startCluster) and a client to it, for the enclosing suite. */
export function useCluster(): ClusterFixture {
  const fixture = {} as { servers: RedisClusterServers; client: Cluster }
  beforeAll(async () => {
    fixture.servers = await startCluster()
    fixture.client = new Cluster(fixture.servers.nodes)
  })
  afterAll(async () => {
    fixture.client?.disconnect()
    await fixture.servers?.stop()
  })
  return fixture
}
