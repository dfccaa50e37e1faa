"""What both tic-tac-toe designs share: the state, the rules, the channel plumbing."""

from __future__ import annotations

from typing import Any, NamedTuple

from labkit.core.args import check_choice, check_int, check_name
from labkit.core.listen import Listener, as_text

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
    if not isinstance(player, str):
        raise TypeError(f"player={player!r}: must be 'X' or 'O'")
    check_choice("player", player, ("X", "O"))
    check_int("cell", cell, min=0, max=8, what="an int (row * 3 + column)")


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
    """Base for the game servers: one pub/sub channel, read on demand or in a thread.

    The channel is read by a :class:`~labkit.core.listen.Listener`. After
    :meth:`connect` a server reads only in :meth:`pump`, so that experiments
    choose exactly when each server hears what the others published: that is
    how the tutorial design's races are forced deterministically, instead of
    waiting for an unlucky timing. After :meth:`follow` it reads in a
    background thread, as a real server would.
    """

    def __init__(self, client: Any, name: str, channel: str) -> None:
        self.name = check_name("name", name, max_len=64)
        self.client = client
        self.channel = channel
        self.listener: Listener | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self.state!r}>"

    @property
    def state(self) -> GameState:  # pragma: no cover - overridden
        raise NotImplementedError

    @property
    def connected(self) -> bool:
        """True while subscribed to the game's channel."""
        return self.listener is not None

    @property
    def following(self) -> bool:
        """True while a background thread reads the channel."""
        return self.listener is not None and self.listener.running

    def _new_listener(self, **listener_kw: Any) -> Listener:
        return Listener(
            self.client,
            [self.channel],
            on_message=self._heard,
            on_subscribe=self._on_subscribe,
            name=f"game-{self.name}",
            **listener_kw,
        )

    def connect(self, timeout: float = 5.0) -> None:
        """Subscribe to the game's channel (and wait for the confirmation)."""
        if self.listener is not None:
            return
        listener = self._new_listener()
        listener.connect(timeout)
        self.listener = listener

    def follow(self, timeout: float = 5.0, **listener_kw: Any) -> Listener:
        """Read the channel in a background thread; stop it with :meth:`close`.

        Args:
            timeout: Seconds to wait for the subscription to be confirmed.
            **listener_kw: Passed to the Listener (``health_check_interval``,
                ``dead_after``...).

        Returns:
            The listener (its ``stats`` count reconnects and errors).
        """
        if self.following:
            assert self.listener is not None
            return self.listener
        self.disconnect()
        listener = self._new_listener(**listener_kw)
        listener.start(timeout)
        self.listener = listener
        return listener

    def disconnect(self) -> None:
        """Drop the subscription, as a server that lost its connection would."""
        if self.listener is not None:
            self.listener.stop()
            self.listener = None

    close = disconnect

    def pump(self, timeout: float = 5.0) -> int:
        """Handle every message published before this call; return how many.

        Sends a PING down the subscription and reads until its answer: the
        server answers in order, so anything published before is read first.
        Does nothing (returns 0) while disconnected or following.
        """
        if self.listener is None or self.listener.running:
            return 0
        return self.listener.pump(timeout)

    def _heard(self, msg: dict[str, Any]) -> None:
        self._on_message(as_text(msg["data"]))

    def _on_subscribe(self, channel: str) -> None:
        """Called after every (re)subscription; the tutorial design does nothing."""

    def _on_message(self, data: str) -> None:  # pragma: no cover - overridden
        raise NotImplementedError
