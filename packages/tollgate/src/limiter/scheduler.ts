import type { Clock } from "../clock.js"

interface Entry<T> {
  at: number
  seq: number
  item: T
}

/**
 * Scheduler runs callbacks at given times with one timer for all of them: a binary heap
 * ordered by time (then by arrival) and a single clock timer armed for the earliest entry.
 * Thousands of waiters cost thousands of heap entries, not thousands of timers.
 */
export class Scheduler<T> {
  private readonly heap: Entry<T>[] = []
  private seq = 0
  private timer: unknown
  private timerAt = Number.POSITIVE_INFINITY
  private readonly clock: Clock
  private readonly now: () => number
  private readonly run: (item: T, at: number) => void

  constructor(clock: Clock, now: () => number, run: (item: T, at: number) => void) {
    this.clock = clock
    this.now = now
    this.run = run
  }

  get size(): number {
    return this.heap.length
  }

  /** schedule runs `item` at time `at` (limiter time, epoch ms). */
  schedule(at: number, item: T): void {
    const heap = this.heap
    heap.push({ at, seq: this.seq++, item })
    let i = heap.length - 1
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (!this.before(heap[i], heap[parent])) break
      ;[heap[i], heap[parent]] = [heap[parent], heap[i]]
      i = parent
    }
    if (at < this.timerAt) this.arm()
  }

  private before(a: Entry<T>, b: Entry<T>): boolean {
    return a.at < b.at || (a.at === b.at && a.seq < b.seq)
  }

  private pop(): Entry<T> {
    const heap = this.heap
    const top = heap[0]
    const last = heap.pop()!
    if (heap.length > 0) {
      heap[0] = last
      let i = 0
      for (;;) {
        const l = 2 * i + 1
        const r = l + 1
        let m = i
        if (l < heap.length && this.before(heap[l], heap[m])) m = l
        if (r < heap.length && this.before(heap[r], heap[m])) m = r
        if (m === i) break
        ;[heap[i], heap[m]] = [heap[m], heap[i]]
        i = m
      }
    }
    return top
  }

  private arm(): void {
    if (this.timer !== undefined) this.cancelTimer()
    if (this.heap.length === 0) return
    const at = this.heap[0].at
    this.timerAt = at
    const delay = Math.max(0, Math.ceil(at - this.now()))
    const fire = () => {
      this.timer = undefined
      this.timerAt = Number.POSITIVE_INFINITY
      this.fire()
    }
    this.timer = this.clock.setTimeout
      ? this.clock.setTimeout(fire, delay)
      : setTimeout(fire, delay)
  }

  private cancelTimer(): void {
    if (this.clock.clearTimeout) this.clock.clearTimeout(this.timer)
    else clearTimeout(this.timer as ReturnType<typeof setTimeout>)
    this.timer = undefined
    this.timerAt = Number.POSITIVE_INFINITY
  }

  private fire(): void {
    const now = this.now()
    // Entries scheduled while firing wait for the next timer, so an item that keeps
    // rescheduling itself at the present time cannot hold this loop forever.
    const before = this.seq
    while (this.heap.length > 0 && this.heap[0].at <= now + 1e-3 && this.heap[0].seq < before) {
      const entry = this.pop()
      this.run(entry.item, entry.at)
    }
    if (this.timer === undefined) this.arm()
  }

  /** clear drops every entry and the timer. */
  clear(): void {
    this.heap.length = 0
    if (this.timer !== undefined) this.cancelTimer()
  }
}
