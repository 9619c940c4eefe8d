// Prometheus metrics (prom-client), on a registry of the server's own. Labels are bounded
// by the config: a policy, rule or tier name, a result, an API. No label ever holds a
// user's key, so a million keys add no series.

import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client"

/** Api: which edge asked. */
export type Api = "http" | "grpc" | "auth"

/** Result: what a decision was. "error": the store failed and the limiter is fail-closed. */
export type Result = "allowed" | "denied" | "error"

export class Metrics {
  readonly registry = new Registry()
  readonly #decisions: Counter<"policy" | "tier" | "result">
  readonly #latency: Histogram<"api">
  readonly #storeErrors: Counter<"api">
  readonly #fallbacks: Counter<"mode">
  readonly #reloads: Counter<"result">
  readonly #configInfo: Gauge<"version">
  readonly #lastReload: Gauge
  readonly #storeUp: Gauge
  readonly #children = new Map<string, { inc(): void }>()
  readonly #latencyChildren = new Map<Api, { observe(v: number): void }>()
  #version: string | undefined

  constructor(options: { defaultMetrics?: boolean } = {}) {
    const registers = [this.registry]
    this.#decisions = new Counter({
      name: "tollgate_decisions_total",
      help: "Rate-limit decisions, by policy (or descriptor rule, or 'tiers'), tier and result.",
      labelNames: ["policy", "tier", "result"],
      registers,
    })
    this.#latency = new Histogram({
      name: "tollgate_decision_duration_seconds",
      help: "Time to decide one request (store round trip included), by API.",
      labelNames: ["api"],
      buckets: [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 1],
      registers,
    })
    this.#storeErrors = new Counter({
      name: "tollgate_store_errors_total",
      help: "Store calls that failed or timed out, by API.",
      labelNames: ["api"],
      registers,
    })
    this.#fallbacks = new Counter({
      name: "tollgate_store_fallbacks_total",
      help: "Decisions made without the store because it failed: 'fallback' (memory) or 'open' (admitted).",
      labelNames: ["mode"],
      registers,
    })
    this.#reloads = new Counter({
      name: "tollgate_config_reloads_total",
      help: "Config reloads, by result ('success' or 'failure': the old config stayed in force).",
      labelNames: ["result"],
      registers,
    })
    this.#configInfo = new Gauge({
      name: "tollgate_config_info",
      help: "The config version in force (value 1).",
      labelNames: ["version"],
      registers,
    })
    this.#lastReload = new Gauge({
      name: "tollgate_config_last_reload_success_timestamp_seconds",
      help: "When the config in force was loaded.",
      registers,
    })
    this.#storeUp = new Gauge({
      name: "tollgate_store_up",
      help: "1 when the last store health check passed, else 0.",
      registers,
    })
    this.#reloads.inc({ result: "success" }, 0)
    this.#reloads.inc({ result: "failure" }, 0)
    if (options.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry })
  }

  /** decision counts one decision of a policy (tier: "" unless a multi-tier decision). */
  decision(policy: string, tier: string, result: Result): void {
    const id = `${policy}\u0000${tier}\u0000${result}`
    let child = this.#children.get(id)
    if (child === undefined) {
      child = this.#decisions.labels(policy, tier, result)
      this.#children.set(id, child)
    }
    child.inc()
  }

  latency(api: Api, seconds: number): void {
    let child = this.#latencyChildren.get(api)
    if (child === undefined) {
      child = this.#latency.labels(api)
      this.#latencyChildren.set(api, child)
    }
    child.observe(seconds)
  }

  storeError(api: Api): void {
    this.#storeErrors.inc({ api })
  }

  fallback(mode: "fallback" | "open"): void {
    this.#fallbacks.inc({ mode })
  }

  reload(ok: boolean): void {
    this.#reloads.inc({ result: ok ? "success" : "failure" })
  }

  configLoaded(version: string, atMs: number): void {
    if (this.#version !== undefined) this.#configInfo.remove(this.#version)
    this.#version = version
    this.#configInfo.set({ version }, 1)
    this.#lastReload.set(atMs / 1000)
  }

  storeUp(up: boolean): void {
    this.#storeUp.set(up ? 1 : 0)
  }
}
