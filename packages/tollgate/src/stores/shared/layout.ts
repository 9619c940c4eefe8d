import { ConfigError, describe } from "../../errors.js"

// The memory of a SharedMemoryStore is one SharedArrayBuffer, in regions laid out by the
// sizes in its header, so that a thread holding only the buffer can find every region.
// Regions start on 64-byte cache lines.
//
//   header        Int32 x 32       line 0: format mark, sizes, H_MAX_PROBE, registry;
//                                  line 1: H_LIVE (written on every placement)
//   stripes       Int32 x STRIPES  insert locks, chosen by key hash
//   nsKeys        Int32 x 256      keys held per namespace
//   registry      Int32 x 2 x 256  per namespace: policy kind code, prefix length
//   prefixes      Uint16 x 256 x 256  per namespace: the prefix's UTF-16 units
//   tags          Int32 x slots    per slot: NEVER, FREE, or tagOf(hash) when a key is live
//                                  there; scans read these and touch one record per hit
//   slots         one 64-byte record (one cache line) per slot:
//                   Int32 x 4     lock, hash, namespace << 16 | key length, usedAt (low 32 bits)
//                   Float32       windowMs of the policy that last wrote, rounded up
//                   Int32         (unused)
//                   Float64 x 3   the policy's state (as many numbers as its kind uses)
//                   Uint8 ...     the key's first bytes (zero-padded to 4), in the rest of the line
//   overflow      Uint8 x (keyBytes - 16) x slots   the rest of keys too long for their line
//   request meta  Int32 x 6 x entries      lock, state, hash, namespace, key length, id length
//   request nums  Float64 x 5 x entries    expiresAt, limit, remaining, retryAfterMs, resetAfterMs
//   request keys  Uint8 x (keyBytes + ID_BYTES) x entries

/**
 * FORMAT marks a buffer made by this version of the store ("TGS" + layout version 2).
 * Version 2 changed the protocol, not the layout: slots no longer count generations.
 */
export const FORMAT = 0x54475302

export const HEADER_INTS = 32
export const H_FORMAT = 0
export const H_SLOTS = 1
export const H_MAX_KEYS = 2
export const H_KEY_BYTES = 3
export const H_ENTRIES = 4
export const H_MAX_REQUEST_IDS = 5
/** H_MAX_PROBE: the farthest any key was ever placed from its home slot (never decreases). */
export const H_MAX_PROBE = 6
export const H_REGISTRY_LOCK = 7
/** H_NAMESPACES: registry entries in use. */
export const H_NAMESPACES = 8
/** H_LIVE: slots holding a key now (on a cache line of its own). */
export const H_LIVE = 16

export const STRIPES = 1024
export const MAX_NAMESPACES = 256
export const MAX_PREFIX_UNITS = 256
/** ID_BYTES: the longest request id (UTF-8 bytes) the request table holds. */
export const ID_BYTES = 64

/** Slot record: 64 bytes. Int32 fields from its start. */
export const RECORD_BYTES = 64
export const S_LOCK = 0
export const S_HASH = 1
export const S_NSLEN = 2
/** S_USED: the low 32 bits of the limiter time (ms) of the key's last use, for LRU eviction. */
export const S_USED = 3
/** S_WINDOW: Float32 index in the record: the windowMs its state is expressed in (0: none yet). */
export const S_WINDOW = 4
/** S_STATE: Float64 index in the record of the policy's state numbers. */
export const S_STATE = 3
/** keyInline is the byte in the record where the key starts, for a state of `width` numbers. */
export function keyInline(width: number): number {
  return 24 + 8 * width
}
/** MIN_INLINE: every kind keeps at least this many key bytes in the record. */
export const MIN_INLINE = RECORD_BYTES - keyInline(3)

/** overflowBytes is the overflow area per slot for keys of up to `keyBytes` bytes. */
export function overflowBytes(keyBytes: number): number {
  return Math.ceil(Math.max(0, keyBytes - MIN_INLINE) / 8) * 8
}

export const REQUEST_INTS = 6
export const R_LOCK = 0
export const R_STATE = 1
export const R_HASH = 2
export const R_NS = 3
export const R_KEY_LENGTH = 4
export const R_ID_LENGTH = 5
export const REQUEST_NUMBERS = 5

/** Policy kinds as the registry records them. */
export const TOKEN_BUCKET = 1
export const FIXED_WINDOW = 2
export const SLIDING_WINDOW_COUNTER = 3

/** Slot and request states. NEVER: not used since the store was made; FREE: used before. */
export const NEVER = 0
export const LIVE = 1
export const FREE = 2

/** tagOf is the slot tag of a LIVE key with this hash: never NEVER (0) or FREE (2). */
export function tagOf(hash: number): number {
  return hash | 1
}

export interface Sizes {
  slots: number
  maxKeys: number
  keyBytes: number
  entries: number
  maxRequestIds: number
}

/** Views: typed arrays over every region of one buffer, and the sizes they were laid out by. */
export interface Views extends Sizes {
  buffer: SharedArrayBuffer
  header: Int32Array
  stripes: Int32Array
  nsKeys: Int32Array
  registry: Int32Array
  prefixes: Uint16Array
  tags: Int32Array
  /** slotInts, slotFloats, slotNumbers, slotBytes: the slot records, as each type. */
  slotInts: Int32Array
  slotFloats: Float32Array
  slotNumbers: Float64Array
  slotBytes: Uint8Array
  overflow: Uint8Array
  requestMeta: Int32Array
  requestNumbers: Float64Array
  requestKeys: Uint8Array
}

function align(n: number): number {
  return Math.ceil(n / 64) * 64
}

/** place lays the regions out for `sizes` over `buffer` (or measures, without a buffer). */
function place(
  sizes: Sizes,
  buffer: SharedArrayBuffer | undefined,
): { bytes: number; views?: Views } {
  let at = 0
  const regions: [number, number][] = []
  const take = (bytes: number) => {
    regions.push([at, bytes])
    at = align(at + bytes)
  }
  const { slots, keyBytes, entries } = sizes
  take(HEADER_INTS * 4)
  take(STRIPES * 4)
  take(MAX_NAMESPACES * 4)
  take(MAX_NAMESPACES * 2 * 4)
  take(MAX_NAMESPACES * MAX_PREFIX_UNITS * 2)
  take(slots * 4)
  take(slots * RECORD_BYTES)
  take(slots * overflowBytes(keyBytes))
  take(entries * REQUEST_INTS * 4)
  take(entries * REQUEST_NUMBERS * 8)
  take(entries * (keyBytes + ID_BYTES))
  if (buffer === undefined) return { bytes: at }
  const r = (n: number) => regions[n]
  const i32 = (n: number) => new Int32Array(buffer, r(n)[0], r(n)[1] / 4)
  const f64 = (n: number) => new Float64Array(buffer, r(n)[0], r(n)[1] / 8)
  return {
    bytes: at,
    views: {
      ...sizes,
      buffer,
      header: i32(0),
      stripes: i32(1),
      nsKeys: i32(2),
      registry: i32(3),
      prefixes: new Uint16Array(buffer, r(4)[0], r(4)[1] / 2),
      tags: i32(5),
      slotInts: i32(6),
      slotFloats: new Float32Array(buffer, r(6)[0], r(6)[1] / 4),
      slotNumbers: f64(6),
      slotBytes: new Uint8Array(buffer, r(6)[0], r(6)[1]),
      overflow: new Uint8Array(buffer, r(7)[0], r(7)[1]),
      requestMeta: i32(8),
      requestNumbers: f64(9),
      requestKeys: new Uint8Array(buffer, r(10)[0], r(10)[1]),
    },
  }
}

/** byteLength is the size of the buffer a store of these sizes needs. */
export function byteLength(sizes: Sizes): number {
  return place(sizes, undefined).bytes
}

/** create allocates and formats a buffer for `sizes`. */
export function create(sizes: Sizes): Views {
  const bytes = byteLength(sizes)
  let buffer: SharedArrayBuffer
  try {
    buffer = new SharedArrayBuffer(bytes)
  } catch (error) {
    throw new ConfigError(
      "maxKeys",
      `a store of ${sizes.maxKeys} keys needs ${bytes} bytes of shared memory, which could not be allocated (${(error as Error).message})`,
    )
  }
  const views = place(sizes, buffer).views!
  const h = views.header
  h[H_SLOTS] = sizes.slots
  h[H_MAX_KEYS] = sizes.maxKeys
  h[H_KEY_BYTES] = sizes.keyBytes
  h[H_ENTRIES] = sizes.entries
  h[H_MAX_REQUEST_IDS] = sizes.maxRequestIds
  // Written last: a buffer with the mark is fully formatted.
  Atomics.store(h, H_FORMAT, FORMAT)
  return views
}

/** open finds the regions of a buffer made by create(), or throws ConfigError naming `path`. */
export function open(buffer: unknown, path: string): Views {
  if (!(buffer instanceof SharedArrayBuffer)) {
    throw new ConfigError(
      path,
      `expected the handle of a SharedMemoryStore ({ buffer: SharedArrayBuffer }), got ${describe(buffer)} as its buffer`,
    )
  }
  if (buffer.byteLength < HEADER_INTS * 4) {
    throw new ConfigError(
      path,
      `the buffer (${buffer.byteLength} bytes) is not a SharedMemoryStore's`,
    )
  }
  const h = new Int32Array(buffer, 0, HEADER_INTS)
  if (Atomics.load(h, H_FORMAT) !== FORMAT) {
    throw new ConfigError(
      path,
      "the buffer is not a SharedMemoryStore's, or from another version of tollgate",
    )
  }
  const sizes: Sizes = {
    slots: h[H_SLOTS],
    maxKeys: h[H_MAX_KEYS],
    keyBytes: h[H_KEY_BYTES],
    entries: h[H_ENTRIES],
    maxRequestIds: h[H_MAX_REQUEST_IDS],
  }
  const laid = place(sizes, undefined)
  if (laid.bytes !== buffer.byteLength) {
    throw new ConfigError(
      path,
      `the buffer's size (${buffer.byteLength}) does not match its header (${laid.bytes})`,
    )
  }
  return place(sizes, buffer).views!
}
