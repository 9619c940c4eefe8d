-- refund.lua: take back what limit-all consumed in one Cluster slot when a check in
-- another slot denied. After the header (U.begin), per check: its policy, cost and
-- consumedAt (the decision clock's now of the consumption; doubles), lease id (a
-- string), caller's now (a double); KEYS: one state key per check. A refund never gives
-- back more than the consumption added: a window that has moved on keeps its count, a
-- log entry is taken from the consumption's time onward, so admitted traffic never
-- exceeds the policy (it may briefly fall short). Reply: a list, empty strings.
local ctx, pos = U.begin(KEYS, ARGV)
if ctx == nil then
  return redis.error_reply(U.REPLAYED)
end
local blob = ctx.blob
local out = {}
local k = 2
while pos <= #blob do
  local p, cost, consumedAt, leaseId, cnow
  p, pos = readPolicy(blob, pos)
  cost, consumedAt, pos = struct.unpack("<dd", blob, pos)
  leaseId, pos = U.str(blob, pos)
  cnow, pos = struct.unpack("<d", blob, pos)
  U.at(ctx, cnow)
  local key = KEYS[k]
  k = k + 1
  local K = p.kernel
  local st = K.load(p, key, ctx.now)
  if p.kind == "tb" then
    TB.adjust(p, st, ctx.now, -cost)
  elseif p.kind == "fw" then
    local start = FW.bounds(p, consumedAt)
    if st.start == start then
      st.count = math.max(st.count - cost, 0)
      st.dirty = true
    end
  elseif p.kind == "swc" then
    local start = math.floor(consumedAt / p.window) * p.window
    if st.start == start then
      st.current = math.max(st.current - cost, 0)
      st.dirty = true
    elseif st.start == start + p.window then
      st.previous = math.max(st.previous - cost, 0)
      st.dirty = true
    end
  elseif p.kind == "swl" then
    SWL.refund(p, st, ctx.now, cost, consumedAt)
  elseif p.kind == "cc" then
    CC.release(st, leaseId)
  end
  if st.dirty then
    K.save(p, key, st, ctx)
  end
  out[#out + 1] = ""
end
return out
