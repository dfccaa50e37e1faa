#!lua
-- A chat worker answers one request: once, whoever else also answers it.
-- The answer is delivered only if no worker delivered one before (a per-session
-- set of answered request ids is the marker, written with the answer); a
-- second worker's answer (after a takeover) is dropped, and the request is
-- acknowledged either way. The reply stream and the marker set expire with
-- the session, at its very instant (PEXPIRETIME, then PEXPIREAT).
-- KEYS[1]: stream, requests   KEYS[2]: list, the session's history
-- KEYS[3]: stream, the session's replies   KEYS[4]: set, answered request ids
-- ARGV[1]: consumer group   ARGV[2]: request entry id   ARGV[3]: answer text
-- ARGV[4]: the answer as a JSON history message   ARGV[5]: worker name
-- ARGV[6]: most replies kept per session (MAXLEN)
-- Returns: {1, reply id} if this call delivered the answer, {0, ''} if the
-- request had been answered already, {-1, ''} if the session has expired; or an
-- error raised before anything is written: BADTYPE <key> <found> <expected>
local function check(key, ...)
  local found = redis.call('TYPE', key).ok
  for _, ok in ipairs({...}) do if found == ok then return nil end end
  return redis.error_reply('BADTYPE ' .. key .. ' ' .. found .. ' ' .. ({...})[1])
end
local err = check(KEYS[1], 'stream', 'none') or check(KEYS[2], 'list', 'none')
  or check(KEYS[3], 'stream', 'none') or check(KEYS[4], 'set', 'none')
if err then return err end
local expires = redis.call('PEXPIRETIME', KEYS[2])  -- -2 none, -1 no TTL

-- Checked: now write.
local function done()
  if redis.call('EXISTS', KEYS[1]) == 1 then
    redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
    redis.call('XDEL', KEYS[1], ARGV[2])
  end
end
if redis.call('SISMEMBER', KEYS[4], ARGV[2]) == 1 then done() return {0, ''} end
if expires < 0 then done() return {-1, ''} end
redis.call('SADD', KEYS[4], ARGV[2])
redis.call('PEXPIREAT', KEYS[4], expires)
redis.call('RPUSH', KEYS[2], ARGV[4])
local id = redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[6], '*', 'request', ARGV[2],
                      'text', ARGV[3], 'worker', ARGV[5])
redis.call('PEXPIREAT', KEYS[3], expires)
done()
return {1, id}
