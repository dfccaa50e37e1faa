#!lua
-- One Redlock server's vote: take the key if it is free (SET NX PX).
--
-- The same as a single-instance acquire without the fencing counter: a
-- Redlock spans independent servers, so there is no one counter to draw a
-- fencing token from.
--
-- KEYS[1]  the lock key (string: the holder's random token, PX ttl)
-- ARGV[1]  the new holder's random token
-- ARGV[2]  the lease in milliseconds (a whole number >= 1)
-- Returns  1 if taken; 0 if someone holds it.
-- Errors   before any write, when ARGV[2] is not a whole number >= 1 or the
--          key holds something other than a lock token.
if not string.match(ARGV[2], '^[1-9]%d*$') then
  return redis.error_reply('ERR lock ttl must be whole milliseconds >= 1, got ' .. ARGV[2])
end
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind ~= 'none' and kind ~= 'string' then
  return redis.error_reply('WRONGTYPE ' .. KEYS[1] .. ' holds a ' .. kind .. ', not a lock token')
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
return 0
