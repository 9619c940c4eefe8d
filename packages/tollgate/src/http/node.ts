// tollgate/node: rate limiting for a plain node:http server.

import type { IncomingMessage, ServerResponse } from "node:http"
import {
  createRateLimit,
  mergeHeader,
  nodeHeader,
  type Outcome,
  type RateLimitOptions,
  type RequestView,
} from "./middleware.js"

export type NodeRateLimitOptions<K = string> = RateLimitOptions<IncomingMessage, K>

/** nodeView reads the socket address and headers of a node request (Express's too). */
export function nodeView(req: IncomingMessage): RequestView {
  return { address: req.socket?.remoteAddress, header: (name) => nodeHeader(req.headers, name) }
}

/**
 * applyOutcome writes an Outcome to a node response: the reply (returns false: the
 * request is answered) or the headers (returns true: run the handler). RateLimit fields
 * already set by another limiter are extended, not replaced. A concurrency lease is
 * released when the response closes.
 */
export function applyOutcome(outcome: Outcome, res: ServerResponse): boolean {
  const set = (headers: Record<string, string>) => {
    for (const [name, value] of Object.entries(headers)) {
      res.setHeader(name, mergeHeader(name, res.getHeader(name), value))
    }
  }
  if (outcome.reply !== undefined) {
    res.statusCode = outcome.reply.status
    set(outcome.reply.headers)
    res.end(outcome.reply.body)
    return false
  }
  set(outcome.headers)
  if (outcome.release !== undefined) res.once("close", outcome.release)
  return true
}

/**
 * rateLimit returns a gate for node:http: `await gate(req, res)` is true when the request
 * may proceed (rate-limit headers are already set on `res`), false when the gate has
 * answered it (429, 503, or the no-identity error).
 *
 * @example
 * const gate = rateLimit({ limiter })
 * http.createServer(async (req, res) => { if (await gate(req, res)) res.end("ok") })
 */
export function rateLimit<K = string>(
  options: NodeRateLimitOptions<K>,
): (req: IncomingMessage, res: ServerResponse) => Promise<boolean> {
  const check = createRateLimit(options)
  return async (req, res) => applyOutcome(await check(req, nodeView(req)), res)
}

/**
 * rateLimited wraps a node:http request handler so it runs only for admitted requests.
 * An error thrown by your option functions (key, cost, skip...) or by the limiter, other
 * than StoreError, answers 500 and goes to `onError` when given.
 *
 * @example http.createServer(rateLimited((req, res) => res.end("ok"), { limiter }))
 */
export function rateLimited<K = string>(
  handler: (req: IncomingMessage, res: ServerResponse) => unknown,
  options: NodeRateLimitOptions<K> & { onError?: (error: unknown, req: IncomingMessage) => void },
): (req: IncomingMessage, res: ServerResponse) => void {
  const gate = rateLimit(options)
  return (req, res) => {
    gate(req, res).then(
      (proceed) => (proceed ? handler(req, res) : undefined),
      (error: unknown) => {
        options.onError?.(error, req)
        if (!res.headersSent) {
          res.statusCode = 500
          res.setHeader("Content-Type", "application/problem+json")
          res.end(
            JSON.stringify({ type: "about:blank", title: "Internal Server Error", status: 500 }),
          )
        } else {
          res.destroy()
        }
      },
    )
  }
}

export type { ClientInfo, Limitable, ReplyInit } from "./middleware.js"
