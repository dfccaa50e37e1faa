#!lua
-- A job attempt failed: schedule a retry with exponential backoff, or, after
-- the last attempt, move it to the dead-letter stream.
-- KEYS[1]: stream, ready jobs   KEYS[2]: sorted set, delayed jobs
-- KEYS[3]: stream, dead letters   KEYS[4]: hash, the job record
-- KEYS[5]: hash, queue counters
-- ARGV[1]: consumer group   ARGV[2]: stream entry id   ARGV[3]: job id
-- ARGV[4]: error text   ARGV[5]: payload (JSON, from the entry)
-- ARGV[6]: seconds to keep a dead job's record   ARGV[7]: most dead letters kept
-- ARGV[8]: 1 to dead-letter at once, whatever attempts are left (a poison job)
-- Returns: {-1, 0} if the entry was already acknowledged (nothing done),
-- {0, attempts} if the job was dead-lettered, {1, delay ms} if it will retry,
-- or an error raised before anything is written: BADARGS, BADTYPE <key> <found>
-- <expected>. A job whose record is gone or unreadable is dead-lettered (with
-- the payload from its entry), never dropped.
local keep, dead_max = tonumber(ARGV[6]), tonumber(ARGV[7])
if not (keep and dead_max) or keep < 1 or dead_max < 1 then
  return redis.error_reply('BADARGS queues_fail: want keep >= 1 and dead max >= 1')
end
local function check(key, ...)
  local found = redis.call('TYPE', key).ok
  for _, ok in ipairs({...}) do if found == ok then return nil end end
  return redis.error_reply('BADTYPE ' .. key .. ' ' .. found .. ' ' .. ({...})[1])
end
local err = check(KEYS[1], 'stream', 'none') or check(KEYS[2], 'zset', 'none')
  or check(KEYS[3], 'stream', 'none') or check(KEYS[4], 'hash', 'none')
  or check(KEYS[5], 'hash', 'none')
if err then return err end
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1, 0} end
local p = redis.pcall('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if p.err or #p == 0 then return {-1, 0} end
local f = redis.call('HMGET', KEYS[4], 'attempts', 'max_attempts', 'backoff_ms',
                     'max_backoff_ms', 'payload')
local attempts, max_attempts = tonumber(f[1]), tonumber(f[2])
local backoff, cap = tonumber(f[3]), tonumber(f[4])
local payload, error = f[5], ARGV[4]
if not (attempts and max_attempts and backoff and cap and payload) then
  payload, attempts, max_attempts = ARGV[5], attempts or 0, 0
  error = 'job record missing or unreadable; last error: ' .. ARGV[4]
end
if ARGV[8] == '1' then max_attempts = 0 end

-- Checked: now write.
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
if attempts >= max_attempts then
  redis.call('XADD', KEYS[3], 'MAXLEN', '=', dead_max, '*', 'job', ARGV[3],
             'payload', payload, 'attempts', attempts, 'error', error)
  redis.call('HSET', KEYS[4], 'state', 'dead', 'error', error, 'finished_ms', now)
  redis.call('EXPIRE', KEYS[4], keep)
  redis.call('HINCRBY', KEYS[5], 'dead', 1)
  return {0, attempts}
end
local delay = math.floor(math.min(backoff * 2 ^ (attempts - 1), cap))
redis.call('ZADD', KEYS[2], now + delay, cjson.encode({ARGV[3], payload}))
redis.call('HSET', KEYS[4], 'state', 'retrying', 'error', error,
           'due_ms', now + delay, 'delay_ms', delay)
redis.call('HINCRBY', KEYS[5], 'retried', 1)
return {1, delay}
