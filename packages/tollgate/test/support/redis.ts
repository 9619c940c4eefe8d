import { type ChildProcess, execFile, spawn, spawnSync } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Redis } from "ioredis"
import { type Decision, type MaybePromise, StoreError } from "../../src/index.js"

// Real Redis servers for tests and benchmarks: each on a free loopback port, in its own
// temporary directory, removed again when stopped, and in any case when the process
// exits (a failing or interrupted suite leaves no server and no directory behind).

export interface RedisServer {
  readonly host: string
  readonly port: number
  /** dir: the server's working directory (its log is redis.log there). */
  readonly dir: string
  readonly process: ChildProcess
  stop(): Promise<void>
}

export interface RedisClusterServers<S extends RedisServer = RedisServer> {
  /** nodes: the masters, as ioredis Cluster startup nodes. */
  readonly nodes: { host: string; port: number }[]
  readonly servers: S[]
  stop(): Promise<void>
}

/** ClusterOptions: how startCluster starts its masters. */
export interface ClusterOptions<S extends RedisServer> {
  /** args: extra redis-server options for every master (later options win). */
  args?: string[]
  /** start: starts one master (default startRedis; startControlledRedis for fault tests). */
  start?: (args: string[]) => Promise<S>
}

const HOST = "127.0.0.1"
const running = new Set<{ child: ChildProcess; dir: string }>()

process.once("exit", () => {
  for (const r of running) {
    r.child.kill("SIGKILL")
    rmSync(r.dir, { recursive: true, force: true })
  }
})

let checked = false

/** requireRedis throws a helpful error when redis-server (or redis-cli) is not installed. */
export function requireRedis(): void {
  if (checked) return
  for (const binary of ["redis-server", "redis-cli"]) {
    const probe = spawnSync(binary, ["--version"], { encoding: "utf8" })
    if (probe.error !== undefined || probe.status !== 0) {
      throw new Error(
        `${binary} was not found on PATH; these tests run a real Redis. Install it with ` +
          "`apt-get install -y redis-server` (the Debian/Ubuntu package redis-server, which also provides redis-cli).",
      )
    }
  }
  checked = true
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer()
    server.once("error", () => resolve(false))
    server.listen(port, HOST, () => server.close(() => resolve(true)))
  })
}

/** freePort finds a loopback port that is free, and whose Cluster bus port (+10000) is too. */
async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = 20000 + Math.floor(Math.random() * 30000)
    if ((await portFree(port)) && (await portFree(port + 10000))) return port
  }
  throw new Error("no free loopback port found for redis-server")
}

async function waitReady(port: number, child: ChildProcess, dir: string): Promise<void> {
  const deadline = Date.now() + 10_000
  while (Date.now() < deadline) {
    if (child.exitCode !== null) break
    const client = new Redis({
      host: HOST,
      port,
      lazyConnect: true,
      retryStrategy: () => null,
      maxRetriesPerRequest: 0,
      enableOfflineQueue: false,
    })
    client.on("error", () => {})
    try {
      await client.connect()
      if ((await client.ping()) === "PONG") return
    } catch {
      // not up yet
    } finally {
      client.disconnect()
    }
    await new Promise((r) => setTimeout(r, 20))
  }
  throw new Error(`redis-server on port ${port} did not start; see ${join(dir, "redis.log")}`)
}

/** serverArgs: the command line of a test redis-server (no persistence, log in `dir`). */
function serverArgs(port: number, dir: string, args: readonly string[]): string[] {
  return [
    "--port",
    String(port),
    "--bind",
    HOST,
    "--save",
    "",
    "--appendonly",
    "no",
    "--protected-mode",
    "no",
    "--dir",
    dir,
    "--logfile",
    "redis.log",
    ...args,
  ]
}

/**
 * startRedis starts a redis-server on a free loopback port with no persistence. `args`
 * are extra command-line options (e.g. ["--cluster-enabled", "yes"]).
 */
export async function startRedis(args: string[] = []): Promise<RedisServer> {
  requireRedis()
  for (let attempt = 0; ; attempt++) {
    const port = await freePort()
    const dir = mkdtempSync(join(tmpdir(), "tollgate-redis-"))
    const child = spawn("redis-server", serverArgs(port, dir, args), { cwd: dir, stdio: "ignore" })
    const entry = { child, dir }
    running.add(entry)
    const exited = new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) resolve()
      else child.once("exit", () => resolve())
    })
    const stop = async () => {
      if (!running.has(entry)) return
      child.kill("SIGKILL")
      await exited
      running.delete(entry)
      rmSync(dir, { recursive: true, force: true })
    }
    try {
      await waitReady(port, child, dir)
      return { host: HOST, port, dir, process: child, stop }
    } catch (error) {
      await stop()
      // Another process may have taken the port between the check and the start.
      if (attempt >= 3) throw error
    }
  }
}

function redisCli(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile("redis-cli", args, { timeout: 30_000 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`redis-cli ${args.join(" ")} failed: ${stderr || error.message}`))
      else resolve(stdout)
    })
  })
}

/**
 * startCluster starts `masters` redis-server processes with cluster mode on, joins them
 * with `redis-cli --cluster create` (no replicas) and waits until every node reports
 * cluster_state:ok.
 */
export async function startCluster<S extends RedisServer = RedisServer>(
  masters = 3,
  options: ClusterOptions<S> = {},
): Promise<RedisClusterServers<S>> {
  const start = options.start ?? (startRedis as (args: string[]) => Promise<S>)
  const servers: S[] = []
  const stop = async () => {
    await Promise.all(servers.map((s) => s.stop()))
  }
  try {
    for (let i = 0; i < masters; i++) {
      servers.push(
        await start([
          "--cluster-enabled",
          "yes",
          "--cluster-config-file",
          "nodes.conf",
          "--cluster-node-timeout",
          "3000",
          ...(options.args ?? []),
        ]),
      )
    }
    await redisCli([
      "--cluster",
      "create",
      ...servers.map((s) => `${s.host}:${s.port}`),
      "--cluster-replicas",
      "0",
      "--cluster-yes",
    ])
    const deadline = Date.now() + 20_000
    for (const s of servers) {
      for (;;) {
        const info = await redisCli(["-h", s.host, "-p", String(s.port), "cluster", "info"])
        if (info.includes("cluster_state:ok")) break
        if (Date.now() > deadline)
          throw new Error(`cluster node ${s.port} never reached cluster_state:ok`)
        await new Promise((r) => setTimeout(r, 50))
      }
    }
    return { nodes: servers.map((s) => ({ host: s.host, port: s.port })), servers, stop }
  } catch (error) {
    await stop()
    throw error
  }
}

/**
 * keysWithoutTtl scans every key matching `pattern` on the given servers and returns the
 * ones that have no TTL (a store must never leave such a key).
 */
export async function keysWithoutTtl(
  servers: readonly { host: string; port: number }[],
  pattern: string,
): Promise<{ scanned: number; missing: string[] }> {
  let scanned = 0
  const missing: string[] = []
  for (const s of servers) {
    const client = new Redis({ host: s.host, port: s.port })
    try {
      let cursor = "0"
      do {
        const [next, keys] = await client.scan(cursor, "MATCH", pattern, "COUNT", 1000)
        cursor = next
        for (const key of keys) {
          scanned++
          if ((await client.pttl(key)) === -1) missing.push(key)
        }
      } while (cursor !== "0")
    } finally {
      client.disconnect()
    }
  }
  return { scanned, missing }
}

/**
 * ControlledRedis is a RedisServer a fault test can disturb: freeze and thaw it (SIGSTOP,
 * SIGCONT), kill it as a crash would (SIGKILL), and start it again on the same port with
 * the same options and directory. Nothing is persisted, so a restarted server starts
 * empty; a Cluster node keeps its nodes.conf and rejoins with the slots it had.
 */
export interface ControlledRedis extends RedisServer {
  /** process: the redis-server process running now (a new one after each restart). */
  readonly process: ChildProcess
  /** up: false between kill() and restart(). */
  readonly up: boolean
  /** pause freezes the server (SIGSTOP): connections stay open, nothing is answered. */
  pause(): void
  /** resume thaws a paused server (SIGCONT); it answers what piled up meanwhile. */
  resume(): void
  /** kill ends the server with SIGKILL and waits until it is gone; its port is free then. */
  kill(): Promise<void>
  /** restart kills the server if it is up and starts it again on the same port. */
  restart(): Promise<void>
}

/** startControlledRedis starts a redis-server as startRedis does, as a ControlledRedis. */
export async function startControlledRedis(args: string[] = []): Promise<ControlledRedis> {
  requireRedis()
  for (let attempt = 0; ; attempt++) {
    const port = await freePort()
    const dir = mkdtempSync(join(tmpdir(), "tollgate-redis-"))
    const entry = { child: undefined as unknown as ChildProcess, dir }
    let exited = Promise.resolve()
    let up = false
    const launch = () => {
      const child = spawn("redis-server", serverArgs(port, dir, args), {
        cwd: dir,
        stdio: "ignore",
      })
      entry.child = child
      exited = new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) resolve()
        else child.once("exit", () => resolve())
      })
      up = true
    }
    const kill = async () => {
      if (!up) return
      up = false
      entry.child.kill("SIGKILL")
      await exited
    }
    const stop = async () => {
      if (!running.has(entry)) return
      await kill()
      running.delete(entry)
      rmSync(dir, { recursive: true, force: true })
    }
    const server: ControlledRedis = {
      host: HOST,
      port,
      dir,
      get process() {
        return entry.child
      },
      get up() {
        return up
      },
      stop,
      kill,
      pause: () => {
        entry.child.kill("SIGSTOP")
      },
      resume: () => {
        entry.child.kill("SIGCONT")
      },
      restart: async () => {
        await kill()
        launch()
        await waitReady(port, entry.child, dir)
      },
    }
    launch()
    running.add(entry)
    try {
      await waitReady(port, entry.child, dir)
      return server
    } catch (error) {
      await stop()
      // Another process may have taken the port between the check and the start.
      if (attempt >= 3) throw error
    }
  }
}

/**
 * requirePass sets (or, with "", removes) the password a server requires of new
 * connections, through a connection that authenticates with `current`. Connections
 * already authenticated stay so.
 */
export async function requirePass(
  server: { host: string; port: number },
  password: string,
  current?: string,
): Promise<void> {
  const client = new Redis({ host: server.host, port: server.port, password: current })
  try {
    await client.config("SET", "requirepass", password)
  } finally {
    client.disconnect()
  }
}

/**
 * Outcome: how one limiter call ended while a fault was injected. `at` is when it started
 * (ms since the load began) and `ms` how long it took to settle, both in real time.
 */
export interface Outcome {
  at: number
  ms: number
  decision?: Decision
  error?: unknown
}

export interface LoadOptions {
  /** durationMs: how long calls keep being started. */
  durationMs: number
  /** everyMs: the pause between two rounds of calls. */
  everyMs: number
  /** perRound: calls started in each round; call(n) starts the n-th call of the load. */
  perRound: number
  call(n: number): MaybePromise<Decision>
}

/**
 * load starts rounds of calls for `durationMs` and resolves, once every call has
 * settled, with how each one ended. A call that throws at once counts like a rejection.
 */
export async function load(options: LoadOptions): Promise<Outcome[]> {
  const start = performance.now()
  const settled: Promise<Outcome>[] = []
  let n = 0
  while (performance.now() - start < options.durationMs) {
    for (let i = 0; i < options.perRound; i++) settled.push(timed(options.call, n++, start))
    await new Promise((resolve) => setTimeout(resolve, options.everyMs))
  }
  return Promise.all(settled)
}

async function timed(
  call: (n: number) => MaybePromise<Decision>,
  n: number,
  origin: number,
): Promise<Outcome> {
  const begun = performance.now()
  try {
    const decision = await call(n)
    return { at: begun - origin, ms: performance.now() - begun, decision }
  } catch (error) {
    return { at: begun - origin, ms: performance.now() - begun, error }
  }
}

/** Tally: a summary of outcomes, in the terms the fault tests assert on. */
export interface Tally {
  calls: number
  /** byStore: admitted by the store itself (allowed, not degraded). */
  byStore: number
  /** open / fallback: admitted because the store failed (decision.degraded). */
  open: number
  fallback: number
  /** degraded: decisions marked degraded, allowed or not. */
  degraded: number
  denied: number
  /** storeErrors: rejections with a StoreError; `messages` counts them by message. */
  storeErrors: number
  messages: Map<string, number>
  /** others: rejections that are not StoreErrors (a fault must never cause one). */
  others: unknown[]
  /** maxMs: the longest time a call took to settle. */
  maxMs: number
}

/** tally summarises outcomes; `messages` keys are StoreError messages cut at 60 characters. */
export function tally(outcomes: readonly Outcome[]): Tally {
  const t: Tally = {
    calls: outcomes.length,
    byStore: 0,
    open: 0,
    fallback: 0,
    degraded: 0,
    denied: 0,
    storeErrors: 0,
    messages: new Map(),
    others: [],
    maxMs: 0,
  }
  for (const o of outcomes) {
    if (o.ms > t.maxMs) t.maxMs = o.ms
    const d = o.decision
    if (d !== undefined) {
      if (d.degraded !== undefined) t.degraded++
      if (!d.allowed) t.denied++
      else if (d.degraded === "open") t.open++
      else if (d.degraded === "fallback") t.fallback++
      else t.byStore++
    } else if (o.error instanceof StoreError) {
      t.storeErrors++
      const m = o.error.message.slice(0, 60)
      t.messages.set(m, (t.messages.get(m) ?? 0) + 1)
    } else {
      t.others.push(o.error)
    }
  }
  return t
}
