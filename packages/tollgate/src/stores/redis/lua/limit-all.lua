-- limit-all.lua: admit every check or none. After the header (U.begin): "apply" or
-- "probe" (a string), then per check: its policy, cost and caller's now (doubles), lease
-- id (a string); KEYS: one state key per check. When every check passes (and the mode
-- is "apply") each is consumed in order; otherwise nothing is written and each decision
-- says whether its check alone passes.
-- Reply: a list: the decision clock's now (a double), then one decision per check, each
-- followed by its lease if it took one.
local ctx, pos = U.begin()
if ctx == nil then
  return redis.error_reply(U.REPLAYED)
end
local blob = ctx.blob
local mode
mode, pos = U.str(blob, pos)
local apply = mode == "apply"
local checks = {}
local k = 2
while pos <= #blob do
  local p, cost, cnow, leaseId
  p, pos = readPolicy(blob, pos)
  cost, cnow, pos = struct.unpack("<dd", blob, pos)
  leaseId, pos = U.str(blob, pos)
  checks[#checks + 1] = { p = p, key = KEYS[k], cost = cost, cnow = cnow, leaseId = leaseId }
  k = k + 1
end
local out = { "" }
local all = true
for j, c in ipairs(checks) do
  U.at(ctx, c.cnow)
  local st = c.p.kernel.load(c.p, c.key, ctx.now)
  local d = c.p.kernel.limit(c.p, st, ctx.now, c.cost, "")
  out[j + 1] = U.encode(d)
  if not d[1] then
    all = false
  end
end
out[1] = struct.pack("<d", ctx.now)
if not all or not apply then
  return out
end
for j, c in ipairs(checks) do
  U.at(ctx, c.cnow)
  local K = c.p.kernel
  local st = K.load(c.p, c.key, ctx.now)
  local d, lease = K.limit(c.p, st, ctx.now, c.cost, c.leaseId)
  if st.dirty then
    K.save(c.p, c.key, st, ctx)
  end
  out[j + 1] = U.encode(d) .. leaseBytes(ctx, lease)
end
return out
