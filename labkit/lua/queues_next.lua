#!lua
-- Between two jobs, in one round trip: acknowledge the job a worker finished
-- (if any), then start the next one it was delivered (if any).
-- KEYS[1]: stream, ready jobs   KEYS[2]: hash, queue counters
-- KEYS[3]: hash, the finished job's record   KEYS[4]: hash, the next job's record
-- (KEYS[3] or KEYS[4] is the counters' key again when there is no such job)
-- ARGV[1]: consumer group   ARGV[2]: worker (consumer) name
-- ARGV[3]: the finished job's entry id, '' if none
-- ARGV[4]: seconds to keep the finished job's record
-- ARGV[5]: the next job's entry id, '' if none
-- Returns: "acked attempts max_attempts deliveries" (four integers in one
-- string: one reply to parse, not five). acked: 1 if this call
-- acknowledged the finished job, 0 if none was given or it was already
-- acknowledged (another worker took it over and finished first: this run was a
-- duplicate). attempts: of the next job, including the one started now, with
-- nothing charged when they are used up (attempts > max: dead-letter it); 0 if
-- its record is gone (expired or deleted); -1 if this worker no longer holds
-- the entry (another took it over, or it was acknowledged): skip it.
-- Or an error raised before anything is written: BADTYPE <key> <found>
-- <expected>, BADRECORD <key> <what>.
-- Acknowledging: XACK, XDEL, the record marked done (kept ARGV[4] s), counted.
-- Starting: one attempt charged, and the entry's idle time reset (XCLAIM ...
-- JUSTID by its own consumer), so the visibility timeout counts from the start
-- of this attempt, not from the read.
local stream, stats, done, job = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local group, me, done_id, keep, job_id = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local function bad(key, want, reply)
  local found = redis.call('TYPE', key).ok
  if found == want or found == 'none' then return redis.error_reply(reply.err) end
  return redis.error_reply('BADTYPE ' .. key .. ' ' .. found .. ' ' .. want)
end

-- Reads first: a key of another type stops the script before any write.
local held, attempts, max_attempts, deliveries, start = 0, -1, 0, 0, false
if job_id ~= '' then
  local p = redis.pcall('XPENDING', stream, group, job_id, job_id, 1)
  if p.err then
    if redis.call('TYPE', stream).ok ~= 'none' then return bad(stream, 'stream', p) end
    p = {}
  end
  if #p == 1 and p[1][2] == me then
    local f = redis.pcall('HMGET', job, 'attempts', 'max_attempts')
    if f.err then return bad(job, 'hash', f) end
    attempts, max_attempts, deliveries = tonumber(f[1]), tonumber(f[2]), p[1][4]
    if not (attempts and max_attempts) then
      if redis.call('EXISTS', job) == 1 then
        return redis.error_reply('BADRECORD ' .. job .. ' no-attempts-fields')
      end
      attempts, max_attempts, deliveries = 0, 0, 0
    elseif attempts >= max_attempts then
      attempts = attempts + 1  -- used up: nothing charged, dead-letter it
    else
      start = true
    end
  end
end
if done_id ~= '' then
  held = redis.pcall('HEXISTS', done, 'state')
  if type(held) == 'table' then return bad(done, 'hash', held) end
end

-- Checked: now write. The counter goes first, so that a counters key of
-- another type stops the script here; it is taken back if XACK finds nothing.
local now
local function clock()
  if not now then
    local t = redis.call('TIME')
    now = t[1] * 1000 + math.floor(t[2] / 1000)
  end
  return now
end
local acked = 0
if done_id ~= '' then
  local c = redis.pcall('HINCRBY', stats, 'completed', 1)
  if type(c) == 'table' then return bad(stats, 'hash', c) end
  local a = redis.pcall('XACK', stream, group, done_id)
  if type(a) == 'table' or a == 0 then
    redis.call('HINCRBY', stats, 'completed', -1)
    if type(a) == 'table' then return bad(stream, 'stream', a) end
  else
    acked = 1
    redis.call('XDEL', stream, done_id)
    if held == 1 then
      redis.call('HSET', done, 'state', 'done', 'finished_ms', clock())
      redis.call('EXPIRE', done, keep)
    end
  end
end
local function reply()
  return acked .. ' ' .. attempts .. ' ' .. max_attempts .. ' ' .. deliveries
end
if not start then return reply() end
attempts = attempts + 1
redis.call('HSET', job, 'attempts', attempts, 'state', 'running', 'worker', me,
           'started_ms', clock())
redis.call('XCLAIM', stream, group, me, 0, job_id, 'JUSTID')
return reply()
