-- sliding-window-counter.lua: the twin of src/core/sliding-window-counter.ts.
-- Policy p: limit, window (ms). Stored value: three doubles, start, current, previous:
-- the start of the current fixed window, its count, and the count of the one before.
-- The key lives until start + 2 windows: a write in the window it was last written in
-- keeps its TTL (SET KEEPTTL); `loaded` is the start as read.

-- D: the one table SWC.limit answers in, refilled call after call, as TB.D is (its
-- callers read it at once).
local SWC = { D = { false, 0, 0, 0, 0 } }

function SWC.load(p, key, now)
  return SWC.decode(p, redis.call("GET", key), now)
end

-- decode: the state in a stored value (false or nil: none), as load reads it.
function SWC.decode(p, v, now)
  if not v then
    return { start = 0, current = 0, previous = 0, exists = false, loaded = 0, dirty = false, usedAt = 0 }
  end
  local start, current, previous = struct.unpack("<ddd", v)
  return {
    start = start,
    current = current,
    previous = previous,
    exists = true,
    loaded = start,
    dirty = false,
    usedAt = 0,
  }
end

-- save keeps the counts until both windows have slid out (start + 2 windows).
function SWC.save(p, key, st, ctx)
  local finish = st.start + 2 * p.window
  if (st.current == 0 and st.previous == 0) or finish <= ctx.now then
    if st.exists then
      redis.call("DEL", key)
    end
    return
  end
  local v = struct.pack("<ddd", st.start, st.current, st.previous)
  if st.exists and st.start == st.loaded then
    redis.call("SET", key, v, "KEEPTTL")
  else
    redis.call("SET", key, v, "PX", U.ttl(ctx, finish - ctx.now))
  end
end

-- onGrid: a recorded window start as a start of this policy's windows (the twin of
-- onGrid in src/core/sliding-window-counter.ts): itself when it is one, else the start of
-- the window holding it (a start recorded under another window length, before setPolicy).
function SWC.onGrid(t, w)
  if math.floor(t / w + 0.5) * w == t then
    return t
  end
  return math.floor(t / w) * w
end

function SWC.limit(p, st, now, cost)
  local w = p.window
  local start = math.floor(now / w) * w
  local at = SWC.onGrid(st.start, w)
  local current = 0
  local previous = 0
  if at >= start then
    current = st.current
    previous = st.previous
  elseif at == start - w then
    previous = st.current
  end
  -- The microsecond of slack every algorithm allows: waiting retryAfterMs suffices.
  local elapsed = now - start + EPSILON_MS
  local estimate = previous * math.max(0, 1 - elapsed / w) + current
  if estimate + cost <= p.limit + COST_EPSILON then
    if cost > 0 then
      st.start = math.max(at, start)
      st.current = current + cost
      st.previous = previous
      st.dirty = true
    end
    local after = current + cost
    local reset = 0
    if after > 0 then
      reset = start + 2 * w - now
    elseif previous > 0 then
      reset = start + w - now
    end
    local d = SWC.D
    d[1], d[2], d[3], d[4], d[5] = true, p.limit, U.whole(p.limit - estimate - cost), 0, reset
    return d
  end
  local retry
  if current + cost <= p.limit + COST_EPSILON then
    local e = w * (1 - (p.limit - current - cost) / previous)
    retry = start + e - now
  else
    local e = w * (1 - (p.limit - cost) / current)
    retry = start + w + e - now
  end
  local reset = 0
  if current > 0 then
    reset = start + 2 * w - now
  elseif previous > 0 then
    reset = start + w - now
  end
  local d = SWC.D
  d[1], d[2], d[3], d[4], d[5] = false, p.limit, U.whole(p.limit - estimate), math.max(retry, 0), reset
  return d
end

function SWC.peek(p, st, now)
  return SWC.limit(p, st, now, 0)
end

function SWC.adjust(p, st, now, delta)
  local w = p.window
  local start = math.floor(now / w) * w
  st.start = SWC.onGrid(st.start, w)
  if st.start < start then
    st.previous = st.start == start - w and st.current or 0
    st.current = 0
    st.start = start
  end
  st.current = math.min(math.max(st.current + delta, 0), 2 * p.limit)
  st.dirty = true
  local d = SWC.limit(p, st, now, 0)
  d[1] = true
  d[4] = 0
  return d
end

KERNELS.swc = SWC
