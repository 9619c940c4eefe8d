import type { AddressInfo } from "node:net"
import Fastify, { type FastifyRequest } from "fastify"
import { rateLimit } from "../../src/http/fastify.js"
import { nodeHeader } from "../../src/http/middleware.js"
import { contract } from "./contract.js"

contract<FastifyRequest>("Fastify", {
  async start(options) {
    const app = Fastify()
    for (const o of options) await app.register(rateLimit, o)
    app.get("/hello", async () => "hello")
    app.get("/health", async () => "ok")
    await app.listen({ port: 0, host: "127.0.0.1" })
    return {
      url: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`,
      close: () => app.close(),
    }
  },
  header: (req, name) => nodeHeader(req.headers, name),
  path: (req) => req.url,
})
