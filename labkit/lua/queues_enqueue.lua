#!lua
-- Enqueue a batch of jobs: their records, then the ready stream or the delayed set.
-- KEYS[1]: stream, ready jobs (fields job, payload; consumer group ARGV[6])
-- KEYS[2]: sorted set, delayed jobs (member = JSON [id, payload], score = due ms)
-- KEYS[3]: hash, queue counters   KEYS[4..]: hash, one new job record per job
-- ARGV[1]: delay (ms, >= 0)   ARGV[2]: max attempts   ARGV[3]: backoff base (ms)
-- ARGV[4]: backoff cap (ms)   ARGV[5]: most jobs the queue may hold (waiting,
-- running and delayed)   ARGV[6]: consumer group
-- ARGV[7], ARGV[8]: first job's id and payload (JSON); then the next job's...
-- Returns: the due time in ms since the epoch (server clock), or an error raised
-- before anything is written: BADARGS, BADTYPE <key> <found> <expected>,
-- FULL <jobs held> <bound>
local delay, attempts = tonumber(ARGV[1]), tonumber(ARGV[2])
local backoff, cap, bound = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local n = #KEYS - 3
if not (delay and attempts and backoff and cap and bound) or delay < 0
    or attempts < 1 or backoff < 0 or cap < 0 or bound < 1 or n < 1
    or #ARGV ~= 6 + 2 * n then
  return redis.error_reply('BADARGS queues_enqueue: ' .. #KEYS .. ' keys, ' .. #ARGV
    .. ' args (want 3 + n keys, 6 + 2n args, numbers in range)')
end
local function check(key, ...)
  local found = redis.call('TYPE', key).ok
  for _, ok in ipairs({...}) do if found == ok then return nil end end
  return redis.error_reply('BADTYPE ' .. key .. ' ' .. found .. ' ' .. ({...})[1])
end
local err = check(KEYS[1], 'stream', 'none') or check(KEYS[2], 'zset', 'none')
  or check(KEYS[3], 'hash', 'none')
if err then return err end
for first = 4, #KEYS, 1000 do  -- no new job's record may exist yet
  local last = math.min(first + 999, #KEYS)
  if redis.call('EXISTS', unpack(KEYS, first, last)) > 0 then
    for i = first, last do
      err = check(KEYS[i], 'none')
      if err then return err end
    end
  end
end
local held = redis.call('XLEN', KEYS[1]) + redis.call('ZCARD', KEYS[2])
if held + n > bound then return redis.error_reply('FULL ' .. held .. ' ' .. bound) end

-- Checked: now write.
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('XGROUP', 'CREATE', KEYS[1], ARGV[6], '0', 'MKSTREAM')
end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local state = 'queued'
if delay > 0 then state = 'delayed' end
for i = 1, n do
  local id, payload = ARGV[5 + 2 * i], ARGV[6 + 2 * i]
  redis.call('HSET', KEYS[3 + i], 'payload', payload, 'state', state, 'attempts', 0,
             'max_attempts', attempts, 'backoff_ms', backoff, 'max_backoff_ms', cap,
             'enqueued_ms', now, 'due_ms', now + delay)
  if delay > 0 then
    redis.call('ZADD', KEYS[2], now + delay, cjson.encode({id, payload}))
  else
    redis.call('XADD', KEYS[1], '*', 'job', id, 'payload', payload)
  end
end
redis.call('HINCRBY', KEYS[3], 'enqueued', n)
return now + delay
