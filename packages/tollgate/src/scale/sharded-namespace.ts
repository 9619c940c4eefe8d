import { type Decision, decision, whole } from "../core/decision.js"
import type { Policy } from "../core/policy.js"
import type { Grant } from "../core/token-bucket.js"
import { ConfigError, UnsupportedError } from "../errors.js"
import { forgetDue } from "../stores/reservations.js"
import type { MaybePromise, Namespace, Store } from "../stores/store.js"
import { isSharded, type ShardedPolicy, type ShardSpec, sameLayout } from "./sharded.js"
import { Adaptive, flagPolicy } from "./sharded-adaptive.js"
import { shardKeys } from "./sharded-keys.js"
import {
  giveBack,
  LEVEL_EPSILON,
  Levels,
  levelOf,
  moves,
  pieces,
  spread,
  sum,
} from "./sharded-levels.js"
import { all, one, runAsync, runSync, type Settled, type Steps, settled } from "./sharded-steps.js"

/** ShardLevel: one shard of a key, as shardBalance() reports it. */
export interface ShardLevel {
  /** key: the sub-key (the user key, "@" and three characters). */
  key: string
  /** limit: this shard's capacity. */
  limit: number
  /** level: cost units it could admit now; fractional for a token bucket, negative in debt. */
  level: number
  /** remaining: whole units it could admit now. */
  remaining: number
}

/** ShardBalance: how a key's budget is spread over its shards right now. */
export interface ShardBalance {
  key: string
  /** sharded: false while an adaptive limiter keeps the key as one ordinary key (then `shards` is empty). */
  sharded: boolean
  /** limit: the whole budget (the policy's limit). */
  limit: number
  /** level: cost units left, over all shards. */
  level: number
  /** remaining: whole units left, over all shards. */
  remaining: number
  /** spread: the fullest shard's level less the emptiest's; 0 when not sharded. */
  spread: number
  shards: ShardLevel[]
}

/** Tracked: what this process remembers of one key. */
export interface Tracked {
  readonly key: string
  /** names: the sub-keys, in shard order. */
  readonly names: string[]
  levels: Levels
  /** placed: the count of keys tracked when this one was last placed (recency). */
  placed: number
  /** deniedUntil, deniedCost, retryAt: refuse this cost or more locally until then, saying retry at retryAt. */
  deniedUntil: number
  deniedCost: number
  retryAt: number
  /** readAt: when every shard was last read at once. */
  readAt: number
  /** rebalanceAt: the earliest time of this key's next rebalance. */
  rebalanceAt: number
  /** hot: the key is sharded (always, unless adaptive). The rest is Adaptive's. */
  hot: boolean
  /** second, count, previous: requests in the current and the previous whole second. */
  second: number
  count: number
  previous: number
  /** flagCheckedAt: when the flag was last read while the key was ordinary. */
  flagCheckedAt: number
  /** heatTriedAt: when this process last tried to shard the key. */
  heatTriedAt: number
  /** flagExpiresAt: when the flag runs out, as last seen (sharded keys). */
  flagExpiresAt: number
  /** refreshAt: the earliest time of the next flag refresh. */
  refreshAt: number
  /** drainAt: when the ordinary key must be drained again (sharded keys). */
  drainAt: number
}

/** LOCK_HOLD_MS: the longest a rebalance lock is held when its process never gives it back. */
const LOCK_HOLD_MS = 10_000

/** PLAIN: a reservation made on an adaptive limiter's ordinary key, not on a shard. */
const PLAIN = -1

/**
 * shardPrefix: the namespace of shard i of n, `<prefix>#shard<i>/<n>`. The count is part
 * of it, so that a change of shard count starts afresh instead of reading one layout's
 * state with another's shares.
 */
export function shardPrefix(prefix: string, i: number, n: number): string {
  return `${prefix}#shard${i}/${n}`
}

function isPromise<T>(value: MaybePromise<T>): value is Promise<T> {
  return typeof (value as Promise<T> | undefined)?.then === "function"
}

/** hash: FNV-1a of a string, for placing a request id on a shard. */
function hash(text: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  return h >>> 0
}

/**
 * ShardedNamespace routes each key of a sharded policy to its sub-keys, one namespace per
 * shard (`<prefix>#shard<i>/<n>`) of the same store. It is a Namespace like any other: the
 * limiter wraps it in its store guard and counts its decisions. Every operation is a
 * generator of store calls (sharded-steps.ts), run synchronously over a synchronous store
 * and as promises otherwise.
 *
 * limit: two shards picked at random, the fuller first by the levels this process last
 * saw (each only if expected to hold the cost; else the fullest known); one round trip
 * when the first admits. Otherwise the cost is taken in pieces, fullest first, whole
 * units from each until one shard completes it (refunded if a piece is refused
 * meanwhile), planned from the levels as last seen and, when that fails, from every
 * shard read at once (at most once per `denyFor`). A request is refused when no such
 * plan covers it, with the time until one will. Decisions speak for the whole key:
 * `limit` is the whole budget, `remaining` the sum of the shards' levels as last seen.
 */
export class ShardedNamespace implements Namespace {
  readonly synchronous: boolean
  private policyNow: ShardedPolicy
  private spec: ShardSpec
  /** shards: one namespace per shard, each with its share of the policy. */
  readonly shards: Namespace[]
  private readonly adaptive: Adaptive | undefined
  /** lock: one rebalance of a key at a time, fleet-wide. */
  private readonly lock: Namespace
  private readonly tracked = new Map<string, Tracked>()
  private placements = 0
  /** reservations: "key\nexecuteAt" -> the shards of delayed reservations, for cancel(). */
  private readonly reservations = new Map<string, number[]>()

  constructor(store: Store, prefix: string, policy: ShardedPolicy) {
    this.synchronous = store.synchronous === true
    this.policyNow = policy
    this.spec = policy.sharding
    this.shards = this.spec.parts.map((part, i) =>
      store.namespace(shardPrefix(prefix, i, this.spec.shards), part),
    )
    this.lock = store.namespace(`${prefix}#rebalance`, flagPolicy(LOCK_HOLD_MS))
    this.adaptive =
      this.spec.adaptive === false
        ? undefined
        : new Adaptive(store, prefix, this.spec, this.shards, (steps) => this.background(steps))
  }

  get policy(): ShardedPolicy {
    return this.policyNow
  }

  private run<R>(steps: Steps<R>): MaybePromise<R> {
    return this.synchronous ? runSync(steps) : runAsync(steps)
  }

  /**
   * background runs upkeep (a rebalance, a flag refresh) without holding up the request
   * that noticed the need. A failed call is not retried at once: the next request that
   * notices the need tries again. A charge whose refund failed leaves budget unused until
   * the shard refills, never more budget than the policy's.
   */
  private background(steps: Steps<void>): void {
    if (this.synchronous) {
      try {
        runSync(steps)
      } catch {
        // see above
      }
      return
    }
    runAsync(steps).catch(() => {})
  }

  /** track: this process's record of a key, created on first use; the oldest is forgotten beyond maxTracked. */
  track(key: string): Tracked {
    const max = this.spec.maxTracked
    let e = this.tracked.get(key)
    if (e !== undefined) {
      // Move a key used again after a quarter of the table turned over to the young end.
      if (this.placements - e.placed > max >>> 2) {
        this.tracked.delete(key)
        this.tracked.set(key, e)
        e.placed = this.placements
      }
      return e
    }
    e = {
      key,
      names: shardKeys(key, this.spec.shards),
      levels: new Levels(this.spec.parts),
      placed: ++this.placements,
      deniedUntil: 0,
      deniedCost: 0,
      retryAt: 0,
      readAt: Number.NEGATIVE_INFINITY,
      rebalanceAt: Number.NEGATIVE_INFINITY,
      hot: this.adaptive === undefined,
      second: Number.NEGATIVE_INFINITY,
      count: 0,
      previous: 0,
      flagCheckedAt: Number.NEGATIVE_INFINITY,
      heatTriedAt: Number.NEGATIVE_INFINITY,
      flagExpiresAt: Number.POSITIVE_INFINITY,
      refreshAt: 0,
      drainAt: 0,
    }
    this.tracked.set(key, e)
    if (this.tracked.size > max) this.tracked.delete(this.tracked.keys().next().value as string)
    return e
  }

  limit(key: string, cost: number, now: number, requestId?: string): MaybePromise<Decision> {
    const e = this.track(key)
    if (this.adaptive === undefined && !this.refusedHere(e, cost, now, requestId)) {
      // The common case, one call to one shard, without the machinery of steps.
      const tries = this.tries(e, cost, now, requestId)
      if (tries.length > 0) {
        const j = tries[0]
        const next = (d: Decision): MaybePromise<Decision> => {
          e.levels.record(j, d, now)
          if (d.allowed) return this.admitted(e, now)
          return this.run(this.take(e, cost, now, requestId, false, tries.slice(1)))
        }
        const d = this.shards[j].limit(e.names[j], cost, now, requestId)
        return isPromise(d) ? d.then(next) : next(d)
      }
    }
    return this.run(this.limitSteps(key, e, cost, now, requestId))
  }

  private *limitSteps(
    key: string,
    e: Tracked,
    cost: number,
    now: number,
    requestId: string | undefined,
  ): Steps<Decision> {
    const a = this.adaptive
    if (a !== undefined && !(yield* a.route(key, e, now))) {
      const d = yield* one(() => a.plain.limit(key, cost, now, requestId))
      if (d.allowed || !(yield* a.shardedMeanwhile(key, e, now))) return d
    }
    return yield* this.take(e, cost, now, requestId, true)
  }

  /** refusedHere: a request this process refuses without asking, its key found short lately. */
  private refusedHere(
    e: Tracked,
    cost: number,
    now: number,
    requestId: string | undefined,
  ): boolean {
    return requestId === undefined && cost >= e.deniedCost && now < e.deniedUntil
  }

  /**
   * take: the sharded limit (see the class comment). `cached` lets a local refusal answer;
   * `tries`: the shards still to try one by one (default: tries()).
   */
  private *take(
    e: Tracked,
    cost: number,
    now: number,
    requestId: string | undefined,
    cached: boolean,
    tries = this.tries(e, cost, now, requestId),
  ): Steps<Decision> {
    if (cached && this.refusedHere(e, cost, now, requestId)) {
      return this.whole(e, false, now, Math.max(0, e.retryAt - now))
    }
    for (const j of tries) {
      const d = yield* one(() => this.shards[j].limit(e.names[j], cost, now, requestId))
      e.levels.record(j, d, now)
      if (d.allowed) return this.admitted(e, now)
    }
    // Pieces, planned from the levels as last seen; when they cannot cover the cost, or
    // a piece was refused, every shard is read (at most once per denyFor) and planned anew.
    let plan = pieces(e.levels.all(now), cost)
    for (let attempt = 0; attempt < 2; attempt++) {
      if (plan === undefined || attempt > 0) {
        if (now - e.readAt < this.spec.denyForMs) break
        const peeks = yield* all(this.shards.map((ns, j) => () => ns.peek(e.names[j], now)))
        e.levels.recordAll(peeks, now)
        e.readAt = now
        plan = pieces(e.levels.all(now), cost)
        if (plan === undefined) break
      }
      if (plan !== undefined && (yield* this.takePieces(e, plan, now))) return this.admitted(e, now)
    }
    const wait = e.levels.retryAfterMs(cost, now)
    if (this.spec.denyForMs > 0) {
      e.deniedUntil = now + Math.min(wait, this.spec.denyForMs)
      e.deniedCost = cost
      e.retryAt = now + wait
    }
    return this.whole(e, false, now, wait)
  }

  /**
   * takePieces takes every piece of a plan at once (limit() on each shard). When one is
   * refused (another request took from that shard meanwhile) the pieces taken are given
   * back and the answer is false; a failed call is thrown after the refunds.
   */
  private *takePieces(e: Tracked, plan: [number, number][], now: number): Steps<boolean> {
    const results: Settled<Decision>[] = yield* all(
      plan.map(([j, piece]) => settled(() => this.shards[j].limit(e.names[j], piece, now))),
    )
    const taken: [number, number][] = []
    let failure: { error: unknown } | undefined
    results.forEach((r, i) => {
      const [j, piece] = plan[i]
      if (!r.ok) failure ??= { error: r.error }
      else {
        e.levels.record(j, r.value, now)
        if (r.value.allowed) taken.push([j, piece])
      }
    })
    if (failure === undefined && taken.length === plan.length) return true
    const back: Settled<Decision>[] = yield* all(
      taken.map(([j, piece]) => settled(() => this.shards[j].adjust(e.names[j], -piece, now))),
    )
    back.forEach((r, i) => {
      if (r.ok) e.levels.record(taken[i][0], r.value, now)
    })
    if (failure !== undefined) throw failure.error
    return false
  }

  /**
   * tries: the shards to ask first, one at a time, before reading them all. Two picked at
   * random (placed by the request id, if any), the fuller first as this process last saw
   * them, each only if expected to hold the cost; when neither is, the fullest known
   * instead, or none (then all are read at once).
   */
  private tries(e: Tracked, cost: number, now: number, requestId: string | undefined): number[] {
    const [a, b] = this.pair(requestId)
    const parts = this.spec.parts
    if (requestId !== undefined) return [a, b].filter((j) => parts[j].limit >= cost)
    const holds = (j: number) => e.levels.at(j, now) + LEVEL_EPSILON >= cost
    const order = e.levels.at(a, now) >= e.levels.at(b, now) ? [a, b] : [b, a]
    if (holds(order[0])) return order.filter(holds)
    const fullest = e.levels.fullest(now)
    return holds(fullest) ? [fullest] : []
  }

  /** pair: two different shards, at random, or placed by the request id (which goes first). */
  private pair(requestId: string | undefined): [number, number] {
    const n = this.spec.shards
    if (requestId !== undefined) {
      const h = hash(requestId)
      const a = h % n
      return [a, (a + 1 + ((h >>> 16) % (n - 1))) % n]
    }
    const pick = (k: number) => {
      const r = Math.floor(this.spec.random() * k)
      return r >= 0 && r < k ? r : 0
    }
    const a = pick(n)
    const b = pick(n - 1)
    return [a, b >= a ? b + 1 : b]
  }

  /**
   * whole: a decision for the whole key, from the shards' levels as last seen; a rebalance
   * starts when they drift apart.
   */
  private whole(e: Tracked, allowed: boolean, now: number, retryAfterMs: number): Decision {
    const m = e.levels.measure(now)
    const r = this.spec.rebalance
    if (r !== false && now >= e.rebalanceAt && m.spread > r.threshold) {
      e.rebalanceAt = now + r.intervalMs
      this.background(this.rebalance(e, now))
    }
    return decision(allowed, this.policyNow.limit, whole(m.total), retryAfterMs, m.resetAfterMs)
  }

  /** admitted: the decision for an admitted request. */
  private admitted(e: Tracked, now: number): Decision {
    return this.whole(e, true, now, 0)
  }

  /**
   * rebalance moves budget from shards above their share of the total to shards below.
   * One process at a time rebalances a key: it holds a lock (`<prefix>#rebalance`, one
   * token per key) while it reads every shard and moves, and gives it back at the end
   * (it runs out by itself after LOCK_HOLD_MS should the process die meanwhile). Charges
   * are limit() calls, admitted only when the shard still holds them, so a charge never
   * pushes a shard into debt; then what the charges took is refunded: the total never
   * grows.
   */
  private *rebalance(e: Tracked, now: number): Steps<void> {
    if (!(yield* one(() => this.lock.limit(e.key, 1, now))).allowed) return
    try {
      const peeks = yield* all(this.shards.map((ns, j) => () => ns.peek(e.names[j], now)))
      e.levels.recordAll(peeks, now)
      const levels = e.levels.all(now)
      const r = this.spec.rebalance
      if (r === false || spread(levels) <= r.threshold) return
      const plan = moves(this.spec.parts, levels)
      const charges = plan.charges
      const from = charges.map((_, j) => j).filter((j) => charges[j] > 0)
      const charged: Settled<Decision>[] = yield* all(
        from.map((j) => settled(() => this.shards[j].limit(e.names[j], charges[j], now))),
      )
      let taken = 0
      charged.forEach((c, i) => {
        if (!c.ok) return
        e.levels.record(from[i], c.value, now)
        if (c.value.allowed) taken += charges[from[i]]
      })
      const refunds = giveBack(plan.refunds, taken)
      const to = refunds.map((_, j) => j).filter((j) => refunds[j] > 0)
      const given: Settled<Decision>[] = yield* all(
        to.map((j) => settled(() => this.shards[j].adjust(e.names[j], -refunds[j], now))),
      )
      given.forEach((g, i) => {
        if (g.ok) e.levels.record(to[i], g.value, now)
      })
    } finally {
      yield* one(() => this.lock.reset(e.key))
    }
  }

  peek(key: string, now: number): MaybePromise<Decision> {
    return this.run(this.peekSteps(key, now))
  }

  private *peekSteps(key: string, now: number): Steps<Decision> {
    const e = this.track(key)
    const a = this.adaptive
    if (a !== undefined) {
      const plain = yield* a.peekIfPlain(key, e, now)
      if (plain !== undefined) return plain
    }
    const ds = yield* all(this.shards.map((ns, j) => () => ns.peek(e.names[j], now)))
    e.levels.recordAll(ds, now)
    const allowed = ds.some((d) => d.allowed)
    const wait = allowed ? 0 : Math.min(...ds.map((d) => d.retryAfterMs))
    return this.whole(e, allowed, now, wait)
  }

  /** balance: every shard's level now (see ShardBalance). */
  balance(key: string, now: number): MaybePromise<ShardBalance> {
    return this.run(this.balanceSteps(key, now))
  }

  private *balanceSteps(key: string, now: number): Steps<ShardBalance> {
    const e = this.track(key)
    const limit = this.policyNow.limit
    const a = this.adaptive
    if (a !== undefined) {
      const plain = yield* a.plainUnlessSharded(key, now)
      if (plain !== undefined) {
        const level = levelOf(this.spec.base, plain)
        return {
          key,
          sharded: false,
          limit,
          level,
          remaining: plain.remaining,
          spread: 0,
          shards: [],
        }
      }
    }
    const ds = yield* all(this.shards.map((ns, j) => () => ns.peek(e.names[j], now)))
    e.levels.recordAll(ds, now)
    const shards = ds.map((d, j) => ({
      key: e.names[j],
      limit: this.spec.parts[j].limit,
      level: levelOf(this.spec.parts[j], d),
      remaining: d.remaining,
    }))
    const levels = shards.map((s) => s.level)
    const level = sum(levels)
    return {
      key,
      sharded: true,
      limit,
      level,
      remaining: whole(level),
      spread: spread(levels),
      shards,
    }
  }

  reset(key: string): MaybePromise<void> {
    this.tracked.delete(key)
    const names = shardKeys(key, this.spec.shards)
    const calls = this.shards.map((ns, j) => () => ns.reset(names[j]))
    if (this.adaptive !== undefined) calls.push(...this.adaptive.resetCalls(key))
    return this.run(
      (function* () {
        yield* all(calls)
      })(),
    )
  }

  reserve(key: string, cost: number, now: number, maxWaitMs: number): MaybePromise<Grant> {
    if (this.policyNow.kind !== "tokenBucket") {
      throw new UnsupportedError(`reserve needs a tokenBucket policy, not ${this.policyNow.kind}`)
    }
    return this.run(this.reserveSteps(key, cost, now, maxWaitMs))
  }

  /**
   * reserveSteps: admitted now when the shards can (as limit() would, pieces included);
   * otherwise reserved on the one shard that can serve the cost soonest by itself.
   */
  private *reserveSteps(key: string, cost: number, now: number, maxWaitMs: number): Steps<Grant> {
    const e = this.track(key)
    const a = this.adaptive
    if (a !== undefined && !(yield* a.route(key, e, now))) {
      const g = yield* one(() => a.plain.reserve(key, cost, now, maxWaitMs))
      if (g.ok || !(yield* a.shardedMeanwhile(key, e, now))) {
        if (g.ok && g.delayMs > 0) this.remember(key, g.executeAt, PLAIN, now)
        return g
      }
    }
    const d = yield* this.take(e, cost, now, undefined, false)
    if (d.allowed) return { ok: true, executeAt: now, delayMs: 0, decision: d }
    let best = 0
    let soonest = Number.POSITIVE_INFINITY
    this.spec.parts.forEach((part, j) => {
      if (part.kind !== "tokenBucket") return
      const wait = Math.max(0, (cost - e.levels.at(j, now)) * part.intervalMs)
      if (wait < soonest) {
        soonest = wait
        best = j
      }
    })
    const g = yield* one(() => this.shards[best].reserve(e.names[best], cost, now, maxWaitMs))
    e.levels.record(best, g.decision, now)
    if (g.ok && g.delayMs > 0) this.remember(key, g.executeAt, best, now)
    return { ...g, decision: this.whole(e, g.ok, now, g.ok ? 0 : g.delayMs) }
  }

  private remember(key: string, executeAt: number, shard: number, now: number): void {
    const kept = this.reservations
    forgetDue(kept, now)
    const id = `${key}\n${executeAt}`
    const shards = kept.get(id)
    if (shards === undefined) kept.set(id, [shard])
    else shards.push(shard)
  }

  cancel(key: string, cost: number, executeAt: number, now: number): MaybePromise<void> {
    const id = `${key}\n${executeAt}`
    const shards = this.reservations.get(id)
    if (shards === undefined) return
    const shard = shards.pop()!
    if (shards.length === 0) this.reservations.delete(id)
    if (shard === PLAIN) return this.adaptive?.plain.cancel(key, cost, executeAt, now)
    const name = this.tracked.get(key)?.names[shard] ?? shardKeys(key, this.spec.shards)[shard]
    return this.shards[shard].cancel(name, cost, executeAt, now)
  }

  release(_key: string, _leaseId: string, _now: number): MaybePromise<void> {
    throw new UnsupportedError("release needs a concurrency policy, which cannot be sharded")
  }

  /** adjust charges the fullest shard (delta > 0) or refunds the emptiest (delta < 0). */
  adjust(key: string, delta: number, now: number): MaybePromise<Decision> {
    return this.run(this.adjustSteps(key, delta, now))
  }

  private *adjustSteps(key: string, delta: number, now: number): Steps<Decision> {
    const e = this.track(key)
    const a = this.adaptive
    if (a !== undefined && !e.hot) return yield* one(() => a.plain.adjust(key, delta, now))
    const levels = e.levels.all(now)
    let j = 0
    for (let k = 1; k < levels.length; k++) {
      if (delta >= 0 ? levels[k] > levels[j] : levels[k] < levels[j]) j = k
    }
    const d = yield* one(() => this.shards[j].adjust(e.names[j], delta, now))
    e.levels.record(j, d, now)
    return this.whole(e, true, now, 0)
  }

  /**
   * setPolicy converts every shard to its share of a new sharded policy of the same
   * layout (see sameLayout); the levels remembered are dropped.
   */
  setPolicy(policy: Policy, now: number): void {
    if (!isSharded(policy) || policy.kind !== this.policyNow.kind) {
      throw new ConfigError("policy", `expected a sharded ${this.policyNow.kind} policy`)
    }
    if (!sameLayout(policy, this.policyNow)) {
      throw new ConfigError(
        "policy",
        `a sharded namespace keeps its layout (${this.spec.shards} shards); open a new one`,
      )
    }
    const spec = policy.sharding
    spec.parts.forEach((part, j) => {
      this.shards[j].setPolicy(part, now)
    })
    this.adaptive?.setSpec(spec, now)
    this.policyNow = policy
    this.spec = spec
    for (const e of this.tracked.values()) {
      e.levels = new Levels(spec.parts)
      e.deniedUntil = 0
    }
  }

  /** size: sub-keys with state over all shards (and ordinary keys, when adaptive); -1 when a store cannot tell. */
  size(): number {
    let total = 0
    const spaces = this.adaptive === undefined ? this.shards : [...this.shards, this.adaptive.plain]
    for (const ns of spaces) {
      const n = ns.size()
      if (n < 0) return -1
      total += n
    }
    return total
  }
}
