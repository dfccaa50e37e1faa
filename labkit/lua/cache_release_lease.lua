#!lua flags=allow-oom
-- Release a lease only if the caller still holds it (compare-and-delete).
--
-- KEYS[1]  the lease key (string, random token)
-- ARGV[1]  the caller's lease token
-- Returns  1 if the lease was deleted, 0 if it belonged to someone else or
--          had already gone.
-- allow-oom: a release only frees memory, so it must run even when the
-- server is over maxmemory (otherwise waiters would wait out the lease).
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
