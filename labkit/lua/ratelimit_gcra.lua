#!lua
-- GCRA (generic cell rate algorithm): one number per key, the theoretical arrival
-- time (TAT) of the next request; a request is allowed when it would not push
-- the TAT more than burst emission intervals past now.
-- KEYS[1]: string, TAT (us since the epoch, float)
-- ARGV[1]: "<limit> <period> <burst>" in one argument (fewer to encode per call):
--          limit requests per period (us); burst: requests allowed back to back
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

local interval = period / limit
local tolerance = interval * burst
-- Work relative to now: absolute microseconds (~1.7e15) leave doubles ~0.25 us of
-- precision, so comparisons get half a microsecond of slack.
local ahead = math.max(0, (tonumber(redis.call('GET', KEYS[1])) or now) - now)
local new_ahead = ahead + interval * cost
if new_ahead > tolerance + 0.5 then
  return string.format('0 %d %.0f %.0f', math.floor((tolerance + 0.5 - ahead) / interval),
                       math.ceil(new_ahead - tolerance), math.ceil(ahead))
end
-- The key expires when the TAT is reached, i.e. when it is as good as absent.
redis.call('SET', KEYS[1], string.format('%.17g', now + new_ahead),
           'PX', math.max(1, math.ceil(new_ahead / 1000)))
return string.format('1 %d 0 %.0f', math.floor((tolerance + 0.5 - new_ahead) / interval),
                     math.ceil(new_ahead))
