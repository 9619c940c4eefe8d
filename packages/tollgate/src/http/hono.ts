// tollgate/hono: rate-limit middleware for Hono. Hono runs on many runtimes, and how to
// read the client's address differs between them, so it is an option: by default the
// @hono/node-server socket; elsewhere pass `address` (e.g. from hono's getConnInfo).

import type { Context, MiddlewareHandler } from "hono"
import { createRateLimit, mergeHeader, type RateLimitOptions } from "./middleware.js"

export interface HonoRateLimitOptions<K = string> extends RateLimitOptions<Context, K> {
  /** address: the socket peer's address; default the @hono/node-server incoming socket. */
  address?: (c: Context) => string | undefined
}

interface NodeBindings {
  incoming?: { socket?: { remoteAddress?: string } }
  server?: { incoming?: { socket?: { remoteAddress?: string } } }
}

/** nodeServerAddress reads the peer address @hono/node-server puts in the env bindings. */
function nodeServerAddress(c: Context): string | undefined {
  const env = c.env as NodeBindings | undefined
  return (env?.incoming ?? env?.server?.incoming)?.socket?.remoteAddress
}

/**
 * rateLimiter returns Hono middleware. Denied requests get 429 without running the
 * handler; admitted ones run it and get the RateLimit headers on their response (added
 * to any RateLimit fields an inner limiter set). A concurrency lease is released when the
 * handler returns, before a streamed body ends.
 *
 * @example app.use(rateLimiter({ limiter }))
 */
export function rateLimiter<K = string>(options: HonoRateLimitOptions<K>): MiddlewareHandler {
  const check = createRateLimit(options)
  const address = options.address ?? nodeServerAddress
  return async function tollgateRateLimiter(c, next) {
    const outcome = await check(c, { address: address(c), header: (name) => c.req.header(name) })
    if (outcome.reply !== undefined) {
      const { status, headers, body } = outcome.reply
      return new Response(body === "" ? null : body, { status, headers })
    }
    try {
      await next()
    } finally {
      outcome.release?.()
    }
    for (const [name, value] of Object.entries(outcome.headers)) {
      c.header(name, mergeHeader(name, c.res.headers.get(name), value))
    }
  }
}

export type { ClientInfo, Limitable, ReplyInit } from "./middleware.js"
