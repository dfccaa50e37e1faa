#!lua
-- A worker leaves the consumer group, unless it still holds entries.
-- (XGROUP DELCONSUMER drops a consumer's pending entries with it: those jobs
-- would never be delivered again. A consumer holding some stays, so that another
-- worker can take them over with XAUTOCLAIM.)
-- KEYS[1]: stream, ready jobs
-- ARGV[1]: consumer group   ARGV[2]: worker (consumer) name
-- Returns: 1 if the consumer was removed, 0 if not (it holds entries, or there
-- is no such stream, group or consumer)
if redis.call('TYPE', KEYS[1]).ok ~= 'stream' then return 0 end
local p = redis.pcall('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if p.err or #p > 0 then return 0 end
return redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2]) >= 0 and 1 or 0
