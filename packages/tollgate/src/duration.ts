import { ConfigError, describe } from "./errors.js"

/** Duration: milliseconds, or a string of a number and a unit: "250ms", "1.5s", "1m", "1h", "1d". */
export type Duration = number | string

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }
const PATTERN = /^\s*(\d+(?:\.\d+)?|\.\d+)\s*(ms|s|m|h|d)\s*$/

/** toMs reads a Duration as milliseconds, or returns NaN when it is not one. */
export function toMs(value: unknown): number {
  if (typeof value === "number") return value
  if (typeof value !== "string") return Number.NaN
  const match = PATTERN.exec(value)
  return match === null ? Number.NaN : Number(match[1]) * UNIT_MS[match[2]]
}

/**
 * parseDuration turns a Duration into milliseconds. It accepts finite numbers > 0 (or >= 0
 * with `allowZero`) and the strings above; anything else throws ConfigError naming `path`.
 */
export function parseDuration(value: unknown, path: string, allowZero = false): number {
  const ms = toMs(value)
  if (!Number.isFinite(ms) || ms < 0 || (ms === 0 && !allowZero)) {
    throw new ConfigError(
      path,
      `expected a finite duration ${allowZero ? ">= 0" : "> 0"} in ms or as "250ms", "1s", "1m", "1h", "1d", got ${describe(value)}`,
    )
  }
  return ms
}
