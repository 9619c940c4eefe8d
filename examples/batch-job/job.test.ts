// Runs the batch job for real (about 3 s) against the fake upstream on loopback.
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { runJob } from "./job.js"
import { startUpstream } from "./upstream.js"

describe("examples/batch-job", () => {
  let upstream: Awaited<ReturnType<typeof startUpstream>>
  beforeAll(async () => {
    upstream = await startUpstream({ rate: 40, burst: 10 })
  })
  afterAll(() => upstream.close())

  it("finishes every item, backing off from the upstream's 429s", async () => {
    const report = await runJob({
      upstreamUrl: upstream.url,
      items: 100,
      batch: 20,
      initialRate: 60,
    })
    expect(report.done).toBe(100)
    expect(upstream.stats.served).toBe(100)
    // starting at 60/s against 40/s it must have been refused, then slowed down
    expect(report.refused).toBeGreaterThan(0)
    expect(report.refused).toBe(upstream.stats.refused)
    expect(report.finalRate).toBeLessThan(60)
    // it backed off rather than hammering: few refusals for the work done
    expect(report.refused).toBeLessThan(25)
    expect(report.seconds).toBeLessThan(10)
  })
})
