// Entry point of the `tollgate` command (see bin/tollgate.js).
import { run } from "./cli/main.js"

process.exitCode = await run(process.argv.slice(2))
