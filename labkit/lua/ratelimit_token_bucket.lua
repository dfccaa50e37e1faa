#!lua
-- Token bucket: holds up to burst tokens, refilled at limit per period; a request
-- takes cost tokens. A missing key is a full bucket.
-- KEYS[1]: hash {t = tokens (float), ts = time of t (us)}
-- ARGV[1]: "<limit> <period> <burst>" in one argument (fewer to encode per call):
--          limit tokens refilled per period (us); burst: bucket capacity (tokens)
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

local rate = limit / period
local state = redis.call('HMGET', KEYS[1], 't', 'ts')
local tokens = tonumber(state[1])
if tokens == nil then
  tokens = burst
else
  tokens = math.min(burst, tokens + math.max(0, now - tonumber(state[2])) * rate)
end
-- Refill fractions make tokens inexact; 1e-9 token of slack keeps exact fits allowed.
if tokens + 1e-9 < cost then
  return string.format('0 %d %.0f %.0f', math.floor(tokens + 1e-9),
                       math.ceil((cost - tokens) / rate), math.ceil((burst - tokens) / rate))
end
tokens = tokens - cost
local full = math.ceil((burst - tokens) / rate)
redis.call('HSET', KEYS[1], 't', string.format('%.17g', tokens),
           'ts', string.format('%.0f', now))
-- A key that expires exactly when the bucket is full again loses nothing.
redis.call('PEXPIRE', KEYS[1], math.max(1, math.ceil(full / 1000)))
return string.format('1 %d 0 %.0f', math.floor(tokens + 1e-9), full)
