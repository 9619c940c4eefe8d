import { parentPort, workerData } from "node:worker_threads"
import {
  createLimiter,
  fixedWindow,
  manualClock,
  type Policy,
  SharedMemoryStore,
  slidingWindowCounter,
  tokenBucket,
} from "../../src/index.js"
import type { SharedMemoryHandle } from "../../src/stores/shared-memory-store.js"

/** PolicySpec: a policy sent to a worker (policies themselves are frozen and do not clone). */
export type PolicySpec =
  | { kind: "tokenBucket"; options: Parameters<typeof tokenBucket>[0] }
  | { kind: "fixedWindow"; options: Parameters<typeof fixedWindow>[0] }
  | { kind: "slidingWindowCounter"; options: Parameters<typeof slidingWindowCounter>[0] }

/** Task: what one worker does; every worker of a run gets the same task and its own index. */
export type Task =
  /**
   * limit: `ops` calls of limit(), walking `keys` keys from an offset of the worker's own;
   * with `hotEvery`, every hotEvery-th call is on the key "hot" instead (counted apart).
   */
  | {
      op: "limit"
      policy: PolicySpec
      keys: number
      ops: number
      requestIds?: boolean
      hotEvery?: number
    }
  /** limitAll: `ops` all-or-nothing checks of one key in each of two namespaces. */
  | { op: "limitAll"; user: PolicySpec; model: PolicySpec; ops: number }

export interface WorkerInput {
  entry: string
  handle: SharedMemoryHandle
  worker: number
  now: number
  /** ticks: when given, time is now + a counter here that every call of every worker advances by 1 ms. */
  ticks?: SharedArrayBuffer
  /** gate: a start barrier: [workers arrived, workers expected]. */
  gate: SharedArrayBuffer
  task: Task
}

export interface WorkerResult {
  allowed: number
  denied: number
  /** hotAllowed: admitted calls on the key "hot". */
  hotAllowed: number
  ms: number
}

export function makePolicy(spec: PolicySpec): Policy {
  switch (spec.kind) {
    case "tokenBucket":
      return tokenBucket(spec.options)
    case "fixedWindow":
      return fixedWindow(spec.options)
    case "slidingWindowCounter":
      return slidingWindowCounter(spec.options)
  }
}

function run(input: WorkerInput): WorkerResult {
  const { task, worker } = input
  // Both ways of opening a handle are exercised.
  const store =
    worker % 2 === 0
      ? SharedMemoryStore.open(input.handle)
      : new SharedMemoryStore({ handle: input.handle })
  const ticks = input.ticks === undefined ? undefined : new Int32Array(input.ticks)
  const clock =
    ticks === undefined
      ? manualClock(input.now)
      : { now: () => input.now + Atomics.add(ticks, 0, 1) }
  let allowed = 0
  let denied = 0
  let hotAllowed = 0
  // Start together, so that the workers really overlap.
  const gate = new Int32Array(input.gate)
  Atomics.add(gate, 0, 1)
  Atomics.notify(gate, 0)
  for (let arrived = Atomics.load(gate, 0); arrived < gate[1]; arrived = Atomics.load(gate, 0)) {
    Atomics.wait(gate, 0, arrived, 100)
  }
  const started = performance.now()
  if (task.op === "limit") {
    const limiter = createLimiter({ policy: makePolicy(task.policy), store, clock })
    const keys = Array.from({ length: task.keys }, (_, i) => `key-${i}`)
    // Each worker walks the keys from its own offset, so workers collide on every key.
    const offset = Math.floor((worker * task.keys) / 8)
    for (let i = 0; i < task.ops; i++) {
      const hot = task.hotEvery !== undefined && i % task.hotEvery === 0
      const key = hot ? "hot" : keys[(offset + i) % task.keys]
      const d = task.requestIds
        ? limiter.limit(key, { requestId: `request-${i}` })
        : limiter.limit(key)
      if (d.allowed) allowed++
      else denied++
      if (hot && d.allowed) hotAllowed++
    }
  } else {
    const user = store.namespace("user", makePolicy(task.user))
    const model = store.namespace("model", makePolicy(task.model))
    for (let i = 0; i < task.ops; i++) {
      const ds = store.limitAll(
        [
          { namespace: user, key: "u", cost: 1 },
          { namespace: model, key: "m", cost: 1 },
        ],
        clock.now(),
      )
      if (ds.every((d) => d.allowed)) allowed++
      else denied++
    }
  }
  return { allowed, denied, hotAllowed, ms: performance.now() - started }
}

parentPort!.postMessage(run(workerData as WorkerInput))
