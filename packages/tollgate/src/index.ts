export { type Clock, flush, type ManualClock, manualClock, systemClock } from "./clock.js"
export type { Decision, Lease } from "./core/decision.js"
export {
  type ConcurrencyOptions,
  type ConcurrencyPolicy,
  concurrency,
  type FixedWindowOptions,
  type FixedWindowPolicy,
  fixedWindow,
  type Policy,
  type SlidingWindowCounterPolicy,
  type SlidingWindowLogPolicy,
  slidingWindowCounter,
  slidingWindowLog,
  type TokenBucketOptions,
  type TokenBucketPolicy,
  tokenBucket,
  type WindowOptions,
} from "./core/policy.js"
export { type Duration, parseDuration } from "./duration.js"
export {
  ArgumentError,
  ConfigError,
  RateLimitError,
  StoreError,
  TollgateError,
  UnsupportedError,
} from "./errors.js"
export {
  type AcquireOptions,
  createLimiter,
  type FallbackOptions,
  type Limiter,
  type LimiterOptions,
  type LimiterStats,
  type LimitOptions,
  type OnStoreError,
  type Reservation,
  type ReserveOptions,
} from "./limiter/limiter.js"
export { MemoryStore, type MemoryStoreOptions } from "./stores/memory-store.js"
export type {
  Grant,
  MaybePromise,
  Namespace,
  Store,
  SyncNamespace,
  SyncStore,
} from "./stores/store.js"
