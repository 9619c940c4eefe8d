import { describe, expect, it } from "vitest"
import { ArgumentError } from "../errors.js"
import { parseStructuredList, SfToken, sfInteger, sfString } from "./structured-field.js"

describe("parseStructuredList", () => {
  it("reads the draft's examples", () => {
    const policy = parseStructuredList('"burst";q=100;w=60,"daily";q=1000;w=86400')!
    expect(policy.map((i) => [i.value, Object.fromEntries(i.params)])).toEqual([
      ["burst", { q: 100, w: 60 }],
      ["daily", { q: 1000, w: 86400 }],
    ])
    const unit = parseStructuredList('"peruser";q=65535;qu="content-bytes";w=10;pk=:c2Rm:')!
    expect(unit[0].params.get("qu")).toBe("content-bytes")
    expect(Buffer.from(unit[0].params.get("pk") as Uint8Array).toString()).toBe("sdf")
    const limit = parseStructuredList('"default";r=50;t=30')!
    expect(limit[0].params.get("r")).toBe(50)
    expect(limit[0].params.get("t")).toBe(30)
  })

  it("reads every bare item type, parameters without values, and inner lists", () => {
    const items = parseStructuredList(
      'tok;a, -12;b=?0, 1.5, ?1, @1700000000, (1 "x");p=2, "q\\"s"',
    )!
    expect(items[0].value).toBeInstanceOf(SfToken)
    expect((items[0].value as SfToken).value).toBe("tok")
    expect(items[0].params.get("a")).toBe(true)
    expect(items[1].value).toBe(-12)
    expect(items[1].params.get("b")).toBe(false)
    expect(items[2].value).toBe(1.5)
    expect(items[3].value).toBe(true)
    expect((items[4].value as Date).getTime()).toBe(1_700_000_000_000)
    expect((items[5].value as { value: unknown }[]).map((m) => m.value)).toEqual([1, "x"])
    expect(items[5].params.get("p")).toBe(2)
    expect(items[6].value).toBe('q"s')
  })

  it("treats blank as an empty list", () => {
    expect(parseStructuredList("")).toEqual([])
    expect(parseStructuredList("   ")).toEqual([])
  })

  it.each([
    ['"a";q=1,'],
    ['"a";q=1 "b"'],
    ['"a";Q=1'],
    ['"unterminated'],
    ['"bad\\escape"'],
    ["1234567890123456"],
    ["1.2345"],
    ["?2"],
    [":not base64!:"],
    ['"a";q=1;;'],
    ["é"],
  ])("rejects malformed %s", (text) => {
    expect(parseStructuredList(text)).toBeUndefined()
  })
})

describe("serializers", () => {
  it("quotes and escapes strings, and refuses non-ASCII", () => {
    expect(sfString('a"b\\c')).toBe('"a\\"b\\\\c"')
    expect(() => sfString("né")).toThrow(ArgumentError)
  })

  it("writes integers, cutting fractions, within 15 digits", () => {
    expect(sfInteger(42.9)).toBe("42")
    expect(sfInteger(-0)).toBe("0")
    expect(() => sfInteger(1e16)).toThrow(ArgumentError)
    expect(() => sfInteger(Number.NaN)).toThrow(ArgumentError)
  })

  it("round-trips through the parser", () => {
    const text = `${sfString('x"y')};q=${sfInteger(7)}`
    const [item] = parseStructuredList(text)!
    expect(item.value).toBe('x"y')
    expect(item.params.get("q")).toBe(7)
  })
})
