-- cancel.lua (token bucket): give back reservations that have not reached executeAt.
-- After the header (U.begin): the policy, then per item: cost, caller's now, executeAt,
-- and 1 when executeAt is in the decision clock (0: in the caller's clock), as doubles.
-- Reply per item (U.reply): empty.
local ctx, pos = U.begin(KEYS, ARGV)
if ctx == nil then
  return redis.error_reply(U.REPLAYED)
end
local p
p, pos = readPolicy(ctx.blob, pos)
local blob = ctx.blob
local out = {}
local k = 2
while pos <= #blob do
  local cost, cnow, executeAt, decisionClock
  cost, cnow, executeAt, decisionClock, pos = struct.unpack("<dddd", blob, pos)
  U.at(ctx, cnow)
  if decisionClock ~= 1 then
    executeAt = U.fromClient(ctx, executeAt)
  end
  local key = KEYS[k]
  k = k + 1
  local st = TB.load(p, key, ctx.now)
  TB.cancel(p, st, ctx.now, cost, executeAt)
  if st.dirty then
    TB.save(p, key, st, ctx)
  end
  U.reply(out, "")
end
return table.concat(out)
