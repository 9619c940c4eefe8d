// The limits of a small AI inference gateway, written as plain data: the same object
// could be read from a JSON or YAML file. See docs/tiers.md for every field.
//
// In your own project, import from "tollgate".
import type { TieredConfig } from "../../packages/tollgate/src/index.js"

export const gatewayConfig: TieredConfig = {
  tiers: {
    // Requests per user and model, per hour: how many calls.
    userModel: { key: ["user", "model"] },
    // Tokens per user, per minute: how much work. Charged as an estimate, then settled.
    tokens: { key: ["user"], budget: "cost" },
    // High-cost models are shared hardware: a budget for the whole class, all users together.
    modelClass: { key: ["modelClass"] },
    // A daily token quota per tenant that is being tried out: reported, never enforced yet.
    tenantTokens: {
      key: ["tenant"],
      budget: "cost",
      shadow: true,
      limit: { limit: 400_000, window: "day", timeZone: "America/New_York" },
    },
    // A safety net for the whole gateway.
    global: { key: [], limit: { limit: 600, window: "1m" } },
  },
  plans: {
    free: {
      limits: {
        userModel: { limit: 100, window: "1h" },
        tokens: { limit: 20_000, window: "1m" },
      },
    },
    premium: {
      limits: {
        userModel: { limit: 1000, window: "1h" },
        tokens: { limit: 100_000, window: "1m" },
      },
    },
    internal: { limits: { userModel: "unlimited", tokens: "unlimited" } },
  },
  modelClasses: {
    "high-cost": { limits: { modelClass: { limit: 30, window: "1m" } } },
  },
  models: {
    "llama-small": {},
    "llama-large": { class: "high-cost" },
    "vision-xl": { class: "high-cost" },
  },
  tenants: {
    acme: { plan: "premium", overrides: { tokens: { limit: 150_000, window: "1m" } } },
    initech: { plan: "free" },
  },
  defaultPlan: "free",
  allow: ["user:healthcheck"],
  deny: ["user:banned-*"],
}
