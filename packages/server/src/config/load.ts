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
  return checkConfig(raw, source, createHash("sha256").update(text).digest("hex").slice(0, 12))
}

function digest(raw: unknown): string {
  return createHash("sha256").update(JSON.stringify(raw)).digest("hex").slice(0, 12)
}

/** checkConfig checks an already parsed config object. */
export function checkConfig(raw: unknown, source = "inline", hash?: string): LoadedConfig {
  const result = serverConfig.safeParse(raw)
  if (!result.success) {
    const issue = result.error.issues[0]
    throw new ConfigError(issuePath(issue.path), issue.message)
  }
  const h = hash ?? digest(raw)
  return { config: result.data, version: result.data.version ?? h, source, hash: h }
}

/** readConfig reads and checks a config file. */
export async function readConfig(path: string): Promise<LoadedConfig> {
  let text: string
  try {
    text = await readFile(path, "utf8")
  } catch (error) {
    throw new ConfigError("", `cannot read ${path}: ${(error as Error).message}`)
  }
  return parseConfig(text, path)
}
