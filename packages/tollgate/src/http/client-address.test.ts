import { describe, expect, it } from "vitest"
import { ConfigError } from "../errors.js"
import {
  checkForwardedHeader,
  checkTrustedProxies,
  clientAddress,
  forwardedFor,
} from "./client-address.js"

const xff = (trustedProxies: number) =>
  ({ trustedProxies, forwardedHeader: "x-forwarded-for" }) as const
const fwd = (trustedProxies: number) => ({ trustedProxies, forwardedHeader: "forwarded" }) as const

describe("clientAddress", () => {
  it("uses the socket and ignores forwarding headers with no trusted proxies", () => {
    expect(clientAddress("203.0.113.9", "6.6.6.6", xff(0))).toBe("203.0.113.9")
    expect(clientAddress("::ffff:203.0.113.9", undefined, xff(0))).toBe("203.0.113.9")
    expect(clientAddress(undefined, "6.6.6.6", xff(0))).toBeUndefined()
  })

  it("walks X-Forwarded-For from the right, one entry per trusted proxy", () => {
    const header = "6.6.6.6, 203.0.113.9, 10.0.0.1"
    // socket = nearest proxy; 1 hop: the entry it appended (10.0.0.1) is the client
    expect(clientAddress("10.0.0.2", header, xff(1))).toBe("10.0.0.1")
    // 2 hops: 10.0.0.1 is the outer proxy, so the client is 203.0.113.9
    expect(clientAddress("10.0.0.2", header, xff(2))).toBe("203.0.113.9")
    expect(clientAddress("10.0.0.2", header, xff(3))).toBe("6.6.6.6")
  })

  it("gives no address when there are fewer entries than trusted proxies", () => {
    expect(clientAddress("10.0.0.2", undefined, xff(1))).toBeUndefined()
    expect(clientAddress("10.0.0.2", "  ", xff(1))).toBeUndefined()
    expect(clientAddress("10.0.0.2", "203.0.113.9", xff(2))).toBeUndefined()
  })

  it("gives no address when the chosen entry is not an IP address", () => {
    expect(clientAddress("10.0.0.2", "203.0.113.9, unknown", xff(1))).toBeUndefined()
    expect(clientAddress("10.0.0.2", "203.0.113.9, ", xff(1))).toBeUndefined()
  })

  it("whatever a client puts on the left, the key source stays the proxy's entry", () => {
    for (const spoof of ["1.1.1.1", "1.1.1.1, 2.2.2.2", "garbage", "::1", ""]) {
      const header = spoof === "" ? "198.51.100.7" : `${spoof}, 198.51.100.7`
      expect(clientAddress("10.0.0.2", header, xff(1))).toBe("198.51.100.7")
    }
  })

  it("reads Forwarded for= values, quoted IPv6 with ports included", () => {
    const header =
      'for=6.6.6.6;proto=http, for="[2001:db8:cafe::17]:4711";by=10.0.0.1, for=192.0.2.60'
    expect(clientAddress("10.0.0.2", header, fwd(1))).toBe("192.0.2.60")
    expect(clientAddress("10.0.0.2", header, fwd(2))).toBe("2001:db8:cafe::17")
    expect(clientAddress("10.0.0.2", "for=_hidden", fwd(1))).toBeUndefined()
    expect(clientAddress("10.0.0.2", "proto=https", fwd(1))).toBeUndefined()
  })

  it("reads only the configured header", () => {
    expect(clientAddress("10.0.0.2", "for=192.0.2.60", xff(1))).toBeUndefined()
  })
})

describe("forwardedFor", () => {
  it("splits elements outside quotes and unquotes values", () => {
    expect(forwardedFor('for="a,b";by=x, For=1.2.3.4, proto=http')).toEqual(["a,b", "1.2.3.4", ""])
  })
})

describe("option checks", () => {
  it("validates trustedProxies and forwardedHeader", () => {
    expect(checkTrustedProxies(undefined)).toBe(0)
    expect(checkTrustedProxies(2)).toBe(2)
    expect(() => checkTrustedProxies(-1)).toThrow(ConfigError)
    expect(() => checkTrustedProxies(1.5)).toThrow(ConfigError)
    expect(checkForwardedHeader(undefined)).toBe("x-forwarded-for")
    expect(() => checkForwardedHeader("x-real-ip")).toThrow(ConfigError)
  })
})
