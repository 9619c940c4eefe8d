// A batch job calling a rate-limited API. It does not know the API's limit: it starts
// too fast on purpose (60/s against 40/s), and throttledFetch slows down on the 429s,
// honours Retry-After, and then creeps back up. Refused items are retried; every call,
// retries included, waits its turn (first come, first served).
//
//   npx tsx examples/batch-job/job.ts             (starts its own fake upstream)
//   ITEMS=1000 npx tsx examples/batch-job/job.ts
//   UPSTREAM_URL=http://host:port npx tsx examples/batch-job/job.ts
//
// In your own project, import from "tollgate".
import { pathToFileURL } from "node:url"
import { throttledFetch } from "../../packages/tollgate/src/index.js"
import { startUpstream } from "./upstream.js"

export interface JobOptions {
  upstreamUrl: string
  items: number
  /** batch: how many of the items go through reserved slots after the first part. */
  batch?: number
  initialRate?: number
  workers?: number
  log?: (line: string) => void
}

export interface JobReport {
  done: number
  refused: number
  seconds: number
  perSecond: number
  finalRate: number
}

export async function runJob(options: JobOptions): Promise<JobReport> {
  const { upstreamUrl, items, batch = 0, workers = 8, log = () => {} } = options
  const api = throttledFetch(fetch, {
    initialRate: options.initialRate ?? 60,
    minRate: 1,
    maxRate: 200,
  })
  const startedAt = performance.now()
  let refused = 0
  let done = 0

  /** call fetches one item, retrying refusals; each retry waits its turn again. */
  async function call(
    item: number,
    first: (url: string) => Promise<Response> = (url) => api(url),
  ): Promise<void> {
    let res = await first(`${upstreamUrl}/items/${item}`)
    while (res.status === 429 || res.status === 503) {
      refused++
      await res.arrayBuffer()
      res = await api(`${upstreamUrl}/items/${item}`)
    }
    if (!res.ok) throw new Error(`item ${item}: HTTP ${res.status}`)
    await res.json()
    done++
    if (done % 50 === 0) log(`${done}/${items} done, rate now ${api.limiter.rate.toFixed(1)}/s`)
  }

  // Part 1: workers take items in order; throttledFetch paces them.
  let next = 0
  const streamed = items - batch
  await Promise.all(
    Array.from({ length: workers }, async () => {
      while (next < streamed) await call(next++)
    }),
  )

  // Part 2: reserve slots for the rest at once, and run each when its slot comes due.
  if (batch > 0) {
    const slots = await api.reserve(batch)
    log(`reserved ${batch} slots, the last one ${Math.round(slots[batch - 1].delayMs)} ms from now`)
    await Promise.all(slots.map((slot, i) => call(streamed + i, (url: string) => slot.fetch(url))))
  }

  const seconds = (performance.now() - startedAt) / 1000
  return { done, refused, seconds, perSecond: done / seconds, finalRate: api.limiter.rate }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const items = Number(process.env.ITEMS ?? 200)
  const own = process.env.UPSTREAM_URL === undefined ? await startUpstream() : undefined
  const upstreamUrl = process.env.UPSTREAM_URL ?? own!.url
  console.log(`batch job: ${items} items against ${upstreamUrl}`)
  const report = await runJob({
    upstreamUrl,
    items,
    batch: Math.floor(items / 5),
    log: console.log,
  })
  console.log(
    `done: ${report.done} items in ${report.seconds.toFixed(1)} s (${report.perSecond.toFixed(1)}/s), ` +
      `${report.refused} refused and retried, final rate ${report.finalRate.toFixed(1)}/s`,
  )
  await own?.close()
}
