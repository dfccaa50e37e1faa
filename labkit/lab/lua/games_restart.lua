#!lua
-- Tic-tac-toe restart: empty board, X to play, a NEW version, announced.
-- KEYS[1]: hash, the game {board, turn, version, winner}
-- KEYS[2]: list, the move log (gets a "version:restart::server" entry), capped
-- ARGV[1]: announce channel   ARGV[2]: name of the server that asks
-- ARGV[3]: most log entries kept (whole number >= 1)
-- Returns: {1, 'ok', board, turn, version, winner}; or {-1, problem, key,
--   found} with nothing written, as games_move.lua.
-- The version keeps counting up across restarts: a server that sees version n
-- knows it is behind whatever happened since, restart included.
for i, want in ipairs({'hash', 'list'}) do
  local kind = redis.call('TYPE', KEYS[i])['ok']
  if kind ~= 'none' and kind ~= want then return {-1, 'wrong-type', KEYS[i], kind} end
end
local keep = tonumber(ARGV[3])
if not keep or keep < 1 or keep % 1 ~= 0 then
  return redis.error_reply('ERR log size must be a whole number >= 1')
end
local stored = redis.call('HGET', KEYS[1], 'version')
local version = tonumber(stored or '0')
if not version then return {-1, 'corrupt', KEYS[1], 'version ' .. stored} end
version = version + 1
local board = '.........'
redis.call('HSET', KEYS[1], 'board', board, 'turn', 'X', 'version', version,
           'winner', '')
redis.call('RPUSH', KEYS[2], version .. ':restart::' .. ARGV[2])
redis.call('LTRIM', KEYS[2], -keep, -1)
redis.call('PUBLISH', ARGV[1], version)
return {1, 'ok', board, 'X', version, ''}
