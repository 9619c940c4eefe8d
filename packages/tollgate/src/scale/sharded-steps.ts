import type { MaybePromise } from "../stores/store.js"

// A sharded operation is written once, as a generator that yields batches of store calls
// and receives their results; the calls of one batch touch different shards and may run
// at once. runSync drives it over a synchronous store (MemoryStore): each call answers
// directly and the whole operation returns a value. runAsync drives it over an
// asynchronous store (Redis): a batch is one round trip, its calls in flight together.

/** Call: one store call, not yet made. */
export type Call = () => MaybePromise<unknown>

/** Steps: an operation as a generator of batches of calls, returning R. */
export type Steps<R> = Generator<Call[], R, unknown[]>

/** Settled: a call's outcome, when its failure must not abort the batch. */
export type Settled<T> = { ok: true; value: T } | { ok: false; error: unknown }

function isPromise<T>(value: MaybePromise<T>): value is Promise<T> {
  return typeof (value as Promise<T> | undefined)?.then === "function"
}

/** all makes the calls (at once, on an asynchronous store) and returns their results. */
export function* all<T>(calls: (() => MaybePromise<T>)[]): Steps<T[]> {
  if (calls.length === 0) return []
  return (yield calls) as T[]
}

/** one makes a single call. */
export function* one<T>(call: () => MaybePromise<T>): Steps<T> {
  return ((yield [call]) as T[])[0]
}

const succeeded = <T>(value: T): Settled<T> => ({ ok: true, value })
const failed = <T>(error: unknown): Settled<T> => ({ ok: false, error })

/** settled wraps a call so that its failure becomes a value instead of failing the batch. */
export function settled<T>(call: () => MaybePromise<T>): () => MaybePromise<Settled<T>> {
  return () => {
    try {
      const value = call()
      return isPromise(value) ? value.then(succeeded<T>, failed<T>) : succeeded(value)
    } catch (error) {
      return failed<T>(error)
    }
  }
}

/** runSync drives steps whose calls all answer directly. */
export function runSync<R>(steps: Steps<R>): R {
  let step = steps.next()
  while (!step.done) {
    let results: unknown[]
    try {
      results = step.value.map((call) => call())
    } catch (error) {
      step = steps.throw(error)
      continue
    }
    step = steps.next(results)
  }
  return step.value
}

/** runAsync drives steps over an asynchronous store: one batch per round trip. */
export async function runAsync<R>(steps: Steps<R>): Promise<R> {
  let step = steps.next()
  while (!step.done) {
    let results: unknown[]
    try {
      const calls = step.value
      results = calls.length === 1 ? [await calls[0]()] : await Promise.all(calls.map((c) => c()))
    } catch (error) {
      step = steps.throw(error)
      continue
    }
    step = steps.next(results)
  }
  return step.value
}
