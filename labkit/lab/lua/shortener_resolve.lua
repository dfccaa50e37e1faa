#!lua
-- Look a short code up and count the lookup on this server, in one round trip.
--
-- Both keys live on the same server: the link on the server that owns its
-- code, the counters on every server. Types are checked before any write, so
-- a key holding something else costs nothing.
--
-- KEYS[1]  the link key   (string: the long URL, with a TTL)
-- KEYS[2]  the counters   (hash: fields lookups, misses)
-- Returns  {1, url} on a hit, {0} on a miss, or {-1, key, type} (nothing
--          written) when a key holds another type.
local link = redis.call('TYPE', KEYS[1]).ok
if link ~= 'string' and link ~= 'none' then
  return {-1, KEYS[1], link}
end
local counters = redis.call('TYPE', KEYS[2]).ok
if counters ~= 'hash' and counters ~= 'none' then
  return {-1, KEYS[2], counters}
end
local url = redis.call('GET', KEYS[1])
redis.call('HINCRBY', KEYS[2], 'lookups', 1)
if not url then
  redis.call('HINCRBY', KEYS[2], 'misses', 1)
  return {0}
end
return {1, url}
