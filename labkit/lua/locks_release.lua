#!lua
-- Release a lock only if the caller still holds it (compare-and-delete).
--
-- A plain DEL would delete whatever is there: after the caller's lease
-- expired, that is the next holder's lock.
--
-- KEYS[1]  the lock key (string: the holder's random token)
-- ARGV[1]  the caller's token
-- Returns  1 if the caller held it and it is deleted; 0 if the key is gone or
--          holds another token (the lease expired), and nothing is deleted.
-- Errors   WRONGTYPE (from GET, before any write) if the key is not a string.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
