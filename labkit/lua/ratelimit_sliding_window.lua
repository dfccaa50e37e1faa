#!lua
-- Sliding window counter: this window's count plus the previous one's, weighted by
-- how much of the previous window still overlaps the sliding period.
-- KEYS[1]: hash {w = window index (now // period), c = units this window, p = previous}
-- ARGV[1]: "<limit> <period> <capacity>" in one argument (fewer to encode per call):
--          limit units per period (us); capacity: the limit (a window has no burst)
-- ARGV[2]: cost (default 1)   ARGV[3]: now in us (default: server TIME)
-- Returns: "<allowed 0/1> <remaining> <retry_after us> <reset_after us>"
--          (one string: cheaper for the client to parse than an array), or an error
--          (BADARGS: arguments out of range; BADSTATE: the key holds something else)
--          raised before anything is written.
local limit, period, cap = string.match(ARGV[1] or '', '^(%d+) (%d+) (%d+)$')
limit, period, cap = tonumber(limit), tonumber(period), tonumber(cap)
local cost = tonumber(ARGV[2] or '1')
local now = tonumber(ARGV[3] or '0')
-- Everything is checked before the first write: a bad call leaves nothing behind.
if not (limit and cost and now) or limit < 1 or limit > 2147483647 or cap < 1
    or cap > 2147483647 or period < 1000 or period > 31536000000000
    or period / limit * cap > 31536000000000 or cost < 1 or cost > cap
    or cost ~= math.floor(cost) or now ~= now or now < 0 or now > 1e17 then
  return redis.error_reply('BADARGS ratelimit_sliding_window: want ARGV "<limit 1..2147483647> <period us'
    .. ' 1000..31536000000000> <capacity>" [cost 1..capacity] [now us], refilled'
    .. ' within a year; got: ' .. table.concat(ARGV, ' '))
end
if not ARGV[3] then
  local t = redis.call('TIME')
  now = t[1] * 1000000 + t[2]
end

local idx = math.floor(now / period)
local state = redis.call('HMGET', KEYS[1], 'w', 'c', 'p')
local w, cur, prev = tonumber(state[1]), tonumber(state[2]), tonumber(state[3])
-- Ours only if exactly {w, c, p}, finite and >= 0 (NaN ~= NaN; inf fails the bounds).
if (state[1] or state[2] or state[3] or redis.call('EXISTS', KEYS[1]) == 1)
    and not (w and cur and prev and w == w and w >= 0 and w < 1e17 and cur >= 0
    and cur < 1e16 and prev >= 0 and prev < 1e16 and redis.call('HLEN', KEYS[1]) == 3) then
  return redis.error_reply('BADSTATE ratelimit_sliding_window: ' .. KEYS[1] .. ' holds w='
    .. tostring(state[1]) .. ' c=' .. tostring(state[2]) .. ' p=' .. tostring(state[3])
    .. ', not a sliding window {w, c, p} of numbers >= 0')
end
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
  return string.format('0 %d %.0f %.0f', remaining, math.ceil(wait), reset)
end
cur = cur + cost
local reset = 2 * period - elapsed
if idx == w then
  -- Same window: only its count changes, and the expiry set when the window
  -- was first written still falls when its count stops weighing.
  redis.call('HINCRBY', KEYS[1], 'c', cost)
else
  redis.call('HSET', KEYS[1], 'w', string.format('%.0f', idx), 'c', cur, 'p', prev)
  -- This window's count weighs nothing once the next window has passed.
  redis.call('PEXPIRE', KEYS[1], math.max(1, math.ceil(reset / 1000)))
end
local remaining = math.max(0, math.floor(limit - prev * weight - cur + 1e-9))
return string.format('1 %d 0 %.0f', remaining, reset)
