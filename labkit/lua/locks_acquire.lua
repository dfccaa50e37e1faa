#!lua
-- Take a lock if it is free (SET NX PX) and hand out the next fencing token.
--
-- KEYS[1]  the lock key    (string: the holder's random token, PX ttl)
-- KEYS[2]  the fence key   (string: an integer counter, never expires)
-- ARGV[1]  the new holder's random token
-- ARGV[2]  the lease in milliseconds (a whole number >= 1; SET refuses others)
-- Returns  the fence (>= 1) when taken: the counter after INCR (1, 2, ...);
--          when someone holds it, minus the milliseconds their key may still
--          live: PTTL + 1, since a key is freed after its last millisecond
--          (0 if their key has no expiry: a lock that would never be freed).
-- Errors   with nothing changed, when a key holds something other than what
--          this script writes there. The common case costs three commands:
--          SET, then INCR; the type checks run only when one of them fails.
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  local ok, fence = pcall(redis.call, 'INCR', KEYS[2])
  if ok and fence >= 1 then return fence end
  redis.call('DEL', KEYS[1])  -- take the lock back: nothing changed
  if ok then redis.call('DECR', KEYS[2]) end
  local kind = redis.call('TYPE', KEYS[2])['ok']
  return redis.error_reply('WRONGTYPE ' .. KEYS[2] .. ' holds a ' .. kind .. ', not a fencing counter')
end
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind ~= 'string' then
  return redis.error_reply('WRONGTYPE ' .. KEYS[1] .. ' holds a ' .. kind .. ', not a lock token')
end
local pttl = redis.call('PTTL', KEYS[1])
if pttl < 0 then return 0 end
return -(pttl + 1)
