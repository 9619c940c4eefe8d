import { describe, expect, it } from "vitest"
import { buildTree, counterKey, match } from "./descriptors.js"

describe("descriptor matching", () => {
  const root = buildTree(
    [
      { key: "path", value: "/login", descriptors: [{ key: "ip", limit: "x" }] },
      { key: "path", limit: "any-path" },
      { key: "ip", value: "10.0.0.1", limit: "vip" },
      { key: "ip", limit: "per-ip" },
    ],
    "d",
    (rule) => (typeof rule.limit === "string" ? rule.limit : undefined),
  )
  const e = (...pairs: [string, string][]) => pairs.map(([key, value]) => ({ key, value }))

  it("prefers an exact value, falls back to the key alone, and needs every entry matched", () => {
    expect(match(root, e(["ip", "10.0.0.1"]))?.limit).toBe("vip")
    expect(match(root, e(["ip", "10.0.0.2"]))?.limit).toBe("per-ip")
    expect(match(root, e(["path", "/login"], ["ip", "1.2.3.4"]))?.limit).toBe("x")
    expect(match(root, e(["path", "/login"]))?.limit).toBeUndefined()
    expect(match(root, e(["path", "/other"]))?.limit).toBe("any-path")
    expect(match(root, e(["path", "/other"], ["ip", "1.2.3.4"]))).toBeUndefined()
    expect(match(root, e(["user", "u"]))).toBeUndefined()
  })

  it("counts distinct value lists under distinct keys", () => {
    expect(counterKey(e(["a", "x;1:y"]))).not.toBe(counterKey(e(["a", "x"], ["b", "y"])))
    expect(counterKey(e(["a", "1"], ["b", "2"]))).toBe(counterKey(e(["a", "1"], ["b", "2"])))
  })
})
