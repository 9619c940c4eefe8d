/**
 * Clock: where a limiter reads time. `now()` is epoch milliseconds. `setTimeout` and
 * `clearTimeout`, when present, are used for waiting; a clock without them waits on the
 * process's real timers.
 */
export interface Clock {
  now(): number
  setTimeout?(callback: () => void, ms: number): unknown
  clearTimeout?(handle: unknown): void
}

import { ArgumentError, describe } from "./errors.js"

const origin = performance.timeOrigin
// The Performance object, held once: reading the global `performance` goes through a getter.
const perf = performance

/** systemNow is the system clock's reading: epoch ms, never going backwards. */
export function systemNow(): number {
  return origin + perf.now()
}

/**
 * systemClock is the default clock: monotonic (performance.now) and anchored to the epoch
 * once, so wall-clock steps (NTP, manual changes) never move it.
 */
export const systemClock: Clock = {
  now: systemNow,
  // Timers stay referenced: a program awaiting acquire() is waiting for real work.
  setTimeout: (callback, ms) => setTimeout(callback, ms),
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
}

/** ManualClock is a clock that moves only when told to; timers fire as it is advanced. */
export interface ManualClock extends Clock {
  now(): number
  /** advance moves time forward by `ms` (>= 0), firing due timers in time order. */
  advance(ms: number): void
  /** set jumps to `ms` (forward or backward); timers due by then fire. */
  set(ms: number): void
  setTimeout(callback: () => void, ms: number): unknown
  clearTimeout(handle: unknown): void
  /** pending is the number of timers not yet fired or cleared. */
  readonly pending: number
}

interface ManualTimer {
  at: number
  seq: number
  callback: () => void
}

/**
 * manualClock returns a ManualClock starting at `start` (epoch ms, default 0), for tests:
 * the limiter's and your own. Timers run synchronously inside `advance`/`set`, each seeing
 * `now()` equal to its due time; promise callbacks they trigger run after, so `await` a
 * promise (or `flush()`) before asserting on them.
 *
 * @example
 * const clock = manualClock()
 * const limiter = createLimiter({ policy: tokenBucket({ rate: 1 }), clock })
 * limiter.limit("k"); clock.advance(1000)
 */
export function manualClock(start = 0): ManualClock {
  if (typeof start !== "number" || !Number.isFinite(start)) {
    throw new ArgumentError("start", `expected a finite epoch ms, got ${describe(start)}`)
  }
  let time = start
  let seq = 0
  const timers = new Set<ManualTimer>()

  function runUntil(target: number): void {
    for (;;) {
      let next: ManualTimer | undefined
      for (const timer of timers) {
        if (
          timer.at <= target &&
          (next === undefined ||
            timer.at < next.at ||
            (timer.at === next.at && timer.seq < next.seq))
        ) {
          next = timer
        }
      }
      if (next === undefined) break
      timers.delete(next)
      if (next.at > time) time = next.at
      next.callback()
    }
    time = target
  }

  return {
    now: () => time,
    advance(ms: number) {
      if (typeof ms !== "number" || !(ms >= 0) || !Number.isFinite(ms))
        throw new ArgumentError("ms", `advance expects a finite ms >= 0, got ${describe(ms)}`)
      runUntil(time + ms)
    },
    set(ms: number) {
      if (typeof ms !== "number" || !Number.isFinite(ms))
        throw new ArgumentError("ms", `set expects a finite epoch ms, got ${describe(ms)}`)
      if (ms >= time) runUntil(ms)
      else time = ms
    },
    setTimeout(callback: () => void, ms: number) {
      const timer: ManualTimer = { at: time + Math.max(0, ms), seq: seq++, callback }
      timers.add(timer)
      return timer
    },
    clearTimeout(handle: unknown) {
      timers.delete(handle as ManualTimer)
    },
    get pending() {
      return timers.size
    },
  }
}

/** flush resolves after pending promise callbacks (and timers due now on real time) have run. */
export function flush(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve))
}
