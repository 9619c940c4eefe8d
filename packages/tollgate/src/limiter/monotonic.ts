import { type Clock, systemClock, systemNow } from "../clock.js"

/**
 * Monotonic turns a Clock into a limiter's time: epoch ms that never go backwards.
 *
 * - A reading at or after the last one is used as it is (the fast path).
 * - A step back of up to `toleranceMs` reads as no time passed.
 * - A larger step back moves `offset` forward by the step, so time continues from where
 *   it was instead of stalling until the clock catches up. No capacity is granted by a
 *   jump either way.
 * - NaN or ±Infinity reads as no time passed; before any usable reading, time is 0.
 *
 * Times handed back to callers as epoch ms (a reservation's `executeAt`, a lease's
 * `expiresAt`) subtract `offset` so they are in the clock's own terms again.
 */
export class Monotonic {
  readonly clock: Clock
  readonly toleranceMs: number
  /** offset: ms added to every clock reading; grows after each large step back. */
  offset = 0
  /** last: the latest time handed out; -Infinity before the first. */
  last = Number.NEGATIVE_INFINITY

  /** system: the clock is systemClock, which is monotonic already and needs no guard. */
  readonly #system: boolean

  constructor(clock: Clock, toleranceMs: number) {
    this.clock = clock
    this.toleranceMs = toleranceMs
    this.#system = clock === systemClock
  }

  now(): number {
    if (this.#system) {
      const t = systemNow()
      this.last = t
      return t
    }
    return this.#read()
  }

  /**
   * #read is now() for a clock other than systemClock, kept apart so that now() stays
   * small enough for the compiler to inline into limit() with the store's decision.
   */
  #read(): number {
    let t = this.clock.now() + this.offset
    const last = this.last
    if (t >= last && t !== Number.POSITIVE_INFINITY) {
      this.last = t
      return t
    }
    if (last === Number.NEGATIVE_INFINITY) {
      t = 0 // no usable reading yet
    } else {
      if (Number.isFinite(t) && last - t > this.toleranceMs) this.offset += last - t
      t = last
    }
    this.last = t
    return t
  }
}
