-- A job succeeded: acknowledge it once, whoever finishes it.
-- KEYS[1]: stream, ready jobs   KEYS[2]: hash, the job record
-- KEYS[3]: hash, queue counters
-- ARGV[1]: consumer group   ARGV[2]: stream entry id
-- ARGV[3]: seconds to keep the finished job record
-- Returns: 1 if this call acknowledged the job, 0 if it was already acknowledged
-- (another worker recovered it and finished first: this run was a duplicate)
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('XDEL', KEYS[1], ARGV[2])
local t = redis.call('TIME')
redis.call('HSET', KEYS[2], 'state', 'done', 'finished_ms',
           t[1] * 1000 + math.floor(t[2] / 1000))
redis.call('EXPIRE', KEYS[2], ARGV[3])
redis.call('HINCRBY', KEYS[3], 'completed', 1)
return 1
