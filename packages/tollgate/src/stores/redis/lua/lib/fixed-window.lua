-- fixed-window.lua: the twin of src/core/fixed-window.ts.
-- Policy p: limit, window (ms), and for calendar windows `bounds`, ascending window
-- boundaries around the caller's time (the TypeScript side computes them in the time
-- zone; Lua has none). Stored value: two doubles, start and count: the count of the
-- window that starts at start. A write in the window the key was last written in keeps
-- its TTL (SET KEEPTTL); `loaded` is the start as read.

-- D: the one table FW.limit answers in, refilled call after call, as TB.D is (its
-- callers read it at once).
local FW = { D = { false, 0, 0, 0, 0 } }

-- bounds: start and end of the window holding now.
function FW.bounds(p, now)
  local b = p.bounds
  if b == nil then
    local start = math.floor(now / p.window) * p.window
    return start, start + p.window
  end
  for k = 1, #b - 1 do
    if now >= b[k] and now < b[k + 1] then
      return b[k], b[k + 1]
    end
  end
  error("tollgate: the calendar windows sent do not cover the time " .. string.format("%.17g", now))
end

function FW.load(p, key, now)
  return FW.decode(p, redis.call("GET", key), now)
end

-- decode: the state in a stored value (false or nil: none), as load reads it.
function FW.decode(p, v, now)
  if not v then
    return { start = 0, count = 0, exists = false, loaded = 0, dirty = false, usedAt = 0 }
  end
  local start, count = struct.unpack("<dd", v)
  return { start = start, count = count, exists = true, loaded = start, dirty = false, usedAt = 0 }
end

-- save keeps the count until its window ends; an empty or past window needs no state.
function FW.save(p, key, st, ctx)
  local start, finish = FW.bounds(p, ctx.now)
  if st.count == 0 or start > st.start then
    if st.exists then
      redis.call("DEL", key)
    end
    return
  end
  if st.start ~= start then
    finish = st.start + p.window
  end
  local v = struct.pack("<dd", st.start, st.count)
  if st.exists and st.start == st.loaded then
    redis.call("SET", key, v, "KEEPTTL")
  else
    redis.call("SET", key, v, "PX", U.ttl(ctx, finish - ctx.now))
  end
end

function FW.limit(p, st, now, cost)
  local start, finish = FW.bounds(p, now)
  local count = st.start >= start and st.count or 0
  local left = finish - now
  if count + cost <= p.limit + COST_EPSILON then
    local nxt = count + cost
    if cost > 0 then
      st.start = math.max(st.start, start)
      st.count = nxt
      st.dirty = true
    end
    local d = FW.D
    d[1], d[2], d[3], d[4], d[5] = true, p.limit, U.whole(p.limit - nxt), 0, nxt > 0 and left or 0
    return d
  end
  local d = FW.D
  d[1], d[2], d[3], d[4], d[5] = false, p.limit, U.whole(p.limit - count), left, count > 0 and left or 0
  return d
end

function FW.peek(p, st, now)
  return FW.limit(p, st, now, 0)
end

function FW.adjust(p, st, now, delta)
  local start, finish = FW.bounds(p, now)
  local count = st.start >= start and st.count or 0
  local nxt = math.min(math.max(count + delta, 0), 2 * p.limit)
  st.start = math.max(st.start, start)
  st.count = nxt
  st.dirty = true
  return { true, p.limit, U.whole(p.limit - nxt), 0, nxt > 0 and finish - now or 0 }
end

KERNELS.fw = FW
