// KeyTable.at: a slot the caller remembers stands in for the table's Map while no slot
// has been freed; the key keeps its place in recency order as find() would keep it.

import { describe, expect, it } from "vitest"
import { KeyTable } from "../src/stores/key-table.js"

function table(maxKeys: number): KeyTable<unknown> {
  const budget = { size: 0, maxKeys, evictElsewhere: () => {} }
  return new KeyTable(1, budget, () => false)
}

/** remembered: where a key is now, as a caller of `at` records it. */
function remembered(t: KeyTable<unknown>, key: string) {
  return { slot: t.find(key), epoch: t.epoch, placed: t.placed }
}

const at = (t: KeyTable<unknown>, key: string, r: ReturnType<typeof remembered>) =>
  t.at(key, r.slot, r.epoch, r.placed)

describe("KeyTable.at", () => {
  it("answers the remembered slot while no slot was freed, and find's answer after", () => {
    const t = table(100)
    const a = t.add("a", 0)
    t.add("b", 0)
    const r = remembered(t, "a")
    expect(at(t, "a", r)).toBe(a)
    // Keys added since do not matter.
    t.add("c", 0)
    expect(at(t, "a", r)).toBe(a)
    // "a" leaves; "d" takes its slot: the remembered slot is not "a"'s any more.
    t.delete("a")
    const d = t.add("d", 0)
    expect(d).toBe(a)
    expect(at(t, "a", r)).toBe(-1)
    expect(at(t, "d", r)).toBe(d)
    // A key that had no slot when remembered is looked up again.
    const none = remembered(t, "e")
    const e = t.add("e", 0)
    expect(at(t, "e", none)).toBe(e)
  })

  it("uses no remembered slot once the epoch has run out", () => {
    const t = table(100)
    t.epoch = 0x3fffffff
    t.add("x", 0)
    t.delete("x")
    expect(t.epoch).toBe(-1)
    const a = t.add("a", 0)
    const r = remembered(t, "a")
    expect(r.epoch).toBe(-1)
    expect(at(t, "a", r)).toBe(a)
    t.delete("a")
    t.add("b", 0)
    expect(t.epoch).toBe(-1)
    // Same epoch (-1) as when remembered, and the slot now holds "b".
    expect(at(t, "a", r)).toBe(-1)
  })

  it("keeps a key it answers in recency order, as find does", () => {
    // Three keys fit; the least recently used goes first.
    const t = table(3)
    t.add("a", 0)
    const r = remembered(t, "a")
    t.add("b", 0)
    t.add("c", 0)
    // "a" is used after "b" and "c" arrived: "b" is now the oldest, and goes.
    expect(at(t, "a", r)).toBeGreaterThanOrEqual(0)
    t.add("d", 0)
    expect(t.find("b")).toBe(-1)
    expect(t.find("a")).toBeGreaterThanOrEqual(0)
  })
})
