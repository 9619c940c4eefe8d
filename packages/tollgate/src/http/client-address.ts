// Which address is the client? The socket's peer, unless the operator says the request
// passes through N proxies of their own. Each proxy appends the address it received the
// request from to X-Forwarded-For (or a `for=` element to Forwarded), so, read from the
// right, the first N-1 entries were written by trusted proxies and the N-th by the
// outermost one: that is the client. Everything further left came from the client itself
// and is ignored, so a client cannot choose its own key.

import { ConfigError, describe } from "../errors.js"
import { formatIp, parseIp } from "./ip.js"

/** ForwardedHeader: which header the trusted proxies write. Only that one is read. */
export type ForwardedHeader = "x-forwarded-for" | "forwarded"

export interface ClientAddressOptions {
  /** trustedProxies: how many proxies of yours sit in front of the app; default 0 (use the socket). */
  trustedProxies?: number
  /** forwardedHeader: the header those proxies append to; default "x-forwarded-for". */
  forwardedHeader?: ForwardedHeader
}

/** checkTrustedProxies validates the hop count: a whole number >= 0. */
export function checkTrustedProxies(value: unknown): number {
  if (value === undefined) return 0
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0) {
    throw new ConfigError("trustedProxies", `expected a whole number >= 0, got ${describe(value)}`)
  }
  return value
}

/** checkForwardedHeader validates the forwardedHeader option. */
export function checkForwardedHeader(value: unknown): ForwardedHeader {
  if (value === undefined) return "x-forwarded-for"
  if (value !== "x-forwarded-for" && value !== "forwarded") {
    throw new ConfigError(
      "forwardedHeader",
      `expected "x-forwarded-for" or "forwarded", got ${describe(value)}`,
    )
  }
  return value
}

/** splitOutsideQuotes splits on `separator` where it is not inside a quoted-string. */
function splitOutsideQuotes(text: string, separator: string): string[] {
  const parts: string[] = []
  let current = ""
  let quoted = false
  for (let i = 0; i < text.length; i++) {
    const c = text[i]
    if (quoted && c === "\\" && i + 1 < text.length) {
      current += c + text[++i]
      continue
    }
    if (c === '"') quoted = !quoted
    if (c === separator && !quoted) {
      parts.push(current)
      current = ""
    } else {
      current += c
    }
  }
  parts.push(current)
  return parts
}

/**
 * forwardedFor lists the `for=` value of each element of a Forwarded header (RFC 7239), in
 * order, quotes removed. An element without `for=` gives "" (an unusable hop).
 */
export function forwardedFor(value: string): string[] {
  return splitOutsideQuotes(value, ",").map((element) => {
    for (const pair of splitOutsideQuotes(element, ";")) {
      const eq = pair.indexOf("=")
      if (eq < 0 || pair.slice(0, eq).trim().toLowerCase() !== "for") continue
      const raw = pair.slice(eq + 1).trim()
      return raw.startsWith('"') && raw.endsWith('"') && raw.length >= 2
        ? raw.slice(1, -1).replace(/\\(.)/g, "$1")
        : raw
    }
    return ""
  })
}

/** hops lists the addresses a forwarding header records, in order (the nearest proxy's entry last). */
function hops(value: string, header: ForwardedHeader): string[] {
  return header === "forwarded" ? forwardedFor(value) : value.split(",").map((s) => s.trim())
}

/**
 * clientAddress picks the client's address: the socket peer when `trustedProxies` is 0,
 * else the entry `trustedProxies` places from the right of the forwarding header (the
 * socket peer being the nearest proxy). It returns the address in canonical form
 * (IPv4-mapped IPv6 as IPv4), or undefined when there is no usable one: no socket
 * address, fewer hops than trusted proxies, or an entry that is not an IP address.
 *
 * @example
 * // behind one proxy: socket 10.0.0.2 (the proxy), "X-Forwarded-For: 6.6.6.6, 203.0.113.9"
 * clientAddress("10.0.0.2", xff, { trustedProxies: 1 }) // "203.0.113.9"
 */
export function clientAddress(
  socketAddress: string | undefined,
  forwarded: string | undefined,
  options: { trustedProxies: number; forwardedHeader: ForwardedHeader },
): string | undefined {
  let candidate = socketAddress
  if (options.trustedProxies > 0) {
    if (socketAddress === undefined) return undefined
    const chain =
      forwarded === undefined || forwarded.trim() === ""
        ? []
        : hops(forwarded, options.forwardedHeader)
    const index = chain.length - options.trustedProxies
    if (index < 0) return undefined
    candidate = chain[index]
  }
  if (candidate === undefined) return undefined
  const ip = parseIp(candidate)
  return ip === undefined ? undefined : formatIp(ip)
}
