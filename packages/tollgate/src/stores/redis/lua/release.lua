-- release.lua (concurrency): end each item's lease; unknown or ended leases are ignored.
-- After the header (U.begin): the policy, then per item: the lease id (a string) and the
-- caller's now (a double). Reply per item (U.reply): empty.
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
  local id, cnow
  id, pos = U.str(blob, pos)
  cnow, pos = struct.unpack("<d", blob, pos)
  U.at(ctx, cnow)
  local key = KEYS[k]
  k = k + 1
  local st = CC.load(p, key, ctx.now)
  CC.release(st, id)
  if st.dirty then
    CC.save(p, key, st, ctx)
  end
  U.reply(out, "")
end
return table.concat(out)
