#!lua flags=no-writes
-- A queue's numbers, read at one instant.
-- KEYS[1]: stream, ready jobs   KEYS[2]: sorted set, delayed jobs
-- KEYS[3]: hash, queue counters
-- ARGV[1]: consumer group
-- Returns: {entries in the stream, entries pending (delivered, unacknowledged),
-- delayed jobs, counters as a flat field/value list}, or an error:
-- BADTYPE <key> <found> <expected>
local function check(key, ...)
  local found = redis.call('TYPE', key).ok
  for _, ok in ipairs({...}) do if found == ok then return nil end end
  return redis.error_reply('BADTYPE ' .. key .. ' ' .. found .. ' ' .. ({...})[1])
end
local err = check(KEYS[1], 'stream', 'none') or check(KEYS[2], 'zset', 'none')
  or check(KEYS[3], 'hash', 'none')
if err then return err end
local pending = 0
if redis.call('EXISTS', KEYS[1]) == 1 then
  local p = redis.pcall('XPENDING', KEYS[1], ARGV[1])
  if not p.err then pending = p[1] end
end
return {redis.call('XLEN', KEYS[1]), pending, redis.call('ZCARD', KEYS[2]),
        redis.call('HGETALL', KEYS[3])}
