"""labkit.sharding: routers, how many keys move, ShardedClient and move_keys."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from labkit.lab.sharding import (
    ROUTER_KINDS,
    growth_cost,
    load_spread,
    make_router,
    moved_fraction,
    ring_balance,
    sample_keys,
)
from labkit.server import Server
from labkit.sharding import (
    HashRing,
    JumpHash,
    ModuloRouter,
    Rendezvous,
    ShardedClient,
    char_sum,
    hash64,
    jump_bucket,
    key_slot,
    move_keys,
)

ALL_ROUTERS = [ModuloRouter, HashRing, Rendezvous, JumpHash]
CONSISTENT = [(Rendezvous, 0.02), (JumpHash, 0.02), (HashRing, 0.04)]


def names(n: int) -> list[str]:
    return [f"node{i}" for i in range(n)]


@pytest.fixture(scope="module")
def keys() -> list[str]:
    """100,000 seeded keys."""
    return sample_keys(100_000, seed=42)


@pytest.mark.parametrize(("cls", "tolerance"), CONSISTENT)
@pytest.mark.parametrize("n", [3, 5])
def test_consistent_routers_move_one_share(
    cls: type, tolerance: float, n: int, keys: list[str]
) -> None:
    """Going from N to N+1 nodes moves about 1/(N+1) of the keys."""
    before = cls(names(n))
    after = cls(names(n + 1))
    assert abs(moved_fraction(before, after, keys) - 1 / (n + 1)) <= tolerance


@pytest.mark.parametrize("hash_fn", [hash64, char_sum])
def test_modulo_moves_most_keys(hash_fn, keys: list[str]) -> None:
    """ModuloRouter from 3 to 4 nodes moves more than 0.6 of the keys (about 3/4)."""
    before = ModuloRouter(names(3), hash=hash_fn)
    after = ModuloRouter(names(4), hash=hash_fn)
    assert moved_fraction(before, after, keys) > 0.6


@pytest.mark.parametrize("cls", [HashRing, Rendezvous, JumpHash])
def test_only_the_new_node_gains_keys(cls: type, keys: list[str]) -> None:
    """With a consistent router every moved key moves to the added node."""
    before, after = cls(names(3)), cls(names(4))
    for key in keys[:20_000]:
        old, new = before.node_for(key), after.node_for(key)
        assert new in (old, "node3")


@pytest.mark.parametrize("cls", ALL_ROUTERS)
def test_keys_spread_over_every_node(cls: type, keys: list[str]) -> None:
    """No node gets more than 15% above its fair share of 100,000 keys."""
    spread = load_spread(cls(names(4)), keys[:40_000])
    assert set(spread.counts) == set(names(4))
    assert spread.max_over_mean < 1.15


def test_deterministic_across_processes(keys: list[str]) -> None:
    """Another process with another PYTHONHASHSEED places every key identically."""
    code = (
        "import json, sys\n"
        "from labkit.sharding import HashRing, JumpHash, ModuloRouter, Rendezvous\n"
        "keys = json.load(sys.stdin)\n"
        "nodes = ['a', 'b', 'c', 'd']\n"
        "out = {cls.__name__: [cls(nodes).node_for(k) for k in keys]\n"
        "       for cls in (ModuloRouter, HashRing, Rendezvous, JumpHash)}\n"
        "print(json.dumps(out))\n"
    )
    sample = keys[:2000]
    here = {
        cls.__name__: [cls(["a", "b", "c", "d"]).node_for(k) for k in sample]
        for cls in ALL_ROUTERS
    }
    for seed in ("1", "987654"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run(
            [sys.executable, "-c", code],
            input=json.dumps(sample),
            capture_output=True,
            text=True,
            env=env,
            check=True,
            timeout=60,
        )
        assert json.loads(done.stdout) == here


def test_pinned_placements() -> None:
    """Hash values are fixed forever: a change would move every stored key."""
    assert hash64("user:1") == hash64(b"user:1")
    assert char_sum("abc") == 294 == char_sum("cba")
    assert key_slot("user:1") == 10778  # the value the real cluster reports
    assert key_slot("cart:{42}") == key_slot("orders:{42}") == key_slot("42")
    assert key_slot("a{}b") != key_slot("")  # an empty tag is not a tag


def test_jump_matches_reference_package() -> None:
    """jump_bucket agrees with the jump-consistent-hash package (if installed)."""
    jump = pytest.importorskip("jump")
    for i in range(5000):
        h = hash64(f"k{i}")
        assert jump_bucket(h, 1 + i % 37) == jump.hash(h, 1 + i % 37)


@pytest.mark.parametrize("cls", [HashRing, Rendezvous])
def test_weights_give_proportional_share(cls: type, keys: list[str]) -> None:
    """A node of weight 2 among weight-1 nodes gets about half the keys."""
    router = cls(["big", "b", "c"], weights={"big": 2})
    share = load_spread(router, keys[:40_000]).counts["big"] / 40_000
    assert 0.46 < share < 0.54


def test_ring_shares_sum_to_one() -> None:
    """The ring's arcs cover it exactly once, and more vnodes even them out."""
    coarse, fine = HashRing(names(5), vnodes=1), HashRing(names(5), vnodes=1000)
    assert sum(coarse.shares().values()) == pytest.approx(1.0)
    assert max(fine.shares().values()) < max(coarse.shares().values())
    assert max(fine.shares().values()) < 0.25


@pytest.mark.parametrize("cls", ALL_ROUTERS)
@pytest.mark.parametrize(
    ("nodes", "match"),
    [([], "at least one"), (["a", "b", "a"], "duplicate")],
)
def test_bad_nodes(cls: type, nodes: list[str], match: str) -> None:
    """No nodes or duplicate names raise ValueError naming the problem."""
    with pytest.raises(ValueError, match=match):
        cls(nodes)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: HashRing(["a"], vnodes=0), "vnodes=0"),
        (lambda: HashRing(["a"], weights={"a": 0}), r"weights\['a'\]=0"),
        (lambda: Rendezvous(["a", "b"], weights={"b": -1}), r"weights\['b'\]=-1"),
        (lambda: Rendezvous(["a"], weights={"z": 1}), "not among nodes"),
    ],
)
def test_bad_settings(make, match: str) -> None:
    """vnodes < 1, weight <= 0 and unknown weighted names raise ValueError."""
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_key_and_name_types() -> None:
    """A non-string key or node name is a TypeError naming it."""
    with pytest.raises(TypeError, match="key=42"):
        HashRing(["a"]).node_for(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="node name 7"):
        JumpHash(["a", 7])  # type: ignore[list-item]


# --- ShardedClient on real servers ------------------------------------------
@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, Server]]:
    """Four embedded servers; the tests use three or all four."""
    with ExitStack() as stack:
        yield {n: stack.enter_context(Server()) for n in names(4)}


@pytest.fixture
def clients(servers: dict[str, Server]) -> Iterator[dict]:
    """A flushed client per server."""
    out = {name: s.client() for name, s in servers.items()}
    for c in out.values():
        c.flushdb()
    yield out
    for c in out.values():
        c.close()


def three(clients: dict, router_cls: type = HashRing) -> ShardedClient:
    subset = {n: clients[n] for n in names(3)}
    return ShardedClient(subset, router_cls(names(3)))


def test_sharded_client_routes_and_splits(clients: dict) -> None:
    """Each key is stored only on its owner; MGET reassembles in input order."""
    sc = three(clients)
    data = {f"user:{i}": str(i) for i in range(300)}
    sc.mset(data)
    assert sum(sc.dbsizes().values()) == 300
    assert all(v > 60 for v in sc.dbsizes().values())
    for key in list(data)[:50]:
        assert sc.clients[sc.node_for(key)].get(key) == data[key]
    wanted = ["user:7", "missing", "user:250", "user:0"]
    assert sc.mget(wanted) == ["7", None, "250", "0"]
    assert sc.set("n", 1) and sc.incr("n", 4) == 5 and sc.get("n") == "5"
    assert sc.delete("user:7", "user:8", "nope") == 2


def test_sharded_client_refuses_mismatched_names(clients: dict) -> None:
    """Router nodes and client names must be the same set."""
    with pytest.raises(ValueError, match="same servers"):
        ShardedClient({"node0": clients["node0"]}, HashRing(names(2)))


@pytest.mark.parametrize(
    ("cls", "low", "high"), [(HashRing, 0.18, 0.32), (ModuloRouter, 0.68, 0.82)]
)
def test_move_keys_to_a_fourth_server(
    clients: dict, cls: type, low: float, high: float
) -> None:
    """After move_keys every key reads back through the 4-server router."""
    old = three(clients, cls)
    new = ShardedClient(clients, cls(names(4)))
    data = {f"item:{i}": str(i) for i in range(2000)}
    old.mset(data)
    old.client_for("item:1").expire("item:1", 500)
    missing = sum(v is None for v in new.mget(list(data)))
    report = move_keys(old, new)
    print(f"{cls.__name__}: {report.moved} of {report.scanned} keys moved")
    assert report.scanned == 2000 and report.moved == missing
    assert low < report.moved / 2000 < high
    assert new.mget(list(data)) == list(data.values())
    assert 0 < new.ttl("item:1") <= 500  # MIGRATE keeps the TTL


@pytest.mark.parametrize("kind", ROUTER_KINDS)
def test_make_router_builds_every_kind(kind: str, keys: list[str]) -> None:
    """make_router builds each labelled router, and the ring takes vnodes."""
    router = make_router(kind, names(3), vnodes=10)
    assert set(load_spread(router, keys[:1000]).counts) == set(names(3))
    if kind == "hash ring":
        assert router.vnodes == 10


def test_make_router_rejects_unknown_kind() -> None:
    """An unknown router label is a ValueError naming the choices."""
    with pytest.raises(ValueError, match="kind='ketama'"):
        make_router("ketama", names(3))


@pytest.mark.parametrize("n", [3, 6])
def test_growth_cost(n: int, keys: list[str]) -> None:
    """growth_cost: about 1/(n+1) for jump hash, about n/(n+1) for modulo."""
    assert abs(growth_cost("jump hash", n, keys) - 1 / (n + 1)) < 0.02
    assert abs(growth_cost("modulo", n, keys) - n / (n + 1)) < 0.02
    with pytest.raises(ValueError, match="nodes=0"):
        growth_cost("modulo", 0, keys)


def test_ring_balance_improves_with_vnodes() -> None:
    """A ring's busiest share over fair share drops with more virtual nodes."""
    few, many = ring_balance(1, seed=3), ring_balance(1000, seed=3)
    assert few > many >= 1.0 and many < 1.1
