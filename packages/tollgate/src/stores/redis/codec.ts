import { type Decision, decision, type Lease } from "../../core/decision.js"
import { fixedWindowBounds } from "../../core/fixed-window.js"
import type { FixedWindowPolicy, Policy } from "../../core/policy.js"
import { TAGS } from "./key-layout.js"

// How policies travel to the scripts and how replies come back. Numbers go as JavaScript
// numbers (ioredis writes them in their shortest round-trip form, which Lua's tonumber
// reads exactly) and come back as little-endian doubles, so both directions are exact.

/**
 * History: a token bucket namespace's policies, oldest first: [windowMs, changedAt,
 * generation] (generation counts the changes, telling apart two changes at one instant).
 */
export type History = [windowMs: number, changedAt: number, generation: number][]

/** HISTORY_LENGTH: policy changes remembered for converting buckets written before them. */
export const HISTORY_LENGTH = 16

/**
 * policyArgs is the policy as the scripts read it (see lua/lib/kernels.lua). Calendar
 * fixed windows need `bounds`: window boundaries around the callers' times.
 */
export function policyArgs(
  policy: Policy,
  history: History,
  bounds: readonly number[] = [],
): (string | number)[] {
  switch (policy.kind) {
    case "tokenBucket": {
      const args: (string | number)[] = [
        TAGS.tokenBucket,
        policy.burst,
        policy.intervalMs,
        policy.windowMs,
        history.length,
      ]
      for (const [windowMs, changedAt, generation] of history) {
        args.push(windowMs, changedAt, generation)
      }
      return args
    }
    case "fixedWindow":
      return [TAGS.fixedWindow, policy.limit, policy.windowMs, bounds.length, ...bounds]
    case "concurrency":
      return [TAGS.concurrency, policy.limit, policy.leaseTimeoutMs]
    default:
      return [TAGS[policy.kind], policy.limit, policy.windowMs]
  }
}

/**
 * calendarBounds lists window boundaries from the window before `from`'s to the window
 * after `to`'s, so a server whose clock differs from the caller's by up to a window
 * still finds its window.
 */
export function calendarBounds(policy: FixedWindowPolicy, from: number, to: number): number[] {
  const [start, end] = fixedWindowBounds(policy, from)
  const list = [fixedWindowBounds(policy, start - 1)[0], start, end]
  let last = end
  for (;;) {
    const next = fixedWindowBounds(policy, last)[1]
    list.push(next)
    if (last > to) return list
    last = next
  }
}

/** DECISION_BYTES: a decision in a reply: allowed (a byte), limit, remaining, retryAfterMs, resetAfterMs. */
export const DECISION_BYTES = 33

/** readDecision reads a decision from `reply` at byte `at`. */
export function readDecision(reply: Buffer, at = 0): Decision {
  return decision(
    reply[at] === 1,
    reply.readDoubleLE(at + 1),
    reply.readDoubleLE(at + 9),
    reply.readDoubleLE(at + 17),
    reply.readDoubleLE(at + 25),
  )
}

/**
 * readLimit reads the `length` bytes of a limit reply from `start`: a decision, then the
 * lease taken with it (cost, expiresAt, id length, id), if any.
 */
export function readLimit(reply: unknown, start: number, length: number, key: string): Decision {
  const r = reply as Buffer
  const d = readDecision(r, start)
  if (length > DECISION_BYTES) {
    const at = start + DECISION_BYTES
    const n = r.readUInt16LE(at + 16)
    d.lease = {
      id: r.toString("latin1", at + 18, at + 18 + n),
      key,
      cost: r.readDoubleLE(at),
      expiresAt: r.readDoubleLE(at + 8),
    } as Lease
  }
  return d
}
