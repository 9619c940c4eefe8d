import type { Decision } from "./core/decision.js"

/** TollgateError is the base class of every error tollgate throws; `code` is stable across versions. */
export class TollgateError extends Error {
  readonly code: string
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.code = code
    this.name = new.target.name
  }
}

/** ConfigError: an invalid policy or option, thrown at construction. `path` names the field. */
export class ConfigError extends TollgateError {
  readonly path: string
  constructor(path: string, message: string) {
    super("ERR_CONFIG", path === "" ? message : `${path}: ${message}`)
    this.path = path
  }
}

/** ArgumentError: a bad call (key, cost or option); nothing was consumed. */
export class ArgumentError extends TollgateError {
  readonly argument: string
  constructor(argument: string, message: string) {
    super("ERR_ARGUMENT", `${argument}: ${message}`)
    this.argument = argument
  }
}

/** RateLimitError: a waiting call could not be served within `maxWait` (or waiting is off). */
export class RateLimitError extends TollgateError {
  readonly retryAfterMs: number
  readonly decision: Decision
  constructor(decision: Decision, message?: string) {
    super(
      "ERR_RATE_LIMITED",
      message ?? `rate limited: retry after ${Math.ceil(decision.retryAfterMs)} ms`,
    )
    this.decision = decision
    this.retryAfterMs = decision.retryAfterMs
  }
}

/** StoreError: the store failed or timed out and `onStoreError` is "closed". `cause` holds the original. */
export class StoreError extends TollgateError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("ERR_STORE", message, options)
  }
}

/** UnsupportedError: the policy cannot do this operation (e.g. `reserve` on a fixed window). */
export class UnsupportedError extends TollgateError {
  constructor(message: string) {
    super("ERR_UNSUPPORTED", message)
  }
}

/** describe renders a received value for an error message: `-1 (number)`, `"5" (string)`. */
export function describe(value: unknown): string {
  if (typeof value === "string") {
    const shown = value.length > 40 ? `${value.slice(0, 40)}…` : value
    return `${JSON.stringify(shown)} (string of length ${value.length})`
  }
  if (typeof value === "number") return `${value} (number)`
  if (value === null) return "null"
  if (typeof value === "object") return Array.isArray(value) ? "an array" : "an object"
  if (typeof value === "symbol") return "a symbol"
  return `${String(value)} (${typeof value})`
}
