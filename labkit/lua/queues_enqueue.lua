-- Enqueue one job: its record, then either the ready stream or the delayed set.
-- KEYS[1]: stream, ready jobs (fields job, payload)
-- KEYS[2]: sorted set, delayed jobs (member = JSON [id, payload], score = due ms)
-- KEYS[3]: hash, the job record     KEYS[4]: hash, queue counters
-- ARGV[1]: job id   ARGV[2]: payload (JSON)   ARGV[3]: delay (ms, >= 0)
-- ARGV[4]: max attempts   ARGV[5]: backoff base (ms)   ARGV[6]: backoff cap (ms)
-- Returns: the due time in ms since the epoch (server clock)
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local delay = tonumber(ARGV[3])
local state = 'queued'
if delay > 0 then state = 'delayed' end
redis.call('HSET', KEYS[3], 'payload', ARGV[2], 'state', state, 'attempts', 0,
           'max_attempts', ARGV[4], 'backoff_ms', ARGV[5], 'max_backoff_ms', ARGV[6],
           'enqueued_ms', now, 'due_ms', now + delay)
if delay > 0 then
  redis.call('ZADD', KEYS[2], now + delay, cjson.encode({ARGV[1], ARGV[2]}))
else
  redis.call('XADD', KEYS[1], '*', 'job', ARGV[1], 'payload', ARGV[2])
end
redis.call('HINCRBY', KEYS[4], 'enqueued', 1)
return now + delay
