#!lua
-- Heartbeat of a long job: reset its entry's idle time, if this worker still
-- holds it, so that no other worker takes it over (XAUTOCLAIM) while it runs.
-- KEYS[1]: stream, ready jobs
-- ARGV[1]: consumer group   ARGV[2]: worker (consumer) name   ARGV[3]: entry id
-- Returns: 1 if the entry was still this worker's (its idle time is now 0),
-- 0 if another worker took it over or it was acknowledged (nothing done)
if redis.call('TYPE', KEYS[1]).ok ~= 'stream' then return 0 end
local p = redis.pcall('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if p.err or #p == 0 or p[1][2] ~= ARGV[2] then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'JUSTID')
return 1
