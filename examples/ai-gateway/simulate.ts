// A simulated AI gateway: a few kinds of callers send chat requests for ten minutes of
// simulated time (a manual clock, so it runs in a moment and the same way every time).
// Each request reserves its estimated tokens, "runs the model", then settles the real
// count; the gateway's decisions are tallied per caller and per tier.
//
//   npx tsx examples/ai-gateway/simulate.ts
//   MINUTES=30 npx tsx examples/ai-gateway/simulate.ts
//
// In your own project, import from "tollgate".
import { pathToFileURL } from "node:url"
import {
  createTieredLimiter,
  manualClock,
  type TieredStats,
} from "../../packages/tollgate/src/index.js"
import { gatewayConfig } from "./config.js"

/** Caller: who sends requests, how often (per second), to which model, and how big. */
interface Caller {
  name: string
  request: Record<string, string>
  perSecond: number
  estimate: number
}

const CALLERS: Caller[] = [
  {
    name: "free user",
    request: { user: "ana", model: "llama-small" },
    perSecond: 0.1,
    estimate: 800,
  },
  {
    name: "free scraper",
    request: { user: "bot-7", model: "llama-small" },
    perSecond: 2,
    estimate: 300,
  },
  {
    name: "acme analyst",
    request: { user: "bo", tenant: "acme", model: "llama-large" },
    perSecond: 0.5,
    estimate: 4000,
  },
  {
    name: "acme batch",
    request: { user: "etl", tenant: "acme", model: "vision-xl" },
    perSecond: 1,
    estimate: 2500,
  },
  {
    name: "initech dev",
    request: { user: "cy", tenant: "initech", model: "llama-large" },
    perSecond: 0.2,
    estimate: 1500,
  },
  {
    name: "internal eval",
    request: { user: "eval", plan: "internal", model: "llama-small" },
    perSecond: 1,
    estimate: 6000,
  },
  {
    name: "banned key",
    request: { user: "banned-42", model: "llama-small" },
    perSecond: 0.5,
    estimate: 100,
  },
  {
    name: "health check",
    request: { user: "healthcheck", model: "llama-small" },
    perSecond: 0.2,
    estimate: 10,
  },
]

export interface CallerReport {
  name: string
  sent: number
  admitted: number
  /** denied: per tier that turned requests away. */
  denied: Record<string, number>
  /** tokens: what admitted requests really used (after settling). */
  tokens: number
  /** refunded: tokens given back because the estimate was above the real count. */
  refunded: number
}

export interface Report {
  callers: CallerReport[]
  stats: TieredStats
}

/** mulberry32: a small seeded random source, so every run is the same. */
function random(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = Math.imul(a ^ (a >>> 15), a | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** simulate runs the gateway for `minutes` of simulated time and reports what happened. */
export async function simulate(minutes = 10, seed = 7): Promise<Report> {
  const clock = manualClock(Date.parse("2026-03-02T14:00:00Z"))
  const gateway = createTieredLimiter({ ...gatewayConfig, clock })
  const next = random(seed)
  const reports: CallerReport[] = CALLERS.map((c) => ({
    name: c.name,
    sent: 0,
    admitted: 0,
    denied: {},
    tokens: 0,
    refunded: 0,
  }))
  for (let second = 0; second < minutes * 60; second++) {
    for (let i = 0; i < CALLERS.length; i++) {
      const caller = CALLERS[i]
      const report = reports[i]
      // Poisson-ish arrivals: whole requests per second plus a chance of one more.
      const count = Math.floor(caller.perSecond) + (next() < caller.perSecond % 1 ? 1 : 0)
      for (let n = 0; n < count; n++) {
        report.sent++
        // Charge the estimate before calling the model…
        const reservation = await gateway.reserve(caller.request, { cost: caller.estimate })
        if (!reservation.ok) {
          const tier = reservation.decision.tier ?? "?"
          report.denied[tier] = (report.denied[tier] ?? 0) + 1
          continue
        }
        report.admitted++
        // …the model answers with somewhere between 20% and 130% of the estimate…
        const used = Math.round(caller.estimate * (0.2 + 1.1 * next()))
        // …and the real count is settled: the difference comes back, or is charged.
        await reservation.settle(used)
        report.tokens += used
        report.refunded += Math.max(0, caller.estimate - used)
      }
    }
    clock.advance(1000)
  }
  return { callers: reports, stats: gateway.stats() }
}

function print(report: Report): void {
  const rows = report.callers.map((c) => [
    c.name,
    String(c.sent),
    String(c.admitted),
    Object.entries(c.denied)
      .map(([tier, n]) => `${tier} ${n}`)
      .join(", ") || "-",
    String(c.tokens),
    String(c.refunded),
  ])
  const head = ["caller", "sent", "admitted", "denied by tier", "tokens used", "refunded"]
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)))
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i])).join("  ")
  console.log(line(head))
  console.log(line(widths.map((w) => "-".repeat(w))))
  for (const r of rows) console.log(line(r))
  console.log("\nper tier (stats()):")
  for (const [tier, s] of Object.entries(report.stats.tiers)) {
    console.log(
      `  ${tier.padEnd(13)} checked ${String(s.checked).padStart(5)}  denied ${String(s.denied).padStart(4)}  would deny (shadow) ${String(s.shadowDenied).padStart(4)}  deny rate ${(s.denyRate * 100).toFixed(1)}%`,
    )
  }
  const { allowed, denied, listed } = report.stats
  console.log(
    `\ntotal: ${allowed} admitted, ${denied} denied (${listed.denied} by the deny list, ${listed.allowed} by the allow list)`,
  )
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const minutes = Number(process.env.MINUTES ?? 10)
  console.log(`AI gateway, ${minutes} simulated minutes\n`)
  print(await simulate(minutes))
}
