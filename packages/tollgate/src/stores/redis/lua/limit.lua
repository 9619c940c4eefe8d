-- limit.lua: admit each item's cost if its key's policy allows it now.
-- After the header (U.begin): the policy, then per item: cost, caller's now, and 1 when
-- a request id key follows the state key in KEYS (else 0), as doubles, then the lease id
-- to use (concurrency; a string). Reply per item (U.reply): the decision (33 bytes),
-- then the lease when one was taken.
local ctx, pos = U.begin()
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
  local cost, cnow, hasId, leaseId
  cost, cnow, hasId, pos = struct.unpack("<ddd", blob, pos)
  leaseId, pos = U.str(blob, pos)
  U.at(ctx, cnow)
  local key = KEYS[k]
  k = k + 1
  local rkey = nil
  if hasId == 1 then
    rkey = KEYS[k]
    k = k + 1
  end
  local reply = nil
  if rkey ~= nil then
    reply = recall(rkey, ctx)
  end
  if reply == nil then
    local st = K.load(p, key, ctx.now)
    local d, lease = K.limit(p, st, ctx.now, cost, leaseId)
    if st.dirty then
      K.save(p, key, st, ctx)
    end
    reply = U.encode(d) .. leaseBytes(ctx, lease)
    if rkey ~= nil and d[1] then
      remember(rkey, ctx, p, d, lease)
    end
  end
  U.reply(out, reply)
end
return table.concat(out)
