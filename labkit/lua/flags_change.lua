#!lua
-- One flag change: written, numbered and announced in one atomic step.
-- KEYS[1]: hash {flag name -> JSON document}
-- KEYS[2]: string, the flag set's version: a counter bumped by every change
-- ARGV[1]: channel   ARGV[2]: flag name   ARGV[3]: JSON document, or '' to delete
-- ARGV[4]: the announcement's body, JSON [name, document or null]
-- Publishes on ARGV[1]: "<version> <body>", so every listener can tell an older
-- change from a newer one. Returns the version (1 for a flag set's first change),
-- or an error (BADARGS, BADSTATE: a key holds something else) before any write.
if #ARGV ~= 4 or ARGV[1] == '' or ARGV[2] == '' then
  return redis.error_reply('BADARGS flags_change: want ARGV channel, name, document'
    .. ' (or empty to delete), body')
end
local flags_type = redis.call('TYPE', KEYS[1])['ok']
local version_type = redis.call('TYPE', KEYS[2])['ok']
local version = version_type == 'string' and redis.call('GET', KEYS[2])
if (flags_type ~= 'hash' and flags_type ~= 'none')
    or (version_type ~= 'string' and version_type ~= 'none')
    or (version and not string.match(version, '^%d+$')) then
  return redis.error_reply('BADSTATE flags_change: ' .. KEYS[1] .. ' must be a hash'
    .. ' and ' .. KEYS[2] .. ' an integer; found a ' .. flags_type .. ' and a '
    .. version_type)
end
version = redis.call('INCR', KEYS[2])
if ARGV[3] == '' then
  redis.call('HDEL', KEYS[1], ARGV[2])
else
  redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
end
redis.call('PUBLISH', ARGV[1], version .. ' ' .. ARGV[4])
return version
