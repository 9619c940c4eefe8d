-- limit-all.lua: all-or-nothing groups of checks (one multi-tier request each), decided
-- in arrival order. After the header (U.begin): the mode, a string: "apply" or "probe"
-- (nothing is written), with "*" after it when the call carries several groups; the
-- policies the checks use: their number, then each as an id (a double) and the policy.
-- Then, with "*", groups to the end; without, one group. A group: its number of checks
-- and the caller's now (doubles), then per check: its policy's id and cost (doubles) and
-- lease id (a string). KEYS: one state key per check, in order.
--
-- A group's checks are decided in order in one pass, on states read once per key and
-- kept in Lua, so a check sees what earlier checks of its group on the same key took.
-- Only when every check of the group passes (and the mode is "apply") is anything
-- written: each key's state once, and the leases handed out. Otherwise the decisions are
-- those of that run (for distinct keys: whether each check alone passes) and Redis is
-- left as it was. The next group reads Redis again, so it sees what this one wrote.
--
-- Reply without "*": a list: the decision clock's now (a double), then one decision per
-- check, each followed by its lease if it took one. With "*", per group (U.reply): the
-- decision clock's now (a double), then per check its byte length (16 bits) and bytes,
-- packed as one string per check as it is decided (a string made costs Redis time).
local ctx, pos = U.begin(KEYS, ARGV)
if ctx == nil then
  return redis.error_reply(U.REPLAYED)
end
local blob = ctx.blob
local mode, count
mode, pos = U.str(blob, pos)
local packed = string.sub(mode, -1) == "*"
local apply = string.sub(mode, 1, 5) == "apply"
count, pos = struct.unpack("<d", blob, pos)
local policies = {}
for _ = 1, count do
  local id
  id, pos = struct.unpack("<d", blob, pos)
  policies[id], pos = readPolicy(blob, pos)
end
local k = 2
-- Scratch lists, reused by every group: per check its reply (with "*", framed by its
-- length), policy, lease and state.
local replies, used, leases, states = {}, {}, {}, {}
local pack, unpack, sub, encode = struct.pack, struct.unpack, string.sub, U.encode

-- group decides the next group of checks into replies[1..n]; it returns n.
local function group()
  local n, cnow
  n, cnow, pos = unpack("<dd", blob, pos)
  U.at(ctx, cnow)
  local now = ctx.now
  local first = k
  local all = true
  for j = 1, n do
    local id, cost, idLength
    id, cost, idLength, pos = unpack("<ddH", blob, pos)
    local leaseId = ""
    if idLength > 0 then
      leaseId = sub(blob, pos, pos + idLength - 1)
      pos = pos + idLength
    end
    local p = policies[id]
    local K = p.kernel
    local key = KEYS[k]
    k = k + 1
    -- The state of a key checked earlier in the group, held by its latest check (keys
    -- are few: a scan will do).
    local st = nil
    for i = j - 1, 1, -1 do
      if KEYS[first + i - 1] == key then
        st = states[i]
        states[i] = nil
        break
      end
    end
    if st == nil then
      st = K.load(p, key, now)
    elseif K.again ~= nil then
      K.again(st)
    end
    states[j] = st
    local d, lease = K.limit(p, st, now, cost, leaseId)
    if not d[1] then
      all = false
    end
    if packed then
      replies[j] = pack("<HBdddd", 33, d[1] and 1 or 0, d[2], d[3], d[4], d[5])
    else
      replies[j] = encode(d)
    end
    used[j] = p
    leases[j] = lease
  end
  if all and apply then
    for j = 1, n do
      if leases[j] ~= nil then
        local lease = leaseBytes(ctx, leases[j])
        if packed then
          replies[j] = pack("<H", 33 + #lease) .. sub(replies[j], 3) .. lease
        else
          replies[j] = replies[j] .. lease
        end
      end
      -- A key checked more than once is saved once, with the last check's state.
      local st = states[j]
      if st ~= nil and st.dirty then
        used[j].kernel.save(used[j], KEYS[first + j - 1], st, ctx)
      end
    end
  end
  for j = 1, n do
    leases[j] = nil
    states[j] = nil
  end
  return n
end

if not packed then
  local n = group()
  local list = { struct.pack("<d", ctx.now) }
  for j = 1, n do
    list[j + 1] = replies[j]
  end
  return list
end
-- Per group (U.reply's layout): its byte length, the decision clock's now, then its
-- checks' framed replies.
local out = {}
local m = 0
local size = #blob
while pos <= size do
  local n = group()
  local bytes = 8
  for j = 1, n do
    bytes = bytes + #replies[j]
  end
  out[m + 1] = pack("<Hd", bytes, ctx.now)
  for j = 1, n do
    out[m + 1 + j] = replies[j]
  end
  m = m + 1 + n
end
return table.concat(out)
