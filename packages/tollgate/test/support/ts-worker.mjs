// Entry point for worker threads that run TypeScript: Node 20 does not pass the tsx loader
// on to workers, so this plain module registers it and then imports workerData.entry.
import { workerData } from "node:worker_threads"
import { tsImport } from "tsx/esm/api"

await tsImport(workerData.entry, import.meta.url)
