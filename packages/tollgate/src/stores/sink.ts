import type { Decision } from "../core/decision.js"
import type { Namespace } from "./store.js"

// The fast path between a limiter and an asynchronous store: instead of returning a
// promise that the guard and the limiter each wrap in one of their own, a store that
// supports it hands its answer to a Sink, an object the caller made for this one call.
// One promise per limit() call remains: the one the caller gets.

/**
 * Sink receives the answer of one asynchronous store call. The store calls exactly one of
 * its methods, once; either may run before the call that started it has returned.
 */
export interface Sink<T> {
  resolve(value: T): void
  reject(error: unknown): void
}

/** limitInto: the key of the optional Namespace method that answers limit() into a Sink. */
export const limitInto: unique symbol = Symbol("tollgate.limitInto")

/**
 * SinkNamespace: a Namespace with the fast path. `ns[limitInto](sink, ...)` does what
 * `ns.limit(...)` does, answering `sink` instead of returning a promise.
 */
export interface SinkNamespace extends Namespace {
  [limitInto](
    sink: Sink<Decision>,
    key: string,
    cost: number,
    now: number,
    requestId: string | undefined,
  ): void
}

/** hasSink tells whether a namespace offers the fast path. */
export function hasSink(ns: Namespace): ns is SinkNamespace {
  return typeof (ns as Partial<SinkNamespace>)[limitInto] === "function"
}
