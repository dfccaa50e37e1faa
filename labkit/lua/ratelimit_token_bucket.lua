#!lua
-- Token bucket: holds up to capacity (burst) tokens, refilled at limit per period;
-- a request takes cost tokens. A missing key is a full bucket.
-- KEYS[1]: hash {t = tokens (float), ts = time of t (us)}
-- ARGV[1]: "<limit> <period> <capacity>" in one argument (fewer to encode per call):
--          limit units per period (us); capacity: the burst (bucket capacity, tokens)
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
  return redis.error_reply('BADARGS ratelimit_token_bucket: want ARGV "<limit 1..2147483647> <period us'
    .. ' 1000..31536000000000> <capacity>" [cost 1..capacity] [now us], refilled'
    .. ' within a year; got: ' .. table.concat(ARGV, ' '))
end
if not ARGV[3] then
  local t = redis.call('TIME')
  now = t[1] * 1000000 + t[2]
end

local rate = limit / period
local state = redis.call('HMGET', KEYS[1], 't', 'ts')
local tokens, stamp = tonumber(state[1]), tonumber(state[2])
-- Ours only if exactly {t, ts}, finite (NaN ~= NaN; inf fails the bounds); t may
-- be a hair below 0 from float error, never more.
if (state[1] or state[2] or redis.call('EXISTS', KEYS[1]) == 1) and not (tokens and stamp
    and tokens == tokens and tokens > -1 and tokens < 1e16 and stamp >= 0 and stamp < 1e17
    and redis.call('HLEN', KEYS[1]) == 2) then
  return redis.error_reply('BADSTATE ratelimit_token_bucket: ' .. KEYS[1] .. ' holds t='
    .. tostring(state[1]) .. ' ts=' .. tostring(state[2]) .. ', not a token bucket {t, ts} of finite numbers')
end
if tokens == nil then
  tokens = cap
else
  tokens = math.min(cap, tokens + math.max(0, now - stamp) * rate)
end
-- Refill fractions make tokens inexact; 1e-9 token of slack keeps exact fits allowed.
if tokens + 1e-9 < cost then
  return string.format('0 %d %.0f %.0f', math.floor(tokens + 1e-9),
                       math.ceil((cost - tokens) / rate), math.ceil((cap - tokens) / rate))
end
tokens = tokens - cost
local full = math.ceil((cap - tokens) / rate)
redis.call('HSET', KEYS[1], 't', string.format('%.17g', tokens),
           'ts', string.format('%.0f', now))
-- A key that expires exactly when the bucket is full again loses nothing.
redis.call('PEXPIRE', KEYS[1], math.max(1, math.ceil(full / 1000)))
return string.format('1 %d 0 %.0f', math.floor(tokens + 1e-9), full)
