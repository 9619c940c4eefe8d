import { describe, expect, it } from "vitest"
import { manualClock } from "../src/index.js"
import { Scheduler } from "../src/limiter/scheduler.js"

describe("Scheduler", () => {
  it("runs due items in time order, then arrival order", () => {
    const clock = manualClock(1_000)
    const ran: string[] = []
    const s = new Scheduler<string>(clock, clock.now, (item) => ran.push(item))
    s.schedule(1_020, "c")
    s.schedule(1_010, "a")
    s.schedule(1_010, "b")
    clock.advance(15)
    expect(ran).toEqual(["a", "b"])
    clock.advance(5)
    expect(ran).toEqual(["a", "b", "c"])
    expect(s.size).toBe(0)
  })

  it("an item that reschedules itself at the present waits for the next timer", () => {
    // A store answering "denied, retry now" over and over (the calendar bug of a skipped
    // midnight did) must not hold the timer callback, and with it the process, forever.
    const clock = manualClock(0)
    let runs = 0
    const s: Scheduler<number> = new Scheduler<number>(clock, clock.now, (item) => {
      runs++
      if (runs < 10_000) s.schedule(clock.now() + 1e-3, item)
    })
    s.schedule(0, 1)
    clock.advance(0)
    expect(runs).toBe(1)
    clock.advance(5)
    expect(runs).toBeGreaterThan(1)
    expect(runs).toBeLessThanOrEqual(7)
  })
})
