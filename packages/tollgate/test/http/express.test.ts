import type { Server as HttpServer } from "node:http"
import type { AddressInfo } from "node:net"
import express, { type Request } from "express"
import { rateLimit } from "../../src/http/express.js"
import { contract } from "./contract.js"

contract<Request>("Express", {
  async start(options) {
    const app = express()
    for (const o of options) app.use(rateLimit(o))
    app.get("/hello", (_req, res) => {
      res.type("text/plain").send("hello")
    })
    app.get("/health", (_req, res) => {
      res.type("text/plain").send("ok")
    })
    const server = await new Promise<HttpServer>((resolve) => {
      const s = app.listen(0, "127.0.0.1", () => resolve(s))
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
  header: (req, name) => req.get(name),
  path: (req) => req.path,
})
