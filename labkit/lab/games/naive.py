"""The tutorial's multiplayer design, kept to be taken apart.

Each server holds the board in its own memory, checks a move against that
copy, and publishes the whole state on one channel; every server replaces its
board with whatever state it receives. Three things go wrong, each shown by
:mod:`labkit.lab.games.scenarios`: a restart stays local, two servers accept moves
from the same position at the same time, and a server that was disconnected
plays on from a stale board and then overwrites everyone else's.
"""

from __future__ import annotations

import json
from typing import Any

from labkit.core.args import check_name
from labkit.core.clients import check_client
from labkit.errors import MalformedMessageError
from labkit.lab.games._base import ChannelServer, GameState, MoveResult, check_move_args
from labkit.lab.games._base import winner_of as _winner_of

__all__ = ["NaiveGameServer"]


class NaiveGameServer(ChannelServer):
    """A game server in the tutorial's style (do not copy this design).

    Args:
        client: A ``redis.Redis``, used only for pub/sub: no game state is
            stored in Redis.
        name: This server's name (appears in published states).
        channel: The shared channel every server publishes full states on.
    """

    def __init__(self, client: Any, name: str, *, channel: str = "game-moves") -> None:
        check_client(
            client,
            owner="NaiveGameServer",
            cluster="its channel is read with classic pub/sub on one node",
            decode=True,
        )
        super().__init__(client, name, check_name("channel", channel))
        self._state = GameState()

    @property
    def state(self) -> GameState:
        """This server's in-memory board (the only copy it has)."""
        return self._state

    def move(self, player: str, cell: int) -> MoveResult:
        """Check the move against local memory, apply it, publish the full state."""
        check_move_args(player, cell)
        s = self._state
        if s.over:
            return MoveResult(False, "game-over", s)
        if player != s.turn:
            return MoveResult(False, "not-your-turn", s)
        if s.board[cell] != ".":
            return MoveResult(False, "cell-taken", s)
        board = s.board[:cell] + player + s.board[cell + 1 :]
        turn = "O" if player == "X" else "X"
        self._state = GameState(board, turn, 9 - board.count("."), _winner_of(board))
        body = {"board": board, "turn": turn, "winner": self._state.winner}
        self.client.publish(self.channel, json.dumps({**body, "from": self.name}))
        return MoveResult(True, "ok", self._state)

    def restart(self) -> GameState:
        """Clear the board in this server's memory only (the tutorial's bug)."""
        self._state = GameState()
        return self._state

    def _on_message(self, data: str) -> None:
        try:
            body = json.loads(data)
            board, turn, winner = body["board"], body["turn"], body["winner"]
            valid = len(board) == 9 and turn in ("X", "O")
        except (ValueError, TypeError, KeyError) as exc:
            raise MalformedMessageError(
                f"{self.name}: not a game state ({exc})",
                channel=self.channel,
                data=data,
            ) from exc
        if not valid:
            raise MalformedMessageError(
                f"{self.name}: not a game state", channel=self.channel, data=data
            )
        # Whatever arrives wins: no version, no check that it is newer.
        self._state = GameState(board, turn, 9 - board.count("."), winner)
