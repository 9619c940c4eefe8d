// A Hono app on Node (@hono/node-server). /api/* requires an API key and limits each key
// by its plan: 5 requests per second on "free", 50 on "pro". A request without a key is
// answered 401 and never counted under a shared key.
//
//   npx tsx examples/hono-app/server.ts           (PORT=3000 by default)
//   curl -i localhost:3000/api/hello -H 'x-api-key: free-123'
//
// In your own project, import from "tollgate" and "tollgate/hono".
import type { Server } from "node:http"
import type { AddressInfo } from "node:net"
import { pathToFileURL } from "node:url"
import { serve } from "@hono/node-server"
import { Hono } from "hono"
import { rateLimiter } from "../../packages/tollgate/src/http/hono.js"
import { createLimiter, tokenBucket } from "../../packages/tollgate/src/index.js"

const plans = {
  free: createLimiter({ policy: tokenBucket({ rate: 5, burst: 5 }), prefix: "free" }),
  pro: createLimiter({ policy: tokenBucket({ rate: 50, burst: 100 }), prefix: "pro" }),
}

/** apiKey: the header's key, or undefined for none (an empty or implausibly long one). */
const apiKey = (header: string | undefined) =>
  header !== undefined && header.length > 0 && header.length <= 128 ? header : undefined

/** planOf stands in for a lookup in your accounts database. */
const planOf = (apiKey: string) => (apiKey.startsWith("pro-") ? "pro" : "free")

export function createApp() {
  const app = new Hono()
  for (const plan of ["free", "pro"] as const) {
    app.use(
      "/api/*",
      rateLimiter({
        limiter: plans[plan],
        policyName: plan,
        skip: (c) => planOf(apiKey(c.req.header("x-api-key")) ?? "") !== plan,
        key: (c) => apiKey(c.req.header("x-api-key")),
        noKey: () => ({ status: 401, body: { error: "send your API key in x-api-key" } }),
      }),
    )
  }
  app.get("/api/hello", (c) => c.json({ hello: apiKey(c.req.header("x-api-key")) }))
  app.get("/", (c) => c.text("see /api/hello"))
  return app
}

/** start listens on `port` (0: any free port) on loopback and returns its URL. */
export async function start(port = 0, hostname = "127.0.0.1") {
  const server = await new Promise<Server>((resolve) => {
    const s = serve({ fetch: createApp().fetch, port, hostname }, () => resolve(s as Server))
  })
  const url = `http://${hostname}:${(server.address() as AddressInfo).port}`
  const close = () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve())
      server.closeAllConnections()
    })
  return { url, close }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const { url } = await start(Number(process.env.PORT ?? 3000))
  console.log(`hono-app listening on ${url}`)
}
