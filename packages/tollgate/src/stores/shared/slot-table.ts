import type { KeyBytes } from "./key-bytes.js"
import {
  FIXED_WINDOW,
  FREE,
  H_LIVE,
  H_MAX_PROBE,
  keyInline,
  NEVER,
  overflowBytes,
  RECORD_BYTES,
  S_HASH,
  S_LOCK,
  S_NSLEN,
  S_STATE,
  S_USED,
  S_WINDOW,
  STRIPES,
  TOKEN_BUCKET,
  tagOf,
  type Views,
} from "./layout.js"
import { lock, tryLock, unlock } from "./lock.js"

/** WINDOW: how many slots from a key's home position are candidates for eviction. */
export const WINDOW = 32

/** place() results other than a slot: the key is there already / no slot could be taken now. */
export const EXISTS = -1
export const BUSY = -2

/** live: the tag is that of a slot holding a key (tags of keys are odd, NEVER and FREE even). */
function live(tag: number): boolean {
  return (tag & 1) === 1
}

/**
 * SlotTable is the key table of a SharedMemoryStore: open addressing with linear probing
 * over a fixed number of slots, each holding one (namespace, key) and its state numbers.
 * A dense array of tags (NEVER, FREE, or the key's hash made odd) is what scans read, so a
 * lookup touches the record of the slot it finds and few others.
 *
 * Who may do what:
 * - A slot's state numbers are read and written only under the slot's lock.
 * - A slot changes key (placed, replaced, freed) only under its lock, tag last when placing
 *   and first when freeing; while its tag is live, its key bytes do not change, so scans
 *   may compare them without the lock, as a hint always confirmed under the lock before
 *   state is touched. find() reads tags without Atomics too (a hint, confirmed the same
 *   way); a key is reported absent only on atomic reads.
 * - A key is placed only under its stripe lock (chosen by hash), after a scan under that
 *   lock found it absent, so a key never holds two slots.
 * - A slot never returns to NEVER. A key placed d slots past its home had every slot
 *   before it live, FREE or locked-for-placing at that moment, so a scan may stop at a
 *   NEVER slot that is not locked. No key is ever placed farther than H_MAX_PROBE.
 * - Waiting: a thread waits for a slot lock only while holding no stripe lock, and takes
 *   slot locks it holds together in ascending order (limitAll). Placing never waits for a
 *   slot lock (it tries, and reports BUSY), so there is no cycle of waiters.
 */
export class SlotTable {
  /** meta, floats, numbers: the slot records as Int32, Float32 and Float64. */
  readonly meta: Int32Array
  readonly floats: Float32Array
  readonly numbers: Float64Array
  private readonly overflow: Int32Array
  /** overflowWords: the overflow area of one slot, in 32-bit words. */
  private readonly overflowWords: number
  private readonly tags: Int32Array
  private readonly header: Int32Array
  private readonly stripes: Int32Array
  private readonly nsKeys: Int32Array
  private readonly registry: Int32Array
  private readonly slots: number
  private readonly maxKeys: number
  private readonly window: number

  constructor(v: Views) {
    this.meta = v.slotInts
    this.floats = v.slotFloats
    this.numbers = v.slotNumbers
    this.overflow = new Int32Array(v.overflow.buffer, v.overflow.byteOffset, v.overflow.length / 4)
    this.overflowWords = overflowBytes(v.keyBytes) / 4
    this.tags = v.tags
    this.header = v.header
    this.stripes = v.stripes
    this.nsKeys = v.nsKeys
    this.registry = v.registry
    this.slots = v.slots
    this.maxKeys = v.maxKeys
    this.window = Math.min(WINDOW, v.slots)
  }

  /** stateAt is the index in `numbers` of the slot's first state number. */
  stateAt(slot: number): number {
    return slot * (RECORD_BYTES / 8) + S_STATE
  }

  /** windowAt is the index in `floats` of the slot's windowMs. */
  windowAt(slot: number): number {
    return slot * (RECORD_BYTES / 4) + S_WINDOW
  }

  /**
   * touch records a use of the slot's key at `now` (the caller holds the lock). The time
   * only moves forward: a thread that read its clock, then waited for the lock while others
   * used the key, must not make the key look older than it is.
   */
  touch(slot: number, now: number): void {
    const i = slot * (RECORD_BYTES / 4) + S_USED
    const t = now >>> 0
    if (((t - this.meta[i]) | 0) > 0) this.meta[i] = t
  }

  /** home is the first slot a key with this hash may occupy. */
  private home(hash: number): number {
    const s = Math.floor(((hash >>> 0) / 4294967296) * this.slots)
    return s < this.slots ? s : this.slots - 1
  }

  /** sameKey compares the slot's key with `k` (record and bytes), without the lock. */
  private sameKey(slot: number, k: KeyBytes): boolean {
    const meta = this.meta
    const m = slot * (RECORD_BYTES / 4)
    if (meta[m + S_HASH] !== k.hash || meta[m + S_NSLEN] !== k.nslen) return false
    // Word by word: both sides are zero-padded to whole words.
    const words = k.words
    const n = k.wordCount
    const inline = Math.min(n, (RECORD_BYTES - k.inline) >> 2)
    const base = m + (k.inline >> 2)
    for (let i = 0; i < inline; i++) if (meta[base + i] !== words[i]) return false
    if (inline === n) return true
    const overflow = this.overflow
    const rest = slot * this.overflowWords - inline
    for (let i = inline; i < n; i++) if (overflow[rest + i] !== words[i]) return false
    return true
  }

  /** writeKey copies `k`, with its padding, into a slot the caller has locked. */
  private writeKey(slot: number, k: KeyBytes): void {
    const n = k.wordCount
    const inline = Math.min(n, (RECORD_BYTES - k.inline) >> 2)
    this.meta.set(k.words.subarray(0, inline), slot * (RECORD_BYTES / 4) + (k.inline >> 2))
    if (inline < n) this.overflow.set(k.words.subarray(inline, n), slot * this.overflowWords)
  }

  /**
   * empty: the slot's state carries no information at `now`. It mirrors the core's *Empty
   * functions, with the window recorded in the slot (rounded up, and a calendar window's
   * longest span), so it may keep a state a little longer but never drops one early.
   */
  private empty(slot: number, now: number): boolean {
    const kind = this.registry[2 * (this.meta[slot * (RECORD_BYTES / 4) + S_NSLEN] >>> 16)]
    const s = this.stateAt(slot)
    const numbers = this.numbers
    if (kind === TOKEN_BUCKET) return numbers[s] <= now
    const w = this.floats[this.windowAt(slot)]
    if (kind === FIXED_WINDOW) return numbers[s + 1] === 0 || numbers[s] + w <= now
    return (numbers[s + 1] === 0 && numbers[s + 2] === 0) || numbers[s] + 2 * w <= now
  }

  /** chainEnds: the slot is NEVER and nobody is placing a key in it. */
  private chainEnds(slot: number, tag: number): boolean {
    return tag === NEVER && Atomics.load(this.meta, slot * (RECORD_BYTES / 4) + S_LOCK) === 0
  }

  /** locate returns the slot holding the key without locking it (a hint), or -1. */
  locate(k: KeyBytes): number {
    const tags = this.tags
    const want = tagOf(k.hash)
    const limit = Math.min(Atomics.load(this.header, H_MAX_PROBE), this.slots - 1)
    let s = this.home(k.hash)
    for (let j = 0; j <= limit; j++) {
      const tag = Atomics.load(tags, s)
      if (tag === want && this.sameKey(s, k)) return s
      if (this.chainEnds(s, tag)) return -1
      if (++s === this.slots) s = 0
    }
    return -1
  }

  /**
   * find returns the key's slot, locked, or -1 when the key holds no slot.
   *
   * Atomics cost several nanoseconds each here, so the common case uses two: the scan reads
   * tags with plain loads, as hints, and a slot whose tag matches is locked and then
   * checked under its lock (tags and keys change only under a slot's lock, so reads made
   * holding it are exact). A key is only reported absent on reads made with Atomics: the
   * home slot seen ending the chain by atomic loads, or else a scan made entirely with
   * them (findExact), since a plain read may miss a key placed a moment ago, and "absent"
   * lets the caller decide on a fresh state.
   */
  find(k: KeyBytes): number {
    const tags = this.tags
    const meta = this.meta
    const want = tagOf(k.hash)
    const limit = Math.min(this.header[H_MAX_PROBE], this.slots - 1)
    let s = this.home(k.hash)
    for (let j = 0; j <= limit; j++) {
      const tag = tags[s]
      if (tag === want) {
        const at = s * (RECORD_BYTES / 4) + S_LOCK
        lock(meta, at)
        if (tags[s] === want && this.sameKey(s, k)) return s
        unlock(meta, at)
      } else if (tag === NEVER) {
        if (j === 0 && this.chainEnds(s, Atomics.load(tags, s))) return -1
        break
      }
      if (++s === this.slots) s = 0
    }
    return this.findExact(k)
  }

  /** findExact is find() on atomic reads: locate the key, then lock its slot and check. */
  private findExact(k: KeyBytes): number {
    for (;;) {
      const s = this.locate(k)
      if (s < 0) return -1
      this.lock(s)
      if (this.holds(s, k)) return s
      // The key left the slot before the lock was taken: look again.
      this.unlock(s)
    }
  }

  /** holds: the slot, locked by the caller, holds the key. */
  holds(slot: number, k: KeyBytes): boolean {
    return Atomics.load(this.tags, slot) === tagOf(k.hash) && this.sameKey(slot, k)
  }

  lock(slot: number): void {
    lock(this.meta, slot * (RECORD_BYTES / 4) + S_LOCK)
  }

  unlock(slot: number): void {
    unlock(this.meta, slot * (RECORD_BYTES / 4) + S_LOCK)
  }

  /**
   * place gives the key a slot: returned locked, live, with zeroed numbers. EXISTS when
   * the key already holds a slot (find it again), BUSY when every slot it could take is
   * locked by others or being freed (try again later). Under maxKeys the key takes the
   * first free slot from its home on; at maxKeys it replaces a key within WINDOW slots of
   * its home: one whose state has expired by `now` if any, else the least recently used.
   */
  place(k: KeyBytes, now: number): number {
    const stripe = k.hash & (STRIPES - 1)
    lock(this.stripes, stripe)
    try {
      return this.placeLocked(k, now)
    } finally {
      unlock(this.stripes, stripe)
    }
  }

  private placeLocked(k: KeyBytes, now: number): number {
    const tags = this.tags
    const slots = this.slots
    const want = tagOf(k.hash)
    const probe = Math.min(Atomics.load(this.header, H_MAX_PROBE), slots - 1)
    const home = this.home(k.hash)
    let free = -1
    let freeAt = 0
    let s = home
    let j = 0
    // Is the key here already? Meanwhile note the first free slot.
    for (; j <= probe; j++) {
      const tag = Atomics.load(tags, s)
      if (tag === want && this.sameKey(s, k)) return EXISTS
      if (this.chainEnds(s, tag)) break
      if (!live(tag) && free < 0) {
        free = s
        freeAt = j
      }
      if (++s === slots) s = 0
    }
    if (Atomics.add(this.header, H_LIVE, 1) < this.maxKeys) {
      // The first slot not live from the first free one seen (or from where the scan ended).
      let t = free >= 0 ? free : s
      for (let at = free >= 0 ? freeAt : j; at < slots; at++) {
        if (!live(Atomics.load(tags, t)) && tryLock(this.meta, t * (RECORD_BYTES / 4) + S_LOCK)) {
          if (!live(Atomics.load(tags, t))) {
            this.install(t, at, k, now, false)
            return t
          }
          this.unlock(t)
        }
        if (++t === slots) t = 0
      }
      Atomics.sub(this.header, H_LIVE, 1)
      return BUSY
    }
    Atomics.sub(this.header, H_LIVE, 1)
    return this.evict(home, k, now)
  }

  /**
   * evict makes room at maxKeys: among the keys within WINDOW slots of home that are not
   * locked, one whose state has expired, else the least recently used. The key takes its
   * slot when no chain end lies before it; otherwise the victim is only freed, and the next
   * attempt places the key in the free slot. With no candidate near home, one farther on
   * is freed (evictFrom).
   */
  private evict(home: number, k: KeyBytes, now: number): number {
    const tags = this.tags
    const meta = this.meta
    let victim = -1
    let victimAt = 0
    let victimAge = Number.NEGATIVE_INFINITY
    let inChain = true
    let victimInChain = false
    let s = home
    for (let j = 0; j < this.window; j++) {
      const tag = Atomics.load(tags, s)
      if (this.chainEnds(s, tag)) inChain = false
      if (live(tag) && Atomics.load(meta, s * (RECORD_BYTES / 4) + S_LOCK) === 0) {
        const age = this.age(s, now)
        if (age > victimAge) {
          victim = s
          victimAt = j
          victimAge = age
          victimInChain = inChain
        }
      }
      if (++s === this.slots) s = 0
    }
    if (victim < 0) {
      this.evictFrom(s, now)
      return BUSY
    }
    if (!tryLock(meta, victim * (RECORD_BYTES / 4) + S_LOCK)) return BUSY
    if (live(Atomics.load(tags, victim)) && victimInChain) {
      this.install(victim, victimAt, k, now, true)
      return victim
    }
    this.free(victim)
    this.unlock(victim)
    return BUSY
  }

  /** install writes the key into a slot the caller has locked, `distance` slots from home. */
  private install(
    slot: number,
    distance: number,
    k: KeyBytes,
    now: number,
    replacing: boolean,
  ): void {
    const meta = this.meta
    const m = slot * (RECORD_BYTES / 4)
    if (replacing) {
      Atomics.store(this.tags, slot, FREE)
      Atomics.sub(this.nsKeys, meta[m + S_NSLEN] >>> 16, 1)
    }
    for (let cur = Atomics.load(this.header, H_MAX_PROBE); cur < distance; ) {
      const seen = Atomics.compareExchange(this.header, H_MAX_PROBE, cur, distance)
      cur = seen === cur ? distance : seen
    }
    meta[m + S_HASH] = k.hash
    meta[m + S_NSLEN] = k.nslen
    meta[m + S_USED] = now >>> 0
    this.floats[this.windowAt(slot)] = 0
    // The kind's state numbers (as many as fit before the key) start at zero.
    const at = this.stateAt(slot)
    this.numbers.fill(0, at, at + (k.inline - keyInline(0)) / 8)
    this.writeKey(slot, k)
    Atomics.add(this.nsKeys, k.ns, 1)
    Atomics.store(this.tags, slot, tagOf(k.hash))
  }

  /** free forgets the key of a slot the caller has locked (it stays locked). */
  free(slot: number): void {
    if (!live(Atomics.load(this.tags, slot))) return
    Atomics.store(this.tags, slot, FREE)
    Atomics.sub(this.nsKeys, this.meta[slot * (RECORD_BYTES / 4) + S_NSLEN] >>> 16, 1)
    Atomics.sub(this.header, H_LIVE, 1)
  }

  /**
   * evictFrom frees, among the first WINDOW unlocked live keys from slot `s` on, one whose
   * state has expired, else the least recently used.
   */
  private evictFrom(s: number, now: number): void {
    const meta = this.meta
    let victim = -1
    let victimAge = Number.NEGATIVE_INFINITY
    for (let n = 0, seen = 0; n < this.slots && seen < this.window; n++) {
      if (
        live(Atomics.load(this.tags, s)) &&
        Atomics.load(meta, s * (RECORD_BYTES / 4) + S_LOCK) === 0
      ) {
        seen++
        const age = this.age(s, now)
        if (age > victimAge) {
          victim = s
          victimAge = age
        }
      }
      if (++s === this.slots) s = 0
    }
    if (victim >= 0 && tryLock(meta, victim * (RECORD_BYTES / 4) + S_LOCK)) {
      this.free(victim)
      this.unlock(victim)
    }
  }

  /** age: ms since the slot's key was last used, +Infinity when its state is empty (a hint). */
  private age(slot: number, now: number): number {
    if (this.empty(slot, now)) return Number.POSITIVE_INFINITY
    // From the low 32 bits of the times: exact for ages under 24 days.
    return ((now >>> 0) - this.meta[slot * (RECORD_BYTES / 4) + S_USED]) | 0
  }

  /** forEach visits every slot of namespace `ns`, each locked during its visit. */
  forEach(ns: number, visit: (slot: number) => void): void {
    const meta = this.meta
    for (let s = 0; s < this.slots; s++) {
      const m = s * (RECORD_BYTES / 4)
      if (!live(Atomics.load(this.tags, s)) || meta[m + S_NSLEN] >>> 16 !== ns) continue
      lock(meta, m + S_LOCK)
      if (live(Atomics.load(this.tags, s)) && meta[m + S_NSLEN] >>> 16 === ns) visit(s)
      unlock(meta, m + S_LOCK)
    }
  }

  /** size is the number of keys of namespace `ns`, or of all namespaces when omitted. */
  size(ns?: number): number {
    if (ns !== undefined) return Atomics.load(this.nsKeys, ns)
    let n = 0
    for (let i = 0; i < this.nsKeys.length; i++) n += Atomics.load(this.nsKeys, i)
    return n
  }
}
