#!lua
-- Mark one part of a fanned-out job finished; say whether the job is now done.
-- A part id already in the set changes nothing, so a part delivered twice
-- counts once, and "done" is reported to exactly one caller.
-- KEYS[1]: hash, the job's completion record (field total; done once fired)
-- KEYS[2]: set, ids of finished parts
-- ARGV[1]: part id
-- Returns: {new 0/1, parts finished, total, done-now 0/1}, or an error raised
-- before anything is written: NORECORD <key> (no completion record),
-- BADTYPE <key> <found> <expected>, BADRECORD <key> <what>
local function check(key, ...)
  local found = redis.call('TYPE', key).ok
  for _, ok in ipairs({...}) do if found == ok then return nil end end
  return redis.error_reply('BADTYPE ' .. key .. ' ' .. found .. ' ' .. ({...})[1])
end
local err = check(KEYS[1], 'hash', 'none') or check(KEYS[2], 'set', 'none')
if err then return err end
if redis.call('EXISTS', KEYS[1]) == 0 then
  return redis.error_reply('NORECORD ' .. KEYS[1])
end
local total = tonumber(redis.call('HGET', KEYS[1], 'total'))
if not total or total < 1 then
  return redis.error_reply('BADRECORD ' .. KEYS[1] .. ' no-total-field')
end

-- Checked: now write.
local new = redis.call('SADD', KEYS[2], ARGV[1])
local finished = redis.call('SCARD', KEYS[2])
local expires = redis.call('PEXPIRETIME', KEYS[1])  -- the record's expiry, exactly
if expires > 0 then redis.call('PEXPIREAT', KEYS[2], expires) end
local fired = 0
if new == 1 and finished == total then
  fired = redis.call('HSETNX', KEYS[1], 'done', 1)
end
return {new, finished, total, fired}
