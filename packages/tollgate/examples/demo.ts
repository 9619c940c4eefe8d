// A short live demo on the embedded memory store: three clients call at different rates
// against one policy (10 requests per second per client, bursts of 5); every second it
// prints what each client was allowed and denied.
import { createLimiter, tokenBucket } from "../src/index.js"

const limiter = createLimiter({ policy: tokenBucket({ rate: 10, period: "1s", burst: 5 }) })
const clients = [
  { name: "steady (8/s)", perSecond: 8 },
  { name: "busy (20/s)", perSecond: 20 },
  { name: "flood (100/s)", perSecond: 100 },
]
const seconds = Number(process.env.DEMO_SECONDS ?? 5)
const tally = clients.map(() => ({ allowed: 0, denied: 0 }))

console.log(`policy: tokenBucket 10/s, burst 5, per client; running ${seconds} s\n`)
const timers = clients.map((client, i) =>
  setInterval(() => {
    const d = limiter.limit(client.name)
    if (d.allowed) tally[i].allowed++
    else tally[i].denied++
  }, 1000 / client.perSecond),
)

let second = 0
const report = setInterval(() => {
  second++
  const line = clients
    .map(
      (c, i) =>
        `${c.name}: ${String(tally[i].allowed).padStart(3)} allowed ${String(tally[i].denied).padStart(3)} denied`,
    )
    .join("   ")
  console.log(`t=${second}s  ${line}`)
  for (const t of tally) {
    t.allowed = 0
    t.denied = 0
  }
  if (second >= seconds) {
    for (const t of timers) clearInterval(t)
    clearInterval(report)
    const s = limiter.stats()
    console.log(
      `\ntotal: ${s.allowed} allowed, ${s.denied} denied (deny rate ${(s.denyRate * 100).toFixed(1)}%)`,
    )
  }
}, 1000)
