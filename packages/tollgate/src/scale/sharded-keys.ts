import { encodePart, SLOTS, slotOf } from "../stores/redis/key-layout.js"

// Sub-key names. Shard i of key k is named `k@xyz`, xyz three letters or digits. A Redis
// store hashes the encoded name for the Cluster slot (key-layout.ts), and the suffix is
// chosen so that shard i lands on slot (s + i * floor(16384 / n)) mod 16384, where s
// depends on the key: the n shards sit evenly spaced around the slot ring, n different
// slots, one per master (or spread evenly) when the masters own equal contiguous ranges,
// as `redis-cli --cluster create` assigns them.
//
// Finding the suffix needs no search. The slot is the low 14 bits of CRC16, which is
// linear over GF(2) and starts from 0, so for strings of equal length
// crc(a XOR b) = crc(a) XOR crc(b), and leading zero bytes change nothing. Hence
// slot(k + "@" + xyz) = slot(k + "@\0\0\0") XOR slot(xyz): one CRC of the key, then a
// table lookup of the three-character suffix with the wanted slot. Three characters of
// [0-9A-Za-z] reach all 16384 slots.
//
// The names never collide: "@" and the suffix pass through the store's key encoding
// unchanged and the suffix has a fixed length, so the key is the name less its last four
// characters. Each shard lives in a namespace of its own besides.

const ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"

let suffixBySlot: string[] | undefined

/** suffixes: for every slot, a three-character suffix whose own slot it is. Built once. */
function suffixes(): string[] {
  if (suffixBySlot !== undefined) return suffixBySlot
  const table: string[] = new Array(SLOTS)
  let missing = SLOTS
  outer: for (const a of ALPHABET) {
    for (const b of ALPHABET) {
      for (const c of ALPHABET) {
        const suffix = a + b + c
        const slot = slotOf(suffix)
        if (table[slot] === undefined) {
          table[slot] = suffix
          if (--missing === 0) break outer
        }
      }
    }
  }
  if (missing !== 0) throw new Error(`shard suffixes reach only ${SLOTS - missing} slots`)
  suffixBySlot = table
  return table
}

/** shardKeys: the sub-keys of `key` for `shards` shards, in shard order. */
export function shardKeys(key: string, shards: number): string[] {
  const table = suffixes()
  const start = slotOf(`${encodePart(key)}@\0\0\0`)
  const step = Math.floor(SLOTS / shards)
  const names: string[] = new Array(shards)
  for (let i = 0; i < shards; i++) {
    const target = (start + i * step) % SLOTS
    names[i] = `${key}@${table[start ^ target]}`
  }
  return names
}

/** shardSlots: the Cluster slots of `key`'s shards (what a RedisStore on a Cluster uses). */
export function shardSlots(key: string, shards: number): number[] {
  return shardKeys(key, shards).map((name) => slotOf(encodePart(name)))
}
