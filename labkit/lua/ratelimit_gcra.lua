#!lua
-- GCRA (generic cell rate algorithm): one number per key, the theoretical arrival
-- time (TAT) of the next request; a request is allowed when it would not push
-- the TAT more than burst emission intervals past now.
-- KEYS[1]: string, TAT (us since the epoch, float)
-- ARGV[1]: "<limit> <period> <capacity>" in one argument (fewer to encode per call):
--          limit units per period (us); capacity: the burst (requests allowed back to back)
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
  return redis.error_reply('BADARGS ratelimit_gcra: want ARGV "<limit 1..2147483647> <period us'
    .. ' 1000..31536000000000> <capacity>" [cost 1..capacity] [now us], refilled'
    .. ' within a year; got: ' .. table.concat(ARGV, ' '))
end
if not ARGV[3] then
  local t = redis.call('TIME')
  now = t[1] * 1000000 + t[2]
end

local interval = period / limit
local tolerance = interval * cap
local raw = redis.call('GET', KEYS[1])
local tat = tonumber(raw)
-- NaN ~= NaN and inf fails the bound: a corrupt TAT is refused, never taken as fresh.
if raw and not (tat and tat == tat and tat >= 0 and tat < 1e17) then
  return redis.error_reply('BADSTATE ratelimit_gcra: ' .. KEYS[1] .. ' holds ' .. string.format('%q', raw)
    .. ', not a GCRA arrival time (microseconds >= 0)')
end
-- Work relative to now: absolute microseconds (~1.7e15) leave doubles ~0.25 us of
-- precision, so comparisons get half a microsecond of slack.
local ahead = math.max(0, (tat or now) - now)
local new_ahead = ahead + interval * cost
if new_ahead > tolerance + 0.5 then
  -- max(0, ...): a lookup that lowered the burst leaves ahead > tolerance.
  return string.format('0 %d %.0f %.0f', math.max(0, math.floor((tolerance + 0.5 - ahead) / interval)),
                       math.ceil(new_ahead - tolerance), math.ceil(ahead))
end
-- The key expires when the TAT is reached, i.e. when it is as good as absent.
redis.call('SET', KEYS[1], string.format('%.17g', now + new_ahead),
           'PX', math.max(1, math.ceil(new_ahead / 1000)))
return string.format('1 %d 0 %.0f', math.floor((tolerance + 0.5 - new_ahead) / interval),
                     math.ceil(new_ahead))
