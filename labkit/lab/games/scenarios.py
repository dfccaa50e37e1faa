"""The tutorial's three failures as scripted scenarios, runnable on either design.

Each scenario drives two servers through a fixed interleaving: who moves, and
when each server reads its channel (:meth:`pump`). Nothing depends on timing,
so the tutorial design fails every time, and the fixed design passes the very
same steps. :func:`race` adds real threads released together by a barrier.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from labkit.core.args import check_count
from labkit.lab.games._base import winner_of

__all__ = [
    "SCENARIOS",
    "ScenarioResult",
    "check",
    "missed_while_disconnected",
    "pair",
    "play_all",
    "race",
    "restart_not_propagated",
    "simultaneous_moves",
]

Move = tuple[str, str, int]  # (server name, player, cell), accepted moves only
Refusal = tuple[str, str, int, str]  # (server name, player, cell, reason)


class ScenarioResult(NamedTuple):
    """How a scenario ended.

    Attributes:
        name: The scenario.
        accepted: Moves the servers accepted, ``(server, player, cell)``.
        views: Each server's board at the end, ``{server name: board}``.
        problems: What went wrong, in words; empty when consistent.
        refused: Moves a server refused, ``(server, player, cell, reason)``.
    """

    name: str
    accepted: list[Move]
    views: dict[str, str]
    problems: list[str]
    refused: list[Refusal]

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems


def check(accepted: Sequence[Move], views: dict[str, str]) -> list[str]:
    """Problems in one game: disagreement, double moves, reused or lost cells."""
    problems = []
    if len(set(views.values())) > 1:
        problems.append(f"servers disagree: {views}")
    for (_, p1, _), (server, p2, cell) in itertools.pairwise(accepted):
        if p1 == p2:
            problems.append(f"{p2} moved twice in a row (cell {cell} via {server})")
    seen: dict[int, str] = {}
    for _, player, cell in accepted:
        if cell in seen:
            problems.append(f"cell {cell} marked twice ({seen[cell]}, then {player})")
        seen[cell] = player
    for name, board in views.items():
        lost = [(p, c) for _, p, c in accepted if board[c] != p]
        if lost:
            problems.append(f"{name} lost accepted moves {lost}")
    return problems


def _play(
    server: Any,
    player: str,
    cell: int,
    accepted: list[Move],
    refused: list[Refusal] | None = None,
) -> None:
    result = server.move(player, cell)
    if result.ok:
        accepted.append((server.name, player, cell))
    elif refused is not None:
        refused.append((server.name, player, cell, result.reason))


def _pump(*servers: Any) -> None:
    for s in servers:
        s.pump()


def _end(
    name: str,
    servers: Sequence[Any],
    accepted: list[Move],
    refused: list[Refusal],
    since: int = 0,
) -> ScenarioResult:
    """The result; the boards are checked against the moves from ``since`` on."""
    views = {s.name: s.state.board for s in servers}
    problems = check(accepted[since:], views)
    return ScenarioResult(name, accepted, views, problems, refused)


def restart_not_propagated(a: Any, b: Any) -> ScenarioResult:
    """Two moves, then ``a`` restarts the game: does ``b`` see the new game?

    Both moves are reported as accepted; the boards are checked against the
    moves since the restart (none: both boards should be empty).
    """
    accepted: list[Move] = []
    refused: list[Refusal] = []
    _play(a, "X", 0, accepted, refused)
    _pump(a, b)
    _play(b, "O", 4, accepted, refused)
    _pump(a, b)
    a.restart()
    _pump(a, b)
    return _end(
        "restart not propagated", (a, b), accepted, refused, since=len(accepted)
    )


def simultaneous_moves(a: Any, b: Any) -> ScenarioResult:
    """X's move reaches both servers at once (a double click, two tabs).

    Both servers check the move before either hears of the other: ``b``
    validates before reading its channel.
    """
    accepted: list[Move] = []
    refused: list[Refusal] = []
    _play(a, "X", 0, accepted, refused)
    _play(b, "X", 4, accepted, refused)  # b has not pumped: it still sees X to move
    _pump(a, b)
    return _end("simultaneous moves", (a, b), accepted, refused)


def missed_while_disconnected(a: Any, b: Any) -> ScenarioResult:
    """``b`` drops off while two moves are played on ``a``, then comes back."""
    accepted: list[Move] = []
    refused: list[Refusal] = []
    b.disconnect()
    _play(a, "X", 0, accepted, refused)
    _play(a, "O", 4, accepted, refused)
    b.connect()
    _pump(a, b)
    _play(b, "X", 4, accepted, refused)  # X's next click lands on server b
    _pump(a, b)
    return _end("missed while disconnected", (a, b), accepted, refused)


def race(servers: Sequence[Any], rounds: int = 100, *, seed: int = 0) -> list[Move]:
    """Every round, each server tries a move in its own thread, all released at once.

    Each thread plays for whoever is to move in its server's view, on a free
    cell of that view; a finished game is restarted. Returns the accepted
    moves in the order the servers answered (check the stored log for the
    order Redis applied them).
    """
    check_count("rounds", rounds, max=100_000)
    barrier = threading.Barrier(len(servers))
    accepted: list[Move] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker(server: Any, rng: random.Random) -> None:
        try:
            for _ in range(rounds):
                barrier.wait(timeout=10)
                view = server.state
                if view.over:
                    server.restart()
                    continue
                free = [i for i, c in enumerate(view.board) if c == "."]
                cell = rng.choice(free)
                if server.move(view.turn, cell).ok:
                    with lock:
                        accepted.append((server.name, view.turn, cell))
                server.pump()
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)
            barrier.abort()

    threads = [
        threading.Thread(
            target=worker,
            args=(s, random.Random(seed + i)),
            name=f"race-{s.name}",
            daemon=True,
        )
        for i, s in enumerate(servers)
    ]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60 + rounds * 0.5
    for t in threads:
        t.join(timeout=max(0.0, deadline - time.monotonic()))
    if any(t.is_alive() for t in threads):
        barrier.abort()  # the stuck thread's next wait raises, and it ends
        raise TimeoutError(f"race(rounds={rounds}) did not finish in time")
    if errors:
        raise errors[0]
    return accepted


def check_log(log: Sequence[str]) -> list[str]:
    """Problems in a stored move log (``version:player:cell:server`` entries).

    Replays the log game by game: turns must alternate starting with X, a cell
    is marked once, nothing is played after a win or draw. A log trimmed to
    its newest entries (``max_log``) is replayed from its first restart.
    """
    problems = []
    board, turn, game = list("." * 9), "X", 1
    if log and not log[0].startswith("1:"):  # trimmed: the first game is partial
        restarts = [i for i, e in enumerate(log) if e.split(":")[1] == "restart"]
        log = log[restarts[0] :] if restarts else []
        game = 0
    for entry in log:
        _, player, cell, _server = entry.split(":", 3)
        if player == "restart":
            board, turn, game = list("." * 9), "X", game + 1
            continue
        i = int(cell)
        if winner_of("".join(board)):
            problems.append(f"game {game}: {player} played {i} after the game ended")
        if player != turn:
            problems.append(f"game {game}: {player} played out of turn ({i})")
        if board[i] != ".":
            problems.append(f"game {game}: cell {i} marked twice")
        board[i], turn = player, "O" if player == "X" else "X"
    return problems


#: The tutorial's three failures, in the order the notebook shows them.
SCENARIOS = (restart_not_propagated, simultaneous_moves, missed_while_disconnected)

#: Builds one game server from (server name, game name); a design may ignore
#: the game name (the tutorial design has a single channel for everything).
ServerFactory = Callable[[str, str], Any]


def pair(make_server: ServerFactory, game: str = "1") -> tuple[Any, Any]:
    """Servers ``A`` and ``B`` of one game, both connected to its channel."""
    a, b = make_server("A", game), make_server("B", game)
    a.connect()
    b.connect()
    return a, b


def play_all(
    make_server: ServerFactory,
    scenarios: Sequence[Callable[[Any, Any], ScenarioResult]] = SCENARIOS,
) -> list[ScenarioResult]:
    """Run each scenario on a fresh pair of servers (game ``scenario-<i>``)."""
    results = []
    for i, scenario in enumerate(scenarios):
        a, b = pair(make_server, f"scenario-{i}")
        try:
            results.append(scenario(a, b))
        finally:
            a.close()
            b.close()
    return results
