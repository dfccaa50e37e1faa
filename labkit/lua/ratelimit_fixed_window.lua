#!lua
-- Fixed window counter; a window opens at the first request after the last one closed.
-- KEYS[1]: hash {w = window start (us), n = units admitted in that window}
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
  return redis.error_reply('BADARGS ratelimit_fixed_window: want ARGV "<limit 1..2147483647> <period us'
    .. ' 1000..31536000000000> <capacity>" [cost 1..capacity] [now us], refilled'
    .. ' within a year; got: ' .. table.concat(ARGV, ' '))
end
if not ARGV[3] then
  local t = redis.call('TIME')
  now = t[1] * 1000000 + t[2]
end

local state = redis.call('HMGET', KEYS[1], 'w', 'n')
local start, used = tonumber(state[1]), tonumber(state[2])
-- State is ours only if it is exactly {w, n}, both finite and >= 0 (x == x is
-- false for NaN; inf fails the bounds): anything else is refused, never reset.
if (state[1] or state[2] or redis.call('EXISTS', KEYS[1]) == 1) and not (start and used
    and start == start and start >= 0 and start < 1e17 and used >= 0 and used < 1e16
    and redis.call('HLEN', KEYS[1]) == 2) then
  return redis.error_reply('BADSTATE ratelimit_fixed_window: ' .. KEYS[1] .. ' holds w='
    .. tostring(state[1]) .. ' n=' .. tostring(state[2]) .. ', not a fixed window {w, n} of numbers >= 0')
end
used = used or 0
local opens = start == nil or now >= start + period or now < start
if opens then
  start = now
  used = 0
end
local reset = start + period - now
if used + cost > limit then
  -- The next window admits the full limit, and cost <= limit.
  return string.format('0 %d %.0f %.0f', math.max(0, limit - used), reset, reset)
end
used = used + cost
if opens then
  redis.call('HSET', KEYS[1], 'w', string.format('%.0f', start), 'n', used)
  -- The state is worthless once the window closes: expire it then (the
  -- window's later requests only count, and keep this expiry).
  redis.call('PEXPIRE', KEYS[1], math.max(1, math.ceil(reset / 1000)))
else
  redis.call('HINCRBY', KEYS[1], 'n', cost)
end
return string.format('1 %d 0 %.0f', limit - used, reset)
