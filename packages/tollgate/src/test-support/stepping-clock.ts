import { type Clock, flush, manualClock } from "../clock.js"

/**
 * SteppingClock is a manual clock for tests of code that waits on timers and promises
 * together. `run(ms)` moves time forward timer by timer: it sets the time to the next
 * timer's instant, fires it, and lets promise callbacks run before looking for the next,
 * so code resumed by a timer reads exactly that timer's instant from `now()`.
 */
export interface SteppingClock extends Clock {
  now(): number
  setTimeout(callback: () => void, ms: number): unknown
  clearTimeout(handle: unknown): void
  /** run moves time forward by `ms`, stepping through every timer due on the way. */
  run(ms: number): Promise<void>
  /** runUntil is run to an epoch ms. */
  runUntil(at: number): Promise<void>
}

export function steppingClock(start = 0): SteppingClock {
  const clock = manualClock(start)
  const due = new Map<unknown, number>()
  async function runUntil(at: number): Promise<void> {
    for (;;) {
      await flush()
      let next = Number.POSITIVE_INFINITY
      for (const t of due.values()) if (t < next) next = t
      if (next > at) break
      clock.set(Math.max(next, clock.now()))
    }
    if (at > clock.now()) clock.set(at)
    await flush()
  }
  return {
    now: () => clock.now(),
    setTimeout(callback, ms) {
      const handle = clock.setTimeout(() => {
        due.delete(handle)
        callback()
      }, ms)
      due.set(handle, clock.now() + Math.max(0, ms))
      return handle
    },
    clearTimeout(handle) {
      due.delete(handle)
      clock.clearTimeout(handle)
    },
    run: (ms) => runUntil(clock.now() + ms),
    runUntil,
  }
}
