-- reserve.lua (token bucket): commit each item's cost for the earliest time within its
-- maxWait. After the header (U.begin): the policy, then per item: cost, caller's now,
-- maxWait (doubles). Reply per item (U.reply): ok (a byte), executeAt (caller's clock),
-- delayMs, executeAt (decision clock), as doubles, then the decision.
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
  local cost, cnow, maxWait
  cost, cnow, maxWait, pos = struct.unpack("<ddd", blob, pos)
  U.at(ctx, cnow)
  local key = KEYS[k]
  k = k + 1
  local st = TB.load(p, key, ctx.now)
  local ok, executeAt, delay, d = TB.reserve(p, st, ctx.now, cost, maxWait)
  if st.dirty then
    TB.save(p, key, st, ctx)
  end
  U.reply(out, struct.pack("<Bddd", ok and 1 or 0, U.toClient(ctx, executeAt), delay, executeAt)
    .. U.encode(d))
end
return table.concat(out)
