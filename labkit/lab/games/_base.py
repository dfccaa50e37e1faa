"""What both tic-tac-toe designs share: the state, the rules, the channel plumbing."""

from __future__ import annotations

import time
import uuid
from typing import Any, NamedTuple

from labkit.pubsub import is_pong

__all__ = ["EMPTY", "GameState", "MoveResult", "check_move_args", "winner_of"]

#: The empty board: nine cells, row by row, ``.`` for a free cell.
EMPTY = "." * 9

_LINES = (
    (0, 1, 2), (3, 4, 5), (6, 7, 8),  # rows
    (0, 3, 6), (1, 4, 7), (2, 5, 8),  # columns
    (0, 4, 8), (2, 4, 6),  # diagonals
)  # fmt: skip


def winner_of(board: str) -> str:
    """``'X'``/``'O'`` for three in a row, ``'draw'`` for a full board, else ``''``."""
    for a, b, c in _LINES:
        if board[a] != "." and board[a] == board[b] == board[c]:
            return board[a]
    return "draw" if "." not in board else ""


def check_move_args(player: Any, cell: Any) -> None:
    """Raise ValueError/TypeError unless ``player`` is X/O and ``cell`` is 0-8."""
    if player not in ("X", "O"):
        raise ValueError(f"player={player!r}: expected 'X' or 'O'")
    if isinstance(cell, bool) or not isinstance(cell, int):
        raise TypeError(f"cell={cell!r}: expected an int from 0 to 8")
    if not 0 <= cell <= 8:
        raise ValueError(f"cell={cell!r}: expected an int from 0 to 8 (row * 3 + col)")


class GameState(NamedTuple):
    """One server's view of the game.

    Attributes:
        board: Nine characters, row by row: ``X``, ``O`` or ``.`` (free).
        turn: Who plays next, ``'X'`` or ``'O'``.
        version: Counts every change (moves and restarts) of the stored game;
            the tutorial design keeps no version and reports marks on the board.
        winner: ``''`` while playing, else ``'X'``, ``'O'`` or ``'draw'``.
    """

    board: str = EMPTY
    turn: str = "X"
    version: int = 0
    winner: str = ""

    @property
    def over(self) -> bool:
        """True once someone has won or the board is full."""
        return self.winner != ""


class MoveResult(NamedTuple):
    """What a server answered to one move.

    Attributes:
        ok: True if the move was accepted.
        reason: ``'ok'``, or why it was refused: ``'game-over'``,
            ``'not-your-turn'``, ``'cell-taken'``.
        state: The server's view right after the attempt.
    """

    ok: bool
    reason: str
    state: GameState


class ChannelServer:
    """Base for the game servers: one pub/sub connection, read on demand.

    A server reads its channel only in :meth:`pump`, so that experiments can
    choose exactly when each server hears what the others published: that is
    how the tutorial design's races are forced deterministically, instead of
    waiting for an unlucky timing.
    """

    def __init__(self, client: Any, name: str, channel: str) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"name={name!r}: expected a non-empty str")
        self.client = client
        self.name = name
        self.channel = channel
        self._pubsub: Any = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self.state!r}>"

    @property
    def state(self) -> GameState:  # pragma: no cover - overridden
        raise NotImplementedError

    @property
    def connected(self) -> bool:
        """True while subscribed to the game's channel."""
        return self._pubsub is not None

    def connect(self) -> None:
        """Subscribe to the game's channel (and wait for the confirmation)."""
        if self._pubsub is not None:
            return
        self._pubsub = self.client.pubsub()
        self._pubsub.subscribe(self.channel)
        self._read_until(lambda r: self._pubsub.handle_message(r) is not None)

    def disconnect(self) -> None:
        """Drop the subscription, as a server that lost its connection would."""
        if self._pubsub is not None:
            self._pubsub.close()
            self._pubsub = None

    close = disconnect

    def pump(self, timeout: float = 5.0) -> int:
        """Handle every message published before this call; return how many.

        Sends a PING down the subscription and reads until its answer: the
        server answers in order, so anything published before is read first.
        """
        if self._pubsub is None:
            return 0
        token = uuid.uuid4().hex
        self._pubsub.ping(token)
        handled = 0

        def is_answer(response: Any) -> bool:
            nonlocal handled
            if is_pong(response, token):
                return True
            msg = self._pubsub.handle_message(response)
            if msg is not None and msg["type"] == "message":
                handled += 1
                self._on_message(msg["data"])
            return False

        self._read_until(is_answer, timeout)
        return handled

    def _read_until(self, done: Any, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            response = self._pubsub.parse_response(block=False, timeout=0.1)
            if response is not None and done(response):
                return
        raise TimeoutError(f"{self.name}: channel {self.channel!r} silent {timeout} s")

    def _on_message(self, data: str) -> None:  # pragma: no cover - overridden
        raise NotImplementedError
