-- sliding-window-log.lua: the twin of src/core/sliding-window-log.ts.
-- Policy p: limit, window (ms). Stored as a list: element 0 is a header packing
-- {sum, lastTime, lastCost} (sum of the live costs; the newest entry), then one element
-- per entry {time, cost}, oldest first, each packed as two doubles. Entries are read
-- lazily from the head, so a decision touches only the entries it needs.

local SWL = {}
local SWL_CHUNK = 16
-- SWL_FIRST: entries read with the header; a decision usually needs only the oldest one
-- or two (to trim what left the window).
local SWL_FIRST = 2

function SWL.load(p, key, now)
  local r = redis.call("LRANGE", key, 0, SWL_FIRST)
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
function SWL.entry(st, j)
  local m = st.drop + j
  local cache = st.cache
  while cache[m] == nil and not st.complete do
    SWL.readChunk(st)
  end
  return cache[m]
end

-- trim drops entries that left the window: an entry at t counts while now - t < window
-- (less the microsecond of slack every algorithm allows).
function SWL.trim(p, st, now)
  if not st.live then
    return
  end
  local horizon = now - p.window + EPSILON_MS
  local j = 1
  local e = SWL.entry(st, j)
  while e ~= nil and e[1] <= horizon do
    st.sum = st.sum - e[2]
    j = j + 1
    e = SWL.entry(st, j)
  end
  if e == nil then
    st.live = false
    st.sum = 0
    st.cleared = true
    st.cache = {}
    st.complete = true
    st.drop = 0
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
  local cache = st.cache
  if st.live and st.lastTime >= now then
    st.lastCost = st.lastCost + cost
    if st.tail == nil then
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
  if st.complete then
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
  local header = struct.pack("<ddd", st.sum, st.lastTime, st.lastCost)
  if st.rewrite ~= nil then
    redis.call("DEL", key)
    local args = { header }
    for k = 1, #st.rewrite do
      args[k + 1] = struct.pack("<dd", st.rewrite[k][1], st.rewrite[k][2])
    end
    redis.call("RPUSH", key, unpack(args))
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
    elseif st.tail ~= nil then
      redis.call("RPUSH", key, struct.pack("<dd", st.lastTime, st.lastCost))
    end
    if st.drop > 0 then
      redis.call("LPUSH", key, header)
    else
      redis.call("LSET", key, 0, header)
    end
  end
  redis.call("PEXPIRE", key, U.ttl(ctx, st.lastTime + p.window - ctx.now))
end

KERNELS.swl = SWL
