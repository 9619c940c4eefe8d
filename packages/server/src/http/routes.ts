// The decision endpoints under /v1: limit (single and batch), the multi-tier check,
// acquire with a bounded wait, reserve and cancel, peek, reset and lease release.
// Bodies are checked by JSON schemas before a handler runs; a handler checks what a
// schema cannot (the policy exists, the cost fits it) before anything is consumed.

import { randomUUID } from "node:crypto"
import type { FastifyInstance, FastifyReply } from "fastify"
import {
  ArgumentError,
  type Clock,
  type Decision,
  parseDuration,
  type Reservation,
  UnsupportedError,
} from "../lib.js"
import type { Enforced } from "../limits.js"
import type { Decider } from "../service.js"
import type { Access } from "./bearer.js"
import { decisionHeaders, decisionJson, tieredJson } from "./decision-json.js"
import { CODES, HttpError } from "./errors.js"

export interface RouteOptions {
  decider: Decider
  clock: Clock
  maxBatch: number
  maxWaitMs: number
  /** waits: the AbortControllers of acquire calls waiting now (aborted at shutdown). */
  waits: Set<AbortController>
}

const key = { type: "string", minLength: 1, maxLength: 4096 } as const
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

export function decisionRoutes(app: FastifyInstance, o: RouteOptions): void {
  const { decider } = o
  const now = () => o.clock.now()
  const reservations = new Tracked<Reservation>(now)
  const leases = new Tracked<NonNullable<Decision["lease"]>>(now)

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

  const send = (reply: FastifyReply, e: Enforced, d: Decision) => {
    reply.headers(decisionHeaders(e.name, e.policyHeader, d))
    if (d.lease !== undefined) leases.add(d.lease.id, d.lease, d.lease.expiresAt)
    return decisionJson(d, e.name)
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
      return send(reply, e, await decider.limit(e, b.key, b.cost, b.requestId, "http"))
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
      const decisions = await Promise.all(
        items.map((item, i) =>
          decider.limit(targets[i], item.key, item.cost, item.requestId, "http"),
        ),
      )
      return { decisions: decisions.map((d, i) => decisionJson(d, targets[i].name)) }
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
        return decider.failed("tiers", error, "http")
      }
      decider.metrics.latency("http", (performance.now() - started) / 1000)
      for (const [name, t] of Object.entries(d.tiers)) {
        decider.metrics.decision("tiers", name, t.allowed ? "allowed" : "denied")
      }
      if (d.degraded !== undefined) decider.metrics.fallback(d.degraded)
      decider.stats.record("tiers", d.allowed, d.allowed ? undefined : tierKey(d.tier, b.request))
      reply.headers(decisionHeaders(d.tier ?? "tiers", undefined, d))
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
        return decider.failed(e.name, error, "http")
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
        return decider.failed(e.name, error, "http")
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
        decision: decisionJson(r.decision, e.name),
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
      const e = enforced(request.params.policy, "policy", 404)
      let d: Decision
      try {
        d = await e.limiter.peek(request.params.key)
      } catch (error) {
        return decider.failed(e.name, error, "http")
      }
      return send(reply, e, d)
    },
  )

  app.delete<{ Params: { policy: string; key: string } }>(
    "/v1/keys/:policy/:key",
    { config: config("admin") },
    async (request, reply) => {
      const e = enforced(request.params.policy, "policy", 404)
      try {
        await e.limiter.reset(request.params.key)
      } catch (error) {
        return decider.failed(e.name, error, "http")
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

/** waitMs reads a maxWait (ms or duration string), at most `cap`; default the cap. */
function waitMs(value: number | string | undefined, cap: number): number {
  if (value === undefined) return cap
  const ms = parseDuration(value, "body.maxWait", true)
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
