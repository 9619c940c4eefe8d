/**
 * KeyBytes holds one string encoded for the shared tables: its bytes (UTF-8; a lone
 * surrogate takes the three-byte form of its code point, so every string has a distinct
 * encoding), their count and a 32-bit hash. The bytes are followed by zeros up to a whole
 * number of 4-byte words, so that keys can be compared a word at a time. One KeyBytes is
 * reused call after call.
 */
export class KeyBytes {
  readonly bytes: Uint8Array
  /** words: `bytes` as 32-bit words. */
  readonly words: Int32Array
  /** capacity: the most bytes a key may take. */
  readonly capacity: number
  length = 0
  hash = 0
  /** ns: the namespace the key belongs to (also the hash seed). */
  ns = 0
  /** inline: where the key starts in a slot record of its namespace's kind. */
  inline = 0

  constructor(capacity: number) {
    this.capacity = capacity
    this.words = new Int32Array(Math.ceil(capacity / 4))
    this.bytes = new Uint8Array(this.words.buffer)
  }

  /** wordCount: the words the key's bytes (and their zero padding) take. */
  get wordCount(): number {
    return (this.length + 3) >> 2
  }

  /** nslen: namespace and length, as a slot record holds them. */
  get nslen(): number {
    return (this.ns << 16) | this.length
  }

  /**
   * set encodes `text`, hashing it with `seed` (the namespace or, for a request id, the
   * key's hash, so that equal strings of two namespaces land apart). It returns false,
   * leaving the contents unspecified, when the encoding does not fit in the capacity.
   */
  set(text: string, seed: number): boolean {
    const n = text.length
    const words = this.words
    // ASCII, the common case: four characters make a word, written whole.
    let ascii = n <= this.capacity
    let w = 0
    for (let i = 0; ascii && i < n; i += 4) {
      const c0 = text.charCodeAt(i)
      const c1 = i + 1 < n ? text.charCodeAt(i + 1) : 0
      const c2 = i + 2 < n ? text.charCodeAt(i + 2) : 0
      const c3 = i + 3 < n ? text.charCodeAt(i + 3) : 0
      if ((c0 | c1 | c2 | c3) >= 0x80) ascii = false
      else words[w++] = c0 | (c1 << 8) | (c2 << 16) | (c3 << 24)
    }
    if (ascii) {
      // Little-endian platforms lay these words out as the UTF-8 bytes; elsewhere the
      // bytes of each word are reversed, still one encoding per string.
      this.length = n
    } else if (!this.encode(text)) {
      return false
    }
    this.hash = hashWords(words, this.wordCount, this.length, seed)
    return true
  }

  /** encode writes `text` as UTF-8 into `bytes`, zero-padded to a whole word. */
  private encode(text: string): boolean {
    const b = this.bytes
    const cap = this.capacity
    const n = text.length
    let p = 0
    for (let i = 0; i < n; i++) {
      const c = text.charCodeAt(i)
      if (c < 0x80) {
        if (p >= cap) return false
        b[p++] = c
      } else if (c < 0x800) {
        if (p + 2 > cap) return false
        b[p++] = 0xc0 | (c >> 6)
        b[p++] = 0x80 | (c & 0x3f)
      } else {
        const d = i + 1 < n ? text.charCodeAt(i + 1) : 0
        if (c >= 0xd800 && c < 0xdc00 && d >= 0xdc00 && d < 0xe000) {
          if (p + 4 > cap) return false
          const cp = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00)
          i++
          b[p++] = 0xf0 | (cp >> 18)
          b[p++] = 0x80 | ((cp >> 12) & 0x3f)
          b[p++] = 0x80 | ((cp >> 6) & 0x3f)
          b[p++] = 0x80 | (cp & 0x3f)
        } else {
          if (p + 3 > cap) return false
          b[p++] = 0xe0 | (c >> 12)
          b[p++] = 0x80 | ((c >> 6) & 0x3f)
          b[p++] = 0x80 | (c & 0x3f)
        }
      }
    }
    this.length = p
    while ((p & 3) !== 0) b[p++] = 0
    return true
  }
}

/**
 * hashWords hashes `count` words and the byte length (which tells "a" from "a\0", equal in
 * their padded words), seeded. Each word is scrambled by multiplications and rotations into
 * the running hash, which ends with a full avalanche so that both the high bits (slot
 * position) and the low bits (lock stripe) depend on every byte.
 */
function hashWords(words: Int32Array, count: number, length: number, seed: number): number {
  let h = Math.imul(seed + 1, 0x9e3779b1) ^ length
  for (let i = 0; i < count; i++) {
    let k = Math.imul(words[i], 0xcc9e2d51)
    k = Math.imul((k << 15) | (k >>> 17), 0x1b873593)
    h ^= k
    h = (h << 13) | (h >>> 19)
    h = (Math.imul(h, 5) + 0xe6546b64) | 0
  }
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h | 0
}

/** utf8Length is the number of bytes KeyBytes needs for `text`. */
export function utf8Length(text: string): number {
  let p = 0
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c < 0x80) p += 1
    else if (c < 0x800) p += 2
    else if (c >= 0xd800 && c < 0xdc00 && (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      p += 4
      i++
    } else p += 3
  }
  return p
}
