-- concurrency.lua: the twin of src/core/concurrency.ts.
-- Policy p: limit, lease (lease timeout, ms). Stored value: one string packing the cost
-- in flight (a double), then each lease in admission order: expiresAt and cost (doubles),
-- the id's length (16 bits) and the id.

local CC = {}

function CC.load(p, key, now)
  return CC.decode(p, redis.call("GET", key), now)
end

-- decode: the state in a stored value (false or nil: none), as load reads it.
function CC.decode(p, v, now)
  local st = { leases = {}, inFlight = 0, exists = false }
  if not v then
    return st
  end
  st.exists = true
  local inFlight, pos = struct.unpack("<d", v)
  st.inFlight = inFlight
  local leases = st.leases
  while pos <= #v do
    local expiresAt, cost, n, at = struct.unpack("<ddH", v, pos)
    leases[#leases + 1] = { id = string.sub(v, at, at + n - 1), cost = cost, expiresAt = expiresAt }
    pos = at + n
  end
  return st
end

-- save keeps the leases until the last of them expires.
function CC.save(p, key, st, ctx)
  local last = ctx.now
  local parts = { struct.pack("<d", st.inFlight) }
  for _, lease in ipairs(st.leases) do
    if lease.expiresAt > last then
      last = lease.expiresAt
    end
    parts[#parts + 1] = struct.pack("<ddH", lease.expiresAt, lease.cost, #lease.id) .. lease.id
  end
  if last <= ctx.now + EPSILON_MS then
    if st.exists then
      redis.call("DEL", key)
    end
    return
  end
  redis.call("SET", key, table.concat(parts), "PX", U.ttl(ctx, last - ctx.now))
end

-- expire drops the leases that have ended by `at` (with the microsecond of slack every
-- algorithm allows) and sums the cost of the others again.
function CC.expire(st, at)
  local now = at + EPSILON_MS
  local expired = false
  for _, lease in ipairs(st.leases) do
    if lease.expiresAt <= now then
      expired = true
      break
    end
  end
  if not expired then
    return
  end
  local kept = {}
  for _, lease in ipairs(st.leases) do
    if lease.expiresAt > now then
      kept[#kept + 1] = lease
    end
  end
  st.leases = kept
  st.inFlight = 0
  for _, lease in ipairs(kept) do
    st.inFlight = st.inFlight + lease.cost
  end
  st.dirty = true
end

function CC.resetAfter(st, now)
  local last = now
  for _, lease in ipairs(st.leases) do
    if lease.expiresAt > last then
      last = lease.expiresAt
    end
  end
  return last - now
end

-- limit admits `cost` as lease `id`; it returns the decision and, when a lease was
-- taken, the lease.
function CC.limit(p, st, now, cost, id)
  CC.expire(st, now)
  if st.inFlight + cost <= p.limit + COST_EPSILON then
    local lease
    if cost > 0 then
      lease = { id = id, cost = cost, expiresAt = now + p.lease }
      st.leases[#st.leases + 1] = lease
      st.inFlight = st.inFlight + cost
      st.dirty = true
    end
    return { true, p.limit, U.whole(p.limit - st.inFlight), 0, CC.resetAfter(st, now) }, lease
  end
  -- Denied: when enough leases expire, earliest first (ties in admission order).
  local leases = st.leases
  local order = {}
  for k = 1, #leases do
    order[k] = k
  end
  table.sort(order, function(a, b)
    if leases[a].expiresAt ~= leases[b].expiresAt then
      return leases[a].expiresAt < leases[b].expiresAt
    end
    return a < b
  end)
  local excess = st.inFlight + cost - p.limit - COST_EPSILON
  local freed = 0
  local retry = p.lease
  for _, k in ipairs(order) do
    freed = freed + leases[k].cost
    if freed >= excess then
      retry = leases[k].expiresAt - now
      break
    end
  end
  return { false, p.limit, U.whole(p.limit - st.inFlight), retry, CC.resetAfter(st, now) }
end

function CC.peek(p, st, now)
  return (CC.limit(p, st, now, 0, ""))
end

-- release ends lease `id`; an unknown or ended lease is ignored.
function CC.release(st, id)
  local leases = st.leases
  for k = 1, #leases do
    if leases[k].id == id then
      st.inFlight = st.inFlight - leases[k].cost
      table.remove(leases, k)
      if #leases == 0 then
        st.inFlight = 0
      end
      st.dirty = true
      return
    end
  end
end

KERNELS.cc = CC
