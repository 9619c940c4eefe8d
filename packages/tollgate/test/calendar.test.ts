import { describe, expect, it } from "vitest"
import { calendarBounds } from "../src/core/calendar.js"
import { ConfigError, createLimiter, fixedWindow, manualClock } from "../src/index.js"

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

  it("rejects an unknown time zone", () => {
    expect(() => fixedWindow({ limit: 1, window: "month", timeZone: "Mars/Olympus" })).toThrow(
      ConfigError,
    )
    expect(() => fixedWindow({ limit: 1, window: "1h", timeZone: "UTC" })).toThrow(ConfigError)
  })
})
