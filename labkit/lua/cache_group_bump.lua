#!lua
-- GroupedCache: count one invalidation of an owner, before its entries are
-- deleted. A load that read the counter before this call can no longer store
-- its result (the store scripts compare the counter), so a value read from
-- the origin before a write is never cached after the write's invalidation.
--
-- KEYS[1]  the owner's group key (hash, or the index sorted set)
-- KEYS[2]  the owner's invalidation counter (string integer)
-- ARGV[1]  the group key's type: 'hash' or 'zset'
-- ARGV[2]  the counter's TTL in milliseconds (integer >= 1)
-- Returns  the new counter value; -1 the group key, -2 the counter key holds
--          another type (nothing written). Every check comes first.
local ttl = tonumber(ARGV[2])
if not ttl or ttl < 1 or ttl % 1 ~= 0 then
  return redis.error_reply('ERR counter TTL must be an integer number of ms >= 1')
end
local function wrong(key, want)
  local kind = redis.call('TYPE', key)['ok']
  return kind ~= 'none' and kind ~= want
end
if wrong(KEYS[1], ARGV[1]) then return -1 end
if wrong(KEYS[2], 'string') then return -2 end
local n = redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ttl)
return n
