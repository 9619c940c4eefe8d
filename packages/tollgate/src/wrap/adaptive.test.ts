import { describe, expect, it } from "vitest"
import { ArgumentError, ConfigError } from "../errors.js"
import { steppingClock } from "../test-support/stepping-clock.js"
import { type AdaptiveLimiterOptions, adaptiveLimiter } from "./adaptive.js"

const START = Date.parse("2025-01-01T00:00:00Z")

function setup(options: Partial<AdaptiveLimiterOptions> = {}) {
  const clock = steppingClock(START)
  const limiter = adaptiveLimiter({ initialRate: 10, minRate: 1, maxRate: 100, clock, ...options })
  return { clock, limiter }
}

const response = (status: number, headers: Record<string, string> = {}) => ({ status, headers })

/** track records when each promise resolves, by label. */
function track() {
  const done: [string, number][] = []
  return {
    done,
    add(label: string, p: Promise<unknown>, clock: { now(): number }) {
      p.then(
        () => done.push([label, clock.now() - START]),
        (e: unknown) => done.push([`${label}: ${(e as Error).message}`, clock.now() - START]),
      )
    },
  }
}

describe("adaptiveLimiter: options", () => {
  it.each([
    [{ minRate: 0 }, "minRate"],
    [{ maxRate: Number.NaN }, "maxRate"],
    [{ minRate: 200 }, "minRate"],
    [{ initialRate: 500 }, "initialRate"],
    [{ decrease: 1 }, "decrease"],
    [{ decrease: 0 }, "decrease"],
    [{ lowRemaining: 2 }, "lowRemaining"],
    [{ increase: -1 }, "increase"],
    [{ period: "soon" }, "period"],
  ])("%j is refused, naming %s", (bad, path) => {
    const error = (() => {
      try {
        setup(bad as Partial<AdaptiveLimiterOptions>)
      } catch (e) {
        return e
      }
    })()
    expect(error).toBeInstanceOf(ConfigError)
    expect((error as ConfigError).path).toBe(path)
  })
})

describe("adaptiveLimiter: pacing", () => {
  it("spaces calls at the rate and serves them in arrival order", async () => {
    const { clock, limiter } = setup()
    const t = track()
    for (const label of ["a", "b", "c", "d"]) t.add(label, limiter.acquire(), clock)
    await clock.run(1000)
    expect(t.done).toEqual([
      ["a", 0],
      ["b", 100],
      ["c", 200],
      ["d", 300],
    ])
  })

  it("lets an aborted caller leave with the signal's reason; the rest keep their order", async () => {
    const { clock, limiter } = setup()
    const t = track()
    const controller = new AbortController()
    t.add("a", limiter.acquire(), clock)
    t.add("b", limiter.acquire({ signal: controller.signal }), clock)
    t.add("c", limiter.acquire(), clock)
    await clock.run(0)
    controller.abort(new Error("gone"))
    await clock.run(1000)
    expect(t.done).toEqual([
      ["a", 0],
      ["b: gone", 0],
      ["c", 100],
    ])
  })

  it("refuses a cost above the burst", async () => {
    const { limiter } = setup()
    await expect(limiter.acquire({ cost: 2 })).rejects.toBeInstanceOf(ArgumentError)
  })
})

describe("adaptiveLimiter: AIMD", () => {
  it("adds increase / rate per successful call while callers queue (about `increase` per period)", async () => {
    const { clock, limiter } = setup({ increase: 2 })
    const waits = Array.from({ length: 3 }, () => limiter.acquire())
    await clock.run(300)
    await Promise.all(waits)
    const feedback = limiter.feedback(response(200))
    expect(feedback.change).toBe("increase")
    expect(limiter.rate).toBeCloseTo(10 + 2 / 10, 10)
  })

  it("does not increase when nobody waited (demand, not the rate, was the limit)", async () => {
    const { limiter } = setup()
    await limiter.acquire()
    expect(limiter.feedback(response(200)).change).toBe("none")
    expect(limiter.rate).toBe(10)
  })

  it("multiplies the rate down on 429 and 503, once per round trip", async () => {
    const { clock, limiter } = setup()
    const sentBefore = clock.now()
    await clock.run(50)
    expect(limiter.feedback(response(429), sentBefore).change).toBe("decrease")
    expect(limiter.rate).toBe(8)
    // another answer to a call sent before the cut: no second cut
    expect(limiter.feedback(response(503), sentBefore).change).toBe("none")
    expect(limiter.rate).toBe(8)
    await clock.run(50)
    expect(limiter.feedback(response(503), clock.now()).change).toBe("decrease")
    expect(limiter.rate).toBeCloseTo(6.4, 10)
    expect(limiter.stats()).toMatchObject({ throttled: 3, decreases: 2 })
  })

  it("never goes below minRate or above maxRate", async () => {
    const { clock, limiter } = setup({ initialRate: 2, minRate: 1, maxRate: 3, increase: 50 })
    for (let i = 0; i < 10; i++) {
      await clock.run(1)
      limiter.feedback(response(429), clock.now())
    }
    expect(limiter.rate).toBe(1)
    for (let i = 0; i < 20; i++) {
      const waits = [limiter.acquire(), limiter.acquire()]
      await clock.run(2000)
      await Promise.all(waits)
      limiter.feedback(response(200))
    }
    expect(limiter.rate).toBe(3)
  })

  it("decreases when the upstream reports its remaining budget is low", async () => {
    const { clock, limiter } = setup()
    const policy = '"default";q=100;w=10'
    expect(
      limiter.feedback(
        response(200, { "ratelimit-policy": policy, ratelimit: '"default";r=50;t=5' }),
      ).change,
    ).toBe("none")
    expect(
      limiter.feedback(
        response(200, { "ratelimit-policy": policy, ratelimit: '"default";r=9;t=5' }),
      ).change,
    ).toBe("decrease")
    expect(limiter.rate).toBe(8)
    // a soft signal cuts at most once per period
    await clock.run(500)
    limiter.feedback(
      response(200, { "ratelimit-policy": policy, ratelimit: '"default";r=8;t=5' }),
      clock.now(),
    )
    expect(limiter.rate).toBe(8)
    await clock.run(600)
    limiter.feedback(
      response(200, { "x-ratelimit-limit": "100", "x-ratelimit-remaining": "3" }),
      clock.now(),
    )
    expect(limiter.rate).toBeCloseTo(6.4, 10)
  })

  it("never runs faster than the quota / window the upstream advertises", () => {
    const { limiter } = setup({ initialRate: 80 })
    limiter.feedback(response(200, { "ratelimit-policy": '"default";q=100;w=4' }))
    expect(limiter.rate).toBe(25)
    expect(limiter.stats().ceiling).toBe(25)
  })
})

describe("adaptiveLimiter: pauses", () => {
  it("holds every call until Retry-After (seconds)", async () => {
    const { clock, limiter } = setup()
    limiter.feedback(response(429, { "retry-after": "3" }))
    expect(limiter.pausedUntil).toBe(START + 3000)
    const t = track()
    t.add("a", limiter.acquire(), clock)
    t.add("b", limiter.acquire(), clock)
    await clock.run(3500)
    expect(t.done).toEqual([
      ["a", 3000],
      ["b", 3000 + 125],
    ])
  })

  it("holds every call until a Retry-After HTTP-date", async () => {
    const { clock, limiter } = setup()
    limiter.feedback(response(503, { "retry-after": "Wed, 01 Jan 2025 00:00:02 GMT" }))
    const t = track()
    t.add("a", limiter.acquire(), clock)
    await clock.run(2500)
    expect(t.done).toEqual([["a", 2000]])
  })

  it("pauses until the reset when the remaining budget reaches 0", async () => {
    const { limiter } = setup()
    limiter.feedback(
      response(200, {
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "1.5s",
      }),
    )
    expect(limiter.pausedUntil).toBe(START + 1500)
    limiter.feedback(response(200, { ratelimit: '"default";r=0;t=4' }))
    expect(limiter.pausedUntil).toBe(START + 4000)
  })

  it("takes the queue's head back out of the limiter when a pause starts", async () => {
    const { clock, limiter } = setup()
    const t = track()
    t.add("a", limiter.acquire(), clock)
    t.add("b", limiter.acquire(), clock)
    await clock.run(50)
    // b waits for its turn at 100 ms; the upstream says stop for 2 s
    limiter.feedback(response(429, { "retry-after": "2" }), START)
    await clock.run(3000)
    expect(t.done).toEqual([
      ["a", 0],
      ["b", 2050],
    ])
  })

  it("caps a pause at maxPause", () => {
    const { limiter } = setup({ maxPause: "30s" })
    limiter.feedback(response(429, { "retry-after": "86400" }))
    expect(limiter.pausedUntil).toBe(START + 30_000)
  })
})

describe("adaptiveLimiter: reservations", () => {
  it("books a batch after everyone queued, one slot per interval", async () => {
    const { clock, limiter } = setup()
    void limiter.acquire()
    const slots = await limiter.reserve(3)
    expect(slots.map((s) => s.executeAt - START)).toEqual([100, 200, 300])
    const t = track()
    for (const [i, s] of slots.entries()) t.add(`slot ${i}`, s.ready(), clock)
    await clock.run(1000)
    expect(t.done).toEqual([
      ["slot 0", 100],
      ["slot 1", 200],
      ["slot 2", 300],
    ])
  })

  it("re-plans slots not yet due when the upstream pushes back", async () => {
    const { clock, limiter } = setup()
    const slots = await limiter.reserve(4)
    const t = track()
    for (const [i, s] of slots.entries()) t.add(`slot ${i}`, s.ready(), clock)
    await clock.run(150)
    // slots 0 and 1 went; at 150 ms the upstream asks for a 1 s pause (and the rate drops to 8/s)
    limiter.feedback(response(429, { "retry-after": "1" }), START + 100)
    await clock.run(2000)
    expect(t.done).toEqual([
      ["slot 0", 0],
      ["slot 1", 100],
      ["slot 2", 1150],
      ["slot 3", 1150 + 125],
    ])
  })

  it("cancels a slot: its capacity goes back and ready() rejects", async () => {
    const { limiter } = setup()
    const [a, b] = await limiter.reserve(2)
    b.cancel()
    await expect(b.ready()).rejects.toMatchObject({ name: "AbortError" })
    await a.ready()
    const [c] = await limiter.reserve(1)
    expect(c.executeAt - START).toBe(100)
  })
})
