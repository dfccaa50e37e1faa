#!lua
-- Add one point to a time series, replacing any point at the same timestamp,
-- then apply retention. One script, so readers never see a half-trimmed series.
-- KEYS[1]: sorted set, score = epoch seconds, member = JSON {"t": ts, "v": value}
-- ARGV[1]: timestamp (epoch seconds, as a float string)   ARGV[2]: member
-- ARGV[3]: max points to keep (0 = no count limit)
-- ARGV[4]: max age in seconds, measured back from the newest point (0 = none)
-- Returns: number of points in the series after the add and the trimming
-- Errors (before any write): "SERIESTYPE <type>" when KEYS[1] holds another
-- type; "SERIESARG <what>" when an argument is not what is described above.
-- The #!lua line makes this a flagged script: over maxmemory (noeviction) the
-- server refuses it before it runs. Unflagged, the first write it makes (the
-- ZREMRANGEBYSCORE) would let the ZADD through past the limit.
local key = KEYS[1]
local ts = ARGV[1]
local max_points = tonumber(ARGV[3])
local max_age = tonumber(ARGV[4])
-- Validate everything before the first write: a refused call changes nothing.
if tonumber(ts) == nil then
  return redis.error_reply('SERIESARG timestamp ' .. tostring(ts) .. ' is not a number')
end
if ARGV[2] == nil or ARGV[2] == '' then
  return redis.error_reply('SERIESARG member is empty')
end
if max_points == nil or max_points < 0 or max_age == nil or max_age < 0 then
  return redis.error_reply('SERIESARG bounds must be numbers >= 0')
end
local kind = redis.call('TYPE', key)['ok']
if kind ~= 'zset' and kind ~= 'none' then
  return redis.error_reply('SERIESTYPE ' .. kind)
end
-- A sorted set is a series only if its members are points {"t":..,"v":..}: the
-- oldest is checked (O(1)), so someone else's leaderboard is never trimmed.
if kind == 'zset' then
  local first = redis.call('ZRANGE', key, 0, 0)[1]
  if not string.find(first, '^{"t":[-0-9.eE+]+,"v":[-0-9.eE+]+}$') then
    return redis.error_reply('SERIESMEMBER ' .. string.format('%q', string.sub(first, 1, 80)))
  end
end
redis.call('ZREMRANGEBYSCORE', key, ts, ts)
redis.call('ZADD', key, ts, ARGV[2])
if max_points > 0 then
  redis.call('ZREMRANGEBYRANK', key, 0, -(max_points + 1))
end
if max_age > 0 then
  local newest = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  -- %.17g keeps full double precision; tostring() would round to 14 digits.
  local cutoff = string.format('%.17g', tonumber(newest[2]) - max_age)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. cutoff)
end
return redis.call('ZCARD', key)
