// A Fastify API: a per-client limit for the whole app, and, in a scoped plugin, at most
// two report builds in flight per client (a concurrency policy: the lease is held while
// the request runs and released when the response is sent).
//
//   npx tsx examples/fastify-api/server.ts        (PORT=3000 by default)
//   curl -i localhost:3000/reports/daily
//
// In your own project, import from "tollgate" and "tollgate/fastify".
import { setTimeout as delay } from "node:timers/promises"
import { pathToFileURL } from "node:url"
import Fastify from "fastify"
import { rateLimit } from "../../packages/tollgate/src/http/fastify.js"
import { concurrency, createLimiter, tokenBucket } from "../../packages/tollgate/src/index.js"

export async function buildApp(options: { reportMs?: number } = {}) {
  const app = Fastify()

  await app.register(rateLimit, {
    limiter: createLimiter({ policy: tokenBucket({ rate: 100, period: "1m", burst: 30 }) }),
    trustedProxies: Number(process.env.TRUSTED_PROXIES ?? 0),
  })

  // Registered inside this plugin, the limit covers only its routes.
  await app.register(
    async (reports) => {
      await reports.register(rateLimit, {
        limiter: createLimiter({ policy: concurrency({ limit: 2, leaseTimeout: "30s" }) }),
        policyName: "reports-in-flight",
      })
      reports.get("/:name", async (request) => {
        await delay(options.reportMs ?? 200) // building the report
        return { report: (request.params as { name: string }).name, rows: 42 }
      })
    },
    { prefix: "/reports" },
  )

  app.get("/", async () => ({ hello: "world" }))
  return app
}

/** start listens on `port` (0: any free port) on loopback and returns its URL. */
export async function start(port = 0, host = "127.0.0.1", options?: { reportMs?: number }) {
  const app = await buildApp(options)
  const url = await app.listen({ port, host })
  return { url, close: () => app.close() }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const { url } = await start(Number(process.env.PORT ?? 3000))
  console.log(`fastify-api listening on ${url}`)
}
