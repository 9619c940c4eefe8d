import { toMs } from "./duration.js"
import { ArgumentError, describe } from "./errors.js"

/** checkKey throws ArgumentError unless key is a string of 1..maxLength UTF-16 units. */
export function checkKey(key: unknown, maxLength: number, name = "key"): asserts key is string {
  if (typeof key !== "string") {
    throw new ArgumentError(name, `expected a string, got ${describe(key)}`)
  }
  if (key.length === 0 || key.length > maxLength) {
    throw new ArgumentError(name, `expected 1 to ${maxLength} characters, got ${key.length}`)
  }
}

/** checkCost throws ArgumentError unless cost is a finite number in [0, limit]. */
export function checkCost(cost: unknown, limit: number): asserts cost is number {
  if (typeof cost !== "number" || !Number.isFinite(cost) || cost < 0) {
    throw new ArgumentError("cost", `expected a finite number >= 0, got ${describe(cost)}`)
  }
  if (cost > limit) {
    throw new ArgumentError(
      "cost",
      `cost ${cost} is above the policy's limit of ${limit}, so it could never be admitted`,
    )
  }
}

/** checkOptions throws ArgumentError unless options is undefined or a plain object. */
export function checkOptions(options: unknown): void {
  if (
    options !== undefined &&
    (typeof options !== "object" || options === null || Array.isArray(options))
  ) {
    throw new ArgumentError("options", `expected an options object, got ${describe(options)}`)
  }
}

/** checkWait reads a maxWait option: ms or a duration string, >= 0, default Infinity. */
export function checkWait(value: unknown, name = "maxWait"): number {
  if (value === undefined) return Number.POSITIVE_INFINITY
  const ms = toMs(value)
  if (Number.isNaN(ms) || ms < 0) {
    throw new ArgumentError(
      name,
      `expected a duration >= 0 in ms or as "5s", got ${describe(value)}`,
    )
  }
  return ms
}
