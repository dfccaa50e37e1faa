"""labkit.lab.games: the tutorial's tic-tac-toe fails its scenarios, the fix passes."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from checks import as_str, assert_refused, audit_keys

from labkit.core.wait import wait_until
from labkit.errors import WrongTypeError
from labkit.lab.games import (
    MOVE,
    GameServer,
    GameState,
    NaiveGameServer,
    ScenarioResult,
    winner_of,
)
from labkit.lab.games import scenarios as sc
from labkit.server import free_port, no_retry

SCENARIOS = [
    sc.restart_not_propagated,
    sc.simultaneous_moves,
    sc.missed_while_disconnected,
]


@pytest.fixture
def threads() -> Iterator[None]:
    """Fail if a test leaves a thread behind."""
    before = set(threading.enumerate())
    yield
    assert wait_until(lambda: set(threading.enumerate()) <= before, timeout=5)


@pytest.fixture(params=["naive", "redis"])
def design(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def pair(
    r: redis.Redis, design: str
) -> Iterator[tuple[NaiveGameServer | GameServer, NaiveGameServer | GameServer]]:
    """Two connected servers of one design on one game."""
    cls = NaiveGameServer if design == "naive" else GameServer
    a, b = cls(r, "A"), cls(r, "B")
    a.connect()
    b.connect()
    yield a, b
    a.close()
    b.close()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda f: f.__name__)
def test_scenarios(
    pair: tuple[NaiveGameServer | GameServer, NaiveGameServer | GameServer],
    design: str,
    scenario: Callable[..., ScenarioResult],
) -> None:
    """Every scenario breaks the tutorial design and leaves the fix consistent."""
    result = scenario(*pair)
    assert result.ok == (design == "redis"), result.problems
    assert len(set(result.views.values())) == 1 or design == "naive"


def test_naive_failures_are_the_documented_ones(r: redis.Redis) -> None:
    """Each naive failure is the one the tutorial has: divergence, double move, loss."""
    results = {}
    for scenario in SCENARIOS:
        a, b = NaiveGameServer(r, "A"), NaiveGameServer(r, "B")
        a.connect()
        b.connect()
        results[scenario.__name__] = scenario(a, b)
        a.close()
        b.close()
    restart = results["restart_not_propagated"]
    assert restart.views == {"A": ".........", "B": "X...O...."}
    double = results["simultaneous_moves"]
    assert double.accepted == [("A", "X", 0), ("B", "X", 4)]
    assert "X moved twice in a row (cell 4 via B)" in double.problems
    missed = results["missed_while_disconnected"]
    assert "cell 4 marked twice (O, then X)" in missed.problems
    assert missed.views == {"A": "....X....", "B": "....X...."}


def test_concurrent_moves_keep_invariants(r: redis.Redis) -> None:
    """Two servers in threads released by a barrier: the log replays cleanly."""
    a, b = GameServer(r, "A"), GameServer(r, "B")
    a.connect()
    b.connect()
    accepted = sc.race([a, b], rounds=150, seed=1)
    log = a.log()
    a.pump()
    b.pump()
    a.close()
    b.close()
    assert accepted and sc.check_log(log) == []
    moves = [e for e in log if ":restart:" not in e]
    assert len(moves) == len(accepted)  # at most one move per round got in
    stored = r.hgetall(a.key)
    assert (
        a.state
        == b.state
        == GameState(
            as_str(stored["board"]),
            as_str(stored["turn"]),
            int(stored["version"]),
            as_str(stored["winner"]),
        )
    )


def test_naive_race_makes_double_moves(r: redis.Redis) -> None:
    """The same barrier race lets the tutorial design accept two moves per turn."""
    a, b = NaiveGameServer(r, "A"), NaiveGameServer(r, "B")
    a.connect()
    b.connect()
    accepted = sc.race([a, b], rounds=10, seed=1)
    a.close()
    b.close()
    # Both servers see the same position and both accept: two moves per round.
    assert len(accepted) >= 10
    assert any("twice in a row" in p for p in sc.check(accepted[:2], {}))


@pytest.mark.parametrize(
    ("moves", "winner"),
    [
        ([("X", 0), ("O", 3), ("X", 1), ("O", 4), ("X", 2)], "X"),
        ([("X", 0), ("O", 2), ("X", 1), ("O", 4), ("X", 8), ("O", 6)], "O"),
        (
            [("X", 0), ("O", 1), ("X", 2), ("O", 4), ("X", 3),
             ("O", 5), ("X", 7), ("O", 6), ("X", 8)],
            "draw",
        ),
    ],
    ids=["x-row", "o-diagonal", "draw"],
)  # fmt: skip
def test_winner_and_draw_detected(
    r: redis.Redis, moves: list[tuple[str, int]], winner: str
) -> None:
    """The script detects wins and draws, then refuses further moves."""
    a, b = GameServer(r, "A"), GameServer(r, "B")
    a.connect()
    b.connect()
    for i, (player, cell) in enumerate(moves):
        server = a if i % 2 == 0 else b  # the players sit on different servers
        assert server.move(player, cell).ok
    b.pump()
    a.pump()
    assert a.state.winner == b.state.winner == winner == winner_of(a.state.board)
    refused = (
        b.move(a.state.turn, a.state.board.index(".")) if winner != "draw" else None
    )
    assert refused is None or refused.reason == "game-over"
    a.close()
    b.close()


@pytest.mark.parametrize(
    ("player", "cell", "reason"),
    [("O", 4, "not-your-turn"), ("X", 0, "cell-taken")],
)
def test_illegal_moves_refused(
    r: redis.Redis, player: str, cell: int, reason: str
) -> None:
    """Wrong player and taken cell are refused and change nothing."""
    a = GameServer(r, "A")
    assert a.move("X", 0).ok and a.move("O", 1).ok
    result = a.move(player, cell)
    assert not result.ok and result.reason == reason
    assert result.state.version == 2 and result.state.board == "XO......."


def test_restart_seen_by_every_server(r: redis.Redis) -> None:
    """A restart on one server reaches all three, as a newer version."""
    servers = [GameServer(r, n) for n in "ABC"]
    for s in servers:
        s.connect()
    servers[0].move("X", 4)
    state = servers[1].restart()
    for s in servers:
        s.pump()
    assert {s.state for s in servers} == {state}
    assert state.board == "........." and state.version == 2
    for s in servers:
        s.close()


def test_reconnecting_server_catches_up(r: redis.Redis) -> None:
    """A server away for three moves reads them from Redis when it reconnects."""
    a, b = GameServer(r, "A"), GameServer(r, "B")
    a.connect()
    b.connect()
    b.disconnect()
    for player, cell in [("X", 0), ("O", 4), ("X", 8)]:
        a.move(player, cell)
    assert b.state.version == 0
    b.connect()
    assert b.state == a.state and b.missed_versions == 3
    a.close()
    b.close()


def test_follow_in_background_thread(r: redis.Redis, threads: None) -> None:
    """A following server updates itself from announcements, then stops cleanly."""
    a, b = GameServer(r, "A"), GameServer(r, "B")
    b.follow()
    assert b.following
    a.move("X", 4)
    assert wait_until(lambda: b.state == a.state)
    b.close()
    assert not b.following


def test_follow_reloads_after_client_kill(r: redis.Redis, threads: None) -> None:
    """CLIENT KILL of a follower: moves played while it was down are read back
    when redis-py resubscribes, with no further announcement."""
    a, b = GameServer(r, "A"), GameServer(r, "B")
    listener = b.follow(health_check_interval=0.1)
    a.move("X", 0)
    assert wait_until(lambda: b.state.version == 1)
    [victim] = [c["id"] for c in r.client_list() if "P" in c["flags"]]
    tx = r.pipeline(transaction=True)  # kill, then two moves nobody hears
    tx.client_kill_filter(_id=victim)
    for player, cell in (("O", 4), ("X", 8)):
        MOVE.queue(tx, [a.key, a.log_key], [player, cell, a.channel, "A", 1000])
    assert tx.execute()[0] == 1
    assert wait_until(lambda: b.state.version == 3)  # reloaded on resubscribe
    assert b.state.board == "X...O...X" and b.missed_versions == 2
    assert listener.stats.reconnects == 1 and listener.stats.confirmations == 2
    b.close()


def test_follower_survives_a_malformed_announcement(
    r: redis.Redis, threads: None
) -> None:
    """Junk on the channel is counted as a bad message; the follower keeps going."""
    a, b = GameServer(r, "A"), GameServer(r, "B")
    listener = b.follow()
    r.publish(b.channel, "not a version")
    a.move("X", 4)
    assert wait_until(lambda: b.state.version == 1)
    assert listener.stats.bad_messages == 1 and listener.running
    b.close()


def test_naive_server_survives_malformed_state(r: redis.Redis) -> None:
    """The tutorial design's listener counts an unparsable state and goes on."""
    a, b = NaiveGameServer(r, "A"), NaiveGameServer(r, "B")
    a.connect()
    b.connect()
    r.publish(b.channel, "{not json")
    a.move("X", 4)
    assert b.pump() == 2 and b.state.board == "....X...."
    assert b.listener is not None and b.listener.stats.bad_messages == 1
    a.close()
    b.close()


def test_move_log_is_capped_and_replays(r: redis.Redis) -> None:
    """The log keeps max_log entries; a trimmed log replays from its first restart."""
    a = GameServer(r, "A", max_log=7)
    for _ in range(3):
        for player, cell in (("X", 0), ("O", 3), ("X", 1), ("O", 4), ("X", 2)):
            assert a.move(player, cell).ok
        a.restart()
    log = a.log()
    assert len(log) == 7 and r.llen(a.log_key) == 7
    assert sc.check_log(log) == []


def test_keys_audit(r: redis.Redis) -> None:
    """After normal games, every key is documented and bounded (keys audit)."""
    sc.play_all(lambda name, game: GameServer(r, name, game=game))
    a, b = sc.pair(lambda name, game: GameServer(r, name, game=game), "race")
    sc.race([a, b], rounds=20, seed=3)
    a.close()
    b.close()
    seen = audit_keys(r, GameServer)
    assert "lab:ttt:{race}:log" in seen and "lab:ttt:{race}" in seen


def test_board_widget_naive_diverges_fixed_holds(r: redis.Redis) -> None:
    """Disconnect B, play on A, reconnect B: the naive design diverges (and a
    stale click loses A's move); the fixed one reloads and refuses it."""
    from labkit.lab.games.widget import Board

    board = Board(r, game="widget-test", design="naive")
    try:
        board.toggle_b()  # B disconnected
        board.click("A", 0)  # X on A; B never hears it
        board.toggle_b()  # B back, but nothing reloads its board
        naive = [board.agree, board.servers["B"].state.board]
        board.click("B", 4)  # B still thinks X is to move: a second X
        naive.append(board.servers["A"].state.board)  # A adopted B's board
        board.design.value = "fixed"  # fresh servers of the fixed design
        board.toggle_b()
        board.click("A", 0)
        refused = board.click("B", 4)  # B's stale view says X; Redis says O
        board.toggle_b()
        board.click("B", 4)
        fixed = (board.agree, board.servers["A"].state.board, refused.reason)
        assert "both servers agree" in board.status.value
    finally:
        board.close()
    assert naive == [False, ".........", "....X...."]
    assert fixed == (True, "X...O....", "not-your-turn")


def test_board_widget_plays_a_game(r: redis.Redis) -> None:
    """Clicks on both screens play one game; both servers agree on the winner."""
    from labkit.lab.games.widget import Board

    board = Board(r, game="widget-game")
    try:
        for name, cell in [("A", 0), ("B", 4), ("A", 1), ("B", 4), ("B", 8), ("A", 2)]:
            board.click(name, cell)  # the second 4 is taken
        a, b = board.servers["A"].state, board.servers["B"].state
        assert a == b and a.board == "XXX.O...O" and a.winner == "X"
        assert board.buttons["B"][0].description == "X"
        assert "winner: X" in board.views["A"].value
        board.restart()
        assert board.servers["A"].state.board == "." * 9
    finally:
        board.close()


NAN = float("nan")


def _bytes_client(r: redis.Redis) -> redis.Redis:
    kw = r.connection_pool.connection_kwargs
    names = ("host", "port", "password", "username", "db")
    return redis.Redis(**{k: kw[k] for k in names if k in kw})


def _unreachable() -> redis.Redis:
    return redis.Redis(
        host="127.0.0.1",
        port=free_port(),
        decode_responses=True,
        retry=no_retry(),
        socket_connect_timeout=1,
    )


BAD_INPUT = [
    ("player-z", lambda r: GameServer(r, "A").move("Z", 0), ValueError,
     ["player='Z'", "'X', 'O'"]),
    ("player-none", lambda r: GameServer(r, "A").move(None, 0), TypeError,  # type: ignore[arg-type]
     ["player=None", "'X' or 'O'"]),
    ("player-lower", lambda r: GameServer(r, "A").move("x", 0), ValueError,
     ["player='x'"]),
    ("cell-9", lambda r: GameServer(r, "A").move("X", 9), ValueError,
     ["cell=9", "from 0 to 8"]),
    ("cell-negative", lambda r: GameServer(r, "A").move("X", -1), ValueError,
     ["cell=-1", "from 0 to 8"]),
    ("cell-str", lambda r: GameServer(r, "A").move("X", "4"), TypeError,  # type: ignore[arg-type]
     ["cell='4'"]),
    ("cell-bool", lambda r: GameServer(r, "A").move("X", True), TypeError,
     ["cell=True"]),
    ("cell-float", lambda r: GameServer(r, "A").move("X", 4.0), TypeError,  # type: ignore[arg-type]
     ["cell=4.0"]),
    ("cell-nan", lambda r: GameServer(r, "A").move("X", NAN), TypeError,  # type: ignore[arg-type]
     ["cell=nan"]),
    ("name-empty", lambda r: GameServer(r, ""), ValueError, ["name=''"]),
    ("name-int", lambda r: GameServer(r, 5), TypeError, ["name=5"]),  # type: ignore[arg-type]
    ("game-empty", lambda r: GameServer(r, "A", game=""), ValueError, ["game=''"]),
    ("game-brace-only", lambda r: GameServer(r, "A", game="}"), ValueError,
     ["game='}'", "'{'"]),
    ("game-brace", lambda r: GameServer(r, "A", game="a}b"), ValueError,
     ["game='a}b'"]),
    ("prefix-brace", lambda r: GameServer(r, "A", prefix="x{"), ValueError,
     ["prefix='x{'"]),
    ("max-log-zero", lambda r: GameServer(r, "A", max_log=0), ValueError,
     ["max_log=0", "from 1"]),
    ("max-log-bool", lambda r: GameServer(r, "A", max_log=True), TypeError,
     ["max_log=True"]),
    ("max-log-huge", lambda r: GameServer(r, "A", max_log=10**12), ValueError,
     ["max_log=1000000000000"]),
    ("client-str", lambda r: GameServer("redis://x", "A"), TypeError,
     ["client='redis://x'", "redis.Redis"]),
    ("client-bytes", lambda r: GameServer(_bytes_client(r), "A"), TypeError,
     ["decode_responses=True"]),
    ("wrong-type-game", lambda r: GameServer(r, "A", game="str").move("X", 0),
     WrongTypeError, ["lab:ttt:{str}", "wrong-type: string", "Nothing was written"]),
    ("wrong-type-log", lambda r: GameServer(r, "A", game="lg").move("X", 0),
     WrongTypeError, ["lab:ttt:{lg}:log", "wrong-type: hash"]),
    ("wrong-type-restart", lambda r: GameServer(r, "A", game="str").restart(),
     WrongTypeError, ["lab:ttt:{str}", "wrong-type"]),
    ("wrong-type-refresh", lambda r: GameServer(r, "A", game="str").refresh(),
     WrongTypeError, ["lab:ttt:{str}", "holds a string"]),
    ("corrupt-board", lambda r: GameServer(r, "A", game="bad").move("X", 0),
     WrongTypeError, ["lab:ttt:{bad}", "corrupt: XX"]),
    ("naive-channel", lambda r: NaiveGameServer(r, "A", channel=""), ValueError,
     ["channel=''"]),
    ("naive-player", lambda r: NaiveGameServer(r, "A").move("Y", 1), ValueError,
     ["player='Y'"]),
    ("race-rounds", lambda r: sc.race([], rounds=0), ValueError, ["rounds=0"]),
    ("board-design", lambda r: _board(r, design="clever"), ValueError,
     ["design='clever'", "'naive', 'fixed'"]),
    ("unreachable", lambda r: GameServer(_unreachable(), "A").move("X", 0),
     redis.ConnectionError, ["127.0.0.1"]),
]  # fmt: skip


def _board(r: redis.Redis, **kw: Any) -> Any:
    from labkit.lab.games.widget import Board

    return Board(r, **kw)


@pytest.mark.parametrize(
    ("call", "error", "words"),
    [case[1:] for case in BAD_INPUT],
    ids=[case[0] for case in BAD_INPUT],
)
def test_bad_input_refused(
    r: redis.Redis, call: Any, error: type[Exception], words: list[str]
) -> None:
    """Refused at once with a message naming the argument; nothing written."""
    r.set("lab:ttt:{str}", "a string, not a game")
    r.hset("lab:ttt:{lg}:log", "not", "a list")
    r.hset("lab:ttt:{bad}", "board", "XX")  # too short to be a board
    assert_refused(r, lambda: call(r), error, *words)


def test_play_all_runs_each_scenario_on_a_fresh_pair(r: redis.Redis) -> None:
    """play_all gives one result per scenario, each game under its own name."""
    results = sc.play_all(lambda name, game: GameServer(r, name, game=game))
    assert [res.name for res in results] == [
        "restart not propagated",
        "simultaneous moves",
        "missed while disconnected",
    ]
    assert all(res.ok for res in results)
    assert r.exists("lab:ttt:{scenario-0}", "lab:ttt:{scenario-2}") == 2


def test_pair_connects_both_servers(r: redis.Redis) -> None:
    """pair builds servers A and B of one game, both subscribed."""
    a, b = sc.pair(lambda name, game: GameServer(r, name, game=game), "pair")
    try:
        assert (a.name, b.name, a.connected, b.connected) == ("A", "B", True, True)
        assert a.channel == b.channel
    finally:
        a.close()
        b.close()
