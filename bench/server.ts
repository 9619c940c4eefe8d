// Server benchmark (npm run bench:server): the rate-limit server on loopback over the
// memory store, beside a bare fastify route as the ceiling of this machine.
//
//   npm run bench:server                    10 s per row
//   BENCH_SECONDS=3 npm run bench:server    a quicker look
//
// Each server runs in a process of its own; the load comes from this process (autocannon
// for HTTP, a grpc-js client for gRPC). Rows:
//   bare fastify   POST with the same JSON body, parsed and answered with a constant
//   /v1/limit      one decision per request, keys spread over 10,000 clients
//   /v1/limit/batch  100 decisions per request
//   gRPC           ShouldRateLimit, one descriptor per call, 64 calls in flight

import { type ChildProcess, spawn } from "node:child_process"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import os from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import * as grpc from "@grpc/grpc-js"
import autocannon from "autocannon"
import { loadRls } from "../packages/server/src/grpc/rls.js"

const SECONDS = Number(process.env.BENCH_SECONDS ?? 10)
const CONNECTIONS = 50
const KEYS = 10_000
const root = fileURLToPath(new URL("..", import.meta.url))

const CONFIG = `
policies:
  api: { algorithm: tokenBucket, rate: 100, period: 1s, burst: 200 }
domains:
  - domain: bench
    descriptors:
      - key: client
        limit: api
`

const BARE = `
import Fastify from "fastify"
const app = Fastify({ logger: false })
app.post("/v1/limit", async () => ({ allowed: true }))
await app.listen({ host: "127.0.0.1", port: 0 })
console.log("HTTP http://127.0.0.1:" + app.server.address().port)
`

interface Child {
  process: ChildProcess
  url: string
  grpc?: string
}

function launch(args: string[]): Promise<Child> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd: root, stdio: ["ignore", "pipe", "ignore"] })
    let out = ""
    child.stdout!.on("data", (d) => {
      out += d
      const http = /HTTP (http:\/\/[\d.:]+)/.exec(out)
      if (http !== null) {
        const g = /gRPC ([\d.:]+)/.exec(out)
        resolve({ process: child, url: http[1], grpc: g?.[1] })
      }
    })
    child.once("exit", (code) =>
      reject(new Error(`server exited (${code}) before listening: ${out}`)),
    )
  })
}

function stop(child: Child): Promise<void> {
  return new Promise((resolve) => {
    if (child.process.exitCode !== null) return resolve()
    child.process.once("exit", () => resolve())
    child.process.kill("SIGTERM")
  })
}

let n = 0
function nextKey(): string {
  n = (n + 7919) % KEYS
  return `client-${n}`
}

async function cannon(
  url: string,
  body: () => string,
): Promise<{ rps: number; p99: number; non2xx: number }> {
  const result = await autocannon({
    url: `${url}/v1/limit`,
    connections: CONNECTIONS,
    duration: SECONDS,
    requests: [
      {
        method: "POST",
        headers: { "content-type": "application/json" },
        setupRequest: (req) => ({ ...req, body: body() }),
      },
    ],
  })
  return { rps: result.requests.average, p99: result.latency.p99, non2xx: result.non2xx }
}

async function cannonPath(url: string, path: string, body: string) {
  const result = await autocannon({
    url: `${url}${path}`,
    connections: CONNECTIONS,
    duration: SECONDS,
    method: "POST",
    headers: { "content-type": "application/json" },
    body,
  })
  return { rps: result.requests.average, p99: result.latency.p99, non2xx: result.non2xx }
}

async function grpcRate(address: string): Promise<{ cps: number; errors: number }> {
  const pkg = loadRls() as any
  const client = new pkg.envoy.service.ratelimit.v3.RateLimitService(
    address,
    grpc.credentials.createInsecure(),
  )
  const until = performance.now() + SECONDS * 1000
  let calls = 0
  let errors = 0
  const worker = async () => {
    while (performance.now() < until) {
      await new Promise<void>((resolve) =>
        client.ShouldRateLimit(
          { domain: "bench", descriptors: [{ entries: [{ key: "client", value: nextKey() }] }] },
          (e: Error | null) => {
            if (e) errors++
            else calls++
            resolve()
          },
        ),
      )
    }
  }
  const started = performance.now()
  await Promise.all(Array.from({ length: 64 }, worker))
  const elapsed = (performance.now() - started) / 1000
  client.close()
  return { cps: calls / elapsed, errors }
}

const fmt = (x: number) => Math.round(x).toLocaleString("en-US")

async function main(): Promise<void> {
  const dir = mkdtempSync(join(os.tmpdir(), "tollgate-bench-"))
  const config = join(dir, "bench.yaml")
  writeFileSync(config, CONFIG)
  console.log(
    `tollgate server benchmark: ${os.cpus().length} × ${os.cpus()[0]?.model.trim()}, node ${process.version}, ` +
      `${SECONDS} s per row, ${CONNECTIONS} connections, loopback, memory store\n`,
  )
  const limitBody = () => `{"policy":"api","key":"${nextKey()}"}`
  const bare = await launch(["--input-type=module", "-e", BARE])
  await cannon(bare.url, limitBody) // warm-up run, not reported
  const ceiling = await cannon(bare.url, limitBody)
  await stop(bare)
  const server = await launch([
    "packages/server/bin/tollgate.js",
    "serve",
    "--config",
    config,
    "--port",
    "0",
    "--grpc-port",
    "0",
  ])
  try {
    await cannon(server.url, limitBody) // warm-up run, not reported
    const single = await cannon(server.url, limitBody)
    const batchBody = JSON.stringify({
      requests: Array.from({ length: 100 }, () => ({ policy: "api", key: nextKey() })),
    })
    const batch = await cannonPath(server.url, "/v1/limit/batch", batchBody)
    const g = await grpcRate(server.grpc!)
    const rows = [
      ["bare fastify route (ceiling)", `${fmt(ceiling.rps)} req/s`, `p99 ${ceiling.p99} ms`, ""],
      [
        "POST /v1/limit",
        `${fmt(single.rps)} req/s`,
        `p99 ${single.p99} ms`,
        `${((100 * single.rps) / ceiling.rps).toFixed(0)}% of the ceiling`,
      ],
      [
        "POST /v1/limit/batch (100 each)",
        `${fmt(batch.rps * 100)} decisions/s`,
        `p99 ${batch.p99} ms`,
        `${fmt(batch.rps)} req/s`,
      ],
      ["gRPC ShouldRateLimit", `${fmt(g.cps)} calls/s`, "", "64 in flight"],
    ]
    const widths = [0, 1, 2, 3].map((i) => Math.max(...rows.map((r) => r[i].length)))
    for (const r of rows)
      console.log(
        r
          .map((c, i) => c.padEnd(widths[i]))
          .join("   ")
          .trimEnd(),
      )
    const bad = single.non2xx + batch.non2xx + g.errors
    if (bad > 0) console.log(`\nwarning: ${bad} answers were not successful`)
  } finally {
    await stop(server)
    rmSync(dir, { recursive: true, force: true })
  }
}

await main()
