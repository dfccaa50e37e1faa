#!lua
-- Take a lock if it is free (SET NX PX) and hand out the next fencing token.
--
-- KEYS[1]  the lock key    (string: the holder's random token, PX ttl)
-- KEYS[2]  the fence key   (string: an integer counter, never expires)
-- ARGV[1]  the new holder's random token
-- ARGV[2]  the lease in milliseconds (a whole number >= 1)
-- Returns  {fence, 0} when taken: fence is the counter after INCR (1, 2, ...);
--          {0, pttl} when someone holds it: pttl is their milliseconds left
--          (-1: the key has no expiry, a lock that would never be freed).
-- Errors   before any write, when ARGV[2] is not a whole number >= 1 or a key
--          holds something other than what this script writes there.
if not string.match(ARGV[2], '^[1-9]%d*$') then
  return redis.error_reply('ERR lock ttl must be whole milliseconds >= 1, got ' .. ARGV[2])
end
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind ~= 'none' and kind ~= 'string' then
  return redis.error_reply('WRONGTYPE ' .. KEYS[1] .. ' holds a ' .. kind .. ', not a lock token')
end
local fence_kind = redis.call('TYPE', KEYS[2])['ok']
if fence_kind ~= 'none' then
  local fence = fence_kind == 'string' and redis.call('GET', KEYS[2]) or ''
  if not string.match(fence, '^%d+$') or string.len(fence) > 18 then
    return redis.error_reply('WRONGTYPE ' .. KEYS[2] .. ' holds a ' .. fence_kind .. ', not a fencing counter')
  end
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {redis.call('INCR', KEYS[2]), 0}
end
return {0, redis.call('PTTL', KEYS[1])}
