-- sliding-window-log.lua: the twin of src/core/sliding-window-log.ts.
-- Policy p: limit, window (ms). A key's log is one string: its entries {time, cost}, two
-- doubles each (16 bytes), oldest first, then a header of SWL_HEADER bytes, as doubles:
--   sum    the cost of the live entries
--   head   the byte offset of the oldest live entry (what is before it left the window)
--   tail   the byte offset of the header (the end of the entries)
--   until  the time (decision clock) the key's TTL was last set to outlive
--   n      how many of the oldest live entries follow, copied (SWL_CACHE at most)
--   then those n entries (a decision trims from the head, so it rarely needs another read).
-- A decision reads the newest entry and the header together (GETRANGE of the string's
-- last bytes) and writes back with one SETRANGE from the end of the entries: the newest
-- entry when it grew, the entries added, the header. Entries that left the window stay
-- in the string until the dead part outweighs the live one; then the string is written
-- anew. The TTL is set to outlive the newest entry by a window once more, so most writes
-- leave it alone. Redis time per decision is then about that of two small commands,
-- whatever the log's length.

local SWL = {}
local SWL_CACHE = 6
local SWL_HEADER = 40 + SWL_CACHE * 16
-- SWL_CHUNK: entries read at once past the copied ones.
local SWL_CHUNK = 16
-- SWL_DEAD: dead bytes that may stay before the string is written anew (when the dead
-- part is also larger than the live one).
local SWL_DEAD = 1024
-- ZEROS fill the header's room for copies it does not use.
local ZEROS = string.rep("\0", SWL_CACHE * 16)

local spack, sunpack = struct.pack, struct.unpack

-- A state is one table of a fixed set of fields (made whole at once, which costs Redis
-- less than adding them one by one): the header's numbers; bodyN, the entries stored
-- from head; hv, the string read (false: no key), with cacheN entries copied from byte
-- hat on; nt, nc, the newest stored entry (merged: it grew); drop, the entries dropped
-- since the load; add, the entries added (false, or t1, c1, t2, c2, ...). Entries read
-- from Redis past the copied ones go into `extra` (made when needed), likewise.
local HAT = 16 + 40 + 1

local function state(key, hv, nt, nc, sum, head, tail, untilT, cacheN)
  return {
    key = key,
    live = tail > head,
    sum = sum,
    head = head,
    tail = tail,
    untilT = untilT,
    bodyN = (tail - head) / 16,
    hv = hv,
    cacheN = cacheN,
    nt = nt,
    nc = nc,
    drop = 0,
    dirty = false,
    merged = false,
    usedAt = 0,
    add = false,
  }
end

function SWL.load(p, key, now)
  local v = redis.call("GETRANGE", key, -(SWL_HEADER + 16), -1)
  if #v == 0 then
    return state(key, false, 0, 0, 0, 0, 0, 0, 0)
  end
  if #v ~= SWL_HEADER + 16 then
    error("tollgate: the sliding window log at " .. key .. " is not in this version's layout")
  end
  local nt, nc, sum, head, tail, untilT, cacheN = sunpack("<ddddddd", v)
  return state(key, v, nt, nc, sum, head, tail, untilT, cacheN)
end

-- added: how many entries this call added.
local function added(st)
  local add = st.add
  if add then
    return #add / 2
  end
  return 0
end

-- at returns entry m of the stored entries then those added (1 = the oldest at load; the
-- first `drop` have left since), or nil past the end. Entries not copied in the header
-- are read from Redis, SWL_CHUNK at a time.
local function at(st, m)
  local bodyN = st.bodyN
  if m > bodyN then
    local add = st.add
    local a = 2 * (m - bodyN)
    if not add or a > #add then
      return nil
    end
    return add[a - 1], add[a]
  end
  if m == bodyN then
    return st.nt, st.nc
  end
  local cacheN = st.cacheN
  if m <= cacheN then
    return sunpack("<dd", st.hv, HAT + (m - 1) * 16)
  end
  local extra = st.extra
  if extra == nil then
    extra = {}
    st.extra = extra
  end
  local known = cacheN + #extra / 2
  while m > known do
    local last = math.min(known + SWL_CHUNK, bodyN) - 1
    local r = redis.call("GETRANGE", st.key, st.head + known * 16, st.head + last * 16 + 15)
    for k = 0, last - known do
      local t, c = sunpack("<dd", r, k * 16 + 1)
      extra[#extra + 1] = t
      extra[#extra + 1] = c
    end
    known = last + 1
  end
  local e = 2 * (m - cacheN)
  return extra[e - 1], extra[e]
end

-- known: whether entry m can be had without reading Redis.
local function known(st, m)
  if m >= st.bodyN or m <= st.cacheN then
    return true
  end
  local extra = st.extra
  return extra ~= nil and m <= st.cacheN + #extra / 2
end

-- entry j (1 = the oldest live entry) as {time, cost}, or nil past the end.
function SWL.entry(st, j)
  local t, c = at(st, st.drop + j)
  if t == nil then
    return nil
  end
  return { t, c }
end

-- newest: the time of the newest live entry (the state is live).
local function newest(st)
  local add = st.add
  if add then
    return add[#add - 1]
  end
  return st.nt
end

-- trim drops entries that left the window: an entry at t counts while now - t < window
-- (less the microsecond of slack every algorithm allows).
function SWL.trim(p, st, now)
  if not st.live then
    return
  end
  local horizon = now - p.window + EPSILON_MS
  local m = st.drop + 1
  local t, c = at(st, m)
  while t ~= nil and t <= horizon do
    st.sum = st.sum - c
    m = m + 1
    t, c = at(st, m)
  end
  if t == nil then
    st.live = false
    st.sum = 0
    st.drop = st.bodyN + added(st)
    st.dirty = true
  elseif m > st.drop + 1 then
    st.drop = m - 1
    st.dirty = true
  end
end

function SWL.resetAfter(p, st, now)
  if not st.live then
    return 0
  end
  return math.max(0, newest(st) + p.window - now)
end

-- record adds `cost` at now: to the newest entry when it is not older than now, else as
-- a new entry.
function SWL.record(st, now, cost)
  local add = st.add
  if st.live and newest(st) >= now then
    if add then
      add[#add] = add[#add] + cost
    else
      st.nc = st.nc + cost
      st.merged = true
    end
  else
    if add then
      add[#add + 1] = now
      add[#add + 1] = cost
    else
      st.add = { now, cost }
    end
    st.live = true
  end
  st.dirty = true
end

function SWL.limit(p, st, now, cost)
  SWL.trim(p, st, now)
  if st.sum + cost <= p.limit + COST_EPSILON then
    if cost > 0 then
      SWL.record(st, now, cost)
      st.sum = st.sum + cost
    end
    return { true, p.limit, U.whole(p.limit - st.sum), 0, SWL.resetAfter(p, st, now) }
  end
  -- Denied: the request fits once enough of the oldest entries have left the window.
  local excess = st.sum + cost - p.limit - COST_EPSILON
  local freed = 0
  local retry = p.window
  local m = st.drop + 1
  local t, c = at(st, m)
  while t ~= nil do
    freed = freed + c
    if freed >= excess then
      retry = t + p.window - now
      break
    end
    m = m + 1
    t, c = at(st, m)
  end
  return { false, p.limit, U.whole(p.limit - st.sum), retry, SWL.resetAfter(p, st, now) }
end

function SWL.peek(p, st, now)
  return SWL.limit(p, st, now, 0)
end

-- entries: every live entry, as {time, cost}.
function SWL.entries(st)
  local entries = {}
  if st.live then
    for m = st.drop + 1, st.bodyN + added(st) do
      local t, c = at(st, m)
      entries[#entries + 1] = { t, c }
    end
  end
  return entries
end

function SWL.adjust(p, st, now, delta)
  SWL.trim(p, st, now)
  if delta > 0 then
    local add = math.min(delta, 2 * p.limit - st.sum)
    if add > 0 then
      SWL.record(st, now, add)
      st.sum = st.sum + add
    end
  elseif delta < 0 then
    -- Take cost back from the newest entries, and write the log anew.
    local entries = SWL.entries(st)
    local back = -delta
    while back > 0 and #entries > 0 do
      local last = entries[#entries]
      local take = math.min(back, last[2])
      last[2] = last[2] - take
      st.sum = st.sum - take
      back = back - take
      if last[2] <= COST_EPSILON then
        entries[#entries] = nil
      end
    end
    SWL.replace(st, entries)
  end
  return { true, p.limit, U.whole(p.limit - st.sum), 0, SWL.resetAfter(p, st, now) }
end

-- replace makes `entries` ({time, cost}, oldest first) the whole log, as if all were
-- added in this call (so save writes the string anew); the caller keeps the sum.
function SWL.replace(st, entries)
  st.bodyN, st.drop, st.merged, st.add = 0, 0, false, false
  if #entries == 0 then
    st.live = false
    st.sum = 0
  else
    local add = {}
    for a, e in ipairs(entries) do
      add[2 * a - 1], add[2 * a] = e[1], e[2]
    end
    st.add = add
    st.live = true
  end
  st.dirty = true
end

-- header: the header of a string written anew, whose entries are `whole`.
local function header(sum, whole, untilT)
  local n = math.min(SWL_CACHE, #whole / 16)
  return spack("<ddddd", sum, 0, #whole, untilT, n)
    .. string.sub(whole, 1, n * 16)
    .. string.sub(ZEROS, 1, (SWL_CACHE - n) * 16)
end

-- rewrite writes the string anew: the stored entries still live, then those added.
local function rewrite(p, key, st, ctx, head, needed)
  local parts = {}
  if st.drop < st.bodyN then
    local body = redis.call("GETRANGE", key, head, st.tail - 1)
    if st.merged then
      body = string.sub(body, 1, -17) .. spack("<dd", st.nt, st.nc)
    end
    parts[1] = body
  end
  local add = st.add
  if add then
    for a = 2 * math.max(st.drop - st.bodyN, 0) + 1, #add, 2 do
      parts[#parts + 1] = spack("<dd", add[a], add[a + 1])
    end
  end
  local whole = table.concat(parts)
  local untilT = needed + p.window
  redis.call("SET", key, whole .. header(st.sum, whole, untilT), "PX", U.ttl(ctx, untilT - ctx.now))
end

-- save writes what changed (see the layout above); a log with no live entry is deleted.
function SWL.save(p, key, st, ctx)
  if not st.live then
    if st.hv then
      redis.call("DEL", key)
    end
    return
  end
  local bodyN, drop = st.bodyN, st.drop
  local head = st.head + drop * 16
  local needed = newest(st) + p.window
  if not st.hv or drop >= bodyN or (head >= SWL_DEAD and head >= st.tail - head) then
    rewrite(p, key, st, ctx, head, needed)
    return
  end
  -- The header copies the oldest live entries, as far as they are known: those it held
  -- already as they are (but the newest when it grew), the next ones read or added.
  local na = added(st)
  local want = math.min(SWL_CACHE, bodyN + na - drop)
  local copy = ""
  local n = 0
  local stop = st.cacheN
  if st.merged and stop >= bodyN then
    stop = bodyN - 1
  end
  stop = math.min(stop, drop + want)
  if stop > drop then
    copy = string.sub(st.hv, HAT + drop * 16, HAT + stop * 16 - 1)
    n = stop - drop
  end
  while n < want and known(st, drop + n + 1) do
    local t, c = at(st, drop + n + 1)
    copy = copy .. spack("<dd", t, c)
    n = n + 1
  end
  -- The TTL outlives the newest entry by a window more than it needs, so that the next
  -- window's writes need not extend it.
  local untilT = st.untilT
  local extend = needed > untilT
  if extend then
    untilT = needed + p.window
  end
  local from = st.tail
  local write = ""
  if st.merged then
    from = from - 16
    write = spack("<dd", st.nt, st.nc)
  end
  local add = st.add
  if add then
    for a = 1, #add, 2 do
      write = write .. spack("<dd", add[a], add[a + 1])
    end
  end
  write = write
    .. spack("<ddddd", st.sum, head, st.tail + na * 16, untilT, n)
    .. copy
    .. string.sub(ZEROS, 1, (SWL_CACHE - n) * 16)
  redis.call("SETRANGE", key, from, write)
  if extend then
    redis.call("PEXPIRE", key, U.ttl(ctx, untilT - ctx.now))
  end
end

KERNELS.swl = SWL
