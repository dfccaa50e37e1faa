#!lua
-- The lab's storage service: write one item, refusing stale fencing tokens.
--
-- With checking on, a write whose token is below the highest token already
-- accepted is refused: its writer's lease has ended and a newer holder has
-- written since. Equal tokens pass (one holder may write several times).
--
-- KEYS[1]  the data     (hash: item -> value)
-- KEYS[2]  the fence    (string: the highest token accepted so far)
-- KEYS[3]  the log      (stream: one entry per write attempt, MAXLEN ~)
-- ARGV[1]  item         ARGV[2]  value         ARGV[3]  the writer's token
-- ARGV[4]  writer name  ARGV[5]  '1' to check tokens, '0' to accept all
-- ARGV[6]  the log's MAXLEN
-- Returns  1 if written, 0 if refused (the attempt is logged either way).
if not string.match(ARGV[3], '^%d+$') then
  return redis.error_reply('ERR token must be a whole number >= 0, got ' .. ARGV[3])
end
local token = tonumber(ARGV[3])
local highest = tonumber(redis.call('GET', KEYS[2]) or '0')
local ok = 1
if ARGV[5] == '1' and token < highest then
  ok = 0
end
if ok == 1 then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  if token > highest then
    redis.call('SET', KEYS[2], token)
  end
end
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[6], '*', 'writer', ARGV[4],
  'token', ARGV[3], 'item', ARGV[1], 'value', ARGV[2], 'ok', ok)
return ok
