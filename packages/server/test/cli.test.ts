// The `tollgate` command, run in process: help, offline and online checks, simulate.

import { spawn } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { createServer, type Server } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { run } from "../src/cli/main.js"
import { type Running, start } from "./support.js"

function capture() {
  const out: string[] = []
  const err: string[] = []
  return {
    io: { out: (s: string) => out.push(s), err: (s: string) => err.push(s) },
    get out() {
      return out.join("")
    },
    get err() {
      return err.join("")
    },
  }
}

const EXAMPLE = new URL("../examples/tollgate.yaml", import.meta.url).pathname
const BIN = new URL("../bin/tollgate.js", import.meta.url).pathname

const LISTS = `tiers:
  user:
    key: [user]
plans:
  free:
    limits:
      user: { limit: 100, window: 1h }
defaultPlan: free
allow: ["user:admin"]
deny: ["user:banned-*"]
`

/** occupy holds a free loopback port until closed. */
async function occupy(): Promise<{ port: number; server: Server }> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  return { port: (server.address() as { port: number }).port, server }
}

/** tollgate runs the real command in a process of its own, killed after `ms`. */
function tollgate(args: string[], ms: number) {
  return new Promise<{ code: number | null; killed: boolean; err: string }>((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { stdio: ["ignore", "ignore", "pipe"] })
    let err = ""
    let killed = false
    child.stderr.on("data", (chunk) => {
      err += chunk
    })
    const timer = setTimeout(() => {
      killed = true
      child.kill("SIGKILL")
    }, ms)
    child.on("exit", (code) => {
      clearTimeout(timer)
      resolve({ code, killed, err })
    })
  })
}
let dir: string
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "tollgate-cli-"))
})
afterAll(() => rmSync(dir, { recursive: true, force: true }))

describe("tollgate --help", () => {
  it("lists the commands, and each command explains its options", async () => {
    const c = capture()
    expect(await run(["--help"], c.io)).toBe(0)
    for (const word of ["serve", "check", "simulate"]) expect(c.out).toContain(`tollgate ${word}`)
    for (const [cmd, flag] of [
      ["serve", "--redis-cluster"],
      ["check", "--server"],
      ["simulate", "--traffic"],
    ]) {
      const h = capture()
      expect(await run([cmd, "--help"], h.io)).toBe(0)
      expect(h.out).toContain(flag)
    }
    const bad = capture()
    expect(await run(["serve", "--nope"], bad.io)).toBe(2)
    expect(bad.err).toContain("--nope")
  })
})

describe("tollgate serve", () => {
  it("exits 2 when the gRPC port cannot be bound, instead of serving HTTP only", async () => {
    const busy = await occupy()
    try {
      const r = await tollgate(
        ["serve", "--config", EXAMPLE, "--port", "0", "--grpc-port", String(busy.port)],
        15_000,
      )
      expect(r.killed).toBe(false)
      expect(r.code).toBe(2)
      expect(r.err).toContain("EADDRINUSE")
      expect(r.err).not.toContain('"listening"')
    } finally {
      busy.server.close()
    }
  }, 20_000)

  it("closes the HTTP listener it opened when the gRPC one fails", async () => {
    const busy = await occupy()
    const free = await occupy()
    free.server.close()
    const c = capture()
    try {
      const args = ["serve", "--config", EXAMPLE, "--port", String(free.port)]
      expect(await run([...args, "--grpc-port", String(busy.port)], c.io)).toBe(2)
    } finally {
      busy.server.close()
    }
    // The HTTP port is free again.
    const again = createServer()
    await new Promise<void>((resolve, reject) => {
      again.once("error", reject)
      again.listen(free.port, "127.0.0.1", resolve)
    })
    again.close()
  })

  it.each([
    [["--max-wait=-5"], "--max-wait"],
    [["--max-batch", "0"], "--max-batch"],
    [["--instances", "0", "--on-store-error", "fallback"], "--instances"],
    [["--instances", "1.5"], "--instances"],
    [["--store-timeout=-1"], "--store-timeout"],
    [["--max-body", "1.5"], "--max-body"],
    [["--port", "99999"], "--port: expected a whole number from 0 to 65535, got 99999"],
    [["--grpc-port=-1"], "--grpc-port"],
    [["--idle-timeout", "abc"], "--idle-timeout"],
    [["--headers-timeout", "0"], "--headers-timeout"],
    [["--health-interval", "0"], "--health-interval"],
    [["--grpc-max-message", "0"], "--grpc-max-message"],
    [["--shutdown-timeout", "soon"], "--shutdown-timeout"],
    [["--on-store-error", "maybe"], "--on-store-error"],
  ])("refuses %j as a usage error naming the flag", async (bad, message) => {
    const c = capture()
    // --port 0 --no-grpc first: a value accepted by mistake must not take a fixed port.
    const args = ["serve", "--config", EXAMPLE, "--port", "0", "--no-grpc", ...bad]
    expect(await run(args, c.io)).toBe(2)
    expect(c.err).toContain(`tollgate: ${message}`)
    expect(c.err).toContain("tollgate serve — run the rate-limit service")
    expect(c.err).not.toContain("invalid config")
  })
})

describe("tollgate check", () => {
  it("validates a config, naming what it defines", async () => {
    const c = capture()
    expect(await run(["check", "--config", EXAMPLE], c.io)).toBe(0)
    expect(c.out).toContain("valid (version example-1)")
    expect(c.out).toContain("policies: api, login, exports, uploads")
  })

  it("reports the path of the first error, exit status 2", async () => {
    const file = join(dir, "bad.yaml")
    writeFileSync(file, "policies:\n  api: { algorithm: tokenBucket, rate: 0 }\n")
    const c = capture()
    expect(await run(["check", "--config", file], c.io)).toBe(2)
    expect(c.err).toContain("policies.api.rate")
  })

  it("refuses a policy named __proto__ rather than dropping it", async () => {
    const file = join(dir, "proto.yaml")
    writeFileSync(
      file,
      "policies:\n  __proto__: { limit: 5, window: 1m }\n  api: { rate: 1, period: 1m, burst: 3 }\n",
    )
    const c = capture()
    expect(await run(["check", "--config", file], c.io)).toBe(2)
    expect(c.err).toContain("policies.__proto__")
    expect(c.err).toContain("reserved name")
    expect(c.out).toBe("")
  })

  it("decides once offline: allowed is 0, denied 1", async () => {
    const c = capture()
    expect(
      await run(["check", "--config", EXAMPLE, "--policy", "api", "--key", "u", "--json"], c.io),
    ).toBe(0)
    expect(JSON.parse(c.out)).toMatchObject({ allowed: true, limit: 20, remaining: 19 })
    const d = capture()
    expect(
      await run(
        ["check", "--config", EXAMPLE, "--domain", "edge", "--descriptor", "header_match=bots"],
        d.io,
      ),
    ).toBe(1)
    expect(d.out).toContain("blocked")
    const e = capture()
    expect(await run(["check", "--config", EXAMPLE, "--request", "user=u1,model=m"], e.io)).toBe(0)
    expect(e.out).toMatch(/^allowed: 19 of 20 left/)
  })

  it("prints allow and deny list decisions plainly", async () => {
    const file = join(dir, "lists.yaml")
    writeFileSync(file, LISTS)
    const d = capture()
    expect(await run(["check", "--config", file, "--request", "user=banned-1"], d.io)).toBe(1)
    expect(d.out).toBe("denied by the deny list\n")
    const a = capture()
    expect(await run(["check", "--config", file, "--request", "user=admin"], a.io)).toBe(0)
    expect(a.out).toBe("allowed by the allow list\n")
  })

  it("prints a decision in JSON for a blocked rule, and says when none matches", async () => {
    const base = ["check", "--config", EXAMPLE, "--domain", "edge", "--json"]
    const b = capture()
    expect(await run([...base, "--descriptor", "header_match=bots"], b.io)).toBe(1)
    expect(JSON.parse(b.out)).toEqual({
      allowed: false,
      limit: 0,
      remaining: 0,
      retryAfterMs: null,
      resetAfterMs: null,
      matched: "header_match=bots",
      blocked: true,
    })
    const n = capture()
    expect(await run([...base, "--descriptor", "nothing=here"], n.io)).toBe(0)
    expect(JSON.parse(n.out)).toMatchObject({ allowed: true, matched: null })
  })

  describe("against a running server with lists", () => {
    let t: Running
    beforeAll(async () => {
      t = await start({ text: LISTS })
    })
    afterAll(() => t.close())

    it("reads JSON null as unlimited, not 0", async () => {
      const d = capture()
      expect(await run(["check", "--server", t.url, "--request", "user=banned-1"], d.io)).toBe(1)
      expect(d.out).toBe("denied by the deny list\n")
      const a = capture()
      expect(await run(["check", "--server", t.url, "--request", "user=admin"], a.io)).toBe(0)
      expect(a.out).toBe("allowed by the allow list\n")
      const j = capture()
      expect(
        await run(["check", "--server", t.url, "--request", "user=admin", "--json"], j.io),
      ).toBe(0)
      expect(JSON.parse(j.out)).toMatchObject({ allowed: true, limit: null, listed: "allow" })
    })
  })

  describe("against a running server", () => {
    let t: Running
    beforeAll(async () => {
      t = await start(
        { policies: { two: { algorithm: "fixedWindow", limit: 2, window: "1m" } } },
        { tokens: { decision: "tok" } },
      )
    })
    afterAll(() => t.close())

    it("counts real decisions on the server", async () => {
      const args = ["check", "--server", t.url, "--policy", "two", "--key", "cli", "--token", "tok"]
      const codes = []
      for (let i = 0; i < 3; i++) codes.push(await run(args, capture().io))
      expect(codes).toEqual([0, 0, 1])
      const c = capture()
      expect(await run(args.slice(0, -2), c.io)).toBe(2)
      expect(c.err).toContain("401 ERR_UNAUTHORIZED")
    })
  })
})

describe("tollgate simulate", () => {
  it("writes a self-contained SVG whose bars add up to the traffic offered", async () => {
    const out = join(dir, "steady.svg")
    const c = capture()
    const code = await run(
      [
        "simulate",
        "--algorithm",
        "fixedWindow",
        "--limit",
        "30",
        "--window",
        "10s",
        "--rps",
        "5",
        "--duration",
        "60s",
        "--out",
        out,
      ],
      c.io,
    )
    expect(code).toBe(0)
    // 5/s for 60 s is 300 requests; 30 per 10 s window admits 180 of them.
    expect(c.out).toContain("180 admitted, 120 denied")
    const svg = readFileSync(out, "utf8")
    expect(svg.startsWith("<svg")).toBe(true)
    expect(svg).not.toMatch(/<script|href=|@import|url\(/)
    expect(svg.match(/class="admitted"/g)?.length).toBeGreaterThan(10)
    expect(svg.match(/class="denied"/g)?.length).toBeGreaterThan(5)
  })

  it("runs bursty and ramp traffic through a policy from a config, as HTML", async () => {
    const out = join(dir, "ramp.html")
    const c = capture()
    expect(
      await run(
        [
          "simulate",
          "--config",
          EXAMPLE,
          "--policy",
          "api",
          "--traffic",
          "ramp",
          "--rps",
          "0",
          "--to",
          "40",
          "--duration",
          "30s",
          "--out",
          out,
        ],
        c.io,
      ),
    ).toBe(0)
    const html = readFileSync(out, "utf8")
    expect(html).toContain("<svg")
    expect(html).toContain("ramp 0/s → 40/s")
    const [admitted, denied] = c.out
      .match(/(\d+) admitted, (\d+) denied/)!
      .slice(1)
      .map(Number)
    // 0 to 40/s over 30 s offers ~600; a 10/s bucket with burst 20 admits at most 20 + 10 * 30.
    expect(admitted + denied).toBeGreaterThan(590)
    expect(admitted).toBeLessThanOrEqual(320)
    expect(denied).toBeGreaterThan(200)
    const b = capture()
    expect(
      await run(
        [
          "simulate",
          "--algorithm",
          "tokenBucket",
          "--rate",
          "10",
          "--traffic",
          "bursty",
          "--rps",
          "2",
          "--burst-rps",
          "50",
          "--every",
          "10s",
          "--burst-for",
          "2s",
          "--duration",
          "20s",
          "--out",
          join(dir, "b.svg"),
        ],
        b.io,
      ),
    ).toBe(0)
    expect(b.out).toMatch(/\d+ admitted, [1-9]\d* denied/)
  })

  it.each([
    [["--algorithm", "bogus", "--rate", "10"], "--algorithm"],
    [["--algorithm", "tokenBucket", "--rate", "0"], "--rate"],
    [["--algorithm", "fixedWindow", "--limit", "5", "--window", "soon"], "--window"],
    [["--rate", "10", "--traffic", "bursty", "--every=-5s"], "--every"],
    [["--rate", "10", "--traffic", "bursty", "--every", "0"], "--every"],
    [["--rate", "10", "--traffic", "wavy"], "--traffic"],
    [["--rate", "10", "--keys", "0"], "--keys"],
    [["--rate", "10", "--keys", "2.5"], "--keys"],
  ])("refuses %j as a usage error naming the flag", async (bad, flag) => {
    const c = capture()
    const args = ["simulate", "--algorithm", "tokenBucket", ...bad, "--out", join(dir, "x.svg")]
    expect(await run(args, c.io)).toBe(2)
    expect(c.err).toContain(`tollgate: ${flag}: `)
    expect(c.err).toContain("tollgate simulate — ")
    expect(c.err).not.toContain("invalid config")
  })
})
