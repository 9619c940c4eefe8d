// The store side of a tiered check: one all-or-nothing limitAll per request (a second
// only when a shadow tier fails), repeats of request ids, penalties that start, and what
// happens when the store fails. Every call to an asynchronous store goes through the
// StoreGuard (timeout, circuit breaker, in-flight cap).

import { type Decision, decision, whole } from "../core/decision.js"
import { StoreError, TollgateError } from "../errors.js"
import type { StoreGuard } from "../limiter/store-guard.js"
import type { Check, MaybePromise, Store } from "../stores/store.js"
import type { Runtime } from "./options.js"
import { type Counter, type Entry, outcome, type TieredDecision } from "./outcome.js"

/** Attempt: one request on its way through the store. */
export interface Attempt {
  readonly entries: Entry[]
  readonly now: number
  /** counters: the tiers' counters when the request arrived (a setConfig may follow). */
  readonly counters: readonly Counter[]
  /** requestKey, requestWindowMs: set when the request has a requestId. */
  requestKey: string | undefined
  requestWindowMs: number
  /** fallback: decided by the fallback store (the main one failed). */
  fallback: boolean
  /** dropped: entries left out of the check after failing as shadow tiers. */
  dropped: number
}

/** Totals: the counters behind the limiter-wide part of stats(). */
export interface Totals {
  allowed: number
  denied: number
  shadowDenied: number
  blocked: number
  listedAllowed: number
  listedDenied: number
  duplicates: number
  storeErrors: number
  fallbacks: number
  failOpen: number
}

/** REMEMBERED: first decisions kept for repeated request ids (oldest dropped first). */
const REMEMBERED = 10_000

/** isPromise tells a promise from a plain value (of a synchronous store). */
export function isPromise<T>(value: MaybePromise<T>): value is Promise<T> {
  return typeof (value as Promise<T> | undefined)?.then === "function"
}

/** after applies fn now to a value, or when a promise settles. */
export function after<T, U>(
  value: MaybePromise<T>,
  fn: (v: T) => MaybePromise<U>,
): MaybePromise<U> {
  return isPromise(value) ? value.then(fn) : fn(value)
}

function wrap(error: unknown): StoreError {
  return error instanceof StoreError
    ? error
    : new StoreError(`store failed: ${(error as Error)?.message ?? String(error)}`, {
        cause: error,
      })
}

/** copy: a decision that shares nothing with `d` (a remembered one is handed out again). */
function copy(d: TieredDecision): TieredDecision {
  const tiers: TieredDecision["tiers"] = {}
  for (const [name, t] of Object.entries(d.tiers)) tiers[name] = { ...t }
  return { ...d, tiers }
}

/** refusal: a typed refusal (bad argument, unsupported), not the store failing. */
function refusal(error: unknown): boolean {
  return error instanceof TollgateError && !(error instanceof StoreError)
}

/** Checker makes a tiered limiter's calls to its store and counts the outcomes. */
export class Checker {
  readonly totals: Totals = {
    allowed: 0,
    denied: 0,
    shadowDenied: 0,
    blocked: 0,
    listedAllowed: 0,
    listedDenied: 0,
    duplicates: 0,
    storeErrors: 0,
    fallbacks: 0,
    failOpen: 0,
  }
  /** guard: set when the store is asynchronous. */
  readonly guard: StoreGuard | undefined
  private readonly store: Store
  private readonly fallback: Store | undefined
  private readonly mode: Runtime["onStoreError"]
  private readonly remembered = new Map<string, { decision: TieredDecision; expiresAt: number }>()

  constructor(r: Runtime) {
    this.store = r.store
    this.guard = r.guard
    this.fallback = r.fallback
    this.mode = r.onStoreError
  }

  /** decide makes the all-or-nothing check of the attempt's active entries. */
  decide(att: Attempt): MaybePromise<TieredDecision> {
    const active = att.dropped === 0 ? att.entries : att.entries.filter((e) => e.active)
    let r: MaybePromise<Decision[]>
    try {
      if (att.fallback) {
        const checks: Check[] = active.map((e) => ({
          namespace: e.slot.fallback!,
          key: e.key,
          cost: e.cost,
        }))
        r = this.fallback!.limitAll(checks, att.now)
      } else if (this.guard === undefined) {
        r = this.store.limitAll(active, att.now)
      } else {
        r = this.guard.run(() => this.store.limitAll(active, att.now))
      }
    } catch (error) {
      return this.failed(error, att)
    }
    if (isPromise(r)) {
      return r.then(
        (results) => this.decided(att, active, results),
        (error) => this.failed(error, att),
      )
    }
    return this.decided(att, active, r)
  }

  private decided(
    att: Attempt,
    active: Entry[],
    results: readonly Decision[],
  ): MaybePromise<TieredDecision> {
    let denied = false
    let duplicate = false
    let shadowFailed = false
    for (let i = 0; i < active.length; i++) {
      const e = active[i]
      const d = results[i]
      e.result = d
      if (d.allowed) continue
      if (e.kind === "request-id") duplicate = true
      else if (e.kind === "tier" && e.limit!.shadow) shadowFailed = true
      else denied = true
    }
    if (duplicate) return this.duplicate(att)
    if (shadowFailed && !denied) {
      // Only shadow tiers said no: leave them out (enforcing, they would not have counted
      // this request either) and check the rest again.
      for (const e of active) {
        if (e.kind === "tier" && e.limit!.shadow && !e.result!.allowed) {
          e.active = false
          att.dropped++
        }
      }
      return this.decide(att)
    }
    const totals = this.totals
    if (!denied) {
      const d = outcome(att.entries, true, att.counters)
      if (att.fallback) d.degraded = "fallback"
      totals.allowed++
      if (att.dropped > 0) totals.shadowDenied++
      if (att.requestKey !== undefined) this.remember(att, d)
      return d
    }
    totals.denied++
    const started: Entry[] = []
    let blocked = false
    const entries = att.entries
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i]
      if (e.kind !== "penalty") continue
      // A penalty check sits just before its tier's check. A key already blocked does
      // not extend its block; a tier that denied now starts one, and this request is
      // answered as the first of the block (blocked, to wait the whole penalty).
      if (!e.result!.allowed) blocked = true
      else if (!entries[i + 1].result!.allowed) {
        started.push(e)
        const ms = e.tier!.penaltyMs
        e.result = decision(false, 1, 0, ms, ms)
      }
    }
    if (blocked) totals.blocked++
    const d = outcome(att.entries, false, att.counters)
    if (att.fallback) d.degraded = "fallback"
    if (started.length === 0) return d
    // Two tokens put the key one penalty period past empty: blocked for exactly that long.
    const calls = started.map(
      (p) => () => (att.fallback ? p.slot.fallback! : p.slot.ns).adjust(p.key, 2, att.now),
    )
    return after(this.each(att.fallback, calls, true), () => d)
  }

  private remember(att: Attempt, d: TieredDecision): void {
    const memory = this.remembered
    if (memory.size >= REMEMBERED) memory.delete(memory.keys().next().value!)
    memory.set(att.requestKey!, { decision: copy(d), expiresAt: att.now + att.requestWindowMs })
  }

  /**
   * duplicate answers a repeat of an admitted request id: the first decision when this
   * instance made it, else one built from the tiers' state now. Nothing is counted.
   */
  private duplicate(att: Attempt): TieredDecision {
    this.totals.allowed++
    this.totals.duplicates++
    const seen = this.remembered.get(att.requestKey!)
    const d =
      seen !== undefined && seen.expiresAt > att.now
        ? copy(seen.decision)
        : outcome(att.entries, true, undefined)
    d.duplicate = true
    return d
  }

  /** failed decides for a failed store call, as onStoreError says. */
  private failed(error: unknown, att: Attempt): MaybePromise<TieredDecision> {
    if (refusal(error)) throw error
    this.totals.storeErrors++
    if (att.fallback || this.mode === "closed") throw wrap(error)
    for (const e of att.entries) e.active = true
    att.dropped = 0
    if (this.mode === "fallback") {
      this.totals.fallbacks++
      att.fallback = true
      return this.decide(att)
    }
    this.totals.failOpen++
    this.totals.allowed++
    for (const e of att.entries) {
      const limit = e.limit?.policy.limit ?? 1
      e.result = decision(true, limit, whole(limit - e.cost), 0, 0)
    }
    const d = outcome(att.entries, true, att.counters)
    d.degraded = "open"
    return d
  }

  /**
   * each makes store calls that change state (penalties, settle, cancel, reset) and waits
   * for all of them. A failure is counted; it is thrown (as StoreError) only when
   * onStoreError is "closed" and the caller is not `quiet`.
   */
  each(
    fallback: boolean,
    calls: (() => MaybePromise<unknown>)[],
    quiet: boolean,
  ): MaybePromise<void> {
    const pending: Promise<unknown>[] = []
    let failure: { error: unknown } | undefined
    for (const call of calls) {
      try {
        const r = fallback || this.guard === undefined ? call() : this.guard.run(call)
        if (isPromise(r)) pending.push(r)
      } catch (error) {
        failure ??= { error }
      }
    }
    const done = (): void => {
      if (failure === undefined) return
      if (refusal(failure.error)) throw failure.error
      this.totals.storeErrors++
      if (!quiet && this.mode === "closed") throw wrap(failure.error)
    }
    if (pending.length === 0) return done()
    return Promise.allSettled(pending).then((settled) => {
      for (const s of settled) if (s.status === "rejected") failure ??= { error: s.reason }
      done()
    })
  }

  /** read makes one store read (peek); a failure is counted and thrown as StoreError. */
  read<T>(call: () => MaybePromise<T>): MaybePromise<T> {
    const failed = (error: unknown): never => {
      if (refusal(error)) throw error
      this.totals.storeErrors++
      throw wrap(error)
    }
    try {
      const r = this.guard === undefined ? call() : this.guard.run(call)
      return isPromise(r) ? r.catch(failed) : r
    } catch (error) {
      return failed(error)
    }
  }
}
