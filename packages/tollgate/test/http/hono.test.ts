import type { Server as HttpServer } from "node:http"
import type { AddressInfo } from "node:net"
import { serve } from "@hono/node-server"
import { type Context, Hono } from "hono"
import { rateLimiter } from "../../src/http/hono.js"
import { contract } from "./contract.js"

contract<Context>("Hono", {
  async start(options) {
    const app = new Hono()
    for (const o of options) app.use(rateLimiter(o))
    app.get("/hello", (c) => c.text("hello"))
    app.get("/health", (c) => c.text("ok"))
    const server = await new Promise<HttpServer>((resolve) => {
      const s = serve({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" }, () =>
        resolve(s as HttpServer),
      )
    })
    return {
      url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
      close: () =>
        new Promise<void>((resolve) => {
          server.close(() => resolve())
          server.closeAllConnections()
        }),
    }
  },
  header: (c, name) => c.req.header(name),
  path: (c) => c.req.path,
})
