import { type Clock, systemClock } from "../clock.js"

/** Timers is the part of a Clock that waits. */
export interface Timers {
  now(): number
  setTimeout(callback: () => void, ms: number): unknown
  clearTimeout(handle: unknown): void
}

/**
 * timersOf gives the clock's own timers, or the process's when it has none. The default
 * (no clock) reads systemClock, as a limiter does by default, and waits on referenced
 * timers: a pending wait keeps a script alive.
 */
export function timersOf(clock: Clock | undefined): Timers {
  if (clock?.setTimeout !== undefined && clock.clearTimeout !== undefined) {
    return clock as Timers
  }
  return {
    now: () => (clock ?? systemClock).now(),
    setTimeout: (callback, ms) => setTimeout(callback, ms),
    clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
  }
}

/**
 * sleep resolves after `ms` on the given timers (at once for ms <= 0). An abort rejects
 * at once with the signal's reason, unchanged.
 */
export function sleep(timers: Timers, ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason)
      return
    }
    if (!(ms > 0)) {
      resolve()
      return
    }
    const abort = () => {
      timers.clearTimeout(handle)
      reject(signal!.reason)
    }
    const handle = timers.setTimeout(() => {
      signal?.removeEventListener("abort", abort)
      resolve()
    }, ms)
    signal?.addEventListener("abort", abort, { once: true })
  })
}

/**
 * keepAlive holds the process open until `promise` settles. The limiter's default clock
 * waits on unreferenced timers, so a script whose only pending work is an `acquire` would
 * otherwise exit in the middle of the wait.
 */
export function keepAlive<T>(promise: Promise<T>): Promise<T> {
  const handle = setInterval(() => {}, 1 << 30)
  return promise.finally(() => clearInterval(handle))
}
