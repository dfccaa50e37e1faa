-- Move delayed jobs that are due (server clock) into the ready stream.
-- KEYS[1]: sorted set, delayed jobs (member = JSON [id, payload], score = due ms)
-- KEYS[2]: stream, ready jobs
-- ARGV[1]: most jobs to move in this call
-- Returns: {jobs moved, ms until the next delayed job is due or -1 if none}
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, ARGV[1])
for _, member in ipairs(due) do
  local job = cjson.decode(member)
  redis.call('XADD', KEYS[2], '*', 'job', job[1], 'payload', job[2])
  redis.call('ZREM', KEYS[1], member)
end
local next_due = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #next_due == 0 then return {#due, -1} end
return {#due, math.max(0, tonumber(next_due[2]) - now)}
