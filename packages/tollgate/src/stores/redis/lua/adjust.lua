-- adjust.lua: charge each item's delta (a refund when negative) with no admission test.
-- After the header (U.begin): the policy, then per item: delta and caller's now
-- (doubles). Reply per item (U.reply): the decision.
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
  local delta, cnow
  delta, cnow, pos = struct.unpack("<dd", blob, pos)
  U.at(ctx, cnow)
  local key = KEYS[k]
  k = k + 1
  local st = K.load(p, key, ctx.now)
  local d = K.adjust(p, st, ctx.now, delta)
  if st.dirty then
    K.save(p, key, st, ctx)
  end
  U.reply(out, U.encode(d))
end
return table.concat(out)
