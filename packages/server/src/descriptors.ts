// Envoy-style descriptor rules: per domain, a tree whose nodes match one descriptor entry
// each (a key, and optionally a value). A request descriptor is a list of entries; it is
// limited by the node reached by matching every entry in order, when that node has a
// limit. An entry matches a child with its exact value first, else the child with the key
// and no value (then each distinct value is counted on its own). A descriptor that does
// not match all the way down is not limited.

import type { DescriptorRule } from "./config/schema.js"
import { ConfigError } from "./lib.js"

/** Entry: one key/value pair of a request descriptor. */
export interface Entry {
  key: string
  value: string
}

/** RuleLimit: what a matched node enforces, built by the caller (see limits.ts). */
export interface RuleNode<L> {
  /** id: `key=value/key` path from the domain root, unique within the domain. */
  readonly id: string
  readonly limit: L | undefined
  readonly children: Map<string, { exact: Map<string, RuleNode<L>>; any?: RuleNode<L> }>
}

/**
 * buildTree turns a domain's rules into a tree; `limitOf` makes the limit of each rule
 * that has one (it may throw ConfigError, with `path` naming the rule in the file).
 */
export function buildTree<L>(
  rules: readonly DescriptorRule[],
  path: string,
  limitOf: (rule: DescriptorRule, id: string, path: string) => L | undefined,
  parentId = "",
): RuleNode<L>["children"] {
  const children: RuleNode<L>["children"] = new Map()
  rules.forEach((rule, i) => {
    const rulePath = `${path}[${i}]`
    const step = rule.value === undefined ? rule.key : `${rule.key}=${rule.value}`
    const id = parentId === "" ? step : `${parentId}/${step}`
    let group = children.get(rule.key)
    if (group === undefined) {
      group = { exact: new Map() }
      children.set(rule.key, group)
    }
    if (rule.value === undefined ? group.any !== undefined : group.exact.has(rule.value)) {
      throw new ConfigError(rulePath, `"${step}" is already matched by an earlier rule`)
    }
    const node: RuleNode<L> = {
      id,
      limit: limitOf(rule, id, rulePath),
      children: buildTree(rule.descriptors ?? [], `${rulePath}.descriptors`, limitOf, id),
    }
    if (rule.value === undefined) group.any = node
    else group.exact.set(rule.value, node)
  })
  return children
}

/** match finds the node a descriptor reaches, or undefined when some entry has no rule. */
export function match<L>(
  root: RuleNode<L>["children"],
  entries: readonly Entry[],
): RuleNode<L> | undefined {
  let children = root
  let node: RuleNode<L> | undefined
  for (const e of entries) {
    const group = children.get(e.key)
    if (group === undefined) return undefined
    node = group.exact.get(e.value) ?? group.any
    if (node === undefined) return undefined
    children = node.children
  }
  return node
}

/**
 * counterKey is the key a descriptor is counted under within its rule: its values, in a
 * form where no two different lists of values look alike.
 */
export function counterKey(entries: readonly Entry[]): string {
  let out = ""
  for (const e of entries) out += `${e.value.length}:${e.value};`
  return out
}
