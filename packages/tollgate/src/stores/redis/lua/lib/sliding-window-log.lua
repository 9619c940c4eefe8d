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
-- HAT: where the copied entries start in what load reads (the newest entry, then the
-- header's five numbers).
local HAT = 16 + 40 + 1

-- ZPAD[k]: k entries' worth of zero bytes (made on first use: a function library may not
-- call string functions while it loads).
local ZPAD = nil

-- pad: the zero bytes that fill the header's room for the copies it does not use, when
-- it holds n.
local function pad(n)
  if ZPAD == nil then
    ZPAD = { [0] = "" }
    for k = 1, SWL_CACHE do
      ZPAD[k] = string.rep("\0", k * 16)
    end
  end
  return ZPAD[SWL_CACHE - n]
end

-- readTail: the newest entry and the header, as one string ("" when there is no key).
local function readTail(key)
  return redis.call("GETRANGE", key, -(SWL_HEADER + 16), -1)
end

-- readChunk: the entries from number known + 1 (1 = the one at byte `head`) up to
-- SWL_CHUNK of them, not past entry bodyN, as stored (16 bytes each).
local function readChunk(key, head, known, bodyN)
  local last = math.min(known + SWL_CHUNK, bodyN) - 1
  return redis.call("GETRANGE", key, head + known * 16, head + last * 16 + 15)
end

-- A state is a table of numbered fields (a table's array part costs Redis far less to
-- make than named fields), plus `dirty` and `usedAt`, which the operation scripts read.
--   KEY, LIVE, SUM, HEAD, TAIL, UNTIL: the key; whether any entry is live; the header's
--     numbers (see above)
--   BODYN: the entries stored from HEAD at load
--   HV: the string read (false: no key), with CACHEN entries copied from byte HAT on
--   NT, NC: the newest stored entry; MERGED: it grew
--   DROP: the entries dropped since the load (stored ones, then added ones)
--   ADD: the entries added, false or {t1, c1, t2, c2, ...}
--   EXTRA: entries past the copied ones read from Redis, false or {t, c, ...}
local KEY, LIVE, SUM, HEAD, TAIL, UNTIL, BODYN, HV = 1, 2, 3, 4, 5, 6, 7, 8
local CACHEN, NT, NC, MERGED, DROP, ADD, EXTRA = 9, 10, 11, 12, 13, 14, 15

function SWL.load(p, key, now)
  local v = readTail(key)
  if #v == 0 then
    return { key, false, 0, 0, 0, 0, 0, false, 0, 0, 0, false, 0, false, false, dirty = false, usedAt = 0 }
  end
  if #v ~= SWL_HEADER + 16 then
    error("tollgate: the sliding window log at " .. key .. " is not in this version's layout")
  end
  local nt, nc, sum, head, tail, untilT, cacheN = struct.unpack("<ddddddd", v)
  return {
    key,
    tail > head,
    sum,
    head,
    tail,
    untilT,
    (tail - head) / 16,
    v,
    cacheN,
    nt,
    nc,
    false,
    0,
    false,
    false,
    dirty = false,
    usedAt = 0,
  }
end

-- added: how many entries this call added.
local function added(st)
  local add = st[ADD]
  if add then
    return #add / 2
  end
  return 0
end

-- at returns entry m of the stored entries then those added (1 = the oldest at load; the
-- first DROP have left since), or nil past the end. Entries not copied in the header
-- are read from Redis, SWL_CHUNK at a time.
local function at(st, m)
  local bodyN = st[BODYN]
  if m > bodyN then
    local add = st[ADD]
    local a = 2 * (m - bodyN)
    if not add or a > #add then
      return nil
    end
    return add[a - 1], add[a]
  end
  if m == bodyN then
    return st[NT], st[NC]
  end
  local cacheN = st[CACHEN]
  if m <= cacheN then
    return struct.unpack("<dd", st[HV], HAT + (m - 1) * 16)
  end
  local extra = st[EXTRA]
  if not extra then
    extra = {}
    st[EXTRA] = extra
  end
  local known = cacheN + #extra / 2
  local head = st[HEAD]
  while m > known do
    local r = readChunk(st[KEY], head, known, bodyN)
    for o = 1, #r, 16 do
      local t, c = struct.unpack("<dd", r, o)
      extra[#extra + 1] = t
      extra[#extra + 1] = c
    end
    known = known + #r / 16
  end
  local e = 2 * (m - cacheN)
  return extra[e - 1], extra[e]
end

-- known: whether entry m can be had without reading Redis.
local function known(st, m)
  if m >= st[BODYN] or m <= st[CACHEN] then
    return true
  end
  local extra = st[EXTRA]
  return extra and m <= st[CACHEN] + #extra / 2
end

-- newest: the time of the newest live entry (the state is live).
local function newest(st)
  local add = st[ADD]
  if add then
    return add[#add - 1]
  end
  return st[NT]
end

-- trim drops entries that left the window: an entry at t counts while now - t < window
-- (less the microsecond of slack every algorithm allows).
local function trim(p, st, now)
  if not st[LIVE] then
    return
  end
  local horizon = now - p.window + EPSILON_MS
  local drop = st[DROP]
  local m = drop + 1
  local t, c = at(st, m)
  if t == nil or t > horizon then
    return
  end
  local sum = st[SUM]
  repeat
    sum = sum - c
    m = m + 1
    t, c = at(st, m)
  until t == nil or t > horizon
  st.dirty = true
  if t == nil then
    st[LIVE] = false
    st[SUM] = 0
    st[DROP] = st[BODYN] + added(st)
  else
    st[SUM] = sum
    st[DROP] = m - 1
  end
end

local function resetAfter(p, st, now)
  if not st[LIVE] then
    return 0
  end
  return math.max(0, newest(st) + p.window - now)
end

-- record adds `cost` at now: to the newest entry when it is not older than now, else as
-- a new entry.
local function record(st, now, cost)
  local add = st[ADD]
  if st[LIVE] and newest(st) >= now then
    if add then
      add[#add] = add[#add] + cost
    else
      st[NC] = st[NC] + cost
      st[MERGED] = true
    end
  else
    if add then
      add[#add + 1] = now
      add[#add + 1] = cost
    else
      st[ADD] = { now, cost }
    end
    st[LIVE] = true
  end
  st.dirty = true
end

function SWL.limit(p, st, now, cost)
  trim(p, st, now)
  local limit = p.limit
  local sum = st[SUM]
  if sum + cost <= limit + COST_EPSILON then
    if cost > 0 then
      record(st, now, cost)
      sum = sum + cost
      st[SUM] = sum
    end
    return { true, limit, U.whole(limit - sum), 0, resetAfter(p, st, now) }
  end
  -- Denied: the request fits once enough of the oldest entries have left the window.
  local excess = sum + cost - limit - COST_EPSILON
  local freed = 0
  local retry = p.window
  local m = st[DROP] + 1
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
  return { false, limit, U.whole(limit - sum), retry, resetAfter(p, st, now) }
end

function SWL.peek(p, st, now)
  return SWL.limit(p, st, now, 0)
end

-- entries: every live entry, as {time, cost}.
local function entries(st)
  local list = {}
  if st[LIVE] then
    for m = st[DROP] + 1, st[BODYN] + added(st) do
      local t, c = at(st, m)
      list[#list + 1] = { t, c }
    end
  end
  return list
end

-- replace makes `list` ({time, cost}, oldest first) the whole log, as if all were added
-- in this call (so save writes the string anew), with `sum` as the live cost.
local function replace(st, list, sum)
  st[BODYN], st[DROP], st[MERGED], st[ADD] = 0, 0, false, false
  if #list == 0 then
    st[LIVE] = false
    st[SUM] = 0
  else
    local add = {}
    for a, e in ipairs(list) do
      add[2 * a - 1], add[2 * a] = e[1], e[2]
    end
    st[ADD] = add
    st[LIVE] = true
    st[SUM] = sum
  end
  st.dirty = true
end

function SWL.adjust(p, st, now, delta)
  trim(p, st, now)
  if delta > 0 then
    local add = math.min(delta, 2 * p.limit - st[SUM])
    if add > 0 then
      record(st, now, add)
      st[SUM] = st[SUM] + add
    end
  elseif delta < 0 then
    -- Take cost back from the newest entries, and write the log anew.
    local list = entries(st)
    local sum = st[SUM]
    local back = -delta
    while back > 0 and #list > 0 do
      local last = list[#list]
      local take = math.min(back, last[2])
      last[2] = last[2] - take
      sum = sum - take
      back = back - take
      if last[2] <= COST_EPSILON then
        list[#list] = nil
      end
    end
    replace(st, list, sum)
  end
  local sum = st[SUM]
  return { true, p.limit, U.whole(p.limit - sum), 0, resetAfter(p, st, now) }
end

-- refund takes back `cost` a limit-all consumed at `consumedAt`: from the first entry
-- recorded then or later (the one that consumption went into), never more than it holds.
function SWL.refund(p, st, now, cost, consumedAt)
  trim(p, st, now)
  local list = entries(st)
  for j = 1, #list do
    local e = list[j]
    if e[1] >= consumedAt then
      local take = math.min(cost, e[2])
      e[2] = e[2] - take
      if e[2] <= COST_EPSILON then
        table.remove(list, j)
      end
      replace(st, list, st[SUM] - take)
      return
    end
  end
end

-- header: the header of a string written anew, whose entries are `whole`.
local function header(sum, whole, untilT)
  local n = math.min(SWL_CACHE, #whole / 16)
  return struct.pack("<ddddd", sum, 0, #whole, untilT, n) .. string.sub(whole, 1, n * 16) .. pad(n)
end

-- rewrite writes the string anew: the stored entries still live, then those added.
local function rewrite(p, key, st, ctx, head, needed)
  local parts = {}
  local bodyN, drop = st[BODYN], st[DROP]
  if drop < bodyN then
    local body = redis.call("GETRANGE", key, head, st[TAIL] - 1)
    if st[MERGED] then
      body = string.sub(body, 1, -17) .. struct.pack("<dd", st[NT], st[NC])
    end
    parts[1] = body
  end
  local add = st[ADD]
  if add then
    for a = 2 * math.max(drop - bodyN, 0) + 1, #add, 2 do
      parts[#parts + 1] = struct.pack("<dd", add[a], add[a + 1])
    end
  end
  local whole = table.concat(parts)
  local untilT = needed + p.window
  redis.call("SET", key, whole .. header(st[SUM], whole, untilT), "PX", U.ttl(ctx, untilT - ctx.now))
end

-- save writes what changed (see the layout above); a log with no live entry is deleted.
function SWL.save(p, key, st, ctx)
  if not st[LIVE] then
    if st[HV] then
      redis.call("DEL", key)
    end
    return
  end
  local bodyN, drop, tail = st[BODYN], st[DROP], st[TAIL]
  local head = st[HEAD] + drop * 16
  local needed = newest(st) + p.window
  if not st[HV] or drop >= bodyN or (head >= SWL_DEAD and head >= tail - head) then
    rewrite(p, key, st, ctx, head, needed)
    return
  end
  -- The header copies the oldest live entries, as far as they are known: those it held
  -- already as they are (but the newest when it grew), the next ones read or added.
  local na = added(st)
  local want = math.min(SWL_CACHE, bodyN + na - drop)
  local copy = ""
  local n = 0
  local stop = st[CACHEN]
  if st[MERGED] and stop >= bodyN then
    stop = bodyN - 1
  end
  stop = math.min(stop, drop + want)
  if stop > drop then
    copy = string.sub(st[HV], HAT + drop * 16, HAT + stop * 16 - 1)
    n = stop - drop
  end
  while n < want and known(st, drop + n + 1) do
    local t, c = at(st, drop + n + 1)
    copy = copy .. struct.pack("<dd", t, c)
    n = n + 1
  end
  -- The TTL outlives the newest entry by a window more than it needs, so that the next
  -- window's writes need not extend it.
  local untilT = st[UNTIL]
  local extend = needed > untilT
  if extend then
    untilT = needed + p.window
  end
  -- One pack for the header's numbers and the entry before them (the usual write: one
  -- entry added, or the newest grown).
  local add = st[ADD]
  local from = tail
  local before = ""
  local t, c
  if st[MERGED] then
    from = from - 16
    t, c = st[NT], st[NC]
  end
  if add then
    if t ~= nil then
      before = struct.pack("<dd", t, c)
    end
    local last = #add - 1
    for a = 1, last - 2, 2 do
      before = before .. struct.pack("<dd", add[a], add[a + 1])
    end
    t, c = add[last], add[last + 1]
  end
  local write
  if t == nil then
    write = struct.pack("<ddddd", st[SUM], head, tail + na * 16, untilT, n)
  else
    write = struct.pack("<ddddddd", t, c, st[SUM], head, tail + na * 16, untilT, n)
  end
  redis.call("SETRANGE", key, from, before .. write .. copy .. pad(n))
  if extend then
    redis.call("PEXPIRE", key, U.ttl(ctx, untilT - ctx.now))
  end
end

-- fastEntry: entry m for the short path (1 = the oldest live one at load): the newest, a
-- copy in the header read (v), or one of the entries past the copies, read SWL_CHUNK at
-- once (chunk) as at() reads them. It returns t, c and the chunk: t is nil past the
-- newest, false when the entry is not at hand (past the one chunk the short path reads).
local function fastEntry(key, v, head, bodyN, cacheN, nt, nc, chunk, m)
  if m == bodyN then
    return nt, nc, chunk
  end
  if m > bodyN then
    return nil, nil, chunk
  end
  if m <= cacheN then
    local t, c = struct.unpack("<dd", v, HAT + (m - 1) * 16)
    return t, c, chunk
  end
  if chunk == nil then
    chunk = readChunk(key, head, cacheN, bodyN)
  end
  local at = (m - cacheN - 1) * 16
  if at + 16 > #chunk then
    return false, nil, chunk
  end
  local t, c = struct.unpack("<dd", chunk, at + 1)
  return t, c, chunk
end

-- fast decides one limit of `cost` at `now` and writes its result at once, for the usual
-- case: the key exists, and what the decision needs of its entries is in what load reads
-- (the copies in the header and the newest entry) or in one more read of the entries
-- after the copies. It returns the decision's five values,
-- or nil, having changed nothing, when the case is not the usual one (then the general
-- load, limit and save decide). It gives the same decisions and leaves the same string
-- as they do, with no state table and fewer strings made.
function SWL.fast(p, key, now, cost, ctx)
  local v = readTail(key)
  if #v ~= SWL_HEADER + 16 then
    return nil
  end
  local unpack = struct.unpack
  local nt, nc, sum, head, tail, untilT, cacheN = unpack("<ddddddd", v)
  local bodyN = (tail - head) / 16
  if bodyN < 1 then
    return nil
  end
  local window, limit = p.window, p.limit
  -- Trim what left the window.
  local horizon = now - window + EPSILON_MS
  local m = 1
  local chunk = nil
  local t, c
  t, c, chunk = fastEntry(key, v, head, bodyN, cacheN, nt, nc, chunk, m)
  if not t then
    return nil
  end
  while t <= horizon do
    sum = sum - c
    m = m + 1
    t, c, chunk = fastEntry(key, v, head, bodyN, cacheN, nt, nc, chunk, m)
    if not t then
      -- Every entry left, or the next one is not at hand.
      return nil
    end
  end
  local drop = m - 1
  local allowed = sum + cost <= limit + COST_EPSILON
  local na, merged = 0, false
  local retry = 0
  if allowed then
    if cost > 0 then
      if nt >= now then
        nc = nc + cost
        merged = true
      else
        na = 1
      end
      sum = sum + cost
    end
  else
    -- Denied: the request fits once enough of the oldest entries have left the window.
    local excess = sum + cost - limit - COST_EPSILON
    local freed = 0
    retry = window
    while true do
      freed = freed + c
      if freed >= excess then
        retry = t + window - now
        break
      end
      m = m + 1
      t, c, chunk = fastEntry(key, v, head, bodyN, cacheN, nt, nc, chunk, m)
      if t == nil then
        break
      elseif t == false then
        return nil
      end
    end
  end
  local newest = nt
  if na == 1 then
    newest = now
  end
  local reset = newest + window - now
  if reset < 0 then
    reset = 0
  end
  if drop == 0 and na == 0 and not merged then
    return allowed, limit, U.whole(limit - sum), retry, reset
  end
  -- Write, as save does; a string due to be written anew goes the general way.
  local head2 = head + drop * 16
  if head2 >= SWL_DEAD and head2 >= tail - head2 then
    return nil
  end
  local want = math.min(SWL_CACHE, bodyN + na - drop)
  local stop = cacheN
  if merged and stop >= bodyN then
    stop = bodyN - 1
  end
  if stop > drop + want then
    stop = drop + want
  end
  local copy = ""
  local n = 0
  if stop > drop then
    copy = string.sub(v, HAT + drop * 16, HAT + stop * 16 - 1)
    n = stop - drop
  end
  -- Then what else is at hand: the entries read past the copies, the newest, the added.
  local known = cacheN
  if chunk ~= nil then
    known = cacheN + #chunk / 16
  end
  while n < want do
    local e = drop + n + 1
    local k = 1
    if e == bodyN then
      copy = copy .. struct.pack("<dd", nt, nc)
    elseif e == bodyN + 1 then
      copy = copy .. struct.pack("<dd", now, cost)
    elseif e > cacheN and e <= known then
      local upto = math.min(drop + want, known, bodyN - 1)
      copy = copy .. string.sub(chunk, (e - cacheN - 1) * 16 + 1, (upto - cacheN) * 16)
      k = upto - e + 1
    else
      break
    end
    n = n + k
  end
  local needed = newest + window
  local extend = needed > untilT
  if extend then
    untilT = needed + window
  end
  local write, from
  if merged then
    from = tail - 16
    write = struct.pack("<ddddddd", nt, nc, sum, head2, tail, untilT, n)
  elseif na == 1 then
    from = tail
    write = struct.pack("<ddddddd", now, cost, sum, head2, tail + 16, untilT, n)
  else
    from = tail
    write = struct.pack("<ddddd", sum, head2, tail, untilT, n)
  end
  redis.call("SETRANGE", key, from, write .. copy .. pad(n))
  if extend then
    redis.call("PEXPIRE", key, U.ttl(ctx, untilT - ctx.now))
  end
  return allowed, limit, U.whole(limit - sum), retry, reset
end

KERNELS.swl = SWL
