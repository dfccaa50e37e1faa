#!lua
-- The Node.js tutorial's Lua "token bucket", kept to show that it is really a
-- fixed window: a counter that starts a window of ARGV[2] seconds on first use.
-- KEYS[1]: string counter, expiring ARGV[2] seconds after the window's first request
-- ARGV[1]: limit (requests per window)   ARGV[2]: window (whole seconds)
-- Returns: 1 if allowed, 0 if refused
local count = tonumber(redis.call('GET', KEYS[1]) or '0')
if count >= tonumber(ARGV[1]) then
  return 0
end
if count == 0 then
  redis.call('SET', KEYS[1], 1, 'EX', ARGV[2])
else
  redis.call('INCR', KEYS[1])
end
return 1
