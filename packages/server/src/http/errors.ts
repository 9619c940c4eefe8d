// Errors as JSON: every error answer is `{ "error": { code, message, path? } }` with a
// stable code — the library's (ERR_ARGUMENT, ERR_RATE_LIMITED, ERR_STORE, ...) or one of
// the server's own below — and the status that says what happened.

import { STATUS_CODES } from "node:http"
import {
  ArgumentError,
  ConfigError,
  DEGRADED_HEADER,
  type Decision,
  RateLimitError,
  StoreError,
  TollgateError,
  UnsupportedError,
} from "../lib.js"

/** The server's own codes, beside the library's. */
export const CODES = {
  unauthorized: "ERR_UNAUTHORIZED", // 401: no or wrong bearer token
  forbidden: "ERR_FORBIDDEN", // 403: a decision token on an admin endpoint
  notFound: "ERR_NOT_FOUND", // 404: no such route, policy, reservation or lease
  timeout: "ERR_TIMEOUT", // 408: headers or the whole request too slow to arrive
  tooLarge: "ERR_TOO_LARGE", // 413, 414, 431: body, batch, path segment or headers over the cap
  unavailable: "ERR_UNAVAILABLE", // 503: shutting down
  internal: "ERR_INTERNAL", // 500
} as const

/** HttpError: an error answer with a status and code of its own. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly path?: string,
  ) {
    super(message)
  }
}

export interface ErrorAnswer {
  status: number
  headers: Record<string, string>
  body: { error: { code: string; message: string; path?: string; retryAfterMs?: number } }
  decision?: Decision
}

interface FastifyLikeError {
  code?: string
  statusCode?: number
  validation?: { instancePath?: string; message?: string; params?: Record<string, unknown> }[]
  validationContext?: string
  message: string
}

/** toErrorAnswer maps anything thrown while answering to its status, headers and body. */
export function toErrorAnswer(error: unknown): ErrorAnswer {
  const answer = (status: number, code: string, message: string, path?: string): ErrorAnswer => ({
    status,
    headers: {},
    body: { error: path === undefined ? { code, message } : { code, message, path } },
  })
  if (error instanceof HttpError) return answer(error.status, error.code, error.message, error.path)
  if (error instanceof RateLimitError) {
    const a = answer(429, error.code, error.message)
    a.body.error.retryAfterMs = Math.ceil(error.retryAfterMs)
    a.headers["retry-after"] = String(Math.max(0, Math.ceil(error.retryAfterMs / 1000 - 1e-9)))
    a.decision = error.decision
    return a
  }
  if (error instanceof StoreError) {
    const a = answer(503, error.code, error.message)
    a.headers[DEGRADED_HEADER.toLowerCase()] = "closed"
    a.headers["retry-after"] = "1"
    return a
  }
  if (error instanceof ArgumentError) return answer(400, error.code, error.message, error.argument)
  if (error instanceof ConfigError) return answer(400, error.code, error.message, error.path)
  if (error instanceof UnsupportedError) return answer(400, error.code, error.message)
  if (error instanceof TollgateError) return answer(400, error.code, error.message)
  const e = error as FastifyLikeError
  if (e?.validation !== undefined && e.validation.length > 0) {
    const v = e.validation[0]
    let path = `${e.validationContext ?? "body"}${fieldPath(v.instancePath ?? "")}`
    let message = v.message ?? "invalid"
    if (typeof v.params?.missingProperty === "string") {
      path += `.${v.params.missingProperty}`
      message = "is required"
    } else if (typeof v.params?.additionalProperty === "string") {
      path += `.${v.params.additionalProperty}`
      message = "unknown field"
    }
    return answer(400, "ERR_ARGUMENT", `${path}: ${message}`, path)
  }
  switch (e?.code) {
    case "FST_ERR_BAD_URL":
      return answer(400, "ERR_ARGUMENT", "the URL path is not valid percent-encoding")
    case "FST_ERR_MAX_PARAM_LENGTH":
      return answer(414, CODES.tooLarge, "a segment of the URL path is longer than any key can be")
    case "FST_ERR_CTP_BODY_TOO_LARGE":
      return answer(413, CODES.tooLarge, "request body is larger than this server accepts")
    case "FST_ERR_CTP_INVALID_MEDIA_TYPE":
      return answer(415, "ERR_ARGUMENT", "expected a JSON body (Content-Type: application/json)")
    case "FST_ERR_CTP_EMPTY_JSON_BODY":
      return answer(400, "ERR_ARGUMENT", "expected a JSON body, got an empty one")
    case "FST_ERR_CTP_INVALID_JSON_BODY":
      return answer(400, "ERR_ARGUMENT", `invalid JSON: ${e.message}`)
  }
  if (e instanceof SyntaxError || e?.statusCode === 400) {
    return answer(400, "ERR_ARGUMENT", `invalid request: ${e.message}`)
  }
  if (typeof e?.statusCode === "number" && e.statusCode >= 400 && e.statusCode < 500) {
    return answer(e.statusCode, "ERR_ARGUMENT", e.message)
  }
  return answer(500, CODES.internal, "internal error")
}

/**
 * fieldPath turns a JSON pointer from schema validation ("/requests/3/policy") into the
 * path form the docs use (".requests[3].policy"): array indexes in brackets.
 */
function fieldPath(pointer: string): string {
  if (pointer === "") return ""
  let out = ""
  for (const part of pointer.slice(1).split("/")) {
    const name = part.replace(/~1/g, "/").replace(/~0/g, "~")
    out += /^(0|[1-9][0-9]*)$/.test(name) ? `[${name}]` : `.${name}`
  }
  return out
}

/**
 * atField restates a library ArgumentError about one of the call's arguments (`key`,
 * `cost`, ...) as one about the request field it came from, e.g. `body.cost` or
 * `params.key`: `where` names that field, or answers undefined to leave the error as it is.
 * Anything else is answered unchanged.
 */
export function atField(error: unknown, where: (argument: string) => string | undefined): unknown {
  if (!(error instanceof ArgumentError)) return error
  const path = where(error.argument)
  if (path === undefined) return error
  const own = `${error.argument}: `
  const message = error.message.startsWith(own) ? error.message.slice(own.length) : error.message
  return new ArgumentError(path, message)
}

/** inBody names the body fields the library's arguments come from on the JSON routes. */
export function inBody(prefix = "body"): (argument: string) => string | undefined {
  return (argument) => (BODY_FIELDS.has(argument) ? `${prefix}.${argument}` : undefined)
}

const BODY_FIELDS = new Set(["key", "cost", "requestId", "maxWait"])

/**
 * clientErrorAnswer is the raw HTTP answer to a request Node's parser refused before
 * fastify saw it (headers too slow or too large, not HTTP at all), in the same error body
 * as every other answer. The connection is closed afterwards.
 */
export function clientErrorAnswer(error: { code?: string }): string {
  let status = 400
  let body: ErrorAnswer["body"]
  if (error.code === "ERR_HTTP_REQUEST_TIMEOUT") {
    status = 408
    body = {
      error: {
        code: CODES.timeout,
        message: "the request did not arrive in time (headers or body too slow)",
      },
    }
  } else if (error.code === "HPE_HEADER_OVERFLOW") {
    status = 431
    body = {
      error: {
        code: CODES.tooLarge,
        message: "the request line and headers are larger than this server accepts",
      },
    }
  } else {
    body = { error: { code: "ERR_ARGUMENT", message: "malformed HTTP request" } }
  }
  const text = JSON.stringify(body)
  return (
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\n` +
    "Connection: close\r\n" +
    "Content-Type: application/json; charset=utf-8\r\n" +
    `Content-Length: ${Buffer.byteLength(text)}\r\n\r\n${text}`
  )
}
