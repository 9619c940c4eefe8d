// Decider: the one path every edge (HTTP, gRPC, nginx) takes to a decision, so that each
// is counted alike in the metrics and on the dashboard, and store failures are handled
// alike: a degraded decision counts as a fallback, a thrown StoreError as a store error.

import { type Decision, StoreError } from "./lib.js"
import type { Enforced, LimitSet } from "./limits.js"
import type { Api, Metrics } from "./metrics.js"
import type { DashboardStats } from "./stats.js"

type MaybePromise<T> = T | Promise<T>

function isPromise<T>(v: MaybePromise<T>): v is Promise<T> {
  return typeof (v as Promise<T>)?.then === "function"
}

export class Decider {
  constructor(
    private readonly current: () => LimitSet,
    readonly metrics: Metrics,
    readonly stats: DashboardStats,
  ) {}

  get limits(): LimitSet {
    return this.current()
  }

  /** record counts a decision made for `name` (a policy, rule or "tiers"). */
  record(name: string, d: Decision, key: string | undefined, tier = ""): void {
    this.metrics.decision(name, tier, d.allowed ? "allowed" : "denied")
    if (d.degraded !== undefined) this.metrics.fallback(d.degraded)
    this.stats.record(name, d.allowed, key)
  }

  /** failed counts a failed decision and throws the error on. */
  failed(name: string, error: unknown, api: Api): never {
    if (error instanceof StoreError) {
      this.metrics.decision(name, "", "error")
      this.metrics.storeError(api)
    }
    throw error
  }

  /** limit decides one request against an enforced limiter and records it. */
  limit(
    e: Enforced,
    key: string,
    cost: number | undefined,
    requestId: string | undefined,
    api: Api,
  ): MaybePromise<Decision> {
    const started = performance.now()
    let d: MaybePromise<Decision>
    try {
      d = e.limiter.limit(key, { cost, requestId })
    } catch (error) {
      return this.failed(e.name, error, api)
    }
    if (isPromise(d)) {
      return d.then(
        (v) => this.#done(e.name, v, key, api, started),
        (error) => this.failed(e.name, error, api),
      )
    }
    return this.#done(e.name, d, key, api, started)
  }

  #done(name: string, d: Decision, key: string, api: Api, started: number): Decision {
    this.metrics.latency(api, (performance.now() - started) / 1000)
    this.record(name, d, key)
    return d
  }
}
