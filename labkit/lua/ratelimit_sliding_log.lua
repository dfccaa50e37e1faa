#!lua
-- Sliding log: one sorted-set entry per admitted unit, scored by its time.
-- KEYS[1]: sorted set {member "<us>-<n>" -> score = admission time (us)}
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

-- An entry admitted at s counts for now in [s, s + period).
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now - period))
local used = redis.call('ZCARD', KEYS[1])
if used + cost > limit then
  -- It fits once the (used + cost - limit) oldest entries have left the window.
  local i = used + cost - limit - 1
  local oldest = redis.call('ZRANGE', KEYS[1], i, i, 'WITHSCORES')
  local newest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
  local retry = tonumber(oldest[2]) + period - now
  local reset = tonumber(newest[2]) + period - now
  return string.format('0 %d %.0f %.0f', math.max(0, limit - used), retry, reset)
end
local stamp = string.format('%.0f', now)
for n = used + 1, used + cost do
  -- Entries of one microsecond differ by n, since none of them has been trimmed.
  redis.call('ZADD', KEYS[1], stamp, stamp .. '-' .. n)
end
redis.call('PEXPIRE', KEYS[1], math.max(1, math.ceil(period / 1000)))
return string.format('1 %d 0 %.0f', limit - used - cost, period)
