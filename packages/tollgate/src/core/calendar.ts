// Calendar windows: days, ISO weeks (Monday first) and months in an IANA time zone. A
// window starts at local midnight, so a day across a DST change lasts 23 or 25 hours.

/** CalendarUnit: the length of a calendar window. */
export type CalendarUnit = "day" | "week" | "month"

const formatters = new Map<string, Intl.DateTimeFormat>()

function formatter(timeZone: string): Intl.DateTimeFormat {
  let f = formatters.get(timeZone)
  if (f === undefined) {
    f = new Intl.DateTimeFormat("en-US", {
      timeZone,
      hourCycle: "h23",
      year: "numeric",
      month: "numeric",
      day: "numeric",
      hour: "numeric",
      minute: "numeric",
      second: "numeric",
      weekday: "short",
    })
    formatters.set(timeZone, f)
  }
  return f
}

/** isTimeZone tells whether the runtime knows this IANA time zone name. */
export function isTimeZone(timeZone: string): boolean {
  try {
    formatter(timeZone)
    return true
  } catch {
    return false
  }
}

const WEEKDAYS: Record<string, number> = { Mon: 0, Tue: 1, Wed: 2, Thu: 3, Fri: 4, Sat: 5, Sun: 6 }

interface Local {
  year: number
  month: number // 0-11
  day: number
  weekday: number // 0 = Monday
  wall: number // the local wall-clock time, as if it were UTC (ms)
}

function local(timeZone: string, t: number): Local {
  const p: Record<string, string> = {}
  for (const part of formatter(timeZone).formatToParts(t)) p[part.type] = part.value
  const year = Number(p.year)
  const month = Number(p.month) - 1
  const day = Number(p.day)
  const wall =
    Date.UTC(year, month, day, Number(p.hour), Number(p.minute), Number(p.second)) +
    (((t % 1000) + 1000) % 1000)
  return { year, month, day, weekday: WEEKDAYS[p.weekday], wall }
}

/**
 * midnight is the epoch ms at which the given local date begins (Date.UTC-style overflow
 * allowed): local 00:00, or, where the clocks skip midnight (a DST change at 00:00 as in
 * Santiago, or a whole skipped day), the first instant after the skip.
 */
function midnight(timeZone: string, year: number, month: number, day: number): number {
  const wall = Date.UTC(year, month, day)
  let t = wall
  // Two rounds: the offset at the guess, then at the corrected time (differs across DST).
  for (let n = 0; n < 2; n++) t = wall - (local(timeZone, t).wall - t)
  if (local(timeZone, t).wall >= wall) return t
  // No instant reads 00:00 that day: t is just before the skip (the old offset's
  // midnight). The day begins where the local time first reaches the date; skips last at
  // most a day, and the local time rises across one, so halving the interval finds it.
  let lo = t
  let hi = t + 86_400_000
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2)
    if (local(timeZone, mid).wall >= wall) hi = mid
    else lo = mid
  }
  return hi
}

/** calendarBounds is [start, end) of the calendar window holding `now` (epoch ms). */
export function calendarBounds(
  unit: CalendarUnit,
  timeZone: string,
  now: number,
): [number, number] {
  const l = local(timeZone, now)
  if (unit === "day") {
    return [
      midnight(timeZone, l.year, l.month, l.day),
      midnight(timeZone, l.year, l.month, l.day + 1),
    ]
  }
  if (unit === "week") {
    const first = l.day - l.weekday
    return [
      midnight(timeZone, l.year, l.month, first),
      midnight(timeZone, l.year, l.month, first + 7),
    ]
  }
  return [midnight(timeZone, l.year, l.month, 1), midnight(timeZone, l.year, l.month + 1, 1)]
}

/** CALENDAR_SPAN_MS: the longest a window of each unit can last (for TTLs and memory). */
export const CALENDAR_SPAN_MS: Record<CalendarUnit, number> = {
  day: 25 * 3_600_000,
  week: 7 * 86_400_000 + 3_600_000,
  month: 31 * 86_400_000 + 3_600_000,
}
