// The dashboard in real headless Chromium (Debian's chromium, driven by playwright-core):
// it loads without console errors and its charts show the traffic this test sends.
// UPDATE_SCREENSHOT=1 also saves the picture docs/server.md shows.

import { spawnSync } from "node:child_process"
import { mkdirSync } from "node:fs"
import { type Browser, chromium } from "playwright-core"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { bearer, type Running, start } from "./support.js"

const CHROMIUM = "/usr/bin/chromium"
const hasChromium = spawnSync(CHROMIUM, ["--version"]).error === undefined

describe.skipIf(!hasChromium && !process.env.CI)("dashboard", () => {
  let t: Running
  let browser: Browser
  const sent = { api: { allowed: 0, denied: 0 }, login: { allowed: 0, denied: 0 } }

  beforeAll(async () => {
    t = await start(
      {
        version: "dashboard-test",
        policies: {
          api: { algorithm: "tokenBucket", rate: 5, period: "1s", burst: 10 },
          login: { algorithm: "fixedWindow", limit: 3, window: "10s" },
        },
      },
      { tokens: { admin: "adm" } },
    )
    // Twenty seconds of traffic on the manual clock: 12/s on api, 1/s on login, one noisy key.
    for (let s = 0; s < 20; s++) {
      for (let i = 0; i < 12; i++) {
        const d = await t.post("/v1/limit", {
          policy: "api",
          key: i < 8 ? "noisy-client" : `c${i}`,
        })
        sent.api[d.body.allowed ? "allowed" : "denied"]++
      }
      const d = await t.post("/v1/limit", { policy: "login", key: "mallory" })
      sent.login[d.body.allowed ? "allowed" : "denied"]++
      t.clock.advance(1000)
    }
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
      ],
    })
  })

  afterAll(async () => {
    await browser?.close()
    await t?.close()
  })

  it("loads with no console errors and charts the traffic sent, per policy", async () => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 760 } })
    const errors: string[] = []
    page.on("console", (m) => {
      if (m.type() === "error") errors.push(m.text())
    })
    page.on("pageerror", (e) => errors.push(e.message))
    await page.goto(`${t.url}/#token=adm`)
    await page.waitForFunction(() => {
      const w = window as unknown as { tollgate?: { charts: Record<string, unknown> } }
      return w.tollgate !== undefined && Object.keys(w.tollgate.charts).length === 2
    })
    const charted = await page.evaluate(() => {
      const w = window as unknown as {
        tollgate: { charts: Record<string, { data: number[][] }> }
      }
      const sum = (a: number[]) => a.reduce((x, y) => x + y, 0)
      return Object.fromEntries(
        Object.entries(w.tollgate.charts).map(([name, c]) => [
          name,
          { allowed: sum(c.data[1]), denied: sum(c.data[2]), points: c.data[0].length },
        ]),
      )
    })
    expect(sent.api.denied).toBeGreaterThan(0)
    expect(charted.api).toMatchObject(sent.api)
    expect(charted.login).toMatchObject(sent.login)
    expect(charted.api.points).toBe(60)
    // Something was drawn: the canvas holds non-blank pixels.
    const drawn = await page.evaluate(() => {
      const canvas = document.querySelector(".chart canvas") as HTMLCanvasElement
      const ctx = canvas.getContext("2d")!
      const px = ctx.getImageData(0, 0, canvas.width, canvas.height).data
      let ink = 0
      for (let i = 3; i < px.length; i += 4) if (px[i] !== 0) ink++
      return ink
    })
    expect(drawn).toBeGreaterThan(500)
    const top = await page.locator("#top tr").first().textContent()
    expect(top).toContain("noisy-client")
    expect(await page.locator("#version").textContent()).toBe("dashboard-test")
    expect(await page.locator("#store").textContent()).toContain("memory · healthy")
    if (process.env.UPDATE_SCREENSHOT) {
      const dir = new URL("../../../docs/images/", import.meta.url)
      mkdirSync(dir, { recursive: true })
      await page.screenshot({ path: new URL("dashboard.png", dir).pathname })
    }
    expect(errors).toEqual([])
    await page.close()
  })

  it("asks for the admin token: without it the stats stay closed", async () => {
    const a = await t.get("/v1/admin/stats")
    expect(a.status).toBe(401)
    expect((await t.get("/v1/admin/stats", bearer("adm"))).status).toBe(200)
  })
})
