import type { Decision } from "../core/decision.js"
import { assertPolicy, type Policy } from "../core/policy.js"
import { ArgumentError, ConfigError, describe, UnsupportedError } from "../errors.js"
import { convert, KERNELS } from "./shared/kernels.js"
import { KeyBytes } from "./shared/key-bytes.js"
import {
  create,
  H_NAMESPACES,
  H_REGISTRY_LOCK,
  MAX_NAMESPACES,
  MAX_PREFIX_UNITS,
  open,
  type Views,
} from "./shared/layout.js"
import { lock, unlock } from "./shared/lock.js"
import { type Memory, retry, SharedNamespace } from "./shared/namespace.js"
import { RequestTable } from "./shared/request-table.js"
import { SlotTable } from "./shared/slot-table.js"
import type { Check, NamespaceOptions, SyncNamespace, SyncStore } from "./store.js"

/**
 * SharedMemoryHandle opens a SharedMemoryStore's memory in another thread. It is a plain
 * object holding the SharedArrayBuffer, so it can travel in `workerData` or `postMessage`.
 */
export interface SharedMemoryHandle {
  readonly buffer: SharedArrayBuffer
}

export interface SharedMemoryStoreOptions {
  /** maxKeys: the most keys held across all namespaces. Default 100,000. Fixed at creation. */
  maxKeys?: number
  /** maxKeyBytes: the longest key in UTF-8 bytes (prefix not included). Default 64. */
  maxKeyBytes?: number
  /** maxRequestIds: about how many request ids are remembered at once. Default min(maxKeys, 16,384). */
  maxRequestIds?: number
  /** handle: open the memory of an existing store (from `store.handle`) instead of making one. */
  handle?: SharedMemoryHandle
}

const MAX_KEYS = 1 << 24
const MAX_KEY_BYTES = 1024

function wholeNumber(value: unknown, path: string, max: number): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1 || value > max) {
    throw new ConfigError(path, `expected a whole number from 1 to ${max}, got ${describe(value)}`)
  }
  return value
}

/**
 * SharedMemoryStore: a store in one SharedArrayBuffer, shared by the worker threads of a
 * process. Make it once, pass `store.handle` to each worker (workerData or postMessage), and
 * open it there with `SharedMemoryStore.open(handle)`: every thread then decides over the
 * same state. Synchronous, like MemoryStore, so limiters over it answer without promises.
 *
 * Each key's state is changed under that key's lock, so decisions are exact however many
 * threads hit one key: admitted traffic never exceeds the policy. Policies: tokenBucket,
 * fixedWindow and slidingWindowCounter (fixed-size state); slidingWindowLog and
 * concurrency throw UnsupportedError. The memory is fixed at creation: `maxKeys` keys of
 * up to `maxKeyBytes` UTF-8 bytes each (a longer key throws ArgumentError). When the store
 * is full, a new key first takes the place of a key whose state carries no information,
 * else of the least recently used of the keys stored near it (within 32 slots).
 *
 * Terminating a worker (`worker.terminate()`) while it is inside a store call can leave a
 * key locked for good; let workers finish their calls and exit instead.
 *
 * @example
 * const store = new SharedMemoryStore({ maxKeys: 100_000 })
 * new Worker("./worker.js", { workerData: { store: store.handle } })
 * // in worker.js:
 * const limiter = createLimiter({ policy, store: SharedMemoryStore.open(workerData.store) })
 */
export class SharedMemoryStore implements SyncStore, Memory {
  readonly synchronous = true as const
  /** handle opens this store's memory in another thread. */
  readonly handle: SharedMemoryHandle
  readonly maxKeys: number
  readonly maxKeyBytes: number
  readonly maxRequestIds: number
  /** @internal */
  readonly views: Views
  /** @internal */
  readonly buffer: SharedArrayBuffer
  /** @internal */
  readonly table: SlotTable
  /** @internal */
  readonly requests: RequestTable
  private readonly registered = new Map<string, number>()

  /** open returns a store over the memory of the store that `handle` came from. */
  static open(handle: SharedMemoryHandle): SharedMemoryStore {
    return new SharedMemoryStore({ handle })
  }

  constructor(options: SharedMemoryStoreOptions = {}) {
    if (typeof options !== "object" || options === null) {
      throw new ConfigError(
        "SharedMemoryStore",
        `expected an options object, got ${describe(options)}`,
      )
    }
    if (options.handle !== undefined) {
      for (const name of ["maxKeys", "maxKeyBytes", "maxRequestIds"] as const) {
        if (options[name] !== undefined) {
          throw new ConfigError(
            name,
            "is fixed by the store that made the handle; open a handle with { handle } alone",
          )
        }
      }
      const handle = options.handle as unknown
      if (typeof handle !== "object" || handle === null) {
        throw new ConfigError(
          "handle",
          `expected the handle of a SharedMemoryStore, got ${describe(handle)}`,
        )
      }
      this.views = open((handle as { buffer?: unknown }).buffer, "handle")
    } else {
      const maxKeys = wholeNumber(options.maxKeys ?? 100_000, "maxKeys", MAX_KEYS)
      const keyBytes = wholeNumber(options.maxKeyBytes ?? 64, "maxKeyBytes", MAX_KEY_BYTES)
      const maxRequestIds = wholeNumber(
        options.maxRequestIds ?? Math.min(maxKeys, 16_384),
        "maxRequestIds",
        MAX_KEYS,
      )
      this.views = create({
        // Half again as many slots as keys keeps probe sequences short.
        slots: Math.max(8, Math.ceil(maxKeys * 1.5)),
        maxKeys,
        keyBytes,
        entries: Math.max(8, Math.ceil(maxRequestIds * 1.5)),
        maxRequestIds,
      })
    }
    this.maxKeys = this.views.maxKeys
    this.maxKeyBytes = this.views.keyBytes
    this.maxRequestIds = this.views.maxRequestIds
    this.buffer = this.views.buffer
    this.handle = Object.freeze({ buffer: this.buffer })
    this.table = new SlotTable(this.views)
    this.requests = new RequestTable(this.views)
  }

  /** size is the number of keys held across all namespaces, by all threads. */
  get size(): number {
    return this.table.size()
  }

  /** byteLength is the size of the shared memory, in bytes. */
  get byteLength(): number {
    return this.buffer.byteLength
  }

  namespace(prefix: string, policy: Policy, options?: NamespaceOptions): SyncNamespace {
    assertPolicy(policy)
    if (typeof prefix !== "string" || prefix.length > MAX_PREFIX_UNITS) {
      throw new ConfigError(
        "prefix",
        `expected a string of at most ${MAX_PREFIX_UNITS} characters, got ${describe(prefix)}`,
      )
    }
    const kernel = KERNELS[policy.kind]
    if (kernel === undefined) {
      throw new UnsupportedError(
        `SharedMemoryStore keeps fixed-size state only (tokenBucket, fixedWindow, slidingWindowCounter); ${policy.kind} is not supported: use a MemoryStore or a Redis store for it`,
      )
    }
    const index = this.register(prefix, kernel.code)
    return new SharedNamespace(this, index, policy, options?.shared === true)
  }

  /** register finds or adds (kind, prefix) in the shared registry and returns its index. */
  private register(prefix: string, code: number): number {
    const id = `${code}:${prefix}`
    const known = this.registered.get(id)
    if (known !== undefined) return known
    const { header, registry, prefixes } = this.views
    let index = -1
    lock(header, H_REGISTRY_LOCK)
    try {
      const count = header[H_NAMESPACES]
      for (let i = 0; i < count && index < 0; i++) {
        if (registry[2 * i] !== code || registry[2 * i + 1] !== prefix.length) continue
        const base = i * MAX_PREFIX_UNITS
        let same = true
        for (let c = 0; c < prefix.length && same; c++) {
          same = prefixes[base + c] === prefix.charCodeAt(c)
        }
        if (same) index = i
      }
      if (index < 0) {
        if (count === MAX_NAMESPACES) {
          throw new ConfigError(
            "prefix",
            `a SharedMemoryStore holds at most ${MAX_NAMESPACES} (prefix, policy kind) namespaces`,
          )
        }
        index = count
        registry[2 * index] = code
        registry[2 * index + 1] = prefix.length
        for (let c = 0; c < prefix.length; c++) {
          prefixes[index * MAX_PREFIX_UNITS + c] = prefix.charCodeAt(c)
        }
        header[H_NAMESPACES] = count + 1
      }
    } finally {
      unlock(header, H_REGISTRY_LOCK)
    }
    this.registered.set(id, index)
    return index
  }

  /**
   * limitAll admits every check or none. The keys' slots are locked together (in slot
   * order, so concurrent calls cannot deadlock); the checks run in order on copies of their
   * states, so two checks on one key count together; only if all are allowed are the
   * copies written back. Otherwise nothing changes and the decisions are those of the run
   * on the copies (for distinct keys: whether each check alone would pass).
   */
  limitAll(checks: readonly Check[], now: number): Decision[] {
    const parts = checks.map((check, i) => {
      const ns = check.namespace
      if (!(ns instanceof SharedNamespace) || ns.memory.buffer !== this.buffer) {
        throw new ArgumentError(
          `checks[${i}].namespace`,
          "expected a namespace of this SharedMemoryStore",
        )
      }
      return { ns, key: ns.encode(check.key, new KeyBytes(this.maxKeyBytes)), cost: check.cost }
    })
    const entries: Entry[] = []
    const entryOf: number[] = []
    for (const part of parts) {
      let e = entries.findIndex((x) => sameKey(x.key, part.key))
      if (e < 0) {
        e = entries.length
        entries.push({
          ns: part.ns,
          key: part.key,
          slot: -1,
          placed: false,
          copy: new Float64Array(4),
        })
      }
      entryOf.push(e)
    }
    const table = this.table
    const { numbers, floats } = table
    for (let attempt = 0; ; attempt++) {
      for (const e of entries) {
        e.slot = table.locate(e.key)
        e.placed = false
      }
      const held = [...new Set(entries.map((e) => e.slot).filter((s) => s >= 0))].sort(
        (a, b) => a - b,
      )
      for (const s of held) table.lock(s)
      // release unlocks every slot taken; slots placed by this attempt are freed unless kept.
      const release = (keep: boolean) => {
        for (const e of entries) {
          if (!e.placed) continue
          if (!keep) table.free(e.slot)
          table.unlock(e.slot)
        }
        for (const s of held) table.unlock(s)
      }
      if (!entries.every((e) => e.slot < 0 || table.holds(e.slot, e.key))) {
        release(false)
        retry(attempt)
        continue
      }
      for (const e of entries) {
        e.copy.fill(0)
        if (e.slot >= 0) {
          const at = table.stateAt(e.slot)
          e.copy[0] = floats[table.windowAt(e.slot)]
          e.copy.set(numbers.subarray(at, at + e.ns.kernel.width), 1)
        }
      }
      const decisions = parts.map((part, i) => {
        const e = entries[entryOf[i]]
        const ns = part.ns
        e.ns = ns
        e.copy[0] = convert(ns.policy, ns.window, e.copy[0], e.copy, 1, now, ns.keepTime)
        return ns.kernel.limit(ns.policy, e.copy, 1, now, part.cost)
      })
      if (!decisions.every((d) => d.allowed)) {
        release(false)
        return decisions
      }
      let placedAll = true
      for (const e of entries) {
        if (e.slot >= 0 || e.ns.kernel.empty(e.ns.policy, e.copy, 1, now)) continue
        const slot = table.place(e.key, now)
        if (slot < 0) {
          placedAll = false
          break
        }
        e.slot = slot
        e.placed = true
      }
      if (!placedAll) {
        release(false)
        retry(attempt)
        continue
      }
      for (const e of entries) {
        if (e.slot < 0) continue
        floats[table.windowAt(e.slot)] = e.copy[0]
        numbers.set(e.copy.subarray(1, 1 + e.ns.kernel.width), table.stateAt(e.slot))
        table.touch(e.slot, now)
      }
      release(true)
      return decisions
    }
  }
}

/** Entry: one distinct key of a limitAll call, with a copy of its state ([window, ...state]). */
interface Entry {
  ns: SharedNamespace
  key: KeyBytes
  slot: number
  placed: boolean
  copy: Float64Array
}

function sameKey(a: KeyBytes, b: KeyBytes): boolean {
  if (a.length !== b.length || a.hash !== b.hash || a.ns !== b.ns) return false
  for (let i = 0; i < a.length; i++) if (a.bytes[i] !== b.bytes[i]) return false
  return true
}
