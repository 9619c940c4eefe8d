// Helpers for bench/core.ts: key generation, the naive baseline, one measuring loop per
// contender, memory readings and table formatting. Nothing here is part of the library.
import type { RateLimiterMemory } from "rate-limiter-flexible"
import type { Decision, Limiter } from "../packages/tollgate/src/index.js"
import { seeded } from "../packages/tollgate/test/scale/sharded-random.js"

// ---------------------------------------------------------------------------------------
// Keys

/** KEY_LENGTH: every benchmark key has this many characters (one byte each in V8). */
export const KEY_LENGTH = 16

const HEX = "0123456789abcdef"
const ALNUM = "0123456789abcdefghijklmnopqrstuvwxyz"
const codes: number[] = new Array<number>(KEY_LENGTH).fill(0)

/** mix32 is a bijection on 32-bit integers (the murmur3 finalizer): distinct in, distinct out. */
function mix32(x: number): number {
  x ^= x >>> 16
  x = Math.imul(x, 0x85ebca6b)
  x ^= x >>> 13
  x = Math.imul(x, 0xc2b2ae35)
  x ^= x >>> 16
  return x >>> 0
}

/**
 * makeKey returns the i-th key: "u:" + 8 hex digits of mix32(i) (so keys are distinct for
 * every i below 2^32) + 6 filler characters, 16 in all. It is built from character codes in
 * one call, so V8 allocates a flat sequential one-byte string, never a cons string (which
 * would be flattened, and grow, on first use as a Map key).
 */
export function makeKey(i: number): string {
  let x = mix32(i)
  codes[0] = 117 // u
  codes[1] = 58 // :
  for (let d = 9; d >= 2; d--) {
    codes[d] = HEX.charCodeAt(x & 15)
    x >>>= 4
  }
  let y = mix32(i ^ 0x5bd1e995)
  for (let d = 10; d < KEY_LENGTH; d++) {
    codes[d] = ALNUM.charCodeAt(y % 36)
    y = Math.floor(y / 36)
  }
  return String.fromCharCode.apply(null, codes)
}

/** makeKeys: keys 0..n-1 in creation order. */
export function makeKeys(n: number): string[] {
  const keys = new Array<string>(n)
  for (let i = 0; i < n; i++) keys[i] = makeKey(i)
  return keys
}

/** shuffled: a copy of `items` in a seeded random order (Fisher-Yates), the same every run. */
export function shuffled<T>(items: readonly T[], seed: number): T[] {
  const out = items.slice()
  const random = seeded(seed)
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1))
    const t = out[i]
    out[i] = out[j]
    out[j] = t
  }
  return out
}

// ---------------------------------------------------------------------------------------
// The naive baseline

interface NaiveState {
  tokens: number
  last: number
}

/**
 * NaiveBucket: the textbook token bucket, a Map of { tokens, last } objects, reading
 * performance.now() once per call. No validation, no eviction, no clock-step handling: the
 * practical ceiling for an in-process limiter. It answers with an object of the same shape
 * as tollgate's Decision so both pay for the same answer.
 */
export class NaiveBucket {
  readonly map = new Map<string, NaiveState>()
  readonly #perMs: number
  readonly #burst: number

  constructor(rate: number, periodMs: number, burst: number) {
    this.#perMs = rate / periodMs
    this.#burst = burst
  }

  limit(key: string): Decision {
    const now = performance.now()
    const burst = this.#burst
    const perMs = this.#perMs
    let s = this.map.get(key)
    if (s === undefined) {
      s = { tokens: burst, last: now }
      this.map.set(key, s)
    } else {
      const tokens = s.tokens + (now - s.last) * perMs
      s.tokens = tokens > burst ? burst : tokens
      s.last = now
    }
    if (s.tokens >= 1) {
      s.tokens -= 1
      return {
        allowed: true,
        limit: burst,
        remaining: Math.floor(s.tokens),
        retryAfterMs: 0,
        resetAfterMs: (burst - s.tokens) / perMs,
      }
    }
    return {
      allowed: false,
      limit: burst,
      remaining: 0,
      retryAfterMs: (1 - s.tokens) / perMs,
      resetAfterMs: (burst - s.tokens) / perMs,
    }
  }
}

// ---------------------------------------------------------------------------------------
// Measuring loops
//
// One loop function per contender, so every call site inside a loop sees one receiver
// class and V8 can inline it, as it would in an application. A shared loop taking a
// callback would make its call site polymorphic and slow all three contenders down.
// Each loop walks `keys` from `cursor` (wrapping around) for at least `ms` milliseconds,
// reading the time once per CHUNK calls.

const CHUNK = 2048

export interface Spin {
  ops: number
  allowed: number
  ms: number
  /** cursor: where the next spin continues in the key order. */
  cursor: number
}

export function spinTollgate(
  limiter: Limiter<true>,
  keys: readonly string[],
  cursor: number,
  ms: number,
): Spin {
  const n = keys.length
  let i = cursor
  let ops = 0
  let allowed = 0
  const t0 = performance.now()
  let t = t0
  do {
    for (let c = 0; c < CHUNK; c++) {
      if (limiter.limit(keys[i]).allowed) allowed++
      if (++i === n) i = 0
    }
    ops += CHUNK
    t = performance.now()
  } while (t - t0 < ms)
  return { ops, allowed, ms: t - t0, cursor: i }
}

export function spinNaive(
  bucket: NaiveBucket,
  keys: readonly string[],
  cursor: number,
  ms: number,
): Spin {
  const n = keys.length
  let i = cursor
  let ops = 0
  let allowed = 0
  const t0 = performance.now()
  let t = t0
  do {
    for (let c = 0; c < CHUNK; c++) {
      if (bucket.limit(keys[i]).allowed) allowed++
      if (++i === n) i = 0
    }
    ops += CHUNK
    t = performance.now()
  } while (t - t0 < ms)
  return { ops, allowed, ms: t - t0, cursor: i }
}

/**
 * spinRlf: RateLimiterMemory.consume() returns a promise that resolves when the request is
 * allowed and rejects (with a RateLimiterRes, not an Error) when it is denied. It is driven
 * the way its README's middleware does, `consume(key).then(allowed, denied)`: a chunk of
 * calls is issued, then one await lets all their reactions run before the clock is read.
 * Each call still pays for its promise and reaction job; none pays for an await that
 * throws. This is the faster of the two harnesses here (denials cost ~30% more with
 * `try { await consume(key) } catch {}`), so the rlf column gives it the benefit of the
 * doubt; BENCH_RLF=await selects spinRlfAwait instead.
 */
export async function spinRlf(
  rl: RateLimiterMemory,
  keys: readonly string[],
  cursor: number,
  ms: number,
): Promise<Spin> {
  const n = keys.length
  let i = cursor
  let ops = 0
  let allowed = 0
  const onAllowed = () => {
    allowed++
  }
  const onDenied = () => {}
  const t0 = performance.now()
  let t = t0
  do {
    for (let c = 0; c < CHUNK; c++) {
      rl.consume(keys[i]).then(onAllowed, onDenied)
      if (++i === n) i = 0
    }
    // Every reaction above is already queued (the promises are settled); this await
    // resumes after all of them have run.
    await null
    ops += CHUNK
    t = performance.now()
  } while (t - t0 < ms)
  return { ops, allowed, ms: t - t0, cursor: i }
}

/** spinRlfAwait: one call after the other, `try { await consume(key) } catch {}`. */
export async function spinRlfAwait(
  rl: RateLimiterMemory,
  keys: readonly string[],
  cursor: number,
  ms: number,
): Promise<Spin> {
  const n = keys.length
  let i = cursor
  let ops = 0
  let allowed = 0
  const t0 = performance.now()
  let t = t0
  do {
    for (let c = 0; c < CHUNK; c++) {
      try {
        await rl.consume(keys[i])
        allowed++
      } catch {
        // denied
      }
      if (++i === n) i = 0
    }
    ops += CHUNK
    t = performance.now()
  } while (t - t0 < ms)
  return { ops, allowed, ms: t - t0, cursor: i }
}

// ---------------------------------------------------------------------------------------
// Memory and housekeeping

function collector(): NodeJS.GCFunction {
  const gc = globalThis.gc
  if (gc === undefined) throw new Error("run with node --expose-gc (npm run bench does)")
  return gc
}

/** tick yields to the event loop once (timers, immediates, finalizers). */
export function tick(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve))
}

/** minorGc empties the young generation, so a measured spin starts with a clean nursery. */
export function minorGc(): void {
  collector()({ type: "minor" })
}

/**
 * settle runs full collections with event-loop turns between them, so that objects
 * (and array buffer backing stores) freed by one collection are really gone.
 */
export async function settle(): Promise<void> {
  const gc = collector()
  for (let n = 0; n < 3; n++) {
    gc()
    await tick()
  }
}

/** footprint: JS heap in use plus ArrayBuffer backing stores (typed arrays live there). */
export function footprint(): number {
  const m = process.memoryUsage()
  return m.heapUsed + m.arrayBuffers
}

// ---------------------------------------------------------------------------------------
// Numbers and table

export function median(xs: readonly number[]): number {
  const s = xs.slice().sort((a, b) => a - b)
  const mid = s.length >> 1
  return s.length % 2 === 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2
}

/** rate formats operations per second: 9.81M, 512k. */
export function rate(opsPerSecond: number): string {
  if (opsPerSecond >= 1e6) return `${(opsPerSecond / 1e6).toFixed(2)}M`
  if (opsPerSecond >= 1e3) return `${(opsPerSecond / 1e3).toFixed(0)}k`
  return opsPerSecond.toFixed(0)
}

/** count formats a key count: 100k, 1M. */
export function count(n: number): string {
  if (n >= 1e6 && n % 1e6 === 0) return `${n / 1e6}M`
  if (n >= 1e3 && n % 1e3 === 0) return `${n / 1e3}k`
  return String(n)
}

export function ratio(x: number): string {
  return `${x >= 10 ? x.toFixed(1) : x.toFixed(2)}x`
}

/** table renders rows of cells: the first column left-aligned, the others right-aligned. */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const all = [header, ...rows]
  const widths = header.map((_, c) => Math.max(...all.map((r) => (r[c] ?? "").length)))
  const line = (r: readonly string[]) =>
    r
      .map((cell, c) =>
        c === 0 || c === r.length - 1 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]),
      )
      .join("  ")
      .trimEnd()
  const rule = widths.map((w) => "-".repeat(w)).join("  ")
  return [line(header), rule, ...rows.map(line)].join("\n")
}
