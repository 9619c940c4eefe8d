// throttledFetch: a fetch that waits its turn and tells the adaptive limiter how it went.

import { ConfigError, describe } from "../errors.js"
import {
  type AdaptiveLimiter,
  type AdaptiveLimiterOptions,
  adaptiveLimiter,
  type Slot,
} from "./adaptive.js"
import type { ResponseLike } from "./upstream-signals.js"

/** FetchLike is any fetch-shaped function: the global fetch, undici's, a test double. */
export type FetchLike<I, N, R extends ResponseLike> = (input: I, init?: N) => Promise<R>

/** FetchSlot is a reserved call of a batch; `fetch` waits for the slot's turn, then calls. */
export interface FetchSlot<I, N, R extends ResponseLike> extends Slot {
  fetch(input: I, init?: N): Promise<R>
}

/** ThrottledFetch has the wrapped fetch's signature, plus batch reservations. */
export interface ThrottledFetch<I, N, R extends ResponseLike> {
  (input: I, init?: N): Promise<R>
  /** limiter: the adaptive limiter pacing the calls. */
  readonly limiter: AdaptiveLimiter
  /** reserve books `count` calls, after everyone already waiting; run each with `slot.fetch`. */
  reserve(count: number, options?: { signal?: AbortSignal }): Promise<FetchSlot<I, N, R>[]>
}

export type ThrottledFetchOptions = { limiter: AdaptiveLimiter } | AdaptiveLimiterOptions

type WithSignal = { signal?: AbortSignal | null } | undefined

/**
 * throttledFetch wraps a fetch function so every call waits its turn (first come, first
 * served) on an adaptive limiter, and every response feeds the limiter back: 429 / 503,
 * Retry-After and the rate-limit headers slow it down or pause it, successes speed it up.
 * Pass `{ limiter }` to share one limiter among several wrappers, or the adaptiveLimiter
 * options to make one. Responses are returned as they came, 429s included (retry them
 * yourself: the retry waits its turn like any call). `init.signal` also aborts the wait.
 *
 * @example
 * const api = throttledFetch(fetch, { initialRate: 5, minRate: 1, maxRate: 50 })
 * const res = await api("https://api.example.com/items/1")
 */
export function throttledFetch<I, N extends WithSignal, R extends ResponseLike>(
  fetch: FetchLike<I, N, R>,
  options: ThrottledFetchOptions,
): ThrottledFetch<I, N, R> {
  if (typeof fetch !== "function") {
    throw new ConfigError("throttledFetch", `expected a fetch function, got ${describe(fetch)}`)
  }
  if (typeof options !== "object" || options === null) {
    throw new ConfigError("throttledFetch", `expected an options object, got ${describe(options)}`)
  }
  const limiter = "limiter" in options ? options.limiter : adaptiveLimiter(options)
  if (typeof limiter?.acquire !== "function" || typeof limiter.feedback !== "function") {
    throw new ConfigError("limiter", `expected an adaptiveLimiter(), got ${describe(limiter)}`)
  }

  async function call(input: I, init: N | undefined): Promise<R> {
    const startedAt = limiter.clock.now()
    const response = await fetch(input, init)
    limiter.feedback(response, startedAt)
    return response
  }

  const throttled = async (input: I, init?: N): Promise<R> => {
    await limiter.acquire({ signal: init?.signal ?? undefined })
    return call(input, init)
  }

  return Object.assign(throttled, {
    limiter,
    async reserve(count: number, opts?: { signal?: AbortSignal }) {
      const slots = await limiter.reserve(count, opts)
      return slots.map((slot) => ({
        ...slot,
        ready: slot.ready,
        cancel: slot.cancel,
        async fetch(input: I, init?: N) {
          await slot.ready()
          return call(input, init)
        },
      }))
    },
  })
}
