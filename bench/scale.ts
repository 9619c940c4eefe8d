// Scale benchmark: decisions per second when several threads share one limit.
//
//   npm run bench:scale                 full run (under a minute on 2 cores)
//   BENCH_QUICK=1 npm run bench:scale   smoke run: fewer and shorter runs
//
// Each scenario (a set of keys) is measured for every contender (a way of deciding:
// a store, and how many threads call it). A contender runs its threads for RUN_MS after a
// warm-up, and reports decisions per second summed over its threads. Every figure is the
// median of RUNS rounds; within a round the contenders take turns, so slow drift of the
// machine hits all alike. Then each contender's ratio to the baseline (one thread over a
// MemoryStore) is printed, and checked against its target where it has one.
//
// To add a row (e.g. a Redis store shared by N processes), add a Contender to CONTENDERS:
// it builds its limiter(s) in start(), spins them in measure(), and cleans up in stop().
//
// This file is also the worker thread's code: started as a worker, it opens the
// SharedMemoryStore from its handle and spins when told to (see workerMain).
import os from "node:os"
import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads"
import {
  createLimiter,
  MemoryStore,
  type SharedMemoryHandle,
  SharedMemoryStore,
  type SyncStore,
  tokenBucket,
} from "../packages/tollgate/src/index.js"
import {
  count,
  makeKey,
  makeKeys,
  median,
  rate,
  ratio,
  type Spin,
  shuffled,
  spinTollgate,
  table,
} from "./lib.js"

const QUICK = process.env.BENCH_QUICK === "1"
const RUNS = QUICK ? 2 : 5
const RUN_MS = QUICK ? 300 : 1000
const WARM_MS = QUICK ? 200 : 500
const MANY = 100_000

interface Scenario {
  label: string
  /** keys: how many distinct keys the threads walk (each in its own seeded order). */
  keys: number
  /** policy: which of POLICIES (each worker builds its own: policies do not cross threads). */
  policy: "perUser" | "hot"
}

// Both policies admit nearly every request of the run. perUser: one token a second in a
// bucket of a million, so every key keeps state between visits, as active users do (with a
// refill faster than the visits, every visit would find a full bucket, whose state
// MemoryStore sweeps and adds again). hot: a billion a second, for one key hit millions of
// times a second.
const POLICIES = {
  perUser: () => tokenBucket({ rate: 1, period: "1s", burst: 1_000_000 }),
  hot: () => tokenBucket({ rate: 1_000_000_000, period: "1s" }),
}

/** Contender: one way of deciding, measured as aggregate decisions per second. */
interface Contender {
  label: string
  /** target: the least ratio to the baseline this contender must reach, if any. */
  target?: number
  start(scenario: Scenario): Promise<void>
  /** measure runs every thread for about `ms` and returns the summed decisions per second. */
  measure(ms: number): Promise<number>
  stop(): Promise<void>
}

function keysFor(keys: number, seed: number): string[] {
  return keys === 1 ? [makeKey(MANY)] : shuffled(makeKeys(keys), seed)
}

// Every contender runs in worker threads of its own, the baseline too: each thread's JIT
// then sees one store class, as an application would, and no thread is the event loop's.
// Workers run this file itself; Node 20 does not hand the tsx loader to workers, so their
// entry is a small script that registers it first.
const TSX_API = import.meta.resolve("tsx/esm/api")
const WORKER_BOOT = `import(${JSON.stringify(TSX_API)}).then((tsx) => tsx.tsImport(${JSON.stringify(import.meta.url)}, ${JSON.stringify(import.meta.url)}))`

interface WorkerSetup {
  /** handle: the SharedMemoryStore to open; without one, the worker makes its own MemoryStore. */
  handle?: SharedMemoryHandle
  keys: number
  policy: Scenario["policy"]
  seed: number
}

type Request = { cmd: "spin"; ms: number } | { cmd: "exit" }

/** answer resolves with a worker's next message. */
function answer<T>(worker: Worker): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    worker.once("message", resolve)
    worker.once("error", reject)
  })
}

/**
 * threads: a contender of `count` worker threads, each deciding over `keys` in its own
 * order, all over one SharedMemoryStore (`shared`) or each over its own MemoryStore.
 */
function threads(label: string, count: number, shared: boolean, target?: number): Contender {
  let workers: Worker[] = []
  return {
    label,
    target,
    async start(scenario) {
      const handle = shared
        ? new SharedMemoryStore({ maxKeys: Math.max(scenario.keys, 16) }).handle
        : undefined
      workers = Array.from({ length: count }, (_, i) => {
        const setup: WorkerSetup = {
          handle,
          keys: scenario.keys,
          policy: scenario.policy,
          seed: i + 1,
        }
        return new Worker(WORKER_BOOT, { eval: true, workerData: setup })
      })
      // Each worker says it is ready once warmed up.
      await Promise.all(workers.map((w) => answer(w)))
    },
    async measure(ms) {
      const spins = await Promise.all(
        workers.map((w) => {
          const spin = answer<Spin>(w)
          w.postMessage({ cmd: "spin", ms } satisfies Request)
          return spin
        }),
      )
      return spins.reduce((sum, s) => sum + (s.ops / s.ms) * 1000, 0)
    },
    async stop() {
      await Promise.all(
        workers.map((w) => {
          const exited = new Promise((resolve) => w.once("exit", resolve))
          w.postMessage({ cmd: "exit" } satisfies Request)
          return exited
        }),
      )
      workers = []
    },
  }
}

function workerMain(): void {
  const setup = workerData as WorkerSetup
  const store: SyncStore =
    setup.handle === undefined ? new MemoryStore() : SharedMemoryStore.open(setup.handle)
  const limiter = createLimiter({ policy: POLICIES[setup.policy](), store })
  const keys = keysFor(setup.keys, setup.seed)
  let cursor = spinTollgate(limiter, keys, 0, WARM_MS).cursor
  const port = parentPort!
  port.on("message", (request: Request) => {
    if (request.cmd === "exit") {
      port.close()
      return
    }
    const spin = spinTollgate(limiter, keys, cursor, request.ms)
    cursor = spin.cursor
    port.postMessage(spin)
  })
  port.postMessage("ready")
}

const BASELINE = threads("MemoryStore, 1 thread", 1, false)
const CONTENDERS: Contender[] = [
  BASELINE,
  threads("SharedMemoryStore, 1 thread", 1, true),
  threads("SharedMemoryStore, 2 workers", 2, true, 1.5),
]

const SCENARIOS: Scenario[] = [
  { label: `${count(MANY)} distinct keys`, keys: MANY, policy: "perUser" },
  { label: "one hot key", keys: 1, policy: "hot" },
]

async function main(): Promise<void> {
  const cpu = os.cpus()
  console.log(
    `tollgate scale benchmark${QUICK ? " (BENCH_QUICK=1: smoke run, not for numbers)" : ""}`,
  )
  console.log(
    `node ${process.version}, ${process.platform}/${process.arch}, ${cpu.length} x ${cpu[0]?.model ?? "unknown CPU"}, load average ${os.loadavg()[0].toFixed(2)}`,
  )
  console.log(
    `decisions/s summed over a contender's threads; median of ${RUNS} runs of ${RUN_MS} ms after a ${WARM_MS} ms warm-up\n`,
  )
  const rows: string[][] = []
  let failures = 0
  for (const scenario of SCENARIOS) {
    for (const c of CONTENDERS) await c.start(scenario)
    const samples = new Map<Contender, number[]>(CONTENDERS.map((c) => [c, []]))
    for (let r = 0; r < RUNS; r++) {
      for (const c of CONTENDERS) samples.get(c)!.push(await c.measure(RUN_MS))
    }
    for (const c of CONTENDERS) await c.stop()
    const base = median(samples.get(BASELINE)!)
    for (const c of CONTENDERS) {
      const runs = samples.get(c)!
      const m = median(runs)
      const x = m / base
      // Targets hold for the many-keys scenario; a hot key is reported, not judged.
      const judged = c.target !== undefined && scenario.keys > 1
      const verdict = !judged ? "" : x >= c.target! ? "PASS" : `FAIL (< ${c.target}x)`
      if (verdict.startsWith("FAIL")) failures++
      console.log(
        `${scenario.label}, ${c.label}: ${rate(m)}/s (runs: ${runs.map(rate).join(", ")})`,
      )
      rows.push([scenario.label, c.label, `${rate(m)}/s`, ratio(x), verdict])
    }
  }
  console.log(`\n${table(["scenario", "contender", "decisions", "vs memory", "target"], rows)}`)
  if (failures > 0) {
    console.log(`\n${failures} target(s) missed`)
    process.exitCode = 1
  }
}

if (isMainThread) await main()
else workerMain()
