#!lua
-- A worker starts one attempt of a job it was delivered.
-- KEYS[1]: stream, ready jobs   KEYS[2]: hash, the job record
-- ARGV[1]: consumer group   ARGV[2]: worker (consumer) name   ARGV[3]: entry id
-- Returns: {attempts including this one, max attempts, deliveries}, with nothing
-- charged when the attempts are already used up (attempts > max: dead-letter it);
-- {0, 0, 0} if
-- the record is gone (it expired or was deleted); {-1, 0, 0} if this worker no
-- longer holds the entry (another took it over, or it was acknowledged): skip it.
-- Or an error raised before anything is written: BADTYPE <key> <found>
-- <expected>, BADRECORD <key> <what>.
-- The entry's idle time is reset (XCLAIM ... JUSTID by its own consumer), so the
-- visibility timeout counts from the start of this attempt, not from the read.
local function check(key, ...)
  local found = redis.call('TYPE', key).ok
  for _, ok in ipairs({...}) do if found == ok then return nil end end
  return redis.error_reply('BADTYPE ' .. key .. ' ' .. found .. ' ' .. ({...})[1])
end
local err = check(KEYS[1], 'stream') or check(KEYS[2], 'hash', 'none')
if err then return err end
local p = redis.pcall('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if p.err or #p == 0 or p[1][2] ~= ARGV[2] then return {-1, 0, 0} end
if redis.call('EXISTS', KEYS[2]) == 0 then return {0, 0, 0} end
local f = redis.call('HMGET', KEYS[2], 'attempts', 'max_attempts')
local attempts, max_attempts = tonumber(f[1]), tonumber(f[2])
if not (attempts and max_attempts) then
  return redis.error_reply('BADRECORD ' .. KEYS[2] .. ' no-attempts-fields')
end

if attempts >= max_attempts then return {attempts + 1, max_attempts, p[1][4]} end

-- Checked: now write.
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
attempts = redis.call('HINCRBY', KEYS[2], 'attempts', 1)
redis.call('HSET', KEYS[2], 'state', 'running', 'worker', ARGV[2], 'started_ms', now)
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'JUSTID')
return {attempts, max_attempts, p[1][4]}
