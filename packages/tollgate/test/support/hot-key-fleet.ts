// A fleet of child Node processes hammering one hot key on a real redis-server, each with
// its own ioredis connection, store and limiter (hot-key-child.ts). Used by the
// multi-process lease test and by bench/scale.ts.
//
// A run is prepared in every child (a fresh limiter over the chosen store wrapper), then
// driven in phases: `phase(ms)` makes every child hammer the key for ms at once and
// returns the summed counts; the fleet reads Redis's clock around each phase, so that the
// exact policy's allowance for the elapsed time can be computed. `finish()` flushes
// leases and collects the wrappers' stats.

import { type ChildProcess, spawn } from "node:child_process"
import { createRequire } from "node:module"
import { pathToFileURL } from "node:url"
import { Redis } from "ioredis"

export type Mode = "plain" | "denied-cache" | "leases" | "sharded"

export interface RunSpec {
  mode: Mode
  policy:
    | { kind: "tokenBucket"; options: { rate: number; period?: string | number; burst?: number } }
    | { kind: "fixedWindow"; options: { limit: number; window: string | number } }
  prefix: string
  key: string
  /** inFlight: concurrent callers per process. */
  inFlight: number
  leases?: { period?: string | number; maxShare?: number; minLease?: number }
  shards?: number
}

export type FleetRequest =
  | { type: "prepare"; spec: RunSpec }
  | { type: "go"; ms: number }
  | { type: "finish" }
  | { type: "exit" }

export interface PhaseResult {
  allowed: number
  denied: number
  errors: number
  ms: number
}

export type ChildReply =
  | { type: "ready" }
  | { type: "prepared" }
  | { type: "phase"; result: PhaseResult }
  | { type: "finished"; stats: Record<string, number> }
  | { type: "error"; message: string }

export interface FleetPhase extends PhaseResult {
  /** decisions: allowed + denied over all processes. */
  decisions: number
  /** perSecond: decisions per second, summed over processes (each over its own time). */
  perSecond: number
  /** redisStart, redisEnd: Redis's clock (epoch ms) just before the phase began and just after it ended. */
  redisStart: number
  redisEnd: number
  /** redisMs: redisEnd - redisStart. */
  redisMs: number
}

const CHILD = new URL("./hot-key-child.ts", import.meta.url)
const TSX = pathToFileURL(createRequire(import.meta.url).resolve("tsx")).href

class Child {
  readonly process: ChildProcess
  private readonly waiting: {
    type: string
    resolve(r: ChildReply): void
    reject(e: Error): void
  }[] = []
  private exited: Error | undefined

  constructor(host: string, port: number) {
    this.process = spawn(process.execPath, ["--import", TSX, CHILD.pathname], {
      stdio: ["ignore", "inherit", "inherit", "ipc"],
      env: { ...process.env, HOT_KEY_REDIS_HOST: host, HOT_KEY_REDIS_PORT: String(port) },
    })
    this.process.on("message", (reply: ChildReply) => {
      const w = this.waiting.shift()
      if (w === undefined) return
      if (reply.type === "error") w.reject(new Error(`hot-key child failed: ${reply.message}`))
      else if (reply.type !== w.type) {
        w.reject(new Error(`expected "${w.type}" from a child, got "${reply.type}"`))
      } else w.resolve(reply)
    })
    this.process.on("exit", (code, signal) => {
      this.exited = new Error(`hot-key child exited (code ${code}, signal ${signal})`)
      for (const w of this.waiting.splice(0)) w.reject(this.exited)
    })
  }

  /** next resolves with the child's next reply, which must be of `type`. */
  next<T extends ChildReply["type"]>(type: T): Promise<Extract<ChildReply, { type: T }>> {
    return new Promise((resolve, reject) => {
      if (this.exited !== undefined) reject(this.exited)
      else {
        this.waiting.push({
          type,
          resolve: resolve as (r: ChildReply) => void,
          reject,
        })
      }
    })
  }

  send(request: FleetRequest): void {
    this.process.send(request)
  }
}

export interface Fleet {
  readonly size: number
  /** prepare builds a fresh limiter for `spec` in every process. */
  prepare(spec: RunSpec): Promise<void>
  /** phase makes every process hammer the key for `ms` at once. */
  phase(ms: number): Promise<FleetPhase>
  /** finish flushes leases and returns each process's wrapper stats. */
  finish(): Promise<Record<string, number>[]>
  /** redisTime: Redis's clock now, epoch ms. */
  redisTime(): Promise<number>
  stop(): Promise<void>
}

/** startFleet spawns `size` processes connected to the Redis at host:port. */
export async function startFleet(size: number, host: string, port: number): Promise<Fleet> {
  const children = Array.from({ length: size }, () => new Child(host, port))
  const admin = new Redis({ host, port })
  const all = <T extends ChildReply["type"]>(type: T) =>
    Promise.all(children.map((c) => c.next(type)))
  try {
    await all("ready")
  } catch (error) {
    for (const c of children) c.process.kill("SIGKILL")
    admin.disconnect()
    throw error
  }
  const redisTime = async () => {
    const [seconds, micros] = await admin.time()
    return Number(seconds) * 1000 + Number(micros) / 1000
  }
  return {
    size,
    redisTime,
    async prepare(spec) {
      const ready = all("prepared")
      for (const c of children) c.send({ type: "prepare", spec })
      await ready
    },
    async phase(ms) {
      const before = await redisTime()
      const done = all("phase")
      for (const c of children) c.send({ type: "go", ms })
      const results = (await done).map((r) => r.result)
      const after = await redisTime()
      const sum = (f: (r: PhaseResult) => number) => results.reduce((s, r) => s + f(r), 0)
      const allowed = sum((r) => r.allowed)
      const denied = sum((r) => r.denied)
      return {
        allowed,
        denied,
        errors: sum((r) => r.errors),
        ms: Math.max(...results.map((r) => r.ms)),
        decisions: allowed + denied,
        perSecond: sum((r) => ((r.allowed + r.denied) / r.ms) * 1000),
        redisStart: before,
        redisEnd: after,
        redisMs: after - before,
      }
    },
    async finish() {
      const finished = all("finished")
      for (const c of children) c.send({ type: "finish" })
      return (await finished).map((r) => r.stats)
    },
    async stop() {
      const exited = children.map(
        (c) =>
          new Promise<void>((resolve) => {
            if (c.process.exitCode !== null || c.process.signalCode !== null) resolve()
            else c.process.once("exit", () => resolve())
          }),
      )
      for (const c of children) {
        if (c.process.connected) c.send({ type: "exit" })
      }
      const timer = setTimeout(() => {
        for (const c of children) c.process.kill("SIGKILL")
      }, 5000)
      await Promise.all(exited)
      clearTimeout(timer)
      admin.disconnect()
    },
  }
}
