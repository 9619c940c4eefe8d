// The one implementation behind every framework adapter. An adapter gives it the
// framework's request plus a RequestView (socket address, header lookup); it answers with
// an Outcome: the headers to set, and either nothing more (run the handler) or a reply to
// send instead. Adapters only translate; every decision is made here.

import { type Clock, systemClock } from "../clock.js"
import type { Decision } from "../core/decision.js"
import { ConfigError, describe, StoreError } from "../errors.js"
import {
  checkForwardedHeader,
  checkTrustedProxies,
  clientAddress,
  type ForwardedHeader,
} from "./client-address.js"
import {
  DEGRADED_HEADER,
  describePolicy,
  legacyRateLimitHeaders,
  type PolicyShape,
  rateLimitHeader,
  rateLimitPolicyHeader,
  retryAfterHeader,
} from "./headers.js"
import { checkIpv6Prefix, ipKey } from "./ip.js"

type MaybePromise<T> = T | Promise<T>

/**
 * Limitable is what the middleware needs from a limiter: `limit(key, { cost })` answering a
 * Decision, directly or as a promise. A Limiter from createLimiter fits (its `policy` is
 * used for RateLimit-Policy), and so does a multi-tier limiter whose key is a request
 * object (give a `key` function that builds it).
 */
export interface Limitable<K = string> {
  limit(key: K, options?: { cost?: number }): MaybePromise<Decision>
  readonly policy?: PolicyShape
}

/** ClientInfo is what the middleware knows about the caller before your key function runs. */
export interface ClientInfo {
  /** address: the client's IP (canonical; IPv4-mapped IPv6 as IPv4), or undefined when unknown. */
  address: string | undefined
  /** key: the default key: the address, IPv6 grouped to its `/ipv6Prefix` network. */
  key: string | undefined
}

/** ReplyInit describes a custom response. An object body is sent as JSON, a string as text. */
export interface ReplyInit {
  status?: number
  headers?: Record<string, string>
  body?: unknown
}

/** Reply is a response ready to send: the body already encoded. */
export interface Reply {
  status: number
  headers: Record<string, string>
  body: string
}

/**
 * Outcome is the middleware's answer for one request: `headers` to set on the response,
 * and either no `reply` (run the handler) or a `reply` to send instead. `release`, when
 * set, must be called once the response is finished (it ends a concurrency lease).
 */
export interface Outcome {
  headers: Record<string, string>
  reply?: Reply
  release?: () => void
}

/** RequestView is what an adapter reads from the framework's request. */
export interface RequestView {
  /** address: the socket peer's address as the runtime reports it. */
  address: string | undefined
  /** header: one request header's value, repeated lines joined with ", ". */
  header(name: string): string | undefined
}

export interface RateLimitOptions<Req, K = string> {
  /** limiter: a Limiter (createLimiter) or anything Limitable. */
  limiter: Limitable<K>
  /**
   * key: the rate-limit key of a request; default the client address (`client.key`).
   * Returning undefined, null or "" means "no usable identity": the `noKey` reply is sent,
   * the request is never counted under a shared key.
   */
  key?: (request: Req, client: ClientInfo) => MaybePromise<K | undefined | null>
  /** cost: units this request takes; default 1. */
  cost?: (request: Req) => MaybePromise<number>
  /** skip: return true to let a request through unlimited and without headers. */
  skip?: (request: Req) => MaybePromise<boolean>
  /** deny: the response for a denied request; default 429 with a problem+json body. */
  deny?: (request: Req, decision: Decision) => MaybePromise<ReplyInit>
  /** noKey: the response when a request has no usable identity; default 500 with a problem+json body. */
  noKey?: (request: Req) => MaybePromise<ReplyInit>
  /** unavailable: the response when the limiter throws StoreError (fail closed); default 503. */
  unavailable?: (request: Req, error: StoreError) => MaybePromise<ReplyInit>
  /** policyName: the policy's name in RateLimit-Policy / RateLimit; default "default" (or the denying tier). */
  policyName?: string
  /** standardHeaders: send RateLimit-Policy and RateLimit; default true. */
  standardHeaders?: boolean
  /** legacyHeaders: also send X-RateLimit-Limit, -Remaining, -Reset; default false. */
  legacyHeaders?: boolean
  /** trustedProxies: proxies of yours in front of the app; default 0 (the socket peer is the client). */
  trustedProxies?: number
  /** forwardedHeader: the header those proxies append to; default "x-forwarded-for". */
  forwardedHeader?: ForwardedHeader
  /** ipv6Prefix: IPv6 clients are grouped by this many leading bits; default 56. */
  ipv6Prefix?: number
  /** clock: epoch-ms clock for X-RateLimit-Reset; default systemClock. */
  clock?: Clock
}

/** RateLimitCheck runs the middleware for one request. */
export type RateLimitCheck<Req> = (request: Req, view: RequestView) => Promise<Outcome>

const QUOTA_EXCEEDED = "https://iana.org/assignments/http-problem-types#quota-exceeded"
const PROBLEM = "application/problem+json"

function printable(name: string): string {
  return name.replace(/[^\x20-\x7e]/g, "_")
}

function optionalFunction(options: object, name: string): void {
  const value = (options as Record<string, unknown>)[name]
  if (value !== undefined && typeof value !== "function") {
    throw new ConfigError(name, `expected a function, got ${describe(value)}`)
  }
}

/** encode turns a ReplyInit into a Reply, over the headers the middleware already chose. */
function encode(init: ReplyInit, status: number, base: Record<string, string>): Reply {
  const headers: Record<string, string> = { ...base }
  for (const [name, value] of Object.entries(init.headers ?? {})) {
    for (const existing of Object.keys(headers)) {
      if (existing.toLowerCase() === name.toLowerCase()) delete headers[existing]
    }
    headers[name] = value
  }
  const hasType = Object.keys(headers).some((n) => n.toLowerCase() === "content-type")
  let body: string
  if (typeof init.body === "string") {
    body = init.body
    if (!hasType) headers["Content-Type"] = "text/plain; charset=utf-8"
  } else if (init.body === undefined) {
    body = ""
  } else {
    body = JSON.stringify(init.body)
    if (!hasType) headers["Content-Type"] = "application/json; charset=utf-8"
  }
  return { status: init.status ?? status, headers, body }
}

function problem(status: number, title: string, detail: string, extra: object = {}): ReplyInit {
  return {
    status,
    headers: { "Content-Type": PROBLEM },
    body: { type: "about:blank", title, status, detail, ...extra },
  }
}

/**
 * createRateLimit builds the shared middleware check from options (validated here, with
 * ConfigError naming the bad field). Concurrent requests are independent: each runs its
 * own `limit` call, and the limiter decides their order.
 *
 * @example
 * const check = createRateLimit({ limiter })
 * const outcome = await check(req, { address: req.socket.remoteAddress, header: (n) => ... })
 */
export function createRateLimit<Req, K = string>(
  options: RateLimitOptions<Req, K>,
): RateLimitCheck<Req> {
  if (typeof options !== "object" || options === null) {
    throw new ConfigError("rateLimit", `expected an options object, got ${describe(options)}`)
  }
  const limiter = options.limiter
  if (typeof limiter !== "object" || limiter === null || typeof limiter.limit !== "function") {
    throw new ConfigError(
      "limiter",
      `expected a limiter with limit(key, { cost }), got ${describe(limiter)}`,
    )
  }
  for (const name of ["key", "cost", "skip", "deny", "noKey", "unavailable"]) {
    optionalFunction(options, name)
  }
  const proxies = {
    trustedProxies: checkTrustedProxies(options.trustedProxies),
    forwardedHeader: checkForwardedHeader(options.forwardedHeader),
  }
  const ipv6Prefix = checkIpv6Prefix(options.ipv6Prefix)
  const policyName = options.policyName ?? "default"
  if (typeof policyName !== "string" || !/^[\x20-\x7e]{1,64}$/.test(policyName)) {
    throw new ConfigError(
      "policyName",
      `expected 1 to 64 printable ASCII characters, got ${describe(policyName)}`,
    )
  }
  const standard = options.standardHeaders ?? true
  const legacy = options.legacyHeaders ?? false
  const clock = options.clock ?? systemClock

  function headersFor(d: Decision): Record<string, string> {
    const headers: Record<string, string> = {}
    if (standard) {
      const name = printable(d.tier ?? policyName)
      const policy = limiter.policy
      const description =
        d.tier === undefined && policy !== undefined
          ? describePolicy(policy, name, clock.now())
          : { name, quota: Math.floor(d.limit + 1e-9) }
      headers["RateLimit-Policy"] = rateLimitPolicyHeader([description])
      headers.RateLimit = rateLimitHeader(name, d)
    }
    if (legacy) Object.assign(headers, legacyRateLimitHeaders(d, clock.now()))
    if (d.degraded !== undefined) headers[DEGRADED_HEADER] = d.degraded
    return headers
  }

  return async (request, view) => {
    if (options.skip !== undefined && (await options.skip(request))) return { headers: {} }
    const address = clientAddress(view.address, view.header(proxies.forwardedHeader), proxies)
    const client: ClientInfo = {
      address,
      key: address === undefined ? undefined : ipKey(address, ipv6Prefix),
    }
    const key =
      options.key === undefined ? (client.key as K | undefined) : await options.key(request, client)
    if (key === undefined || key === null || (key as unknown) === "") {
      const init = options.noKey
        ? await options.noKey(request)
        : problem(
            500,
            "Internal Server Error",
            options.key === undefined
              ? "The client address could not be determined, so the request cannot be rate limited (check trustedProxies and forwardedHeader)."
              : "The rate-limit key function gave no key for this request.",
          )
      return { headers: {}, reply: encode(init, 500, {}) }
    }
    const cost = options.cost === undefined ? 1 : await options.cost(request)
    let d: Decision
    try {
      d = await limiter.limit(key, { cost })
    } catch (error) {
      if (!(error instanceof StoreError)) throw error
      const init = options.unavailable
        ? await options.unavailable(request, error)
        : problem(503, "Service Unavailable", "The rate limiter's store is unavailable.", {
            code: error.code,
          })
      return { headers: {}, reply: encode(init, 503, { [DEGRADED_HEADER]: "closed" }) }
    }
    const headers = headersFor(d)
    if (d.allowed) {
      const lease = d.lease
      if (lease === undefined) return { headers }
      return {
        headers,
        release: () => {
          const r = lease.release()
          if (r instanceof Promise) r.catch(() => {})
        },
      }
    }
    const retryAfter = retryAfterHeader(d)
    if (retryAfter !== undefined) headers["Retry-After"] = retryAfter
    const init = options.deny
      ? await options.deny(request, d)
      : {
          status: 429,
          headers: { "Content-Type": PROBLEM },
          body: {
            type: QUOTA_EXCEEDED,
            title: "Too Many Requests",
            status: 429,
            detail:
              retryAfter === undefined
                ? "Rate limit exceeded."
                : `Rate limit exceeded; retry after ${retryAfter} s.`,
            "violated-policies": [printable(d.tier ?? policyName)],
          },
        }
    return { headers, reply: encode(init, 429, headers) }
  }
}

/**
 * mergeHeader gives the value to set for `name` on a response that already has `existing`:
 * RateLimit and RateLimit-Policy are Lists, so a second limiter in front of the same route
 * adds its items; every other header is replaced.
 */
export function mergeHeader(name: string, existing: unknown, value: string): string {
  const lower = name.toLowerCase()
  if ((lower === "ratelimit" || lower === "ratelimit-policy") && existing) {
    return `${String(existing)}, ${value}`
  }
  return value
}

/** nodeHeader reads one header from node's IncomingHttpHeaders (lowercase names). */
export function nodeHeader(
  headers: Record<string, string | string[] | undefined>,
  name: string,
): string | undefined {
  const value = headers[name]
  return Array.isArray(value) ? value.join(", ") : value
}
