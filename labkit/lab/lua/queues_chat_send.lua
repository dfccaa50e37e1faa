#!lua
-- A chat client sends a message: append it to the session's history and queue
-- a request for the workers, both or neither.
-- KEYS[1]: list, the session's history (JSON messages)
-- KEYS[2]: stream, requests (fields token, text; consumer group ARGV[4])
-- ARGV[1]: session token   ARGV[2]: the text   ARGV[3]: the message as JSON
-- ARGV[4]: consumer group   ARGV[5]: most requests waiting or in flight
-- Returns: the request's entry id, or an error raised before anything is
-- written: EXPIRED <key> (no such session), BADTYPE <key> <found> <expected>,
-- FULL <requests held> <bound>
local function check(key, ...)
  local found = redis.call('TYPE', key).ok
  for _, ok in ipairs({...}) do if found == ok then return nil end end
  return redis.error_reply('BADTYPE ' .. key .. ' ' .. found .. ' ' .. ({...})[1])
end
local err = check(KEYS[1], 'list', 'none') or check(KEYS[2], 'stream', 'none')
if err then return err end
if redis.call('EXISTS', KEYS[1]) == 0 then
  return redis.error_reply('EXPIRED ' .. KEYS[1])
end
local held = redis.call('XLEN', KEYS[2])
if held >= tonumber(ARGV[5]) then
  return redis.error_reply('FULL ' .. held .. ' ' .. ARGV[5])
end

-- Checked: now write. (RPUSH keeps the session's TTL: it never extends it.)
if held == 0 and redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('XGROUP', 'CREATE', KEYS[2], ARGV[4], '0', 'MKSTREAM')
end
redis.call('RPUSH', KEYS[1], ARGV[3])
return redis.call('XADD', KEYS[2], '*', 'token', ARGV[1], 'text', ARGV[2])
