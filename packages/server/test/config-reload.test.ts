// Config reloads: a valid change to the file is applied without a restart (keeping the
// counts), an invalid one is rejected with its path and the old limits stay in force;
// SIGHUP and the admin endpoint reload too; auth is required when tokens are configured.

import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterEach, describe, expect, it } from "vitest"
import { bearer, type Running, start } from "./support.js"

const config = (limit: number, extra = "") => `
version: v${limit}
policies:
  api: { algorithm: fixedWindow, limit: ${limit}, window: 1m }
${extra}`

let dir: string
let t: Running | undefined

function file(text: string): string {
  dir = mkdtempSync(join(tmpdir(), "tollgate-config-"))
  const path = join(dir, "tollgate.yaml")
  writeFileSync(path, text)
  return path
}

async function until<T>(what: () => Promise<T>, ok: (v: T) => boolean, ms = 8000): Promise<T> {
  const deadline = Date.now() + ms
  for (;;) {
    const v = await what()
    if (ok(v)) return v
    if (Date.now() > deadline) throw new Error(`timed out; last value ${JSON.stringify(v)}`)
    await new Promise((r) => setTimeout(r, 25))
  }
}

async function allowedOf(t: Running, n: number, key: string): Promise<number> {
  let allowed = 0
  for (let i = 0; i < n; i++) {
    if ((await t.post("/v1/limit", { policy: "api", key })).body.allowed) allowed++
  }
  return allowed
}

afterEach(async () => {
  await t?.close()
  t = undefined
  rmSync(dir, { recursive: true, force: true })
})

describe("config reload", () => {
  it("applies a valid change to the file without a restart, keeping the counts", async () => {
    const path = file(config(2))
    t = await start(path)
    expect(await allowedOf(t, 3, "k")).toBe(2)
    writeFileSync(path, config(5))
    await until(
      () => t!.get("/healthz"),
      (a) => a.body.version === "v5",
    )
    // 2 already counted in this window: 3 more fit under the new limit of 5.
    expect(await allowedOf(t, 5, "k")).toBe(3)
    expect((await t.get("/metrics")).body).toMatch(
      /tollgate_config_reloads_total\{result="success"\} 1/,
    )
  })

  it("rejects an invalid change with its path, and keeps enforcing the old limits", async () => {
    const path = file(config(2))
    t = await start(path, { tokens: { admin: "adm" } })
    writeFileSync(path, config(2).replace("limit: 2", "limit: -4"))
    const info = await until(
      () => t!.get("/v1/admin/config", bearer("adm")),
      (a) => a.body.lastError !== null,
    )
    expect(info.body.version).toBe("v2")
    expect(info.body.lastError.path).toBe("policies.api.limit")
    expect(await allowedOf(t, 3, "k")).toBe(2)
    expect((await t.get("/metrics")).body).toMatch(
      /tollgate_config_reloads_total\{result="failure"\} 1/,
    )
    // YAML syntax errors name the line.
    writeFileSync(path, "policies:\n  api: [unclosed\n")
    const r = await t.post("/v1/admin/reload", {}, bearer("adm"))
    expect(r.status).toBe(400)
    expect(r.body.error.path).toMatch(/^line \d+, column \d+$/)
    expect(r.body.version).toBe("v2")
    // A reference to a missing policy from a descriptor rule is caught too.
    writeFileSync(
      path,
      config(
        9,
        "domains:\n  - domain: d\n    descriptors:\n      - key: ip\n        limit: missing\n",
      ),
    )
    const r2 = await t.post("/v1/admin/reload", {}, bearer("adm"))
    expect(r2.body.error.path).toBe("domains[0].descriptors[0].limit")
    expect(await allowedOf(t, 1, "fresh")).toBe(1)
    expect((await t.get("/healthz")).body.version).toBe("v2")
    // The file put back to the config in force: nothing is wrong any more.
    writeFileSync(path, config(2))
    expect((await t.post("/v1/admin/reload", {}, bearer("adm"))).status).toBe(200)
    expect((await t.get("/v1/admin/config", bearer("adm"))).body.lastError).toBeNull()
  })

  it("counts and logs a rejected edit once, though the watch and the poll both see it", async () => {
    const path = file(config(2))
    const rejected: unknown[] = []
    t = await start(path, {
      tokens: { admin: "adm" },
      log: (_level, message, fields) => {
        if (message.startsWith("config rejected")) rejected.push(fields)
      },
    })
    const failures = async () =>
      Number(
        /tollgate_config_reloads_total\{result="failure"\} (\d+)/.exec(
          (await t!.get("/metrics")).body,
        )![1],
      )
    const settle = () => new Promise((r) => setTimeout(r, 2600)) // longer than the 2 s poll
    // One write of one invalid config.
    writeFileSync(path, config(2).replace("limit: 2", "limit: -4"))
    await until(failures, (n) => n > 0)
    await settle()
    expect(await failures()).toBe(1)
    expect(rejected).toHaveLength(1)
    // The same bad bytes written again (a new mtime, the same content): not a new edit.
    writeFileSync(path, config(2).replace("limit: 2", "limit: -4"))
    await settle()
    expect(await failures()).toBe(1)
    // An explicit reload still reports the error in force.
    const again = await t.post("/v1/admin/reload", {}, bearer("adm"))
    expect(again.status).toBe(400)
    expect(again.body.error.path).toBe("policies.api.limit")
    expect(await failures()).toBe(1)
    expect(rejected).toHaveLength(1)
    // A different bad edit counts again, once.
    writeFileSync(path, config(2).replace("limit: 2", "limit: -5"))
    await until(failures, (n) => n > 1)
    await settle()
    expect(await failures()).toBe(2)
    expect(rejected).toHaveLength(2)
    // A fixed edit applies.
    writeFileSync(path, config(6))
    await until(
      () => t!.get("/healthz"),
      (a) => a.body.version === "v6",
    )
    await settle()
    const metrics = (await t.get("/metrics")).body
    expect(metrics).toMatch(/tollgate_config_reloads_total\{result="success"\} 1\n/)
    expect(await failures()).toBe(2)
    expect(await allowedOf(t, 7, "k")).toBe(6)
    // Back to the first bad content: after a good config, that is a new edit again.
    writeFileSync(path, config(2).replace("limit: 2", "limit: -4"))
    await until(failures, (n) => n > 2)
    await settle()
    expect(await failures()).toBe(3)
  }, 30_000)

  it("rejects a reload that names a policy __proto__, and keeps the old config", async () => {
    const path = file(config(2))
    t = await start(path, { watch: false, tokens: { admin: "adm" } })
    writeFileSync(path, `${config(3)}  __proto__: { limit: 5, window: 1m }\n`)
    const r = await t.post("/v1/admin/reload", {}, bearer("adm"))
    expect(r.status).toBe(400)
    expect(r.body.error.path).toBe("policies.__proto__")
    expect(r.body.error.message).toContain("reserved name")
    const info = await t.get("/v1/admin/config", bearer("adm"))
    expect(info.body.version).toBe("v2")
    expect(Object.keys(info.body.policies)).toEqual(["api"])
  })

  it("reloads on SIGHUP", async () => {
    const path = file(config(1))
    t = await start(path, { watch: false, signals: true })
    writeFileSync(path, config(4))
    await new Promise((r) => setTimeout(r, 50))
    expect((await t.get("/healthz")).body.version).toBe("v1")
    process.kill(process.pid, "SIGHUP")
    await until(
      () => t!.get("/healthz"),
      (a) => a.body.version === "v4",
    )
    expect(await allowedOf(t, 5, "h")).toBe(4)
  })

  it("requires the admin token to reload through the API, when tokens are configured", async () => {
    const path = file(config(1))
    t = await start(path, { watch: false, tokens: { decision: "dec", admin: "adm" } })
    writeFileSync(path, config(3))
    expect((await t.post("/v1/admin/reload", {})).status).toBe(401)
    expect((await t.post("/v1/admin/reload", {}, bearer("dec"))).status).toBe(403)
    expect((await t.get("/healthz")).body.version).toBe("v1")
    const ok = await t.post("/v1/admin/reload", {}, bearer("adm"))
    expect(ok.status).toBe(200)
    expect(ok.body.version).toBe("v3")
    expect((await t.post("/v1/limit", { policy: "api", key: "x" })).status).toBe(401)
  })

  it("keeps a token bucket's fill when its rate changes", async () => {
    const bucket = (rate: number) => `policies:\n  api: { rate: ${rate}, period: 1s, burst: 4 }\n`
    const path = file(bucket(1))
    t = await start(path, { watch: false })
    expect(await allowedOf(t, 4, "b")).toBe(4)
    writeFileSync(path, bucket(2))
    expect((await t.server.reload()).ok).toBe(true)
    // Still empty after the change; refills at the new rate: 2 per second.
    expect(await allowedOf(t, 1, "b")).toBe(0)
    t.clock.advance(1000)
    expect(await allowedOf(t, 3, "b")).toBe(2)
  })
})
