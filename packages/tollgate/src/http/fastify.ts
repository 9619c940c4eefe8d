// tollgate/fastify: a Fastify plugin. It is registered without its own encapsulation
// context, so its hook covers the context it is registered in: the whole app at the top
// level, or only the routes of the plugin you register it inside.

import type { FastifyPluginAsync, FastifyRequest } from "fastify"
import { createRateLimit, mergeHeader, nodeHeader, type RateLimitOptions } from "./middleware.js"

export interface FastifyRateLimitOptions<K = string> extends RateLimitOptions<FastifyRequest, K> {
  /** hook: "onRequest" (default, before the body is read) or "preHandler" (when cost needs the parsed body). */
  hook?: "onRequest" | "preHandler"
}

/**
 * rateLimit is a Fastify plugin. The client address is the socket's (Fastify's
 * `trustProxy` is not consulted: set `trustedProxies` here).
 *
 * @example
 * await app.register(rateLimit, { limiter: createLimiter({ policy: tokenBucket({ rate: 10 }) }) })
 */
export const rateLimit: FastifyPluginAsync<FastifyRateLimitOptions<unknown>> = async (
  fastify,
  options,
) => {
  const check = createRateLimit(options)
  fastify.addHook(options.hook ?? "onRequest", async (request, reply) => {
    const outcome = await check(request, {
      address: request.raw.socket?.remoteAddress,
      header: (name) => nodeHeader(request.headers, name),
    })
    const set = (headers: Record<string, string>) => {
      for (const [name, value] of Object.entries(headers)) {
        reply.header(name, mergeHeader(name, reply.getHeader(name), value))
      }
    }
    if (outcome.reply !== undefined) {
      set(outcome.reply.headers)
      reply.code(outcome.reply.status).send(outcome.reply.body)
      return reply
    }
    set(outcome.headers)
    if (outcome.release !== undefined) reply.raw.once("close", outcome.release)
  })
}

// Fastify reads this symbol: run the plugin in the caller's context (what fastify-plugin does).
Object.assign(rateLimit, {
  [Symbol.for("skip-override")]: true,
  [Symbol.for("fastify.display-name")]: "tollgate-rate-limit",
})

export default rateLimit

export type { ClientInfo, Limitable, ReplyInit } from "./middleware.js"
