import type { Decision } from "../core/decision.js"
import { type TokenBucketPolicy, tokenBucket } from "../core/policy.js"
import type { MaybePromise, Namespace, Store } from "../stores/store.js"
import type { ShardablePolicy, ShardSpec } from "./sharded.js"
import { deal, levelOf } from "./sharded-levels.js"
import type { Tracked } from "./sharded-namespace.js"
import { all, one, type Settled, type Steps, settled } from "./sharded-steps.js"

// Adaptive sharding: a key lives as one ordinary key (namespace `<prefix>`, the whole
// policy) until it gets hot, and on its shards while it is hot. Which one holds its
// budget is shared through the store, so that every process agrees:
//
// - The flag (`<prefix>#hot`, a one-token bucket per key refilling in `hold`): an empty
//   bucket means "sharded" until it refills. Processes that see the key hot refresh it.
// - Heating: the first process to see more than `above` requests a second reads the
//   ordinary key and the shards, takes the heating lock (`<prefix>#heat`, one winner),
//   takes the ordinary key's level from it (a limit of that cost), sets the shards to
//   what it took (split by share), drains the ordinary key (charges it twice its limit)
//   and only then sets the flag: no process can follow the flag, and drain the ordinary
//   key itself, before the winner has taken its level. A process that still uses the
//   ordinary key is then refused there, looks at the flag, and follows.
//   The ordinary key is drained again before it could refill (token bucket) or at each
//   new window (fixed window) while the key stays hot.
// - Cooling: when the flag has run out, the first process to notice (one winner, through
//   `<prefix>#cool`) takes what the shards have left, resets the ordinary key and
//   charges it down to that.
//
// The moves are not atomic across processes, so each moves only budget it took (see
// take): what other processes admit meanwhile is never counted on both sides, and every
// race leaves less budget, never more.

/** TAKE_ATTEMPTS: tries to take the ordinary key's level while others keep using it (then none is moved). */
const TAKE_ATTEMPTS = 6

/** flagPolicy: one token per key, refilled in `holdMs` (at least 1 ms): a flag or a lock that lasts that long. */
export function flagPolicy(holdMs: number): TokenBucketPolicy {
  return tokenBucket({ rate: 1, period: Math.max(1, holdMs), burst: 1 })
}

/** lockMs: how long a heating lock holds, at most (a winner that dies frees it then). */
function lockMs(holdMs: number): number {
  return Math.min(holdMs, 5000)
}

/** flagSet: the flag bucket is empty, so the key is sharded (for resetAfterMs more). */
function flagSet(d: Decision): boolean {
  return d.remaining === 0
}

export class Adaptive {
  /** plain: the ordinary keys, with the whole policy. */
  readonly plain: Namespace
  private readonly flag: Namespace
  private readonly heatLock: Namespace
  private readonly cool: Namespace
  private readonly shards: readonly Namespace[]
  private readonly background: (steps: Steps<void>) => void
  private spec: ShardSpec

  constructor(
    store: Store,
    prefix: string,
    spec: ShardSpec,
    shards: readonly Namespace[],
    background: (steps: Steps<void>) => void,
  ) {
    const holdMs = this.options(spec).holdMs
    this.spec = spec
    this.shards = shards
    this.background = background
    this.plain = store.namespace(prefix, spec.base)
    this.flag = store.namespace(`${prefix}#hot`, flagPolicy(holdMs))
    this.heatLock = store.namespace(`${prefix}#heat`, flagPolicy(lockMs(holdMs)))
    this.cool = store.namespace(`${prefix}#cool`, flagPolicy(holdMs))
  }

  private options(spec = this.spec) {
    if (spec.adaptive === false) throw new Error("Adaptive needs adaptive options")
    return spec.adaptive
  }

  /** observe counts a request and returns the key's rate (requests per second, two one-second windows). */
  private observe(e: Tracked, now: number): number {
    const second = Math.floor(now / 1000)
    if (second !== e.second) {
      e.previous = second === e.second + 1 ? e.count : 0
      e.second = second
      e.count = 0
    }
    e.count++
    return e.previous * (1 - (now - second * 1000) / 1000) + e.count
  }

  /**
   * route counts a request and brings the key's state up to date: heats it when it is hot
   * here, cools it when its flag ran out, keeps the flag and the drain fresh. True when the
   * key is sharded.
   */
  *route(key: string, e: Tracked, now: number): Steps<boolean> {
    const o = this.options()
    const rate = this.observe(e, now)
    if (!e.hot && rate > o.above && now - e.heatTriedAt >= o.recheckMs) {
      e.heatTriedAt = now
      yield* this.heat(key, e, now)
    }
    if (e.hot && now >= e.flagExpiresAt) yield* this.coolDown(key, e, now)
    if (!e.hot) return false
    if (rate >= o.above / 2 && now >= e.refreshAt && e.flagExpiresAt - now < o.holdMs / 2) {
      e.refreshAt = now + o.holdMs / 8
      this.background(this.refresh(key, e, now))
    }
    if (now >= e.drainAt) {
      e.drainAt = now + Math.min(this.spec.base.windowMs / 4, 1000)
      this.background(this.drain(key, e, now))
    }
    return true
  }

  /**
   * shardedMeanwhile: after the ordinary key refused, look whether another process
   * sharded the key (at most once per `recheck`). True when it did: the caller retries on
   * the shards.
   */
  *shardedMeanwhile(key: string, e: Tracked, now: number): Steps<boolean> {
    if (now - e.flagCheckedAt < this.options().recheckMs) return false
    e.flagCheckedAt = now
    const [f, lock] = yield* all<Decision>([
      () => this.flag.peek(key, now),
      () => this.heatLock.peek(key, now),
    ])
    if (!flagSet(f)) {
      // A move in progress (its lock taken, the flag not set yet): the ordinary key was
      // refused because its level is being moved; look again at the next refusal rather
      // than a recheck later, so that the key is followed as soon as the flag is set.
      if (flagSet(lock)) e.flagCheckedAt = Number.NEGATIVE_INFINITY
      return false
    }
    this.becomeHot(e, now, f.resetAfterMs, now)
    return true
  }

  private becomeHot(e: Tracked, now: number, lifetimeMs: number, drainAt: number): void {
    e.hot = true
    e.flagExpiresAt = now + lifetimeMs
    e.refreshAt = now
    e.drainAt = drainAt
    e.deniedUntil = 0
  }

  /** drainedUntil: when a drained ordinary key must be drained again, from the drain's reply. */
  private drainedUntil(d: Decision, now: number): number {
    const base = this.spec.base
    return base.kind === "tokenBucket"
      ? now + Math.max(0, d.resetAfterMs - base.windowMs) / 2
      : now + d.resetAfterMs
  }

  private *heat(key: string, e: Tracked, now: number): Steps<void> {
    const [f, p, ...ds] = yield* all<Decision>([
      () => this.flag.peek(key, now),
      () => this.plain.peek(key, now),
      ...this.shards.map((ns, j) => () => ns.peek(e.names[j], now)),
    ])
    e.levels.recordAll(ds, now)
    if (flagSet(f)) {
      this.becomeHot(e, now, f.resetAfterMs, now)
      return
    }
    // Another process holding the lock is moving the budget; this one follows the flag
    // once it is set (when refused on the ordinary key, see shardedMeanwhile).
    const won = yield* one(() => this.heatLock.limit(key, 1, now))
    if (!won.allowed) return
    // This process moves the budget: it takes the ordinary key's level (see take), sets
    // each shard to its share of what it took (charging or refunding it), and drains the
    // ordinary key, then sets the flag. What the ordinary key gains after the take, and
    // what other processes take of it before they follow, is budget left behind, never
    // counted twice.
    const base = this.spec.base
    const level = levelOf(base, p)
    const taken = yield* this.take(this.plain, key, base, level, now)
    // Nothing taken (every try lost the race): moving would set the shards to nothing and
    // drop the whole budget. Leave the key as it is; it heats again once the lock lapses.
    if (taken <= 0 && level > 0) return
    const targets = deal(this.spec.parts, taken)
    const charges = targets.map((target, j) => e.levels.at(j, now) - target)
    const shards = charges.map((_, j) => j).filter((j) => Math.abs(charges[j]) > 1e-9)
    const [drained, ...charged] = yield* all<Settled<Decision>>([
      settled(() => this.plain.adjust(key, 2 * base.limit, now)),
      ...shards.map((j) => settled(() => this.shards[j].adjust(e.names[j], charges[j], now))),
    ])
    charged.forEach((r, i) => {
      if (r.ok) e.levels.record(shards[i], r.value, now)
    })
    // Set (or, when a winner whose lock ran out set it already, left as it is).
    yield* one(() => this.flag.limit(key, 1, now))
    this.becomeHot(
      e,
      now,
      this.options().holdMs,
      drained.ok ? this.drainedUntil(drained.value, now) : now,
    )
  }

  /**
   * take takes `level` from a key with one limit of that cost (one atomic step in the
   * store), so that only budget nobody else used is moved. When other processes used
   * some since `level` was read, the take is refused and tried again at the level the
   * refusal shows (whole units: a token bucket's level read back from times may be a
   * rounding above what a take can have), less a margin: what went between the last two
   * readings of the level, times the number of refusals before, up to TAKE_ATTEMPTS
   * times. It returns what it took (0 when every attempt
   * was refused).
   */
  private *take(
    ns: Namespace,
    key: string,
    part: ShardablePolicy,
    level: number,
    now: number,
  ): Steps<number> {
    let cost = level
    let known = level
    for (let attempt = 0; attempt < TAKE_ATTEMPTS && cost > 1e-9; attempt++) {
      const asked = cost
      const t = yield* one(() => ns.limit(key, asked, now))
      if (t.allowed) return asked
      // Refused: others used some since. Ask next for the level the refusal shows, less
      // what went between the last two readings of it (none the first time, once more
      // each attempt after): about that much goes again while the next take is on its
      // way, so traffic that keeps using the key, this process's own requests included,
      // cannot outpace every attempt. What is not taken is drained with the key: left
      // behind, never counted twice.
      const left = Math.floor(levelOf(part, t) + 1e-9)
      cost = left - Math.max(0, known - left) * attempt
      known = left
    }
    return 0
  }

  private *refresh(key: string, e: Tracked, now: number): Steps<void> {
    const d = yield* one(() => this.flag.adjust(key, 1, now))
    e.flagExpiresAt = now + d.resetAfterMs
  }

  private *drain(key: string, e: Tracked, now: number): Steps<void> {
    const d = yield* one(() => this.plain.adjust(key, 2 * this.spec.base.limit, now))
    e.drainAt = this.drainedUntil(d, now)
  }

  private *coolDown(key: string, e: Tracked, now: number): Steps<void> {
    const f = yield* one(() => this.flag.peek(key, now))
    if (flagSet(f)) {
      e.flagExpiresAt = now + f.resetAfterMs
      return
    }
    e.hot = false
    e.flagCheckedAt = now
    e.heatTriedAt = now
    const lock = yield* one(() => this.cool.limit(key, 1, now))
    if (!lock.allowed) return
    // The shards' budget moves back as heating moved it: taken from each shard, so that a
    // shard decision still in flight (or made by a process whose clock reads the flag as
    // still set) is either in what was taken or refused.
    const ds = yield* all(this.shards.map((ns, j) => () => ns.peek(e.names[j], now)))
    e.levels.recordAll(ds, now)
    let left = 0
    for (let j = 0; j < this.shards.length; j++) {
      const part = this.spec.parts[j]
      left += yield* this.take(this.shards[j], e.names[j], part, levelOf(part, ds[j]), now)
    }
    const base = this.spec.base
    const used = base.limit - left
    yield* one(() => this.plain.reset(key))
    if (used > 1e-9) {
      const charge = base.kind === "tokenBucket" ? used : Math.ceil(used - 1e-9)
      yield* one(() => this.plain.adjust(key, charge, now))
    }
  }

  /**
   * peekIfPlain: the ordinary key's peek when the key is not sharded (looking at the flag
   * when this process's knowledge is old), undefined when it is.
   */
  *peekIfPlain(key: string, e: Tracked, now: number): Steps<Decision | undefined> {
    if (e.hot && now < e.flagExpiresAt) return undefined
    if (!e.hot && now - e.flagCheckedAt < this.options().recheckMs) {
      return yield* one(() => this.plain.peek(key, now))
    }
    const [f, p] = yield* all<Decision>([
      () => this.flag.peek(key, now),
      () => this.plain.peek(key, now),
    ])
    if (flagSet(f)) {
      if (e.hot) e.flagExpiresAt = now + f.resetAfterMs
      else this.becomeHot(e, now, f.resetAfterMs, now)
      return undefined
    }
    if (!e.hot) e.flagCheckedAt = now
    return p
  }

  /** plainUnlessSharded: the ordinary key's peek, or undefined when the flag says sharded. */
  *plainUnlessSharded(key: string, now: number): Steps<Decision | undefined> {
    const [f, p] = yield* all<Decision>([
      () => this.flag.peek(key, now),
      () => this.plain.peek(key, now),
    ])
    return flagSet(f) ? undefined : p
  }

  /** resetCalls: the calls that forget a key's ordinary state and flags. */
  resetCalls(key: string): (() => MaybePromise<void>)[] {
    return [
      () => this.plain.reset(key),
      () => this.flag.reset(key),
      () => this.heatLock.reset(key),
      () => this.cool.reset(key),
    ]
  }

  /** setSpec follows a policy change: the ordinary keys and the flags convert to the new policy. */
  setSpec(spec: ShardSpec, now: number): void {
    const holdMs = this.options(spec).holdMs
    this.plain.setPolicy(spec.base, now)
    if (holdMs !== this.options().holdMs) {
      this.flag.setPolicy(flagPolicy(holdMs), now)
      this.heatLock.setPolicy(flagPolicy(lockMs(holdMs)), now)
      this.cool.setPolicy(flagPolicy(holdMs), now)
    }
    this.spec = spec
  }
}
