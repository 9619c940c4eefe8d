import { connect, createServer, type Socket } from "node:net"

/**
 * CuttingProxy forwards TCP between clients and a server. `cutNextReply()` arms it: the
 * next bytes the server sends back are dropped and that connection is closed, so the
 * command they answered ran on the server while its client never learns the outcome
 * (what a dropped connection does to a command in flight).
 */
export interface CuttingProxy {
  readonly host: string
  readonly port: number
  cutNextReply(): void
  /** cuts: replies dropped so far. */
  readonly cuts: number
  /** dropped: the start of each reply dropped (for a failing test to show what it cut). */
  readonly dropped: readonly string[]
  close(): Promise<void>
}

export function startCuttingProxy(target: { host: string; port: number }): Promise<CuttingProxy> {
  let armed = false
  let cuts = 0
  const dropped: string[] = []
  const sockets = new Set<Socket>()
  const server = createServer((downstream) => {
    const upstream = connect(target.port, target.host)
    sockets.add(downstream)
    sockets.add(upstream)
    const close = () => {
      downstream.destroy()
      upstream.destroy()
      sockets.delete(downstream)
      sockets.delete(upstream)
    }
    downstream.on("data", (chunk) => upstream.write(chunk))
    upstream.on("data", (chunk) => {
      if (armed) {
        armed = false
        cuts++
        dropped.push(JSON.stringify(chunk.subarray(0, 60).toString("latin1")))
        close()
        return
      }
      downstream.write(chunk)
    })
    downstream.on("close", close)
    upstream.on("close", close)
    downstream.on("error", close)
    upstream.on("error", close)
  })
  return new Promise((resolve) => {
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      resolve({
        host: "127.0.0.1",
        port,
        cutNextReply: () => {
          armed = true
        },
        get cuts() {
          return cuts
        },
        dropped,
        close: () =>
          new Promise<void>((done) => {
            for (const s of sockets) s.destroy()
            server.close(() => done())
          }),
      })
    })
  })
}
