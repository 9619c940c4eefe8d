// The stores the tiered-limiter scenarios run on. Each case starts what it needs once
// (beforeAll) and hands out a store per test; tests keep apart by prefix, so a shared
// Redis needs no flushing. Adding a store is one line in STORES.

import { Cluster, Redis } from "ioredis"
import { MemoryStore, RedisStore, SharedMemoryStore, type Store } from "../../src/index.js"
import {
  type RedisClusterServers,
  type RedisServer,
  startCluster,
  startRedis,
} from "../support/redis.js"
import { AsyncMemoryStore } from "./async-store.js"

export interface StoreCase {
  readonly name: string
  /** atomic: one check across several keys is one atomic step (false on a Cluster). */
  readonly atomic: boolean
  /** start: set up servers and clients (once per suite). */
  start(): Promise<void>
  /** store: a store for one test. */
  store(): Store
  stop(): Promise<void>
}

function memory(): StoreCase {
  return {
    name: "memory",
    atomic: true,
    start: async () => {},
    store: () => new MemoryStore(),
    stop: async () => {},
  }
}

/** shared memory (for worker_threads), used from this thread. */
function sharedMemory(): StoreCase {
  return {
    name: "shared memory",
    atomic: true,
    start: async () => {},
    store: () => new SharedMemoryStore({ maxKeys: 10_000 }),
    stop: async () => {},
  }
}

/** memory state behind promises: requests interleave the way they do on a network store. */
function asyncMemory(): StoreCase {
  return {
    name: "memory behind promises",
    atomic: true,
    start: async () => {},
    store: () => new AsyncMemoryStore(),
    stop: async () => {},
  }
}

function redis(): StoreCase {
  let server: RedisServer | undefined
  let client: Redis | undefined
  let store: RedisStore | undefined
  return {
    name: "redis",
    atomic: true,
    start: async () => {
      server = await startRedis()
      client = new Redis({ host: server.host, port: server.port })
      // "client" time: decisions use the test's manual clock, not Redis's.
      store = new RedisStore({ client, time: "client" })
    },
    store: () => store!,
    stop: async () => {
      client?.disconnect()
      await server?.stop()
    },
  }
}

function redisCluster(): StoreCase {
  let servers: RedisClusterServers | undefined
  let client: Cluster | undefined
  let store: RedisStore | undefined
  return {
    name: "redis cluster",
    atomic: false,
    start: async () => {
      servers = await startCluster(3)
      client = new Cluster(servers.nodes)
      store = new RedisStore({ client, time: "client" })
    },
    store: () => store!,
    stop: async () => {
      client?.disconnect()
      await servers?.stop()
    },
  }
}

export const STORES: StoreCase[] = [
  memory(),
  asyncMemory(),
  sharedMemory(),
  redis(),
  redisCluster(),
]

let prefixes = 0

/** prefix: a namespace prefix no other test uses. */
export function prefix(): string {
  return `t${process.pid}x${++prefixes}`
}
