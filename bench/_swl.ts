import { Redis } from "ioredis"
import { RedisStore, slidingWindowLog } from "../packages/tollgate/src/index.js"
const client = new Redis({ port: 7777 })
const L = Number(process.env.L ?? 100)
const results: number[] = []
for (let round = 0; round < 7; round++) {
  await client.flushall()
  const store = new RedisStore({ client })
  const ns = store.namespace("b", slidingWindowLog({ limit: L, window: "1s" }))
  let n = 0
  const t0 = performance.now()
  const run = async () => { while (performance.now() - t0 < 2000) { await ns.limit(`user:${(n++ * 7919) % 1000}`, 1, Date.now()) } }
  await Promise.all(Array.from({ length: 256 }, run)) // warm
  await client.config("RESETSTAT")
  n = 0
  const t1 = performance.now()
  const run2 = async () => { while (performance.now() - t1 < 2000) { await ns.limit(`user:${(n++ * 7919) % 1000}`, 1, Date.now()) } }
  await Promise.all(Array.from({ length: 256 }, run2))
  const info = await client.info("commandstats")
  let usec = 0
  for (const m of info.matchAll(/^cmdstat_(evalsha|eval):calls=(\d+),usec=(\d+)/gm)) usec += Number(m[3])
  results.push(usec / n)
}
results.sort((a, b) => a - b)
console.log(`L=${L} script us/dec median ${results[3].toFixed(2)} (${results.map((x) => x.toFixed(2)).join(", ")})`)
client.disconnect()
