// The sliding window log's Redis layout (see lua/lib/sliding-window-log.lua): one string
// per key, its entries then a header at the end, read from the end and written back from
// the end of the entries. It must decide exactly as the TypeScript core for small and
// large limits and across limit changes, touch only the string's end, and cut the
// entries that left the window before they outweigh the live ones.

import fc from "fast-check"
import { describe, expect, it } from "vitest"
import {
  type Decision,
  MemoryStore,
  type Policy,
  RedisStore,
  slidingWindowLog,
} from "../../src/index.js"
import type { Namespace } from "../../src/stores/store.js"
import { useClientTimeStore } from "../support/redis-hooks.js"

// maxBatch 3: bursts of more than three operations span several calls.
const fixture = useClientTimeStore()
let run = 0
// TOLLGATE_DIFF_RUNS: scenarios per property (raise it for a deeper search).
const RUNS = Number(process.env.TOLLGATE_DIFF_RUNS ?? 60)

// SMALL fits the header's copy of the oldest entries, LARGE does not; the same window, so
// the MemoryStore's sweep judges emptiness alike under all.
const SMALL = slidingWindowLog({ limit: 6, window: 1000 })
const LARGE = slidingWindowLog({ limit: 120, window: 1000 })
const POLICIES = [SMALL, LARGE, slidingWindowLog({ limit: 51, window: 1000 })]
const KEYS = ["a", "b", "c:d"]
const COSTS = [0, 1, 1, 0.5, 0.1, 3, 17, 40.5]

type Op =
  | { t: "advance"; ms: number }
  | { t: "limit"; key: string; cost: number }
  | { t: "burst"; ops: { key: string; cost: number; at: number }[] }
  | { t: "peek"; key: string }
  | { t: "adjust"; key: string; delta: number }
  | { t: "setPolicy"; which: number }

const key = fc.constantFrom(...KEYS)
const cost = fc.constantFrom(...COSTS)
const op: fc.Arbitrary<Op> = fc.oneof(
  fc
    .constantFrom(0, 0.001, 1, 7, 120, 333, 999, 1000, 1500)
    .map((ms) => ({ t: "advance", ms }) as Op),
  fc.record({ key, cost }).map((o) => ({ t: "limit", ...o }) as Op),
  fc.record({ key, cost }).map((o) => ({ t: "limit", ...o }) as Op),
  fc
    .array(fc.record({ key, cost, at: fc.constantFrom(0, 0, 1, 2.5) }), {
      minLength: 2,
      maxLength: 7,
    })
    // Times within a call rise, as a limiter's clock does: a MemoryStore call at a later
    // time may drop another key's expired state, which an earlier time still counts.
    .map((ops) => ({ t: "burst", ops: ops.sort((x, y) => x.at - y.at) }) as Op),
  key.map((k) => ({ t: "peek", key: k }) as Op),
  fc
    .record({ key, delta: fc.constantFrom(-30, -1, -0.5, 0.5, 2, 25) })
    .map((o) => ({ t: "adjust", ...o }) as Op),
  fc.nat(POLICIES.length - 1).map((which) => ({ t: "setPolicy", which }) as Op),
)

function plain(d: Decision): Record<string, unknown> {
  return {
    allowed: d.allowed,
    limit: d.limit + 0,
    remaining: d.remaining + 0,
    retryAfterMs: d.retryAfterMs + 0,
    resetAfterMs: d.resetAfterMs + 0,
  }
}

function memoryNamespace(prefix: string, policy: Policy): Namespace {
  const memory = new MemoryStore()
  return memory.namespace(prefix, policy)
}

async function scenario(initial: number, start: number, ops: Op[]): Promise<void> {
  let policy = POLICIES[initial]
  const prefix = `layout${run++}`
  const memory = memoryNamespace(prefix, policy)
  const redis = fixture.store.namespace(prefix, policy)
  let now = start
  const same = (m: Decision, r: Decision, step: string) => expect(plain(r), step).toEqual(plain(m))
  for (const [i, o] of ops.entries()) {
    const step = `step ${i} at ${now}: ${JSON.stringify(o)}`
    switch (o.t) {
      case "advance":
        now += o.ms
        break
      case "limit": {
        const c = Math.min(o.cost, policy.limit)
        same(memory.limit(o.key, c, now) as Decision, await redis.limit(o.key, c, now), step)
        break
      }
      case "burst": {
        // Items of one call at several times: the state carries them all in Lua.
        const items = o.ops.map((b) => ({ ...b, cost: Math.min(b.cost, policy.limit) }))
        const ms = items.map((b) => memory.limit(b.key, b.cost, now + b.at) as Decision)
        const rs = await Promise.all(items.map((b) => redis.limit(b.key, b.cost, now + b.at)))
        for (const [j, m] of ms.entries()) same(m, rs[j], `${step} [${j}]`)
        now += 2.5
        break
      }
      case "peek":
        same(memory.peek(o.key, now) as Decision, await redis.peek(o.key, now), step)
        break
      case "adjust":
        same(
          memory.adjust(o.key, o.delta, now) as Decision,
          await redis.adjust(o.key, o.delta, now),
          step,
        )
        break
      case "setPolicy":
        policy = POLICIES[o.which]
        memory.setPolicy(policy, now)
        redis.setPolicy(policy, now)
        break
    }
  }
  for (const k of KEYS) {
    same(memory.peek(k, now) as Decision, await redis.peek(k, now), `final peek of ${k}`)
  }
}

/** HEADER: the bytes a log's string holds besides its entries (see sliding-window-log.lua). */
const HEADER = 136

/** commandCounts: the commands Redis ran since RESETSTAT, scripts' own calls included. */
async function commandCounts(): Promise<Record<string, number>> {
  const info = await fixture.client.info("commandstats")
  const out: Record<string, number> = {}
  for (const m of info.matchAll(/^cmdstat_(\w+):calls=(\d+)/gm)) {
    if (
      !["fcall", "evalsha", "eval", "setbit", "pttl", "pexpire", "info", "config"].includes(m[1])
    ) {
      out[m[1]] = Number(m[2])
    }
  }
  return out
}

describe("sliding window log layouts in Redis", () => {
  it("each layout, and a switch between them, decides as the core", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.nat(POLICIES.length - 1),
        fc.integer({ min: 0, max: 86_400_000 }).map((ms) => 1_780_000_000_000 + ms + 0.25),
        fc.array(op, { minLength: 1, maxLength: 40 }),
        (initial, start, ops) => scenario(initial, start, ops),
      ),
      { numRuns: RUNS },
    )
  }, 60_000)

  it("decides a lone limit on the short path as on the general one, leaving the same string", async () => {
    // limit() takes the short path where it can; with a request id it always takes the
    // general one (load, limit, save). Both must agree on every decision and byte.
    const single = fc.oneof(
      fc
        .constantFrom(0, 0.001, 1, 7, 50, 120, 250, 333, 999, 1000)
        .map((ms) => ({ t: "advance", ms }) as Op),
      fc.record({ key, cost }).map((o) => ({ t: "limit", ...o }) as Op),
      fc.record({ key, cost }).map((o) => ({ t: "limit", ...o }) as Op),
      fc.record({ key, cost }).map((o) => ({ t: "limit", ...o }) as Op),
      fc.record({ key, cost }).map((o) => ({ t: "limit", ...o }) as Op),
      fc
        .record({ key, delta: fc.constantFrom(-30, -1, -0.5, 0.5, 2, 25) })
        .map((o) => ({ t: "adjust", ...o }) as Op),
    )
    await fc.assert(
      fc.asyncProperty(
        fc.nat(POLICIES.length - 1),
        fc.integer({ min: 0, max: 86_400_000 }).map((ms) => 1_780_000_000_000 + ms + 0.25),
        fc.array(single, { minLength: 30, maxLength: 120 }),
        async (which, start, ops) => {
          const policy = POLICIES[which]
          const id = run++
          const short = fixture.store.namespace(`short${id}`, policy)
          const general = fixture.store.namespace(`general${id}`, policy)
          let now = start
          for (const [i, o] of ops.entries()) {
            const step = `step ${i} at ${now}: ${JSON.stringify(o)}`
            if (o.t === "advance") {
              now += o.ms
              continue
            }
            if (o.t === "limit") {
              const c = Math.min(o.cost, policy.limit)
              const a = await short.limit(o.key, c, now)
              const b = await general.limit(o.key, c, now, `r${i}`)
              expect(plain(a), step).toEqual(plain(b))
            } else if (o.t === "adjust") {
              const a = await short.adjust(o.key, o.delta, now)
              const b = await general.adjust(o.key, o.delta, now)
              expect(plain(a), step).toEqual(plain(b))
            }
            const k = (o as { key: string }).key
            const [x, y] = await Promise.all([
              fixture.client.getBuffer(`short${id}:swl:{${k}}`),
              fixture.client.getBuffer(`general${id}:swl:{${k}}`),
            ])
            expect(x?.toString("hex"), step).toEqual(y?.toString("hex"))
          }
        },
      ),
      {
        numRuns: RUNS,
        // A log of three entries whose oldest leave the window: a cost-0 limit and a
        // denial that only move the start (the short path's write of the header alone).
        examples: [
          [
            0,
            1_780_000_000_000.25,
            [
              { t: "limit", key: "a", cost: 1 },
              { t: "advance", ms: 120 },
              { t: "limit", key: "a", cost: 1 },
              { t: "advance", ms: 120 },
              { t: "limit", key: "a", cost: 1 },
              { t: "advance", ms: 999 },
              { t: "limit", key: "a", cost: 0 },
              { t: "advance", ms: 120 },
              { t: "limit", key: "a", cost: 17 },
            ],
          ],
          // Twenty entries a millisecond apart, eleven of which leave at once: more than
          // the header copies, so the short path reads the entries after them (as the
          // general one does), trims, copies them into the header, and walks them for a
          // denial's wait.
          [
            2,
            1_780_000_000_000.25,
            [
              ...Array.from({ length: 20 }, (): Op[] => [
                { t: "limit", key: "a", cost: 1 },
                { t: "advance", ms: 1 },
              ]).flat(),
              { t: "advance", ms: 990.5 },
              { t: "limit", key: "a", cost: 1 },
              { t: "limit", key: "a", cost: 40.5 },
              { t: "limit", key: "a", cost: 8 },
              { t: "limit", key: "a", cost: 9 },
              { t: "limit", key: "a", cost: 17 },
              { t: "advance", ms: 7 },
              { t: "limit", key: "a", cost: 0 },
            ],
          ],
        ],
      },
    )
  }, 60_000)

  it("reads the end of the string and writes it back with one command; denials read only", async () => {
    const now = 1_780_000_000_000
    const log = fixture.store.namespace(
      "lay-cmds",
      slidingWindowLog({ limit: 100, window: 60_000 }),
    )
    // 100 entries at distinct times: the log is full.
    for (let i = 0; i < 100; i++) expect((await log.limit("k", 1, now + i)).allowed).toBe(true)
    const length = await fixture.client.strlen("lay-cmds:swl:{k}")
    await fixture.client.config("RESETSTAT")
    expect((await log.limit("k", 1, now + 200)).allowed).toBe(false)
    expect(await commandCounts()).toEqual({ getrange: 1 })
    await fixture.client.config("RESETSTAT")
    // The oldest entry leaves the window: one more admitted, the same two commands.
    expect((await log.limit("k", 1, now + 60_000.5)).allowed).toBe(true)
    expect(await commandCounts()).toEqual({ getrange: 1, setrange: 1 })
    expect(await fixture.client.strlen("lay-cmds:swl:{k}")).toBe(length + 16)
    const ttl = await fixture.client.pttl("lay-cmds:swl:{k}")
    expect(ttl).toBeGreaterThan(60_000)
  })

  it("writes the string anew once the entries that left outweigh the live ones", async () => {
    const log = fixture.store.namespace("lay-dead", slidingWindowLog({ limit: 10, window: 1_000 }))
    let now = 1_780_000_000_000
    let longest = 0
    // 10 admissions a second for a minute: 600 entries, of which 10 are ever live.
    for (let i = 0; i < 600; i++) {
      expect((await log.limit("k", 1, now)).allowed).toBe(true)
      longest = Math.max(longest, await fixture.client.strlen("lay-dead:swl:{k}"))
      now += 100
    }
    // The dead part may reach 1 KiB and the live part's size before the string is cut.
    expect(longest).toBeLessThanOrEqual(1024 + 2 * 10 * 16 + 16 + HEADER)
  })

  it("decides a log of thousands of entries as the core, across limit changes", async () => {
    // 9,000 entries at distinct times.
    const big = slidingWindowLog({ limit: 20_000, window: 3_600_000 })
    const memory = memoryNamespace("lay-move", big)
    const redis = fixture.store.namespace("lay-move", big)
    const batched = new RedisStore({ client: fixture.client, time: "client" }).namespace(
      "lay-move",
      big,
    )
    const start = 1_780_000_000_000
    const N = 9_000
    for (let first = 0; first < N; first += 1_000) {
      const times = Array.from({ length: 1_000 }, (_, i) => start + first + i)
      for (const t of times) memory.limit("k", 1, t)
      const ds = await Promise.all(times.map((t) => batched.limit("k", 1, t)))
      expect(ds.every((d) => d.allowed)).toBe(true)
    }
    expect(await fixture.client.strlen("lay-move:swl:{k}")).toBe(N * 16 + HEADER)
    let now = start + N + 10
    const small = slidingWindowLog({ limit: 9_000, window: 3_600_000 })
    const smallish = slidingWindowLog({ limit: 40, window: 3_600_000 })
    for (const p of [smallish, big, small, smallish]) {
      memory.setPolicy(p, now)
      redis.setPolicy(p, now)
      expect(plain(await redis.limit("k", 1, now))).toEqual(
        plain(memory.limit("k", 1, now) as Decision),
      )
      expect(await fixture.client.pttl("lay-move:swl:{k}")).toBeGreaterThan(3_600_000)
      now += 1
    }
    // The entries leave the window one by one, as the core's do (read past the copied
    // ones, in chunks), and a refund takes cost back from the newest.
    now = start + 3_600_000 + 4_500
    for (const p of [big, smallish]) {
      memory.setPolicy(p, now)
      redis.setPolicy(p, now)
      expect(plain(await redis.peek("k", now))).toEqual(plain(memory.peek("k", now) as Decision))
      expect(plain(await redis.adjust("k", -2.5, now))).toEqual(
        plain(memory.adjust("k", -2.5, now) as Decision),
      )
      now += 1_000
    }
  }, 60_000)
})
