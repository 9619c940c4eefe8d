// Entry point of the `tollgate` command (see bin/tollgate.js).
import { run } from "./cli/main.js"

const code = await run(process.argv.slice(2))
process.exitCode = code
// `serve` returns only when it failed; anything it left open must not keep the process
// alive, so exit once output has had a moment to drain.
setTimeout(() => process.exit(code), 1000).unref()
