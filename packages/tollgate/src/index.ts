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
  type ClientAddressOptions,
  clientAddress,
  type ForwardedHeader,
  forwardedFor,
} from "./http/client-address.js"
export {
  DEGRADED_HEADER,
  describePolicy,
  legacyRateLimitHeaders,
  type PolicyDescription,
  type PolicyShape,
  type QuotaUnit,
  rateLimitHeader,
  rateLimitPolicyHeader,
  retryAfterHeader,
} from "./http/headers.js"
export { formatIp, type IpAddress, ipKey, parseIp } from "./http/ip.js"
export {
  type ClientInfo,
  createRateLimit,
  type Limitable,
  type Outcome,
  type RateLimitCheck,
  type RateLimitOptions,
  type Reply,
  type ReplyInit,
  type RequestView,
} from "./http/middleware.js"
export {
  type BareItem,
  parseStructuredList,
  type SfItem,
  SfToken,
  sfInteger,
  sfString,
} from "./http/structured-field.js"
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
export {
  type DeniedCache,
  type DeniedCacheOptions,
  type DeniedCacheStats,
  deniedCache,
  type SyncDeniedCache,
} from "./scale/denied-cache.js"
export {
  type LocalLeases,
  type LocalLeasesOptions,
  type LocalLeasesStats,
  localLeases,
  type SyncLocalLeases,
} from "./scale/leases.js"
export {
  type ShardablePolicy,
  type ShardedOptions,
  type ShardedPolicy,
  type ShardSpec,
  sharded,
} from "./scale/sharded.js"
export type { ShardBalance, ShardLevel } from "./scale/sharded-namespace.js"
export { MemoryStore, type MemoryStoreOptions } from "./stores/memory-store.js"
export { RedisStore, type RedisStoreOptions } from "./stores/redis/redis-store.js"
export {
  type SharedMemoryHandle,
  SharedMemoryStore,
  type SharedMemoryStoreOptions,
} from "./stores/shared-memory-store.js"
export type {
  Grant,
  MaybePromise,
  Namespace,
  NamespaceOptions,
  Store,
  SyncNamespace,
  SyncStore,
} from "./stores/store.js"
export {
  createTieredLimiter,
  type EnvLimiter,
  type EnvLimiterOptions,
  fromEnv,
  type LimitSpec,
  type ModelClassConfig,
  type ModelConfig,
  type PlanConfig,
  type RateLimitSpec,
  type TenantConfig,
  type TierAlgorithm,
  type TierConfig,
  type TierDecision,
  type TieredConfig,
  type TieredDecision,
  type TieredLimiter,
  type TieredLimiterOptions,
  type TieredLimitOptions,
  type TieredReservation,
  type TieredStats,
  type TieredUsage,
  type TierRequest,
  type TierStats,
  type TierUsage,
  type WindowLimitSpec,
} from "./tiers/index.js"
export {
  type AcquireTurnOptions,
  type AdaptiveFeedback,
  type AdaptiveLimiter,
  type AdaptiveLimiterOptions,
  type AdaptiveStats,
  adaptiveLimiter,
  type Slot,
} from "./wrap/adaptive.js"
export {
  type FetchLike,
  type FetchSlot,
  type ThrottledFetch,
  type ThrottledFetchOptions,
  throttledFetch,
} from "./wrap/throttled-fetch.js"
export {
  type HeaderSource,
  parseReset,
  parseRetryAfter,
  type ResponseLike,
  readUpstreamSignals,
  type UpstreamSignals,
} from "./wrap/upstream-signals.js"
export {
  type WithRateLimitOptions,
  type WrapLimiter,
  withRateLimit,
} from "./wrap/with-rate-limit.js"
