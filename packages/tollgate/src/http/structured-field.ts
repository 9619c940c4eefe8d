// Structured Field Values for HTTP (RFC 9651), the part the RateLimit fields use: Lists of
// Items with Parameters. Serializers for the values tollgate writes, and a strict List
// parser for the values it reads (an upstream's RateLimit fields, and our own tests).

import { ArgumentError } from "../errors.js"

/** BareItem is a parsed Structured Field value. Byte sequences arrive as Uint8Array. */
export type BareItem = number | string | boolean | Uint8Array | SfToken | Date

/** SfToken is a Token (unquoted identifier), kept apart from a String. */
export class SfToken {
  readonly value: string
  constructor(value: string) {
    this.value = value
  }
}

/** SfItem is one List member: a value with its parameters (in order, keys unique). */
export interface SfItem {
  value: BareItem | SfItem[]
  params: Map<string, BareItem>
}

const KEY = /^[a-z*][a-z0-9_\-.*]*$/

/** sfString serializes a String: printable ASCII, with `"` and `\` escaped. */
export function sfString(value: string): string {
  if (!/^[\x20-\x7e]*$/.test(value)) {
    throw new ArgumentError(
      "value",
      `a structured-field string holds printable ASCII only, got ${JSON.stringify(value)}`,
    )
  }
  return `"${value.replace(/[\\"]/g, (c) => `\\${c}`)}"`
}

/** sfInteger serializes an Integer; fractions are cut toward zero, the range is +-999,999,999,999,999. */
export function sfInteger(value: number): string {
  const n = Math.trunc(value)
  if (!Number.isFinite(n) || Math.abs(n) > 999_999_999_999_999) {
    throw new ArgumentError(
      "value",
      `a structured-field integer has at most 15 digits, got ${value}`,
    )
  }
  return String(n === 0 ? 0 : n)
}

/** sfKey checks a parameter key: lowercase letter or `*`, then lowercase, digits, `_-.*`. */
export function sfKey(key: string): string {
  if (!KEY.test(key)) {
    throw new ArgumentError("key", `invalid structured-field key ${JSON.stringify(key)}`)
  }
  return key
}

/**
 * parseStructuredList reads a List field value. It returns undefined when the value is malformed
 * anywhere (the draft says malformed RateLimit fields are ignored as a whole). An empty
 * or blank value is an empty List.
 */
export function parseStructuredList(text: string): SfItem[] | undefined {
  const p = new Parser(text)
  try {
    return p.list()
  } catch (error) {
    if (error instanceof SyntaxError) return undefined
    throw error
  }
}

class Parser {
  private readonly s: string
  private i = 0
  constructor(text: string) {
    this.s = text
  }

  private fail(why: string): never {
    throw new SyntaxError(`${why} at ${this.i}`)
  }

  private peek(): string {
    return this.s[this.i] ?? ""
  }

  private skip(chars: string): void {
    while (this.i < this.s.length && chars.includes(this.s[this.i])) this.i++
  }

  list(): SfItem[] {
    this.skip(" ")
    const items: SfItem[] = []
    while (this.i < this.s.length) {
      items.push(this.peek() === "(" ? this.innerList() : this.item())
      this.skip(" \t")
      if (this.i >= this.s.length) return items
      if (this.peek() !== ",") this.fail("expected ','")
      this.i++
      this.skip(" \t")
      if (this.i >= this.s.length) this.fail("trailing ','")
    }
    return items
  }

  private innerList(): SfItem {
    this.i++
    const members: SfItem[] = []
    for (;;) {
      this.skip(" ")
      if (this.peek() === ")") {
        this.i++
        return { value: members, params: this.params() }
      }
      members.push(this.item())
      const c = this.peek()
      if (c !== " " && c !== ")") this.fail("expected ' ' or ')' in inner list")
    }
  }

  private item(): SfItem {
    const value = this.bare()
    return { value, params: this.params() }
  }

  private params(): Map<string, BareItem> {
    const params = new Map<string, BareItem>()
    while (this.peek() === ";") {
      this.i++
      this.skip(" ")
      const key = this.key()
      let value: BareItem = true
      if (this.peek() === "=") {
        this.i++
        value = this.bare()
      }
      params.set(key, value)
    }
    return params
  }

  private key(): string {
    const match = /^[a-z*][a-z0-9_\-.*]*/.exec(this.s.slice(this.i))
    if (match === null) this.fail("expected a key")
    this.i += match[0].length
    return match[0]
  }

  private bare(): BareItem {
    const c = this.peek()
    if (c === "-" || (c >= "0" && c <= "9")) return this.number()
    if (c === '"') return this.string()
    if (c === ":") return this.bytes()
    if (c === "?") return this.boolean()
    if (c === "@") {
      this.i++
      const seconds = this.number()
      if (!Number.isInteger(seconds)) this.fail("a date is an integer")
      return new Date(seconds * 1000)
    }
    if (c === "*" || /[A-Za-z]/.test(c)) return this.token()
    this.fail("expected a value")
  }

  private number(): number {
    const match = /^-?(\d+)(?:\.(\d+))?/.exec(this.s.slice(this.i))
    if (match === null) this.fail("expected a number")
    const [text, whole, fraction] = match
    if (fraction === undefined ? whole.length > 15 : whole.length > 12 || fraction.length > 3) {
      this.fail("number out of range")
    }
    this.i += text.length
    return Number(text)
  }

  private string(): string {
    this.i++
    let out = ""
    for (;;) {
      const c = this.s[this.i++]
      if (c === undefined) this.fail("unterminated string")
      if (c === '"') return out
      if (c === "\\") {
        const next = this.s[this.i++]
        if (next !== '"' && next !== "\\") this.fail("bad escape")
        out += next
      } else if (c < " " || c > "~") {
        this.fail("non-printable character in string")
      } else {
        out += c
      }
    }
  }

  private token(): SfToken {
    const match = /^[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*/.exec(this.s.slice(this.i))
    this.i += match![0].length
    return new SfToken(match![0])
  }

  private bytes(): Uint8Array {
    const end = this.s.indexOf(":", this.i + 1)
    if (end < 0) this.fail("unterminated byte sequence")
    const b64 = this.s.slice(this.i + 1, end)
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(b64)) this.fail("bad base64")
    this.i = end + 1
    return new Uint8Array(Buffer.from(b64, "base64"))
  }

  private boolean(): boolean {
    const c = this.s[this.i + 1]
    if (c !== "0" && c !== "1") this.fail("expected ?0 or ?1")
    this.i += 2
    return c === "1"
  }
}
