#!lua
-- Sliding window counter: this window's count plus the previous one's, weighted by
-- how much of the previous window still overlaps the sliding period.
-- KEYS[i]: hash {w = window index (now // period), c = units this window, p = previous}
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
  return redis.error_reply('BADARGS ratelimit_sliding_window: want ARGV struct.pack("<ddd", limit 1..2147483647,'
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
  local idx = math.floor(now / period)
  -- One read of the whole hash, fields checked too (exactly {w, c, p}).
  local h = redis.pcall('HGETALL', key)
  local sw, sc, sp
  if not h.err then
    for j = 1, #h, 2 do
      local f = h[j]
      if f == 'w' then sw = h[j + 1] elseif f == 'c' then sc = h[j + 1] elseif f == 'p' then sp = h[j + 1] end
    end
  end
  local w, cur, prev = sw and tonumber(sw), sc and tonumber(sc), sp and tonumber(sp)
  if h.err then
    err = err or 'WRONGTYPE ratelimit_sliding_window: ' .. key .. ' is of another type'
  -- Ours only if exactly {w, c, p}, numbers >= 0 (NaN ~= NaN; inf fails the bounds).
  elseif #h > 0 and not (#h == 6 and w and cur and prev and w == w and w >= 0 and w < 1e17
      and cur >= 0 and cur < 1e16 and prev >= 0 and prev < 1e16) then
    err = err or 'BADSTATE ratelimit_sliding_window: ' .. key .. ' holds w='
      .. tostring(sw) .. ' c=' .. tostring(sc) .. ' p=' .. tostring(sp)
      .. ', not a sliding window {w, c, p} of numbers >= 0'
  else
    cur, prev = cur or 0, prev or 0
    if w == nil or (idx ~= w and idx ~= w + 1) then
      cur, prev = 0, 0
    elseif idx == w + 1 then
      cur, prev = 0, cur
    end
    local elapsed = now - idx * period
    local weight = (period - elapsed) / period
    local used = prev * weight + cur
    -- Fractions make the estimate inexact; 1e-9 unit of slack keeps exact fits allowed.
    if used + cost > limit + 1e-9 then
      local wait
      if cur + cost <= limit then
        -- Within this window, once prev * weight has shrunk enough (prev > 0 here).
        wait = period - (limit - cur - cost) * period / prev - elapsed
      else
        -- In the next window, where this window's count becomes the weighted one.
        local t = math.max(0, period - (limit - cost) * period / cur)
        wait = period - elapsed + t
      end
      local reset = period - elapsed
      if cur > 0 then reset = reset + period end
      local remaining = math.max(0, math.floor(limit - used + 1e-9))
      out[#out + 1] = string.format('0 %d %d %d', remaining, math.ceil(wait), reset)
    else
      cur = cur + cost
      local reset = 2 * period - elapsed
      if idx == w then
        -- Same window: only its count changes, and the expiry set when the window
        -- was first written still falls when its count stops weighing.
        redis.call('HINCRBY', key, 'c', cost)
      else
        redis.call('HSET', key, 'w', string.format('%d', idx), 'c', cur, 'p', prev)
        -- This window's count weighs nothing once the next window has passed.
        redis.call('PEXPIRE', key, math.max(1, math.ceil(reset / 1000)))
      end
      local remaining = math.max(0, math.floor(limit - prev * weight - cur + 1e-9))
      out[#out + 1] = string.format('1 %d 0 %d', remaining, reset)
    end
  end
end
if err then return redis.error_reply(err) end
return n == 1 and out[1] or table.concat(out, ' ')
