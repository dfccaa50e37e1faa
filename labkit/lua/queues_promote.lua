#!lua
-- Move delayed jobs that are due (server clock) into the ready stream.
-- KEYS[1]: sorted set, delayed jobs (member = JSON [id, payload], score = due ms)
-- KEYS[2]: stream, ready jobs
-- ARGV[1]: most jobs to move in this call (>= 1)
-- Returns: {jobs moved, ms until the next delayed job is due or -1 if none}, or an
-- error raised before anything is written: BADARGS, BADTYPE <key> <found>
-- <expected>, BADRECORD <key> <what> (a member labkit did not write)
local limit = tonumber(ARGV[1])
if not limit or limit < 1 then
  return redis.error_reply('BADARGS queues_promote: want a count >= 1')
end
local function check(key, ...)
  local found = redis.call('TYPE', key).ok
  for _, ok in ipairs({...}) do if found == ok then return nil end end
  return redis.error_reply('BADTYPE ' .. key .. ' ' .. found .. ' ' .. ({...})[1])
end
local err = check(KEYS[1], 'zset', 'none') or check(KEYS[2], 'stream', 'none')
if err then return err end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, limit)
local jobs = {}
for i, member in ipairs(due) do
  local ok, job = pcall(cjson.decode, member)
  if not ok or type(job) ~= 'table' or type(job[1]) ~= 'string'
      or type(job[2]) ~= 'string' then
    return redis.error_reply('BADRECORD ' .. KEYS[1] .. ' member-not-[id,payload]')
  end
  jobs[i] = job
end

-- Checked: now write.
for i, job in ipairs(jobs) do
  redis.call('XADD', KEYS[2], '*', 'job', job[1], 'payload', job[2])
  redis.call('ZREM', KEYS[1], due[i])
end
local next_due = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #next_due == 0 then return {#due, -1} end
return {#due, math.max(0, tonumber(next_due[2]) - now)}
