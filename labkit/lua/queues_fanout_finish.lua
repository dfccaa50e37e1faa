-- Mark one part of a fanned-out job finished; say whether the job is now done.
-- A part id already in the set changes nothing, so a part delivered twice
-- counts once, and "done" is reported to exactly one caller.
-- KEYS[1]: hash, the job's completion record (field total; done once fired)
-- KEYS[2]: set, ids of finished parts
-- ARGV[1]: part id
-- Returns: {new 0/1, parts finished, total, done-now 0/1}, or an error if the
-- completion record does not exist
local total = tonumber(redis.call('HGET', KEYS[1], 'total'))
if not total then return redis.error_reply('no completion record ' .. KEYS[1]) end
local new = redis.call('SADD', KEYS[2], ARGV[1])
local finished = redis.call('SCARD', KEYS[2])
local ttl = redis.call('TTL', KEYS[1])
if ttl > 0 then redis.call('EXPIRE', KEYS[2], ttl) end
local fired = 0
if new == 1 and finished == total then
  fired = redis.call('HSETNX', KEYS[1], 'done', 1)
end
return {new, finished, total, fired}
