-- Store a freshly loaded cache value only if the caller still holds the lease.
--
-- A lease is taken (SET NX PX) when a caller starts loading a missing entry;
-- Cache.invalidate() deletes it, so a value loaded before a write to the
-- origin is dropped instead of being cached for a whole TTL.
--
-- KEYS[1]  the entry key   (string, JSON value)
-- KEYS[2]  the lease key   (string, random token)
-- ARGV[1]  the caller's lease token
-- ARGV[2]  the JSON value to store
-- ARGV[3]  the entry's TTL in milliseconds (> 0)
-- Returns  1 if the value was stored (and the lease released), 0 if the lease
--          was lost (invalidated or expired) and nothing was written.
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('DEL', KEYS[2])
return 1
