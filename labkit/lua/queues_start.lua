-- Record that a worker starts one attempt of a job.
-- KEYS[1]: hash, the job record
-- ARGV[1]: worker (consumer) name
-- Returns: {attempts including this one, max attempts}, or {0, 0} if the record
-- is gone (it expired or the database was flushed)
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, 0} end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'state', 'running', 'worker', ARGV[1], 'started_ms', now)
return {attempts, tonumber(redis.call('HGET', KEYS[1], 'max_attempts'))}
