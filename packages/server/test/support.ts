// Helpers for the server tests: a server on free loopback ports with a manual clock, and
// a small JSON client over the real network stack (fetch).

import { type ManualClock, manualClock, type Store } from "../src/lib.js"
import { type ServeOptions, TollgateServer } from "../src/server.js"

export const T0 = Date.UTC(2030, 0, 1)

export interface Running {
  server: TollgateServer
  clock: ManualClock
  url: string
  post(path: string, body: unknown, headers?: Record<string, string>): Promise<Answer>
  get(path: string, headers?: Record<string, string>): Promise<Answer>
  del(path: string, headers?: Record<string, string>): Promise<Answer>
  close(): Promise<void>
}

export interface Answer {
  status: number
  headers: Headers
  body: any
}

async function answer(res: Response): Promise<Answer> {
  const text = await res.text()
  let body: unknown = text
  if ((res.headers.get("content-type") ?? "").includes("json") && text !== "")
    body = JSON.parse(text)
  return { status: res.status, headers: res.headers, body }
}

export async function start(
  config: ServeOptions["config"],
  options: Partial<ServeOptions> & { store?: Store } = {},
): Promise<Running> {
  const clock = manualClock(T0)
  const server = await TollgateServer.start({
    config,
    clock,
    port: 0,
    grpcPort: 0,
    ...options,
  })
  const url = server.httpUrl
  return {
    server,
    clock,
    url,
    post: async (path, body, headers = {}) =>
      answer(
        await fetch(url + path, {
          method: "POST",
          headers: { "content-type": "application/json", ...headers },
          body: typeof body === "string" ? body : JSON.stringify(body),
        }),
      ),
    get: async (path, headers = {}) => answer(await fetch(url + path, { headers })),
    del: async (path, headers = {}) =>
      answer(await fetch(url + path, { method: "DELETE", headers })),
    close: () => server.close(),
  }
}

/** CONFIG: the policies most tests use. */
export const CONFIG = {
  policies: {
    api: { algorithm: "tokenBucket", rate: 1, period: "1s", burst: 3 },
    window: { algorithm: "fixedWindow", limit: 2, window: "1m" },
    slots: { algorithm: "concurrency", limit: 1, leaseTimeout: "1m" },
  },
}

export function bearer(token: string): Record<string, string> {
  return { authorization: `Bearer ${token}` }
}
