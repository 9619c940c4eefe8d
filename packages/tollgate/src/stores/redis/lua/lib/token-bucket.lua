-- token-bucket.lua: GCRA, the twin of src/core/token-bucket.ts.
-- Policy p: burst, interval (ms per token), window (= burst * interval), and hist, the
-- namespace's policy history {windowMs, changedAt, generation} oldest first; the last is
-- current. Stored value: five doubles, tat (when the bucket is full again, epoch ms) and
-- the windowMs, changedAt and generation of the policy it was written under, so that a
-- policy change converts it lazily, when it is next read; then ttlEnd, the time (decision
-- clock) until which the key's TTL holds. A write that the TTL still covers keeps it
-- (SET KEEPTTL); one that needs more sets it to twice the time until full, so a busy
-- key's TTL moves about once per its debt, and an idle key lives at most twice as long as
-- its state matters.

-- D: the one table TB.limit answers in, refilled call after call (making a table per
-- decision costs Redis about a twentieth of the decision): limit's callers (the limit
-- and limit-all operations) read it at once, before they decide anything else.
local TB = { D = { false, 0, 0, 0, 0 } }

-- convert keeps a bucket's fill fraction across the policy changes made since it was
-- written, each as of the time of that change (what setPolicy does in memory).
function TB.convert(p, tat, w, since, gen, now)
  local hist = p.hist
  local n = #hist
  if gen == hist[n][3] and w == hist[n][1] and since == hist[n][2] then
    return tat
  end
  local from = 0
  for k = n - 1, 1, -1 do
    if hist[k][3] == gen and hist[k][1] == w and hist[k][2] == since then
      from = k
      break
    end
  end
  if from == 0 then
    -- Written under a policy this namespace does not remember. In a namespace made
    -- `shared` (negative generations: the plans of a tier, which share one bucket by
    -- design), the time at which the bucket is full again carries over as it is, as in
    -- the memory store. Otherwise (a limiter in another process, or a change older than
    -- the history kept) keep its fill fraction as of now.
    if hist[n][3] >= 0 and w ~= p.window and tat > now then
      tat = now + (tat - now) * (p.window / w)
    end
    return tat
  end
  for k = from + 1, n do
    local before, after, at = hist[k - 1][1], hist[k][1], hist[k][2]
    if before ~= after and tat > at then
      tat = at + (tat - at) * (after / before)
    end
  end
  return tat
end

-- slack: how early a request may come and still count as on time (slack in
-- core/token-bucket.ts): the microsecond, widened to the rounding that additions to
-- epoch-ms times pile up over a burst, at most half an interval.
local ROUNDING = 2.220446049250313e-16
function TB.slack(p, now)
  local drift = now * ROUNDING * p.burst
  if drift <= EPSILON_MS then
    return EPSILON_MS
  end
  local half = p.interval * 0.5
  if drift <= half then
    return drift
  end
  return half > EPSILON_MS and half or EPSILON_MS
end

-- tokens: the whole tokens in the bucket when it owes `debt` ms of refill, forgiving the
-- same slack as admission does (never above the burst).
function TB.tokens(p, debt, slack)
  local n = U.whole(math.min(p.window, p.window - debt + slack) / p.interval)
  if n <= p.burst then
    return n
  end
  return math.floor(p.burst)
end

function TB.load(p, key, now)
  return TB.decode(p, redis.call("GET", key), now)
end

-- decode: the state in a stored value (false or nil: none), as load reads it.
function TB.decode(p, v, now)
  if not v then
    return { tat = 0, exists = false, ttlEnd = 0, dirty = false, usedAt = 0 }
  end
  local tat, w, since, gen = struct.unpack("<dddd", v)
  local ttlEnd = 0
  if #v >= 40 then
    ttlEnd = struct.unpack("<d", v, 33)
  end
  return {
    tat = TB.convert(p, tat, w, since, gen, now),
    exists = true,
    ttlEnd = ttlEnd,
    dirty = false,
    usedAt = 0,
  }
end

-- save keeps the state until the bucket is full again; a full bucket needs no state.
function TB.save(p, key, st, ctx)
  if st.tat > ctx.now then
    local cur = p.hist[#p.hist]
    if st.exists and st.tat <= st.ttlEnd then
      redis.call("SET", key, struct.pack("<ddddd", st.tat, cur[1], cur[2], cur[3], st.ttlEnd), "KEEPTTL")
      return
    end
    local ttlEnd = st.tat + (st.tat - ctx.now)
    local v = struct.pack("<ddddd", st.tat, cur[1], cur[2], cur[3], ttlEnd)
    redis.call("SET", key, v, "PX", U.ttl(ctx, ttlEnd - ctx.now))
  elseif st.exists then
    redis.call("DEL", key)
  end
end

function TB.limit(p, st, now, cost)
  local stored = st.tat
  local tat = stored > now and stored or now
  local nxt = tat + cost * p.interval
  local slack = TB.slack(p, now)
  if nxt - now <= p.window + slack then
    if nxt ~= stored then
      st.tat = nxt
      st.dirty = true
    end
    local d = TB.D
    d[1], d[2], d[3], d[4], d[5] = true, p.burst, TB.tokens(p, nxt - now, slack), 0, nxt - now
    return d
  end
  local d = TB.D
  d[1], d[2], d[3] = false, p.burst, TB.tokens(p, tat - now, slack)
  d[4], d[5] = nxt - p.window - now, tat - now
  return d
end

function TB.peek(p, st, now)
  local tat = st.tat > now and st.tat or now
  local debt = tat - now
  local slack = TB.slack(p, now)
  local allowed = debt <= p.window + slack
  return { allowed, p.burst, TB.tokens(p, debt, slack), allowed and 0 or debt - p.window, debt }
end

-- reserve returns ok, executeAt, delayMs and the decision (tokenBucketReserve).
function TB.reserve(p, st, now, cost, maxWait)
  local stored = st.tat
  local tat = stored > now and stored or now
  local nxt = tat + cost * p.interval
  local wait = nxt - p.window - now
  local slack = TB.slack(p, now)
  local delay = wait <= slack and 0 or wait
  if delay <= maxWait then
    if nxt ~= stored then
      st.tat = nxt
      st.dirty = true
    end
    return true, now + delay, delay, { true, p.burst, TB.tokens(p, nxt - now, slack), 0, nxt - now }
  end
  local remaining = TB.tokens(p, tat - now, slack)
  return false, now + delay, delay, { false, p.burst, remaining, delay, tat - now }
end

-- cancel gives back a reservation made for executeAt (tokenBucketCancel).
function TB.cancel(p, st, now, cost, executeAt)
  if executeAt <= now then
    return
  end
  local full = cost * p.interval
  local lastExecuteAt = st.tat - p.window
  local overtaken = lastExecuteAt > executeAt and lastExecuteAt - executeAt or 0
  local refund = full - overtaken
  if refund > 0 then
    st.tat = st.tat - math.min(refund, full)
    st.dirty = true
  end
end

function TB.adjust(p, st, now, delta)
  local tat = st.tat > now and st.tat or now
  local nxt = math.min(math.max(tat + delta * p.interval, now), now + 2 * p.window)
  st.tat = nxt
  st.dirty = true
  local debt = nxt - now
  return { true, p.burst, TB.tokens(p, debt, TB.slack(p, now)), 0, debt }
end

KERNELS.tb = TB
