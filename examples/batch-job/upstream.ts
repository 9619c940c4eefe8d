// A stand-in for someone else's rate-limited API: 40 requests per second (bursts of 10)
// per client, 429 with Retry-After above that. Built with tollgate's own node:http
// middleware, with the draft RateLimit headers turned off, so a client has only the 429s
// and Retry-After to learn from (the hard case for an adaptive client).
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import { rateLimited } from "../../packages/tollgate/src/http/node.js"
import { createLimiter, tokenBucket } from "../../packages/tollgate/src/index.js"

export interface UpstreamStats {
  served: number
  refused: number
}

export async function startUpstream(options: { rate?: number; burst?: number } = {}) {
  const stats: UpstreamStats = { served: 0, refused: 0 }
  const limiter = createLimiter({
    policy: tokenBucket({ rate: options.rate ?? 40, burst: options.burst ?? 10 }),
  })
  const server = createServer(
    rateLimited(
      (req, res) => {
        stats.served++
        res.setHeader("Content-Type", "application/json")
        res.end(JSON.stringify({ item: req.url, processed: true }))
      },
      {
        limiter,
        standardHeaders: false,
        deny: () => {
          stats.refused++
          return { body: { error: "too many requests" } }
        },
      },
    ),
  )
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  const close = () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve())
      server.closeAllConnections()
    })
  return { url, stats, close }
}
