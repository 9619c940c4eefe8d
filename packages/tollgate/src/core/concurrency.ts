import { COST_EPSILON, type Decision, decision, EPSILON_MS, whole } from "./decision.js"
import type { ConcurrencyPolicy } from "./policy.js"

/** ActiveLease: one admission still in flight until `expiresAt` (epoch ms) or release. */
export interface ActiveLease {
  id: string
  cost: number
  expiresAt: number
}

/** LeaseState: the leases in flight and the sum of their costs. */
export interface LeaseState {
  leases: ActiveLease[]
  inFlight: number
}

export function newLeaseState(): LeaseState {
  return { leases: [], inFlight: 0 }
}

function expire(st: LeaseState, at: number): void {
  // A lease ends at expiresAt, with the microsecond of slack every algorithm allows.
  const now = at + EPSILON_MS
  let expired = false
  for (const lease of st.leases) {
    if (lease.expiresAt <= now) {
      expired = true
      break
    }
  }
  if (!expired) return
  st.leases = st.leases.filter((lease) => lease.expiresAt > now)
  st.inFlight = 0
  for (const lease of st.leases) st.inFlight += lease.cost
}

function resetAfter(st: LeaseState, now: number): number {
  let last = now
  for (const lease of st.leases) if (lease.expiresAt > last) last = lease.expiresAt
  return last - now
}

/**
 * concurrencyLimit admits `cost` as a new lease `id` when the leases in flight leave room.
 * A denial's retryAfterMs is when enough leases expire, assuming none is released first.
 */
export function concurrencyLimit(
  p: ConcurrencyPolicy,
  st: LeaseState,
  now: number,
  cost: number,
  id: string,
): Decision {
  expire(st, now)
  if (st.inFlight + cost <= p.limit + COST_EPSILON) {
    if (cost > 0) {
      st.leases.push({ id, cost, expiresAt: now + p.leaseTimeoutMs })
      st.inFlight += cost
    }
    return decision(true, p.limit, whole(p.limit - st.inFlight), 0, resetAfter(st, now))
  }
  const byExpiry = st.leases.slice().sort((a, b) => a.expiresAt - b.expiresAt)
  const excess = st.inFlight + cost - p.limit - COST_EPSILON
  let freed = 0
  let retry = p.leaseTimeoutMs
  for (const lease of byExpiry) {
    freed += lease.cost
    if (freed >= excess) {
      retry = lease.expiresAt - now
      break
    }
  }
  return decision(false, p.limit, whole(p.limit - st.inFlight), retry, resetAfter(st, now))
}

export function concurrencyPeek(p: ConcurrencyPolicy, st: LeaseState, now: number): Decision {
  return concurrencyLimit(p, st, now, 0, "")
}

/** concurrencyRelease ends lease `id`; releasing an unknown or ended lease does nothing. */
export function concurrencyRelease(st: LeaseState, id: string): boolean {
  const index = st.leases.findIndex((lease) => lease.id === id)
  if (index < 0) return false
  st.inFlight -= st.leases[index].cost
  st.leases.splice(index, 1)
  if (st.leases.length === 0) st.inFlight = 0
  return true
}

export function concurrencyEmpty(st: LeaseState, now: number): boolean {
  for (const lease of st.leases) if (lease.expiresAt > now + EPSILON_MS) return false
  return true
}

/** cloneLeaseState copies the leases, for checks that must not write. */
export function cloneLeaseState(st: LeaseState): LeaseState {
  return { leases: st.leases.slice(), inFlight: st.inFlight }
}
