// The `tollgate` command, run in process: help, offline and online checks, simulate.

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
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
})
