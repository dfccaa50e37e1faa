#!lua
-- The lab's storage service: write one item, refusing stale fencing tokens.
--
-- With checking on, a write whose token is below the highest token already
-- accepted is refused: its writer's lease has ended and a newer holder has
-- written since. Equal tokens pass (one holder may write several times),
-- unless the check is strict: then a token equal to the highest passes only
-- from the writer that brought it first (two holders given the same number,
-- as after a failover that lost the counter's last INCR, are told apart).
--
-- KEYS[1]  the data     (hash: item -> value)
-- KEYS[2]  the fence    (string: the highest token accepted so far)
-- KEYS[3]  the log      (stream: one entry per write attempt, MAXLEN ~)
-- KEYS[4]  the holder   (string: the writer that brought the highest token)
-- ARGV[1]  item         ARGV[2]  value         ARGV[3]  the writer's token
-- ARGV[4]  writer name  ARGV[5]  '0' accept all, '1' check, '2' check strictly
-- ARGV[6]  the log's MAXLEN
-- Returns  1 if written, 0 if refused (the attempt is logged either way).
if not string.match(ARGV[3], '^%d+$') then
  return redis.error_reply('ERR token must be a whole number >= 0, got ' .. ARGV[3])
end
local token = tonumber(ARGV[3])
local highest = tonumber(redis.call('GET', KEYS[2]) or '0')
local ok = 1
if ARGV[5] ~= '0' and token < highest then
  ok = 0
elseif ARGV[5] == '2' and token == highest and highest > 0
    and redis.call('GET', KEYS[4]) ~= ARGV[4] then
  ok = 0
end
if ok == 1 then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  if token > highest then
    redis.call('SET', KEYS[2], token)
    redis.call('SET', KEYS[4], ARGV[4])
  end
end
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[6], '*', 'writer', ARGV[4],
  'token', ARGV[3], 'item', ARGV[1], 'value', ARGV[2], 'ok', ok)
return ok
