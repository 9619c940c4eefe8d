import type { Decision } from "../../core/decision.js"
import { assertPolicy, type Policy } from "../../core/policy.js"
import { type Grant, tokenBucketCancel, tokenBucketReserve } from "../../core/token-bucket.js"
import { ArgumentError, ConfigError, StoreError, UnsupportedError } from "../../errors.js"
import type { SyncNamespace } from "../store.js"
import { convert, KERNELS, type Kernel, window32 } from "./kernels.js"
import { KeyBytes, utf8Length } from "./key-bytes.js"
import { ID_BYTES, keyInline } from "./layout.js"
import { backOff } from "./lock.js"
import type { RequestTable } from "./request-table.js"
import type { SlotTable } from "./slot-table.js"

/** Memory: the shared tables of one store, as one thread opened them. */
export interface Memory {
  readonly buffer: SharedArrayBuffer
  readonly table: SlotTable
  readonly requests: RequestTable
  readonly maxKeyBytes: number
}

/** MAX_ATTEMPTS bounds the retries of one call that keeps finding its slots locked. */
const MAX_ATTEMPTS = 1000

/** retry waits before attempt `attempt + 1`, or gives up with StoreError. */
export function retry(attempt: number): void {
  if (attempt >= MAX_ATTEMPTS) {
    throw new StoreError(
      `SharedMemoryStore: gave up after ${MAX_ATTEMPTS} attempts to take a slot; every candidate stayed locked by other threads`,
    )
  }
  backOff(attempt)
}

/**
 * SharedNamespace: one (prefix, policy kind) of a SharedMemoryStore, as seen by one thread
 * with its own policy object. Each call encodes the key once, then works on the key's slot
 * under its lock; a key with no slot is decided on zeroed scratch state and given a slot
 * only if the result has to be kept (as MemoryStore adds a key only then).
 */
export class SharedNamespace implements SyncNamespace {
  readonly memory: Memory
  /** index: the namespace's entry in the shared registry. */
  readonly index: number
  policy: Policy
  readonly kernel: Kernel
  /** window: window32 of the policy's windowMs, as slots record it. */
  window: number
  /** keepTime: made `shared`: a bucket another policy wrote keeps its time to full. */
  readonly keepTime: boolean
  private readonly table: SlotTable
  private readonly numbers: Float64Array
  private readonly floats: Float32Array
  private readonly key: KeyBytes
  /** encoded: the key whose bytes `key` holds, if any. */
  private encoded: string | undefined
  private readonly id = new KeyBytes(ID_BYTES)
  private readonly scratch = new Float64Array(3)

  constructor(memory: Memory, index: number, policy: Policy, keepTime = false) {
    this.memory = memory
    this.index = index
    this.policy = policy
    this.keepTime = keepTime
    this.kernel = KERNELS[policy.kind]
    this.window = window32(policy.windowMs)
    this.table = memory.table
    this.numbers = memory.table.numbers
    this.floats = memory.table.floats
    this.key = new KeyBytes(memory.maxKeyBytes)
  }

  /** encode writes `key` into `into` (this namespace's own buffer by default) or throws ArgumentError. */
  encode(key: string, into: KeyBytes = this.key): KeyBytes {
    // A hot key arrives again and again: its bytes are already in this namespace's buffer.
    if (into === this.key && key === this.encoded) return into
    this.encoded = undefined
    if (!into.set(key, this.index)) {
      throw new ArgumentError(
        "key",
        `expected at most ${this.memory.maxKeyBytes} UTF-8 bytes (the SharedMemoryStore's maxKeyBytes), got ${utf8Length(key)}`,
      )
    }
    into.ns = this.index
    into.inline = keyInline(this.kernel.width)
    if (into === this.key) this.encoded = key
    return into
  }

  /**
   * prepare readies a locked slot's state for this namespace's policy; returns its index.
   * `keepTime` false converts a bucket to keep its fill fraction whatever the namespace
   * (setPolicy's own conversion).
   */
  private prepare(slot: number, now: number, keepTime = this.keepTime): number {
    const at = this.table.stateAt(slot)
    const w = this.table.windowAt(slot)
    const stored = this.floats[w]
    if (stored !== this.window) {
      this.floats[w] = convert(this.policy, this.window, stored, this.numbers, at, now, keepTime)
    }
    return at
  }

  /** keep copies the scratch state into a slot just placed (locked). */
  private keep(slot: number, now: number): void {
    // Only the kind's own numbers: the key's bytes follow them in the record.
    this.numbers.set(this.scratch.subarray(0, this.kernel.width), this.table.stateAt(slot))
    this.floats[this.table.windowAt(slot)] = this.window
    this.table.touch(slot, now)
  }

  /** fresh decides `cost` for a key with no state, on the scratch state. */
  private fresh(cost: number, now: number): Decision {
    this.scratch.fill(0)
    return this.kernel.limit(this.policy, this.scratch, 0, now, cost)
  }

  private consume(slot: number, cost: number, now: number): Decision {
    const d = this.kernel.limit(this.policy, this.numbers, this.prepare(slot, now), now, cost)
    this.table.touch(slot, now)
    return d
  }

  limit(key: string, cost: number, now: number, requestId?: string): Decision {
    const k = this.encode(key)
    if (requestId !== undefined) return this.limitOnce(requestId, cost, now)
    const table = this.table
    for (let attempt = 0; ; attempt++) {
      const slot = table.find(k)
      if (slot >= 0) {
        try {
          return this.consume(slot, cost, now)
        } finally {
          table.unlock(slot)
        }
      }
      const d = this.fresh(cost, now)
      if (!d.allowed || this.kernel.empty(this.policy, this.scratch, 0, now)) return d
      const placed = table.place(k, now)
      if (placed >= 0) {
        try {
          this.keep(placed, now)
        } finally {
          table.unlock(placed)
        }
        return d
      }
      retry(attempt)
    }
  }

  /**
   * limitOnce is limit() with a request id: the id is looked up again under the key's lock,
   * so concurrent retries of one request consume once.
   */
  private limitOnce(requestId: string, cost: number, now: number): Decision {
    const id = this.id
    const key = this.key
    if (!id.set(requestId, key.hash)) {
      throw new ArgumentError(
        "requestId",
        `expected at most ${ID_BYTES} UTF-8 bytes in a SharedMemoryStore, got ${utf8Length(requestId)}`,
      )
    }
    const requests = this.memory.requests
    const seen = requests.lookup(this.index, key, id, now)
    if (seen !== undefined) return seen
    const expiresAt = now + this.policy.windowMs
    const table = this.table
    for (let attempt = 0; ; attempt++) {
      const slot = table.find(key)
      if (slot >= 0) {
        try {
          const again = requests.lookup(this.index, key, id, now)
          if (again !== undefined) return again
          const d = this.consume(slot, cost, now)
          if (d.allowed) requests.remember(this.index, key, id, d, expiresAt, now)
          return d
        } finally {
          table.unlock(slot)
        }
      }
      const d = this.fresh(cost, now)
      if (!d.allowed) return d
      if (this.kernel.empty(this.policy, this.scratch, 0, now)) {
        requests.remember(this.index, key, id, d, expiresAt, now)
        return d
      }
      const placed = table.place(key, now)
      if (placed >= 0) {
        try {
          const again = requests.lookup(this.index, key, id, now)
          if (again !== undefined) {
            table.free(placed)
            return again
          }
          this.keep(placed, now)
          requests.remember(this.index, key, id, d, expiresAt, now)
          return d
        } finally {
          table.unlock(placed)
        }
      }
      retry(attempt)
    }
  }

  peek(key: string, now: number): Decision {
    const slot = this.table.find(this.encode(key))
    if (slot < 0) {
      this.scratch.fill(0)
      return this.kernel.peek(this.policy, this.scratch, 0, now)
    }
    try {
      return this.kernel.peek(this.policy, this.numbers, this.prepare(slot, now), now)
    } finally {
      this.table.unlock(slot)
    }
  }

  reset(key: string): void {
    const slot = this.table.find(this.encode(key))
    if (slot < 0) return
    this.table.free(slot)
    this.table.unlock(slot)
  }

  reserve(key: string, cost: number, now: number, maxWaitMs: number): Grant {
    const p = this.policy
    if (p.kind !== "tokenBucket") {
      throw new UnsupportedError(`reserve needs a tokenBucket policy, not ${p.kind}`)
    }
    const k = this.encode(key)
    const table = this.table
    for (let attempt = 0; ; attempt++) {
      const slot = table.find(k)
      if (slot >= 0) {
        try {
          const at = this.prepare(slot, now)
          const grant = tokenBucketReserve(p, this.numbers, at, now, cost, maxWaitMs)
          table.touch(slot, now)
          return grant
        } finally {
          table.unlock(slot)
        }
      }
      this.scratch.fill(0)
      const grant = tokenBucketReserve(p, this.scratch, 0, now, cost, maxWaitMs)
      if (!grant.ok || this.scratch[0] <= now) return grant
      const placed = table.place(k, now)
      if (placed >= 0) {
        try {
          this.keep(placed, now)
        } finally {
          table.unlock(placed)
        }
        return grant
      }
      retry(attempt)
    }
  }

  cancel(key: string, cost: number, executeAt: number, now: number): void {
    const p = this.policy
    if (p.kind !== "tokenBucket") {
      throw new UnsupportedError(`cancel needs a tokenBucket policy, not ${p.kind}`)
    }
    const slot = this.table.find(this.encode(key))
    if (slot < 0) return
    try {
      tokenBucketCancel(p, this.numbers, this.prepare(slot, now), now, cost, executeAt)
    } finally {
      this.table.unlock(slot)
    }
  }

  release(_key: string, _leaseId: string, _now: number): void {
    throw new UnsupportedError(`release needs a concurrency policy, not ${this.policy.kind}`)
  }

  adjust(key: string, delta: number, now: number): Decision {
    const k = this.encode(key)
    const table = this.table
    for (let attempt = 0; ; attempt++) {
      const slot = table.find(k)
      if (slot >= 0) {
        try {
          const at = this.prepare(slot, now)
          const d = this.kernel.adjust(this.policy, this.numbers, at, now, delta)
          table.touch(slot, now)
          return d
        } finally {
          table.unlock(slot)
        }
      }
      this.scratch.fill(0)
      const d = this.kernel.adjust(this.policy, this.scratch, 0, now, delta)
      if (this.kernel.empty(this.policy, this.scratch, 0, now)) return d
      const placed = table.place(k, now)
      if (placed >= 0) {
        try {
          this.keep(placed, now)
        } finally {
          table.unlock(placed)
        }
        return d
      }
      retry(attempt)
    }
  }

  /**
   * setPolicy switches this thread's namespace to another policy of the same kind. A token
   * bucket's keys are converted at once (each keeps its fill fraction); threads still on the
   * old policy convert a key back to their terms when they next touch it, so set the new
   * policy in every thread.
   */
  setPolicy(policy: Policy, now: number): void {
    assertPolicy(policy)
    if (policy.kind !== this.policy.kind) {
      throw new ConfigError(
        "policy",
        `a namespace keeps its kind (${this.policy.kind}), got ${policy.kind}`,
      )
    }
    const from = this.policy
    this.policy = policy
    this.window = window32(policy.windowMs)
    if (policy.kind === "tokenBucket" && from.windowMs !== policy.windowMs) {
      this.table.forEach(this.index, (slot) => {
        this.prepare(slot, now, false)
      })
    }
  }

  size(): number {
    return this.table.size(this.index)
  }
}
