"""Lab: multiplayer tic-tac-toe over several servers: the tutorial design, the fix."""

from labkit.lab.games._base import GameState, MoveResult, winner_of
from labkit.lab.games.naive import NaiveGameServer
from labkit.lab.games.scenarios import ScenarioResult
from labkit.lab.games.tictactoe import MOVE, RESTART, CustomMoveServer, GameServer

__all__ = [
    "MOVE",
    "RESTART",
    "CustomMoveServer",
    "GameServer",
    "GameState",
    "MoveResult",
    "NaiveGameServer",
    "ScenarioResult",
    "winner_of",
]
