-- sliding-window-log.lua: the twin of src/core/sliding-window-log.ts.
-- Policy p: limit, window (ms). A log is kept in one of two layouts, chosen by the limit
-- (which bounds the entries: at most `limit` for whole costs):
--   packed (limit <= SWL_PACKED_MAX): one string, the sum of the live costs as a double,
--     then one entry {time, cost} per 16 bytes (two doubles), oldest first. A decision is
--     one GET and one SET; entries that left the window are cut on write.
--   list (larger limits): element 0 is a header packing {sum, lastTime, lastCost} (sum
--     of the live costs; the newest entry), then one element per entry {time, cost},
--     oldest first, each packed as two doubles. Entries are read lazily from the head,
--     so a decision touches only the entries it needs, and a write sends only what
--     changed, not the whole log.
-- A key found in the other layout (the limit changed) is read whole and rewritten in the
-- policy's layout.

local SWL = {}
local SWL_CHUNK = 16
-- SWL_FIRST: entries read with the header; a decision usually needs only the oldest one
-- or two (to trim what left the window).
local SWL_FIRST = 2
-- SWL_PACKED_MAX: the largest limit kept packed. A packed decision copies the whole log
-- (read, cut, write), about 60 ns of Redis time per entry; the list's five small commands
-- cost the same as a packed log of about 60 entries, whatever its length.
local SWL_PACKED_MAX = 50

local function isPacked(p)
  return p.limit <= SWL_PACKED_MAX
end

-- packs: whether the policy's logs are packed strings (which decode reads).
SWL.packs = isPacked

-- decode: the state of a packed value (false for none; read with MGET, where a list key
-- also reads as none, so a missing value is looked up again by load).
function SWL.decode(p, value, now, key)
  if not value then
    return SWL.load(p, key, now)
  end
  return SWL.fromString(key, value)
end

-- packedState: a packed state, every field there from the start (cheaper than adding
-- them one by one).
local function packedState(key, exists, sum, live, v, n, at, lastTime, lastCost)
  return {
    key = key,
    packed = true,
    exists = exists,
    sum = sum,
    live = live,
    drop = 0,
    v = v,
    n = n,
    at = at,
    lastTime = lastTime,
    lastCost = lastCost,
    tail = false,
    dirty = false,
    cleared = false,
    usedAt = 0,
  }
end

function SWL.fromString(key, value)
  local n = (#value - 8) / 16
  if n < 1 then
    return packedState(key, true, 0, false, "", 0, 1, 0, 0)
  end
  local lastTime, lastCost = struct.unpack("<dd", value, 9 + (n - 1) * 16)
  return packedState(key, true, struct.unpack("<d", value), true, value, n, 9, lastTime, lastCost)
end

-- fromList: a packed state of the list at `key`, read whole.
local function fromList(key)
  local r = redis.call("LRANGE", key, 0, -1)
  local sum = struct.unpack("<ddd", r[1])
  local parts = { struct.pack("<d", sum) }
  for k = 2, #r do
    parts[k] = r[k]
  end
  return SWL.fromString(key, table.concat(parts))
end

function SWL.load(p, key, now)
  if isPacked(p) then
    local v = redis.pcall("GET", key)
    if type(v) == "table" then
      local st = fromList(key)
      st.dirty = true
      return st
    end
    if not v then
      return packedState(key, false, 0, false, "", 0, 1, 0, 0)
    end
    return SWL.fromString(key, v)
  end
  local r = redis.pcall("LRANGE", key, 0, SWL_FIRST)
  if r.err ~= nil then
    -- A packed log (the limit grew): take every entry and write the list anew.
    local ps = SWL.fromString(key, redis.call("GET", key))
    local st = { key = key, exists = true, sum = ps.sum, live = ps.live, drop = 0, cache = {} }
    st.complete = true
    st.convert = true
    st.dirty = true
    for m = 1, ps.n do
      local t, c = struct.unpack("<dd", ps.v, ps.at + (m - 1) * 16)
      st.cache[m] = { t, c }
    end
    st.lastTime, st.lastCost = ps.lastTime, ps.lastCost
    return st
  end
  local st = { key = key, exists = #r > 0, sum = 0, live = false, drop = 0, cache = {} }
  if #r == 0 then
    st.complete = true
    return st
  end
  st.sum, st.lastTime, st.lastCost = struct.unpack("<ddd", r[1])
  st.live = true
  for k = 2, #r do
    local t, c = struct.unpack("<dd", r[k])
    st.cache[k - 1] = { t, c }
  end
  st.complete = #r <= SWL_FIRST
  return st
end

-- readChunk appends the next SWL_CHUNK entries from Redis to the cache; a short read
-- means the cache now holds every entry.
function SWL.readChunk(st)
  local cache = st.cache
  local first = #cache + 1
  local r = redis.call("LRANGE", st.key, first, first + SWL_CHUNK - 1)
  for k = 1, #r do
    local t, c = struct.unpack("<dd", r[k])
    cache[first + k - 1] = { t, c }
  end
  st.complete = #r < SWL_CHUNK
end

-- entry j (1 = oldest live entry), read from Redis when not cached yet; nil past the end.
-- A packed state reads it from its string, or from the newest entry as recorded (`tail`
-- "merge": the string's last entry grew; "push": one more entry after the string's).
local function packedEntry(st, m)
  local n = st.n
  if m < n or (m == n and st.tail ~= "merge") then
    local t, c = struct.unpack("<dd", st.v, st.at + (m - 1) * 16)
    return t, c
  end
  if (m == n and st.tail == "merge") or (m == n + 1 and st.tail == "push") then
    return st.lastTime, st.lastCost
  end
  return nil
end

function SWL.entry(st, j)
  local m = st.drop + j
  if st.packed then
    local t, c = packedEntry(st, m)
    if t == nil then
      return nil
    end
    return { t, c }
  end
  local cache = st.cache
  while cache[m] == nil and not st.complete do
    SWL.readChunk(st)
  end
  return cache[m]
end

-- body: a packed state's live entries as stored, the newest as recorded.
-- `head` goes before them, in the same copy.
local function body(st, head)
  local from = st.at + st.drop * 16
  if st.tail == "merge" then
    return head
      .. string.sub(st.v, from, st.at + (st.n - 1) * 16 - 1)
      .. struct.pack("<dd", st.lastTime, st.lastCost)
  elseif st.tail == "push" then
    return head .. string.sub(st.v, from, st.at + st.n * 16 - 1) .. struct.pack("<dd", st.lastTime, st.lastCost)
  end
  return head .. string.sub(st.v, from, st.at + st.n * 16 - 1)
end

-- trim drops entries that left the window: an entry at t counts while now - t < window
-- (less the microsecond of slack every algorithm allows).
function SWL.trim(p, st, now)
  if not st.live then
    return
  end
  local horizon = now - p.window + EPSILON_MS
  local j = 1
  local e
  if st.packed then
    -- The same walk, without a table per entry.
    local m = st.drop + 1
    local t, c = packedEntry(st, m)
    while t ~= nil and t <= horizon do
      st.sum = st.sum - c
      m = m + 1
      t, c = packedEntry(st, m)
    end
    j = m - st.drop
    e = t
  else
    e = SWL.entry(st, j)
    while e ~= nil and e[1] <= horizon do
      st.sum = st.sum - e[2]
      j = j + 1
      e = SWL.entry(st, j)
    end
  end
  if e == nil then
    st.live = false
    st.sum = 0
    st.cleared = true
    st.cache = {}
    st.complete = true
    st.drop = 0
    st.tail = false
    st.v, st.n, st.at = "", 0, 1
    st.dirty = true
  elseif j > 1 then
    st.drop = st.drop + j - 1
    st.dirty = true
  end
end

function SWL.resetAfter(p, st, now)
  if not st.live then
    return 0
  end
  return math.max(0, st.lastTime + p.window - now)
end

-- record adds `cost` at now: to the newest entry when it is not older than now. `tail`
-- tells save what became of the newest entry: "merge" (the one in Redis grew), "push" or
-- "fresh" (a new one, not in Redis yet; a later merge into it keeps that). When every
-- entry is in the cache, the cache follows, so a later check of the same call sees it.
function SWL.record(st, now, cost)
  if st.packed then
    if st.live and st.lastTime >= now then
      st.lastCost = st.lastCost + cost
      if not st.tail then
        st.tail = "merge"
      end
    else
      if st.tail then
        -- A second new entry in one call (items at several times): fold the first into
        -- the string.
        local v = body(st, "")
        st.v, st.n, st.at, st.drop = v, #v / 16, 1, 0
      end
      st.tail = "push"
      st.lastTime = now
      st.lastCost = cost
      st.live = true
    end
    st.dirty = true
    return
  end
  local cache = st.cache
  if st.live and st.lastTime >= now then
    st.lastCost = st.lastCost + cost
    if not st.tail then
      st.tail = "merge"
    end
    if st.complete then
      cache[#cache] = { st.lastTime, st.lastCost }
    end
  else
    if st.live then
      st.tail = "push"
    else
      st.tail = "fresh"
    end
    st.lastTime = now
    st.lastCost = cost
    st.live = true
    if st.complete then
      cache[#cache + 1] = { now, cost }
    end
  end
  st.dirty = true
end

-- again readies a state for another decision in the same call (limit-all with one key
-- twice): every entry goes into the cache, the newest as recorded, not as Redis has it.
function SWL.again(st)
  if st.packed or st.complete then
    return
  end
  while not st.complete do
    SWL.readChunk(st)
  end
  local cache = st.cache
  if st.tail == "push" then
    cache[#cache + 1] = { st.lastTime, st.lastCost }
  elseif st.tail == "merge" then
    cache[#cache] = { st.lastTime, st.lastCost }
  end
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
  local j = 1
  local e = SWL.entry(st, j)
  while e ~= nil do
    freed = freed + e[2]
    if freed >= excess then
      retry = e[1] + p.window - now
      break
    end
    j = j + 1
    e = SWL.entry(st, j)
  end
  return { false, p.limit, U.whole(p.limit - st.sum), retry, SWL.resetAfter(p, st, now) }
end

function SWL.peek(p, st, now)
  return SWL.limit(p, st, now, 0)
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
    -- Take cost back from the newest entries: read them all and rewrite the list.
    local entries = {}
    if st.live then
      local j = 1
      local e = SWL.entry(st, j)
      while e ~= nil do
        entries[j] = { e[1], e[2] }
        j = j + 1
        e = SWL.entry(st, j)
      end
    end
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
    if #entries == 0 then
      st.live = false
      st.sum = 0
    else
      st.lastTime = entries[#entries][1]
      st.lastCost = entries[#entries][2]
    end
    st.rewrite = entries
    st.dirty = true
  end
  return { true, p.limit, U.whole(p.limit - st.sum), 0, SWL.resetAfter(p, st, now) }
end

-- save writes back what changed: entries dropped from the head, the newest entry, the
-- header; the list lives until its newest entry leaves the window.
function SWL.save(p, key, st, ctx)
  if not st.live then
    if st.exists then
      redis.call("DEL", key)
    end
    return
  end
  local ttl = U.ttl(ctx, st.lastTime + p.window - ctx.now)
  if st.packed then
    local v
    if st.rewrite ~= nil then
      local parts = { struct.pack("<d", st.sum) }
      for k = 1, #st.rewrite do
        parts[k + 1] = struct.pack("<dd", st.rewrite[k][1], st.rewrite[k][2])
      end
      v = table.concat(parts)
    else
      v = body(st, struct.pack("<d", st.sum))
    end
    redis.call("SET", key, v, "PX", ttl)
    return
  end
  if st.convert and st.rewrite == nil then
    local entries = {}
    for m = st.drop + 1, #st.cache do
      entries[#entries + 1] = st.cache[m]
    end
    st.rewrite = entries
  end
  local header = struct.pack("<ddd", st.sum, st.lastTime, st.lastCost)
  if st.rewrite ~= nil then
    redis.call("DEL", key)
    -- RPUSH in parts: Lua unpacks a few thousand arguments at most.
    local args = { header }
    for k = 1, #st.rewrite do
      args[#args + 1] = struct.pack("<dd", st.rewrite[k][1], st.rewrite[k][2])
      if #args == 1000 then
        redis.call("RPUSH", key, unpack(args))
        args = {}
      end
    end
    if #args > 0 then
      redis.call("RPUSH", key, unpack(args))
    end
  elseif st.cleared or not st.exists then
    -- Nothing old survives: the list is the header and the one entry recorded now.
    if st.exists then
      redis.call("DEL", key)
    end
    redis.call("RPUSH", key, header, struct.pack("<dd", st.lastTime, st.lastCost))
  else
    if st.drop > 0 then
      redis.call("LTRIM", key, st.drop + 1, -1)
    end
    if st.tail == "merge" then
      redis.call("LSET", key, -1, struct.pack("<dd", st.lastTime, st.lastCost))
    elseif st.tail then
      redis.call("RPUSH", key, struct.pack("<dd", st.lastTime, st.lastCost))
    end
    if st.drop > 0 then
      redis.call("LPUSH", key, header)
    else
      redis.call("LSET", key, 0, header)
    end
  end
  redis.call("PEXPIRE", key, ttl)
end

KERNELS.swl = SWL
