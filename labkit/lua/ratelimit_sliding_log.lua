#!lua
-- Sliding log: one sorted-set entry per admitted unit, scored by its time.
-- KEYS[i]: sorted set {member "<us>-<n>" -> score = admission time (us)}
-- ARGV[1]: limit units per period (us), and capacity: the limit (a log has no burst);
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
  return redis.error_reply('BADARGS ratelimit_sliding_log: want ARGV struct.pack("<ddd", limit 1..2147483647,'
    .. ' period us 1000..31536000000000, capacity) [cost 1..capacity] [now us, one per key],'
    .. ' refilled within a year; got: ' .. got .. ', cost=' .. tostring(ARGV[2]) .. ', '
    .. (#ARGV - 2) .. ' times for ' .. n .. ' keys')
end
local now
if not clocked then
  local t = redis.call('TIME')
  now = t[1] * 1000000 + t[2]
end

local out, err = {}, nil
for i = 1, n do
  local key = KEYS[i]
  if clocked then now = nows[i] end
  -- A sorted set is ours only if its members look like ours: "<score>-<n>". The
  -- oldest is checked (one member: the check costs O(1), not O(n)).
  local first = redis.pcall('ZRANGE', key, 0, 0, 'WITHSCORES')
  if first.err then
    err = err or 'WRONGTYPE ratelimit_sliding_log: ' .. key .. ' is of another type'
  elseif first[1] and string.match(first[1], '^(%d+)%-%d+$') ~= string.format('%.0f', tonumber(first[2])) then
    err = err or 'BADSTATE ratelimit_sliding_log: ' .. key .. ' holds member '
      .. string.format('%q', first[1]) .. ' (score ' .. first[2] .. '), not a sliding log entry "<us>-<n>"'
  else
    -- An entry admitted at s counts for now in [s, s + period).
    redis.call('ZREMRANGEBYSCORE', key, '-inf', string.format('%d', now - period))
    local used = redis.call('ZCARD', key)
    if used + cost > limit then
      -- It fits once the (used + cost - limit) oldest entries have left the window.
      local j = used + cost - limit - 1
      local oldest = redis.call('ZRANGE', key, j, j, 'WITHSCORES')
      local newest = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
      local retry = tonumber(oldest[2]) + period - now
      local reset = tonumber(newest[2]) + period - now
      out[#out + 1] = string.format('0 %d %d %d', math.max(0, limit - used), retry, reset)
    else
      local stamp = string.format('%d', now)
      for k = used + 1, used + cost do
        -- Entries of one microsecond differ by k, since none of them has been trimmed.
        redis.call('ZADD', key, stamp, stamp .. '-' .. k)
      end
      redis.call('PEXPIRE', key, math.max(1, math.ceil(period / 1000)))
      out[#out + 1] = string.format('1 %d 0 %d', limit - used - cost, period)
    end
  end
end
if err then return redis.error_reply(err) end
return n == 1 and out[1] or table.concat(out, ' ')
