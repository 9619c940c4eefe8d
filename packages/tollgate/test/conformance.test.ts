import { readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"
import { createLimiter, manualClock, tokenBucket } from "../src/index.js"

// Decision sequences recorded from golang.org/x/time/rate (a copy of the project's shared conformance data).
interface Step {
  op: "allow" | "reserve"
  dtMs: number
  n: number
  ok: boolean
  delayMs?: number
}
interface Sequence {
  intervalMs: number
  burst: number
  steps: Step[]
}

const file = fileURLToPath(new URL("./fixtures/xtime-rate-token-bucket.json", import.meta.url))
const sequences = JSON.parse(readFileSync(file, "utf8")) as Sequence[]

describe("token bucket replays golang.org/x/time/rate", () => {
  it("has the recorded sequences", () => {
    expect(sequences.length).toBe(400)
  })

  it.each(sequences.map((s, index) => [index, s] as const))("sequence %i", async (_index, seq) => {
    const clock = manualClock(0)
    const limiter = createLimiter({
      policy: tokenBucket({ rate: 1000 / seq.intervalMs, period: 1000, burst: seq.burst }),
      clock,
    })
    for (const [i, step] of seq.steps.entries()) {
      clock.advance(step.dtMs)
      const where = `step ${i} (${step.op} n=${step.n} after ${step.dtMs} ms)`
      if (step.op === "allow") {
        expect(limiter.limit("k", { cost: step.n }).allowed, where).toBe(step.ok)
      } else {
        const r = await limiter.reserve("k", { cost: step.n, maxWait: Number.POSITIVE_INFINITY })
        expect(r.ok, where).toBe(step.ok)
        expect(
          Math.abs(r.delayMs - (step.delayMs ?? 0)),
          `${where}: delay ${r.delayMs} vs ${step.delayMs ?? 0}`,
        ).toBeLessThanOrEqual(0.001)
      }
    }
  })
})
