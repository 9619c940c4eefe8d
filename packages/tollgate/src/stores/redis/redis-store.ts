import type { Cluster, Redis } from "ioredis"
import type { Decision } from "../../core/decision.js"
import { assertPolicy, type Policy } from "../../core/policy.js"
import { type Duration, parseDuration } from "../../duration.js"
import { ArgumentError, ConfigError, describe } from "../../errors.js"
import type { Check, Namespace, NamespaceOptions, Store } from "../store.js"
import { type CallKind, CallQueue, type Item } from "./call-queue.js"
import { readDecision, readLimit } from "./codec.js"
import { type Engine, RedisNamespace, type Target } from "./redis-namespace.js"
import { script } from "./scripts.js"

export interface RedisStoreOptions {
  /** client: an ioredis `Redis` or `Cluster` client; the store never closes it. */
  client: Redis | Cluster
  /**
   * time: "server" (default) decides on Redis's clock (TIME inside each script), so app
   * servers whose clocks disagree share one limit exactly; "client" decides on the `now`
   * the limiter passes, for tests that drive a manual clock. Keys' TTLs run on Redis's
   * clock either way; with "client" they are 60 s longer than the state needs.
   */
  time?: "server" | "client"
  /** maxBatch: most operations decided by one script call; default 128 (1: one call each). */
  maxBatch?: number
  /**
   * replayWindow: how long Redis remembers which calls ran, so that a copy re-sent by the
   * client after a lost connection does not run twice; default "10m". A copy arriving
   * later than this would run again.
   */
  replayWindow?: Duration
  /** guardPrefix: the prefix of the store's own keys (`<guardPrefix>:call:...`); default "tollgate". */
  guardPrefix?: string
  /**
   * functions: run the store's operations as a Redis function library (FUNCTION LOAD
   * once per server, then FCALL) where the server has functions (Redis 7 and later);
   * default true. The same operations run as scripts (EVALSHA) on older servers, or
   * always with false. A library costs each call less Redis time than a script, which
   * defines its helpers again on every call.
   */
  functions?: boolean
}

/** PACKED_CHECKS: most checks of one limitAll group in a shared call (its reply has a 16-bit length). */
const PACKED_CHECKS = 256

/** PolicyRef: a policy as limit-all reads it (policyArgs), and the id checks name it by. */
interface PolicyRef {
  readonly id: number
  readonly args: readonly (string | number)[]
}

/** GroupItem: one limitAll group's share of a call, with the policies its checks use. */
interface GroupItem extends Item {
  readonly policies: readonly PolicyRef[]
}

/** policyTable: the header of a limit-all call: the mode, then each policy its groups use, once. */
function policyTable(mode: string, items: readonly GroupItem[]): (string | number)[] {
  const header: (string | number)[] = [mode, 0]
  const seen = new Set<number>()
  for (const item of items) {
    for (const ref of item.policies) {
      if (seen.has(ref.id)) continue
      seen.add(ref.id)
      header.push(ref.id)
      for (const a of ref.args) header.push(a)
    }
  }
  header[1] = seen.size
  return header
}

interface Part {
  index: number
  ns: RedisNamespace
  target: Target
  key: string
  cost: number
  leaseId: string
}

/**
 * RedisStore keeps limiter state in Redis or Redis Cluster, so every process that uses
 * the same Redis and prefix shares one limit.
 *
 * - Atomic, on Redis's clock: each operation is a Lua script (src/stores/redis/lua/) that
 *   reads, decides and writes in one step, at the time of Redis's TIME, so app servers
 *   whose clocks disagree still share one limit exactly. Times handed back (a
 *   reservation's executeAt, a lease's expiresAt) are in the caller's clock.
 * - Batched: operations that arrive in the same tick for the same Cluster slot travel in
 *   one script call (FCALL, or EVALSHA) that decides them in arrival order (at most
 *   `maxBatch` per call), so many decisions share one round trip and one command's
 *   overhead, with the exact semantics of one call each; a key that many of them share is read and written once per call.
 *   Calls for the slots of one Cluster node go out in one pipeline (see CallQueue).
 * - Keys: `<prefix>:<tag>:{<key>}`, tag one of tb, swl, swc, fw, cc, with prefix and key
 *   escaped so that ":", "{", "}" in them are harmless: the Cluster slot depends on the
 *   user key alone and no two (prefix, algorithm, key) triples share a Redis key. Request
 *   ids live at `<state key>:r:<id>`, the replay guard at `<guardPrefix>:call:{...}:...`.
 * - TTLs: every key expires once its state stops mattering (a window when it ends, a lease
 *   when it expires, a bucket at most twice as long after its last write as it takes to
 *   be full again, so that later writes keep the TTL); a denied request writes nothing.
 * - Never twice: ioredis re-sends commands whose reply was lost with a connection (after a
 *   reconnect by default, and a Cluster client after a failover). Instead of asking you to
 *   turn that off, every writing call carries a replay guard: a bit in a bitmap that Redis
 *   keeps for `replayWindow`. A re-sent copy finds its bit set, changes nothing, and its
 *   callers get a StoreError ("ran once, but its decisions were lost"), so one request
 *   never counts twice.
 * - Cluster: multi-key operations stay within one slot; limitAll across slots consumes
 *   slot by slot and refunds on denial (see limitAll).
 *
 * @example
 * const store = new RedisStore({ client: new Redis(process.env.REDIS_URL) })
 * const limiter = createLimiter({ policy: tokenBucket({ rate: 100 }), store })
 * const d = await limiter.limit(userId)
 */
export class RedisStore implements Store {
  readonly synchronous = false as const
  readonly client: Redis | Cluster
  readonly time: "server" | "client"
  private readonly queue: CallQueue
  private readonly engine: Engine
  private leases = 0
  /**
   * limitAllKinds: limit-all calls carry many groups of checks (apply, probe), or one
   * group too large to share a packed reply (applyAlone, probeAlone); refund undoes a slot.
   */
  private readonly limitAllKinds: Record<
    "apply" | "probe" | "applyAlone" | "probeAlone" | "refund",
    CallKind
  >
  /** policies: each namespace's policy as the scripts read it, made once per policy. */
  private readonly policies = new WeakMap<RedisNamespace, PolicyRef & { policy: Policy }>()
  /** policyIds: the last id given to a policy (ids name policies within limit-all calls). */
  private policyIds = 0

  constructor(options: RedisStoreOptions) {
    if (typeof options !== "object" || options === null) {
      throw new ConfigError("RedisStore", `expected an options object, got ${describe(options)}`)
    }
    const client = options.client as (Redis | Cluster) | undefined
    if (
      typeof client !== "object" ||
      client === null ||
      typeof client.callBuffer !== "function" ||
      typeof client.del !== "function"
    ) {
      throw new ConfigError(
        "client",
        `expected an ioredis Redis or Cluster client, got ${describe(client)}`,
      )
    }
    const time = options.time ?? "server"
    if (time !== "server" && time !== "client") {
      throw new ConfigError("time", `expected "server" or "client", got ${describe(time)}`)
    }
    const maxBatch = options.maxBatch ?? 128
    if (typeof maxBatch !== "number" || !Number.isInteger(maxBatch) || maxBatch < 1) {
      throw new ConfigError("maxBatch", `expected a whole number >= 1, got ${describe(maxBatch)}`)
    }
    const replayWindowMs = Math.ceil(parseDuration(options.replayWindow ?? "10m", "replayWindow"))
    const guardPrefix = options.guardPrefix ?? "tollgate"
    if (typeof guardPrefix !== "string" || guardPrefix.length === 0) {
      throw new ConfigError(
        "guardPrefix",
        `expected a non-empty string, got ${describe(guardPrefix)}`,
      )
    }
    const functions = options.functions ?? true
    if (typeof functions !== "boolean") {
      throw new ConfigError("functions", `expected true or false, got ${describe(functions)}`)
    }
    this.client = client
    this.time = time
    const cluster = (client as { isCluster?: boolean }).isCluster === true
    this.queue = new CallQueue({
      client,
      time,
      maxBatch,
      replayWindowMs,
      guardPrefix,
      functions,
    })
    const id = this.queue.id
    this.engine = {
      queue: this.queue,
      cluster,
      serverTime: time === "server",
      nextLeaseId: () => `${id}${(++this.leases).toString(36)}`,
    }
    const limitAll = (guarded: boolean, mode: string): CallKind => {
      const packed = mode.endsWith("*")
      return {
        script: script("limit-all"),
        guarded,
        whole: !packed,
        tail: packed,
        header: (items) => policyTable(mode, items as readonly GroupItem[]),
      }
    }
    this.limitAllKinds = {
      apply: limitAll(true, "apply*"),
      probe: limitAll(false, "probe*"),
      applyAlone: limitAll(true, "apply"),
      probeAlone: limitAll(false, "probe"),
      refund: { script: script("refund"), guarded: true, whole: true, header: () => [] },
    }
  }

  /** namespace opens the state of one (prefix, policy kind); two namespaces of the same pair share it. */
  namespace(prefix: string, policy: Policy, options?: NamespaceOptions): Namespace {
    assertPolicy(policy)
    if (typeof prefix !== "string") {
      throw new ConfigError("prefix", `expected a string, got ${describe(prefix)}`)
    }
    return new RedisNamespace(this, this.engine, prefix, policy, options?.shared === true)
  }

  /**
   * limitAll admits every check or none. When all checks live in one slot (always on a
   * single server) one script decides them atomically, in order: a check on a key an
   * earlier check of the call named sees what that one took. limitAll calls made in the
   * same tick for the same slot share one script call, each decided on its own, in
   * arrival order, as limit() calls do. On a Cluster with checks in several slots, slot
   * after slot is consumed, and when one denies, what the earlier ones consumed is
   * refunded: meanwhile others may be denied capacity that is given back later (brief
   * under-admission), but more than the policies allow is never admitted.
   */
  limitAll(checks: readonly Check[], now: number): Promise<Decision[]> {
    const parts: Part[] = checks.map((check, index) => {
      const ns = check.namespace
      if (!(ns instanceof RedisNamespace) || ns.store !== this) {
        throw new ArgumentError(
          `checks[${index}].namespace`,
          "expected a namespace of this RedisStore",
        )
      }
      const leaseId = ns.policy.kind === "concurrency" ? this.engine.nextLeaseId() : ""
      return { index, ns, target: ns.target(check.key), key: check.key, cost: check.cost, leaseId }
    })
    if (parts.length === 0) return Promise.resolve([])
    const groups = new Map<number, Part[]>()
    for (const part of parts) {
      const group = groups.get(part.target.slot)
      if (group === undefined) groups.set(part.target.slot, [part])
      else group.push(part)
    }
    if (groups.size === 1) return this.decide(parts, now, "apply").then((r) => r.decisions)
    return this.acrossSlots([...groups.values()], checks.length, now)
  }

  private async acrossSlots(groups: Part[][], count: number, now: number): Promise<Decision[]> {
    const decisions: Decision[] = new Array(count)
    const consumed: { parts: Part[]; at: number }[] = []
    let denied = groups.length
    for (let g = 0; g < groups.length; g++) {
      const r = await this.decide(groups[g], now, "apply")
      groups[g].forEach((part, i) => {
        decisions[part.index] = r.decisions[i]
      })
      if (!r.decisions.every((d) => d.allowed)) {
        denied = g
        break
      }
      consumed.push({ parts: groups[g], at: r.at })
    }
    if (denied === groups.length) return decisions
    const refunds = consumed.map(({ parts, at }) => {
      for (const part of parts) delete decisions[part.index].lease
      // A refund that fails leaves the capacity consumed until its state expires: under-
      // admission, never over-admission; the caller's answer (denied) stands either way.
      return this.refund(parts, at, now).catch(() => {})
    })
    const probes = groups.slice(denied + 1).map(async (group) => {
      const r = await this.decide(group, now, "probe")
      group.forEach((part, i) => {
        decisions[part.index] = r.decisions[i]
      })
    })
    await Promise.all([...refunds, ...probes])
    return decisions
  }

  /**
   * decide runs limit-all for checks that share one slot. Groups from calls made in the
   * same tick travel in one script call (see CallQueue), each decided on its own, in
   * arrival order, with each policy sent once per call; a group of more than
   * PACKED_CHECKS checks goes alone.
   */
  private decide(
    parts: Part[],
    now: number,
    mode: "apply" | "probe",
  ): Promise<{ at: number; decisions: Decision[] }> {
    const n = parts.length
    const keys: string[] = new Array(n)
    const args: (string | number)[] = [n, now]
    const policies: PolicyRef[] = []
    const apply = mode === "apply"
    for (let i = 0; i < n; i++) {
      const part = parts[i]
      keys[i] = part.target.state
      const ref = this.policyOf(part.ns, now)
      if (!policies.includes(ref)) policies.push(ref)
      args.push(ref.id, part.cost, apply ? part.leaseId : "")
    }
    if (n <= PACKED_CHECKS) {
      return this.send(
        parts,
        this.limitAllKinds[mode],
        keys,
        args,
        policies,
        now,
        (reply, start) => {
          const r = reply as Buffer
          const decisions: Decision[] = new Array(n)
          let at = start + 8
          for (let i = 0; i < n; i++) {
            const length = r.readUInt16LE(at)
            decisions[i] = apply
              ? readLimit(r, at + 2, length, parts[i].key)
              : readDecision(r, at + 2)
            at += 2 + length
          }
          return { at: r.readDoubleLE(start), decisions }
        },
      )
    }
    const kind = this.limitAllKinds[apply ? "applyAlone" : "probeAlone"]
    return this.send(parts, kind, keys, args, policies, now, (reply) => {
      const list = reply as Buffer[]
      return {
        at: list[0].readDoubleLE(0),
        decisions: parts.map((part, i) => {
          const r = list[i + 1]
          return apply ? readLimit(r, 0, r.length, part.key) : readDecision(r)
        }),
      }
    })
  }

  /**
   * policyOf: a namespace's policy as limit-all reads it, under an id of its own. A
   * policy change gives a new id, so groups queued before it keep the policy they were
   * made under; calendar windows, whose bounds follow `now`, get one each time.
   */
  private policyOf(ns: RedisNamespace, now: number): PolicyRef {
    const policy = ns.policy
    if (policy.kind === "fixedWindow" && policy.calendar !== undefined) {
      return { id: ++this.policyIds, args: ns.args(now, now) }
    }
    const known = this.policies.get(ns)
    if (known !== undefined && known.policy === policy) return known
    const ref = { policy, id: ++this.policyIds, args: ns.args(now, now) }
    this.policies.set(ns, ref)
    return ref
  }

  private refund(parts: Part[], at: number, now: number): Promise<void> {
    const keys: string[] = []
    const args: (string | number)[] = []
    for (const part of parts) {
      keys.push(part.target.state)
      for (const a of this.policyOf(part.ns, now).args) args.push(a)
      args.push(part.cost, at, part.leaseId, now)
    }
    return this.send(parts, this.limitAllKinds.refund, keys, args, [], now, () => undefined)
  }

  /**
   * send queues a multi-namespace item, after what the namespaces queued before it. Items
   * of a packed kind join the newest call of their kind on the slot's lane, if it is the
   * lane's newest call (so they never pass the namespaces' own later calls).
   */
  private send<T>(
    parts: Part[],
    kind: CallKind,
    keys: string[],
    args: (string | number)[],
    policies: PolicyRef[],
    now: number,
    read: (reply: unknown, at: number) => T,
  ): Promise<T> {
    for (const part of parts) this.queue.close(part.ns)
    return new Promise<T>((resolve, reject) => {
      const item: GroupItem = {
        keys,
        args,
        policies,
        now,
        key: "",
        read,
        resolve: resolve as (answer: unknown) => void,
        reject,
      }
      this.queue.push(parts[0].target.slot, kind.tail === true ? kind : {}, kind, item)
    })
  }
}
