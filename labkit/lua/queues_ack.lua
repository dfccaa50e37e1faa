#!lua
-- A job succeeded: acknowledge it once, whoever finishes it.
-- KEYS[1]: stream, ready jobs   KEYS[2]: hash, the job record
-- KEYS[3]: hash, queue counters
-- ARGV[1]: consumer group   ARGV[2]: stream entry id
-- ARGV[3]: seconds to keep the finished job record
-- Returns: 1 if this call acknowledged the job, 0 if it was already acknowledged
-- (another worker took it over and finished first: this run was a duplicate), or
-- an error raised before anything is written: BADTYPE <key> <found> <expected>
local function check(key, ...)
  local found = redis.call('TYPE', key).ok
  for _, ok in ipairs({...}) do if found == ok then return nil end end
  return redis.error_reply('BADTYPE ' .. key .. ' ' .. found .. ' ' .. ({...})[1])
end
local err = check(KEYS[1], 'stream', 'none') or check(KEYS[2], 'hash', 'none')
  or check(KEYS[3], 'hash', 'none')
if err then return err end
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end

-- Checked: now write.
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('XDEL', KEYS[1], ARGV[2])
if redis.call('EXISTS', KEYS[2]) == 1 then
  local t = redis.call('TIME')
  redis.call('HSET', KEYS[2], 'state', 'done', 'finished_ms',
             t[1] * 1000 + math.floor(t[2] / 1000))
  redis.call('EXPIRE', KEYS[2], ARGV[3])
end
redis.call('HINCRBY', KEYS[3], 'completed', 1)
return 1
