import { describe, expect, it } from "vitest"
import { type CalendarUnit, calendarBounds } from "../src/core/calendar.js"
import { ConfigError, createLimiter, fixedWindow, flush, manualClock } from "../src/index.js"

describe("calendar windows", () => {
  it("a monthly quota resets at the month boundary of its time zone, across a DST change", () => {
    // Berlin leaves summer time on 2026-10-25; November starts at 2026-10-31T23:00Z (CET).
    const clock = manualClock(Date.parse("2026-10-20T12:00:00Z"))
    const limiter = createLimiter({
      policy: fixedWindow({ limit: 3, window: "month", timeZone: "Europe/Berlin" }),
      clock,
    })
    for (let i = 0; i < 3; i++) expect(limiter.limit("tenant").allowed).toBe(true)
    const denied = limiter.limit("tenant")
    expect(denied.allowed).toBe(false)
    expect(clock.now() + denied.retryAfterMs).toBe(Date.parse("2026-10-31T23:00:00Z"))
    clock.set(Date.parse("2026-10-31T22:59:59.999Z"))
    expect(limiter.limit("tenant").allowed).toBe(false)
    clock.set(Date.parse("2026-10-31T23:00:00Z"))
    expect(limiter.limit("tenant").allowed).toBe(true)
  })

  it("computes day, week and month bounds in a zone and in UTC", () => {
    const t = Date.parse("2026-03-29T12:00:00Z") // Berlin enters summer time this day
    expect(calendarBounds("day", "Europe/Berlin", t)).toEqual([
      Date.parse("2026-03-28T23:00:00Z"),
      Date.parse("2026-03-29T22:00:00Z"), // a 23-hour day
    ])
    expect(calendarBounds("week", "UTC", t)).toEqual([
      Date.parse("2026-03-23T00:00:00Z"),
      Date.parse("2026-03-30T00:00:00Z"),
    ])
    expect(calendarBounds("month", "America/New_York", t)).toEqual([
      Date.parse("2026-03-01T05:00:00Z"),
      Date.parse("2026-04-01T04:00:00Z"),
    ])
    expect(calendarBounds("month", "UTC", Date.parse("2026-12-31T23:59:59Z"))).toEqual([
      Date.parse("2026-12-01T00:00:00Z"),
      Date.parse("2027-01-01T00:00:00Z"),
    ])
  })

  it("a daily quota in UTC resets at midnight", () => {
    const clock = manualClock(Date.parse("2026-11-27T23:59:00Z"))
    const limiter = createLimiter({ policy: fixedWindow({ limit: 1, window: "day" }), clock })
    expect(limiter.limit("k").allowed).toBe(true)
    expect(limiter.limit("k").retryAfterMs).toBe(60_000)
    clock.advance(60_000)
    expect(limiter.limit("k").allowed).toBe(true)
  })

  it("a day whose midnight the clocks skip begins when the skip ends", () => {
    // [unit, zone, a time, the window's start, its end]
    const cases: [CalendarUnit, string, string, string, string][] = [
      // Santiago moves from -04 to -03 at local midnight on 2024-09-08: that day begins
      // at 01:00 local (04:00Z), so Sep 7 lasts until then.
      ["day", "America/Santiago", "2024-09-08T03:30Z", "2024-09-07T04:00Z", "2024-09-08T04:00Z"],
      ["day", "America/Havana", "2024-03-10T04:30Z", "2024-03-09T05:00Z", "2024-03-10T05:00Z"],
      // The week holding that Sunday, and Santiago's fall-back day (25 hours, from 03:00Z).
      ["week", "America/Santiago", "2024-09-05T12:00Z", "2024-09-02T04:00Z", "2024-09-09T03:00Z"],
      ["day", "America/Santiago", "2024-04-07T03:30Z", "2024-04-06T03:00Z", "2024-04-07T04:00Z"],
      // Samoa skipped 2011-12-30 whole: the 29th ran until the 31st began.
      ["day", "Pacific/Apia", "2011-12-29T12:00Z", "2011-12-29T10:00Z", "2011-12-30T10:00Z"],
    ]
    for (const [unit, zone, at, start, end] of cases) {
      expect(calendarBounds(unit, zone, Date.parse(at)), `${unit} ${zone} ${at}`).toEqual([
        Date.parse(start),
        Date.parse(end),
      ])
    }
  })

  it("a daily quota where midnight is skipped never answers a negative wait, and a waiter is served", async () => {
    const clock = manualClock(Date.parse("2024-09-08T03:30:00Z")) // 23:30 local
    const limiter = createLimiter({
      policy: fixedWindow({ limit: 1, window: "day", timeZone: "America/Santiago" }),
      clock,
    })
    expect(limiter.limit("k").allowed).toBe(true)
    const denied = limiter.limit("k")
    expect(denied.allowed).toBe(false)
    expect(denied.retryAfterMs).toBe(30 * 60_000)
    expect(denied.resetAfterMs).toBe(30 * 60_000)
    const waiting = limiter.acquire("k", { maxWait: "2h" })
    clock.advance(30 * 60_000 - 1)
    await flush()
    let served = false
    void waiting.then(() => {
      served = true
    })
    await flush()
    expect(served).toBe(false)
    clock.advance(1)
    await waiting
    expect(clock.now()).toBe(Date.parse("2024-09-08T04:00:00Z"))
  })

  it("rejects an unknown time zone", () => {
    expect(() => fixedWindow({ limit: 1, window: "month", timeZone: "Mars/Olympus" })).toThrow(
      ConfigError,
    )
    expect(() => fixedWindow({ limit: 1, window: "1h", timeZone: "UTC" })).toThrow(ConfigError)
  })
})
