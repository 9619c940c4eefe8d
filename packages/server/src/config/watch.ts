// Noticing that a config file changed. Editors and config tools replace files in several
// ways (write in place, write a temporary file and rename it over, a symlink flip in
// Kubernetes ConfigMaps), so the directory is watched, events for the file's name are
// debounced, and a slow poll of the file's mtime and size backs it up where fs.watch
// misses events.

import { type FSWatcher, type Stats, statSync, watch } from "node:fs"
import { basename, dirname } from "node:path"

export interface FileWatch {
  close(): void
}

/** watchFile calls `onChange` (debounced by `debounceMs`) after the file at `path` changes. */
export function watchFile(
  path: string,
  onChange: () => void,
  { debounceMs = 100, pollMs = 2000 }: { debounceMs?: number; pollMs?: number } = {},
): FileWatch {
  let timer: ReturnType<typeof setTimeout> | undefined
  const fire = () => {
    if (timer !== undefined) clearTimeout(timer)
    timer = setTimeout(() => {
      timer = undefined
      onChange()
    }, debounceMs)
    timer.unref()
  }
  const name = basename(path)
  let watcher: FSWatcher | undefined
  try {
    watcher = watch(dirname(path), { persistent: false }, (_event, file) => {
      if (file === null || file === name || file.toString() === name) fire()
    })
    watcher.on("error", () => {})
  } catch {
    watcher = undefined
  }
  const stamp = (s: Stats | undefined) => (s === undefined ? "" : `${s.mtimeMs}:${s.size}:${s.ino}`)
  const read = () => {
    try {
      return statSync(path)
    } catch {
      return undefined
    }
  }
  let last = stamp(read())
  const poll = setInterval(() => {
    const now = stamp(read())
    if (now !== last) {
      last = now
      fire()
    }
  }, pollMs)
  poll.unref()
  return {
    close() {
      watcher?.close()
      clearInterval(poll)
      if (timer !== undefined) clearTimeout(timer)
    },
  }
}
