import { type ChildProcess, execFile, spawn, spawnSync } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Redis } from "ioredis"

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

export interface RedisClusterServers {
  /** nodes: the masters, as ioredis Cluster startup nodes. */
  readonly nodes: { host: string; port: number }[]
  readonly servers: RedisServer[]
  stop(): Promise<void>
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

/**
 * startRedis starts a redis-server on a free loopback port with no persistence. `args`
 * are extra command-line options (e.g. ["--cluster-enabled", "yes"]).
 */
export async function startRedis(args: string[] = []): Promise<RedisServer> {
  requireRedis()
  for (let attempt = 0; ; attempt++) {
    const port = await freePort()
    const dir = mkdtempSync(join(tmpdir(), "tollgate-redis-"))
    const child = spawn(
      "redis-server",
      [
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
      ],
      { cwd: dir, stdio: "ignore" },
    )
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
export async function startCluster(masters = 3): Promise<RedisClusterServers> {
  const servers: RedisServer[] = []
  const stop = async () => {
    await Promise.all(servers.map((s) => s.stop()))
  }
  try {
    for (let i = 0; i < masters; i++) {
      servers.push(
        await startRedis([
          "--cluster-enabled",
          "yes",
          "--cluster-config-file",
          "nodes.conf",
          "--cluster-node-timeout",
          "3000",
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
