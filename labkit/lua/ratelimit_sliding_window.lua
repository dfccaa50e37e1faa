#!lua
-- Sliding window counter: this window's count plus the previous one's, weighted by
-- how much of the previous window still overlaps the sliding period.
-- KEYS[1]: hash {w = window index (now // period), c = units this window, p = previous}
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

local idx = math.floor(now / period)
local state = redis.call('HMGET', KEYS[1], 'w', 'c', 'p')
local w = tonumber(state[1])
local cur = tonumber(state[2]) or 0
local prev = tonumber(state[3]) or 0
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
redis.call('HSET', KEYS[1], 'w', string.format('%.0f', idx), 'c', cur, 'p', prev)
-- This window's count weighs nothing once the next window has passed.
local reset = 2 * period - elapsed
redis.call('PEXPIRE', KEYS[1], math.max(1, math.ceil(reset / 1000)))
local remaining = math.max(0, math.floor(limit - prev * weight - cur + 1e-9))
return string.format('1 %d 0 %.0f', remaining, reset)
