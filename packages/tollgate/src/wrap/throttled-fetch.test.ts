import { describe, expect, it } from "vitest"
import { ConfigError } from "../errors.js"
import { steppingClock } from "../test-support/stepping-clock.js"
import { adaptiveLimiter } from "./adaptive.js"
import { throttledFetch } from "./throttled-fetch.js"

const START = Date.parse("2025-01-01T00:00:00Z")

/** upstream records each call and answers with the next scripted response (default 200). */
function upstream(clock: { now(): number }, script: Response[] = []) {
  const calls: [string, number][] = []
  const fetch = async (url: string, _init?: RequestInit) => {
    calls.push([url, clock.now() - START])
    return script.shift() ?? new Response("ok")
  }
  return { calls, fetch }
}

describe("throttledFetch", () => {
  it("makes every call wait its turn, first come first served", async () => {
    const clock = steppingClock(START)
    const { calls, fetch } = upstream(clock)
    const api = throttledFetch(fetch, { initialRate: 10, minRate: 1, maxRate: 10, clock })
    const results = ["/a", "/b", "/c", "/d"].map((url) => api(url))
    await clock.run(1000)
    expect((await Promise.all(results)).map((r) => r.status)).toEqual([200, 200, 200, 200])
    expect(calls).toEqual([
      ["/a", 0],
      ["/b", 100],
      ["/c", 200],
      ["/d", 300],
    ])
  })

  it("feeds responses back: a 429 with Retry-After holds the next calls and slows the rate", async () => {
    const clock = steppingClock(START)
    const { calls, fetch } = upstream(clock, [
      new Response("ok"),
      new Response(null, { status: 429, headers: { "Retry-After": "2" } }),
    ])
    const api = throttledFetch(fetch, { initialRate: 10, minRate: 1, maxRate: 10, clock })
    const results = ["/a", "/b", "/c", "/d"].map((url) => api(url))
    await clock.run(5000)
    expect((await Promise.all(results)).map((r) => r.status)).toEqual([200, 429, 200, 200])
    // /b was refused at 100 ms: pause until 2100, then 8/s (125 ms apart)
    expect(calls).toEqual([
      ["/a", 0],
      ["/b", 100],
      ["/c", 2100],
      ["/d", 2225],
    ])
    // cut to 8/s by the 429, then /c and /d (both queued) each add 1 / rate
    expect(api.limiter.rate).toBeCloseTo(8 + 1 / 8 + 1 / (8 + 1 / 8), 10)
  })

  it("aborts a waiting call through init.signal, with the signal's reason", async () => {
    const clock = steppingClock(START)
    const { calls, fetch } = upstream(clock)
    const api = throttledFetch(fetch, { initialRate: 10, minRate: 1, maxRate: 10, clock })
    const controller = new AbortController()
    const first = api("/a")
    const second = api("/b", { signal: controller.signal })
    const third = api("/c")
    await clock.run(50)
    const reason = new Error("stop")
    controller.abort(reason)
    await expect(second).rejects.toBe(reason)
    await clock.run(1000)
    await first
    await third
    expect(calls).toEqual([
      ["/a", 0],
      ["/c", 100],
    ])
  })

  it("runs a reserved batch as its slots come due", async () => {
    const clock = steppingClock(START)
    const { calls, fetch } = upstream(clock)
    const api = throttledFetch(fetch, { initialRate: 5, minRate: 1, maxRate: 5, clock })
    const slots = await api.reserve(3)
    expect(slots.map((s) => s.delayMs)).toEqual([0, 200, 400])
    // run them in any order: each waits for its own time
    const results = [slots[2].fetch("/c"), slots[0].fetch("/a"), slots[1].fetch("/b")]
    await clock.run(1000)
    await Promise.all(results)
    expect(calls).toEqual([
      ["/a", 0],
      ["/b", 200],
      ["/c", 400],
    ])
  })

  it("shares one adaptive limiter between wrappers", async () => {
    const clock = steppingClock(START)
    const limiter = adaptiveLimiter({ initialRate: 10, minRate: 1, maxRate: 10, clock })
    const one = upstream(clock)
    const two = upstream(clock)
    const apiOne = throttledFetch(one.fetch, { limiter })
    const apiTwo = throttledFetch(two.fetch, { limiter })
    const results = [apiOne("/1"), apiTwo("/2"), apiOne("/3")]
    await clock.run(1000)
    await Promise.all(results)
    expect(one.calls).toEqual([
      ["/1", 0],
      ["/3", 200],
    ])
    expect(two.calls).toEqual([["/2", 100]])
  })

  it("returns network errors as they came, without feedback", async () => {
    const clock = steppingClock(START)
    const api = throttledFetch(
      async () => {
        throw new TypeError("fetch failed")
      },
      { initialRate: 10, minRate: 1, maxRate: 10, clock },
    )
    const result = expect(api("/x")).rejects.toThrow("fetch failed")
    await clock.run(0)
    await result
    expect(api.limiter.stats()).toMatchObject({ successes: 0, throttled: 0 })
  })

  it("refuses bad arguments with ConfigError", () => {
    expect(() =>
      throttledFetch("fetch" as never, { initialRate: 1, minRate: 1, maxRate: 1 }),
    ).toThrow(ConfigError)
    expect(() => throttledFetch(async () => new Response(), { limiter: {} as never })).toThrow(
      ConfigError,
    )
    expect(() => throttledFetch(async () => new Response(), {} as never)).toThrow(ConfigError)
  })
})
