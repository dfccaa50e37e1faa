"""Tic-tac-toe served by several servers, kept consistent through Redis.

The board lives in Redis, a move is validated and applied by one Lua script
(right player, free cell, game not over), and pub/sub only *announces* the new
version number. A server that misses announcements loses nothing: it reads the
stored state when it hears a newer version, and on every (re)subscription,
whether it reconnected on purpose or redis-py did it behind its back.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from labkit.core.args import check_callable, check_count, check_name, check_tag
from labkit.core.clients import check_client
from labkit.core.scripts import Script
from labkit.errors import MalformedMessageError, WrongTypeError
from labkit.lab.games._base import ChannelServer, GameState, MoveResult, check_move_args

__all__ = ["MAX_LOG", "MOVE", "RESTART", "CustomMoveServer", "GameServer"]

#: The scripts, printable: ``print(MOVE.source)``.
MOVE = Script("games_move", package="labkit.lab")
RESTART = Script("games_restart", package="labkit.lab")
#: Most entries a move log may be given (``max_log``).
MAX_LOG = 1_000_000

_EXPECTED = {"hash": "the game's hash", "list": "the move log (a list)"}


class GameServer(ChannelServer):
    """A game server whose only authority is the game stored in Redis.

    Args:
        client: A ``redis.Redis`` with ``decode_responses=True``.
        name: This server's name (recorded in the move log).
        game: The game id; several games can share a server. It becomes the
            keys' hash tag, so it may not contain braces.
        prefix: Key prefix (no braces).
        max_log: Entries the move log keeps (the newest; 1 to ``MAX_LOG``).

    Keys:
        ``<prefix>:{<game>}`` (hash): the game, fields board, turn, version and
        winner; no TTL (four short fields per game, one game per id the
        application chooses; delete() removes it).
        ``<prefix>:{<game>}:log`` (list): one "version:player:cell:server"
        entry per accepted move ("version:restart::server" for a restart);
        no TTL, capped at max_log entries (the scripts LTRIM it).

    The game id is both keys' hash tag: the move script touches both, so they
    must share a cluster slot. Channel ``<prefix>:{<game>}:moves`` carries
    version numbers only.
    """

    def __init__(
        self,
        client: Any,
        name: str,
        *,
        game: str = "1",
        prefix: str = "lab:ttt",
        max_log: int = 1000,
    ) -> None:
        check_client(
            client,
            owner="GameServer",
            cluster="its channel is read with classic pub/sub on one node",
            decode=True,
        )
        game = check_tag("game", check_name("game", game, max_len=200))
        check_name("prefix", prefix, max_len=200)
        if "{" in prefix or "}" in prefix:
            raise ValueError(f"prefix={prefix!r}: must not contain '{{' or '}}'")
        super().__init__(client, name, f"{prefix}:{{{game}}}:moves")
        self.game = game
        self.key = f"{prefix}:{{{game}}}"
        self.log_key = f"{self.key}:log"
        self.max_log = check_count("max_log", max_log, max=MAX_LOG)
        self._state = GameState()
        self._lock = threading.Lock()
        #: Versions this server never heard announced (it caught up by reading).
        self.missed_versions = 0
        #: Times this server read the stored state.
        self.refreshes = 0

    @property
    def state(self) -> GameState:
        """This server's latest view (never older than the last version it saw)."""
        return self._state

    def _adopt(self, state: GameState) -> GameState:
        with self._lock:  # a follower thread may adopt at the same time
            if state.version >= self._state.version:
                self._state = state
            return self._state

    def _reply(self, raw: list[Any]) -> MoveResult:
        if int(raw[0]) < 0:
            _, problem, key, found = raw
            expected = _EXPECTED["list" if key == self.log_key else "hash"]
            raise WrongTypeError(
                f"game {self.game!r}: key {key!r} is unusable ({problem}: {found}); "
                f"it should hold {expected}. Nothing was written.",
                key=key,
                found=str(found),
                expected=expected,
            )
        ok, reason, board, turn, version, winner = raw
        state = self._adopt(GameState(board, turn, int(version), winner))
        return MoveResult(bool(ok), reason, state)

    def move(self, player: str, cell: int) -> MoveResult:
        """Ask Redis to play ``cell`` for ``player``; the script decides.

        Raises:
            TypeError, ValueError: ``player`` is not X/O or ``cell`` not 0-8.
            WrongTypeError: The stored game is of the wrong type or corrupt.
        """
        check_move_args(player, cell)
        args: list[str | int] = [player, cell, self.channel, self.name, self.max_log]
        return self._reply(MOVE(self.client, [self.key, self.log_key], args))

    def restart(self) -> GameState:
        """Start a new game, announced to every server as a new version."""
        args: list[str | int] = [self.channel, self.name, self.max_log]
        return self._reply(RESTART(self.client, [self.key, self.log_key], args)).state

    def refresh(self) -> GameState:
        """Read the stored game (catch-up)."""
        kind = self.client.type(self.key)
        if kind not in ("hash", "none"):
            raise WrongTypeError(
                f"game {self.game!r}: key {self.key!r} holds a {kind}",
                key=self.key,
                found=kind,
                expected=_EXPECTED["hash"],
            )
        stored = self.client.hgetall(self.key)
        self.refreshes += 1
        if not stored:
            return self._adopt(GameState())
        version = int(stored["version"])
        state = GameState(stored["board"], stored["turn"], version, stored["winner"])
        return self._adopt(state)

    def on_announce(self, version: int) -> None:
        """A newer version was announced: read the stored state if behind."""
        if version > self._state.version:
            self.missed_versions += max(0, version - self._state.version - 1)
            self.refresh()

    def _on_subscribe(self, channel: str) -> None:
        # Every (re)subscription: whatever happened while away is stored.
        before = self._state.version
        after = self.refresh().version
        self.missed_versions += max(0, after - before)

    def _on_message(self, data: str) -> None:
        try:
            version = int(data)
        except ValueError as exc:
            raise MalformedMessageError(
                f"{self.name}: {data!r} is not a version number",
                channel=self.channel,
                data=data,
            ) from exc
        self.on_announce(version)

    def log(self) -> list[str]:
        """The stored move log, oldest first (at most ``max_log`` entries)."""
        return list(self.client.lrange(self.log_key, 0, -1))

    def delete(self) -> int:
        """Delete the stored game and its log; return how many keys were removed."""
        return int(self.client.delete(self.key, self.log_key))


class CustomMoveServer(GameServer):
    """A :class:`GameServer` whose move is a function you write (an exercise).

    Args:
        client, name: As for :class:`GameServer`.
        move: ``move(server, player, cell) -> bool``: apply the move to the
            stored game (``server.key``, ``server.log_key``, announce on
            ``server.channel``) if it is legal; return whether it was.
        **kwargs: ``game``, ``prefix``, ``max_log``.

    After each move the server reads the stored game, so its view is Redis's.
    """

    def __init__(
        self,
        client: Any,
        name: str,
        move: Callable[[GameServer, str, int], object],
        **kwargs: Any,
    ) -> None:
        super().__init__(client, name, **kwargs)
        self._custom_move = check_callable(
            "move", move, signature="server, player, cell"
        )

    def move(self, player: str, cell: int) -> MoveResult:
        """Run the custom move function, then read the stored game."""
        check_move_args(player, cell)
        ok = bool(self._custom_move(self, player, cell))
        return MoveResult(ok, "ok" if ok else "refused", self.refresh())
