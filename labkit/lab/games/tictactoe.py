"""Tic-tac-toe served by several servers, kept consistent through Redis.

The board lives in Redis, a move is validated and applied by one Lua script
(right player, free cell, game not over), and pub/sub only *announces* the new
version number. A server that misses announcements loses nothing: it reads the
stored state when it hears a newer version, and when it reconnects.
"""

from __future__ import annotations

import threading
from importlib import resources
from typing import Any

from labkit.lab.games._base import ChannelServer, GameState, MoveResult, check_move_args
from labkit.pubsub import Received, Subscriber

__all__ = ["GameServer"]


def _load_lua(name: str) -> str:
    return resources.files("labkit").joinpath(f"lua/games_{name}.lua").read_text()


class GameServer(ChannelServer):
    """A game server whose only authority is the game stored in Redis.

    Args:
        client: A ``redis.Redis`` (``decode_responses=True``) or ``RedisCluster``.
        name: This server's name (recorded in the move log).
        game: The game id; several games can share a server.
        prefix: Key prefix.

    Keys (the ``{game}`` hash tag keeps both in one cluster slot, since the
    move script touches both):

    - ``<prefix>:{<game>}``: hash, ``board``, ``turn``, ``version``, ``winner``;
    - ``<prefix>:{<game>}:log``: list, one ``version:player:cell:server``
      entry per accepted move (``version:restart::server`` for restarts).

    Channel ``<prefix>:{<game>}:moves`` carries version numbers only.
    """

    def __init__(
        self, client: Any, name: str, *, game: str = "1", prefix: str = "lab:ttt"
    ) -> None:
        if not isinstance(game, str) or not game or "}" in game:
            raise ValueError(f"game={game!r}: expected a non-empty str without '}}'")
        super().__init__(client, name, f"{prefix}:{{{game}}}:moves")
        self.key = f"{prefix}:{{{game}}}"
        self.log_key = f"{self.key}:log"
        self._move = client.register_script(_load_lua("move"))
        self._restart = client.register_script(_load_lua("restart"))
        self._state = GameState()
        self._lock = threading.Lock()
        self._follower: Subscriber | None = None
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
        ok, reason, board, turn, version, winner = raw
        state = self._adopt(GameState(board, turn, int(version), winner))
        return MoveResult(bool(ok), reason, state)

    def move(self, player: str, cell: int) -> MoveResult:
        """Ask Redis to play ``cell`` for ``player``; the script decides."""
        check_move_args(player, cell)
        keys = [self.key, self.log_key]
        return self._reply(
            self._move(keys=keys, args=[player, cell, self.channel, self.name])
        )

    def restart(self) -> GameState:
        """Start a new game, announced to every server as a new version."""
        raw = self._restart(
            keys=[self.key, self.log_key], args=[self.channel, self.name]
        )
        return self._reply(raw).state

    def refresh(self) -> GameState:
        """Read the stored game (catch-up); counts versions that were never heard."""
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

    def connect(self) -> None:
        """Subscribe, then catch up: whatever happened while away is stored."""
        super().connect()
        before = self._state.version
        after = self.refresh().version
        self.missed_versions += max(0, after - before)

    def _on_message(self, data: str) -> None:
        self.on_announce(int(data))

    def follow(self, **subscriber_kw: Any) -> Subscriber:
        """Listen in a background thread (a :class:`~labkit.pubsub.Subscriber`).

        The alternative to calling :meth:`pump`; stop it with :meth:`close`.
        """

        def heard(msg: Received) -> None:
            self.on_announce(int(msg.data))

        self._follower = Subscriber(
            self.client,
            [self.channel],
            callback=heard,
            name=f"game-{self.name}",
            **subscriber_kw,
        ).start()
        self.refresh()
        return self._follower

    def close(self) -> None:
        """Stop following and drop the subscription."""
        if self._follower is not None:
            self._follower.stop()
            self._follower = None
        self.disconnect()

    def log(self) -> list[str]:
        """The stored move log, oldest first."""
        return list(self.client.lrange(self.log_key, 0, -1))
