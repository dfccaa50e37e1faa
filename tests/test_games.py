"""labkit.lab.games: the tutorial's tic-tac-toe fails its scenarios, the fix passes."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import redis

from labkit.lab.games import GameServer, GameState, NaiveGameServer, winner_of
from labkit.lab.games import scenarios as sc

SCENARIOS = [
    sc.restart_not_propagated,
    sc.simultaneous_moves,
    sc.missed_while_disconnected,
]


@pytest.fixture(params=["naive", "redis"])
def design(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def pair(r: redis.Redis, design: str) -> Iterator[tuple]:
    """Two connected servers of one design on one game."""
    cls = NaiveGameServer if design == "naive" else GameServer
    a, b = cls(r, "A"), cls(r, "B")
    a.connect()
    b.connect()
    yield a, b
    a.close()
    b.close()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda f: f.__name__)
def test_scenarios(pair: tuple, design: str, scenario) -> None:
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
            stored["board"], stored["turn"], int(stored["version"]), stored["winner"]
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
def test_winner_and_draw_detected(r: redis.Redis, moves: list, winner: str) -> None:
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


def test_follow_in_background_thread(r: redis.Redis) -> None:
    """A following server updates itself from announcements, then stops cleanly."""
    before = set(threading.enumerate())
    a, b = GameServer(r, "A"), GameServer(r, "B")
    sub = b.follow()
    a.move("X", 4)
    assert sub.wait_for(1)
    assert b.state == a.state
    b.close()
    assert set(threading.enumerate()) == before


@pytest.mark.parametrize(
    ("player", "cell", "error"),
    [
        ("Z", 0, ValueError),
        ("X", 9, ValueError),
        ("X", "4", TypeError),
        ("X", True, TypeError),
    ],
)
def test_bad_move_arguments(r: redis.Redis, player, cell, error: type) -> None:
    """Unknown players and cells outside 0-8 raise, naming the argument."""
    with pytest.raises(error, match="player=" if player == "Z" else "cell="):
        GameServer(r, "A").move(player, cell)


def test_bad_constructor_arguments(r: redis.Redis) -> None:
    """Empty names and game ids with a brace are refused."""
    with pytest.raises(ValueError, match="name="):
        GameServer(r, "")
    with pytest.raises(ValueError, match="game="):
        GameServer(r, "A", game="a}b")


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


def test_board_widget_plays_through_two_servers(r: redis.Redis) -> None:
    """Board clicks move via the player's server, and both servers agree."""
    from labkit.lab.games.widget import Board

    board = Board(r, game="widget-test")
    try:
        for cell in [0, 4, 1, 4, 8, 2]:  # the second 4 is taken
            board.buttons[cell].click()
        a, b = board.servers["X"].state, board.servers["O"].state
        assert a == b and a.board == "XXX.O...O" and a.winner == "X"
        assert board.buttons[0].description == "X" and "winner: X" in board.status.value
        board.restart()
        assert board.servers["X"].state.board == "." * 9
    finally:
        board.close()
