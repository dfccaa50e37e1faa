#!lua
-- The smallest useful script: write a value and read it back, as the floor
-- that benchmarks/bench_basics.py compares EVALSHA with (a GET, a pipeline).
-- KEYS[1]: string key
-- ARGV[1]: value to write
-- Returns: the value read back
redis.call('SET', KEYS[1], ARGV[1])
return redis.call('GET', KEYS[1])
