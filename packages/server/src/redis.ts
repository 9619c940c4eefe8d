// Building the Redis store for `--redis URL` / `--redis-cluster host:port,...`. Commands
// are not queued while the connection is down: they fail at once, so a fail-closed
// server answers 503 promptly instead of piling up requests, and /readyz reports it.

import { Cluster, Redis } from "ioredis"
import { RedisStore } from "./lib.js"
import type { ServeOptions } from "./server.js"

export type RedisTarget = { url: string } | { cluster: { host: string; port: number }[] }

/** parseNodes reads "host:port,host:port" (IPv6 hosts in brackets). */
export function parseNodes(list: string): { host: string; port: number }[] {
  return list.split(",").map((entry) => {
    const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(entry.trim())
    if (m === null) throw new Error(`--redis-cluster: expected host:port, got "${entry}"`)
    return { host: m[1], port: Number(m[2]) }
  })
}

/**
 * redisStore connects to Redis (or a Cluster) and returns the ServeOptions that use it:
 * the store, a PING probe for /readyz, and a close function. A Redis that is not up yet
 * is not an error: the server starts not ready and becomes ready when Redis answers.
 */
export async function redisStore(
  target: RedisTarget,
  onConnectError: (error: Error) => void = () => {},
): Promise<Pick<ServeOptions, "store" | "storeKind" | "storeProbe" | "closeStore">> {
  const client =
    "url" in target
      ? new Redis(target.url, {
          lazyConnect: true,
          enableOfflineQueue: false,
          maxRetriesPerRequest: 1,
        })
      : new Cluster(target.cluster, {
          lazyConnect: true,
          enableOfflineQueue: false,
          redisOptions: { maxRetriesPerRequest: 1 },
        })
  client.on("error", () => {}) // reported through /readyz and tollgate_store_up
  await client.connect().catch(onConnectError)
  return {
    store: new RedisStore({ client }),
    storeKind: "url" in target ? "redis" : "redis-cluster",
    storeProbe: () => client.ping(),
    closeStore: async () => {
      await client.quit().catch(() => client.disconnect())
    },
  }
}
