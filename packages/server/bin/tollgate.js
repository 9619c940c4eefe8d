#!/usr/bin/env node
// The `tollgate` command. The server ships as TypeScript source; tsx runs it.
import { register } from "tsx/esm/api"

register()
await import("../src/cli.ts")
