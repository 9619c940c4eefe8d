// Envoy's RateLimitService over gRPC: ShouldRateLimit matches each descriptor against the
// domain's rules (descriptors.ts) and counts it on the matched rule's limiter. Descriptors
// are decided independently, as Envoy's reference service does: the answer is OVER_LIMIT
// when any enforcing descriptor is over, and each status says which. A rule in shadow
// mode is counted and reported but never makes the answer OVER_LIMIT. The RateLimit
// headers describe the enforcing descriptor that binds hardest: when the answer is
// OVER_LIMIT, always one that is over, whatever made it so.

import { fileURLToPath } from "node:url"
import * as grpc from "@grpc/grpc-js"
import * as protoLoader from "@grpc/proto-loader"
import { counterKey, type Entry, match } from "../descriptors.js"
import { Bearer, type Tokens } from "../http/bearer.js"
import { HttpError } from "../http/errors.js"
import { ArgumentError, type Decision, rateLimitHeader, StoreError } from "../lib.js"
import type { RuleLimit } from "../limits.js"
import type { Decider } from "../service.js"

/** PROTO_DIR: the directory of the .proto files (include path for loaders). */
export const PROTO_DIR = fileURLToPath(new URL("../../proto/", import.meta.url))
export const RLS_PROTO = "envoy/service/ratelimit/v3/rls.proto"

/** LOADER_OPTIONS: how both the server and the tests read the .proto files. */
export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTO_DIR],
}

/** loadRls loads the service definition (server and clients alike). */
export function loadRls(): grpc.GrpcObject {
  return grpc.loadPackageDefinition(protoLoader.loadSync(RLS_PROTO, LOADER_OPTIONS))
}

interface RateLimitRequest {
  domain: string
  descriptors: { entries: Entry[]; hits_addend: { value: number } | null }[]
  hits_addend: number
}

interface DescriptorStatus {
  code: "OK" | "OVER_LIMIT"
  current_limit: { name: string; requests_per_unit: number; unit: number } | null
  limit_remaining: number
  duration_until_reset: { seconds: number; nanos: number } | null
}

export interface GrpcOptions {
  decider: Decider
  tokens: Tokens
  maxMessageBytes: number
}

function duration(ms: number): { seconds: number; nanos: number } {
  const clamped = Math.max(0, Math.ceil(ms))
  return { seconds: Math.floor(clamped / 1000), nanos: (clamped % 1000) * 1_000_000 }
}

function fail(code: grpc.status, message: string): grpc.ServiceError {
  return Object.assign(new Error(message), {
    code,
    details: message,
    metadata: new grpc.Metadata(),
  }) as grpc.ServiceError
}

/** toGrpcError maps what a decision threw to a gRPC status. */
function toGrpcError(error: unknown): grpc.ServiceError {
  if (error instanceof HttpError) {
    return fail(
      error.status === 401 ? grpc.status.UNAUTHENTICATED : grpc.status.PERMISSION_DENIED,
      error.message,
    )
  }
  if (error instanceof ArgumentError) return fail(grpc.status.INVALID_ARGUMENT, error.message)
  if (error instanceof StoreError) return fail(grpc.status.UNAVAILABLE, error.message)
  return fail(grpc.status.INTERNAL, "internal error")
}

/** createRlsServer builds the gRPC server (not yet bound). */
export function createRlsServer(o: GrpcOptions): grpc.Server {
  const server = new grpc.Server({
    "grpc.max_receive_message_length": o.maxMessageBytes,
    "grpc.max_send_message_length": o.maxMessageBytes,
    "grpc.max_concurrent_streams": 1000,
    "grpc.max_connection_idle_ms": 5 * 60_000,
  })
  const bearer = new Bearer(o.tokens)
  const pkg = loadRls() as unknown as {
    envoy: {
      service: { ratelimit: { v3: { RateLimitService: { service: grpc.ServiceDefinition } } } }
    }
  }
  server.addService(pkg.envoy.service.ratelimit.v3.RateLimitService.service, {
    ShouldRateLimit: (
      call: grpc.ServerUnaryCall<RateLimitRequest, unknown>,
      callback: grpc.sendUnaryData<unknown>,
    ) => {
      try {
        const auth = call.metadata.get("authorization")[0]
        bearer.check("decision", typeof auth === "string" ? auth : undefined)
        shouldRateLimit(o.decider, call.request).then(
          (response) => callback(null, response),
          (error) => callback(toGrpcError(error)),
        )
      } catch (error) {
        callback(toGrpcError(error))
      }
    },
  })
  return server
}

async function shouldRateLimit(decider: Decider, req: RateLimitRequest) {
  if (req.domain === "") throw new ArgumentError("domain", "expected a domain, got an empty one")
  if (req.descriptors.length === 0) {
    throw new ArgumentError("descriptors", "expected at least one descriptor")
  }
  const root = decider.limits.domains.get(req.domain)
  const hits = req.hits_addend === 0 ? 1 : req.hits_addend
  let bind: { d: Decision; name: string; header: string } | undefined
  const statuses = await Promise.all(
    req.descriptors.map(async (desc, i): Promise<DescriptorStatus> => {
      if (desc.entries.length === 0) {
        throw new ArgumentError(`descriptors[${i}].entries`, "expected at least one entry")
      }
      const cost = desc.hits_addend === null ? hits : Number(desc.hits_addend.value)
      const node = root === undefined ? undefined : match(root, desc.entries)
      const rule = node?.limit
      if (rule === undefined) {
        return { code: "OK", current_limit: null, limit_remaining: 0, duration_until_reset: null }
      }
      const key = counterKey(desc.entries)
      const d = await decide(decider, rule, key, cost)
      if (!rule.shadow && bindsOver(d, bind?.d)) {
        bind = { d, name: rule.envoy.name, header: rule.policyHeader }
      }
      return {
        code: d.allowed || rule.shadow ? "OK" : "OVER_LIMIT",
        current_limit: rule.envoy,
        limit_remaining: Math.max(0, Math.floor(d.remaining)),
        duration_until_reset: duration(d.allowed ? d.resetAfterMs : d.retryAfterMs),
      }
    }),
  )
  const overLimit = statuses.some((s) => s.code === "OVER_LIMIT")
  const headers: { key: string; value: string }[] = []
  if (bind !== undefined) {
    headers.push({ key: "ratelimit-policy", value: bind.header })
    headers.push({ key: "ratelimit", value: rateLimitHeader(bind.name, bind.d) })
    if (!bind.d.allowed) {
      headers.push({
        key: "retry-after",
        value: String(Math.ceil(bind.d.retryAfterMs / 1000 - 1e-9)),
      })
    }
  }
  return {
    overall_code: overLimit ? "OVER_LIMIT" : "OK",
    statuses,
    response_headers_to_add: headers,
    request_headers_to_add: [],
  }
}

/**
 * decide is one descriptor's decision under its rule, counted in the metrics and on the
 * dashboard under the rule's name whichever way it is reached. Two kinds of call can
 * never pass and are denied without asking the limiter: a rule of 0 per unit, and a
 * cost above the rule's capacity. Both are told to wait one whole window of the rule;
 * the second also reports what the key has left (a peek, which takes nothing).
 */
async function decide(
  decider: Decider,
  rule: RuleLimit,
  key: string,
  cost: number,
): Promise<Decision> {
  const e = rule.enforced
  if (!rule.block && e !== undefined && cost <= e.policy.limit) {
    return decider.limit(e, key, cost, undefined, "grpc")
  }
  let remaining = 0
  let resetAfterMs = 0
  if (e !== undefined && !rule.block) {
    try {
      const now = await e.limiter.peek(key)
      remaining = now.remaining
      resetAfterMs = now.resetAfterMs
    } catch {
      // The answer is OVER_LIMIT whatever the store holds; only `remaining` is unknown.
    }
  }
  const d: Decision = {
    allowed: false,
    limit: e === undefined || rule.block ? 0 : e.policy.limit,
    remaining,
    retryAfterMs: rule.windowMs,
    resetAfterMs,
  }
  decider.record(rule.envoy.name, d, key)
  return d
}

/** bindsOver: `a` says more about the answer than `b` (a denial, the longest wait; else the least left). */
function bindsOver(a: Decision, b: Decision | undefined): boolean {
  if (b === undefined) return true
  if (a.allowed !== b.allowed) return !a.allowed
  if (!a.allowed) return a.retryAfterMs > b.retryAfterMs
  return a.remaining / a.limit < b.remaining / b.limit
}
