// Faults of a single Redis server under load: killed and restarted, frozen, its script
// cache flushed, a wrong password, connections killed every 50 ms. For each, what the
// callers saw (a decision or a StoreError, within the timeout plus a margin) and what was
// admitted (never more than onStoreError allows: the policy's allowance when closed, plus
// the fallback's budget with a fallback; with "open", as many as stats().failOpen says).
// Real time only where the fault needs it; the load is a few thousand requests.

import { setFlagsFromString } from "node:v8"
import { runInNewContext } from "node:vm"
import { Redis, type RedisOptions } from "ioredis"
import { afterAll, describe, expect, it } from "vitest"
import {
  createLimiter,
  type Limiter,
  type LimiterOptions,
  MemoryStore,
  RedisStore,
  tokenBucket,
} from "../../src/index.js"
import {
  type ControlledRedis,
  keysWithoutTtl,
  load,
  type Outcome,
  requirePass,
  startControlledRedis,
  type Tally,
  tally,
} from "../support/redis.js"

/** TIMEOUT_MS: the limiters' store timeout; MARGIN_MS: what a noisy machine may add to it. */
const TIMEOUT_MS = 250
const MARGIN_MS = 750
/** ALLOWANCE: the policy's burst; it refills one per hour, nothing within a test. */
const ALLOWANCE = 100
/** INSTANCES: the fallback enforces ALLOWANCE / INSTANCES per key. */
const INSTANCES = 4
const FALLBACK_BUDGET = ALLOWANCE / INSTANCES
const policy = tokenBucket({ rate: 1, period: "1h", burst: ALLOWANCE })
/** PREFIX: every limiter's prefix and the replay guard's start with it (the final scan). */
const PREFIX = "fault"
const GUARD_PREFIX = `${PREFIX}-guard`

/** Set FAULT_REPORT=1 to print what each fault did (the figures quoted in docs/redis.md). */
const report = (name: string, figures: Record<string, unknown>) => {
  if (process.env.FAULT_REPORT) console.info(name, JSON.stringify(figures))
}

const servers: ControlledRedis[] = []
const clients: Redis[] = []

afterAll(async () => {
  for (const c of clients) c.disconnect()
  for (const s of servers) if (s.up) s.resume()
  await Promise.all(servers.map((s) => s.stop()))
})

async function server(): Promise<ControlledRedis> {
  const s = await startControlledRedis()
  servers.push(s)
  return s
}

/**
 * connect opens a client with ioredis's defaults (offline queue, re-send after reconnect)
 * unless `options` say otherwise.
 */
async function connect(s: ControlledRedis, options: RedisOptions = {}): Promise<Redis> {
  const client = new Redis({ host: s.host, port: s.port, ...options })
  client.on("error", () => {})
  clients.push(client)
  if (options.password === undefined) await client.ping()
  return client
}

type Mode = "closed" | "open" | "fallback"

/** trio: one limiter per onStoreError choice, over the same client, each its own prefix. */
function trio(
  client: Redis,
  name: string,
  options: Partial<LimiterOptions> = {},
): Record<Mode, Limiter<false>> {
  const make = (mode: Mode) =>
    createLimiter({
      policy,
      store: new RedisStore({ client, guardPrefix: GUARD_PREFIX }),
      prefix: `${PREFIX}-${name}-${mode}`,
      timeout: TIMEOUT_MS,
      onStoreError:
        mode === "fallback" ? { fallback: new MemoryStore(), instances: INSTANCES } : mode,
      ...options,
    })
  return { closed: make("closed"), open: make("open"), fallback: make("fallback") }
}

/** split: the outcomes of a load over a trio (call n went to MODES[n % 3]). */
const MODES: Mode[] = ["closed", "open", "fallback"]
function split(outcomes: Outcome[]): Record<Mode, Outcome[]> {
  const out: Record<Mode, Outcome[]> = { closed: [], open: [], fallback: [] }
  outcomes.forEach((o, n) => {
    out[MODES[n % 3]].push(o)
  })
  return out
}

/** loadTrio: a load on the key "hot" over a trio, a call per mode each round (see split). */
function loadTrio(
  limiters: Record<Mode, Limiter<false>>,
  durationMs: number,
  everyMs = 5,
): Promise<Outcome[]> {
  return load({
    durationMs,
    everyMs,
    perRound: 3,
    call: (n) => limiters[MODES[n % 3]].limit("hot"),
  })
}

/**
 * expectWithin: what each onStoreError allows, over `lifetimes` of the server's state (a
 * restart forgets what was consumed, so the store may admit its allowance once more).
 */
function expectWithin(
  t: Record<Mode, Tally>,
  limiters: Record<Mode, Limiter<false>>,
  lifetimes = 1,
): void {
  for (const mode of MODES) {
    expect(t[mode].others, mode).toEqual([])
    expect(t[mode].maxMs, mode).toBeLessThanOrEqual(TIMEOUT_MS + MARGIN_MS)
    expect(t[mode].byStore, mode).toBeLessThanOrEqual(lifetimes * ALLOWANCE)
  }
  // closed: the store's decisions or StoreErrors, nothing degraded.
  expect(t.closed.degraded).toBe(0)
  // open: never an error; every admission without the store is counted in stats().
  expect(t.open.storeErrors).toBe(0)
  expect(t.open.open).toBe(limiters.open.stats().failOpen)
  expect(t.open.degraded).toBe(t.open.open)
  // fallback: never an error; the fallback admits at most its share of the allowance.
  expect(t.fallback.storeErrors).toBe(0)
  expect(t.fallback.fallback).toBeLessThanOrEqual(FALLBACK_BUDGET)
  expect(t.fallback.byStore + t.fallback.fallback).toBeLessThanOrEqual(
    lifetimes * ALLOWANCE + FALLBACK_BUDGET,
  )
  expect(t.fallback.degraded).toBe(limiters.fallback.stats().fallbacks)
}

/** recovered waits until `limiter` decides through the store again; returns how long it took. */
async function recovered(limiter: Limiter, key: string, withinMs = 10_000): Promise<number> {
  const start = performance.now()
  for (;;) {
    try {
      const d = await limiter.limit(key)
      if (d.degraded === undefined) return performance.now() - start
    } catch {
      // not yet
    }
    if (performance.now() - start > withinMs) throw new Error(`no recovery within ${withinMs} ms`)
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
}

/** expectExact: twice the allowance on a fresh key admits exactly the allowance, no errors. */
async function expectExact(limiter: Limiter, key: string): Promise<void> {
  const outcomes = await Promise.all(
    Array.from({ length: 2 * ALLOWANCE }, () =>
      Promise.resolve(limiter.limit(key)).then(
        (decision): Outcome => ({ at: 0, ms: 0, decision }),
        (error): Outcome => ({ at: 0, ms: 0, error }),
      ),
    ),
  )
  const t = tally(outcomes)
  expect(t).toMatchObject({ byStore: ALLOWANCE, denied: ALLOWANCE, degraded: 0, storeErrors: 0 })
}

/** errorCount reads how many replies of an error kind (e.g. NOSCRIPT) a server has sent. */
/** libraryLoads: FUNCTION LOAD calls the server has run (since it started). */
async function libraryLoads(client: Redis): Promise<number> {
  const info = await client.info("commandstats")
  const match = /cmdstat_function\|load:calls=(\d+)/.exec(info)
  return match === null ? 0 : Number(match[1])
}

async function errorCount(client: Redis, kind: string): Promise<number> {
  const info = await client.info("errorstats")
  const match = new RegExp(`errorstat_${kind}:count=(\\d+)`).exec(info)
  return match === null ? 0 : Number(match[1])
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
const tallies = (outcomes: Outcome[]) => {
  const s = split(outcomes)
  return { closed: tally(s.closed), open: tally(s.open), fallback: tally(s.fallback) }
}
const summary = (t: Tally) => ({
  calls: t.calls,
  byStore: t.byStore,
  open: t.open,
  fallback: t.fallback,
  denied: t.denied,
  storeErrors: t.storeErrors,
  maxMs: Math.round(t.maxMs),
  messages: Object.fromEntries(t.messages),
})

describe("Redis faults under load", () => {
  it("SIGKILL during load, restart on the same port: bounded admission, transparent recovery", async () => {
    const s = await server()
    const client = await connect(s)
    const limiters = trio(client, "kill", { breaker: { failures: 5, cooldown: "200ms" } })
    const origin = performance.now()
    const running = loadTrio(limiters, 2000)
    await sleep(300)
    await s.kill()
    const killedAt = performance.now() - origin
    await sleep(600)
    await s.restart()
    const outcomes = await running
    const t = tallies(outcomes)
    // Nothing persists: the restarted server has forgotten what was consumed, so the
    // store may admit its allowance once per lifetime (two here), and no more.
    expectWithin(t, limiters, 2)
    // The fault was felt: calls failed while the server was down.
    expect(t.closed.storeErrors).toBeGreaterThan(0)
    expect(t.open.open).toBeGreaterThan(0)
    expect(t.fallback.degraded).toBeGreaterThan(0)
    // Calls started after the kill could only be admitted by the new server.
    const after = tallies(outcomes.filter((o) => o.at > killedAt))
    for (const mode of MODES) expect(after[mode].byStore).toBeLessThanOrEqual(ALLOWANCE)
    // What the restarted server counted for the key under load, before the checks below.
    const consumed = ALLOWANCE - (await limiters.closed.peek("hot")).remaining
    // Recovery: the function library was loaded again on the restarted server (after
    // "Function not found"), and a fresh key is exact again.
    const took = await Promise.all(MODES.map((m) => recovered(limiters[m], "probe")))
    for (const mode of MODES) await expectExact(limiters[mode], "fresh")
    expect(await libraryLoads(client)).toBeGreaterThan(0)
    report("sigkill", {
      closed: summary(t.closed),
      open: summary(t.open),
      fallback: summary(t.fallback),
      failOpen: limiters.open.stats().failOpen,
      admittedAfterKill: MODES.map((m) => after[m].byStore),
      consumedAfterRestart: consumed,
      recoveredMs: took.map(Math.round),
    })
  })

  it("SIGSTOP: every call ends within the timeout, the breaker opens, SIGCONT recovers", async () => {
    const s = await server()
    const client = await connect(s)
    const limiters = trio(client, "stop", { breaker: { failures: 5, cooldown: "300ms" } })
    const running = loadTrio(limiters, 3000)
    await sleep(300)
    s.pause()
    // Longer than timeout + margin: a call waiting on the frozen server would show.
    await sleep(2000)
    s.resume()
    const t = tallies(await running)
    // State survives a freeze: one lifetime.
    expectWithin(t, limiters, 1)
    const messages = [...t.closed.messages.keys()].join("\n")
    expect(messages).toMatch(/timed out after 250 ms/)
    expect(messages).toMatch(/circuit open/)
    expect(t.open.open).toBeGreaterThan(0)
    expect(t.fallback.degraded).toBeGreaterThan(0)
    const took = await Promise.all(MODES.map((m) => recovered(limiters[m], "probe")))
    for (const mode of MODES) await expectExact(limiters[mode], "fresh")
    // Calls that timed out still ran when the server thawed: their capacity is consumed
    // though their callers saw a StoreError (fewer admissions later, never more).
    const consumed = ALLOWANCE - (await limiters.closed.peek("hot")).remaining
    expect(consumed).toBeGreaterThanOrEqual(t.closed.byStore)
    report("sigstop", {
      closed: summary(t.closed),
      open: summary(t.open),
      fallback: summary(t.fallback),
      consumedClosed: consumed,
      recoveredMs: took.map(Math.round),
    })
  })

  it("a 10 s stall: maxInFlight caps the calls held, the heap stays flat, then it recovers", async () => {
    setFlagsFromString("--expose-gc")
    const gc = runInNewContext("gc") as () => void
    const heapMb = () => {
      gc()
      gc()
      return process.memoryUsage().heapUsed / 2 ** 20
    }
    const MAX_IN_FLIGHT = 2000
    const s = await server()
    const client = await connect(s)
    // No breaker: maxInFlight alone must keep memory bounded.
    const limiter = createLimiter({
      policy,
      store: new RedisStore({ client, guardPrefix: GUARD_PREFIX }),
      prefix: `${PREFIX}-stall`,
      timeout: 200,
      maxInFlight: MAX_IN_FLIGHT,
      breaker: false,
    })
    for (let i = 0; i < 20; i++) await limiter.limit(`warm${i}`)
    const base = heapMb()
    s.pause()
    const samples: number[] = []
    const start = performance.now()
    let n = 0
    let settled = 0
    let timedOut = 0
    let overloaded = 0
    // Counted as they settle; nothing of a call is kept here once it has.
    const count = (e: unknown) => {
      const m = (e as Error).message
      if (m.includes("timed out")) timedOut++
      else if (m.includes("maxInFlight")) overloaded++
    }
    const done = () => {
      settled++
    }
    // Up to 20,000 calls a second, for 10 s, while the server answers nothing; the heap
    // is sampled every 2 s.
    while (performance.now() - start < 10_000) {
      for (let i = 0; i < 200; i++) {
        limiter
          .limit(`k${n++ % 64}`)
          .catch(count)
          .finally(done)
      }
      await sleep(10)
      if (performance.now() - start >= 2000 * (samples.length + 1)) samples.push(heapMb())
    }
    const end = heapMb()
    s.resume()
    while (settled < n) await sleep(10)
    // Only the calls let through before the cap reached the store; all others were refused
    // at once, and nothing else settled.
    expect(timedOut).toBe(MAX_IN_FLIGHT)
    expect(overloaded).toBe(n - MAX_IN_FLIGHT)
    expect(n).toBeGreaterThan(40_000)
    // Flat: from the first sample (2 s in) to the end of the stall the heap grows by less
    // than 16 MiB, where holding ~1 KiB per call would take 30+ MiB.
    expect(samples.length).toBeGreaterThanOrEqual(3)
    expect(end - samples[0]).toBeLessThan(16)
    expect(end - base).toBeLessThan(48)
    // Thawed, the held calls are answered, their slots free up, and calls go through again.
    const took = await recovered(limiter, "probe")
    await expectExact(limiter, "fresh")
    report("stall", {
      calls: n,
      timedOut,
      overloaded,
      heapMiB: [base, ...samples, end].map((x) => Math.round(x * 10) / 10),
      recoveredMs: Math.round(took),
    })
  }, 40_000)

  it("SCRIPT FLUSH and FUNCTION FLUSH during load: reloaded transparently, no error, exact admission", async () => {
    const s = await server()
    const admin = await connect(s)
    const KEYS = 4
    // Two stores run the function library, two run scripts (functions: false).
    const limiters = await Promise.all(
      Array.from({ length: 4 }, async (_, i) =>
        createLimiter({
          policy,
          store: new RedisStore({
            client: await connect(s),
            guardPrefix: GUARD_PREFIX,
            functions: i < 2,
          }),
          prefix: `${PREFIX}-flush`,
          timeout: TIMEOUT_MS,
        }),
      ),
    )
    let flushes = 0
    let flushing = true
    const flusher = (async () => {
      while (flushing) {
        await admin.script("FLUSH")
        await admin.call("FUNCTION", "FLUSH")
        flushes++
        await sleep(10)
      }
    })()
    const t = tally(
      await load({
        durationMs: 1000,
        everyMs: 2,
        perRound: 8,
        call: (n) => limiters[n % 4].limit(`k${n % KEYS}`),
      }),
    )
    flushing = false
    await flusher
    expect(flushes).toBeGreaterThan(10)
    expect(await errorCount(admin, "NOSCRIPT")).toBeGreaterThan(0)
    // Loaded once by each of the two stores, then again after flushes.
    expect(await libraryLoads(admin)).toBeGreaterThan(4)
    expect(t.others).toEqual([])
    expect(t.storeErrors).toBe(0)
    expect(t.byStore).toBe(KEYS * ALLOWANCE)
    expect(t.denied).toBe(t.calls - KEYS * ALLOWANCE)
    expect(t.maxMs).toBeLessThanOrEqual(TIMEOUT_MS + MARGIN_MS)
    report("script-flush", {
      ...summary(t),
      flushes,
      noscript: await errorCount(admin, "NOSCRIPT"),
      libraryLoads: await libraryLoads(admin),
    })
  })

  it("wrong password: a StoreError naming it, nothing admitted when closed, never a hang", async () => {
    const s = await server()
    await requirePass(s, "right-password")
    const client = await connect(s, { password: "wrong-password" })
    const limiters = trio(client, "auth")
    const t = tallies(await loadTrio(limiters, 1000, 10))
    expectWithin(t, limiters, 0)
    // closed: every call a StoreError, the first ones with Redis's own reason.
    expect(t.closed.storeErrors).toBe(t.closed.calls)
    expect([...t.closed.messages.keys()].join("\n")).toMatch(/WRONGPASS/)
    // open: every call admitted, marked and counted.
    expect(t.open.open).toBe(t.open.calls)
    // fallback: exactly the fallback's budget, every decision marked.
    expect(t.fallback.fallback).toBe(FALLBACK_BUDGET)
    expect(t.fallback.degraded).toBe(t.fallback.calls)
    client.disconnect()
    await requirePass(s, "", "right-password")
    report("wrong-password", {
      closed: summary(t.closed),
      open: summary(t.open),
      fallback: summary(t.fallback),
    })
  })

  it("CLIENT KILL TYPE normal every 50 ms: no double count, decisions or StoreErrors only", async () => {
    const s = await server()
    const admin = await connect(s)
    // Reconnect after 10 ms every time: with ioredis's growing delay, a connection killed
    // again before it is ready waits longer each time, and calls would only time out.
    const connections = await Promise.all(
      Array.from({ length: 4 }, () => connect(s, { retryStrategy: () => 10 })),
    )
    let reconnects = 0
    for (const c of connections) c.on("reconnecting", () => reconnects++)
    const KEYS = 5
    // hot: the allowance is soon used up; wide: never, so every run call shows in the count.
    const make = (client: Redis, name: string, burst: number) =>
      createLimiter({
        policy: tokenBucket({ rate: 1, period: "1h", burst }),
        store: new RedisStore({ client, guardPrefix: GUARD_PREFIX }),
        prefix: `${PREFIX}-ckill-${name}`,
        timeout: 2000,
        breaker: false,
      })
    const hot = connections.map((c) => make(c, "hot", ALLOWANCE))
    const wide = connections.map((c) => make(c, "wide", 1_000_000))
    let kills = 0
    let rounds = 0
    let killing = true
    const killer = (async () => {
      while (killing) {
        kills += Number(await admin.client("KILL", "TYPE", "normal"))
        rounds++
        await sleep(50)
      }
    })()
    // Call n: even n to a hot limiter, odd to a wide one; key and connection rotate.
    const key = (n: number) => `k${(n >> 1) % KEYS}`
    const outcomes = await load({
      durationMs: 1500,
      everyMs: 2,
      perRound: 8,
      call: (n) => (n % 2 === 0 ? hot : wide)[(n >> 1) % 4].limit(key(n)),
    })
    killing = false
    await killer
    expect(rounds).toBeGreaterThanOrEqual(10)
    expect(kills).toBeGreaterThan(0)
    const t = tally(outcomes)
    expect(t.others).toEqual([])
    expect(t.maxMs).toBeLessThanOrEqual(2000 + MARGIN_MS)
    // The load's connections were cut under it. (Whether a reply was lost in flight, and
    // so some call failed, depends on timing: often, but not in every run.)
    expect(reconnects).toBeGreaterThan(0)
    const replayed = (o: Outcome) => /it ran once/.test(String((o.error as Error)?.message))
    for (let k = 0; k < KEYS; k++) {
      const on = (parity: number) =>
        outcomes.filter((_, n) => n % 2 === parity && key(n) === `k${k}`)
      const h = tally(on(0))
      const hotConsumed = ALLOWANCE - (await hot[0].peek(`k${k}`)).remaining
      expect(h.byStore).toBeLessThanOrEqual(ALLOWANCE)
      expect(hotConsumed).toBeGreaterThanOrEqual(h.byStore)
      expect(hotConsumed).toBeLessThanOrEqual(h.byStore + h.storeErrors)
      // Nothing is denied on a wide key, so each call that ran consumed 1: the admitted
      // ones, those whose re-sent copy found the call had run, and at most the others
      // that failed. A call run twice would push the count past that.
      const w = on(1)
      const wt = tally(w)
      const wideConsumed = 1_000_000 - (await wide[0].peek(`k${k}`)).remaining
      expect(wt.denied).toBe(0)
      expect(wideConsumed).toBeGreaterThanOrEqual(wt.byStore + w.filter(replayed).length)
      expect(wideConsumed).toBeLessThanOrEqual(wt.byStore + wt.storeErrors)
    }
    report("client-kill", {
      ...summary(t),
      replayed: outcomes.filter(replayed).length,
      kills,
      rounds,
    })
  })

  it("after every fault, no key without a TTL", async () => {
    const { scanned, missing } = await keysWithoutTtl(servers, `${PREFIX}*`)
    expect(scanned).toBeGreaterThan(0)
    expect(missing).toEqual([])
  })
})
