// GET /v1/auth: a decision for a reverse proxy's sub-request (nginx `auth_request`, or any
// forward-auth hook). 204 when allowed, 429 with Retry-After when not, RateLimit headers
// on both. The key is the first configured header the request carries, else the client
// address the proxy reports; the two kinds of key never meet (`h:` and `ip:` prefixes).
// A concurrency policy is refused (400 ERR_UNSUPPORTED here, and as nginx.policy by the
// config): a proxy's sub-request has no "done" call, so its lease could never be released.

import type { FastifyInstance } from "fastify"
import { clientAddress, type Decision } from "../lib.js"
import type { Decider } from "../service.js"
import { decisionHeaders } from "./decision-json.js"
import { atField, CODES, HttpError } from "./errors.js"

const METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] as const

export function authRequestRoute(app: FastifyInstance, decider: Decider): void {
  // In a scope of its own: the endpoint reads no body, and a proxy may forward the
  // client's (of any type), so every body is accepted here and left unread.
  app.register(async (scope) => {
    scope.removeAllContentTypeParsers()
    scope.addContentTypeParser("*", (_request, payload, done) => {
      payload.resume()
      done(null, undefined)
    })
    route(scope, decider)
  })
}

function route(app: FastifyInstance, decider: Decider): void {
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
      // Only ?policy can name one: the config refuses a concurrency nginx.policy.
      if (e.policy.kind === "concurrency") {
        throw new HttpError(
          400,
          "ERR_UNSUPPORTED",
          `policy "${name}" is a concurrency policy: /v1/auth has no way to release the lease it would take; use a rate policy here, or /v1/limit and DELETE /v1/leases/:id`,
          "query.policy",
        )
      }
      let key: string | undefined
      let keyHeader: string | undefined
      for (const header of settings?.keyHeaders ?? []) {
        const v = request.headers[header]
        const value = Array.isArray(v) ? v[0] : v
        if (value !== undefined && value !== "") {
          key = `h:${header}:${value}`
          keyHeader = header
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
      let d: Decision
      try {
        d = await decider.limit(e, key, cost, undefined, "auth")
      } catch (error) {
        throw atField(error, (argument) =>
          argument === "cost"
            ? "query.cost"
            : argument === "key" && keyHeader !== undefined
              ? `headers.${keyHeader}`
              : undefined,
        )
      }
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
