#!lua
-- Write-through: store a value for an entry and cancel any load in flight.
--
-- Deleting the lease matters: a reader that loaded the old value before this
-- write still holds it, and would otherwise store its older value after ours
-- (cache_store_if_lease.lua refuses once the lease is gone).
--
-- KEYS[1]  the entry key   (string, JSON value)
-- KEYS[2]  the lease key   (string, random token)
-- ARGV[1]  the JSON value to store
-- ARGV[2]  the entry's TTL in milliseconds (integer >= 1)
-- Returns  1 if stored, -1 if the entry key holds another type (nothing
--          written). Every check comes before the first write.
local ttl = tonumber(ARGV[2])
if not ttl or ttl < 1 or ttl % 1 ~= 0 then
  return redis.error_reply('ERR cache TTL must be an integer number of ms >= 1')
end
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind ~= 'none' and kind ~= 'string' then
  return -1
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
redis.call('DEL', KEYS[2])
return 1
