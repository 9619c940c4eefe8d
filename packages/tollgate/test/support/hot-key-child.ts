// One process of a hot-key fleet (see hot-key-fleet.ts): its own ioredis connection, its
// own store and limiter, hammering one key with `inFlight` concurrent callers when told.
// Started by the fleet with the tsx loader; talks to it over the IPC channel only.

import { Redis } from "ioredis"
import {
  createLimiter,
  deniedCache,
  fixedWindow,
  type Limiter,
  type LocalLeases,
  localLeases,
  type Policy,
  RedisStore,
  type ShardablePolicy,
  type Store,
  sharded,
  tokenBucket,
} from "../../src/index.js"
import type { ChildReply, FleetRequest, PhaseResult, RunSpec } from "./hot-key-fleet.js"

const client = new Redis({
  host: process.env.HOT_KEY_REDIS_HOST,
  port: Number(process.env.HOT_KEY_REDIS_PORT),
})

function reply(message: ChildReply): void {
  process.send!(message)
}

function makePolicy(spec: RunSpec["policy"]): Policy {
  return spec.kind === "tokenBucket" ? tokenBucket(spec.options) : fixedWindow(spec.options)
}

interface Run {
  spec: RunSpec
  limiter: Limiter<false>
  leases: LocalLeases | undefined
  stats: () => Record<string, number>
}

function prepare(spec: RunSpec): Run {
  const redis = new RedisStore({ client })
  let store: Store = redis
  let leases: LocalLeases | undefined
  let stats = (): Record<string, number> => ({})
  let policy = makePolicy(spec.policy)
  if (spec.mode === "denied-cache") {
    const cache = deniedCache(redis)
    stats = () => ({ ...cache.stats() })
    store = cache
  } else if (spec.mode === "leases") {
    leases = localLeases(redis, spec.leases)
    const l = leases
    stats = () => ({ ...l.stats() })
    store = leases
  } else if (spec.mode === "sharded") {
    policy = sharded(policy as ShardablePolicy, { shards: spec.shards ?? 8 })
  }
  const limiter = createLimiter({
    policy,
    store,
    prefix: spec.prefix,
    timeout: 30_000,
    maxInFlight: 1_000_000,
  }) as Limiter<false>
  return { spec, limiter, leases, stats }
}

async function phase(run: Run, ms: number): Promise<PhaseResult> {
  const { limiter, spec } = run
  let allowed = 0
  let denied = 0
  let errors = 0
  let stop = false
  const t0 = performance.now()
  const deadline = t0 + ms
  const caller = async () => {
    let n = 0
    while (!stop) {
      // Local answers resolve as microtasks: let I/O in now and then, as a server would.
      if (++n % 64 === 0) await new Promise((resolve) => setImmediate(resolve))
      try {
        if ((await limiter.limit(spec.key)).allowed) allowed++
        else denied++
      } catch {
        errors++
      }
      if (performance.now() >= deadline) stop = true
    }
  }
  await Promise.all(Array.from({ length: spec.inFlight }, caller))
  return { allowed, denied, errors, ms: performance.now() - t0 }
}

let run: Run | undefined

process.on("message", async (message: FleetRequest) => {
  try {
    if (message.type === "prepare") {
      run = prepare(message.spec)
      reply({ type: "prepared" })
    } else if (message.type === "go") {
      reply({ type: "phase", result: await phase(run!, message.ms) })
    } else if (message.type === "finish") {
      await run?.leases?.close()
      reply({ type: "finished", stats: run?.stats() ?? {} })
      run = undefined
    } else if (message.type === "exit") {
      client.disconnect()
      process.disconnect()
    }
  } catch (error) {
    reply({ type: "error", message: String((error as Error)?.stack ?? error) })
  }
})

client.once("ready", () => reply({ type: "ready" }))
client.on("error", (error) => reply({ type: "error", message: String(error) }))
