// A Decision as the HTTP API writes it: times rounded up to whole ms (a client that waits
// that long is never early), an unlimited limit as null, and the RateLimit header fields.

import {
  DEGRADED_HEADER,
  type Decision,
  rateLimitHeader,
  retryAfterHeader,
  type TieredDecision,
} from "../lib.js"

export interface DecisionJson {
  allowed: boolean
  limit: number | null
  remaining: number | null
  retryAfterMs: number | null
  resetAfterMs: number
  policy?: string
  tier?: string
  degraded?: "fallback" | "open"
  lease?: { id: string; expiresAt: number }
}

const finite = (n: number): number | null => (Number.isFinite(n) ? n : null)

/**
 * decisionJson writes a Decision for a JSON body. Its lease is written only with
 * `leaseId`, the id the server registered it under: the store's own lease id is unique
 * within one policy only, so it is never handed to a client.
 */
export function decisionJson(d: Decision, policy?: string, leaseId?: string): DecisionJson {
  const out: DecisionJson = {
    allowed: d.allowed,
    limit: finite(d.limit),
    remaining: finite(d.remaining),
    retryAfterMs: finite(Math.ceil(d.retryAfterMs)),
    resetAfterMs: Math.ceil(d.resetAfterMs),
  }
  if (policy !== undefined) out.policy = policy
  if (d.tier !== undefined) out.tier = d.tier
  if (d.degraded !== undefined) out.degraded = d.degraded
  if (d.lease !== undefined && leaseId !== undefined) {
    out.lease = { id: leaseId, expiresAt: Math.ceil(d.lease.expiresAt) }
  }
  return out
}

/** tieredJson writes a multi-tier decision, with every tier's part. */
export function tieredJson(d: TieredDecision): DecisionJson & Record<string, unknown> {
  const tiers: Record<string, DecisionJson> = {}
  for (const [name, t] of Object.entries(d.tiers)) {
    const part = decisionJson(t) as DecisionJson & { shadow?: true; blocked?: true }
    if (t.shadow) part.shadow = true
    if (t.blocked) part.blocked = true
    tiers[name] = part
  }
  const out: DecisionJson & Record<string, unknown> = { ...decisionJson(d), tiers }
  if (d.listed !== undefined) out.listed = d.listed
  if (d.duplicate) out.duplicate = true
  return out
}

/** decisionHeaders are the response header fields for a decision under a named policy. */
export function decisionHeaders(
  name: string,
  policyHeader: string | undefined,
  d: Decision,
): Record<string, string> {
  const headers: Record<string, string> = {}
  if (policyHeader !== undefined) headers["ratelimit-policy"] = policyHeader
  if (Number.isFinite(d.limit)) headers.ratelimit = rateLimitHeader(name, d)
  if (!d.allowed) {
    const retry = retryAfterHeader(d)
    if (retry !== undefined) headers["retry-after"] = retry
  }
  if (d.degraded !== undefined) headers[DEGRADED_HEADER.toLowerCase()] = d.degraded
  return headers
}
