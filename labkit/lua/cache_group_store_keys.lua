#!lua
-- GroupedCache, a key per entry: store one query's result under its own key
-- and list it in the owner's index, unless the owner was invalidated since
-- the load began. The index is a sorted set scored by expiry time, pruned of
-- expired names on every store, so it never outgrows the live entries.
--
-- KEYS[1]  the entry key (string, JSON value)
-- KEYS[2]  the owner's index (sorted set: entry key -> expiry, ms since epoch)
-- KEYS[3]  the owner's invalidation counter (string integer)
-- ARGV[1]  the counter as read before the load ('' if it did not exist)
-- ARGV[2]  the JSON value
-- ARGV[3]  the entry's TTL in milliseconds (integer >= 1)
-- ARGV[4]  the start of this owner's entry keys (what every index member starts with)
-- Returns  1 stored; 0 the owner was invalidated meanwhile (nothing written);
--          -1 the entry, -2 the counter, -3 the index key holds another type,
--          -4 the index is a sorted set of other members (nothing written).
--          Every check comes first.
local ttl = tonumber(ARGV[3])
if not ttl or ttl < 1 or ttl % 1 ~= 0 then
  return redis.error_reply('ERR cache TTL must be an integer number of ms >= 1')
end
local function wrong(key, want)
  local kind = redis.call('TYPE', key)['ok']
  return kind ~= 'none' and kind ~= want
end
if wrong(KEYS[1], 'string') then return -1 end
if wrong(KEYS[3], 'string') then return -2 end
if wrong(KEYS[2], 'zset') then return -3 end
-- A sorted set is our index only if its members are our entry keys: the first
-- is checked (O(1)), so the pruning below never trims someone else's set.
local first = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
if first and string.sub(first, 1, #ARGV[4]) ~= ARGV[4] then return -4 end
if (redis.call('GET', KEYS[3]) or '') ~= ARGV[1] then
  return 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
redis.call('SET', KEYS[1], ARGV[2], 'PX', ttl)
redis.call('ZADD', KEYS[2], now + ttl, KEYS[1])
local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
redis.call('PEXPIRE', KEYS[2], math.max(1, tonumber(last[2]) - now))
return 1
