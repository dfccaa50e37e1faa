#!lua
-- Sliding log: one sorted-set entry per admitted unit, scored by its time.
-- KEYS[1]: sorted set {member "<us>-<n>" -> score = admission time (us)}
-- ARGV[1]: "<limit> <period> <capacity>" in one argument (fewer to encode per call):
--          limit units per period (us); capacity: the limit (a log has no burst)
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
  return redis.error_reply('BADARGS ratelimit_sliding_log: want ARGV "<limit 1..2147483647> <period us'
    .. ' 1000..31536000000000> <capacity>" [cost 1..capacity] [now us], refilled'
    .. ' within a year; got: ' .. table.concat(ARGV, ' '))
end
if not ARGV[3] then
  local t = redis.call('TIME')
  now = t[1] * 1000000 + t[2]
end

-- A sorted set is ours only if its members look like ours: "<score>-<n>". The
-- oldest is checked (one member: the check costs O(1), not O(n)). (On a key
-- of another type ZRANGE fails with WRONGTYPE, before any write.)
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if first[1] and string.match(first[1], '^(%d+)%-%d+$') ~= string.format('%.0f', tonumber(first[2])) then
  return redis.error_reply('BADSTATE ratelimit_sliding_log: ' .. KEYS[1] .. ' holds member '
    .. string.format('%q', first[1]) .. ' (score ' .. first[2] .. '), not a sliding log entry "<us>-<n>"')
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
