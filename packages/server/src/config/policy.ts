// Policy specs from a config file into library policies. The factories do the checking;
// their errors name their own field ("rate"), so each is re-raised with the field's full
// path in the file ("policies.api.rate").

import {
  ConfigError,
  concurrency,
  fixedWindow,
  type Policy,
  slidingWindowCounter,
  slidingWindowLog,
  tokenBucket,
} from "../lib.js"
import type { PolicySpec } from "./schema.js"

const FIELDS: Record<string, readonly string[]> = {
  tokenBucket: ["rate", "period", "burst"],
  slidingWindowLog: ["limit", "window"],
  slidingWindowCounter: ["limit", "window"],
  fixedWindow: ["limit", "window", "timeZone"],
  concurrency: ["limit", "leaseTimeout"],
}

const CALENDAR = new Set(["day", "week", "month"])

/** algorithmOf is the spec's algorithm, or the one its fields imply. */
export function algorithmOf(spec: PolicySpec): keyof typeof FIELDS {
  if (spec.algorithm !== undefined) return spec.algorithm
  if (spec.rate !== undefined) return "tokenBucket"
  if (typeof spec.window === "string" && CALENDAR.has(spec.window)) return "fixedWindow"
  return "slidingWindowCounter"
}

/** toPolicy builds the policy a spec describes, or throws ConfigError naming `path.field`. */
export function toPolicy(spec: PolicySpec, path: string): Policy {
  const algorithm = algorithmOf(spec)
  const allowed = FIELDS[algorithm]
  for (const name of Object.keys(spec)) {
    if (name !== "algorithm" && !allowed.includes(name)) {
      throw new ConfigError(
        `${path}.${name}`,
        `does not apply to ${algorithm}; it takes ${allowed.join(", ")}`,
      )
    }
  }
  const required =
    algorithm === "tokenBucket"
      ? ["rate"]
      : algorithm === "concurrency"
        ? ["limit"]
        : ["limit", "window"]
  for (const name of required) {
    if ((spec as Record<string, unknown>)[name] === undefined) {
      throw new ConfigError(`${path}.${name}`, `is required for ${algorithm}`)
    }
  }
  try {
    switch (algorithm) {
      case "tokenBucket":
        return tokenBucket({ rate: spec.rate!, period: spec.period, burst: spec.burst })
      case "slidingWindowLog":
        return slidingWindowLog({ limit: spec.limit!, window: spec.window! })
      case "slidingWindowCounter":
        return slidingWindowCounter({ limit: spec.limit!, window: spec.window! })
      case "fixedWindow":
        return fixedWindow({
          limit: spec.limit!,
          window: spec.window as string,
          timeZone: spec.timeZone,
        })
      default:
        return concurrency({ limit: spec.limit!, leaseTimeout: spec.leaseTimeout })
    }
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error
    const message = error.message.startsWith(`${error.path}: `)
      ? error.message.slice(error.path.length + 2)
      : error.message
    throw new ConfigError(allowed.includes(error.path) ? `${path}.${error.path}` : path, message)
  }
}

/** samePolicy tells whether two policies enforce the same thing (frozen plain data). */
export function samePolicy(a: Policy, b: Policy): boolean {
  return JSON.stringify(a) === JSON.stringify(b)
}
