import type { Decision } from "../core/decision.js"
import type { Policy } from "../core/policy.js"
import type { Grant } from "../core/token-bucket.js"

export type { Grant }

/** MaybePromise is a value, or a promise of one from an asynchronous store. */
export type MaybePromise<T> = T | Promise<T>

/**
 * Store: where limiter state lives. A store hands out one Namespace per (prefix, policy
 * kind); two namespaces with the same prefix and kind share state. `synchronous` stores
 * (MemoryStore) answer every call directly; the others return promises.
 */
export interface Store {
  readonly synchronous: boolean
  namespace(prefix: string, policy: Policy, options?: NamespaceOptions): Namespace
  /**
   * limitAll admits every check or none (multi-tier limits). The checks are decided in
   * order, each seeing what earlier checks of the call on the same key took. When all
   * pass, each is consumed and every decision is allowed. Otherwise nothing is consumed
   * and the decisions are those of that run: for distinct keys, whether each check alone
   * would have passed. Checks name namespaces of this store.
   */
  limitAll(checks: readonly Check[], now: number): MaybePromise<Decision[]>
}

/** NamespaceOptions: how a namespace reads state that namespaces of other policies wrote. */
export interface NamespaceOptions {
  /**
   * shared: other namespaces of the prefix, with other policies of the kind, use the same
   * state by design (the plans of one tier). A token bucket written under another policy
   * then keeps the time at which it is full again, as the memory store always does,
   * instead of being converted to keep its fill fraction (what a limiter in another
   * process, on the policy before a setPolicy, needs).
   */
  shared?: boolean
}

/** Check: one part of an all-or-nothing decision. */
export interface Check {
  namespace: Namespace
  key: string
  cost: number
}

/**
 * Namespace: the state of one limiter. Every time is epoch ms; `now` is the limiter's clock
 * (a store with a clock of its own, like Redis, may use that instead). Calls arrive already
 * validated: keys are non-empty strings, costs finite, >= 0 and within the policy's limit.
 */
export interface Namespace {
  /** limit consumes `cost` if allowed. With `requestId`, a repeat of an admitted request within the policy's window returns the first decision and consumes nothing. */
  limit(key: string, cost: number, now: number, requestId?: string): MaybePromise<Decision>
  peek(key: string, now: number): MaybePromise<Decision>
  reset(key: string): MaybePromise<void>
  /** reserve (token bucket): commit `cost` for the earliest time within maxWaitMs. */
  reserve(key: string, cost: number, now: number, maxWaitMs: number): MaybePromise<Grant>
  /** cancel gives back a reservation that has not reached its executeAt. */
  cancel(key: string, cost: number, executeAt: number, now: number): MaybePromise<void>
  /** release ends a concurrency lease. */
  release(key: string, leaseId: string, now: number): MaybePromise<void>
  /** setPolicy switches to a new policy of the same kind, converting state (token bucket keeps its fill fraction). */
  setPolicy(policy: Policy, now: number): void
  /**
   * adjust charges `delta` cost units (a refund when negative) with no admission test, as
   * when an estimate is settled. Debt is bounded: the state never holds more than twice
   * the policy's limit, and a refund never makes a key fuller than full.
   */
  adjust(key: string, delta: number, now: number): MaybePromise<Decision>
  /** size is the number of keys with state, when the store knows it cheaply (else -1). */
  size(): number
}

/** SyncStore: a Store whose namespaces answer without promises. */
export interface SyncStore extends Store {
  readonly synchronous: true
  namespace(prefix: string, policy: Policy, options?: NamespaceOptions): SyncNamespace
  limitAll(checks: readonly Check[], now: number): Decision[]
}

export interface SyncNamespace extends Namespace {
  limit(key: string, cost: number, now: number, requestId?: string): Decision
  peek(key: string, now: number): Decision
  reset(key: string): void
  reserve(key: string, cost: number, now: number, maxWaitMs: number): Grant
  cancel(key: string, cost: number, executeAt: number, now: number): void
  release(key: string, leaseId: string, now: number): void
  setPolicy(policy: Policy, now: number): void
  adjust(key: string, delta: number, now: number): Decision
}
