// TollgateServer: the composition root. It is the one place that builds the store, the
// clock, the limiters and both listeners, and it owns their lifecycle: config reloads
// (file change, SIGHUP, admin endpoint), store health for /readyz, and the graceful
// shutdown. Tests build it with a manual clock and in-memory or real stores; the CLI
// builds it with the system clock and, when asked, a Redis client.

import type * as grpc from "@grpc/grpc-js"
import { ServerCredentials } from "@grpc/grpc-js"
import type { FastifyInstance } from "fastify"
import {
  checkConfig,
  type LoadedConfig,
  parseConfig,
  readConfig,
  readConfigText,
  textHash,
} from "./config/load.js"
import { type FileWatch, watchFile } from "./config/watch.js"
import { createRlsServer } from "./grpc/rls.js"
import { buildHttp, type Health } from "./http/app.js"
import type { Tokens } from "./http/bearer.js"
import {
  type Clock,
  ConfigError,
  MemoryStore,
  type OnStoreError,
  type Store,
  systemClock,
} from "./lib.js"
import { type LimitRuntime, type LimitSet, prepareLimits } from "./limits.js"
import { Metrics } from "./metrics.js"
import { Decider } from "./service.js"
import { DashboardStats } from "./stats.js"

export type Logger = (
  level: "info" | "warn" | "error",
  message: string,
  fields?: Record<string, unknown>,
) => void

/** jsonLogger writes one JSON object per line to stderr. */
export const jsonLogger: Logger = (level, message, fields) => {
  process.stderr.write(
    `${JSON.stringify({ time: new Date().toISOString(), level, message, ...fields })}\n`,
  )
}

export interface ServeOptions {
  /** config: a file path (watched and reloadable), YAML text ({ text }), or a config object. */
  config: string | { text: string } | Record<string, unknown>
  /** store: default a new MemoryStore. */
  store?: Store
  /** storeKind: how the dashboard and /readyz name the store; default "memory". */
  storeKind?: string
  /** storeProbe: resolves when the store answers (e.g. a Redis PING); memory needs none. */
  storeProbe?: () => Promise<unknown>
  /** closeStore: called last on shutdown, for a store the server owns. */
  closeStore?: () => Promise<void>
  clock?: Clock
  /** host: the address both listeners bind; default loopback only (127.0.0.1). */
  host?: string
  /** port: HTTP port; default 8080; 0 picks a free one. */
  port?: number
  /** grpcPort: Envoy RLS port; default 8081; 0 picks a free one; false: no gRPC. */
  grpcPort?: number | false
  tokens?: Tokens
  /** onStoreError: "closed" (503 / UNAVAILABLE, default), "open" (admit), "fallback" (memory). */
  onStoreError?: "closed" | "open" | "fallback"
  /** fallbackInstances: server instances sharing the limits; each fallback enforces its share. */
  fallbackInstances?: number
  storeTimeoutMs?: number
  maxBodyBytes?: number
  maxBatch?: number
  maxWaitMs?: number
  headersTimeoutMs?: number
  requestTimeoutMs?: number
  idleTimeoutMs?: number
  grpcMaxMessageBytes?: number
  healthIntervalMs?: number
  shutdownTimeoutMs?: number
  /** watch: reload when the config file changes; default true for a file path. */
  watch?: boolean
  /** signals: SIGHUP reloads, SIGTERM / SIGINT shut down gracefully; default false. */
  signals?: boolean
  log?: Logger
}

export interface ReloadResult {
  ok: boolean
  /** version: the config version in force afterwards. */
  version: string
  error?: { path: string; message: string }
}

const DEFAULTS = {
  host: "127.0.0.1",
  port: 8080,
  grpcPort: 8081,
  storeTimeoutMs: 1000,
  maxBodyBytes: 1024 * 1024,
  maxBatch: 1000,
  maxWaitMs: 30_000,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 60_000,
  idleTimeoutMs: 5_000,
  grpcMaxMessageBytes: 1024 * 1024,
  healthIntervalMs: 1000,
  shutdownTimeoutMs: 10_000,
}

type Resolved = ServeOptions & Omit<typeof DEFAULTS, "grpcPort"> & { grpcPort: number | false }

export class TollgateServer {
  readonly clock: Clock
  readonly metrics: Metrics
  readonly stats: DashboardStats
  readonly decider: Decider
  /** httpUrl: e.g. http://127.0.0.1:8080 once started. */
  httpUrl = ""
  /** grpcAddress: host:port of the Envoy RLS once started, "" without gRPC. */
  grpcAddress = ""
  #limits!: LimitSet
  #lastError: ReloadResult["error"]
  readonly #o: Resolved
  readonly #runtime: LimitRuntime
  readonly #path: string | undefined
  readonly #log: Logger
  readonly #waits = new Set<AbortController>()
  #http!: FastifyInstance
  #grpc: grpc.Server | undefined
  #watch: FileWatch | undefined
  #healthTimer: ReturnType<typeof setInterval> | undefined
  #health = {
    healthy: true,
    checkedAt: undefined as number | undefined,
    error: undefined as string | undefined,
  }
  #reloading: Promise<ReloadResult> = Promise.resolve({ ok: true, version: "" })
  #closing: Promise<void> | undefined
  #signals: [NodeJS.Signals, () => void][] = []
  readonly #startedAt: number

  private constructor(options: ServeOptions) {
    this.#o = { ...DEFAULTS, ...stripUndefined(options) } as Resolved
    this.clock = options.clock ?? systemClock
    this.#startedAt = this.clock.now()
    this.#log = options.log ?? (() => {})
    this.metrics = new Metrics()
    this.stats = new DashboardStats(() => this.clock.now())
    this.decider = new Decider(() => this.#limits, this.metrics, this.stats)
    const store = options.store ?? new MemoryStore()
    let onStoreError: OnStoreError = "closed"
    if (options.onStoreError === "open") onStoreError = "open"
    if (options.onStoreError === "fallback") {
      onStoreError = { fallback: new MemoryStore(), instances: options.fallbackInstances ?? 1 }
    }
    this.#runtime = { store, clock: this.clock, onStoreError, timeoutMs: this.#o.storeTimeoutMs }
    this.#path = typeof options.config === "string" ? options.config : undefined
  }

  /** start loads the config (throwing ConfigError when it is invalid) and starts listening. */
  static async start(options: ServeOptions): Promise<TollgateServer> {
    const server = new TollgateServer(options)
    try {
      await server.#start()
    } catch (error) {
      // A listener that could not be bound: close what was opened, then fail.
      server.#grpc?.forceShutdown()
      await server.#http?.close().catch(() => {})
      await options.closeStore?.().catch(() => {})
      throw error
    }
    return server
  }

  get limits(): LimitSet {
    return this.#limits
  }

  async #load(): Promise<LoadedConfig> {
    const c = this.#o.config
    if (typeof c === "string") return readConfig(c)
    if (typeof c === "object" && c !== null && typeof (c as { text?: unknown }).text === "string") {
      return parseConfig((c as { text: string }).text)
    }
    return checkConfig(c)
  }

  async #start(): Promise<void> {
    const loaded = await this.#load()
    this.#limits = prepareLimits(loaded, this.#runtime, undefined)()
    this.#hash = loaded.hash
    this.metrics.configLoaded(loaded.version, this.clock.now())
    this.#log("info", "config loaded", { version: loaded.version, source: loaded.source })
    const o = this.#o
    this.#http = buildHttp({
      decider: this.decider,
      clock: this.clock,
      tokens: o.tokens ?? {},
      maxBodyBytes: o.maxBodyBytes,
      maxBatch: o.maxBatch,
      maxWaitMs: o.maxWaitMs,
      headersTimeoutMs: o.headersTimeoutMs,
      requestTimeoutMs: o.requestTimeoutMs,
      idleTimeoutMs: o.idleTimeoutMs,
      health: () => this.health(),
      reload: () => this.reload(),
      configInfo: () => this.configInfo(),
      startedAt: this.#startedAt,
      closing: () => this.#closing !== undefined,
      waits: this.#waits,
      log: this.#log,
    })
    await this.#http.listen({ host: o.host, port: o.port })
    const address = this.#http.server.address()
    const port = typeof address === "object" && address !== null ? address.port : o.port
    this.httpUrl = `http://${o.host.includes(":") ? `[${o.host}]` : o.host}:${port}`
    if (o.grpcPort !== false) {
      this.#grpc = createRlsServer({
        decider: this.decider,
        tokens: o.tokens ?? {},
        maxMessageBytes: o.grpcMaxMessageBytes,
      })
      const host = o.host.includes(":") ? `[${o.host}]` : o.host
      const bound = await new Promise<number>((resolve, reject) =>
        this.#grpc!.bindAsync(
          `${host}:${o.grpcPort}`,
          ServerCredentials.createInsecure(),
          (e, p) => (e ? reject(e) : resolve(p)),
        ),
      )
      this.grpcAddress = `${host}:${bound}`
    }
    if (this.#path !== undefined && o.watch !== false) {
      this.#watch = watchFile(this.#path, () => void this.reload())
    }
    this.#startHealth()
    if (o.signals) {
      const on = (signal: NodeJS.Signals, fn: () => void) => {
        process.on(signal, fn)
        this.#signals.push([signal, fn])
      }
      on("SIGHUP", () => void this.reload())
      const stop = () => {
        this.#log("info", "shutting down")
        void this.close().then(() => process.exit(0))
      }
      on("SIGTERM", stop)
      on("SIGINT", stop)
    }
    this.#log("info", "listening", { http: this.httpUrl, grpc: this.grpcAddress || "off" })
  }

  #hash = ""
  /** #rejected: the last content rejected since the config in force was loaded, and why. */
  #rejected: { seen: string; error: NonNullable<ReloadResult["error"]> } | undefined

  /** #input reads the config's source: a hash of its content, and how to check it. */
  async #input(): Promise<{ hash: string; load: () => LoadedConfig }> {
    const c = this.#o.config
    if (typeof c === "string") {
      const text = await readConfigText(c)
      return { hash: textHash(text), load: () => parseConfig(text, c) }
    }
    const loaded = await this.#load()
    return { hash: loaded.hash, load: () => loaded }
  }

  /**
   * reload reads the config file again. A valid config is applied at once (counts carry
   * over); an invalid one is rejected with its error path and the old one stays in force.
   * Reloads run one at a time.
   */
  reload(): Promise<ReloadResult> {
    this.#reloading = this.#reloading.then(() => this.#reload())
    return this.#reloading
  }

  async #reload(): Promise<ReloadResult> {
    if (this.#closing !== undefined) return { ok: false, version: this.#limits.version }
    // seen: what was read this time (a content hash, or why nothing could be read).
    let seen: string | undefined
    try {
      const input = await this.#input()
      seen = input.hash
      if (input.hash === this.#hash) {
        // Back to the config in force: nothing is wrong with the file any more, and a
        // rejected edit seen later counts as a new one.
        this.#rejected = undefined
        this.#lastError = undefined
        return { ok: true, version: this.#limits.version }
      }
      if (input.hash === this.#rejected?.seen) {
        return { ok: false, version: this.#limits.version, error: this.#rejected.error }
      }
      const loaded = input.load()
      const commit = prepareLimits(loaded, this.#runtime, this.#limits)
      this.#limits = commit()
      this.#hash = loaded.hash
      this.#lastError = undefined
      this.#rejected = undefined
      this.metrics.reload(true)
      this.metrics.configLoaded(loaded.version, this.clock.now())
      this.#log("info", "config reloaded", { version: loaded.version })
      return { ok: true, version: loaded.version }
    } catch (error) {
      const path = error instanceof ConfigError ? error.path : ""
      const message = error instanceof Error ? error.message : String(error)
      seen ??= `unread: ${message}`
      // The same rejected content seen again (the file watch and the poll both noticed
      // one edit, or the file was touched) is not a new failure: answer it, count nothing.
      if (seen === this.#rejected?.seen) {
        return { ok: false, version: this.#limits.version, error: this.#rejected.error }
      }
      this.#rejected = { seen, error: { path, message } }
      this.#lastError = { path, message }
      this.metrics.reload(false)
      this.#log("error", "config rejected; the previous config stays in force", {
        version: this.#limits.version,
        path,
        error: message,
      })
      return { ok: false, version: this.#limits.version, error: { path, message } }
    }
  }

  configInfo(): Record<string, unknown> {
    const l = this.#limits
    return {
      version: l.version,
      source: l.source,
      loadedAt: l.loadedAt,
      policies: Object.fromEntries([...l.policies].map(([n, e]) => [n, e.policy])),
      domains: [...l.domains.keys()],
      tiers: l.tiered !== undefined,
      lastError: this.#lastError ?? null,
    }
  }

  #startHealth(): void {
    const probe = this.#o.storeProbe
    this.metrics.storeUp(true)
    if (probe === undefined) return
    const interval = this.#o.healthIntervalMs
    const check = async () => {
      let timer: ReturnType<typeof setTimeout> | undefined
      try {
        await Promise.race([
          probe(),
          new Promise((_, reject) => {
            timer = setTimeout(() => reject(new Error("no answer in time")), interval * 0.8)
          }),
        ])
        this.#health = { healthy: true, checkedAt: Date.now(), error: undefined }
      } catch (error) {
        this.#health = { healthy: false, checkedAt: Date.now(), error: (error as Error).message }
      } finally {
        clearTimeout(timer)
        this.metrics.storeUp(this.#health.healthy)
      }
    }
    void check()
    this.#healthTimer = setInterval(check, interval)
    this.#healthTimer.unref()
  }

  /** health: ready unless shutting down or the last store check failed. */
  health(): Health {
    const reasons: string[] = []
    if (this.#closing !== undefined) reasons.push("shutting down")
    if (!this.#health.healthy) reasons.push(`store down: ${this.#health.error}`)
    return {
      ready: reasons.length === 0,
      reasons,
      store: {
        kind: this.#o.storeKind ?? "memory",
        healthy: this.#health.healthy,
        checkedAt: this.#health.checkedAt,
        ...(this.#health.error === undefined ? {} : { error: this.#health.error }),
      },
    }
  }

  /**
   * close shuts down gracefully: /readyz turns 503, the listeners stop accepting, requests
   * and calls in flight are answered. Waits still pending after `shutdownTimeoutMs` are
   * cut short (answered 503) and remaining gRPC calls cancelled.
   */
  close(): Promise<void> {
    this.#closing ??= this.#close()
    return this.#closing
  }

  async #close(): Promise<void> {
    this.#watch?.close()
    clearInterval(this.#healthTimer)
    for (const [signal, fn] of this.#signals) process.off(signal, fn)
    const grace = setTimeout(() => {
      for (const c of this.#waits) c.abort(new Error("shutting down"))
      this.#grpc?.forceShutdown()
    }, this.#o.shutdownTimeoutMs)
    grace.unref()
    await Promise.all([
      this.#http.close(),
      new Promise<void>((resolve) => {
        if (this.#grpc === undefined) resolve()
        else this.#grpc.tryShutdown(() => resolve())
      }),
    ])
    clearTimeout(grace)
    await this.#o.closeStore?.()
  }
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>
}
