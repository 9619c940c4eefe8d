// The `tollgate` command: serve, check, simulate. `run` takes the arguments and an
// output sink and returns the exit code, so the tests drive it in process.

import { readFileSync, writeFileSync } from "node:fs"
import { parseArgs } from "node:util"
import { type LoadedConfig, parseConfig, readConfig } from "../config/load.js"
import { toPolicy } from "../config/policy.js"
import { ALGORITHMS, type PolicySpec } from "../config/schema.js"
import { counterKey, match } from "../descriptors.js"
import {
  ConfigError,
  createLimiter,
  type Decision,
  MemoryStore,
  manualClock,
  type Policy,
  parseDuration,
} from "../lib.js"
import { type LimitRuntime, prepareLimits } from "../limits.js"
import { parseNodes, redisStore } from "../redis.js"
import { jsonLogger, type ServeOptions, TollgateServer } from "../server.js"
import { renderHtml, renderSvg } from "./chart.js"
import { type Decide, type Pattern, simulate } from "./simulate.js"

export interface Io {
  out(text: string): void
  err(text: string): void
}

const processIo: Io = {
  out: (t) => process.stdout.write(t),
  err: (t) => process.stderr.write(t),
}

export const HELP = `tollgate — a rate-limit service and its tools

Usage:
  tollgate serve    --config FILE [options]     run the service
  tollgate check    --config FILE [what]        check a config, or decide once offline
  tollgate check    --server URL  [what]        decide once against a running server
  tollgate simulate [policy] [traffic] --out FILE.svg|FILE.html
  tollgate help [command]                       more about one command

Run \`tollgate <command> --help\` for its options.
`

const SERVE_HELP = `tollgate serve — run the rate-limit service

  tollgate serve --config tollgate.yaml [--redis redis://127.0.0.1:6379]

Limits:
  --config FILE           YAML config (policies, domains, nginx, tiers); reloaded when the
                          file changes and on SIGHUP; an invalid change is rejected and
                          the old config stays in force
Store (memory when neither is given):
  --redis URL             one Redis, e.g. redis://127.0.0.1:6379/0
  --redis-cluster LIST    Redis Cluster start nodes, host:port,host:port,...
  --on-store-error MODE   closed (503, the default) | open (admit) | fallback (memory)
  --instances N           servers sharing the limits: each fallback enforces 1/N
  --store-timeout MS      budget for one store call (default 1000)
Listening (loopback unless told otherwise):
  --host ADDR             bind address for HTTP and gRPC (default 127.0.0.1)
  --port N                HTTP port (default 8080)
  --grpc-port N           Envoy RateLimitService port (default 8081); --no-grpc: none
Access (tokens are better given in the environment than on a command line):
  --token T               bearer token for decision endpoints      (env TOLLGATE_TOKEN)
  --admin-token T         bearer token for admin endpoints         (env TOLLGATE_ADMIN_TOKEN)
Protection:
  --max-body BYTES        largest request body (default 1048576)
  --max-batch N           most decisions in one batch (default 1000)
  --max-wait MS           longest /v1/acquire wait (default 30000)
  --headers-timeout MS    time to send all request headers (default 10000)
  --idle-timeout MS       keep-alive idle time (default 5000)
  --grpc-max-message BYTES  largest gRPC message (default 1048576)
  --health-interval MS    store health check period (default 1000)
  --shutdown-timeout MS   grace for in-flight requests on SIGTERM (default 10000)
`

const CHECK_HELP = `tollgate check — check a config, or make one decision

  tollgate check --config tollgate.yaml
      validates the file; prints what it defines, or the path of the first error
  tollgate check --config tollgate.yaml --policy api --key user-1 [--cost 1]
      one decision on a fresh in-memory store (what a first request would get)
  tollgate check --config tollgate.yaml --request user=u1 --request model=m [--cost N]
      one multi-tier decision
  tollgate check --config tollgate.yaml --domain edge --descriptor remote_address=1.2.3.4
      which descriptor rule a descriptor matches, and its decision
  tollgate check --server http://127.0.0.1:8080 --policy api --key user-1 [--token T]
      one real decision from a running server (it counts!)

  --json prints the decision as JSON. Exit status: 0 allowed (or config valid),
  1 denied, 2 error (bad usage, invalid config, server unreachable).
`

const SIMULATE_HELP = `tollgate simulate — see a policy under traffic before deploying it

  tollgate simulate --algorithm tokenBucket --rate 10 --burst 20 \\
                    --traffic bursty --rps 5 --burst-rps 60 --every 20s --burst-for 3s \\
                    --duration 2m --out chart.svg

Policy (one of):
  --config FILE --policy NAME       a policy from a config file
  --algorithm NAME                  tokenBucket | slidingWindowLog | slidingWindowCounter |
                                    fixedWindow | concurrency, with
  --rate N --period D --burst N     (tokenBucket)
  --limit N --window D              (window algorithms; concurrency: --limit, --hold D)
Traffic:
  --traffic steady|bursty|ramp      default steady
  --rps N                           steady rate; bursty base rate; ramp start (default 10)
  --burst-rps N --every D --burst-for D   bursts (default 10x rps, every 10s, for 1s)
  --to N                            ramp end rate (default 10x rps)
  --duration D                      default 60s
  --keys N                          spread requests over N keys, round-robin (default 1)
Output:
  --out FILE                        .svg (default) or .html, self-contained
`

const HELPS: Record<string, string> = {
  serve: SERVE_HELP,
  check: CHECK_HELP,
  simulate: SIMULATE_HELP,
}

class UsageError extends Error {}

export async function run(argv: string[], io: Io = processIo): Promise<number> {
  const [command, ...rest] = argv
  try {
    if (command === undefined || command === "--help" || command === "-h" || command === "help") {
      io.out(command === "help" && rest[0] !== undefined ? (HELPS[rest[0]] ?? HELP) : HELP)
      return command === undefined ? 2 : 0
    }
    if (!(command in HELPS)) throw new UsageError(`unknown command "${command}"`)
    if (rest.includes("--help") || rest.includes("-h")) {
      io.out(HELPS[command])
      return 0
    }
    if (command === "serve") return await serve(rest, io)
    if (command === "check") return await check(rest, io)
    return simulateCommand(rest, io)
  } catch (error) {
    if (
      error instanceof UsageError ||
      (error as { code?: string })?.code?.startsWith("ERR_PARSE_ARGS")
    ) {
      io.err(`tollgate: ${(error as Error).message}\n\n${HELPS[command!] ?? HELP}`)
      return 2
    }
    if (error instanceof ConfigError) {
      io.err(`tollgate: invalid config: ${error.message}\n`)
      return 2
    }
    io.err(`tollgate: ${(error as Error)?.message ?? String(error)}\n`)
    return 2
  }
}

function got(value: string): string {
  return value.trim() === "" ? `"${value}"` : value
}

/** number reads a flag's value as a finite number >= `min` (>= 0 unless told). */
function number(value: string | undefined, name: string, min = 0): number | undefined {
  if (value === undefined) return undefined
  const n = value.trim() === "" ? Number.NaN : Number(value)
  if (!Number.isFinite(n) || n < min)
    throw new UsageError(`--${name}: expected a number >= ${min}, got ${got(value)}`)
  return n
}

/** whole reads a flag's value as a whole number from `min` (to `max` when given). */
function whole(
  value: string | undefined,
  name: string,
  min: number,
  max?: number,
): number | undefined {
  if (value === undefined) return undefined
  const n = value.trim() === "" ? Number.NaN : Number(value)
  if (!Number.isSafeInteger(n) || n < min || (max !== undefined && n > max)) {
    const range = max === undefined ? `>= ${min}` : `from ${min} to ${max}`
    throw new UsageError(`--${name}: expected a whole number ${range}, got ${got(value)}`)
  }
  return n
}

/** ms reads a flag's value as a duration: ms, or "250ms", "1s", "1m", "1h", "1d". */
function ms(
  value: string | undefined,
  name: string,
  { zero = true }: { zero?: boolean } = {},
): number | undefined {
  if (value === undefined) return undefined
  const n = value.trim() === "" ? Number.NaN : Number(value)
  const t = Number.isNaN(n) ? durationOrNaN(value) : n
  if (!Number.isFinite(t) || t < 0 || (t === 0 && !zero)) {
    throw new UsageError(
      `--${name}: expected a duration ${zero ? ">= 0" : "> 0"} in ms or as "250ms", "1s", "1m", "1h", "1d", got ${got(value)}`,
    )
  }
  return t
}

function durationOrNaN(value: string): number {
  try {
    return parseDuration(value, "", true)
  } catch {
    return Number.NaN
  }
}

function oneOf<T extends string>(
  value: string | undefined,
  name: string,
  choices: readonly T[],
): T | undefined {
  if (value === undefined) return undefined
  if (!(choices as readonly string[]).includes(value)) {
    const list = `${choices.slice(0, -1).join(", ")} or ${choices[choices.length - 1]}`
    throw new UsageError(`--${name}: expected ${list}, got "${value}"`)
  }
  return value as T
}

async function serve(args: string[], io: Io): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      config: { type: "string" },
      redis: { type: "string" },
      "redis-cluster": { type: "string" },
      "on-store-error": { type: "string" },
      instances: { type: "string" },
      "store-timeout": { type: "string" },
      host: { type: "string" },
      port: { type: "string" },
      "grpc-port": { type: "string" },
      "no-grpc": { type: "boolean" },
      token: { type: "string" },
      "admin-token": { type: "string" },
      "max-body": { type: "string" },
      "max-batch": { type: "string" },
      "max-wait": { type: "string" },
      "headers-timeout": { type: "string" },
      "idle-timeout": { type: "string" },
      "grpc-max-message": { type: "string" },
      "health-interval": { type: "string" },
      "shutdown-timeout": { type: "string" },
    },
  })
  if (values.config === undefined) throw new UsageError("serve needs --config FILE")
  const mode =
    oneOf(values["on-store-error"], "on-store-error", ["closed", "open", "fallback"] as const) ??
    "closed"
  if (values.redis !== undefined && values["redis-cluster"] !== undefined) {
    throw new UsageError("give --redis or --redis-cluster, not both")
  }
  const grpcPort = whole(values["grpc-port"], "grpc-port", 0, 65535)
  const options: ServeOptions = {
    config: values.config,
    host: values.host ?? "127.0.0.1",
    port: whole(values.port, "port", 0, 65535) ?? 8080,
    grpcPort: values["no-grpc"] ? false : (grpcPort ?? 8081),
    tokens: {
      decision: values.token ?? process.env.TOLLGATE_TOKEN,
      admin: values["admin-token"] ?? process.env.TOLLGATE_ADMIN_TOKEN,
    },
    onStoreError: mode,
    fallbackInstances: whole(values.instances, "instances", 1),
    storeTimeoutMs: ms(values["store-timeout"], "store-timeout", { zero: false }),
    maxBodyBytes: whole(values["max-body"], "max-body", 1),
    maxBatch: whole(values["max-batch"], "max-batch", 1),
    maxWaitMs: ms(values["max-wait"], "max-wait"),
    headersTimeoutMs: ms(values["headers-timeout"], "headers-timeout", { zero: false }),
    idleTimeoutMs: ms(values["idle-timeout"], "idle-timeout"),
    grpcMaxMessageBytes: whole(values["grpc-max-message"], "grpc-max-message", 1),
    healthIntervalMs: ms(values["health-interval"], "health-interval", { zero: false }),
    shutdownTimeoutMs: ms(values["shutdown-timeout"], "shutdown-timeout"),
    signals: true,
    log: jsonLogger,
  }
  if (values.redis !== undefined || values["redis-cluster"] !== undefined) {
    const target =
      values.redis !== undefined
        ? { url: values.redis }
        : { cluster: parseNodes(values["redis-cluster"]!) }
    Object.assign(
      options,
      await redisStore(target, (error) =>
        jsonLogger("warn", "redis not reachable yet; not ready until it is", {
          error: error.message,
        }),
      ),
    )
  }
  const server = await TollgateServer.start(options)
  io.out(
    `tollgate ${server.limits.version}: HTTP ${server.httpUrl}${server.grpcAddress ? `, gRPC ${server.grpcAddress}` : ""}, dashboard ${server.httpUrl}/\n`,
  )
  return await new Promise<number>(() => {}) // runs until a signal ends the process
}

function pairs(list: string[] | undefined, flag: string): [string, string][] {
  return (list ?? []).flatMap((item) =>
    item.split(",").map((pair): [string, string] => {
      const eq = pair.indexOf("=")
      if (eq < 1) throw new UsageError(`${flag}: expected key=value, got "${pair}"`)
      return [pair.slice(0, eq), pair.slice(eq + 1)]
    }),
  )
}

function describeDecision(
  d: Decision,
  io: Io,
  json: boolean,
  extra: Record<string, unknown> = {},
): number {
  // JSON has no Infinity: a decision's JSON says null for it (unlimited, or never).
  if (json) io.out(`${JSON.stringify({ ...d, ...extra })}\n`)
  else io.out(`${decisionText(d)}\n`)
  return d.allowed ? 0 : 1
}

function decisionText(d: Decision): string {
  const listed = (d as { listed?: unknown }).listed
  if (listed === "deny") return "denied by the deny list"
  if (listed === "allow") return "allowed by the allow list"
  const what = d.allowed ? "allowed" : "denied"
  const tier = d.tier === undefined ? "" : ` by tier ${d.tier}`
  const parts = [
    Number.isFinite(d.limit) ? `${Math.floor(d.remaining)} of ${d.limit} left` : "no limit",
  ]
  if (!d.allowed)
    parts.push(
      Number.isFinite(d.retryAfterMs)
        ? `retry after ${Math.ceil(d.retryAfterMs)} ms`
        : "retrying will not help",
    )
  if (Number.isFinite(d.resetAfterMs)) parts.push(`full again in ${Math.ceil(d.resetAfterMs)} ms`)
  return `${what}${tier}: ${parts.join(", ")}`
}

/** fromWire reads a decision from a server's JSON, where null stands for Infinity. */
function fromWire(answer: Record<string, unknown>): Decision {
  const d: Record<string, unknown> = { ...answer }
  for (const field of ["limit", "remaining", "retryAfterMs", "resetAfterMs"]) {
    if (d[field] === null || d[field] === undefined) d[field] = Number.POSITIVE_INFINITY
  }
  return d as unknown as Decision
}

async function check(args: string[], io: Io): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      config: { type: "string" },
      server: { type: "string" },
      token: { type: "string" },
      policy: { type: "string" },
      key: { type: "string" },
      cost: { type: "string" },
      request: { type: "string", multiple: true },
      domain: { type: "string" },
      descriptor: { type: "string" },
      json: { type: "boolean" },
    },
  })
  const cost = number(values.cost, "cost")
  const json = values.json === true
  if (values.server !== undefined) return checkServer(values, cost, json, io)
  if (values.config === undefined) throw new UsageError("check needs --config FILE or --server URL")
  const loaded = await readConfig(values.config)
  const clock = manualClock(Date.now())
  const runtime: LimitRuntime = {
    store: new MemoryStore(),
    clock,
    onStoreError: "closed",
    timeoutMs: 1000,
  }
  const limits = prepareLimits(loaded, runtime, undefined)()
  if (values.policy !== undefined) {
    const e = limits.policies.get(values.policy)
    if (e === undefined) throw new UsageError(`unknown policy "${values.policy}"`)
    if (values.key === undefined) throw new UsageError("--policy needs --key")
    return describeDecision((await e.limiter.limit(values.key, { cost })) as Decision, io, json)
  }
  if (values.request !== undefined) {
    if (limits.tiered === undefined) throw new UsageError("the config has no tiers section")
    const request = Object.fromEntries(pairs(values.request, "--request"))
    return describeDecision(await limits.tiered.limit(request, { cost }), io, json)
  }
  if (values.domain !== undefined) {
    const root = limits.domains.get(values.domain)
    if (root === undefined) throw new UsageError(`unknown domain "${values.domain}"`)
    const entries = pairs([values.descriptor ?? ""], "--descriptor").map(([key, value]) => ({
      key,
      value,
    }))
    const node = match(root, entries)
    if (node?.limit === undefined) {
      io.out(
        json
          ? `${JSON.stringify({ allowed: true, matched: null, limited: false })}\n`
          : "no rule matches: not limited\n",
      )
      return 0
    }
    const rule = node.limit
    if (rule.enforced === undefined) {
      // A rule of 0 per unit: every request is denied and no wait helps (null: never).
      const blocked = {
        allowed: false,
        limit: 0,
        remaining: 0,
        retryAfterMs: null,
        resetAfterMs: null,
        matched: node.id,
        blocked: true,
      }
      io.out(json ? `${JSON.stringify(blocked)}\n` : `rule ${node.id}: blocked (0 per unit)\n`)
      return 1
    }
    if (!json) io.out(`rule ${node.id}${rule.shadow ? " (shadow mode)" : ""}\n`)
    const d = (await rule.enforced.limiter.limit(counterKey(entries), { cost })) as Decision
    return describeDecision(d, io, json, { matched: node.id })
  }
  io.out(summary(loaded, limits.tiered !== undefined))
  return 0
}

function summary(loaded: LoadedConfig, tiers: boolean): string {
  const c = loaded.config
  const lines = [`${loaded.source}: valid (version ${loaded.version})`]
  const p = Object.keys(c.policies)
  lines.push(`  policies: ${p.length === 0 ? "none" : p.join(", ")}`)
  lines.push(
    `  domains:  ${c.domains.length === 0 ? "none" : c.domains.map((d) => d.domain).join(", ")}`,
  )
  lines.push(`  nginx:    ${c.nginx === undefined ? "not configured" : `policy ${c.nginx.policy}`}`)
  lines.push(`  tiers:    ${tiers ? Object.keys(c.tiers ?? {}).join(", ") : "none"}`)
  return `${lines.join("\n")}\n`
}

async function checkServer(
  values: { server?: string; token?: string; policy?: string; key?: string; request?: string[] },
  cost: number | undefined,
  json: boolean,
  io: Io,
): Promise<number> {
  const token = values.token ?? process.env.TOLLGATE_TOKEN
  const headers: Record<string, string> = { "content-type": "application/json" }
  if (token) headers.authorization = `Bearer ${token}`
  let path: string
  let body: unknown
  if (values.policy !== undefined) {
    if (values.key === undefined) throw new UsageError("--policy needs --key")
    path = "/v1/limit"
    body = { policy: values.policy, key: values.key, ...(cost === undefined ? {} : { cost }) }
  } else if (values.request !== undefined) {
    path = "/v1/check"
    body = {
      request: Object.fromEntries(pairs(values.request, "--request")),
      ...(cost === undefined ? {} : { cost }),
    }
  } else {
    throw new UsageError("with --server, give --policy and --key, or --request")
  }
  const res = await fetch(new URL(path, values.server), {
    method: "POST",
    headers,
    body: JSON.stringify(body),
  })
  const answer = (await res.json()) as Record<string, unknown> & {
    error?: { code: string; message: string }
  }
  if (!res.ok) {
    io.err(`tollgate: ${res.status} ${answer.error?.code}: ${answer.error?.message}\n`)
    return 2
  }
  return describeDecision(fromWire(answer), io, json)
}

function simulateCommand(args: string[], io: Io): number {
  const { values } = parseArgs({
    args,
    options: {
      config: { type: "string" },
      policy: { type: "string" },
      algorithm: { type: "string" },
      rate: { type: "string" },
      period: { type: "string" },
      burst: { type: "string" },
      limit: { type: "string" },
      window: { type: "string" },
      hold: { type: "string" },
      traffic: { type: "string" },
      rps: { type: "string" },
      "burst-rps": { type: "string" },
      every: { type: "string" },
      "burst-for": { type: "string" },
      to: { type: "string" },
      duration: { type: "string" },
      keys: { type: "string" },
      out: { type: "string" },
    },
  })
  if (values.out === undefined) throw new UsageError("simulate needs --out FILE.svg or FILE.html")
  let policy: Policy
  let title: string
  if (values.config !== undefined) {
    if (values.policy === undefined) throw new UsageError("with --config, name a --policy")
    const spec = readPolicySpec(values.config, values.policy)
    policy = toPolicy(spec, `policies.${values.policy}`)
    title = `policy ${values.policy}: ${describe(policy)}`
  } else {
    if (values.algorithm === undefined)
      throw new UsageError("give --config FILE --policy NAME, or --algorithm")
    const algorithm = oneOf(values.algorithm, "algorithm", ALGORITHMS)!
    const spec = {
      algorithm,
      rate: number(values.rate, "rate"),
      period: values.period,
      burst: number(values.burst, "burst"),
      limit: number(values.limit, "limit"),
      window: values.window,
    } as PolicySpec
    try {
      policy = toPolicy(
        Object.fromEntries(Object.entries(spec).filter(([, v]) => v !== undefined)) as PolicySpec,
        "policy",
      )
    } catch (error) {
      // The policy is made of flags: name the flag, not a config path.
      if (!(error instanceof ConfigError) || !error.path.startsWith("policy.")) throw error
      const flag = `--${error.path.slice("policy.".length)}`
      throw new UsageError(error.message.replace(`${error.path}:`, `${flag}:`))
    }
    title = describe(policy)
  }
  const rps = number(values.rps, "rps") ?? 10
  const kind = oneOf(values.traffic, "traffic", ["steady", "bursty", "ramp"] as const) ?? "steady"
  let pattern: Pattern
  if (kind === "steady") pattern = { kind, rps }
  else if (kind === "bursty") {
    pattern = {
      kind,
      rps,
      burstRps: number(values["burst-rps"], "burst-rps") ?? rps * 10,
      everyMs: ms(values.every, "every", { zero: false }) ?? 10_000,
      burstMs: ms(values["burst-for"], "burst-for") ?? 1000,
    }
  } else pattern = { kind, fromRps: rps, toRps: number(values.to, "to") ?? rps * 10 }
  const durationMs = ms(values.duration, "duration") ?? 60_000
  if (durationMs <= 0 || durationMs > 7 * 86_400_000)
    throw new UsageError("--duration: between 1 ms and 7 days")
  const holdMs = ms(values.hold, "hold") ?? 100
  const keys = whole(values.keys, "keys", 1) ?? 1
  const clock = manualClock(0)
  const limiter = createLimiter({ policy, clock, store: new MemoryStore() })
  const held: { until: number; release: () => unknown }[] = []
  const decide: Decide = (key, t) => {
    if (t > clock.now()) clock.set(t)
    while (held.length > 0 && held[0].until <= t) held.shift()!.release()
    const d = limiter.limit(key)
    if (d.allowed && d.lease !== undefined)
      held.push({ until: t + holdMs, release: d.lease.release })
    return d.allowed
  }
  const result = simulate(pattern, durationMs, decide, { keys })
  const html = values.out.endsWith(".html") || values.out.endsWith(".htm")
  writeFileSync(values.out, html ? renderHtml(result, title) : renderSvg(result, title))
  io.out(
    `${title}\n${result.admitted} admitted, ${result.denied} denied; chart written to ${values.out}\n`,
  )
  return 0
}

function readPolicySpec(file: string, name: string): PolicySpec {
  // A full check of the file first: simulate only configs that would load.
  const text = readFileSync(file, "utf8")
  const loaded = parseConfig(text, file)
  const spec = loaded.config.policies[name]
  if (spec === undefined) throw new UsageError(`unknown policy "${name}" in ${file}`)
  return spec
}

function describe(p: Policy): string {
  switch (p.kind) {
    case "tokenBucket":
      return `token bucket, ${p.rate} per ${p.periodMs / 1000} s, burst ${p.burst}`
    case "concurrency":
      return `concurrency, ${p.limit} at a time`
    default:
      return `${p.kind}, ${p.limit} per ${p.windowMs / 1000} s`
  }
}
