// Debian's nginx in front of a tiny upstream, asking the server through auth_request with
// the example config of examples/nginx/ (ports swapped for free ones).

import { type ChildProcess, spawn, spawnSync } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { createServer, type Server } from "node:http"
import { createServer as createNetServer } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type Running, start } from "./support.js"

const EXAMPLE = new URL("../../../examples/nginx/tollgate.conf", import.meta.url)

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createNetServer()
    s.once("error", reject)
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port
      s.close(() => resolve(port))
    })
  })
}

const hasNginx = spawnSync("nginx", ["-v"]).error === undefined

describe.skipIf(!hasNginx && !process.env.CI)("nginx auth_request", () => {
  let t: Running
  let upstream: Server
  let nginx: ChildProcess
  let dir: string
  let base: string

  beforeAll(async () => {
    if (!hasNginx) throw new Error("nginx is not installed: apt-get install -y nginx")
    t = await start({
      policies: { five: { algorithm: "fixedWindow", limit: 5, window: "1m" } },
      nginx: { policy: "five", keyHeaders: ["x-api-key"], trustedProxies: 1 },
    })
    upstream = createServer((_req, res) => res.end("hello from upstream\n"))
    await new Promise<void>((r) => upstream.listen(0, "127.0.0.1", r))
    const appPort = (upstream.address() as { port: number }).port
    const tollgatePort = new URL(t.url).port
    const port = await freePort()
    dir = mkdtempSync(join(tmpdir(), "tollgate-nginx-"))
    const site = readFileSync(EXAMPLE, "utf8")
      .replace("server 127.0.0.1:8080;", `server 127.0.0.1:${tollgatePort};`)
      .replace("server 127.0.0.1:3000;", `server 127.0.0.1:${appPort};`)
      .replace("listen 127.0.0.1:8000;", `listen 127.0.0.1:${port};`)
    const temp = ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]
      .map((n) => `${n}_temp_path ${join(dir, n)};`)
      .join("\n  ")
    writeFileSync(
      join(dir, "nginx.conf"),
      `daemon off;
worker_processes 1;
pid ${join(dir, "nginx.pid")};
error_log ${join(dir, "error.log")} warn;
events { worker_connections 256; }
http {
  access_log off;
  ${temp}
${site}
}
`,
    )
    nginx = spawn("nginx", ["-p", dir, "-c", join(dir, "nginx.conf")], { stdio: "ignore" })
    base = `http://127.0.0.1:${port}`
    const deadline = Date.now() + 10_000
    for (;;) {
      try {
        await fetch(`${base}/`, { headers: { "x-api-key": "warmup" } })
        break
      } catch (error) {
        if (Date.now() > deadline || nginx.exitCode !== null) {
          throw new Error(`nginx did not start: ${readFileSync(join(dir, "error.log"), "utf8")}`, {
            cause: error,
          })
        }
        await new Promise((r) => setTimeout(r, 50))
      }
    }
  })

  afterAll(async () => {
    if (nginx !== undefined && nginx.exitCode === null) {
      const exited = new Promise((r) => nginx.once("exit", r))
      nginx.kill("SIGTERM")
      await exited
    }
    upstream?.close()
    await t?.close()
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true })
  })

  it("lets exactly the allowance through per key, and answers the rest 429 with Retry-After", async () => {
    const answers = []
    for (let i = 0; i < 9; i++) {
      const res = await fetch(`${base}/orders`, { headers: { "x-api-key": "key-a" } })
      answers.push({
        status: res.status,
        retryAfter: res.headers.get("retry-after"),
        ratelimit: res.headers.get("ratelimit"),
        body: await res.text(),
      })
    }
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200, 200, 200, 429, 429, 429, 429])
    expect(answers[0].body).toBe("hello from upstream\n")
    expect(answers[0].ratelimit).toBe('"five";r=4;t=60')
    for (const a of answers.slice(5)) {
      expect(a.retryAfter).toBe("60")
      expect(a.ratelimit).toBe('"five";r=0;t=60')
      expect(JSON.parse(a.body).error.code).toBe("ERR_RATE_LIMITED")
    }
    // Another key has its own allowance; the window's end restores the first.
    expect((await fetch(`${base}/orders`, { headers: { "x-api-key": "key-b" } })).status).toBe(200)
    t.clock.advance(60_000)
    expect((await fetch(`${base}/orders`, { headers: { "x-api-key": "key-a" } })).status).toBe(200)
  })

  it("keys requests without an API key on the client address nginx reports", async () => {
    const statuses = []
    for (let i = 0; i < 6; i++) statuses.push((await fetch(`${base}/by-address`)).status)
    expect(statuses).toEqual([200, 200, 200, 200, 200, 429])
    const peek = await t.get(`/v1/keys/five/${encodeURIComponent("ip:127.0.0.1")}`)
    expect(peek.body.remaining).toBe(0)
  })
})

// The endpoint itself, asked directly (no nginx needed).
describe("GET /v1/auth", () => {
  let t: Running
  beforeAll(async () => {
    t = await start({
      policies: {
        api: { algorithm: "tokenBucket", rate: 1, period: "1m", burst: 3 },
        c1: { algorithm: "concurrency", limit: 2, leaseTimeout: "5m" },
      },
      nginx: { policy: "api", keyHeaders: ["x-api-key"], trustedProxies: 1 },
    })
  })
  afterAll(() => t.close())

  const held = async () =>
    2 - (await t.get(`/v1/keys/c1/${encodeURIComponent("h:x-api-key:K7")}`)).body.remaining

  it("refuses a concurrency policy with 400 naming it, taking no lease", async () => {
    // auth_request has no "done" call, so a lease taken here could never be released.
    for (let i = 0; i < 3; i++) {
      const a = await t.get("/v1/auth?policy=c1", { "x-api-key": "K7" })
      expect(a.status).toBe(400)
      expect(a.body.error).toMatchObject({ code: "ERR_UNSUPPORTED", path: "query.policy" })
      expect(a.body.error.message).toContain('"c1"')
      expect(a.headers.get("retry-after")).toBeNull()
    }
    expect(await held()).toBe(0)
    // As the config's nginx.policy, a concurrency policy is refused when the config loads
    // (config/load.test.ts).
  })

  it("decides other policies: 204, then 429 with Retry-After", async () => {
    const statuses = []
    for (let i = 0; i < 4; i++) {
      statuses.push((await t.get("/v1/auth?policy=api", { "x-api-key": "K8" })).status)
    }
    expect(statuses).toEqual([204, 204, 204, 429])
  })

  it("ignores a forwarded request's body, whatever its type", async () => {
    const res = await fetch(`${t.url}/v1/auth?policy=api`, {
      method: "POST",
      headers: { "x-api-key": "K9", "content-type": "text/plain" },
      body: "the client's own body",
    })
    expect(res.status).toBe(204)
    const empty = await fetch(`${t.url}/v1/auth?policy=api`, {
      method: "POST",
      headers: { "x-api-key": "K9", "content-type": "application/json" },
    })
    expect(empty.status).toBe(204)
  })

  it("names the header when its value is too long to be a key", async () => {
    const a = await t.get("/v1/auth?policy=api", { "x-api-key": "v".repeat(600) })
    expect(a.status).toBe(400)
    expect(a.body.error).toMatchObject({ code: "ERR_ARGUMENT", path: "headers.x-api-key" })
  })
})
