-- Tic-tac-toe restart: empty board, X to play, a NEW version, announced.
-- KEYS[1]: hash, the game {board, turn, version, winner}
-- KEYS[2]: list, the move log (gets a "version:restart::server" entry)
-- ARGV[1]: announce channel   ARGV[2]: name of the server that asks
-- Returns: {1, 'ok', board, turn, version, winner}
-- The version keeps counting up across restarts: a server that sees version n
-- knows it is behind whatever happened since, restart included.
local version = tonumber(redis.call('HGET', KEYS[1], 'version') or '0') + 1
local board = '.........'
redis.call('HSET', KEYS[1], 'board', board, 'turn', 'X', 'version', version,
           'winner', '')
redis.call('RPUSH', KEYS[2], version .. ':restart::' .. ARGV[2])
redis.call('PUBLISH', ARGV[1], version)
return {1, 'ok', board, 'X', version, ''}
