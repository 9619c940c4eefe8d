import { createServer, type IncomingMessage } from "node:http"
import type { AddressInfo } from "node:net"
import { describe, expect, it } from "vitest"
import { nodeHeader } from "../../src/http/middleware.js"
import { rateLimit, rateLimited } from "../../src/http/node.js"
import { createLimiter, manualClock, tokenBucket } from "../../src/index.js"
import { contract } from "./contract.js"

contract<IncomingMessage>("node:http", {
  async start(options) {
    const gates = options.map((o) => rateLimit(o))
    const server = createServer(async (req, res) => {
      for (const gate of gates) if (!(await gate(req, res))) return
      if (req.url === "/hello" || req.url === "/health") {
        res.end(req.url === "/hello" ? "hello" : "ok")
      } else {
        res.statusCode = 404
        res.end()
      }
    })
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
    return {
      url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
      close: () =>
        new Promise<void>((resolve) => {
          server.close(() => resolve())
          server.closeAllConnections()
        }),
    }
  },
  header: (req, name) => nodeHeader(req.headers, name),
  path: (req) => req.url ?? "",
})

describe("rateLimited (node:http handler wrapper)", () => {
  async function serve(handler: Parameters<typeof createServer>[1]) {
    const server = createServer(handler)
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
    const close = () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      })
    return { url, close }
  }

  it("runs the handler only for admitted requests", async () => {
    const limiter = createLimiter({
      policy: tokenBucket({ rate: 1, period: "1m" }),
      clock: manualClock(0),
    })
    let ran = 0
    const { url, close } = await serve(
      rateLimited(
        (_req, res) => {
          ran++
          res.end("hi")
        },
        { limiter },
      ),
    )
    try {
      expect((await fetch(url)).status).toBe(200)
      expect((await fetch(url)).status).toBe(429)
      expect(ran).toBe(1)
    } finally {
      await close()
    }
  })

  it("answers 500 and reports to onError when an option function throws", async () => {
    const limiter = createLimiter({ policy: tokenBucket({ rate: 1 }) })
    const errors: unknown[] = []
    const { url, close } = await serve(
      rateLimited((_req, res) => res.end("hi"), {
        limiter,
        key: () => {
          throw new Error("no database")
        },
        onError: (error) => errors.push(error),
      }),
    )
    try {
      const res = await fetch(url)
      expect(res.status).toBe(500)
      expect(await res.json()).toMatchObject({ status: 500 })
      expect((errors[0] as Error).message).toBe("no database")
    } finally {
      await close()
    }
  })
})
