import { type Decision, decision } from "../../core/decision.js"
import type { KeyBytes } from "./key-bytes.js"
import {
  FREE,
  ID_BYTES,
  LIVE,
  NEVER,
  R_HASH,
  R_ID_LENGTH,
  R_KEY_LENGTH,
  R_LOCK,
  R_NS,
  R_STATE,
  REQUEST_INTS,
  REQUEST_NUMBERS,
  type Views,
} from "./layout.js"
import { lock, unlock } from "./lock.js"

/** WINDOW: an entry lives within this many entries of its home position. */
const WINDOW = 16
const ATTEMPTS = 8

// Entry numbers.
const EXPIRES = 0
const LIMIT = 1
const REMAINING = 2
const RETRY = 3
const RESET = 4

/**
 * RequestTable remembers admitted decisions by (namespace, key, request id) until they
 * expire, so that a retried request is answered again without consuming. Fixed size: a new
 * entry takes, within WINDOW entries of its home, an expired entry, else a free one, else
 * the one closest to expiry. Entries are read and written under their own lock; a thread
 * holding an entry lock takes no other lock.
 */
export class RequestTable {
  private readonly meta: Int32Array
  private readonly numbers: Float64Array
  private readonly bytes: Uint8Array
  private readonly entries: number
  private readonly stride: number
  private readonly keyBytes: number
  private readonly window: number

  constructor(v: Views) {
    this.meta = v.requestMeta
    this.numbers = v.requestNumbers
    this.bytes = v.requestKeys
    this.entries = v.entries
    this.keyBytes = v.keyBytes
    this.stride = v.keyBytes + ID_BYTES
    this.window = Math.min(WINDOW, v.entries)
  }

  private home(hash: number): number {
    const e = Math.floor(((hash >>> 0) / 4294967296) * this.entries)
    return e < this.entries ? e : this.entries - 1
  }

  private same(e: number, ns: number, key: KeyBytes, id: KeyBytes): boolean {
    const m = e * REQUEST_INTS
    const meta = this.meta
    if (
      meta[m + R_HASH] !== id.hash ||
      meta[m + R_NS] !== ns ||
      meta[m + R_KEY_LENGTH] !== key.length ||
      meta[m + R_ID_LENGTH] !== id.length
    ) {
      return false
    }
    const b = this.bytes
    const base = e * this.stride
    for (let i = 0; i < key.length; i++) if (b[base + i] !== key.bytes[i]) return false
    const idBase = base + this.keyBytes
    for (let i = 0; i < id.length; i++) if (b[idBase + i] !== id.bytes[i]) return false
    return true
  }

  /** lookup returns the remembered decision for the request, if it has not expired by `now`. */
  lookup(ns: number, key: KeyBytes, id: KeyBytes, now: number): Decision | undefined {
    const meta = this.meta
    let e = this.home(id.hash)
    for (let j = 0; j < this.window; j++) {
      const m = e * REQUEST_INTS
      const state = Atomics.load(meta, m + R_STATE)
      if (state === NEVER && Atomics.load(meta, m + R_LOCK) === 0) return undefined
      if (state === LIVE && meta[m + R_HASH] === id.hash) {
        lock(meta, m + R_LOCK)
        const n = e * REQUEST_NUMBERS
        const found =
          Atomics.load(meta, m + R_STATE) === LIVE &&
          this.same(e, ns, key, id) &&
          this.numbers[n + EXPIRES] > now
        const d = found
          ? decision(
              true,
              this.numbers[n + LIMIT],
              this.numbers[n + REMAINING],
              this.numbers[n + RETRY],
              this.numbers[n + RESET],
            )
          : undefined
        unlock(meta, m + R_LOCK)
        if (found) return d
      }
      if (++e === this.entries) e = 0
    }
    return undefined
  }

  /**
   * remember records an admitted decision until `expiresAt`. Under heavy contention for the
   * same few entries it may give up after a few attempts; the request is then not remembered.
   */
  remember(
    ns: number,
    key: KeyBytes,
    id: KeyBytes,
    d: Decision,
    expiresAt: number,
    now: number,
  ): void {
    const meta = this.meta
    const numbers = this.numbers
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      let match = -1
      let expired = -1
      let free = -1
      let oldest = -1
      let oldestExpires = Number.POSITIVE_INFINITY
      let e = this.home(id.hash)
      for (let j = 0; j < this.window; j++) {
        const m = e * REQUEST_INTS
        const state = Atomics.load(meta, m + R_STATE)
        if (state === NEVER && Atomics.load(meta, m + R_LOCK) === 0) {
          if (free < 0) free = e
          break
        }
        if (state === LIVE) {
          const x = numbers[e * REQUEST_NUMBERS + EXPIRES]
          if (match < 0 && this.same(e, ns, key, id)) match = e
          if (expired < 0 && x <= now) expired = e
          if (x < oldestExpires) {
            oldest = e
            oldestExpires = x
          }
        } else if (free < 0) {
          free = e
        }
        if (++e === this.entries) e = 0
      }
      const target = match >= 0 ? match : expired >= 0 ? expired : free >= 0 ? free : oldest
      if (target < 0) return
      const m = target * REQUEST_INTS
      lock(meta, m + R_LOCK)
      const state = Atomics.load(meta, m + R_STATE)
      const usable =
        target === match
          ? state === LIVE && this.same(target, ns, key, id)
          : target === expired
            ? state === LIVE && numbers[target * REQUEST_NUMBERS + EXPIRES] <= now
            : target === free
              ? state !== LIVE
              : state === LIVE
      if (usable) {
        this.write(target, ns, key, id, d, expiresAt)
        unlock(meta, m + R_LOCK)
        return
      }
      unlock(meta, m + R_LOCK)
    }
  }

  private write(
    e: number,
    ns: number,
    key: KeyBytes,
    id: KeyBytes,
    d: Decision,
    expiresAt: number,
  ): void {
    const meta = this.meta
    const m = e * REQUEST_INTS
    Atomics.store(meta, m + R_STATE, FREE)
    meta[m + R_HASH] = id.hash
    meta[m + R_NS] = ns
    meta[m + R_KEY_LENGTH] = key.length
    meta[m + R_ID_LENGTH] = id.length
    const base = e * this.stride
    this.bytes.set(key.bytes.subarray(0, key.length), base)
    this.bytes.set(id.bytes.subarray(0, id.length), base + this.keyBytes)
    const n = e * REQUEST_NUMBERS
    const numbers = this.numbers
    numbers[n + EXPIRES] = expiresAt
    numbers[n + LIMIT] = d.limit
    numbers[n + REMAINING] = d.remaining
    numbers[n + RETRY] = d.retryAfterMs
    numbers[n + RESET] = d.resetAfterMs
    Atomics.store(meta, m + R_STATE, LIVE)
  }
}
