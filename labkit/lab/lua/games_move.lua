#!lua
-- Tic-tac-toe move: validate and apply in one step, then announce the version.
-- KEYS[1]: hash, the game {board (9 chars, '.' free), turn, version, winner}
-- KEYS[2]: list, the move log ("version:player:cell:server" per entry), capped
-- ARGV[1]: player ('X' or 'O')   ARGV[2]: cell (0-8)
-- ARGV[3]: announce channel      ARGV[4]: name of the server that asks
-- ARGV[5]: most log entries kept (whole number >= 1)
-- Returns: {ok 0/1, reason, board, turn, version, winner}
--   reason is 'ok', 'game-over', 'not-your-turn', 'bad-player', 'bad-cell' or
--   'cell-taken'; winner is '' (still playing), 'X', 'O' or 'draw'.
--   Or {-1, problem, key, found} with nothing written: problem 'wrong-type'
--   (found: the key's type) or 'corrupt' (found: the stored fields).
-- Everything is checked before the first write.
for i, want in ipairs({'hash', 'list'}) do
  local kind = redis.call('TYPE', KEYS[i])['ok']
  if kind ~= 'none' and kind ~= want then return {-1, 'wrong-type', KEYS[i], kind} end
end
local keep = tonumber(ARGV[5])
if not keep or keep < 1 or keep % 1 ~= 0 then
  return redis.error_reply('ERR log size must be a whole number >= 1')
end
local s = redis.call('HMGET', KEYS[1], 'board', 'turn', 'version', 'winner')
local board = s[1] or '.........'
local turn = s[2] or 'X'
local version = tonumber(s[3] or '0')
local winner = s[4] or ''
if not board:match('^[XO.]+$') or #board ~= 9 or (turn ~= 'X' and turn ~= 'O')
    or not version or version < 0 or version % 1 ~= 0
    or (winner ~= '' and winner ~= 'X' and winner ~= 'O'
                       and winner ~= 'draw') then
  return {-1, 'corrupt', KEYS[1], table.concat({board, turn, tostring(s[3]), winner}, ' ')}
end
local function reply(ok, reason)
  return {ok, reason, board, turn, version, winner}
end

if ARGV[1] ~= 'X' and ARGV[1] ~= 'O' then return reply(0, 'bad-player') end
local cell = tonumber(ARGV[2])
if not cell or cell < 0 or cell > 8 or cell % 1 ~= 0 then
  return reply(0, 'bad-cell')
end
if winner ~= '' then return reply(0, 'game-over') end
if ARGV[1] ~= turn then return reply(0, 'not-your-turn') end
if board:sub(cell + 1, cell + 1) ~= '.' then return reply(0, 'cell-taken') end

board = board:sub(1, cell) .. turn .. board:sub(cell + 2)
local lines = {{1, 2, 3}, {4, 5, 6}, {7, 8, 9}, {1, 4, 7}, {2, 5, 8}, {3, 6, 9},
               {1, 5, 9}, {3, 5, 7}}
for _, l in ipairs(lines) do
  local a = board:sub(l[1], l[1])
  if a ~= '.' and a == board:sub(l[2], l[2]) and a == board:sub(l[3], l[3]) then
    winner = a
  end
end
if winner == '' and not board:find('.', 1, true) then winner = 'draw' end
turn = (turn == 'X') and 'O' or 'X'
version = version + 1
redis.call('HSET', KEYS[1], 'board', board, 'turn', turn, 'version', version,
           'winner', winner)
redis.call('RPUSH', KEYS[2], version .. ':' .. ARGV[1] .. ':' .. cell .. ':' .. ARGV[4])
redis.call('LTRIM', KEYS[2], -keep, -1)
-- Inside the script, so announcements leave in version order.
redis.call('PUBLISH', ARGV[3], version)
return reply(1, 'ok')
