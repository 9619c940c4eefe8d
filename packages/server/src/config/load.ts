// Reading a config file: YAML (JSON is YAML too) into a checked ServerConfig. Every
// failure is a ConfigError whose path says where: `line 4, column 7` for YAML syntax, a
// field path such as `policies.api.rate` for a bad value.

import { createHash } from "node:crypto"
import { readFile } from "node:fs/promises"
import { parseDocument } from "yaml"
import { ConfigError } from "../lib.js"
import { issuePath, type ServerConfig, serverConfig } from "./schema.js"

export interface LoadedConfig {
  readonly config: ServerConfig
  /** version: the config's own `version`, else the first 12 hex digits of its SHA-256. */
  readonly version: string
  /** source: where it came from (a file path, or "inline"). */
  readonly source: string
  /** hash: SHA-256 (12 hex digits) of the text it was read from: tells a real change from a touch. */
  readonly hash: string
}

/** parseConfig parses and checks config text; it throws ConfigError on the first problem. */
export function parseConfig(text: string, source = "inline"): LoadedConfig {
  const doc = parseDocument(text, { uniqueKeys: true, prettyErrors: true })
  if (doc.errors.length > 0) {
    const e = doc.errors[0]
    const at = e.linePos?.[0]
    throw new ConfigError(
      at === undefined ? "" : `line ${at.line}, column ${at.col}`,
      `invalid YAML: ${e.message.split("\n")[0].replace(/ at line \d+, column \d+:?$/, "")}`,
    )
  }
  const raw = doc.toJS({ maxAliasCount: 100 }) ?? {}
  return checkConfig(raw, source, textHash(text))
}

/** textHash: the first 12 hex digits of the SHA-256 of config text. */
export function textHash(text: string): string {
  return createHash("sha256").update(text).digest("hex").slice(0, 12)
}

/**
 * RESERVED: names no map in a config may use. Written into a plain object, `__proto__`
 * replaces the object's prototype instead of adding an entry (so a policy of that name
 * would vanish without a word), and looking up `constructor` or `prototype` on a plain
 * object can find something that was never configured.
 */
const RESERVED = new Set(["__proto__", "constructor", "prototype"])

/**
 * checkNames walks a parsed config and throws ConfigError at the first map that uses a
 * reserved name or that is not a plain object (an object literal's `__proto__:` gives it
 * a prototype of its own). The YAML parser keeps `__proto__` as an own key, so the walk
 * sees it before any later step could drop it.
 */
function checkNames(value: unknown, path: (string | number)[]): void {
  if (typeof value !== "object" || value === null) return
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) checkNames(value[i], [...path, i])
    return
  }
  const proto = Object.getPrototypeOf(value)
  if (proto !== Object.prototype && proto !== null) {
    throw new ConfigError(
      issuePath(path),
      "expected plain data (maps, lists, strings, numbers, booleans); this object has a prototype of its own (an object literal with a __proto__ key?)",
    )
  }
  for (const name of Object.keys(value)) {
    if (RESERVED.has(name)) {
      throw new ConfigError(
        issuePath([...path, name]),
        `reserved name: "${name}" cannot name anything in a config; choose another name`,
      )
    }
    checkNames((value as Record<string, unknown>)[name], [...path, name])
  }
}

function digest(raw: unknown): string {
  return createHash("sha256").update(JSON.stringify(raw)).digest("hex").slice(0, 12)
}

/** checkConfig checks an already parsed config object. */
export function checkConfig(raw: unknown, source = "inline", hash?: string): LoadedConfig {
  checkNames(raw, [])
  const result = serverConfig.safeParse(raw)
  if (!result.success) {
    const issue = result.error.issues[0]
    throw new ConfigError(issuePath(issue.path), issue.message)
  }
  const h = hash ?? digest(raw)
  return { config: result.data, version: result.data.version ?? h, source, hash: h }
}

/** readConfigText reads a config file's text; a file that cannot be read is a ConfigError. */
export async function readConfigText(path: string): Promise<string> {
  try {
    return await readFile(path, "utf8")
  } catch (error) {
    throw new ConfigError("", `cannot read ${path}: ${(error as Error).message}`)
  }
}

/** readConfig reads and checks a config file. */
export async function readConfig(path: string): Promise<LoadedConfig> {
  return parseConfig(await readConfigText(path), path)
}
