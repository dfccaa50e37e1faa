#!lua
-- GCRA (generic cell rate algorithm): one number per key, the theoretical arrival
-- time (TAT) of the next request; a request is allowed when it would not push
-- the TAT more than burst emission intervals past now.
-- KEYS[i]: string, TAT (us since the epoch, float)
-- ARGV[1]: limit units per period (us), and capacity: the burst (requests allowed back to back);
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
  return redis.error_reply('BADARGS ratelimit_gcra: want ARGV struct.pack("<ddd", limit 1..2147483647,'
    .. ' period us 1000..31536000000000, capacity) [cost 1..capacity] [now us, one per key],'
    .. ' refilled within a year; got: ' .. got .. ', cost=' .. tostring(ARGV[2]) .. ', '
    .. (#ARGV - 2) .. ' times for ' .. n .. ' keys')
end
local now
if not clocked then
  local t = redis.call('TIME')
  now = t[1] * 1000000 + t[2]
end

local interval = period / limit
local tolerance = interval * cap
local out, err = {}, nil
for i = 1, n do
  local key = KEYS[i]
  if clocked then now = nows[i] end
  local raw = redis.pcall('GET', key)
  local tat = tonumber(raw)
  if type(raw) == 'table' then
    err = err or 'WRONGTYPE ratelimit_gcra: ' .. key .. ' is of another type'
  -- NaN ~= NaN and inf fails the bound: a corrupt TAT is refused, never taken as fresh.
  elseif raw and not (tat and tat == tat and tat >= 0 and tat < 1e17) then
    err = err or 'BADSTATE ratelimit_gcra: ' .. key .. ' holds ' .. string.format('%q', raw)
      .. ', not a GCRA arrival time (microseconds >= 0)'
  else
    -- Work relative to now: absolute microseconds (~1.7e15) leave doubles ~0.25 us of
    -- precision, so comparisons get half a microsecond of slack.
    local ahead = math.max(0, (tat or now) - now)
    local new_ahead = ahead + interval * cost
    if new_ahead > tolerance + 0.5 then
      -- max(0, ...): a lookup that lowered the burst leaves ahead > tolerance.
      out[#out + 1] = string.format('0 %d %d %d',
        math.max(0, math.floor((tolerance + 0.5 - ahead) / interval)),
        math.ceil(new_ahead - tolerance), math.ceil(ahead))
    else
      -- The key expires when the TAT is reached, i.e. when it is as good as absent.
      redis.call('SET', key, string.format('%.17g', now + new_ahead),
                 'PX', math.max(1, math.ceil(new_ahead / 1000)))
      out[#out + 1] = string.format('1 %d 0 %d', math.floor((tolerance + 0.5 - new_ahead) / interval),
                                    math.ceil(new_ahead))
    end
  end
end
if err then return redis.error_reply(err) end
return n == 1 and out[1] or table.concat(out, ' ')
