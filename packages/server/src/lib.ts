// The one place the server reaches into the tollgate library. Inside this repository the
// server runs on the library's TypeScript source (no build step for `npm start` or the
// tests); everything else in the server imports from here, so switching to the published
// "tollgate" package is a change to this file alone.

export {
  ArgumentError,
  type Clock,
  ConfigError,
  clientAddress,
  concurrency,
  createLimiter,
  DEGRADED_HEADER,
  type Decision,
  describePolicy,
  fixedWindow,
  type Limiter,
  type ManualClock,
  MemoryStore,
  manualClock,
  type OnStoreError,
  type Policy,
  parseDuration,
  RateLimitError,
  RedisStore,
  type Reservation,
  rateLimitHeader,
  rateLimitPolicyHeader,
  retryAfterHeader,
  type Store,
  StoreError,
  slidingWindowCounter,
  slidingWindowLog,
  systemClock,
  TollgateError,
  tokenBucket,
  UnsupportedError,
} from "../../tollgate/src/index.js"
export type { TieredConfig } from "../../tollgate/src/tiers/config.js"
export type { TieredDecision } from "../../tollgate/src/tiers/outcome.js"
export type { TierRequest } from "../../tollgate/src/tiers/resolve.js"
// The multi-tier limiter is not exported from the library's root yet; its module is.
export {
  createTieredLimiter,
  type TieredLimiter,
} from "../../tollgate/src/tiers/tiered-limiter.js"
