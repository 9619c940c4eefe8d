// `tollgate simulate`: offer a traffic pattern to a policy on a manual clock, so a minute
// or a day of traffic runs in moments and the result is the same every time. Arrivals are
// spread evenly: at a rate of r per second, one arrives each time r/1000 per ms adds up
// to a whole request.

export type Pattern =
  | { kind: "steady"; rps: number }
  | { kind: "bursty"; rps: number; burstRps: number; everyMs: number; burstMs: number }
  | { kind: "ramp"; fromRps: number; toRps: number }

export interface Bin {
  /** startMs: from the start of the run. */
  startMs: number
  admitted: number
  denied: number
}

export interface SimulationResult {
  pattern: Pattern
  durationMs: number
  binMs: number
  bins: Bin[]
  admitted: number
  denied: number
}

/** Decide admits or denies one request for `key` at `atMs` from the start. */
export type Decide = (key: string, atMs: number) => boolean

/** rateAt is the pattern's offered rate (per second) at `t` ms of a `durationMs` run. */
export function rateAt(p: Pattern, t: number, durationMs: number): number {
  switch (p.kind) {
    case "steady":
      return p.rps
    case "bursty":
      return t % p.everyMs < p.burstMs ? p.burstRps : p.rps
    case "ramp":
      return p.fromRps + ((p.toRps - p.fromRps) * t) / Math.max(1, durationMs)
  }
}

/** niceBin picks a bin width giving about 60 bins: 1, 2, 5 times a power of ten, in ms. */
export function niceBin(durationMs: number): number {
  const raw = durationMs / 60
  const steps = [1, 2, 5]
  for (let p = 1; ; p *= 10) for (const s of steps) if (s * p * 100 >= raw) return s * p * 100
}

/**
 * simulate offers the pattern for `durationMs`, keys taken round-robin from `keys`
 * distinct ones, and counts admitted and denied requests per bin.
 */
export function simulate(
  pattern: Pattern,
  durationMs: number,
  decide: Decide,
  { keys = 1, binMs = niceBin(durationMs) }: { keys?: number; binMs?: number } = {},
): SimulationResult {
  const bins: Bin[] = []
  for (let t = 0; t < durationMs; t += binMs) bins.push({ startMs: t, admitted: 0, denied: 0 })
  let owed = 0
  let n = 0
  let admitted = 0
  let denied = 0
  for (let t = 0; t < durationMs; t++) {
    owed += rateAt(pattern, t, durationMs) / 1000
    while (owed >= 1 - 1e-9) {
      owed -= 1
      const ok = decide(`client-${n++ % keys}`, t)
      const bin = bins[Math.floor(t / binMs)]
      if (ok) {
        bin.admitted++
        admitted++
      } else {
        bin.denied++
        denied++
      }
    }
  }
  return { pattern, durationMs, binMs, bins, admitted, denied }
}

export function describePattern(p: Pattern): string {
  switch (p.kind) {
    case "steady":
      return `steady ${p.rps}/s`
    case "bursty":
      return `${p.rps}/s with bursts of ${p.burstRps}/s for ${p.burstMs / 1000} s every ${p.everyMs / 1000} s`
    case "ramp":
      return `ramp ${p.fromRps}/s → ${p.toRps}/s`
  }
}
