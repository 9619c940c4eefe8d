// Reads RateLimit-Policy and RateLimit as the IETF draft (draft-ietf-httpapi-ratelimit-
// headers-11) defines them, failing on anything it does not allow: each field is a
// Structured Field List; each member an Item whose value is a String (the policy name);
// RateLimit-Policy items need q (Integer >= 0) and may have qu (a registered unit), w
// (Integer > 0, seconds) and pk (Byte Sequence); RateLimit items need r (Integer >= 0) and
// may have t (Integer >= 0, seconds) and pk. Unknown parameters are allowed.

import { expect } from "vitest"
import { parseStructuredList, type SfItem } from "../../src/index.js"

export interface PolicyItem {
  name: string
  q: number
  qu?: string
  w?: number
}

export interface LimitItem {
  name: string
  r: number
  t?: number
}

const UNITS = ["requests", "content-bytes", "concurrent-requests"]
// The serialized form of an Item with a String value and Integer/String parameters: an
// independent check that does not go through the parser under test.
const ITEM =
  /^"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])*"(?:;[a-z*][a-z0-9_\-.*]*=(?:-?\d{1,15}|"[^"\\]*"))*$/

function integer(item: SfItem, key: string, min: number, required: boolean): number | undefined {
  const value = item.params.get(key)
  if (value === undefined && !required) return undefined
  if (typeof value !== "number" || !Number.isInteger(value) || value < min) {
    throw new Error(`parameter ${key} must be an Integer >= ${min}, got ${String(value)}`)
  }
  return value
}

function items(field: string | null, what: string): SfItem[] {
  if (field === null) throw new Error(`${what} is missing`)
  for (const member of field.split(/,\s*/)) {
    if (!ITEM.test(member)) throw new Error(`${what} member ${member} is not a String Item`)
  }
  const list = parseStructuredList(field)
  if (list === undefined || list.length === 0) throw new Error(`${what} is not a non-empty List`)
  for (const item of list) {
    if (typeof item.value !== "string") throw new Error(`${what}: the Item value must be a String`)
  }
  return list
}

export function parsePolicyField(field: string | null): PolicyItem[] {
  return items(field, "RateLimit-Policy").map((item) => {
    const out: PolicyItem = { name: item.value as string, q: integer(item, "q", 0, true)! }
    const qu = item.params.get("qu")
    if (qu !== undefined) {
      if (typeof qu !== "string" || !UNITS.includes(qu))
        throw new Error(`unknown unit ${String(qu)}`)
      out.qu = qu
    }
    const w = integer(item, "w", 1, false)
    if (w !== undefined) out.w = w
    return out
  })
}

export function parseLimitField(field: string | null): LimitItem[] {
  return items(field, "RateLimit").map((item) => {
    const out: LimitItem = { name: item.value as string, r: integer(item, "r", 0, true)! }
    const t = integer(item, "t", 0, false)
    if (t !== undefined) out.t = t
    return out
  })
}

/** draftHeaders reads both fields of a response and checks that their names agree. */
export function draftHeaders(res: Response): { policy: PolicyItem[]; limit: LimitItem[] } {
  const policy = parsePolicyField(res.headers.get("ratelimit-policy"))
  const limit = parseLimitField(res.headers.get("ratelimit"))
  const names = new Set(policy.map((p) => p.name))
  for (const l of limit) expect(names.has(l.name), `RateLimit names policy ${l.name}`).toBe(true)
  return { policy, limit }
}
