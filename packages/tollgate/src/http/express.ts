// tollgate/express: rate-limit middleware for Express (4 and 5). Express's request and
// response are node's, so this is the node adapter plus `next`.

import type { NextFunction, Request, RequestHandler, Response } from "express"
import { createRateLimit, type RateLimitOptions } from "./middleware.js"
import { applyOutcome, nodeView } from "./node.js"

export type ExpressRateLimitOptions<K = string> = RateLimitOptions<Request, K>

/**
 * rateLimit returns Express middleware. Admitted requests continue with RateLimit headers
 * set; denied ones get 429. The client address is the socket's (Express's `trust proxy`
 * setting is not consulted: set `trustedProxies` here). Errors from your option functions
 * go to `next(error)`.
 *
 * @example
 * app.use(rateLimit({ limiter: createLimiter({ policy: tokenBucket({ rate: 10, burst: 20 }) }) }))
 */
export function rateLimit<K = string>(options: ExpressRateLimitOptions<K>): RequestHandler {
  const check = createRateLimit(options)
  return function tollgateRateLimit(req: Request, res: Response, next: NextFunction) {
    check(req, nodeView(req)).then((outcome) => {
      if (applyOutcome(outcome, res)) next()
    }, next)
  }
}

export type { ClientInfo, Limitable, ReplyInit } from "./middleware.js"
