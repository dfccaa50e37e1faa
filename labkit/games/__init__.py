"""Multiplayer tic-tac-toe over several servers: the tutorial design and the fix."""

from labkit.games._base import GameState, MoveResult, winner_of
from labkit.games.naive import NaiveGameServer
from labkit.games.scenarios import ScenarioResult
from labkit.games.tictactoe import GameServer

__all__ = [
    "GameServer",
    "GameState",
    "MoveResult",
    "NaiveGameServer",
    "ScenarioResult",
    "winner_of",
]
