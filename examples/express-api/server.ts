// An Express API with two limits stacked:
//   - every route: 20 requests per second per client address, bursts of 40;
//   - GET /search: 10 searches per minute per API key (per address without one).
// /health is never limited. Both RateLimit policies show up in the response headers.
//
//   npx tsx examples/express-api/server.ts        (PORT=3000 by default)
//   curl -i localhost:3000/search -H 'x-api-key: demo'
//
// In your own project, import from "tollgate" and "tollgate/express".
import { pathToFileURL } from "node:url"
import express from "express"
import { rateLimit } from "../../packages/tollgate/src/http/express.js"
import { createLimiter, tokenBucket } from "../../packages/tollgate/src/index.js"

export function createApp() {
  const app = express()

  const perClient = createLimiter({
    policy: tokenBucket({ rate: 20, burst: 40 }),
    prefix: "client",
  })
  app.use(
    rateLimit({
      limiter: perClient,
      // behind one reverse proxy of your own? set TRUSTED_PROXIES=1
      trustedProxies: Number(process.env.TRUSTED_PROXIES ?? 0),
      skip: (req) => req.path === "/health",
    }),
  )

  const searches = createLimiter({
    policy: tokenBucket({ rate: 10, period: "1m" }),
    prefix: "search",
  })
  const searchLimit = rateLimit({
    limiter: searches,
    policyName: "search",
    // An API key and an address never share a key ("key:" and "ip:"), so a client cannot
    // spend another's budget by sending its address as a key; an empty or implausibly
    // long header is no key at all (the address counts then).
    key: (req, client) => {
      const apiKey = req.get("x-api-key")
      return apiKey && apiKey.length <= 128 ? `key:${apiKey}` : `ip:${client.key}`
    },
    legacyHeaders: true,
  })

  app.get("/search", searchLimit, (req, res) => {
    res.json({ query: req.query.q ?? "", results: [] })
  })
  app.get("/health", (_req, res) => {
    res.json({ ok: true })
  })
  app.get("/", (_req, res) => {
    res.json({ hello: "world" })
  })
  return app
}

/** start listens on `port` (0: any free port) on loopback and returns its URL. */
export async function start(port = 0, host = "127.0.0.1") {
  const server = createApp().listen(port, host)
  await new Promise<void>((resolve) => server.once("listening", resolve))
  const address = server.address()
  const url = `http://${host}:${typeof address === "object" && address ? address.port : port}`
  const close = () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve())
      server.closeAllConnections()
    })
  return { url, close }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const { url } = await start(Number(process.env.PORT ?? 3000))
  console.log(`express-api listening on ${url}`)
}
