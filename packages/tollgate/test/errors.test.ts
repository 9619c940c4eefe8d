// DESIGN.md's error table, row by row: each misuse or failure ends in its typed error with
// its stable `code`, and a rejected call leaves the key's state as it was.

import { describe, expect, it } from "vitest"
import {
  ArgumentError,
  ConfigError,
  concurrency,
  createLimiter,
  createTieredLimiter,
  type Decision,
  fixedWindow,
  flush,
  type Limiter,
  MemoryStore,
  manualClock,
  type Namespace,
  type Policy,
  parseDuration,
  RateLimitError,
  type Store,
  StoreError,
  slidingWindowCounter,
  slidingWindowLog,
  TollgateError,
  tokenBucket,
  UnsupportedError,
} from "../src/index.js"
import type { Check } from "../src/stores/store.js"

type ErrorClass = new (...args: never[]) => TollgateError

/** thrown runs fn and returns what it threw; it fails the test when nothing is thrown. */
function thrown(fn: () => unknown): unknown {
  try {
    fn()
  } catch (error) {
    return error
  }
  throw new Error("expected the call to throw, it returned")
}

/** rejected awaits a promise and returns its rejection; it fails the test when it resolves. */
async function rejected(value: unknown): Promise<unknown> {
  try {
    await value
  } catch (error) {
    return error
  }
  throw new Error("expected the promise to reject, it resolved")
}

function expectTyped(error: unknown, type: ErrorClass, code: string): void {
  expect(error).toBeInstanceOf(type)
  expect(error).toBeInstanceOf(TollgateError)
  expect(error).toBeInstanceOf(Error)
  expect((error as TollgateError).code).toBe(code)
  expect((error as TollgateError).name).toBe(type.name)
}

// Calls typed as JavaScript would make them: with anything at all.
type Loose = (...args: unknown[]) => unknown
const loose = (fn: unknown) => fn as Loose

const TEN_KB = "x".repeat(10 * 1024)

describe("ConfigError (ERR_CONFIG): invalid policy or options at construction", () => {
  const rows: [string, () => unknown, string][] = [
    ["tokenBucket rate 0", () => tokenBucket({ rate: 0 }), "rate"],
    ["tokenBucket rate -1", () => tokenBucket({ rate: -1 }), "rate"],
    ["tokenBucket rate NaN", () => tokenBucket({ rate: Number.NaN }), "rate"],
    ["tokenBucket rate Infinity", () => tokenBucket({ rate: Number.POSITIVE_INFINITY }), "rate"],
    ['tokenBucket rate "5"', () => loose(tokenBucket)({ rate: "5" }), "rate"],
    ["tokenBucket without rate", () => loose(tokenBucket)({}), "rate"],
    ["tokenBucket burst 0.5", () => tokenBucket({ rate: 1, burst: 0.5 }), "burst"],
    ["tokenBucket burst NaN", () => tokenBucket({ rate: 1, burst: Number.NaN }), "burst"],
    [
      'tokenBucket period "1 fortnight"',
      () => tokenBucket({ rate: 1, period: "1 fortnight" }),
      "period",
    ],
    ["tokenBucket period 0", () => tokenBucket({ rate: 1, period: 0 }), "period"],
    ["tokenBucket period -1", () => tokenBucket({ rate: 1, period: -1 }), "period"],
    ["tokenBucket with no usable interval", () => tokenBucket({ rate: 1e-320 }), "rate"],
    // Windows no store can keep state for (Redis's expiry times overflow).
    ["tokenBucket refilling over 1e300 ms", () => tokenBucket({ rate: 1e-300 }), "rate"],
    ["tokenBucket period 5e18", () => tokenBucket({ rate: 1, period: 5e18 }), "rate"],
    ["slidingWindowLog window 1e19", () => slidingWindowLog({ limit: 1, window: 1e19 }), "window"],
    ["fixedWindow window 1e19", () => fixedWindow({ limit: 1, window: 1e19 }), "window"],
    [
      "concurrency leaseTimeout 1e19",
      () => concurrency({ limit: 1, leaseTimeout: 1e19 }),
      "leaseTimeout",
    ],
    [
      'slidingWindowLog window "1 fortnight"',
      () => slidingWindowLog({ limit: 1, window: "1 fortnight" }),
      "window",
    ],
    ["slidingWindowLog limit 0", () => slidingWindowLog({ limit: 0, window: "1s" }), "limit"],
    [
      "slidingWindowCounter limit NaN",
      () => slidingWindowCounter({ limit: Number.NaN, window: "1s" }),
      "limit",
    ],
    [
      'slidingWindowCounter window "1 fortnight"',
      () => slidingWindowCounter({ limit: 1, window: "1 fortnight" }),
      "window",
    ],
    ["fixedWindow limit 0", () => fixedWindow({ limit: 0, window: "1m" }), "limit"],
    ["fixedWindow limit -1", () => fixedWindow({ limit: -1, window: "1m" }), "limit"],
    [
      'fixedWindow window "1 fortnight"',
      () => fixedWindow({ limit: 1, window: "1 fortnight" }),
      "window",
    ],
    ["fixedWindow without window", () => loose(fixedWindow)({ limit: 1 }), "window"],
    ["concurrency limit 0", () => concurrency({ limit: 0 }), "limit"],
    [
      'concurrency leaseTimeout "1 fortnight"',
      () => concurrency({ limit: 1, leaseTimeout: "1 fortnight" }),
      "leaseTimeout",
    ],
    ["tokenBucket(5)", () => loose(tokenBucket)(5), "tokenBucket"],
    ["tokenBucket()", () => loose(tokenBucket)(), "tokenBucket"],
    ["tokenBucket(null)", () => loose(tokenBucket)(null), "tokenBucket"],
    ['slidingWindowLog("1s")', () => loose(slidingWindowLog)("1s"), "slidingWindowLog"],
    ["slidingWindowCounter([])", () => loose(slidingWindowCounter)([]), "slidingWindowCounter"],
    ["fixedWindow(true)", () => loose(fixedWindow)(true), "fixedWindow"],
    ["concurrency(3)", () => loose(concurrency)(3), "concurrency"],
    ["createLimiter()", () => loose(createLimiter)(), "createLimiter"],
    ["createLimiter(null)", () => loose(createLimiter)(null), "createLimiter"],
    ['createLimiter("tokenBucket")', () => loose(createLimiter)("tokenBucket"), "createLimiter"],
    ["createLimiter({}) without a policy", () => loose(createLimiter)({}), "policy"],
    [
      "a policy of unknown kind",
      () => loose(createLimiter)({ policy: Object.freeze({ kind: "leakyBucket", limit: 1 }) }),
      "policy",
    ],
    ["a policy given by name", () => loose(createLimiter)({ policy: "tokenBucket" }), "policy"],
    [
      "a copy of a policy",
      () => createLimiter({ policy: { ...tokenBucket({ rate: 1 }) } }),
      "policy",
    ],
    [
      "a frozen look-alike that no factory made",
      () => loose(createLimiter)({ policy: Object.freeze({ kind: "tokenBucket", rate: 1 }) }),
      "policy",
    ],
    ['prefix ""', () => createLimiter({ policy: tokenBucket({ rate: 1 }), prefix: "" }), "prefix"],
    [
      "a clock without now()",
      () => loose(createLimiter)({ policy: tokenBucket({ rate: 1 }), clock: {} }),
      "clock",
    ],
    [
      "a store without namespace()",
      () => loose(createLimiter)({ policy: tokenBucket({ rate: 1 }), store: {} }),
      "store",
    ],
    [
      'onStoreError "sometimes"',
      () => loose(createLimiter)({ policy: tokenBucket({ rate: 1 }), onStoreError: "sometimes" }),
      "onStoreError",
    ],
    [
      "maxKeyLength 0",
      () => createLimiter({ policy: tokenBucket({ rate: 1 }), maxKeyLength: 0 }),
      "maxKeyLength",
    ],
    // The store guard's options are checked on the memory store too, where they do nothing
    // yet: a bad value is found before the limiter is moved to Redis.
    ...(
      [
        ["timeout", { timeout: "abc" }],
        ["timeout", { timeout: -1 }],
        ["maxInFlight", { maxInFlight: 0 }],
        ["breaker.failures", { breaker: { failures: -1 } }],
        ["breaker", { breaker: "yes" }],
      ] as const
    ).flatMap(([path, bad]): [string, () => unknown, string][] => [
      [
        `createLimiter ${JSON.stringify(bad)}`,
        () => loose(createLimiter)({ policy: tokenBucket({ rate: 1 }), ...bad }),
        path,
      ],
      [
        `createTieredLimiter ${JSON.stringify(bad)}`,
        () => loose(createTieredLimiter)({ tiers: { t: { key: [] } }, ...bad }),
        path,
      ],
    ]),
    ["MemoryStore maxKeys 0", () => new MemoryStore({ maxKeys: 0 }), "maxKeys"],
    ["MemoryStore maxKeys 1.5", () => new MemoryStore({ maxKeys: 1.5 }), "maxKeys"],
    ["MemoryStore(null)", () => new MemoryStore(null as never), "MemoryStore"],
    ['parseDuration("1 fortnight")', () => parseDuration("1 fortnight", "window"), "window"],
    ["parseDuration(NaN)", () => parseDuration(Number.NaN, "window"), "window"],
    ['parseDuration("-5s")', () => parseDuration("-5s", "window"), "window"],
  ]

  it.each(rows)("%s", (_name, make, path) => {
    const error = thrown(make)
    expectTyped(error, ConfigError, "ERR_CONFIG")
    expect((error as ConfigError).path).toBe(path)
  })

  it("accepts the valid neighbours of those rows (the rows fail for the reason named)", () => {
    expect(tokenBucket({ rate: 0.001, burst: 1 }).kind).toBe("tokenBucket")
    expect(fixedWindow({ limit: 1, window: "36500d" }).windowMs).toBe(36_500 * 86_400_000)
    expect(tokenBucket({ rate: 1, period: "1h", burst: 1 }).limit).toBe(1)
    expect(slidingWindowLog({ limit: 1, window: "1d" }).windowMs).toBe(86_400_000)
    expect(parseDuration("250ms", "window")).toBe(250)
    expect(createLimiter({ policy: tokenBucket({ rate: 1 }), prefix: "p" }).prefix).toBe("p")
  })

  it("setPolicy with an invalid policy changes neither the policy nor any state", () => {
    const clock = manualClock(0)
    const policy = tokenBucket({ rate: 1, period: "1h", burst: 5 })
    const limiter = createLimiter({ policy, clock })
    limiter.limit("k", { cost: 2 })
    const before = limiter.peek("k")
    for (const bad of [undefined, null, { kind: "tokenBucket" }, "fixedWindow", { ...policy }]) {
      expectTyped(
        thrown(() => limiter.setPolicy(bad as unknown as Policy)),
        ConfigError,
        "ERR_CONFIG",
      )
      expect(limiter.policy).toBe(policy)
      expect(limiter.peek("k")).toEqual(before)
    }
  })
})

/** A limiter of each kind with some state on key "k": capacity 5, 2 used. */
function limiters(): [
  string,
  () => { limiter: Limiter<true>; clock: ReturnType<typeof manualClock> },
][] {
  const policies: Policy[] = [
    tokenBucket({ rate: 1, period: "1h", burst: 5 }),
    slidingWindowLog({ limit: 5, window: "1h" }),
    slidingWindowCounter({ limit: 5, window: "1h" }),
    fixedWindow({ limit: 5, window: "1h" }),
    concurrency({ limit: 5, leaseTimeout: "1h" }),
  ]
  return policies.map((policy) => [
    policy.kind,
    () => {
      const clock = manualClock(1_000)
      const limiter = createLimiter({ policy, clock })
      expect(limiter.limit("k", { cost: 2 }).allowed).toBe(true)
      return { limiter, clock }
    },
  ])
}

/** unchanged snapshots a limiter and returns a check that nothing moved since. */
function unchanged(limiter: Limiter<true>, keys: string[] = ["k"]): () => void {
  const peeks = keys.map((k) => limiter.peek(k))
  const { allowed, keys: size, waiting } = limiter.stats()
  return () => {
    expect(keys.map((k) => limiter.peek(k))).toEqual(peeks)
    expect(limiter.stats()).toMatchObject({ allowed, keys: size, waiting })
  }
}

describe("ArgumentError (ERR_ARGUMENT): a bad call consumes nothing", () => {
  it("manualClock refuses a time it cannot hold, and keeps its time", () => {
    for (const bad of [Number.NaN, Number.POSITIVE_INFINITY, "5"]) {
      expectTyped(
        thrown(() => manualClock(bad as number)),
        ArgumentError,
        "ERR_ARGUMENT",
      )
    }
    const clock = manualClock(1_000)
    for (const bad of [-5, Number.NaN, Number.POSITIVE_INFINITY, "5"]) {
      expectTyped(
        thrown(() => clock.advance(bad as number)),
        ArgumentError,
        "ERR_ARGUMENT",
      )
      // set may go back in time (a finite -5 is a time), but not to one it cannot hold.
      if (bad !== -5) {
        expectTyped(
          thrown(() => clock.set(bad as number)),
          ArgumentError,
          "ERR_ARGUMENT",
        )
      }
    }
    expect(clock.now()).toBe(1_000)
  })

  const badCosts: [string, unknown][] = [
    ["NaN", Number.NaN],
    ["-1", -1],
    ["-0.001", -0.001],
    ["Infinity", Number.POSITIVE_INFINITY],
    ["-Infinity", Number.NEGATIVE_INFINITY],
    ['"5" (a string)', "5"],
    ["null", null],
    ["an object", { valueOf: () => 1 }],
    ["a bigint", 1n],
    ["above capacity (6 of 5)", 6],
    ["just above capacity", 5.000001],
  ]
  const badKeys: [string, unknown][] = [
    ["an empty key", ""],
    ["a 10 kB key", TEN_KB],
    ["a key of 513 characters", "k".repeat(513)],
    ["a number", 42],
    ["undefined", undefined],
    ["null", null],
    ["an object", { toString: () => "k" }],
    ["an array", ["k"]],
    ["a symbol", Symbol("k")],
    ["a boxed string", new String("k")],
  ]

  describe.each(limiters())("%s", (_kind, setup) => {
    it.each(badCosts)("cost %s: limit throws, acquire rejects", async (_name, cost) => {
      const { limiter } = setup()
      const same = unchanged(limiter)
      const sync = thrown(() => limiter.limit("k", { cost } as never))
      expectTyped(sync, ArgumentError, "ERR_ARGUMENT")
      expect((sync as ArgumentError).argument).toBe("cost")
      same()
      const waited = await rejected(limiter.acquire("k", { cost } as never))
      expectTyped(waited, ArgumentError, "ERR_ARGUMENT")
      expect((waited as ArgumentError).argument).toBe("cost")
      same()
    })

    it.each(badKeys)("key: %s", async (_name, key) => {
      const { limiter } = setup()
      const same = unchanged(limiter)
      const calls: [string, () => unknown][] = [
        ["limit", () => limiter.limit(key as string)],
        ["peek", () => limiter.peek(key as string)],
        ["reset", () => limiter.reset(key as string)],
      ]
      for (const [name, call] of calls) {
        const error = thrown(call)
        expectTyped(error, ArgumentError, "ERR_ARGUMENT")
        expect((error as ArgumentError).argument, name).toBe("key")
        same()
      }
      const waited = await rejected(limiter.acquire(key as string))
      expectTyped(waited, ArgumentError, "ERR_ARGUMENT")
      expect((waited as ArgumentError).argument).toBe("key")
      same()
    })

    it.each([
      ['""', ""],
      ["a number", 7],
      ["an object", {}],
      ["10 kB", TEN_KB],
    ])("requestId %s", (_name, requestId) => {
      const { limiter } = setup()
      const same = unchanged(limiter)
      const error = thrown(() => limiter.limit("k", { requestId } as never))
      expectTyped(error, ArgumentError, "ERR_ARGUMENT")
      expect((error as ArgumentError).argument).toBe("requestId")
      same()
    })

    it.each([
      ["-1", -1],
      ['"soon"', "soon"],
      ["NaN", Number.NaN],
      ['"-5s"', "-5s"],
      ["null", null],
      ["an object", {}],
    ])("acquire maxWait %s", async (_name, maxWait) => {
      const { limiter } = setup()
      const same = unchanged(limiter)
      const error = await rejected(limiter.acquire("k", { maxWait } as never))
      expectTyped(error, ArgumentError, "ERR_ARGUMENT")
      expect((error as ArgumentError).argument).toBe("maxWait")
      same()
    })

    it.each([
      ["a number", 5],
      ["a string", "cost"],
      ["null", null],
      ["an array", [1]],
    ])("options %s", async (_name, options) => {
      const { limiter } = setup()
      const same = unchanged(limiter)
      const error = thrown(() => limiter.limit("k", options as never))
      expectTyped(error, ArgumentError, "ERR_ARGUMENT")
      expect((error as ArgumentError).argument).toBe("options")
      same()
      expectTyped(
        await rejected(limiter.acquire("k", options as never)),
        ArgumentError,
        "ERR_ARGUMENT",
      )
      same()
    })

    it("acquire signal that is not an AbortSignal", async () => {
      const { limiter } = setup()
      const same = unchanged(limiter)
      const error = await rejected(limiter.acquire("k", { signal: { aborted: true } } as never))
      expectTyped(error, ArgumentError, "ERR_ARGUMENT")
      expect((error as ArgumentError).argument).toBe("signal")
      same()
    })
  })

  describe("reserve (token bucket)", () => {
    const setup = () => {
      const clock = manualClock(1_000)
      const limiter = createLimiter({
        policy: tokenBucket({ rate: 1, period: "1h", burst: 5 }),
        clock,
      })
      limiter.limit("k", { cost: 2 })
      return limiter
    }

    it.each(badCosts)("cost %s", async (_name, cost) => {
      const limiter = setup()
      const same = unchanged(limiter)
      const error = await rejected(limiter.reserve("k", { cost } as never))
      expectTyped(error, ArgumentError, "ERR_ARGUMENT")
      expect((error as ArgumentError).argument).toBe("cost")
      same()
    })

    it.each(badKeys)("key: %s", async (_name, key) => {
      const limiter = setup()
      const same = unchanged(limiter)
      const error = await rejected(limiter.reserve(key as string))
      expectTyped(error, ArgumentError, "ERR_ARGUMENT")
      expect((error as ArgumentError).argument).toBe("key")
      same()
    })

    it.each([
      ["-1", -1],
      ['"soon"', "soon"],
      ["NaN", Number.NaN],
    ])("maxWait %s", async (_name, maxWait) => {
      const limiter = setup()
      const same = unchanged(limiter)
      const error = await rejected(limiter.reserve("k", { maxWait } as never))
      expectTyped(error, ArgumentError, "ERR_ARGUMENT")
      expect((error as ArgumentError).argument).toBe("maxWait")
      same()
    })
  })

  it("a key of exactly maxKeyLength is fine, one more is not", () => {
    const limiter = createLimiter({
      policy: tokenBucket({ rate: 1 }),
      clock: manualClock(0),
      maxKeyLength: 8,
    })
    expect(limiter.limit("k".repeat(8)).allowed).toBe(true)
    expectTyped(
      thrown(() => limiter.limit("k".repeat(9))),
      ArgumentError,
      "ERR_ARGUMENT",
    )
  })
})

describe("RateLimitError (ERR_RATE_LIMITED): acquire cannot be served within maxWait", () => {
  // Each limiter has capacity 5 and 2 used on "k"; a request for the whole capacity has to wait.
  const waits: Record<string, number> = {
    tokenBucket: 2 * 3_600_000, // 2 more tokens, at 1 per hour
    slidingWindowLog: 3_600_000, // until the first admission leaves the hour
    slidingWindowCounter: 2 * 3_600_000 - 1_000, // until this window's 2 have fully decayed
    fixedWindow: 3_600_000 - 1_000, // until the window holding t = 1000 ends
    concurrency: 3_600_000, // until the lease expires
  }

  describe.each(limiters())("%s", (kind, setup) => {
    it.each([
      ["maxWait 10 ms", 10],
      ['maxWait "1m"', "1m"],
      ["maxWait 0 (waiting off)", 0],
    ])("rejects at once when %s is too short, carrying the decision", async (_name, maxWait) => {
      const { limiter } = setup()
      const same = unchanged(limiter)
      const error = await rejected(limiter.acquire("k", { cost: 5, maxWait }))
      expectTyped(error, RateLimitError, "ERR_RATE_LIMITED")
      const e = error as RateLimitError
      expect(e.decision.allowed).toBe(false)
      expect(e.decision.limit).toBe(5)
      expect(e.retryAfterMs).toBe(e.decision.retryAfterMs)
      expect(e.retryAfterMs).toBeCloseTo(waits[kind], 6)
      expect(limiter.stats().waiting).toBe(0)
      same()
    })

    it("waits instead when maxWait covers the wait", async () => {
      const { limiter, clock } = setup()
      let settled: Decision | undefined
      const waiting = limiter.acquire("k", { cost: 5, maxWait: waits[kind] + 1 }).then((d) => {
        settled = d
        return d
      })
      clock.advance(waits[kind] - 1)
      await flush()
      expect(settled).toBeUndefined()
      clock.advance(1)
      expect((await waiting).allowed).toBe(true)
    })
  })
})

describe("UnsupportedError (ERR_UNSUPPORTED): reserve needs a token bucket", () => {
  it.each(
    limiters().filter(([kind]) =>
      ["fixedWindow", "slidingWindowLog", "concurrency"].includes(kind),
    ),
  )("reserve on %s", async (_kind, setup) => {
    const { limiter } = setup()
    const same = unchanged(limiter)
    for (const options of [undefined, { cost: 1 }, { cost: 1, maxWait: "1s" }]) {
      const error = await rejected(limiter.reserve("k", options))
      expectTyped(error, UnsupportedError, "ERR_UNSUPPORTED")
      same()
    }
  })
})

/**
 * BrokenStore is an asynchronous store (like a network one) over a MemoryStore, whose
 * calls all fail while `failing` is set: with a rejected promise, or by throwing at once.
 */
class BrokenStore implements Store {
  readonly synchronous = false
  failing = false
  how: "reject" | "throw" = "reject"
  readonly cause: unknown
  private readonly inner = new MemoryStore()

  constructor(cause: unknown) {
    this.cause = cause
  }

  private call<T>(fn: () => T): Promise<T> {
    if (!this.failing) return Promise.resolve().then(fn)
    if (this.how === "throw") throw this.cause
    return Promise.reject(this.cause)
  }

  namespace(prefix: string, policy: Policy): Namespace {
    const ns = this.inner.namespace(prefix, policy)
    return {
      limit: (key, cost, now, id) => this.call(() => ns.limit(key, cost, now, id)),
      peek: (key, now) => this.call(() => ns.peek(key, now)),
      reset: (key) => this.call(() => ns.reset(key)),
      reserve: (key, cost, now, maxWaitMs) =>
        this.call(() => ns.reserve(key, cost, now, maxWaitMs)),
      cancel: (key, cost, at, now) => this.call(() => ns.cancel(key, cost, at, now)),
      release: (key, id, now) => this.call(() => ns.release(key, id, now)),
      adjust: (key, delta, now) => this.call(() => ns.adjust(key, delta, now)),
      setPolicy: (p, now) => ns.setPolicy(p, now),
      size: () => ns.size(),
    }
  }

  limitAll(checks: readonly Check[], now: number): Promise<Decision[]> {
    return this.call(() => this.inner.limitAll(checks, now))
  }
}

describe("StoreError (ERR_STORE): the store failed and onStoreError is closed", () => {
  const policy = tokenBucket({ rate: 1, period: "1h", burst: 5 })

  async function setup(cause: unknown, how: "reject" | "throw" = "reject") {
    const store = new BrokenStore(cause)
    store.how = how
    const limiter = createLimiter({ policy, store, clock: manualClock(1_000) })
    expect((await limiter.limit("k", { cost: 2 })).allowed).toBe(true)
    const before = await limiter.peek("k")
    store.failing = true
    /** same: once the store works again, the key is as it was before the failure. */
    const same = async () => {
      store.failing = false
      expect(await limiter.peek("k")).toEqual(before)
      expect(limiter.stats()).toMatchObject({ allowed: 1, failOpen: 0, fallbacks: 0 })
    }
    return { store, limiter, same }
  }

  const calls: [string, (l: Limiter) => unknown][] = [
    ["limit", (l) => l.limit("k")],
    ["peek", (l) => l.peek("k")],
    ["reset", (l) => l.reset("k")],
    ["acquire", (l) => l.acquire("k", { maxWait: 0 })],
    ["reserve", (l) => l.reserve("k")],
  ]

  describe.each(calls)("%s", (_name, call) => {
    it.each([
      ["rejects with an Error", new Error("connection refused"), "reject"],
      ["rejects with a string", "ECONNRESET", "reject"],
      ["throws before returning a promise", new Error("socket closed"), "throw"],
    ] as const)("when the store %s", async (_how, cause, how) => {
      const { limiter, same } = await setup(cause, how)
      const error = await rejected(call(limiter))
      expectTyped(error, StoreError, "ERR_STORE")
      expect((error as StoreError).cause).toBe(cause)
      expect(limiter.stats().storeErrors).toBe(1)
      await same()
    })
  })

  it('"open": admits, marked degraded "open", and the store is untouched', async () => {
    const store = new BrokenStore(new Error("down"))
    const limiter = createLimiter({
      policy,
      store,
      clock: manualClock(1_000),
      onStoreError: "open",
    })
    await limiter.limit("k", { cost: 2 })
    const before = await limiter.peek("k")
    store.failing = true
    for (let i = 0; i < 3; i++) {
      expect(await limiter.limit("k", { cost: 5 })).toMatchObject({
        allowed: true,
        degraded: "open",
      })
    }
    expect(limiter.stats()).toMatchObject({ failOpen: 3, storeErrors: 3 })
    store.failing = false
    expect(await limiter.peek("k")).toEqual(before)
  })

  it('{ fallback: new MemoryStore() }: decides with the fallback, marked degraded "fallback"', async () => {
    const store = new BrokenStore(new Error("down"))
    const limiter = createLimiter({
      policy,
      store,
      clock: manualClock(1_000),
      onStoreError: { fallback: new MemoryStore() },
    })
    store.failing = true
    const first = await limiter.limit("k", { cost: 4 })
    expect(first).toMatchObject({ allowed: true, degraded: "fallback", remaining: 1 })
    const second = await limiter.limit("k", { cost: 2 })
    expect(second).toMatchObject({ allowed: false, degraded: "fallback" })
    expect(second.retryAfterMs).toBeGreaterThan(0)
    expect(limiter.stats()).toMatchObject({ fallbacks: 2, storeErrors: 2 })
    store.failing = false
    // The main store never saw those requests.
    expect((await limiter.peek("k")).remaining).toBe(5)
  })

  it("reserve on a window policy over an async store is UnsupportedError, not a store failure", async () => {
    const store = new BrokenStore(new Error("unused"))
    const limiter = createLimiter({ policy: fixedWindow({ limit: 5, window: "1h" }), store })
    const error = await rejected(limiter.reserve("k"))
    expectTyped(error, UnsupportedError, "ERR_UNSUPPORTED")
    expect(limiter.stats().storeErrors).toBe(0)
  })
})
