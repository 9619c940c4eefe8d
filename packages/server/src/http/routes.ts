// The decision endpoints under /v1: limit (single and batch), the multi-tier check,
// acquire with a bounded wait, reserve and cancel, peek, reset and lease release.
// Bodies are checked by JSON schemas before a handler runs; a handler checks what a
// schema cannot (the policy exists, the cost fits it) before anything is consumed.
// A concurrency policy's lease gets an id of the server's own (a random UUID): the
// store's lease ids are only unique within one policy, so the server keeps the map from
// its id to the lease it names, and DELETE /v1/leases/:id ends exactly that lease.

import { randomUUID } from "node:crypto"
import type { FastifyInstance, FastifyReply } from "fastify"
import {
  ArgumentError,
  type Clock,
  ConfigError,
  type Decision,
  parseDuration,
  type Reservation,
  rateLimitPolicyHeader,
  type TieredDecision,
  UnsupportedError,
} from "../lib.js"
import { type Enforced, MAX_KEY_LENGTH } from "../limits.js"
import type { Decider } from "../service.js"
import type { Access } from "./bearer.js"
import { decisionHeaders, decisionJson, tieredJson } from "./decision-json.js"
import { atField, CODES, HttpError, inBody } from "./errors.js"

export interface RouteOptions {
  decider: Decider
  clock: Clock
  maxBatch: number
  maxWaitMs: number
  /** waits: the AbortControllers of acquire calls waiting now (aborted at shutdown). */
  waits: Set<AbortController>
}

// MAX_KEY_LENGTH (limits.ts) is checked in the schema too, so that a batch with a long
// key is refused before any of it is decided.

type Lease = NonNullable<Decision["lease"]>

const key = { type: "string", minLength: 1, maxLength: MAX_KEY_LENGTH } as const
const policy = { type: "string", minLength: 1, maxLength: 64 } as const
const cost = { type: "number", minimum: 0 } as const
const requestId = { type: "string", minLength: 1, maxLength: 512 } as const
const wait = {
  anyOf: [
    { type: "number", minimum: 0 },
    { type: "string", maxLength: 32 },
  ],
}

const limitItem = {
  type: "object",
  required: ["policy", "key"],
  additionalProperties: false,
  properties: { policy, key, cost, requestId },
} as const

const decisionSchema = {
  type: "object",
  properties: {
    allowed: { type: "boolean" },
    limit: { type: "number" },
    remaining: { type: "number" },
    retryAfterMs: { type: "number" },
    resetAfterMs: { type: "number" },
    policy: { type: "string" },
    degraded: { type: "string" },
    lease: {
      type: "object",
      properties: { id: { type: "string" }, expiresAt: { type: "number" } },
    },
  },
} as const

function config(access: Access) {
  return { access }
}

/** Tracked: reservations and leases that a later DELETE may end, until they lapse. */
class Tracked<T> {
  readonly #items = new Map<string, { item: T; until: number }>()
  constructor(private readonly now: () => number) {}

  add(id: string, item: T, until: number): void {
    if (this.#items.size >= 10_000) this.sweep()
    this.#items.set(id, { item, until })
  }

  has(id: string): boolean {
    return this.#items.has(id)
  }

  take(id: string): T | undefined {
    const entry = this.#items.get(id)
    if (entry === undefined) return undefined
    this.#items.delete(id)
    return entry.until > this.now() ? entry.item : undefined
  }

  sweep(): void {
    const now = this.now()
    for (const [id, e] of this.#items) if (e.until <= now) this.#items.delete(id)
  }
}

/**
 * Leases: the leases handed out, under ids of the server's own. The same lease (a
 * repeated requestId answers the first decision again) keeps the same id, so the store's
 * id is remembered per policy and key.
 */
class Leases {
  readonly #tracked: Tracked<{ lease: Lease; ref: string }>
  /** #ids: the server's id for each (policy, key, store lease id) handed out. */
  readonly #ids = new Map<string, string>()

  constructor(now: () => number) {
    this.#tracked = new Tracked(now)
  }

  /** register remembers a lease of policy `policy` and answers the id to give the client. */
  register(policy: string, lease: Lease): string {
    const ref = JSON.stringify([policy, lease.key, lease.id])
    const known = this.#ids.get(ref)
    if (known !== undefined && this.#tracked.has(known)) return known
    const id = randomUUID()
    this.#tracked.add(id, { lease, ref }, lease.expiresAt)
    this.#ids.set(ref, id)
    return id
  }

  /** take forgets the lease with this id and answers it, unless it is unknown or expired. */
  take(id: string): Lease | undefined {
    const entry = this.#tracked.take(id)
    if (entry !== undefined) this.#ids.delete(entry.ref)
    return entry?.lease
  }

  sweep(): void {
    this.#tracked.sweep()
    for (const [ref, id] of this.#ids) if (!this.#tracked.has(id)) this.#ids.delete(ref)
  }
}

export function decisionRoutes(app: FastifyInstance, o: RouteOptions): void {
  const { decider } = o
  const now = () => o.clock.now()
  const reservations = new Tracked<Reservation>(now)
  const leases = new Leases(now)

  const enforced = (name: string, path: string, status = 400): Enforced => {
    const e = decider.limits.policies.get(name)
    if (e === undefined) {
      const known = [...decider.limits.policies.keys()].map((n) => `"${n}"`).join(", ")
      throw new HttpError(
        status,
        status === 404 ? CODES.notFound : "ERR_ARGUMENT",
        `${path}: unknown policy "${name}"; the policies are ${known || "none"}`,
        path,
      )
    }
    return e
  }

  /** json writes a decision, registering its lease (if any) under the server's own id. */
  const json = (e: Enforced, d: Decision) =>
    decisionJson(d, e.name, d.lease === undefined ? undefined : leases.register(e.name, d.lease))

  const send = (reply: FastifyReply, e: Enforced, d: Decision) => {
    reply.headers(decisionHeaders(e.name, e.policyHeader, d))
    return json(e, d)
  }

  app.post<{ Body: { policy: string; key: string; cost?: number; requestId?: string } }>(
    "/v1/limit",
    {
      config: config("decision"),
      schema: { body: limitItem, response: { 200: decisionSchema } },
    },
    async (request, reply) => {
      const b = request.body
      const e = enforced(b.policy, "body.policy")
      let d: Decision
      try {
        d = await decider.limit(e, b.key, b.cost, b.requestId, "http")
      } catch (error) {
        throw atField(error, inBody())
      }
      return send(reply, e, d)
    },
  )

  app.post<{
    Body: { requests: { policy: string; key: string; cost?: number; requestId?: string }[] }
  }>(
    "/v1/limit/batch",
    {
      config: config("decision"),
      schema: {
        body: {
          type: "object",
          required: ["requests"],
          additionalProperties: false,
          properties: { requests: { type: "array", items: limitItem } },
        },
      },
      // The cap is checked before the items are validated one by one.
      preValidation: async (request) => {
        const items = (request.body as { requests?: unknown })?.requests
        if (Array.isArray(items) && items.length > o.maxBatch) {
          throw new HttpError(
            413,
            CODES.tooLarge,
            `body.requests: ${items.length} items; this server decides at most ${o.maxBatch} per batch`,
            "body.requests",
          )
        }
      },
    },
    async (request) => {
      const items = request.body.requests
      const targets = items.map((item, i) => {
        const e = enforced(item.policy, `body.requests[${i}].policy`)
        if (item.cost !== undefined && item.cost > e.policy.limit) {
          throw new ArgumentError(
            `body.requests[${i}].cost`,
            `${item.cost} is above the limit of policy "${e.name}" (${e.policy.limit}), so it could never be admitted`,
          )
        }
        return e
      })
      const settled = await Promise.allSettled(
        items.map(async (item, i) => {
          try {
            return await decider.limit(targets[i], item.key, item.cost, item.requestId, "http")
          } catch (error) {
            throw atField(error, inBody(`body.requests[${i}]`))
          }
        }),
      )
      const failed = settled.find((r) => r.status === "rejected")
      if (failed !== undefined) {
        // The client sees only the error, never the leases the other items took: give
        // them back rather than hold the slots until they time out.
        for (const r of settled) {
          if (r.status === "fulfilled")
            void Promise.resolve(r.value.lease?.release()).catch(() => {})
        }
        throw failed.reason
      }
      const decisions = settled.map((r) => (r as PromiseFulfilledResult<Decision>).value)
      return { decisions: decisions.map((d, i) => json(targets[i], d)) }
    },
  )

  app.post<{
    Body: { request: Record<string, string | number | null>; cost?: number; requestId?: string }
  }>(
    "/v1/check",
    {
      config: config("decision"),
      schema: {
        body: {
          type: "object",
          required: ["request"],
          additionalProperties: false,
          properties: {
            request: {
              type: "object",
              maxProperties: 32,
              additionalProperties: {
                anyOf: [{ type: "string" }, { type: "number" }, { type: "null" }],
              },
            },
            cost,
            requestId,
          },
        },
      },
    },
    async (request, reply) => {
      const tiered = decider.limits.tiered
      if (tiered === undefined) {
        throw new UnsupportedError("the config has no tiers section, so there is nothing to check")
      }
      const started = performance.now()
      const b = request.body
      let d: Awaited<ReturnType<typeof tiered.limit>>
      try {
        d = await tiered.limit(b.request, { cost: b.cost, requestId: b.requestId })
      } catch (error) {
        return decider.failed("tiers", atField(error, inCheckBody), "http")
      }
      decider.metrics.latency("http", (performance.now() - started) / 1000)
      for (const [name, t] of Object.entries(d.tiers)) {
        decider.metrics.decision("tiers", name, t.allowed ? "allowed" : "denied")
      }
      if (d.degraded !== undefined) decider.metrics.fallback(d.degraded)
      decider.stats.record("tiers", d.allowed, d.allowed ? undefined : tierKey(d.tier, b.request))
      reply.headers(tieredHeaders(d))
      return tieredJson(d)
    },
  )

  app.post<{ Body: { policy: string; key: string; cost?: number; maxWait?: number | string } }>(
    "/v1/acquire",
    {
      config: config("decision"),
      schema: {
        body: {
          type: "object",
          required: ["policy", "key"],
          additionalProperties: false,
          properties: { policy, key, cost, maxWait: wait },
        },
      },
    },
    async (request, reply) => {
      const b = request.body
      const e = enforced(b.policy, "body.policy")
      const maxWait = waitMs(b.maxWait, o.maxWaitMs)
      const controller = new AbortController()
      o.waits.add(controller)
      const onClose = () => {
        if (!reply.raw.writableEnded) controller.abort(new Error("client went away"))
      }
      reply.raw.once("close", onClose)
      const started = performance.now()
      try {
        const d = await e.limiter.acquire(b.key, {
          cost: b.cost,
          maxWait,
          signal: controller.signal,
        })
        decider.metrics.latency("http", (performance.now() - started) / 1000)
        decider.record(e.name, d, b.key)
        return send(reply, e, d)
      } catch (error) {
        if (controller.signal.aborted) {
          throw new HttpError(
            503,
            CODES.unavailable,
            "the wait was cut short: the server is shutting down",
          )
        }
        if ((error as { code?: string })?.code === "ERR_RATE_LIMITED") {
          decider.record(e.name, (error as { decision: Decision }).decision, b.key)
          const d = (error as { decision: Decision }).decision
          reply.headers(decisionHeaders(e.name, e.policyHeader, d))
        }
        return decider.failed(e.name, atField(error, inBody()), "http")
      } finally {
        o.waits.delete(controller)
        reply.raw.off("close", onClose)
      }
    },
  )

  app.post<{ Body: { policy: string; key: string; cost?: number; maxWait?: number | string } }>(
    "/v1/reserve",
    {
      config: config("decision"),
      schema: {
        body: {
          type: "object",
          required: ["policy", "key"],
          additionalProperties: false,
          properties: { policy, key, cost, maxWait: wait },
        },
      },
    },
    async (request, reply) => {
      const b = request.body
      const e = enforced(b.policy, "body.policy")
      const maxWait =
        b.maxWait === undefined ? undefined : waitMs(b.maxWait, Number.POSITIVE_INFINITY)
      let r: Reservation
      try {
        r = await e.limiter.reserve(b.key, { cost: b.cost, maxWait })
      } catch (error) {
        return decider.failed(e.name, atField(error, inBody()), "http")
      }
      decider.record(e.name, r.decision, b.key)
      const id = r.ok ? randomUUID() : undefined
      if (id !== undefined) reservations.add(id, r, r.executeAt)
      reply.headers(decisionHeaders(e.name, e.policyHeader, r.decision))
      return {
        id: id ?? null,
        ok: r.ok,
        executeAt: Math.ceil(r.executeAt),
        delayMs: Math.ceil(r.delayMs),
        decision: json(e, r.decision),
      }
    },
  )

  app.delete<{ Params: { id: string } }>(
    "/v1/reservations/:id",
    { config: config("decision") },
    async (request, reply) => {
      const r = reservations.take(request.params.id)
      if (r === undefined) {
        throw new HttpError(
          404,
          CODES.notFound,
          "no such reservation (unknown, cancelled or already due)",
        )
      }
      await r.cancel()
      reply.code(204)
    },
  )

  app.delete<{ Params: { id: string } }>(
    "/v1/leases/:id",
    { config: config("decision") },
    async (request, reply) => {
      const lease = leases.take(request.params.id)
      if (lease === undefined) {
        throw new HttpError(404, CODES.notFound, "no such lease (unknown, released or expired)")
      }
      await lease.release()
      reply.code(204)
    },
  )

  app.get<{ Params: { policy: string; key: string } }>(
    "/v1/keys/:policy/:key",
    { config: config("decision") },
    async (request, reply) => {
      const e = enforced(request.params.policy, "params.policy", 404)
      let d: Decision
      try {
        d = await e.limiter.peek(request.params.key)
      } catch (error) {
        return decider.failed(e.name, atField(error, inParams), "http")
      }
      return send(reply, e, d)
    },
  )

  app.delete<{ Params: { policy: string; key: string } }>(
    "/v1/keys/:policy/:key",
    { config: config("admin") },
    async (request, reply) => {
      const e = enforced(request.params.policy, "params.policy", 404)
      try {
        await e.limiter.reset(request.params.key)
      } catch (error) {
        return decider.failed(e.name, atField(error, inParams), "http")
      }
      reply.code(204)
    },
  )

  const sweeper = setInterval(() => {
    reservations.sweep()
    leases.sweep()
  }, 10_000)
  sweeper.unref()
  app.addHook("onClose", async () => clearInterval(sweeper))
}

/** inCheckBody: the library's `request`, `request.<field>`, `cost` and `requestId` are body fields of /v1/check. */
const inCheckBody = (argument: string) =>
  argument === "request" ||
  argument.startsWith("request.") ||
  argument === "cost" ||
  argument === "requestId"
    ? `body.${argument}`
    : undefined

/** inParams: the key of /v1/keys/:policy/:key comes from the path. */
const inParams = (argument: string) => (argument === "key" ? "params.key" : undefined)

/**
 * tieredHeaders are the header fields of a multi-tier decision: the binding tier's
 * RateLimit-Policy (its quota; a tier's window depends on the plan and is not in the
 * decision, so `w` is left out, as the library's middleware does) and RateLimit.
 */
function tieredHeaders(d: TieredDecision): Record<string, string> {
  const name = d.tier ?? "tiers"
  const headers = decisionHeaders(name, undefined, d)
  if (Number.isFinite(d.limit)) {
    headers["ratelimit-policy"] = rateLimitPolicyHeader([
      { name, quota: Math.floor(d.limit + 1e-9) },
    ])
  }
  return headers
}

/** waitMs reads a maxWait (ms or duration string), at most `cap`; default the cap. */
function waitMs(value: number | string | undefined, cap: number): number {
  if (value === undefined) return cap
  let ms: number
  try {
    ms = parseDuration(value, "body.maxWait", true)
  } catch (error) {
    // An invalid duration in a request is a bad argument, not a bad config.
    if (!(error instanceof ConfigError)) throw error
    throw new ArgumentError("body.maxWait", error.message.replace(/^body\.maxWait: /, ""))
  }
  if (ms > cap) {
    throw new ArgumentError("body.maxWait", `${ms} ms is longer than this server waits (${cap} ms)`)
  }
  return ms
}

/** tierKey names what a tiered denial was keyed on, for the top-denied list. */
function tierKey(tier: string | undefined, request: Record<string, unknown>): string {
  const fields = Object.entries(request)
    .filter(([, v]) => v !== null && v !== undefined)
    .map(([k, v]) => `${k}=${v}`)
    .join(",")
  return tier === undefined ? fields : `${tier}: ${fields}`
}
