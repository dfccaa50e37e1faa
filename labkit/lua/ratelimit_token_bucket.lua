#!lua
-- Token bucket: holds up to capacity (burst) tokens, refilled at limit per period;
-- a request takes cost tokens. A missing key is a full bucket.
-- KEYS[i]: hash {t = tokens (float), ts = time of t (us)}
-- ARGV[1]: limit units per period (us), and capacity: the burst (bucket capacity, tokens);
--          three doubles in 24 bytes (struct '<ddd': no text to parse per call)
-- ARGV[2]: cost of each request (default 1)
-- ARGV[3..]: now in us, one per key (default: the server's TIME, read once)
-- Several keys (allow_many) are decided in one call, in order; a key listed twice
-- is decided twice, the second time on the state the first left.
-- Returns: "<allowed 0/1> <remaining> <retry_after us> <reset_after us>" for each
--          key, all in one string (cheaper for the client to parse than an array),
--          or an error: BADARGS (arguments out of range) before anything is written;
--          BADSTATE or WRONGTYPE (a key holds something else) after the other keys
--          were decided, naming the first such key, which is left as it was.
local limit, period, cap
if #(ARGV[1] or '') == 24 then limit, period, cap = struct.unpack('<ddd', ARGV[1]) end
local cost = 1
if ARGV[2] then cost = tonumber(ARGV[2]) end
local n, clocked = #KEYS, #ARGV > 2
-- Everything is checked before the first write: a bad call leaves nothing behind.
-- (x ~= math.floor(x) is also true for NaN.)
local bad = not (limit and cost) or limit < 1 or limit > 2147483647
    or limit ~= math.floor(limit) or cap < 1 or cap > 2147483647 or cap ~= math.floor(cap)
    or period < 1000 or period > 31536000000000 or period ~= math.floor(period)
    or period / limit * cap > 31536000000000 or cost < 1 or cost > cap
    or cost ~= math.floor(cost) or (clocked and #ARGV ~= n + 2)
local nows = clocked and {}
if clocked and not bad then
  for i = 1, n do
    local now = tonumber(ARGV[i + 2])
    if not now or now ~= now or now < 0 or now > 1e17 then bad = true break end
    nows[i] = now
  end
end
if bad then
  local got = limit and string.format('limit=%.17g period=%.17g capacity=%.17g', limit, period, cap)
    or ('ARGV[1] of ' .. #(ARGV[1] or '') .. ' bytes')
  return redis.error_reply('BADARGS ratelimit_token_bucket: want ARGV struct.pack("<ddd", limit 1..2147483647,'
    .. ' period us 1000..31536000000000, capacity) [cost 1..capacity] [now us, one per key],'
    .. ' refilled within a year; got: ' .. got .. ', cost=' .. tostring(ARGV[2]) .. ', '
    .. (#ARGV - 2) .. ' times for ' .. n .. ' keys')
end
local now
if not clocked then
  local t = redis.call('TIME')
  now = t[1] * 1000000 + t[2]
end

local rate = limit / period
local out, err = {}, nil
for i = 1, n do
  local key = KEYS[i]
  if clocked then now = nows[i] end
  -- One read of the whole hash, fields checked too (exactly {t, ts}).
  local h = redis.pcall('HGETALL', key)
  local st, sts
  if not h.err then
    for j = 1, #h, 2 do
      if h[j] == 't' then st = h[j + 1] elseif h[j] == 'ts' then sts = h[j + 1] end
    end
  end
  local tokens, stamp = st and tonumber(st), sts and tonumber(sts)
  if h.err then
    err = err or 'WRONGTYPE ratelimit_token_bucket: ' .. key .. ' is of another type'
  -- Ours only if exactly {t, ts}, finite (NaN ~= NaN; inf fails the bounds); t may
  -- be a hair below 0 from float error, never more.
  elseif #h > 0 and not (#h == 4 and tokens and stamp and tokens == tokens and tokens > -1
      and tokens < 1e16 and stamp >= 0 and stamp < 1e17) then
    err = err or 'BADSTATE ratelimit_token_bucket: ' .. key .. ' holds t=' .. tostring(st)
      .. ' ts=' .. tostring(sts) .. ', not a token bucket {t, ts} of finite numbers'
  else
    if tokens == nil then
      tokens = cap
    else
      tokens = math.min(cap, tokens + math.max(0, now - stamp) * rate)
    end
    -- Refill fractions make tokens inexact; 1e-9 token of slack keeps exact fits allowed.
    if tokens + 1e-9 < cost then
      out[#out + 1] = string.format('0 %d %d %d', math.floor(tokens + 1e-9),
                                    math.ceil((cost - tokens) / rate), math.ceil((cap - tokens) / rate))
    else
      tokens = tokens - cost
      local full = math.ceil((cap - tokens) / rate)
      redis.call('HSET', key, 't', string.format('%.17g', tokens), 'ts', string.format('%d', now))
      -- A key that expires exactly when the bucket is full again loses nothing.
      redis.call('PEXPIRE', key, math.max(1, math.ceil(full / 1000)))
      out[#out + 1] = string.format('1 %d 0 %d', math.floor(tokens + 1e-9), full)
    end
  end
end
if err then return redis.error_reply(err) end
return n == 1 and out[1] or table.concat(out, ' ')
