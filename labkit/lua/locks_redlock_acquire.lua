#!lua
-- One Redlock server's vote: take the key if it is free (SET NX PX).
--
-- The same as a single-instance acquire without the fencing counter: a
-- Redlock spans independent servers, so there is no one counter to draw a
-- fencing token from.
--
-- KEYS[1]  the lock key (string: the holder's random token, PX ttl)
-- ARGV[1]  the new holder's random token
-- ARGV[2]  the lease in milliseconds (a whole number >= 1; SET refuses others)
-- Returns  1 if taken; 0 if someone holds it.
-- Errors   with nothing written, when the key holds something other than a
--          lock token (checked only when SET NX found the key taken).
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind ~= 'string' then
  return redis.error_reply('WRONGTYPE ' .. KEYS[1] .. ' holds a ' .. kind .. ', not a lock token')
end
return 0
