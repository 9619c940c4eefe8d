import { describe, expect, it } from "vitest"
import { ConfigError } from "../errors.js"
import { checkIpv6Prefix, formatIp, ipKey, parseIp } from "./ip.js"

describe("parseIp / formatIp", () => {
  it.each([
    ["1.2.3.4", "1.2.3.4"],
    ["1.2.3.4:8080", "1.2.3.4"],
    ["::1", "::1"],
    ["[::1]:443", "::1"],
    ["[2001:db8::1]", "2001:db8::1"],
    ["2001:DB8:0:0:1:0:0:1", "2001:db8::1:0:0:1"],
    ["2001:db8:0:0:0:0:0:1", "2001:db8::1"],
    ["fe80::1%eth0", "fe80::1"],
    ["1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8"],
    ["1:0:0:2:0:0:0:3", "1:0:0:2::3"],
    ["a:b:c:d:e:f:1.2.3.4", "a:b:c:d:e:f:102:304"],
    ["::", "::"],
    // IPv4-mapped, every spelling, is IPv4
    ["::ffff:1.2.3.4", "1.2.3.4"],
    ["::ffff:102:304", "1.2.3.4"],
    ["::FFFF:0102:0304", "1.2.3.4"],
    ["0:0:0:0:0:ffff:1.2.3.4", "1.2.3.4"],
    ["[::ffff:1.2.3.4]:80", "1.2.3.4"],
  ])("%s reads as %s", (text, canonical) => {
    const ip = parseIp(text)
    expect(ip).toBeDefined()
    expect(formatIp(ip!)).toBe(canonical)
  })

  it.each([
    [""],
    ["unknown"],
    ["_hidden"],
    ["example.com"],
    ["256.1.1.1"],
    ["01.2.3.4"],
    ["1.2.3"],
    ["1:2:3:4:5:6:7:8:9"],
    ["1::2::3"],
    [":::"],
    ["12345::"],
    ["[::1"],
    ["[::1]x"],
  ])("%j is not an address", (text) => {
    expect(parseIp(text)).toBeUndefined()
  })
})

describe("ipKey", () => {
  it("keys both spellings of an IPv4-mapped address as that IPv4 address", () => {
    expect(ipKey("::ffff:1.2.3.4")).toBe("1.2.3.4")
    expect(ipKey("::ffff:102:304")).toBe("1.2.3.4")
    expect(ipKey("1.2.3.4")).toBe("1.2.3.4")
  })

  it("groups IPv6 by /56 by default and by the given prefix otherwise", () => {
    expect(ipKey("2001:db8:0:ab12:1:2:3:4")).toBe("2001:db8:0:ab00::/56")
    expect(ipKey("2001:db8:0:ab12:1:2:3:4", 64)).toBe("2001:db8:0:ab12::/64")
    expect(ipKey("2001:db8:0:ab12:1:2:3:4", 128)).toBe("2001:db8:0:ab12:1:2:3:4/128")
    expect(ipKey("2001:db8:ffff:ffff::1", 33)).toBe("2001:db8:8000::/33")
  })

  it("makes one key of 10,000 IPv6 addresses from one /56", () => {
    const keys = new Set<string>()
    const hex = () => Math.floor(Math.random() * 0x10000).toString(16)
    for (let i = 0; i < 10_000; i++) {
      // 2001:db8:42:7700::/56 — the fourth group's low byte and the last four groups vary
      const low = Math.floor(Math.random() * 256)
        .toString(16)
        .padStart(2, "0")
      keys.add(ipKey(`2001:db8:42:77${low}:${hex()}:${hex()}:${hex()}:${hex()}`)!)
    }
    expect([...keys]).toEqual(["2001:db8:42:7700::/56"])
  })

  it("makes 10,000 keys of 10,000 distinct IPv4 addresses", () => {
    const keys = new Set<string>()
    for (let i = 0; i < 10_000; i++) {
      keys.add(ipKey(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`)!)
    }
    expect(keys.size).toBe(10_000)
  })

  it("keeps neighbouring /56 networks apart", () => {
    expect(ipKey("2001:db8:42:7700::1")).not.toBe(ipKey("2001:db8:42:7800::1"))
  })

  it("is undefined for non-addresses", () => {
    expect(ipKey("unknown")).toBeUndefined()
  })
})

describe("checkIpv6Prefix", () => {
  it("defaults to 56 and accepts 1 to 128", () => {
    expect(checkIpv6Prefix(undefined)).toBe(56)
    expect(checkIpv6Prefix(1)).toBe(1)
    expect(checkIpv6Prefix(128)).toBe(128)
  })

  it.each([[0], [129], [56.5], ["56"]])("rejects %j", (value) => {
    expect(() => checkIpv6Prefix(value)).toThrow(ConfigError)
  })
})
