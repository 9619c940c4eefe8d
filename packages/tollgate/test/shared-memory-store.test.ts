import { Worker } from "node:worker_threads"
import { describe, expect, it } from "vitest"
import {
  concurrency,
  createLimiter,
  fixedWindow,
  MemoryStore,
  manualClock,
  type Policy,
  SharedMemoryStore,
  type SyncStore,
  slidingWindowCounter,
  slidingWindowLog,
  tokenBucket,
} from "../src/index.js"
import { KeyBytes } from "../src/stores/shared/key-bytes.js"
import { RECORD_BYTES, S_LOCK } from "../src/stores/shared/layout.js"
import type { SharedNamespace } from "../src/stores/shared/namespace.js"
import type { Task, WorkerInput, WorkerResult } from "./support/shared-memory-worker.js"

const NOW = 1_700_000_000_000
const WORKER_ENTRY = new URL("./support/shared-memory-worker.ts", import.meta.url).href
const WORKER_BOOT = new URL("./support/ts-worker.mjs", import.meta.url)

/**
 * runWorkers runs `task` in `count` worker threads over the store's memory; results by
 * worker. With `ticks`, the workers share a clock that every call moves on by 1 ms.
 */
function runWorkers(
  store: SharedMemoryStore,
  count: number,
  task: Task,
  ticks?: SharedArrayBuffer,
): Promise<WorkerResult[]> {
  const gate = new SharedArrayBuffer(8)
  new Int32Array(gate)[1] = count
  return Promise.all(
    Array.from({ length: count }, (_, worker) => {
      const workerData: WorkerInput = {
        entry: WORKER_ENTRY,
        handle: store.handle,
        worker,
        now: NOW,
        ticks,
        gate,
        task,
      }
      const w = new Worker(WORKER_BOOT, { workerData })
      return new Promise<WorkerResult>((resolve, reject) => {
        w.once("message", resolve)
        w.once("error", reject)
        w.once("exit", (code) => {
          if (code !== 0) reject(new Error(`worker ${worker} exited with code ${code}`))
        })
      })
    }),
  )
}

function sum(results: WorkerResult[], field: "allowed" | "denied" | "hotAllowed"): number {
  return results.reduce((n, r) => n + r[field], 0)
}

const noRefill = (burst: number) => tokenBucket({ rate: 1, period: "10000d", burst })

describe("SharedMemoryStore across worker threads", () => {
  it("8 workers x 100k limits on one key admit exactly the bucket", async () => {
    const store = new SharedMemoryStore({ maxKeys: 10 })
    const results = await runWorkers(store, 8, {
      op: "limit",
      policy: { kind: "tokenBucket", options: { rate: 1, period: "10000d", burst: 345_678 } },
      keys: 1,
      ops: 100_000,
    })
    expect(sum(results, "allowed")).toBe(345_678)
    expect(sum(results, "denied")).toBe(800_000 - 345_678)
    const limiter = createLimiter({ policy: noRefill(345_678), store, clock: manualClock(NOW) })
    expect(limiter.peek("key-0").remaining).toBe(0)
  })

  it("8 workers x 100k limits on one key admit exactly a fixed window's limit", async () => {
    const store = new SharedMemoryStore({ maxKeys: 10 })
    const results = await runWorkers(store, 8, {
      op: "limit",
      policy: { kind: "fixedWindow", options: { limit: 654_321, window: "1d" } },
      keys: 1,
      ops: 100_000,
    })
    expect(sum(results, "allowed")).toBe(654_321)
  })

  it("8 workers x 100k limits over 100k keys admit exactly burst per key, at maxKeys", async () => {
    const store = new SharedMemoryStore({ maxKeys: 100_000 })
    const results = await runWorkers(store, 8, {
      op: "limit",
      policy: { kind: "tokenBucket", options: { rate: 1, period: "10000d", burst: 3 } },
      keys: 100_000,
      ops: 100_000,
    })
    // Each key is hit once by each of the 8 workers; 3 of the 8 get through.
    expect(sum(results, "allowed")).toBe(300_000)
    expect(sum(results, "denied")).toBe(500_000)
    expect(store.size).toBe(100_000)
    const limiter = createLimiter({ policy: noRefill(3), store, clock: manualClock(NOW) })
    for (let i = 0; i < 100_000; i += 997) expect(limiter.peek(`key-${i}`).remaining).toBe(0)
  })

  it("8 workers over 100k keys with a sliding window counter are exact per key", async () => {
    const store = new SharedMemoryStore({ maxKeys: 100_000 })
    const results = await runWorkers(store, 8, {
      op: "limit",
      policy: { kind: "slidingWindowCounter", options: { limit: 5, window: "1d" } },
      keys: 100_000,
      ops: 100_000,
    })
    expect(sum(results, "allowed")).toBe(500_000)
  })

  it("eviction under 4 workers never disturbs a key in use: a hot key stays exact", async () => {
    // 50,000 keys pass through a store of 1,000 while every other call hits "hot".
    const store = new SharedMemoryStore({ maxKeys: 1000 })
    const ticks = new SharedArrayBuffer(4)
    const results = await runWorkers(
      store,
      4,
      {
        op: "limit",
        policy: { kind: "tokenBucket", options: { rate: 1, period: "10000d", burst: 123_456 } },
        keys: 50_000,
        ops: 100_000,
        hotEvery: 2,
      },
      ticks,
    )
    expect(sum(results, "hotAllowed")).toBe(123_456)
    expect(store.size).toBeLessThanOrEqual(1000)
    expect(store.size).toBeGreaterThan(900)
    const limiter = createLimiter({
      policy: noRefill(123_456),
      store,
      clock: { now: () => NOW + new Int32Array(ticks)[0] },
    })
    expect(limiter.peek("hot").remaining).toBe(0)
  })

  it("a lookup that waited for a slot's lock sees that the key was freed meanwhile", async () => {
    const store = new SharedMemoryStore({ maxKeys: 16 })
    const limiter = createLimiter({ policy: noRefill(5), store, clock: manualClock(NOW) })
    expect(limiter.limit("key-0", { cost: 2 }).remaining).toBe(3)
    const slot = store.views.tags.findIndex((tag) => (tag & 1) === 1)
    const lockAt = slot * (RECORD_BYTES / 4) + S_LOCK
    // Hold the key's lock while a worker looks the key up: the worker sees the key in its
    // slot, then waits for the lock; meanwhile this thread frees the slot.
    store.table.lock(slot)
    const result = runWorkers(store, 1, {
      op: "limit",
      policy: { kind: "tokenBucket", options: { rate: 1, period: "10000d", burst: 5 } },
      keys: 1,
      ops: 1,
    })
    const deadline = Date.now() + 20_000
    while (Atomics.load(store.table.meta, lockAt) !== 2) {
      // 2: the lock has a sleeper.
      if (Date.now() > deadline) throw new Error("the worker never waited for the lock")
      await new Promise((resolve) => setTimeout(resolve, 5))
    }
    store.table.free(slot)
    store.table.unlock(slot)
    expect(sum(await result, "allowed")).toBe(1)
    // The worker decided on a fresh state and placed the key again, rather than charging
    // the state left in the freed slot (which would leave the key absent, at 5).
    expect(store.size).toBe(1)
    expect(limiter.peek("key-0").remaining).toBe(4)
  })

  it("limitAll stays all-or-nothing with 4 workers racing on two namespaces", async () => {
    const store = new SharedMemoryStore({ maxKeys: 10 })
    const results = await runWorkers(store, 4, {
      op: "limitAll",
      user: { kind: "tokenBucket", options: { rate: 1, period: "10000d", burst: 50_000 } },
      model: { kind: "fixedWindow", options: { limit: 30_000, window: "1d" } },
      ops: 20_000,
    })
    expect(sum(results, "allowed")).toBe(30_000)
    // The user bucket paid only for the 30,000 admitted checks.
    const user = store.namespace("user", noRefill(50_000))
    expect(user.peek("u", NOW).remaining).toBe(20_000)
  })

  it("a request id retried from 4 workers at once is consumed once", async () => {
    const store = new SharedMemoryStore({ maxKeys: 10, maxRequestIds: 20_000 })
    const results = await runWorkers(store, 4, {
      op: "limit",
      policy: { kind: "tokenBucket", options: { rate: 1, period: "10000d", burst: 1_000_000 } },
      keys: 1,
      ops: 10_000,
      requestIds: true,
    })
    expect(sum(results, "allowed")).toBe(40_000)
    const limiter = createLimiter({ policy: noRefill(1_000_000), store, clock: manualClock(NOW) })
    expect(limiter.peek("key-0").remaining).toBe(1_000_000 - 10_000)
  })
})

describe("SharedMemoryStore contract", () => {
  it("answers synchronously for tokenBucket, fixedWindow and slidingWindowCounter", () => {
    const clock = manualClock(NOW)
    const store = new SharedMemoryStore({ maxKeys: 100 })
    for (const policy of [
      tokenBucket({ rate: 1 }),
      slidingWindowCounter({ limit: 1, window: "1s" }),
      fixedWindow({ limit: 1, window: "1s" }),
      fixedWindow({ limit: 1, window: "month", timeZone: "Europe/Berlin" }),
    ]) {
      const limiter = createLimiter({ policy, store, clock, prefix: JSON.stringify(policy) })
      const d = limiter.limit("k")
      expect(d).not.toBeInstanceOf(Promise)
      expect(d.allowed).toBe(true)
      expect(limiter.limit("k").allowed, policy.kind).toBe(false)
    }
  })

  it("refuses slidingWindowLog and concurrency with UnsupportedError naming the policy", () => {
    const store = new SharedMemoryStore({ maxKeys: 10 })
    expect(() =>
      createLimiter({ policy: slidingWindowLog({ limit: 1, window: "1s" }), store }),
    ).toThrow(
      expect.objectContaining({
        code: "ERR_UNSUPPORTED",
        message: expect.stringContaining("slidingWindowLog"),
      }),
    )
    expect(() => store.namespace("p", concurrency({ limit: 1 }))).toThrow(
      expect.objectContaining({
        code: "ERR_UNSUPPORTED",
        message: expect.stringContaining("concurrency"),
      }),
    )
  })

  it("treats prototype names, separators and any Unicode as ordinary keys", () => {
    const store = new SharedMemoryStore({ maxKeys: 100 })
    const limiter = createLimiter({
      policy: tokenBucket({ rate: 1, period: "1h", burst: 2 }),
      store,
      clock: manualClock(NOW),
    })
    const keys = [
      "__proto__",
      "constructor",
      "hasOwnProperty",
      "a:b",
      "{x}",
      "é",
      "e\u0301",
      "🦊",
      "\ud83e", // a lone surrogate
      "\ud83e\u0000",
    ]
    for (const key of keys) {
      expect(limiter.limit(key).allowed).toBe(true)
      expect(limiter.limit(key).allowed).toBe(true)
      expect(limiter.limit(key).allowed, key).toBe(false)
    }
    expect(limiter.stats().keys).toBe(keys.length)
    expect(Object.keys(Object.prototype)).toEqual([])
  })

  it("keeps namespaces apart by prefix and by kind, and shares them by handle", () => {
    const store = new SharedMemoryStore({ maxKeys: 100 })
    const clock = manualClock(NOW)
    const make = (policy: Policy, prefix: string, s: SyncStore = store) =>
      createLimiter({ policy, prefix, store: s, clock })
    const a = make(noRefill(1), "a")
    const b = make(noRefill(1), "b")
    const w = make(fixedWindow({ limit: 1, window: "1h" }), "a")
    // Prefixes that would collide if joined naively with the key.
    const ab = make(noRefill(1), "a:")
    expect(a.limit("k").allowed).toBe(true)
    expect(b.limit("k").allowed).toBe(true)
    expect(w.limit("k").allowed).toBe(true)
    expect(ab.limit("k").allowed).toBe(true)
    expect(a.limit(":k").allowed).toBe(true)
    expect(a.limit("k").allowed).toBe(false)
    // Same prefix and kind share state, also through another store object on the handle.
    expect(make(noRefill(1), "a").limit("k").allowed).toBe(false)
    const opened = SharedMemoryStore.open(store.handle)
    expect(make(noRefill(1), "a", opened).limit("k").allowed).toBe(false)
    expect(make(noRefill(1), "c", opened).limit("k").allowed).toBe(true)
    expect(store.size).toBe(6)
  })

  it("peek consumes nothing and a denial consumes nothing", () => {
    const clock = manualClock(NOW)
    const store = new SharedMemoryStore({ maxKeys: 10 })
    for (const policy of [
      tokenBucket({ rate: 1, period: "1h", burst: 5 }),
      fixedWindow({ limit: 5, window: "1h" }),
      slidingWindowCounter({ limit: 5, window: "1h" }),
    ]) {
      const limiter = createLimiter({ policy, store, clock, prefix: policy.kind })
      for (let i = 0; i < 10; i++) expect(limiter.peek("k").remaining).toBe(5)
      expect(limiter.stats().keys, policy.kind).toBe(0)
      expect(limiter.limit("k", { cost: 3 }).remaining).toBe(2)
      expect(limiter.limit("k", { cost: 3 }).allowed).toBe(false)
      expect(limiter.peek("k").remaining, policy.kind).toBe(2)
      expect(limiter.limit("k", { cost: 2 }).allowed, policy.kind).toBe(true)
    }
  })

  it("matches MemoryStore decision for decision over a random sequence", () => {
    let seed = 12345
    const random = () => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0
      return seed / 2 ** 32
    }
    for (const policy of [
      tokenBucket({ rate: 3, period: "1s", burst: 7 }),
      fixedWindow({ limit: 7, window: "1s" }),
      slidingWindowCounter({ limit: 7, window: "1s" }),
    ]) {
      const clock = manualClock(NOW)
      const shared = createLimiter({ policy, clock, store: new SharedMemoryStore({ maxKeys: 10 }) })
      const memory = createLimiter({ policy, clock, store: new MemoryStore() })
      for (let step = 0; step < 3000; step++) {
        const key = `k${Math.floor(random() * 4)}`
        const r = random()
        if (r < 0.6) {
          const cost = Math.floor(random() * 4)
          expect(shared.limit(key, { cost }), `${policy.kind} step ${step}`).toEqual(
            memory.limit(key, { cost }),
          )
        } else if (r < 0.8) {
          expect(shared.peek(key), `${policy.kind} step ${step}`).toEqual(memory.peek(key))
        } else if (r < 0.83) {
          shared.reset(key)
          memory.reset(key)
        } else {
          clock.advance(Math.floor(random() * 400))
        }
      }
    }
  })

  it("tells apart long keys that differ only past the record's first bytes", () => {
    const store = new SharedMemoryStore({ maxKeys: 100, maxKeyBytes: 200 })
    const clock = manualClock(NOW)
    const long = "x".repeat(150)
    for (const policy of [
      noRefill(1),
      fixedWindow({ limit: 1, window: "1h" }),
      slidingWindowCounter({ limit: 1, window: "1h" }),
    ]) {
      const limiter = createLimiter({ policy, store, clock, prefix: policy.kind })
      const keys = [`${long}a`, `${long}b`, `${long}`, `${long}ab`, "x".repeat(17), "x".repeat(40)]
      for (const key of keys) expect(limiter.limit(key).allowed, policy.kind).toBe(true)
      for (const key of keys) expect(limiter.limit(key).allowed, policy.kind).toBe(false)
      expect(limiter.stats().keys).toBe(keys.length)
      limiter.reset(`${long}a`)
      expect(limiter.limit(`${long}b`).allowed).toBe(false)
      expect(limiter.limit(`${long}a`).allowed).toBe(true)
    }
  })

  it("reset forgets a key", () => {
    const store = new SharedMemoryStore({ maxKeys: 10 })
    const limiter = createLimiter({ policy: noRefill(1), store, clock: manualClock(NOW) })
    expect(limiter.limit("k").allowed).toBe(true)
    expect(limiter.limit("k").allowed).toBe(false)
    expect(store.size).toBe(1)
    limiter.reset("k")
    limiter.reset("never-seen")
    expect(store.size).toBe(0)
    expect(limiter.limit("k").allowed).toBe(true)
  })

  it("refills as the clock moves (no sleeping)", () => {
    const clock = manualClock(NOW)
    const store = new SharedMemoryStore({ maxKeys: 10 })
    const limiter = createLimiter({ policy: tokenBucket({ rate: 10, burst: 10 }), store, clock })
    limiter.limit("k", { cost: 10 })
    expect(limiter.limit("k").retryAfterMs).toBe(100)
    clock.advance(250)
    expect(limiter.peek("k").remaining).toBe(2)
  })

  it("never holds more than maxKeys and evicts the least recently used", () => {
    const clock = manualClock(NOW)
    const store = new SharedMemoryStore({ maxKeys: 3 })
    const limiter = createLimiter({ policy: noRefill(1), store, clock })
    for (const key of ["a", "b", "c", "a", "d"]) {
      clock.advance(1)
      limiter.limit(key)
    }
    expect(store.size).toBe(3)
    expect(limiter.peek("a").remaining).toBe(0)
    expect(limiter.peek("b").remaining).toBe(1) // evicted: least recently used
    expect(limiter.peek("c").remaining).toBe(0)
    expect(limiter.peek("d").remaining).toBe(0)
  })

  it("stays within maxKeys under a flood of distinct keys, evicting the oldest first", () => {
    const clock = manualClock(NOW)
    const store = new SharedMemoryStore({ maxKeys: 1000 })
    const limiter = createLimiter({ policy: noRefill(1), store, clock })
    for (let i = 0; i < 1000; i++) {
      clock.advance(1)
      limiter.limit(`k${i}`)
    }
    expect(store.size).toBe(1000)
    for (let i = 0; i < 5000; i++) {
      clock.advance(1)
      limiter.limit(`flood${i}`)
      if (i % 500 === 0) expect(store.size).toBeLessThanOrEqual(1000)
    }
    expect(store.size).toBe(1000)
    // The last keys of the flood are all kept: eviction takes old keys, not new ones.
    for (let i = 4900; i < 5000; i++) expect(limiter.peek(`flood${i}`).remaining).toBe(0)
  })

  it("at maxKeys, replaces keys whose state carries no information before live ones", () => {
    const clock = manualClock(NOW)
    const store = new SharedMemoryStore({ maxKeys: 1000 })
    const kept = createLimiter({ policy: noRefill(1), store, clock, prefix: "kept" })
    const brief = createLimiter({
      policy: tokenBucket({ rate: 10, burst: 10 }),
      store,
      clock,
      prefix: "brief",
    })
    // The kept keys are the least recently used, so plain LRU would evict them first.
    for (let i = 0; i < 500; i++) kept.limit(`k${i}`)
    clock.advance(1)
    for (let i = 0; i < 500; i++) brief.limit(`b${i}`)
    expect(store.size).toBe(1000)
    clock.advance(1000) // every brief bucket is full again: its state carries no information
    for (let i = 0; i < 400; i++) kept.limit(`new${i}`)
    expect(store.size).toBe(1000)
    let survivors = 0
    for (let i = 0; i < 500; i++) if (kept.peek(`k${i}`).remaining === 0) survivors++
    expect(survivors).toBeGreaterThanOrEqual(450)
    for (let i = 0; i < 400; i++) expect(kept.peek(`new${i}`).remaining).toBe(0)
    // In a table small enough to be one neighbourhood, the choice is exact.
    const small = new SharedMemoryStore({ maxKeys: 2 })
    const l = createLimiter({ policy: tokenBucket({ rate: 1, burst: 1 }), store: small, clock })
    l.limit("old-live")
    clock.advance(500)
    l.limit("recent")
    clock.advance(600) // old-live is full again; recent is not
    l.limit("newcomer")
    expect(small.size).toBe(2)
    expect(l.peek("recent").remaining).toBe(0)
    expect(l.peek("newcomer").remaining).toBe(0)
  })

  it("limitAll consumes every part or none, and counts one key twice together", () => {
    const store = new SharedMemoryStore({ maxKeys: 10 })
    const user = store.namespace("user", tokenBucket({ rate: 1, period: "1h", burst: 5 }))
    const model = store.namespace("model", fixedWindow({ limit: 2, window: "1h" }))
    const check = () =>
      store.limitAll(
        [
          { namespace: user, key: "u", cost: 1 },
          { namespace: model, key: "m", cost: 1 },
        ],
        NOW,
      )
    expect(check().map((d) => d.allowed)).toEqual([true, true])
    expect(check().map((d) => d.allowed)).toEqual([true, true])
    expect(check().map((d) => d.allowed)).toEqual([true, false])
    expect(user.peek("u", NOW).remaining).toBe(3)
    const twice = store.limitAll(
      [
        { namespace: user, key: "u", cost: 2 },
        { namespace: user, key: "u", cost: 2 },
      ],
      NOW,
    )
    expect(twice.map((d) => d.allowed)).toEqual([true, false])
    expect(user.peek("u", NOW).remaining).toBe(3)
    // New keys are placed only when the whole check passes.
    const fresh = store.limitAll(
      [
        { namespace: user, key: "new", cost: 1 },
        { namespace: model, key: "m", cost: 1 },
      ],
      NOW,
    )
    expect(fresh.map((d) => d.allowed)).toEqual([true, false])
    expect(user.size()).toBe(1)
    expect(store.limitAll([], NOW)).toEqual([])
    const foreign = new SharedMemoryStore({ maxKeys: 10 }).namespace("user", noRefill(5))
    expect(() => store.limitAll([{ namespace: foreign, key: "u", cost: 1 }], NOW)).toThrow(
      expect.objectContaining({ code: "ERR_ARGUMENT" }),
    )
    const memory = new MemoryStore().namespace("user", noRefill(5))
    expect(() => store.limitAll([{ namespace: memory, key: "u", cost: 1 }], NOW)).toThrow(
      expect.objectContaining({ code: "ERR_ARGUMENT" }),
    )
  })

  it("adjust settles an estimate: refunds never fill past full, debt is bounded", () => {
    const store = new SharedMemoryStore({ maxKeys: 10 })
    const ns = store.namespace("t", tokenBucket({ rate: 100, period: "1m", burst: 100 }))
    ns.limit("k", 50, NOW)
    expect(ns.adjust("k", -20, NOW).remaining).toBe(70)
    expect(ns.adjust("k", -1000, NOW).remaining).toBe(100)
    ns.adjust("k", 1000, NOW)
    const d = ns.peek("k", NOW)
    expect(d.remaining).toBe(0)
    expect(d.resetAfterMs).toBeCloseTo(120_000, 6)
    const w = store.namespace("w", fixedWindow({ limit: 10, window: "1h" }))
    expect(w.adjust("fresh", 4, NOW).remaining).toBe(6)
    expect(w.peek("fresh", NOW).remaining).toBe(6)
    expect(w.adjust("empty", -3, NOW).remaining).toBe(10)
    expect(w.size()).toBe(1)
  })

  it("reserves and cancels token bucket capacity", async () => {
    const clock = manualClock(NOW)
    const store = new SharedMemoryStore({ maxKeys: 10 })
    const limiter = createLimiter({ policy: tokenBucket({ rate: 1, burst: 2 }), store, clock })
    limiter.limit("k", { cost: 2 })
    const r = await limiter.reserve("k", { cost: 1 })
    expect(r.ok).toBe(true)
    expect(r.delayMs).toBe(1000)
    expect(limiter.peek("k").retryAfterMs).toBe(1000)
    await r.cancel()
    expect(limiter.peek("k").retryAfterMs).toBe(0)
    expect((await limiter.reserve("k", { cost: 1, maxWait: 500 })).ok).toBe(false)
    const w = createLimiter({ policy: fixedWindow({ limit: 1, window: "1s" }), store, clock })
    await expect(w.reserve("k")).rejects.toMatchObject({ code: "ERR_UNSUPPORTED" })
    const ns = store.namespace("w", fixedWindow({ limit: 1, window: "1s" }))
    expect(() => ns.cancel("k", 1, NOW + 5, NOW)).toThrow(
      expect.objectContaining({ code: "ERR_UNSUPPORTED" }),
    )
  })

  it("setPolicy keeps a token bucket's fill fraction, also for threads on the old policy", () => {
    const clock = manualClock(NOW)
    const store = new SharedMemoryStore({ maxKeys: 10 })
    const here = createLimiter({ policy: tokenBucket({ rate: 10, burst: 10 }), store, clock })
    const there = createLimiter({
      policy: tokenBucket({ rate: 10, burst: 10 }),
      store: SharedMemoryStore.open(store.handle),
      clock,
    })
    here.limit("k", { cost: 3 }) // 70% full
    here.setPolicy(tokenBucket({ rate: 100, burst: 100 }))
    expect(here.peek("k").remaining).toBe(70)
    // A thread still on the old policy sees the same fill fraction in its own terms.
    expect(there.peek("k").remaining).toBe(7)
    expect(there.limit("k", { cost: 7 }).allowed).toBe(true)
    expect(here.peek("k").remaining).toBe(0)
    expect(() => here.setPolicy(fixedWindow({ limit: 1, window: "1s" }))).not.toThrow()
    const ns = store.namespace("x", noRefill(1))
    expect(() => ns.setPolicy(fixedWindow({ limit: 1, window: "1s" }), NOW)).toThrow(
      expect.objectContaining({ code: "ERR_CONFIG" }),
    )
  })

  it("a request id repeated within the window returns the first decision and consumes nothing", () => {
    const clock = manualClock(NOW)
    const store = new SharedMemoryStore({ maxKeys: 10 })
    const limiter = createLimiter({ policy: fixedWindow({ limit: 3, window: "1m" }), store, clock })
    const first = limiter.limit("k", { requestId: "r1" })
    expect(first.remaining).toBe(2)
    expect(limiter.limit("k", { requestId: "r1" })).toEqual(first)
    expect(limiter.limit("other", { requestId: "r1" }).remaining).toBe(2) // ids are per key
    expect(limiter.peek("k").remaining).toBe(2)
    expect(limiter.limit("k", { requestId: "r2" }).remaining).toBe(1)
    clock.advance(60_000) // the window, and the id's memory, are over
    expect(limiter.limit("k", { requestId: "r1" }).remaining).toBe(2)
    expect(limiter.peek("k").remaining).toBe(2)
  })

  it("rejects bad options and handles with ConfigError", () => {
    const config = expect.objectContaining({ code: "ERR_CONFIG" })
    for (const options of [
      { maxKeys: 0 },
      { maxKeys: 1.5 },
      { maxKeys: "10" },
      { maxKeys: Number.NaN },
      { maxKeys: 2 ** 40 },
      { maxKeyBytes: 0 },
      { maxKeyBytes: 1e6 },
      { maxRequestIds: -1 },
      { handle: {} },
      { handle: null },
      { handle: "handle" },
      { handle: { buffer: new ArrayBuffer(1024) } },
      { handle: { buffer: new SharedArrayBuffer(1024) } },
      { handle: { buffer: new SharedArrayBuffer(4) } },
      { handle: new SharedMemoryStore({ maxKeys: 1 }).handle, maxKeys: 5 },
    ]) {
      expect(
        () => new SharedMemoryStore(options as ConstructorParameters<typeof SharedMemoryStore>[0]),
        JSON.stringify(options),
      ).toThrow(config)
    }
    expect(() => new SharedMemoryStore(null as never)).toThrow(config)
    const truncated = new SharedArrayBuffer(new SharedMemoryStore({ maxKeys: 1 }).byteLength - 8)
    new Uint8Array(truncated).set(
      new Uint8Array(new SharedMemoryStore({ maxKeys: 1 }).handle.buffer, 0, 64),
    )
    expect(() => SharedMemoryStore.open({ buffer: truncated })).toThrow(config)
  })

  it("rejects keys and request ids too long for the store with ArgumentError", () => {
    const store = new SharedMemoryStore({ maxKeys: 10, maxKeyBytes: 8 })
    const limiter = createLimiter({ policy: noRefill(5), store, clock: manualClock(NOW) })
    expect(limiter.limit("12345678").allowed).toBe(true)
    expect(() => limiter.limit("123456789")).toThrow(
      expect.objectContaining({ code: "ERR_ARGUMENT", argument: "key" }),
    )
    expect(() => limiter.limit("ééééé")).toThrow(expect.objectContaining({ code: "ERR_ARGUMENT" }))
    expect(() => limiter.limit("k", { requestId: "x".repeat(65) })).toThrow(
      expect.objectContaining({ code: "ERR_ARGUMENT", argument: "requestId" }),
    )
    expect(store.size).toBe(1)
  })

  it("exposes a plain handle and its size", () => {
    const store = new SharedMemoryStore({ maxKeys: 1000, maxKeyBytes: 32 })
    expect(Object.keys(store.handle)).toEqual(["buffer"])
    expect(store.handle.buffer).toBeInstanceOf(SharedArrayBuffer)
    expect(structuredClone(store.handle).buffer).toBeInstanceOf(SharedArrayBuffer)
    const opened = new SharedMemoryStore({ handle: structuredClone(store.handle) })
    expect(opened.maxKeys).toBe(1000)
    expect(opened.maxKeyBytes).toBe(32)
    expect(store.byteLength).toBeLessThan(1000 * 1.5 * 200 + 200_000 + 1500 * 200)
  })

  it("never reads a key through a slot that another thread freed or gave to another key", () => {
    // Two openings of one memory stand for two threads, each with its own namespace
    // objects (and their per-thread buffers).
    const store = new SharedMemoryStore({ maxKeys: 1, maxKeyBytes: 64 })
    const other = SharedMemoryStore.open(store.handle)
    const a = store.namespace("p", noRefill(5)) as SharedNamespace
    const b = other.namespace("p", noRefill(5)) as SharedNamespace
    const slotOf = (key: string) =>
      store.table.locate(a.encode(key, new KeyBytes(store.maxKeyBytes)))
    const long = "L".repeat(60)
    // Keys of a's length and bytes but one; a long key (past the record, into overflow);
    // and a non-ASCII key whose UTF-16 units equal another key's UTF-8 bytes.
    const keys = [long, "\u00c3\u00a9", "\u00e9", `${long.slice(0, 59)}M`]
    for (let i = 0; i < 40; i++) keys.push(`k${i}`, `j${i}`)
    let reused = 0
    for (const key of ["a", long, "\u00c3\u00a9"]) {
      for (const next of keys) {
        if (next === key) continue
        expect(a.limit(key, 2, NOW).remaining).toBe(3)
        const held = slotOf(key)
        expect(held).toBeGreaterThanOrEqual(0)
        // The other thread's key takes the only place (maxKeys 1): `key` is evicted.
        expect(b.limit(next, 1, NOW).remaining).toBe(4)
        expect(b.limit(next, 1, NOW).remaining).toBe(3)
        if (slotOf(next) === held) reused++
        expect(slotOf(key)).toBe(-1)
        expect(a.peek(key, NOW).remaining).toBe(5)
        expect(a.limit(key, 1, NOW).remaining).toBe(4)
        // And back: `next` was evicted in turn, and the other thread sees it so.
        expect(b.peek(next, NOW).remaining).toBe(5)
        a.reset(key)
        expect(b.peek(key, NOW).remaining).toBe(5)
        expect(store.size).toBe(0)
      }
    }
    // The slot a key was found in went to another key many times over.
    expect(reused).toBeGreaterThan(20)
  })

  it("finds a key again after another thread reset it and other keys took its slot", () => {
    const store = new SharedMemoryStore({ maxKeys: 16 })
    const other = SharedMemoryStore.open(store.handle)
    const a = store.namespace("p", noRefill(100)) as SharedNamespace
    const b = other.namespace("p", noRefill(100)) as SharedNamespace
    const keys = Array.from({ length: 16 }, (_, i) => `key-${i}`)
    for (const k of keys) expect(a.limit(k, 1, NOW).remaining).toBe(99)
    for (let round = 0; round < 5; round++) {
      // The other thread frees every key and refills the table in another order.
      for (const k of keys) b.reset(k)
      const order = [...keys].reverse()
      for (const [i, k] of order.entries()) expect(b.limit(k, i + 1, NOW).remaining).toBe(99 - i)
      for (const [i, k] of order.entries()) {
        expect(a.limit(k, 0, NOW).remaining).toBe(99 - i)
        expect(a.peek(k, NOW).remaining).toBe(99 - i)
      }
      keys.push(keys.shift() as string)
    }
    expect(store.size).toBe(16)
  })
})
