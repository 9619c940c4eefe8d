// The HTTP side: one fastify instance with the decision routes, the nginx endpoint,
// health, metrics, admin and the dashboard. Limits that protect the server itself are set
// here: body size, header and idle timeouts (a client trickling its headers is cut off
// after `headersTimeoutMs`, checked every second), and JSON errors for every failure —
// fastify's own (bad URL, path too long, no route) and Node's (headers too slow or too
// large) included, all in the one error body of errors.ts.

import { readFileSync } from "node:fs"
import { createServer } from "node:http"
import { createRequire } from "node:module"
import Fastify, { type FastifyInstance, type FastifyReply } from "fastify"
import type { Clock } from "../lib.js"
import { MAX_KEY_LENGTH } from "../limits.js"
import type { Decider } from "../service.js"
import { authRequestRoute } from "./auth-request.js"
import { type Access, Bearer, type Tokens } from "./bearer.js"
import { CODES, clientErrorAnswer, HttpError, toErrorAnswer } from "./errors.js"
import { decisionRoutes } from "./routes.js"

export interface Health {
  ready: boolean
  reasons: string[]
  store: { kind: string; healthy: boolean; checkedAt: number | undefined; error?: string }
}

export interface HttpOptions {
  decider: Decider
  clock: Clock
  tokens: Tokens
  maxBodyBytes: number
  maxBatch: number
  maxWaitMs: number
  headersTimeoutMs: number
  requestTimeoutMs: number
  idleTimeoutMs: number
  health: () => Health
  reload: () => Promise<{ ok: boolean; version: string; error?: { path: string; message: string } }>
  configInfo: () => Record<string, unknown>
  startedAt: number
  /** closing: true once shutdown began; answers then close their connection. */
  closing: () => boolean
  waits: Set<AbortController>
  log: (level: "info" | "warn" | "error", message: string, fields?: Record<string, unknown>) => void
}

const require = createRequire(import.meta.url)
const here = new URL("../dashboard/", import.meta.url)
const assets = {
  html: readFileSync(new URL("index.html", here), "utf8"),
  js: readFileSync(new URL("app.js", here), "utf8"),
  uplotJs: readFileSync(require.resolve("uplot/dist/uPlot.iife.min.js"), "utf8"),
  uplotCss: readFileSync(require.resolve("uplot/dist/uPlot.min.css"), "utf8"),
}

export function buildHttp(o: HttpOptions): FastifyInstance {
  const app = Fastify({
    logger: false,
    bodyLimit: o.maxBodyBytes,
    // Node's own defences: idle keep-alive sockets close, slow headers and slow whole
    // requests are answered 408 and closed.
    keepAliveTimeout: o.idleTimeoutMs,
    requestTimeout: o.requestTimeoutMs,
    connectionTimeout: 0,
    // While shutting down, new requests are answered 503 by the onRequest hook below, in
    // the documented error body (fastify's own 503 has a body of its own).
    return503OnClosing: false,
    forceCloseConnections: "idle",
    routerOptions: {
      // A key in a path (/v1/keys/:policy/:key) may be MAX_KEY_LENGTH characters, each of
      // which may take nine once percent-encoded (a three-byte UTF-8 character).
      maxParamLength: MAX_KEY_LENGTH * 9,
    },
    // A bad percent-encoding or an over-long path segment is refused by the router before
    // any route runs; answer those in the documented error body too.
    frameworkErrors: (error, _request, reply) => {
      const a = toErrorAnswer(error)
      ;(reply as unknown as FastifyReply).code(a.status).headers(a.headers).send(a.body)
    },
    // Requests Node's parser refuses (headers too slow or too large, not HTTP) never reach
    // fastify: answer them on the socket, in the same error body, and close it.
    clientErrorHandler: (error, socket) => {
      if (error.code === "ECONNRESET" || socket.destroyed) return
      const busy = (socket as { _httpMessage?: { headersSent?: boolean } })._httpMessage
      if (socket.writable && !busy?.headersSent) socket.write(clientErrorAnswer(error))
      socket.destroy(error)
    },
    serverFactory: (handler) =>
      createServer(
        {
          headersTimeout: o.headersTimeoutMs,
          requestTimeout: o.requestTimeoutMs,
          keepAliveTimeout: o.idleTimeoutMs,
          connectionsCheckingInterval: Math.min(1000, o.headersTimeoutMs),
          maxHeaderSize: 16 * 1024,
        },
        handler,
      ),
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, allErrors: false } },
  })
  const bearer = new Bearer(o.tokens)
  // JSON is the only body the API reads: without fastify's text/plain parser, a text body
  // is refused with 415 like any other type that is not JSON.
  app.removeContentTypeParser("text/plain")
  // JSON bodies are parsed here, so that a body that is valid JSON but carries a key that
  // could reach an object's prototype is answered as such, with the key's path, rather
  // than as "invalid JSON" (fastify's parser refuses it without saying why).
  app.removeContentTypeParser("application/json")
  app.addContentTypeParser("application/json", { parseAs: "string" }, (_request, body, done) => {
    const text = body as string
    if (text.length === 0) {
      done(new HttpError(400, "ERR_ARGUMENT", "expected a JSON body, got an empty one"), undefined)
      return
    }
    let value: unknown
    try {
      value = JSON.parse(text)
    } catch (error) {
      done(new HttpError(400, "ERR_ARGUMENT", `invalid JSON: ${(error as Error).message}`))
      return
    }
    const reserved = prototypeKey(value, "body")
    if (reserved !== undefined) {
      done(new HttpError(400, "ERR_ARGUMENT", `${reserved}: a reserved name`, reserved))
      return
    }
    done(null, value)
  })

  app.addHook("onRequest", async () => {
    if (o.closing()) {
      throw new HttpError(503, CODES.unavailable, "the server is shutting down")
    }
  })
  app.addHook("onRequest", async (request) => {
    const access = (request.routeOptions.config as { access?: Access } | undefined)?.access
    if (access !== undefined) bearer.check(access, request.headers.authorization)
  })

  app.addHook("onSend", async (_request, reply, payload) => {
    if (o.closing()) reply.header("connection", "close")
    return payload
  })

  app.setErrorHandler((error, request, reply) => {
    const a = toErrorAnswer(error)
    if (a.status >= 500 && a.status !== 503) {
      o.log("error", "request failed", {
        url: request.url,
        error: String((error as Error)?.stack ?? error),
      })
    }
    if (a.status === 401) reply.header("www-authenticate", 'Bearer realm="tollgate"')
    reply.code(a.status).headers(a.headers).send(a.body)
  })
  app.setNotFoundHandler((request, reply) => {
    reply.code(404).send({
      error: {
        code: CODES.notFound,
        message: `no route for ${request.method} ${request.url.split("?")[0]}`,
      },
    })
  })

  decisionRoutes(app, {
    decider: o.decider,
    clock: o.clock,
    maxBatch: o.maxBatch,
    maxWaitMs: o.maxWaitMs,
    waits: o.waits,
  })
  authRequestRoute(app, o.decider)

  app.get("/healthz", async () => ({ status: "ok", version: o.decider.limits.version }))
  app.get("/readyz", async (_request, reply) => {
    const h = o.health()
    reply.code(h.ready ? 200 : 503)
    return { ready: h.ready, reasons: h.reasons, store: h.store, version: o.decider.limits.version }
  })
  app.get("/metrics", async (_request, reply) => {
    reply.type(o.decider.metrics.registry.contentType)
    return o.decider.metrics.registry.metrics()
  })

  app.get("/v1/admin/config", { config: { access: "admin" } }, async () => o.configInfo())
  app.post("/v1/admin/reload", { config: { access: "admin" } }, async (_request, reply) => {
    const r = await o.reload()
    if (!r.ok) {
      reply.code(400)
      return {
        error: {
          code: "ERR_CONFIG",
          message: r.error?.message ?? "invalid config",
          path: r.error?.path,
        },
        version: r.version,
      }
    }
    return { version: r.version }
  })
  app.get("/v1/admin/stats", { config: { access: "admin" } }, async () => {
    const limits = o.decider.limits
    o.decider.stats.retain([...limits.policies.keys(), ...ruleNames(limits), "tiers"])
    return {
      config: { version: limits.version, source: limits.source, loadedAt: limits.loadedAt },
      store: o.health().store,
      uptimeSeconds: (o.clock.now() - o.startedAt) / 1000,
      series: o.decider.stats.series(60),
      topDenied: o.decider.stats.topDenied(10),
    }
  })

  const page =
    (type: string, body: string) =>
    async (
      _request: unknown,
      reply: { type(t: string): void; header(k: string, v: string): void },
    ) => {
      reply.type(type)
      reply.header("cache-control", "no-cache")
      return body
    }
  app.get("/", page("text/html; charset=utf-8", assets.html))
  app.get("/dashboard/app.js", page("text/javascript; charset=utf-8", assets.js))
  app.get("/dashboard/uplot.js", page("text/javascript; charset=utf-8", assets.uplotJs))
  app.get("/dashboard/uplot.css", page("text/css; charset=utf-8", assets.uplotCss))
  return app
}

function ruleNames(limits: Decider["limits"]): string[] {
  const out: string[] = []
  const walk = (
    domain: string,
    children: typeof limits.domains extends ReadonlyMap<string, infer C> ? C : never,
  ) => {
    for (const group of children.values()) {
      for (const node of [...group.exact.values(), ...(group.any ? [group.any] : [])]) {
        out.push(`${domain}/${node.id}`)
        walk(domain, node.children)
      }
    }
  }
  for (const [domain, root] of limits.domains) walk(domain, root)
  return out
}

export { HttpError }

/**
 * prototypeKey answers the path of the first `__proto__` key in a parsed body, or of a
 * `constructor` key holding a `prototype`: keys that copied into an object would change
 * its prototype. Undefined when there is none. Iterative, and a path is spelled out only
 * for the key found: a body may nest deeply.
 */
function prototypeKey(body: unknown, root: string): string | undefined {
  // parts[i], parents[i]: how node i is reached from its parent node (-1: the root).
  const parts: string[] = [root]
  const parents: number[] = [-1]
  const stack: [unknown, number][] = [[body, 0]]
  const spell = (node: number): string => {
    const out: string[] = []
    for (let n = node; n >= 0; n = parents[n]) out.push(parts[n])
    return out.reverse().join("")
  }
  for (let next = stack.pop(); next !== undefined; next = stack.pop()) {
    const [value, node] = next
    if (typeof value !== "object" || value === null) continue
    const entries: [string, unknown][] = Array.isArray(value)
      ? value.map((v, i) => [`[${i}]`, v])
      : Object.entries(value).map(([k, v]) => [`.${k}`, v])
    for (let i = entries.length - 1; i >= 0; i--) {
      const [part, v] = entries[i]
      parts.push(part)
      parents.push(node)
      const child = parts.length - 1
      if (part === ".__proto__") return spell(child)
      if (part === ".constructor" && typeof v === "object" && v !== null && "prototype" in v) {
        return spell(child)
      }
      stack.push([v, child])
    }
  }
  return undefined
}
