// TurnQueue: first come, first served turns through a Limiter, with pauses.
//
// Callers queue here; only the head of the queue is inside the limiter (acquire), so a
// pause can take it back out (abort, which gives its reservation back) without anyone
// behind it slipping ahead. Batches book slots (reservations) at the current rate; when
// the plan goes stale (a pause, a slower rate) the slots not yet due give their capacity
// back and take their turn in the queue instead, in order.

import type { Limiter, Reservation } from "../limiter/limiter.js"
import { sleep, type Timers } from "./timers.js"

/**
 * Slot is one reserved call of a batch: its turn is at `executeAt` (epoch ms). `ready()`
 * resolves then. If the plan is dropped before that (a pause or a slow-down), the slot
 * gives its capacity back and `ready()` waits its turn in the queue instead.
 */
export interface Slot {
  readonly executeAt: number
  readonly delayMs: number
  ready(): Promise<void>
  /** cancel gives the slot back; a pending `ready()` rejects with an AbortError. */
  cancel(): void
}

interface Waiter {
  cost: number
  /** count > 0 marks a batch booking of that many slots. */
  count: number
  enqueuedAt: number
  done: boolean
  resolve(slots?: Slot[]): void
  reject(error: unknown): void
  signal: AbortSignal | undefined
  onAbort: (() => void) | undefined
}

interface SlotState {
  /** reservation: the capacity held, until it is given back on a re-plan. */
  reservation: Reservation | undefined
  /** timer: set while the slot waits for its time; undefined once fired or re-planned. */
  timer: unknown
  settled: boolean
  resolve(): void
  reject(error: unknown): void
}

export class TurnQueue {
  readonly #limiter: Limiter<true>
  readonly #clock: Timers
  readonly #key: string
  /** #pausedUntil: epoch ms before which nobody's turn comes. */
  #pausedUntil = Number.NEGATIVE_INFINITY
  /** #waited: the last caller admitted had to wait for its turn. */
  #waited = false
  readonly #queue: Waiter[] = []
  #pumping = false
  /** #head: the waiter now inside limiter.acquire, and the controller that takes it out. */
  #head: { waiter: Waiter; controller: AbortController } | undefined
  /** #slots: booked slots not yet settled, in booking order. */
  readonly #slots = new Set<SlotState>()

  constructor(limiter: Limiter<true>, clock: Timers, key: string) {
    this.#limiter = limiter
    this.#clock = clock
    this.#key = key
  }

  get pausedUntil(): number {
    return this.#pausedUntil
  }

  /** waited: whether the last caller admitted had to wait (the rate, not demand, was the limit). */
  get waited(): boolean {
    return this.#waited
  }

  get waiting(): number {
    return this.#queue.length
  }

  /** turn resolves when the caller may go; an abort rejects with the signal's reason. */
  turn(cost: number, signal: AbortSignal | undefined): Promise<void> {
    return this.#enqueue(cost, 0, signal).then(() => undefined)
  }

  /** book reserves `count` consecutive turns for later, after everyone already queued. */
  book(count: number, signal: AbortSignal | undefined): Promise<Slot[]> {
    return this.#enqueue(1, count, signal).then((slots) => slots!)
  }

  /** pause holds every turn until `until` (epoch ms); it only ever extends a pause. */
  pause(until: number): boolean {
    if (until <= this.#clock.now() || until <= this.#pausedUntil) return false
    this.#pausedUntil = until
    this.#head?.controller.abort()
    this.replan()
    return true
  }

  /** replan gives back every slot not yet due and queues it for a turn instead, in order. */
  replan(): void {
    const pending = [...this.#slots].filter((s) => !s.settled && s.timer !== undefined)
    // Latest first: a reservation gives back all of its capacity only when none is after it.
    for (const s of [...pending].reverse()) {
      this.#clock.clearTimeout(s.timer)
      s.timer = undefined
      void s.reservation?.cancel()
      s.reservation = undefined
    }
    for (const s of pending) this.#reroute(s)
  }

  #enqueue(
    cost: number,
    count: number,
    signal: AbortSignal | undefined,
  ): Promise<Slot[] | undefined> {
    return new Promise<Slot[] | undefined>((resolve, reject) => {
      if (signal?.aborted) {
        reject(signal.reason)
        return
      }
      const w: Waiter = {
        cost,
        count,
        enqueuedAt: this.#clock.now(),
        done: false,
        resolve,
        reject,
        signal,
        onAbort: undefined,
      }
      if (signal !== undefined) {
        w.onAbort = () => this.#abort(w)
        signal.addEventListener("abort", w.onAbort, { once: true })
      }
      this.#queue.push(w)
      void this.#pump()
    })
  }

  #finish(w: Waiter): void {
    w.done = true
    if (w.onAbort !== undefined) w.signal!.removeEventListener("abort", w.onAbort)
    const i = this.#queue.indexOf(w)
    if (i >= 0) this.#queue.splice(i, 1)
  }

  #abort(w: Waiter): void {
    if (w.done) return
    this.#finish(w)
    w.reject(w.signal!.reason)
    if (this.#head?.waiter === w) this.#head.controller.abort()
  }

  /** #pump serves the queue head by head; one loop runs at a time. */
  async #pump(): Promise<void> {
    if (this.#pumping) return
    this.#pumping = true
    try {
      while (this.#queue.length > 0) {
        const w = this.#queue[0]
        const now = this.#clock.now()
        if (now < this.#pausedUntil) {
          await sleep(this.#clock, this.#pausedUntil - now)
          continue
        }
        if (w.count > 0) {
          this.#finish(w)
          w.resolve(await this.#bookNow(w.count))
          continue
        }
        const controller = new AbortController()
        this.#head = { waiter: w, controller }
        try {
          await this.#limiter.acquire(this.#key, { cost: w.cost, signal: controller.signal })
        } catch (error) {
          if (controller.signal.aborted) continue // paused, or the waiter left: look again
          this.#finish(w)
          w.reject(error)
          continue
        } finally {
          this.#head = undefined
        }
        this.#waited = this.#clock.now() > w.enqueuedAt || this.#queue.length > 1
        this.#finish(w)
        w.resolve()
      }
    } finally {
      this.#pumping = false
    }
  }

  async #bookNow(count: number): Promise<Slot[]> {
    const slots: Slot[] = []
    for (let i = 0; i < count; i++) {
      slots.push(this.#slot(await this.#limiter.reserve(this.#key, { cost: 1 })))
    }
    return slots
  }

  #slot(reservation: Reservation): Slot {
    let resolve!: () => void
    let reject!: (error: unknown) => void
    const ready = new Promise<void>((res, rej) => {
      resolve = res
      reject = rej
    })
    ready.catch(() => {})
    const state: SlotState = { reservation, timer: undefined, settled: false, resolve, reject }
    this.#slots.add(state)
    const fire = () => {
      state.timer = undefined
      if (state.settled) return
      if (this.#clock.now() < this.#pausedUntil) {
        state.reservation = undefined
        this.#reroute(state)
        return
      }
      this.#slots.delete(state)
      state.settled = true
      resolve()
    }
    const delay = reservation.executeAt - this.#clock.now()
    if (delay > 0) state.timer = this.#clock.setTimeout(fire, delay)
    else fire()
    return {
      executeAt: reservation.executeAt,
      delayMs: reservation.delayMs,
      ready: () => ready,
      cancel: () => {
        if (state.settled) return
        state.settled = true
        this.#slots.delete(state)
        if (state.timer !== undefined) this.#clock.clearTimeout(state.timer)
        void state.reservation?.cancel()
        reject(new DOMException("the reserved call was cancelled", "AbortError"))
      },
    }
  }

  /** #reroute sends a slot through the queue instead of its reserved time. */
  #reroute(state: SlotState): void {
    this.#slots.delete(state)
    this.#enqueue(1, 0, undefined).then(
      () => {
        if (state.settled) return
        state.settled = true
        state.resolve()
      },
      (error) => state.reject(error),
    )
  }
}
