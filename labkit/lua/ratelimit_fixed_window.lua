#!lua
-- Fixed window counter; a window opens at the first request after the last one closed.
-- KEYS[1]: hash {w = window start (us), n = units admitted in that window}
-- ARGV[1]: "<limit> <period> <burst>" in one argument (fewer to encode per call):
--          limit units per period (us); burst = limit (unused)
-- ARGV[2]: cost (default 1)   ARGV[3]: now in us (default: server TIME)
-- Returns: "<allowed 0/1> <remaining> <retry_after us> <reset_after us>"
--          (one string: cheaper for the client to parse than an array)
local limit, period, burst = string.match(ARGV[1], '^(%d+) (%d+) (%d+)$')
limit, period, burst = tonumber(limit), tonumber(period), tonumber(burst)
local cost = tonumber(ARGV[2] or '1')
local now
if ARGV[3] then
  now = tonumber(ARGV[3])
else
  local t = redis.call('TIME')
  now = t[1] * 1000000 + t[2]
end

local state = redis.call('HMGET', KEYS[1], 'w', 'n')
local start = tonumber(state[1])
local used = tonumber(state[2]) or 0
if start == nil or now >= start + period or now < start then
  start = now
  used = 0
end
local reset = start + period - now
if used + cost > limit then
  -- The next window admits the full limit, and cost <= limit.
  return string.format('0 %d %.0f %.0f', math.max(0, limit - used), reset, reset)
end
used = used + cost
redis.call('HSET', KEYS[1], 'w', string.format('%.0f', start), 'n', used)
-- The state is worthless once the window closes: expire it then.
redis.call('PEXPIRE', KEYS[1], math.max(1, math.ceil(reset / 1000)))
return string.format('1 %d 0 %.0f', limit - used, reset)
