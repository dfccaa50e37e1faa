-- A job attempt failed: schedule a retry with exponential backoff, or, after
-- the last attempt, move it to the dead-letter stream.
-- KEYS[1]: stream, ready jobs   KEYS[2]: sorted set, delayed jobs
-- KEYS[3]: stream, dead letters   KEYS[4]: hash, the job record
-- KEYS[5]: hash, queue counters
-- ARGV[1]: consumer group   ARGV[2]: stream entry id   ARGV[3]: job id
-- ARGV[4]: error text
-- Returns: {-1, 0} if the entry was already acknowledged (nothing done),
-- {0, attempts} if the job was dead-lettered, {1, delay ms} if it will retry
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return {-1, 0} end
redis.call('XDEL', KEYS[1], ARGV[2])
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local f = redis.call('HMGET', KEYS[4], 'attempts', 'max_attempts', 'backoff_ms',
                     'max_backoff_ms', 'payload')
local attempts, max_attempts = tonumber(f[1]), tonumber(f[2])
if attempts >= max_attempts then
  redis.call('XADD', KEYS[3], '*', 'job', ARGV[3], 'payload', f[5],
             'attempts', attempts, 'error', ARGV[4])
  redis.call('HSET', KEYS[4], 'state', 'dead', 'error', ARGV[4], 'finished_ms', now)
  redis.call('HINCRBY', KEYS[5], 'dead', 1)
  return {0, attempts}
end
local delay = math.min(tonumber(f[3]) * 2 ^ (attempts - 1), tonumber(f[4]))
delay = math.floor(delay)
redis.call('ZADD', KEYS[2], now + delay, cjson.encode({ARGV[3], f[5]}))
redis.call('HSET', KEYS[4], 'state', 'retrying', 'error', ARGV[4],
           'due_ms', now + delay, 'delay_ms', delay)
redis.call('HINCRBY', KEYS[5], 'retried', 1)
return {1, delay}
