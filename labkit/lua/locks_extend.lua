#!lua
-- Extend a lease only if the caller still holds it (compare-and-expire).
--
-- KEYS[1]  the lock key (string: the holder's random token)
-- ARGV[1]  the caller's token
-- ARGV[2]  the new lease in milliseconds from now (a whole number >= 1)
-- Returns  1 if the caller held it and its expiry is now ARGV[2] ms away; 0 if
--          the key is gone or holds another token, and nothing is changed.
-- Errors   before any write, when ARGV[2] is not a whole number >= 1 or the
--          key is not a string.
if not string.match(ARGV[2], '^[1-9]%d*$') then
  return redis.error_reply('ERR lock ttl must be whole milliseconds >= 1, got ' .. ARGV[2])
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
