#!lua
-- Store a freshly loaded cache value only if the caller still holds the lease.
--
-- A lease is taken (SET NX PX) when a caller starts loading a missing entry.
-- Cache.invalidate() and Cache.set() delete it, so a value loaded before a
-- write to the origin is dropped instead of being cached for a whole TTL.
--
-- KEYS[1]  the entry key   (string, JSON value)
-- KEYS[2]  the lease key   (string, random token)
-- ARGV[1]  the caller's lease token
-- ARGV[2]  the JSON value to store
-- ARGV[3]  the entry's TTL in milliseconds (integer >= 1)
-- Returns  1 if the value was stored (and the lease released), 0 if the lease
--          was lost (invalidated or expired), -1 if the entry key holds
--          another type. Only 1 writes anything: every check comes first.
-- The #!lua line makes the server refuse the whole script up front when it is
-- over maxmemory under noeviction, instead of failing after a first write.
local ttl = tonumber(ARGV[3])
if not ttl or ttl < 1 or ttl % 1 ~= 0 then
  return redis.error_reply('ERR cache TTL must be an integer number of ms >= 1')
end
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind ~= 'none' and kind ~= 'string' then
  return -1
end
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ttl)
redis.call('DEL', KEYS[2])
return 1
