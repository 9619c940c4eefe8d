// Client addresses as rate-limit keys. IPv4 addresses key as themselves. IPv6 addresses
// key as their network prefix (default /56: one customer site is usually given a /56 or a
// /48, so a single client can pick among billions of addresses inside it). IPv4-mapped
// IPv6 addresses (::ffff:a.b.c.d, as a dual-stack socket reports IPv4 peers) are IPv4.

import { ConfigError, describe } from "../errors.js"

/** IpAddress is a parsed address: 4 bytes, or 8 16-bit groups. */
export type IpAddress = { version: 4; bytes: number[] } | { version: 6; groups: number[] }

const V4_PART = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/

function parseV4(text: string): number[] | undefined {
  const parts = text.split(".")
  if (parts.length !== 4 || !parts.every((p) => V4_PART.test(p))) return undefined
  return parts.map(Number)
}

function parseV6(text: string): number[] | undefined {
  // A trailing dotted quad stands for the last two groups ("::ffff:1.2.3.4").
  let tail: number[] = []
  const lastColon = text.lastIndexOf(":")
  if (text.includes(".", lastColon)) {
    const v4 = parseV4(text.slice(lastColon + 1))
    if (v4 === undefined) return undefined
    tail = [(v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]]
    text = text.slice(0, lastColon + 1)
    if (!text.endsWith("::")) text = text.slice(0, -1)
  }
  const want = 8 - tail.length
  const halves = text.split("::")
  if (halves.length > 2) return undefined
  const split = (h: string) =>
    h === ""
      ? []
      : h.split(":").map((g) => (/^[0-9a-fA-F]{1,4}$/.test(g) ? Number.parseInt(g, 16) : -1))
  const head = split(halves[0])
  const rest = halves.length === 2 ? split(halves[1]) : []
  if (head.includes(-1) || rest.includes(-1)) return undefined
  if (halves.length === 1) return head.length === want ? [...head, ...tail] : undefined
  const missing = want - head.length - rest.length
  if (missing < 1) return undefined
  return [...head, ...new Array<number>(missing).fill(0), ...rest, ...tail]
}

/**
 * parseIp reads an address as a socket or a proxy reports it: IPv4 (`1.2.3.4`, optionally
 * with `:port`), IPv6 (`2001:db8::1`, optionally `[...]`, `[...]:port` or a `%zone`). It
 * returns undefined for anything else (hostnames, `unknown`, obfuscated identifiers).
 */
export function parseIp(text: string): IpAddress | undefined {
  let s = text.trim()
  if (s.startsWith("[")) {
    const end = s.indexOf("]")
    if (end < 0) return undefined
    const after = s.slice(end + 1)
    if (after !== "" && !/^:\d{1,5}$/.test(after)) return undefined
    s = s.slice(1, end)
  } else if (/^[\d.]+:\d{1,5}$/.test(s)) {
    s = s.slice(0, s.indexOf(":"))
  }
  const zone = s.indexOf("%")
  if (zone >= 0) s = s.slice(0, zone)
  if (!s.includes(":")) {
    const bytes = parseV4(s)
    return bytes === undefined ? undefined : { version: 4, bytes }
  }
  const groups = parseV6(s)
  if (groups === undefined) return undefined
  const mapped = groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff
  if (mapped) {
    return { version: 4, bytes: [groups[6] >> 8, groups[6] & 255, groups[7] >> 8, groups[7] & 255] }
  }
  return { version: 6, groups }
}

/** formatIp writes an address canonically: dotted IPv4, or RFC 5952 IPv6 (lowercase, longest zero run as `::`). */
export function formatIp(ip: IpAddress): string {
  if (ip.version === 4) return ip.bytes.join(".")
  const g = ip.groups
  let best = -1
  let bestLength = 1
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++
      continue
    }
    let j = i
    while (j < 8 && g[j] === 0) j++
    if (j - i > bestLength) {
      best = i
      bestLength = j - i
    }
    i = j
  }
  const hex = (part: number[]) => part.map((x) => x.toString(16)).join(":")
  if (best < 0) return hex(g)
  return `${hex(g.slice(0, best))}::${hex(g.slice(best + bestLength))}`
}

/** maskIpv6 keeps the first `prefix` bits of the groups and zeroes the rest. */
function maskIpv6(groups: number[], prefix: number): number[] {
  return groups.map((g, i) => {
    const keep = Math.min(16, Math.max(0, prefix - i * 16))
    return keep === 16 ? g : keep === 0 ? 0 : g & (0xffff << (16 - keep)) & 0xffff
  })
}

/** checkIpv6Prefix validates the ipv6Prefix option: a whole number of bits, 1 to 128. */
export function checkIpv6Prefix(value: unknown): number {
  if (value === undefined) return 56
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1 || value > 128) {
    throw new ConfigError(
      "ipv6Prefix",
      `expected a whole number of bits from 1 to 128, got ${describe(value)}`,
    )
  }
  return value
}

/**
 * ipKey turns an address into a rate-limit key: IPv4 (including IPv4-mapped IPv6) as
 * `1.2.3.4`; IPv6 as its `/ipv6Prefix` network, e.g. `2001:db8:0:ab00::/56`. Undefined
 * when the text is not an address.
 *
 * @example ipKey("::ffff:102:304") // "1.2.3.4"
 */
export function ipKey(address: string, ipv6Prefix = 56): string | undefined {
  const ip = parseIp(address)
  if (ip === undefined) return undefined
  if (ip.version === 4) return formatIp(ip)
  const network = formatIp({ version: 6, groups: maskIpv6(ip.groups, ipv6Prefix) })
  return `${network}/${ipv6Prefix}`
}
