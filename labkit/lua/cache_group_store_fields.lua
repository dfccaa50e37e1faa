#!lua
-- GroupedCache, one hash per owner: store one query's result as a field with
-- its own expiry, unless the owner was invalidated since the load began.
--
-- KEYS[1]  the owner's hash  (field = query key, value = JSON)
-- KEYS[2]  the owner's invalidation counter (string integer)
-- ARGV[1]  the counter as read before the load ('' if it did not exist)
-- ARGV[2]  the field (query key)
-- ARGV[3]  the JSON value
-- ARGV[4]  the entry's TTL in milliseconds (integer >= 1)
-- Returns  1 stored; 0 the owner was invalidated meanwhile (the value may be
--          stale: nothing written); -1 the hash key, -2 the counter key holds
--          another type (nothing written). Every check comes first.
-- Needs hash-field TTLs (HPEXPIRE: Redis 7.4+, Valkey 9+).
local ttl = tonumber(ARGV[4])
if not ttl or ttl < 1 or ttl % 1 ~= 0 then
  return redis.error_reply('ERR cache TTL must be an integer number of ms >= 1')
end
local function wrong(key, want)
  local kind = redis.call('TYPE', key)['ok']
  return kind ~= 'none' and kind ~= want
end
if wrong(KEYS[1], 'hash') then return -1 end
if wrong(KEYS[2], 'string') then return -2 end
if (redis.call('GET', KEYS[2]) or '') ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
redis.call('HPEXPIRE', KEYS[1], ttl, 'FIELDS', 1, ARGV[2])
-- The hash outlives its longest field: a TTL if it has none (NX), a longer
-- one if this field lives longer (GT).
redis.call('PEXPIRE', KEYS[1], ttl, 'NX')
redis.call('PEXPIRE', KEYS[1], ttl, 'GT')
return 1
