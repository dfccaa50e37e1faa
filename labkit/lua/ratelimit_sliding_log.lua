#!lua
-- Sliding log: one sorted-set entry per admitted unit, scored by its time.
-- KEYS[i]: sorted set {member "<us>-<n>" -> score = admission time (us)}
-- ARGV[1]: "<limit> <period> <capacity>" in one argument (fewer to encode per call):
--          limit units per period (us); capacity: the limit (a log has no burst)
-- ARGV[2]: cost of each request (default 1)
-- ARGV[3..]: now in us, one per key (default: the server's TIME, read once)
-- Several keys (allow_many) are decided in one call, in order; a key listed twice
-- is decided twice, the second time on the state the first left.
-- Returns: "<allowed 0/1> <remaining> <retry_after us> <reset_after us>" for each
--          key, all in one string (cheaper for the client to parse than an array),
--          or an error: BADARGS (arguments out of range) before anything is written;
--          BADSTATE or WRONGTYPE (a key holds something else) after the other keys
--          were decided, naming the first such key, which is left as it was.
local limit, period, cap = string.match(ARGV[1] or '', '^(%d+) (%d+) (%d+)$')
limit, period, cap = tonumber(limit), tonumber(period), tonumber(cap)
local cost = tonumber(ARGV[2] or '1')
local n, clocked = #KEYS, #ARGV > 2
-- Everything is checked before the first write: a bad call leaves nothing behind.
local bad = not (limit and cost) or limit < 1 or limit > 2147483647 or cap < 1
    or cap > 2147483647 or period < 1000 or period > 31536000000000
    or period / limit * cap > 31536000000000 or cost < 1 or cost > cap
    or cost ~= math.floor(cost) or (clocked and #ARGV ~= n + 2)
local nows = {}
if clocked and not bad then
  for i = 1, n do
    local now = tonumber(ARGV[i + 2])
    if not now or now ~= now or now < 0 or now > 1e17 then bad = true break end
    nows[i] = now
  end
end
if bad then
  return redis.error_reply('BADARGS ratelimit_sliding_log: want ARGV "<limit 1..2147483647> <period us'
    .. ' 1000..31536000000000> <capacity>" [cost 1..capacity] [now us, one per key],'
    .. ' refilled within a year; got: ' .. table.concat(ARGV, ' '))
end
local now
if not clocked then
  local t = redis.call('TIME')
  now = t[1] * 1000000 + t[2]
end

local out, err = {}, nil
for i = 1, n do
  local key = KEYS[i]
  now = nows[i] or now
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
return table.concat(out, ' ')
