-- common.lua: what every tollgate script shares. A script is this file, the kernel files
-- it needs (lua/lib/), kernels.lua and one operation file joined into one Lua chunk; the
-- function library is this file, every kernel file, kernels.lua and one function per
-- operation (see scripts.ts). Either way the `local` tables below are visible to all.
--
-- Numbers travel as little-endian doubles both ways (struct.pack/unpack), and the state
-- kept in Redis is packed alike, so every value survives bit for bit. The arithmetic repeats the TypeScript core
-- (src/core/) operation for operation, in the same order, so both sides round alike and
-- reach identical decisions.

local EPSILON_MS = 1e-3
local COST_EPSILON = 1e-9
-- CLIENT_GRACE_MS: with client time, TTLs still run on Redis's clock, which may move
-- faster than the client's (a test's manual clock); state is kept this much longer.
local CLIENT_GRACE_MS = 60000

local U = {}
-- KERNELS: the algorithm kernels joined into this script, by policy tag (tb, fw, ...).
local KERNELS = {}

-- whole: the whole units in x (x may carry rounding error just below an integer).
function U.whole(x)
  if x <= 0 then
    return 0
  end
  return math.floor(x + 1e-9)
end

-- encode packs a decision {allowed, limit, remaining, retryAfterMs, resetAfterMs}: a
-- byte (1 allowed, 0 denied) and four little-endian doubles, 33 bytes.
function U.encode(d)
  return struct.pack("<Bdddd", d[1] and 1 or 0, d[2], d[3], d[4], d[5])
end

-- reply adds one item's reply to `out`: its byte length (16 bits), then the bytes. A
-- batched call returns table.concat(out): one string for all its items, which costs
-- Redis and the client less than one reply element per item.
function U.reply(out, bytes)
  out[#out + 1] = struct.pack("<H", #bytes) .. bytes
end

-- str reads a string packed as its byte length (16 bits) and its bytes at `pos`; it
-- returns the string and the position after it.
function U.str(blob, pos)
  local n, at = struct.unpack("<H", blob, pos)
  return string.sub(blob, at, at + n - 1), at + n
end

-- begin starts a script, given its KEYS and ARGV (globals of a script, arguments of a
-- function): it reads the header at the start of ARGV[1] and applies the replay guard.
-- ARGV[1] is the one argument of every script: the call's arguments packed in one
-- string (numbers as little-endian doubles, strings by U.str), starting with
--   time   "s": decide on Redis server time (TIME); "c": on the time each item carries
--   bit    this call's bit in the guard bitmap KEYS[1], or -1 for an unguarded call
--   ttl    how long the guard bitmap keeps a bit (ms; it lives up to a tenth longer)
-- It returns the context and the position after the header, or nil when the call
-- already ran (a client re-sent it after losing the reply).
function U.begin(KEYS, ARGV)
  local blob = ARGV[1]
  local mode, pos = U.str(blob, 1)
  local bit, ttl
  bit, ttl, pos = struct.unpack("<dd", blob, pos)
  local ctx = { server = mode == "s", grace = 0, now = 0, cnow = 0, snow = 0, blob = blob }
  if ctx.server then
    local t = redis.call("TIME")
    ctx.snow = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
  else
    ctx.grace = CLIENT_GRACE_MS
  end
  if bit >= 0 then
    if redis.call("SETBIT", KEYS[1], bit, 1) == 1 then
      return nil
    end
    -- The bitmap must outlive this bit by `ttl`. It is given a tenth more when less is
    -- left, so most calls only read its TTL (a read is not replicated; a PEXPIRE is).
    if redis.call("PTTL", KEYS[1]) < ttl then
      redis.call("PEXPIRE", KEYS[1], string.format("%d", ttl + math.ceil(ttl / 10)))
    end
  end
  return ctx, pos
end

-- at sets the time of the next item: `cnow` is the caller's clock; `now` is the time
-- decisions use (the server's, or cnow with client time).
function U.at(ctx, cnow)
  ctx.cnow = cnow
  if ctx.server then
    ctx.now = ctx.snow
  else
    ctx.now = cnow
  end
end

-- toClient re-expresses a time of the decision clock in the caller's clock.
function U.toClient(ctx, t)
  if ctx.server then
    return ctx.cnow + (t - ctx.now)
  end
  return t
end

-- fromClient re-expresses a time of the caller's clock in the decision clock.
function U.fromClient(ctx, t)
  if ctx.server then
    return ctx.now + (t - ctx.cnow)
  end
  return t
end

-- ttl: PX for state that matters `ms` more milliseconds (at least 1), as the string
-- Redis reads: formatted here as an integer, which costs less than the conversion
-- redis.call makes of a number.
function U.ttl(ctx, ms)
  local n = math.ceil(ms) + ctx.grace
  if n < 1 then
    n = 1
  end
  return string.format("%d", n)
end

U.REPLAYED = "TOLLGATE_REPLAYED this call already ran; its reply was lost with the connection"
