import type { Policy } from "../../core/policy.js"

// Redis keys: `<prefix>:<tag>:{<key>}`, prefix and key encoded by encodePart. The
// encoding leaves no ":", "{" or "}" in either part, so the first "{" of every key is the
// one placed here and the Cluster hash tag is exactly the encoded user key: the slot
// depends on the user key alone. Since "%" is escaped too, the encoding is reversible,
// and reading a key left to right (prefix up to the first ":", tag up to the next,
// key between the braces) recovers the triple: no two (prefix, kind, key) triples share
// a Redis key. Request ids and the store's own keys add a suffix after the "}", so they
// never end in "}" and never equal a state key.

/** TAGS: the algorithm tag of each policy kind in Redis keys. */
export const TAGS: Record<Policy["kind"], string> = {
  tokenBucket: "tb",
  slidingWindowLog: "swl",
  slidingWindowCounter: "swc",
  fixedWindow: "fw",
  concurrency: "cc",
}

/**
 * encodePart escapes "%", ":", "{" and "}" as %25, %3A, %7B, %7D, and a lone UTF-16
 * surrogate (which UTF-8 cannot carry: two of them would turn into the same bytes) as
 * %uXXXX. Everything else, newlines and astral characters included, passes through.
 */
export function encodePart(part: string): string {
  // One pass; the runs between escapes are copied as slices (keys like "user:42" are common).
  let out = ""
  let from = 0
  for (let i = 0; i < part.length; i++) {
    const c = part.charCodeAt(i)
    let escaped: string
    if (c === 0x25) escaped = "%25"
    else if (c === 0x3a) escaped = "%3A"
    else if (c === 0x7b) escaped = "%7B"
    else if (c === 0x7d) escaped = "%7D"
    else if (c >= 0xd800 && c <= 0xdfff) {
      const next = part.charCodeAt(i + 1)
      if (c <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
        i++
        continue
      }
      escaped = `%u${c.toString(16).toUpperCase().padStart(4, "0")}`
    } else continue
    out += part.slice(from, i) + escaped
    from = i + 1
  }
  return from === 0 ? part : out + part.slice(from)
}

/** stateKey is the Redis key of one user key's state; `encodedKey` comes from encodePart. */
export function stateKey(encodedPrefix: string, tag: string, encodedKey: string): string {
  return `${encodedPrefix}:${tag}:{${encodedKey}}`
}

/** requestKey is where an admitted request's decision is kept under its request id. */
export function requestKey(state: string, requestId: string): string {
  return `${state}:r:${encodePart(requestId)}`
}

// CRC16-CCITT (XModem), the hash of Redis Cluster: slot = crc16(hash tag) mod 16384.
const CRC_TABLE = new Uint16Array(256)
for (let i = 0; i < 256; i++) {
  let crc = i << 8
  for (let b = 0; b < 8; b++)
    crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff
  CRC_TABLE[i] = crc
}

function crcByte(crc: number, byte: number): number {
  return ((crc << 8) & 0xffff) ^ CRC_TABLE[((crc >> 8) ^ byte) & 0xff]
}

/** SLOTS: the number of Redis Cluster hash slots. */
export const SLOTS = 16384

/** slotOf is the Cluster slot of a hash tag: CRC16 of its UTF-8 bytes, mod 16384. */
export function slotOf(tag: string): number {
  let crc = 0
  for (let i = 0; i < tag.length; i++) {
    let c = tag.charCodeAt(i)
    if (c < 0x80) crc = crcByte(crc, c)
    else if (c < 0x800) {
      crc = crcByte(crc, 0xc0 | (c >> 6))
      crc = crcByte(crc, 0x80 | (c & 0x3f))
    } else if (c >= 0xd800 && c <= 0xdbff && i + 1 < tag.length) {
      // encodePart leaves only whole surrogate pairs.
      c = 0x10000 + ((c - 0xd800) << 10) + (tag.charCodeAt(++i) - 0xdc00)
      crc = crcByte(crc, 0xf0 | (c >> 18))
      crc = crcByte(crc, 0x80 | ((c >> 12) & 0x3f))
      crc = crcByte(crc, 0x80 | ((c >> 6) & 0x3f))
      crc = crcByte(crc, 0x80 | (c & 0x3f))
    } else {
      crc = crcByte(crc, 0xe0 | (c >> 12))
      crc = crcByte(crc, 0x80 | ((c >> 6) & 0x3f))
      crc = crcByte(crc, 0x80 | (c & 0x3f))
    }
  }
  return crc % SLOTS
}

let slotTags: string[] | undefined

/**
 * slotTag is a short hash tag that lands in `slot`, for the store's own keys that must
 * live beside the state of one slot (the replay guard). Computed once for all slots.
 */
export function slotTag(slot: number): string {
  if (slotTags === undefined) {
    const tags: string[] = new Array(SLOTS)
    let missing = SLOTS
    for (let n = 0; missing > 0; n++) {
      const tag = n.toString(36)
      const s = slotOf(tag)
      if (tags[s] === undefined) {
        tags[s] = tag
        missing--
      }
    }
    slotTags = tags
  }
  return slotTags[slot]
}
