import { describe, expect, it, vi } from "vitest"
import { flush, manualClock } from "../clock.js"
import { concurrency, fixedWindow, tokenBucket } from "../core/policy.js"
import { ConfigError, RateLimitError } from "../errors.js"
import { createLimiter } from "../limiter/limiter.js"
import { withRateLimit } from "./with-rate-limit.js"

/** onePerSecond: a token bucket of 1 per second, burst 1, on a manual clock. */
function onePerSecond(burst = 1) {
  const clock = manualClock(0)
  const limiter = createLimiter({ policy: tokenBucket({ rate: 1, burst }), clock })
  return { clock, limiter }
}

describe("withRateLimit", () => {
  it("waits for capacity, telling onWait how long and for which key", async () => {
    const { clock, limiter } = onePerSecond()
    const ran: number[] = []
    const onWait = vi.fn()
    const double = async (x: number) => {
      ran.push(clock.now())
      return x * 2
    }
    const wrapped = withRateLimit(double, {
      limiter,
      clock,
      onWait,
    })
    expect(await wrapped(1)).toBe(2)
    const second = wrapped(2)
    const third = wrapped(3)
    await flush()
    expect(ran).toEqual([0])
    expect(onWait.mock.calls).toEqual([
      [1000, "default"],
      [2000, "default"],
    ])
    clock.advance(999)
    await flush()
    expect(ran).toEqual([0])
    clock.advance(1)
    expect(await second).toBe(4)
    clock.advance(1000)
    expect(await third).toBe(6)
    expect(ran).toEqual([0, 1000, 2000])
  })

  it("with wait: false, throws RateLimitError at once and runs nothing", async () => {
    const { limiter } = onePerSecond()
    const fn = vi.fn(async () => "done")
    const wrapped = withRateLimit(fn, { limiter, wait: false })
    expect(await wrapped()).toBe("done")
    const error = await wrapped().catch((e: unknown) => e)
    expect(error).toBeInstanceOf(RateLimitError)
    expect((error as RateLimitError).code).toBe("ERR_RATE_LIMITED")
    expect((error as RateLimitError).retryAfterMs).toBe(1000)
    expect(fn).toHaveBeenCalledTimes(1)
  })

  it("throws at once when the wait would pass maxWait, without taking capacity", async () => {
    const { clock, limiter } = onePerSecond()
    const onWait = vi.fn()
    const wrapped = withRateLimit(async () => clock.now(), {
      limiter,
      clock,
      maxWait: "1.5s",
      onWait,
    })
    await wrapped()
    const second = wrapped()
    await flush()
    const error = await wrapped().catch((e: unknown) => e)
    expect(error).toBeInstanceOf(RateLimitError)
    expect((error as RateLimitError).retryAfterMs).toBe(2000)
    expect(onWait).toHaveBeenCalledTimes(1)
    clock.advance(1000)
    expect(await second).toBe(1000)
    // the refused call took nothing: the next one is due one interval later
    const fourth = wrapped()
    await flush()
    clock.advance(1000)
    expect(await fourth).toBe(2000)
  })

  it("aborts a waiting call with the signal's reason and gives its turn back", async () => {
    const { clock, limiter } = onePerSecond()
    const fn = vi.fn(async (label: string) => [label, clock.now()])
    const controller = new AbortController()
    const wrapped = withRateLimit(fn, {
      limiter,
      clock,
      signal: (label) => (label === "b" ? controller.signal : undefined),
    })
    await wrapped("a")
    const b = wrapped("b")
    await flush()
    const reason = new Error("user went away")
    controller.abort(reason)
    await expect(b).rejects.toBe(reason)
    const c = wrapped("c")
    await flush()
    clock.advance(1000)
    expect(await c).toEqual(["c", 1000])
    expect(fn.mock.calls.map((call) => call[0])).toEqual(["a", "c"])
    // an already aborted signal rejects before touching the limiter
    await expect(wrapped("b")).rejects.toBe(reason)
  })

  it("shares one budget among functions wrapped with one limiter", async () => {
    const { clock, limiter } = onePerSecond(2)
    const search = withRateLimit(async () => "search", { limiter, clock, wait: false })
    const fetchItem = withRateLimit(async () => "item", { limiter, clock, wait: false })
    expect(await search()).toBe("search")
    expect(await fetchItem()).toBe("item")
    await expect(search()).rejects.toBeInstanceOf(RateLimitError)
    await expect(fetchItem()).rejects.toBeInstanceOf(RateLimitError)
    clock.advance(1000)
    expect(await fetchItem()).toBe("item")
  })

  it("takes key and cost from the call's arguments", async () => {
    const clock = manualClock(0)
    const limiter = createLimiter({ policy: tokenBucket({ rate: 10, burst: 10 }), clock })
    const send = withRateLimit(async (user: string, tokens: number) => `${user}:${tokens}`, {
      limiter,
      wait: false,
      key: (user) => `user:${user}`,
      cost: (_user, tokens) => tokens,
    })
    expect(await send("ann", 8)).toBe("ann:8")
    await expect(send("ann", 3)).rejects.toBeInstanceOf(RateLimitError)
    expect(await send("bob", 10)).toBe("bob:10")
    expect(await send("ann", 2)).toBe("ann:2")
  })

  it("passes this, results and errors through", async () => {
    const { limiter } = onePerSecond(3)
    const counter = {
      n: 41,
      bump: withRateLimit(
        async function (this: { n: number }) {
          return ++this.n
        },
        { limiter },
      ),
    }
    expect(await counter.bump()).toBe(42)
    const failing = withRateLimit(
      async () => {
        throw new TypeError("boom")
      },
      { limiter },
    )
    await expect(failing()).rejects.toThrow(TypeError)
  })

  it("joins the limiter's queue on window policies", async () => {
    const clock = manualClock(0)
    const limiter = createLimiter({ policy: fixedWindow({ limit: 1, window: "1s" }), clock })
    const onWait = vi.fn()
    const wrapped = withRateLimit(async () => clock.now(), { limiter, onWait })
    expect(await wrapped()).toBe(0)
    clock.advance(400)
    const second = wrapped()
    await flush()
    expect(onWait).toHaveBeenCalledWith(600, "default")
    clock.advance(600)
    expect(await second).toBe(1000)
  })

  it("releases a concurrency lease when the function settles", async () => {
    const clock = manualClock(0)
    const limiter = createLimiter({ policy: concurrency({ limit: 1 }), clock })
    const order: string[] = []
    let finishFirst!: () => void
    const wrapped = withRateLimit(
      async (label: string) => {
        order.push(`start ${label}`)
        if (label === "first") await new Promise<void>((resolve) => (finishFirst = resolve))
        order.push(`end ${label}`)
      },
      { limiter },
    )
    const first = wrapped("first")
    await flush()
    const second = wrapped("second")
    await flush()
    expect(order).toEqual(["start first"])
    finishFirst()
    await first
    await second
    expect(order).toEqual(["start first", "end first", "start second", "end second"])
  })

  it("refuses bad options with ConfigError", () => {
    const { limiter } = onePerSecond()
    const fn = async () => {}
    expect(() => withRateLimit("nope" as never, { limiter })).toThrow(ConfigError)
    expect(() => withRateLimit(fn, { limiter: {} as never })).toThrow(ConfigError)
    expect(() => withRateLimit(fn, { limiter, key: 5 as never })).toThrow(ConfigError)
    expect(() => withRateLimit(fn, { limiter, onWait: "log" as never })).toThrow(ConfigError)
  })
})
