// What the dashboard shows: allowed and denied per second per policy over the last two
// minutes, and the keys denied most in the last few minutes. Memory is bounded whatever
// the traffic: a ring of seconds per policy, and a fixed number of key counters.

const SECONDS = 120
const TOP_CAPACITY = 200
const TOP_WINDOW_MS = 5 * 60_000

interface Ring {
  second: Int32Array
  allowed: Uint32Array
  denied: Uint32Array
}

export interface SeriesSnapshot {
  /** seconds: epoch seconds, oldest first, one per second up to now. */
  seconds: number[]
  policies: Record<string, { allowed: number[]; denied: number[] }>
}

export interface DeniedKey {
  policy: string
  key: string
  denied: number
}

/**
 * TopKeys keeps approximate counts of the most frequent items with a fixed number of
 * counters (the space-saving algorithm): a new item, when all counters are taken,
 * replaces the smallest and inherits its count. Items counted more often than
 * total / capacity are always kept.
 */
class TopKeys {
  readonly #counts = new Map<string, number>()

  add(item: string): void {
    const c = this.#counts.get(item)
    if (c !== undefined) {
      this.#counts.set(item, c + 1)
      return
    }
    if (this.#counts.size < TOP_CAPACITY) {
      this.#counts.set(item, 1)
      return
    }
    let minItem = ""
    let min = Number.POSITIVE_INFINITY
    for (const [k, v] of this.#counts) {
      if (v < min) {
        min = v
        minItem = k
      }
    }
    this.#counts.delete(minItem)
    this.#counts.set(item, min + 1)
  }

  entries(): [string, number][] {
    return [...this.#counts]
  }
}

export class DashboardStats {
  readonly #rings = new Map<string, Ring>()
  #top = new TopKeys()
  #previousTop = new TopKeys()
  #topSince: number

  constructor(private readonly now: () => number) {
    this.#topSince = now()
  }

  /** record counts one decision of `policy` at the current time. */
  record(policy: string, allowed: boolean, key: string | undefined): void {
    const now = this.now()
    const second = Math.floor(now / 1000)
    let ring = this.#rings.get(policy)
    if (ring === undefined) {
      ring = {
        second: new Int32Array(SECONDS).fill(-1),
        allowed: new Uint32Array(SECONDS),
        denied: new Uint32Array(SECONDS),
      }
      this.#rings.set(policy, ring)
    }
    const i = second % SECONDS
    if (ring.second[i] !== second) {
      ring.second[i] = second
      ring.allowed[i] = 0
      ring.denied[i] = 0
    }
    if (allowed) {
      ring.allowed[i]++
      return
    }
    ring.denied[i]++
    if (key !== undefined) {
      if (now - this.#topSince >= TOP_WINDOW_MS) {
        this.#previousTop = this.#top
        this.#top = new TopKeys()
        this.#topSince = now
      }
      this.#top.add(`${policy}\u0000${key}`)
    }
  }

  /** forget drops the series of policies no longer configured. */
  retain(policies: Iterable<string>): void {
    const keep = new Set(policies)
    for (const name of this.#rings.keys()) if (!keep.has(name)) this.#rings.delete(name)
  }

  series(span = 60): SeriesSnapshot {
    const last = Math.floor(this.now() / 1000)
    const n = Math.min(span, SECONDS - 1)
    const seconds: number[] = []
    for (let s = last - n + 1; s <= last; s++) seconds.push(s)
    // Built from entries, so that no name could ever reach the object's prototype.
    const policies: [string, SeriesSnapshot["policies"][string]][] = []
    for (const [name, ring] of this.#rings) {
      const allowed: number[] = []
      const denied: number[] = []
      for (const s of seconds) {
        const i = s % SECONDS
        const here = ring.second[i] === s
        allowed.push(here ? ring.allowed[i] : 0)
        denied.push(here ? ring.denied[i] : 0)
      }
      policies.push([name, { allowed, denied }])
    }
    return { seconds, policies: Object.fromEntries(policies) }
  }

  /** topDenied lists the keys denied most in the current and previous five minutes. */
  topDenied(limit = 10): DeniedKey[] {
    const merged = new Map<string, number>()
    for (const top of [this.#previousTop, this.#top]) {
      for (const [k, v] of top.entries()) merged.set(k, (merged.get(k) ?? 0) + v)
    }
    return [...merged]
      .sort((a, b) => b[1] - a[1])
      .slice(0, limit)
      .map(([k, denied]) => {
        const cut = k.indexOf("\u0000")
        return { policy: k.slice(0, cut), key: k.slice(cut + 1), denied }
      })
  }
}
