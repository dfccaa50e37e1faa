#!lua
-- Fixed window counter; a window opens at the first request after the last one closed.
-- KEYS[i]: hash {w = window start (us), n = units admitted in that window}
-- ARGV[1]: limit units per period (us), and capacity: the limit (a window has no burst);
--          three doubles in 24 bytes (struct '<ddd': no text to parse per call)
-- ARGV[2]: cost of each request (default 1)
-- ARGV[3..]: now in us, one per key (default: the server's TIME, read once)
-- Several keys (allow_many) are decided in one call, in order; a key listed twice
-- is decided twice, the second time on the state the first left.
-- Returns: "<allowed 0/1> <remaining> <retry_after us> <reset_after us>" for each
--          key, all in one string (cheaper for the client to parse than an array),
--          or an error: BADARGS (arguments out of range) before anything is written;
--          BADSTATE or WRONGTYPE (a key holds something else) after the other keys
--          were decided, naming the first such key, which is left as it was.
local limit, period, cap
if #(ARGV[1] or '') == 24 then limit, period, cap = struct.unpack('<ddd', ARGV[1]) end
local cost = 1
if ARGV[2] then cost = tonumber(ARGV[2]) end
local n, clocked = #KEYS, #ARGV > 2
-- Everything is checked before the first write: a bad call leaves nothing behind.
-- (x ~= math.floor(x) is also true for NaN.)
local bad = not (limit and cost) or limit < 1 or limit > 2147483647
    or limit ~= math.floor(limit) or cap < 1 or cap > 2147483647 or cap ~= math.floor(cap)
    or period < 1000 or period > 31536000000000 or period ~= math.floor(period)
    or period / limit * cap > 31536000000000 or cost < 1 or cost > cap
    or cost ~= math.floor(cost) or (clocked and #ARGV ~= n + 2)
local nows = clocked and {}
if clocked and not bad then
  for i = 1, n do
    local now = tonumber(ARGV[i + 2])
    if not now or now ~= now or now < 0 or now > 1e17 then bad = true break end
    nows[i] = now
  end
end
if bad then
  local got = limit and string.format('limit=%.17g period=%.17g capacity=%.17g', limit, period, cap)
    or ('ARGV[1] of ' .. #(ARGV[1] or '') .. ' bytes')
  return redis.error_reply('BADARGS ratelimit_fixed_window: want ARGV struct.pack("<ddd", limit 1..2147483647,'
    .. ' period us 1000..31536000000000, capacity) [cost 1..capacity] [now us, one per key],'
    .. ' refilled within a year; got: ' .. got .. ', cost=' .. tostring(ARGV[2]) .. ', '
    .. (#ARGV - 2) .. ' times for ' .. n .. ' keys')
end
local now
if not clocked then
  local t = redis.call('TIME')
  now = t[1] * 1000000 + t[2]
end

local out, err = {}, nil
for i = 1, n do
  local key = KEYS[i]
  if clocked then now = nows[i] end
  -- One read of the whole hash: its fields are checked too, so that a hash that
  -- is not exactly {w, n} is refused, never reset.
  local h = redis.pcall('HGETALL', key)
  local sw, sn
  if not h.err then
    for j = 1, #h, 2 do
      if h[j] == 'w' then sw = h[j + 1] elseif h[j] == 'n' then sn = h[j + 1] end
    end
  end
  local start, used = sw and tonumber(sw), sn and tonumber(sn)
  if h.err then
    err = err or 'WRONGTYPE ratelimit_fixed_window: ' .. key .. ' is of another type'
  -- Ours only if exactly {w, n}, both numbers >= 0 (x == x is false for NaN; inf
  -- fails the bounds).
  elseif #h > 0 and not (#h == 4 and start and used and start == start and start >= 0
      and start < 1e17 and used >= 0 and used < 1e16) then
    err = err or 'BADSTATE ratelimit_fixed_window: ' .. key .. ' holds w=' .. tostring(sw)
      .. ' n=' .. tostring(sn) .. ', not a fixed window {w, n} of numbers >= 0'
  else
    used = used or 0
    local opens = start == nil or now >= start + period or now < start
    if opens then
      start = now
      used = 0
    end
    local reset = start + period - now
    if used + cost > limit then
      -- The next window admits the full limit, and cost <= limit.
      out[#out + 1] = string.format('0 %d %d %d', math.max(0, limit - used), reset, reset)
    else
      used = used + cost
      if opens then
        redis.call('HSET', key, 'w', string.format('%d', start), 'n', used)
        -- The state is worthless once the window closes: expire it then (the
        -- window's later requests only count, and keep this expiry).
        redis.call('PEXPIRE', key, math.max(1, math.ceil(reset / 1000)))
      else
        redis.call('HINCRBY', key, 'n', cost)
      end
      out[#out + 1] = string.format('1 %d 0 %d', limit - used, reset)
    end
  end
end
if err then return redis.error_reply(err) end
return n == 1 and out[1] or table.concat(out, ' ')
