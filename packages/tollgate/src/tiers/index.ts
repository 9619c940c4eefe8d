// The public surface of multi-tier limiting, re-exported from the package root.

export type {
  ModelClassConfig,
  ModelConfig,
  PlanConfig,
  TenantConfig,
  TierConfig,
  TieredConfig,
} from "./config.js"
export { type EnvLimiter, type EnvLimiterOptions, fromEnv } from "./from-env.js"
export type { LimitSpec, RateLimitSpec, TierAlgorithm, WindowLimitSpec } from "./limit-spec.js"
export type { TieredLimiterOptions } from "./options.js"
export type { TierDecision, TieredDecision, TieredStats, TierStats } from "./outcome.js"
export type { TierRequest } from "./resolve.js"
export {
  createTieredLimiter,
  type TieredLimiter,
  type TieredLimitOptions,
  type TieredReservation,
} from "./tiered-limiter.js"
export type { TieredUsage, TierUsage } from "./usage.js"
