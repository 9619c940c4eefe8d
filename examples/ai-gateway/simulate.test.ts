// Runs the AI-gateway example (ten simulated minutes, a moment of real time) and checks
// that each caller met the limit the config gives it.
import { describe, expect, it } from "vitest"
import { type CallerReport, simulate } from "./simulate.js"

describe("examples/ai-gateway", () => {
  it("each caller meets its own limit, and the shadow quota only reports", async () => {
    const { callers, stats } = await simulate(10)
    const by = (name: string): CallerReport => callers.find((c) => c.name === name)!
    // The free scraper gets its 100 requests per hour for this model, and no more.
    expect(by("free scraper").admitted).toBe(100)
    expect(by("free scraper").denied.userModel).toBeGreaterThan(1000)
    // The occasional free user stays within every limit.
    expect(by("free user").admitted).toBe(by("free user").sent)
    // Internal traffic has no request or token limits (only the global safety net).
    expect(by("internal eval").admitted).toBe(by("internal eval").sent)
    // High-cost models share 30 a minute: over ten minutes at most 300 for everyone.
    const highCost = ["acme analyst", "acme batch", "initech dev"].map(by)
    const admitted = highCost.reduce((n, c) => n + c.admitted, 0)
    expect(admitted).toBeLessThanOrEqual(300)
    expect(admitted).toBeGreaterThan(250)
    for (const c of highCost) expect(Object.keys(c.denied)).toEqual(["modelClass"])
    // Lists decide without counting.
    expect(by("banned key").denied).toEqual({ deny: by("banned key").sent })
    expect(by("health check").admitted).toBe(by("health check").sent)
    expect(stats.listed).toEqual({
      allowed: by("health check").sent,
      denied: by("banned key").sent,
    })
    // The tenant quota on trial would have turned acme away, but denied nobody.
    expect(stats.tiers.tenantTokens.shadowDenied).toBeGreaterThan(0)
    expect(stats.tiers.tenantTokens.denied).toBe(0)
    // Settling gave back what the estimates over-charged.
    expect(by("acme batch").refunded).toBeGreaterThan(0)
    const sent = callers.reduce((n, c) => n + c.sent, 0)
    expect(stats.allowed + stats.denied).toBe(sent)
  })

  it("runs the same way every time", async () => {
    expect(await simulate(2)).toEqual(await simulate(2))
  })
})
