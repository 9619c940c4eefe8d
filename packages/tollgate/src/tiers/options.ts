// The runtime options of createTieredLimiter (store, clock, failure handling), checked
// and split from the tiers config that travels with them in one object.

import { type Clock, systemClock } from "../clock.js"
import { type Duration, parseDuration } from "../duration.js"
import { ConfigError, describe } from "../errors.js"
import { guardOptions, type LimiterOptions, type OnStoreError } from "../limiter/limiter.js"
import { Monotonic } from "../limiter/monotonic.js"
import { StoreGuard } from "../limiter/store-guard.js"
import { MemoryStore } from "../stores/memory-store.js"
import type { Store } from "../stores/store.js"
import type { TieredConfig } from "./config.js"

/** TieredLimiterOptions: a TieredConfig plus where and how to keep its counts. */
export interface TieredLimiterOptions extends TieredConfig {
  /** store: where counts live; default a new MemoryStore. */
  store?: Store
  /** prefix: namespaces are `<prefix>:<tier>…`; default "tiers". */
  prefix?: string
  /** clock: default systemClock (monotonic, epoch-anchored). */
  clock?: Clock
  /** clockTolerance: a clock step back up to this reads as no time passed; default 100 ms. */
  clockTolerance?: Duration
  /** onStoreError: "closed" (throw StoreError, default), "open" (admit) or { fallback, instances? }. */
  onStoreError?: OnStoreError
  /** timeout, maxInFlight, breaker: as for createLimiter; they guard asynchronous stores. */
  timeout?: Duration
  maxInFlight?: number
  breaker?: { failures?: number; cooldown?: Duration } | false
  /** maxKeyLength: the longest request field value (and requestId) accepted; default 512. */
  maxKeyLength?: number
}

/** Runtime: the checked runtime options. */
export interface Runtime {
  config: TieredConfig
  prefix: string
  store: Store
  time: Monotonic
  /** guard: set for an asynchronous store; every call to it goes through the guard. */
  guard: StoreGuard | undefined
  onStoreError: "closed" | "open" | "fallback"
  fallback: Store | undefined
  /** instances: the fallback enforces 1/instances of each limit. */
  instances: number
  maxKeyLength: number
}

const RUNTIME = new Set([
  "store",
  "prefix",
  "clock",
  "clockTolerance",
  "onStoreError",
  "timeout",
  "maxInFlight",
  "breaker",
  "maxKeyLength",
])

/** runtime checks the options that are not config, the way createLimiter checks its own. */
export function runtime(options: TieredLimiterOptions): Runtime {
  if (typeof options !== "object" || options === null || Array.isArray(options)) {
    throw new ConfigError(
      "createTieredLimiter",
      `expected an options object, got ${describe(options)}`,
    )
  }
  const config: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(options)) if (!RUNTIME.has(k)) config[k] = v
  const prefix = options.prefix ?? "tiers"
  if (typeof prefix !== "string" || prefix.length === 0 || prefix.length > 256) {
    throw new ConfigError(
      "prefix",
      `expected a string of 1 to 256 characters, got ${describe(prefix)}`,
    )
  }
  const store = options.store ?? new MemoryStore()
  if (typeof store !== "object" || store === null || typeof store.limitAll !== "function") {
    throw new ConfigError("store", `expected a Store (with limitAll()), got ${describe(store)}`)
  }
  const clock = options.clock ?? systemClock
  if (typeof clock !== "object" || clock === null || typeof clock.now !== "function") {
    throw new ConfigError("clock", `expected a clock with now(), got ${describe(clock)}`)
  }
  const tolerance =
    options.clockTolerance === undefined
      ? 100
      : parseDuration(options.clockTolerance, "clockTolerance", true)
  // Checked whatever the store, so that a bad value is found before a switch to Redis.
  const guarded = guardOptions(options as unknown as LimiterOptions)
  const guard = store.synchronous === true ? undefined : new StoreGuard(guarded)
  const mode = options.onStoreError ?? "closed"
  let fallback: Store | undefined
  let instances = 1
  if (mode !== "closed" && mode !== "open") {
    if (
      typeof mode !== "object" ||
      mode === null ||
      typeof mode.fallback?.limitAll !== "function"
    ) {
      throw new ConfigError(
        "onStoreError",
        `expected "closed", "open" or { fallback: store, instances? }, got ${describe(mode)}`,
      )
    }
    instances = mode.instances ?? 1
    if (typeof instances !== "number" || !Number.isInteger(instances) || instances < 1) {
      throw new ConfigError(
        "onStoreError.instances",
        `expected a whole number >= 1, got ${describe(instances)}`,
      )
    }
    fallback = mode.fallback
  }
  const maxKeyLength = options.maxKeyLength ?? 512
  if (typeof maxKeyLength !== "number" || !Number.isInteger(maxKeyLength) || maxKeyLength < 1) {
    throw new ConfigError(
      "maxKeyLength",
      `expected a whole number >= 1, got ${describe(maxKeyLength)}`,
    )
  }
  return {
    config: config as unknown as TieredConfig,
    prefix,
    store,
    time: new Monotonic(clock, tolerance),
    guard,
    onStoreError: fallback === undefined ? (mode as "closed" | "open") : "fallback",
    fallback,
    instances,
    maxKeyLength,
  }
}
