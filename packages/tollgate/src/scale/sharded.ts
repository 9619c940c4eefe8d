import {
  assertPolicy,
  type FixedWindowPolicy,
  type Policy,
  type TokenBucketPolicy,
  tokenBucket,
} from "../core/policy.js"
import { type Duration, parseDuration } from "../duration.js"
import { ConfigError, describe } from "../errors.js"

// A sharded policy is an ordinary policy value (it passes assertPolicy, so it goes wherever
// a policy goes) carrying a ShardSpec. The limiter sees the spec and routes every key to
// `shards` sub-keys through a ShardedNamespace (sharded-namespace.ts); a store given the
// policy directly ignores the spec and keeps one key, the whole budget.

/** ShardablePolicy: the kinds whose budget can be split over sub-keys. */
export type ShardablePolicy = TokenBucketPolicy | FixedWindowPolicy

/** MAX_SHARDS: the most sub-keys one key may be split over. */
export const MAX_SHARDS = 256

/** AUTO_MAX_SHARDS: the most sub-keys the automatic count picks. */
export const AUTO_MAX_SHARDS = 64

export interface ShardedOptions {
  /**
   * shards: how many sub-keys each key's budget is split over, a whole number from 2 to
   * 256 and at most the policy's limit (every shard holds at least one unit). Default:
   * chosen from the rate, see `opsPerShard`.
   */
  shards?: number
  /**
   * opsPerShard: requests per second one sub-key should take at most, for the automatic
   * shard count: ceil(policy rate per second / opsPerShard), at least 2, at most 64 and
   * at most one shard per 16 units of the limit. Default 20,000 (a comfortable load for
   * one Redis key).
   */
  opsPerShard?: number
  /**
   * rebalance: when the levels of a key's shards drift more than `threshold` cost units
   * apart, budget is moved from the fuller to the emptier shards (the total is kept).
   * `interval` is the least time between two rebalances of one key by this process.
   * Defaults: threshold max(2, a quarter of a shard's capacity); interval a quarter of the
   * policy's window, within 10 ms..1 s. `false`: never rebalance.
   */
  rebalance?: false | { threshold?: number; interval?: Duration }
  /**
   * adaptive: shard only hot keys. A key starts as one ordinary key (shared with unsharded
   * limiters of the same prefix); once this process sees it asked more than `above`
   * times a second, its budget moves to shards, and every process follows. It goes back to
   * one key when no process has seen it hot for `hold` (default "30s"). `recheck`
   * (default "1s") is how often a process that was refused on the ordinary key looks
   * whether the key was sharded meanwhile. Default: off, every key is always sharded.
   */
  adaptive?: false | { above: number; hold?: Duration; recheck?: Duration }
  /**
   * denyFor: how long this process may decide a key from the shard levels it last read.
   * Once a key's shards were found short of a cost, that cost (or more) is refused here,
   * without asking the store, until the computed retry time but for at most `denyFor`;
   * and all shards of a key are read at once at most once per `denyFor` (in between, the
   * levels last seen plan the pieces). Default "50ms"; 0: always ask, always read.
   */
  denyFor?: Duration
  /** maxTracked: keys whose shard levels this process remembers (oldest forgotten first); default 10,000. */
  maxTracked?: number
  /** random: the random source for choosing shards, returning [0, 1); default Math.random. */
  random?: () => number
}

/** ShardSpec: the resolved options of a sharded policy. */
export interface ShardSpec {
  readonly shards: number
  /** base: the policy without sharding: the whole budget of one key. */
  readonly base: ShardablePolicy
  /** parts: each shard's policy; their limits (and rates) add up to the base policy's. */
  readonly parts: readonly ShardablePolicy[]
  readonly rebalance: { readonly threshold: number; readonly intervalMs: number } | false
  readonly adaptive:
    | { readonly above: number; readonly holdMs: number; readonly recheckMs: number }
    | false
  readonly denyForMs: number
  readonly maxTracked: number
  readonly random: () => number
}

/** ShardedPolicy: a policy whose budget is split over sub-keys; see sharded(). */
export type ShardedPolicy<P extends ShardablePolicy = ShardablePolicy> = P & {
  readonly sharding: ShardSpec
}

/**
 * sharded returns `policy` with each key's budget split over several sub-keys, which land
 * on different Redis Cluster slots, so one hot key's traffic is spread over the cluster
 * instead of one node. A request takes from the fuller of two shards picked at random
 * (falling back to the other); when neither holds its cost, it is taken in whole-unit
 * pieces from several, so a request is refused only when the shards together could not
 * serve it (a token bucket's shards may strand less than one unit each, for a while).
 * Shards whose levels drift apart are rebalanced. Token bucket and fixed window policies
 * only: ConfigError for the others. See docs/sharded.md.
 *
 * Give the result to createLimiter as its policy. Over a MemoryStore it behaves the same
 * (and is useful for testing); the gain is on Redis Cluster.
 *
 * @example
 * const limiter = createLimiter({
 *   policy: sharded(tokenBucket({ rate: 200_000, burst: 50_000 }), { shards: 8 }),
 *   store: new RedisStore({ client: new Cluster(nodes) }),
 * })
 */
export function sharded<P extends ShardablePolicy>(
  policy: P,
  options: ShardedOptions = {},
): ShardedPolicy<P> {
  assertPolicy(policy)
  if (isSharded(policy)) {
    throw new ConfigError("policy", "is sharded already")
  }
  if (policy.kind !== "tokenBucket" && policy.kind !== "fixedWindow") {
    throw new ConfigError(
      "policy",
      `sharded() supports tokenBucket and fixedWindow policies, got ${(policy as Policy).kind}`,
    )
  }
  if (typeof options !== "object" || options === null || Array.isArray(options)) {
    throw new ConfigError("sharded", `expected an options object, got ${describe(options)}`)
  }
  const units = Math.floor(policy.limit + 1e-9)
  if (units < 2) {
    throw new ConfigError(
      "policy",
      `a limit of ${policy.limit} cannot be split: every shard needs at least one unit`,
    )
  }
  const opsPerShard = options.opsPerShard ?? 20_000
  if (typeof opsPerShard !== "number" || !Number.isFinite(opsPerShard) || opsPerShard <= 0) {
    throw new ConfigError(
      "opsPerShard",
      `expected a finite number > 0, got ${describe(opsPerShard)}`,
    )
  }
  let shards: number
  if (options.shards === undefined) {
    shards = autoShards(policy, opsPerShard)
  } else {
    shards = options.shards
    const most = Math.min(MAX_SHARDS, units)
    if (typeof shards !== "number" || !Number.isInteger(shards) || shards < 2 || shards > most) {
      throw new ConfigError(
        "shards",
        `expected a whole number from 2 to ${most} (at most ${MAX_SHARDS}, and at most the limit), got ${describe(shards)}`,
      )
    }
  }
  const base = policy as ShardablePolicy
  const spec: ShardSpec = Object.freeze({
    shards,
    base,
    parts: Object.freeze(shareOut(base, shards)),
    rebalance: rebalanceOptions(options.rebalance, base, shards),
    adaptive: adaptiveOptions(options.adaptive),
    denyForMs: options.denyFor === undefined ? 50 : parseDuration(options.denyFor, "denyFor", true),
    maxTracked: wholeAtLeast(options.maxTracked ?? 10_000, 1, "maxTracked"),
    random: randomSource(options.random),
  })
  return Object.freeze({
    ...(policy as ShardablePolicy),
    sharding: spec,
  }) as unknown as ShardedPolicy<P>
}

/** isSharded tells whether a policy came from sharded(). */
export function isSharded(policy: Policy): policy is ShardedPolicy {
  const spec = (policy as Partial<ShardedPolicy>).sharding
  return typeof spec === "object" && spec !== null
}

/**
 * sameLayout tells whether two policies keep a key's state in the same places: both
 * unsharded, or both sharded over as many shards, both adaptive or both not. A limiter
 * converts state between policies of one layout; a change of layout starts afresh.
 */
export function sameLayout(a: Policy, b: Policy): boolean {
  const x = isSharded(a) ? a.sharding : undefined
  const y = isSharded(b) ? b.sharding : undefined
  if (x === undefined || y === undefined) return x === y
  return x.shards === y.shards && (x.adaptive === false) === (y.adaptive === false)
}

/** ratePerSecond: the cost units a policy admits per second in the long run. */
function ratePerSecond(policy: ShardablePolicy): number {
  return policy.kind === "tokenBucket"
    ? (policy.rate * 1000) / policy.periodMs
    : (policy.limit * 1000) / policy.windowMs
}

/** AUTO_MIN_UNITS: the automatic count keeps at least this many units per shard (when it can). */
export const AUTO_MIN_UNITS = 16

/**
 * autoShards: enough shards for the policy's rate at `opsPerShard` each, at most 64 and
 * at most one per 16 units of the limit (a shard strands up to one unit, see pieces()),
 * at least 2.
 */
export function autoShards(policy: ShardablePolicy, opsPerShard: number): number {
  const units = Math.floor(policy.limit + 1e-9)
  const wanted = Math.ceil(ratePerSecond(policy) / opsPerShard)
  return Math.max(2, Math.min(wanted, AUTO_MAX_SHARDS, Math.floor(units / AUTO_MIN_UNITS)))
}

/**
 * shareOut splits a policy into `shards` parts. The whole units of the limit are dealt
 * out as evenly as whole numbers allow (the first `units mod shards` shards get one more),
 * then scaled by limit / units, so a fractional limit keeps its fraction. A token bucket's
 * rate is split in the same proportions: every shard refills from empty to full in the
 * time the whole bucket takes, and the rates add up to the policy's.
 */
export function shareOut(policy: ShardablePolicy, shards: number): ShardablePolicy[] {
  const units = Math.floor(policy.limit + 1e-9)
  const each = Math.floor(units / shards)
  const larger = units - each * shards
  const parts: ShardablePolicy[] = []
  for (let i = 0; i < shards; i++) {
    const share = (i < larger ? each + 1 : each) / units
    const limit = policy.limit * share
    if (policy.kind === "tokenBucket") {
      parts.push(tokenBucket({ rate: policy.rate * share, period: policy.periodMs, burst: limit }))
    } else {
      parts.push(Object.freeze({ ...policy, limit }))
    }
  }
  return parts
}

function wholeAtLeast(value: unknown, least: number, path: string): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < least) {
    throw new ConfigError(path, `expected a whole number >= ${least}, got ${describe(value)}`)
  }
  return value
}

function rebalanceOptions(
  value: ShardedOptions["rebalance"],
  base: ShardablePolicy,
  shards: number,
): ShardSpec["rebalance"] {
  if (value === false) return false
  const o = value ?? {}
  if (typeof o !== "object" || o === null || Array.isArray(o)) {
    throw new ConfigError(
      "rebalance",
      `expected { threshold?, interval? } or false, got ${describe(o)}`,
    )
  }
  const shardUnits = Math.floor(Math.floor(base.limit + 1e-9) / shards)
  const threshold = o.threshold ?? Math.max(2, Math.ceil(shardUnits / 4))
  if (typeof threshold !== "number" || !Number.isFinite(threshold) || threshold <= 0) {
    throw new ConfigError(
      "rebalance.threshold",
      `expected a finite number > 0 (cost units), got ${describe(threshold)}`,
    )
  }
  const intervalMs =
    o.interval === undefined
      ? Math.min(1000, Math.max(10, base.windowMs / 4))
      : parseDuration(o.interval, "rebalance.interval", true)
  return Object.freeze({ threshold, intervalMs })
}

function adaptiveOptions(value: ShardedOptions["adaptive"]): ShardSpec["adaptive"] {
  if (value === undefined || value === false) return false
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ConfigError(
      "adaptive",
      `expected { above, hold?, recheck? } or false, got ${describe(value)}`,
    )
  }
  const above = value.above
  if (typeof above !== "number" || !Number.isFinite(above) || above <= 0) {
    throw new ConfigError(
      "adaptive.above",
      `expected a finite number > 0 (requests per second), got ${describe(above)}`,
    )
  }
  return Object.freeze({
    above,
    holdMs: parseDuration(value.hold ?? "30s", "adaptive.hold"),
    recheckMs: parseDuration(value.recheck ?? "1s", "adaptive.recheck", true),
  })
}

function randomSource(value: unknown): () => number {
  if (value === undefined) return Math.random
  if (typeof value !== "function") {
    throw new ConfigError("random", `expected a function returning [0, 1), got ${describe(value)}`)
  }
  return value as () => number
}
