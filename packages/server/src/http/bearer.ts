// Bearer tokens: one for decisions, one for admin operations. A token is compared in
// constant time (through fixed-length SHA-256 digests). The admin token also works on
// decision endpoints; the decision token never works on admin ones.

import { createHash, timingSafeEqual } from "node:crypto"
import { CODES, HttpError } from "./errors.js"

/** Access: what an endpoint needs. */
export type Access = "none" | "decision" | "admin"

export interface Tokens {
  decision?: string
  admin?: string
}

function digest(value: string): Buffer {
  return createHash("sha256").update(value).digest()
}

export class Bearer {
  readonly #decision: Buffer | undefined
  readonly #admin: Buffer | undefined

  constructor(tokens: Tokens) {
    this.#decision = tokens.decision ? digest(tokens.decision) : undefined
    this.#admin = tokens.admin ? digest(tokens.admin) : undefined
  }

  /** required tells whether an endpoint of this access needs a token at all. */
  required(access: Access): boolean {
    if (access === "none") return false
    if (access === "admin") return this.#admin !== undefined || this.#decision !== undefined
    return this.#decision !== undefined
  }

  /**
   * check throws HttpError 401 (no or unknown token) or 403 (decision token on an admin
   * endpoint) unless `header` (an Authorization value) grants `access`. With no tokens
   * configured, everything is open, as on a loopback-only sidecar. Decision endpoints
   * need a token when a decision token is set; admin endpoints whenever any token is set
   * (with only a decision token they stay closed: they need an admin token).
   */
  check(access: Access, header: string | undefined): void {
    if (!this.required(access)) return
    const token = parse(header)
    if (token === undefined) {
      throw new HttpError(
        401,
        CODES.unauthorized,
        "missing bearer token (Authorization: Bearer <token>)",
      )
    }
    const d = digest(token)
    if (this.#admin !== undefined && timingSafeEqual(d, this.#admin)) return
    if (this.#decision !== undefined && timingSafeEqual(d, this.#decision)) {
      if (access === "decision") return
      throw new HttpError(403, CODES.forbidden, "this endpoint needs the admin token")
    }
    throw new HttpError(401, CODES.unauthorized, "invalid bearer token")
  }
}

function parse(header: string | undefined): string | undefined {
  if (header === undefined) return undefined
  const m = /^\s*Bearer\s+(\S+)\s*$/i.exec(header)
  return m === null ? undefined : m[1]
}
