-- limit.lua: admit each item's cost if its key's policy allows it now.
-- After the header (U.begin): the policy, then per item: cost, caller's now, and 1 when
-- a request id key follows the state key in KEYS (else 0), as doubles, then the lease id
-- to use (concurrency; a string). Reply per item (U.reply): the decision (33 bytes),
-- then the lease when one was taken.
--
-- Items are decided in order. A key's state is read once per call (for kernels whose
-- state is one string, the keys of a larger call all with one MGET), kept in Lua while
-- later items of the call use it, and written once at the end, as the last item that
-- used it left it (at that item's time): a key that many items of a batch share costs
-- one read and one write. The loop holds what it uses in locals, and packs a decision without a lease with its length in
-- one step.
local ctx, pos = U.begin(KEYS, ARGV)
if ctx == nil then
  return redis.error_reply(U.REPLAYED)
end
local p
p, pos = readPolicy(ctx.blob, pos)
local K = p.kernel
local load, decode, again, decide, save, fast = K.load, K.decode, K.again, K.limit, K.save, K.fast
local pack, read, sub = struct.pack, struct.unpack, string.sub
local blob = ctx.blob
local size = #blob
local server, snow = ctx.server, ctx.snow
-- values: the stored value of KEYS[j + 1] at j (request id keys too), read at once
-- (for a call of one or two keys, GET costs less).
local values = nil
if decode ~= nil and #KEYS > 3 then
  local count = #KEYS
  if count <= 1001 then
    values = redis.call("MGET", unpack(KEYS, 2, count))
  else
    values = {}
    for first = 2, count, 1000 do
      local part = redis.call("MGET", unpack(KEYS, first, math.min(first + 999, count)))
      for j = 1, #part do
        values[first - 2 + j] = part[j]
      end
    end
  end
end
-- states: each key's state so far, its field usedAt the caller's time of the last item
-- that used it.
local states = {}
local out = {}
local n = 0
local k = 2
while pos <= size do
  local cost, cnow, hasId, idLength
  cost, cnow, hasId, idLength, pos = read("<dddH", blob, pos)
  local leaseId = ""
  if idLength > 0 then
    leaseId = sub(blob, pos, pos + idLength - 1)
    pos = pos + idLength
  end
  -- What U.at does: the caller's time, and the time decisions use.
  local now = cnow
  if server then
    now = snow
  end
  ctx.cnow = cnow
  ctx.now = now
  local key = KEYS[k]
  local at = k - 1
  k = k + 1
  local rkey = nil
  local reply = nil
  if hasId == 1 then
    rkey = KEYS[k]
    k = k + 1
    reply = recall(rkey, ctx)
  end
  local st = states[key]
  local framed = false
  if reply == nil and fast ~= nil and st == nil and rkey == nil and idLength == 0 then
    -- A key not yet held in this call: decided and written at once where the kernel can.
    local allowed, limit, remaining, retry, reset = fast(p, key, now, cost, ctx)
    if allowed ~= nil then
      reply = pack("<HBdddd", 33, allowed and 1 or 0, limit, remaining, retry, reset)
      framed = true
    end
  end
  if reply == nil then
    if st == nil then
      if values ~= nil then
        st = decode(p, values[at], now, key)
      else
        st = load(p, key, now)
      end
      states[key] = st
    elseif again ~= nil then
      again(st)
    end
    st.usedAt = cnow
    local d, lease = decide(p, st, now, cost, leaseId)
    if rkey ~= nil and d[1] then
      remember(rkey, ctx, p, d, lease)
    end
    if lease == nil then
      reply = pack("<HBdddd", 33, d[1] and 1 or 0, d[2], d[3], d[4], d[5])
    else
      reply = U.encode(d) .. leaseBytes(ctx, lease)
      reply = pack("<H", #reply) .. reply
    end
  elseif not framed then
    reply = pack("<H", #reply) .. reply
  end
  n = n + 1
  out[n] = reply
end
for key, st in pairs(states) do
  if st.dirty then
    U.at(ctx, st.usedAt)
    save(p, key, st, ctx)
  end
end
return table.concat(out)
