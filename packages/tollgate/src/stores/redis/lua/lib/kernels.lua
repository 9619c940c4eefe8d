-- kernels.lua: policies as the scripts receive them, leases and request ids in replies.
--
-- A policy arrives packed (see U.begin), its kind tag (U.str) first, then doubles:
--   tb  burst intervalMs windowMs n  w1 t1 g1 ... wn tn gn  (policy history, oldest first)
--   fw  limit windowMs n  b1 ... bn                          (calendar window bounds, or n = 0)
--   swc limit windowMs
--   swl limit windowMs
--   cc  limit leaseTimeoutMs
-- Every kernel has load(p, key, now) -> state, save(p, key, state, ctx), limit(p, state,
-- now, cost, leaseId) -> decision (and a lease for cc), peek and adjust. limit, peek and
-- adjust change only the Lua state; nothing reaches Redis until save. Kernels whose state
-- is one string also have decode(p, value, now, key) -> state, load without the GET (for
-- values read together with MGET).

-- readPolicy reads the policy at `pos` of `blob`; it returns it and the position after it.
local function readPolicy(blob, pos)
  local kind
  kind, pos = U.str(blob, pos)
  local p = { kind = kind, kernel = KERNELS[kind] }
  if p.kernel == nil then
    error("tollgate: this script has no kernel for policy kind " .. tostring(kind))
  end
  if kind == "tb" then
    local n
    p.burst, p.interval, p.window, n, pos = struct.unpack("<dddd", blob, pos)
    local hist = {}
    for k = 1, n do
      local w, t, g
      w, t, g, pos = struct.unpack("<ddd", blob, pos)
      hist[k] = { w, t, g }
    end
    p.hist = hist
    p.windowMs = p.window
  elseif kind == "fw" then
    local n
    p.limit, p.window, n, pos = struct.unpack("<ddd", blob, pos)
    if n > 0 then
      local b = {}
      for k = 1, n do
        b[k], pos = struct.unpack("<d", blob, pos)
      end
      p.bounds = b
    end
    p.windowMs = p.window
  elseif kind == "cc" then
    p.limit, p.lease, pos = struct.unpack("<dd", blob, pos)
    p.windowMs = p.lease
  else
    p.limit, p.window, pos = struct.unpack("<dd", blob, pos)
    p.windowMs = p.window
  end
  return p, pos
end

-- leaseBytes: a lease as replies carry it (cost and expiresAt in the caller's clock as
-- doubles, the id's length, the id), or "" for none.
local function leaseBytes(ctx, lease)
  if lease == nil then
    return ""
  end
  return struct.pack("<ddH", lease.cost, U.toClient(ctx, lease.expiresAt), #lease.id) .. lease.id
end

-- Request ids: an admitted request's decision is kept under its id for the policy's
-- window: expiresAt (double), the decision (33 bytes), then its lease if it took one
-- (cost and expiresAt in the decision clock, id length, id).
local function recall(rkey, ctx)
  local v = redis.call("GET", rkey)
  if not v then
    return nil
  end
  local expiresAt = struct.unpack("<d", v)
  if expiresAt <= ctx.now then
    return nil
  end
  local d = string.sub(v, 9, 41)
  if #v <= 41 then
    return d
  end
  local cost, leaseAt, n = struct.unpack("<ddH", v, 42)
  local id = string.sub(v, 60, 59 + n)
  return d .. leaseBytes(ctx, { id = id, cost = cost, expiresAt = leaseAt })
end

local function remember(rkey, ctx, p, d, lease)
  local v = struct.pack("<d", ctx.now + p.windowMs) .. U.encode(d)
  if lease ~= nil then
    v = v .. struct.pack("<ddH", lease.cost, lease.expiresAt, #lease.id) .. lease.id
  end
  redis.call("SET", rkey, v, "PX", U.ttl(ctx, p.windowMs))
end
