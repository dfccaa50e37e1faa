#!lua
-- Publish a numbered message and keep it in a capped stream beside the channel,
-- so that a subscriber that missed it can read it back (XRANGE from its last id).
-- KEYS[1]: stream, the channel's recent history (<prefix>:{<channel>}: same slot
--          as the channel, so SPUBLISH from here stays on the channel's shard)
-- ARGV[1]: channel   ARGV[2]: the envelope, a JSON object ('{...}')
-- ARGV[3]: MAXLEN, entries kept (whole number >= 1)
-- ARGV[4]: TTL of the stream in milliseconds (whole number >= 1)
-- ARGV[5]: '1' for SPUBLISH (sharded pub/sub), '0' for PUBLISH
-- Returns: {receivers, entry id}; or {-1, what} when KEYS[1] holds another
--   type, or a stream of other entries. Everything is checked before the first write.
local maxlen, ttl = tonumber(ARGV[3]), tonumber(ARGV[4])
if not maxlen or maxlen < 1 or maxlen % 1 ~= 0 then
  return redis.error_reply('ERR MAXLEN must be a whole number >= 1')
end
if not ttl or ttl < 1 or ttl % 1 ~= 0 then
  return redis.error_reply('ERR TTL must be a whole number of ms >= 1')
end
if string.sub(ARGV[2], 1, 1) ~= '{' then
  return redis.error_reply('ERR the envelope must be a JSON object')
end
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind ~= 'none' and kind ~= 'stream' then return {-1, kind} end
-- A stream is our history only if its entries are {m = <envelope>}: the newest
-- is checked (O(1)), so MAXLEN never trims away someone else's stream.
if kind == 'stream' then
  local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)[1]
  if last and (#last[2] ~= 2 or last[2][1] ~= 'm') then
    return {-1, 'stream whose entries are not {m: <envelope>}'}
  end
end

-- Exact MAXLEN (not ~): the bound is what the docstring says, no more.
local id = redis.call('XADD', KEYS[1], 'MAXLEN', maxlen, '*', 'm', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ttl)
-- The live copy carries the entry id: '{"id":"<id>",' + the envelope's fields.
local live = '{"id":"' .. id .. '",' .. string.sub(ARGV[2], 2)
local command = (ARGV[5] == '1') and 'SPUBLISH' or 'PUBLISH'
return {redis.call(command, ARGV[1], live), id}
