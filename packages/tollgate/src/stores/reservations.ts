// Delayed reservations a namespace remembers so that cancel() can find them again: a map
// in insertion order whose keys end in "\n<executeAt>".

/** RESERVATIONS_KEPT: most reservations remembered at once. */
const RESERVATIONS_KEPT = 100_000

/**
 * forgetDue trims `kept` before another reservation is added: oldest first, it drops a
 * few whose time has come (they can no longer be cancelled), and the oldest of all while
 * more than RESERVATIONS_KEPT are kept.
 */
export function forgetDue(kept: Map<string, unknown>, now: number): void {
  for (let n = 0; n < 4; n++) {
    const oldest = kept.keys().next()
    if (oldest.done) break
    const at = Number(oldest.value.slice(oldest.value.lastIndexOf("\n") + 1))
    if (at > now && kept.size < RESERVATIONS_KEPT) break
    kept.delete(oldest.value)
  }
}
