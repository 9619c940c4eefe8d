// GET /v1/auth: a decision for a reverse proxy's sub-request (nginx `auth_request`, or any
// forward-auth hook). 204 when allowed, 429 with Retry-After when not, RateLimit headers
// on both. The key is the first configured header the request carries, else the client
// address the proxy reports; the two kinds of key never meet (`h:` and `ip:` prefixes).

import type { FastifyInstance } from "fastify"
import { clientAddress } from "../lib.js"
import type { Decider } from "../service.js"
import { decisionHeaders } from "./decision-json.js"
import { CODES, HttpError } from "./errors.js"

const METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] as const

export function authRequestRoute(app: FastifyInstance, decider: Decider): void {
  app.route<{ Querystring: { policy?: string; cost?: string } }>({
    method: [...METHODS],
    url: "/v1/auth",
    config: { access: "decision" },
    schema: {
      querystring: {
        type: "object",
        additionalProperties: false,
        properties: {
          policy: { type: "string", minLength: 1, maxLength: 64 },
          cost: { type: "string", pattern: "^[0-9]+(\\.[0-9]+)?$" },
        },
      },
    },
    handler: async (request, reply) => {
      const limits = decider.limits
      const settings = limits.nginx
      const name = request.query.policy ?? settings?.policy
      if (name === undefined) {
        throw new HttpError(
          400,
          "ERR_ARGUMENT",
          "no policy: give ?policy=<name> or an nginx.policy in the config",
          "query.policy",
        )
      }
      const e = limits.policies.get(name)
      if (e === undefined) {
        throw new HttpError(404, CODES.notFound, `unknown policy "${name}"`, "query.policy")
      }
      let key: string | undefined
      for (const header of settings?.keyHeaders ?? []) {
        const v = request.headers[header]
        const value = Array.isArray(v) ? v[0] : v
        if (value !== undefined && value !== "") {
          key = `h:${header}:${value}`
          break
        }
      }
      if (key === undefined) {
        const forwardedHeader = settings?.forwardedHeader ?? "x-forwarded-for"
        const fwd = request.headers[forwardedHeader]
        const address = clientAddress(
          request.raw.socket.remoteAddress,
          Array.isArray(fwd) ? fwd.join(",") : fwd,
          { trustedProxies: settings?.trustedProxies ?? 1, forwardedHeader },
        )
        if (address === undefined) {
          throw new HttpError(
            400,
            "ERR_ARGUMENT",
            `no key: none of the key headers is set and ${forwardedHeader} does not name a client address`,
          )
        }
        key = `ip:${address}`
      }
      const cost = request.query.cost === undefined ? undefined : Number(request.query.cost)
      const d = await decider.limit(e, key, cost, undefined, "auth")
      reply.headers(decisionHeaders(e.name, e.policyHeader, d))
      reply.code(d.allowed ? 204 : 429)
      if (d.allowed) return reply.send()
      return {
        error: {
          code: "ERR_RATE_LIMITED",
          message: "rate limited",
          retryAfterMs: Math.ceil(d.retryAfterMs),
        },
      }
    },
  })
}
