-- peek.lua: the decision for cost 0 of each item's key; nothing is consumed. What a peek
-- finds expired (log entries, leases) is dropped, as any decision would.
-- After the header (U.begin): the policy, then per item: caller's now (a double).
-- Reply per item (U.reply): the decision.
local ctx, pos = U.begin(KEYS, ARGV)
if ctx == nil then
  return redis.error_reply(U.REPLAYED)
end
local p
p, pos = readPolicy(ctx.blob, pos)
local K = p.kernel
local blob = ctx.blob
local out = {}
local k = 2
while pos <= #blob do
  local cnow
  cnow, pos = struct.unpack("<d", blob, pos)
  U.at(ctx, cnow)
  local key = KEYS[k]
  k = k + 1
  local st = K.load(p, key, ctx.now)
  U.reply(out, U.encode(K.peek(p, st, ctx.now)))
  if st.dirty then
    K.save(p, key, st, ctx)
  end
end
return table.concat(out)
