// StoreGuard keeps its calls in one list swept by one timer: these cases check that the
// list never loses a call (one that hangs among many that answer still times out, one
// that answers late still counts as in flight until it does), and that the fast path
// answers the same as the promise path. They run on real time, with wide margins.

import { describe, expect, it } from "vitest"
import type { Decision } from "../src/core/decision.js"
import { StoreError } from "../src/errors.js"
import { StoreGuard } from "../src/limiter/store-guard.js"
import { limitInto, type Sink } from "../src/stores/sink.js"

function guard(timeoutMs: number, maxInFlight = 100_000): StoreGuard {
  return new StoreGuard({ timeoutMs, maxInFlight, breaker: false })
}

/** later: a promise and the function that settles it. */
function later<T>(): { promise: Promise<T>; resolve: (v: T) => void } {
  let resolve!: (v: T) => void
  const promise = new Promise<T>((r) => {
    resolve = r
  })
  return { promise, resolve }
}

describe("StoreGuard", () => {
  it("times out the calls that hang among many that answer, and only those", async () => {
    const g = guard(80)
    const hung: (() => void)[] = []
    const calls: Promise<unknown>[] = []
    for (let i = 0; i < 5000; i++) {
      calls.push(
        g
          .run(() => {
            if (i % 500 === 7) {
              const { promise, resolve } = later<number>()
              hung.push(() => resolve(i))
              return promise
            }
            return Promise.resolve(i)
          })
          .catch((e: unknown) => e),
      )
    }
    const started = performance.now()
    const results = await Promise.all(calls)
    const took = performance.now() - started
    for (let i = 0; i < results.length; i++) {
      if (i % 500 === 7) {
        expect(results[i]).toBeInstanceOf(StoreError)
        expect(String(results[i])).toMatch(/timed out after 80 ms/)
      } else expect(results[i]).toBe(i)
    }
    expect(took).toBeGreaterThanOrEqual(75)
    expect(took).toBeLessThan(2000)
    // Timed-out calls stay in flight until the store lets go of them.
    expect(g.outstanding).toBe(10)
    for (const go of hung) go()
    await new Promise((r) => setTimeout(r, 0))
    expect(g.outstanding).toBe(0)
  })

  it("answers a call that takes most of its timeout, and ignores an answer after it", async () => {
    const g = guard(200)
    const slow = later<string>()
    const late = later<string>()
    const first = g.run(() => slow.promise)
    const second = g.run(() => late.promise).catch((e: unknown) => e)
    await new Promise((r) => setTimeout(r, 100))
    slow.resolve("in time")
    expect(await first).toBe("in time")
    expect(await second).toBeInstanceOf(StoreError)
    late.resolve("too late")
    await new Promise((r) => setTimeout(r, 0))
    expect(g.outstanding).toBe(0)
  })

  it("fast path: answers through the sink, and refuses past maxInFlight", async () => {
    const g = guard(1000, 2)
    const sinks: Sink<Decision>[] = []
    const ns = {
      limit: () => Promise.reject(new Error("not used")),
      peek: () => Promise.reject(new Error("not used")),
      reset: () => Promise.resolve(),
      reserve: () => Promise.reject(new Error("not used")),
      cancel: () => Promise.resolve(),
      release: () => Promise.resolve(),
      adjust: () => Promise.reject(new Error("not used")),
      setPolicy: () => {},
      size: () => -1,
      [limitInto]: (sink: Sink<Decision>) => {
        sinks.push(sink)
      },
    }
    const wrapped = g.wrap(ns)
    const answers: unknown[] = []
    const to = (label: string): Sink<Decision> => ({
      resolve: (d) => answers.push([label, d.allowed]),
      reject: (e) => answers.push([label, String(e)]),
    })
    const fast = wrapped as typeof ns
    fast[limitInto](to("a"), "k", 1, 0, undefined)
    fast[limitInto](to("b"), "k", 1, 0, undefined)
    fast[limitInto](to("c"), "k", 1, 0, undefined)
    expect(sinks.length).toBe(2)
    expect(answers).toEqual([["c", expect.stringMatching(/maxInFlight 2/)]])
    const d = { allowed: true, limit: 1, remaining: 0, retryAfterMs: 0, resetAfterMs: 0 }
    sinks[1].resolve(d)
    sinks[0].reject(new Error("boom"))
    // A second answer to the same call is ignored.
    sinks[0].resolve(d)
    expect(answers.slice(1)).toEqual([
      ["b", true],
      ["a", "Error: boom"],
    ])
    expect(g.outstanding).toBe(0)
  })
})
