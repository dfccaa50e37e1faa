"""labkit.sharding: routers, how many keys move, ShardedClient and move_keys."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import zlib
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest
import redis
from checks import assert_refused, pid_of

import labkit
from labkit.core.wait import wait_until
from labkit.errors import CrossSlotError, MoveError, ShardUnavailableError
from labkit.lab.sharding import (
    ROUTER_KINDS,
    char_sum,
    growth_cost,
    load_spread,
    make_router,
    moved_fraction,
    ring_balance,
    sample_keys,
)
from labkit.server import Server, free_port, no_retry
from labkit.sharding import (
    HashRing,
    JumpHash,
    ModuloRouter,
    Rendezvous,
    ShardedClient,
    cluster_nodes,
    hash32,
    hash64,
    hash_tag,
    jump_bucket,
    key_slot,
    move_keys,
    parse_cluster_nodes,
    same_slot,
    tagged,
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
def test_modulo_moves_most_keys(
    hash_fn: Callable[[str | bytes], int], keys: list[str]
) -> None:
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
    assert hash32("user:1") == hash32(b"user:1") == zlib.crc32(b"user:1")
    assert char_sum("abc") == 294 == char_sum("cba")
    assert key_slot("user:1") == 10778  # the value the real cluster reports
    assert key_slot("cart:{42}") == key_slot("orders:{42}") == key_slot("42")
    assert key_slot("a{}b") != key_slot("")  # an empty tag is not a tag


def test_ring_lookup_is_the_first_point_clockwise() -> None:
    """node_for(key) is the owner of the first point after hash32(key), wrapping
    past the last point to the first; points are hash64("name#i")'s top 32 bits."""
    from bisect import bisect_right

    ring = HashRing(names(4), vnodes=50)
    points = [p for p, _ in ring.ring]
    owners = [n for _, n in ring.ring]
    assert len(points) == 200 and points == sorted(points)
    assert points[0] == min(
        hash64(f"{n}#{i}") >> 32 for n in names(4) for i in range(50)
    )
    for i in range(3000):
        key = f"user:{i}"
        j = bisect_right(points, hash32(key))
        assert (
            ring.node_for(key) == owners[j % len(points)] == ring.node_for(key.encode())
        )
    top = max(points)  # a key past the last point wraps to the first point's owner
    assert ring._owners[len(points)] == owners[0] and top < 2**32


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
    [([], "at least 1"), (["a", "b", "a"], "duplicate")],
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
        (
            lambda: HashRing(["a"], weights={"a": 10**400}),
            r"weights\['a'\]=100000\.\.\.\(401 digits\)",
        ),
        (lambda: Rendezvous(["a", "b"], weights={"b": -1}), r"weights\['b'\]=-1"),
        (lambda: Rendezvous(["a"], weights={"z": 1}), "not among nodes"),
    ],
)
def test_bad_settings(make: Callable[[], object], match: str) -> None:
    """vnodes < 1, weight <= 0 and unknown weighted names raise ValueError."""
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_key_and_name_types() -> None:
    """A non-string key or node name is a TypeError naming it."""
    with pytest.raises(TypeError, match="key=42"):
        HashRing(["a"]).node_for(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="nodes item=7"):
        JumpHash(["a", 7])  # type: ignore[list-item]


# --- ShardedClient on real servers ------------------------------------------
@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, Server]]:
    """Four embedded servers; the tests use three or all four."""
    with ExitStack() as stack:
        yield {n: stack.enter_context(Server()) for n in names(4)}


@pytest.fixture
def clients(servers: dict[str, Server]) -> Iterator[dict[str, redis.Redis]]:
    """A flushed client per server."""
    out = {name: s.client(socket_timeout=5) for name, s in servers.items()}
    for c in out.values():
        c.flushdb()
    yield out
    for c in out.values():
        c.close()


def three(
    clients: dict[str, redis.Redis], router_cls: type = HashRing
) -> ShardedClient:
    subset = {n: clients[n] for n in names(3)}
    return ShardedClient(subset, router_cls(names(3)))


def test_sharded_client_routes_and_splits(clients: dict[str, redis.Redis]) -> None:
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


def test_sharded_client_refuses_mismatched_names(
    clients: dict[str, redis.Redis],
) -> None:
    """Router nodes and client names must be the same set."""
    with pytest.raises(ValueError, match="same servers"):
        ShardedClient({"node0": clients["node0"]}, HashRing(names(2)))


@pytest.mark.parametrize(
    ("cls", "low", "high"), [(HashRing, 0.18, 0.32), (ModuloRouter, 0.68, 0.82)]
)
def test_move_keys_to_a_fourth_server(
    clients: dict[str, redis.Redis], cls: type, low: float, high: float
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
        assert isinstance(router, HashRing) and router.vnodes == 10


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


# --- hash tags and one slot --------------------------------------------------
def test_hash_tag_and_tagged_keys_share_a_slot() -> None:
    """tagged() builds keys of one slot; hash_tag() shows what is hashed."""
    keys = [tagged("user:1", "cart"), tagged("user:1", "orders", 7)]
    assert keys == ["{user:1}:cart", "{user:1}:orders:7"]
    assert same_slot(keys) == key_slot("user:1")
    assert hash_tag("{user:1}:cart") == b"user:1"
    assert hash_tag("a{}b") == b"a{}b"  # empty braces: the whole key
    assert hash_tag("{}x}") == b"{}x}"  # a brace-only tag is no tag


def test_same_slot_names_the_split() -> None:
    """same_slot refuses keys of two slots, naming the slots, before any command."""
    err = same_slot_error(["user:1:name", "user:1:cart"])
    assert len(err.slots) == 2 and "hash tag" in str(err)
    # An empty tag is no tag: "{}a" and "{}b" hash whole and split.
    assert len(same_slot_error(["{}a", "{}b"]).slots) == 2


def same_slot_error(keys: list[str]) -> CrossSlotError:
    with pytest.raises(CrossSlotError) as info:
        same_slot(keys)
    return info.value


# --- CLUSTER NODES, parsed once ----------------------------------------------
NODES_TEXT = (
    # Redis 7.0: address with a trailing ",hostname" (empty here).
    "07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004, slave "
    "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected\n"
    "67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@31002 master - 0 "
    "1426238316232 2 connected 5461-10922 [5470->-292f8b365bb7edb5e285caf0b7e6ddc7265"
    "d2f4f]\n"
    # Valkey 8+: aux fields after the hostname.
    "292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 127.0.0.1:30003@31003,,shard-id=ab "
    "myself,master - 0 0 3 connected 10923-16383 0 [5470-<-67ed2db8d677e59ec4a4cefb"
    "06858cf2a1a89fa1]\n"
    "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca :0@0 master,fail?,noaddr - "
    "1426238316232 1426238316232 0 disconnected\n"
)


def test_parse_cluster_nodes_every_field() -> None:
    """Roles, addresses, slot ranges and migrations come out of one parser."""
    replica, middle, me, lost = parse_cluster_nodes(NODES_TEXT)
    assert replica.master_id == lost.id and not replica.is_master
    assert replica.address == "127.0.0.1:30004" and replica.bus_port == 31004
    assert middle.slots == ((5461, 10922),) and middle.slot_count() == 5462
    assert middle.migrating == {5470: me.id} and me.importing == {5470: middle.id}
    assert me.myself and me.slots == ((10923, 16383), (0, 0)) and me.usable
    assert me.slot_list()[-1] == 0 and me.config_epoch == 3
    assert not lost.usable and lost.port == 0 and not lost.connected
    assert parse_cluster_nodes(NODES_TEXT.encode()) == parse_cluster_nodes(NODES_TEXT)


@pytest.mark.parametrize(
    ("text", "error", "words"),
    [
        ({"127.0.0.1:1": {}}, TypeError, "raw CLUSTER NODES reply"),
        ("abc 1.2.3.4:5@6 master", ValueError, "at least 8 fields"),
        (NODES_TEXT.replace("10923-16383", "10923-16384"), ValueError, "16384"),
    ],
)
def test_parse_cluster_nodes_refuses_garbage(
    text: Any, error: type[Exception], words: str
) -> None:
    """A parsed dict or a malformed line is refused, naming the problem."""
    with pytest.raises(error, match=words):
        parse_cluster_nodes(text)


# --- bad input: every public class and function of labkit.sharding -----------
@pytest.fixture
def one(redis_url: str, r: redis.Redis) -> Iterator[ShardedClient]:
    """A one-node ShardedClient on the test database (so assert_refused sees it)."""
    client = labkit.connect(redis_url, socket_timeout=5)
    yield ShardedClient({"only": client}, HashRing(["only"]))
    client.close()


def _ring_points_bomb(sc: ShardedClient) -> HashRing:
    return HashRing(names(300), vnodes=10_000)


BAD_LIBRARY_INPUT = [
    # routers: nodes
    (lambda sc: HashRing("abc"), TypeError, ["nodes='abc'", "bare str"]),
    (lambda sc: Rendezvous([]), ValueError, ["nodes=[]", "at least 1"]),
    (lambda sc: JumpHash(["a", ""]), ValueError, ["nodes item=''", "non-empty"]),
    (lambda sc: ModuloRouter(["a", 7]), TypeError, ["nodes item=7", "str"]),  # type: ignore[list-item]
    (lambda sc: HashRing(["a", "a"]), ValueError, ["duplicate node names ['a']"]),
    (lambda sc: HashRing(names(10_001)), ValueError, ["10001 names", "at most"]),
    # routers: vnodes and weights
    (lambda sc: HashRing(["a"], vnodes=0), ValueError, ["vnodes=0", "1 to 10000"]),
    (lambda sc: HashRing(["a"], vnodes=10**9), ValueError, ["vnodes=1000000000"]),
    (lambda sc: HashRing(["a"], vnodes=True), TypeError, ["vnodes=True", "an int"]),
    (lambda sc: HashRing(["a"], vnodes=2.5), TypeError, ["vnodes=2.5", "an int"]),  # type: ignore[arg-type]
    (_ring_points_bomb, ValueError, ["vnodes=10000", "3,000,000 points"]),
    (
        lambda sc: HashRing(["a"], weights={"a": math.nan}),
        ValueError,
        ["weights['a']=nan", "finite number > 0"],
    ),
    (
        lambda sc: Rendezvous(["a"], weights={"a": math.inf}),
        ValueError,
        ["weights['a']=inf", "<= 1000"],
    ),
    (lambda sc: HashRing(["a"], weights={"a": 1e9}), ValueError, ["=1000000000.0"]),
    (lambda sc: HashRing(["a"], weights={"a": 0}), ValueError, ["weights['a']=0"]),
    (lambda sc: HashRing(["a"], weights={"a": -1}), ValueError, ["weights['a']=-1"]),
    (lambda sc: HashRing(["a"], weights={"a": True}), TypeError, ["=True"]),
    (lambda sc: HashRing(["a"], weights=[("a", 2)]), TypeError, ["weights=", "map"]),  # type: ignore[arg-type]
    (lambda sc: Rendezvous(["a"], weights={"z": 1}), ValueError, ["not among nodes"]),
    (lambda sc: ModuloRouter(["a"], hash="crc"), TypeError, ["hash='crc'", "callable"]),  # type: ignore[arg-type]
    # routers: keys and jump_bucket
    (lambda sc: HashRing(["a"]).node_for(42), TypeError, ["key=42", "str or bytes"]),  # type: ignore[arg-type]
    (lambda sc: JumpHash(["a"]).node_for(None), TypeError, ["key=None"]),  # type: ignore[arg-type]
    (lambda sc: jump_bucket(-1, 3), ValueError, ["key=-1", "64-bit unsigned"]),
    (lambda sc: jump_bucket(2**64, 3), ValueError, ["key=18446744073709551616"]),
    (lambda sc: jump_bucket(1.5, 3), TypeError, ["key=1.5"]),  # type: ignore[arg-type]
    (lambda sc: jump_bucket(1, 0), ValueError, ["buckets=0", "from 1"]),
    (lambda sc: jump_bucket(1, True), TypeError, ["buckets=True"]),
    # hash tags and slots
    (lambda sc: tagged("", "cart"), ValueError, ["tag=''", "non-empty"]),
    (lambda sc: tagged("}x", "cart"), ValueError, ["tag='}x'", "braces"]),
    (lambda sc: tagged("{}", "cart"), ValueError, ["tag='{}'"]),
    (lambda sc: tagged(True, "cart"), TypeError, ["tag=True"]),
    (lambda sc: tagged("u1", None), TypeError, ["parts[0]=None"]),  # type: ignore[arg-type]
    (lambda sc: same_slot("abc"), TypeError, ["keys='abc'", "bare str"]),
    (lambda sc: same_slot([]), ValueError, ["keys=[]"]),
    (lambda sc: same_slot(["a", "b"]), CrossSlotError, ["2 slots", "hash tag"]),
    (lambda sc: key_slot(42), TypeError, ["key=42"]),  # type: ignore[arg-type]
    # ShardedClient
    (lambda sc: ShardedClient(sc.clients, "ring"), TypeError, ["router='ring'"]),  # type: ignore[arg-type]
    (
        lambda sc: ShardedClient(list(sc.clients.values()), sc.router),  # type: ignore[arg-type]
        TypeError,
        ["clients=", "mapping"],
    ),
    (
        lambda sc: ShardedClient({"only": "redis://x"}, sc.router),  # type: ignore[dict-item]
        TypeError,
        ["client='redis://x'", "needs a redis.Redis"],
    ),
    (
        lambda sc: ShardedClient({"x": sc.clients["only"]}, sc.router),
        ValueError,
        ["['x']", "same servers"],
    ),
    (lambda sc: sc.get(""), ValueError, ["key=''", "non-empty"]),
    (lambda sc: sc.set(None, 1), TypeError, ["key=None"]),
    (lambda sc: sc.mget("abc"), TypeError, ["keys='abc'", "bare str"]),
    (lambda sc: sc.mset([("a", 1)]), TypeError, ["mapping=", "mapping"]),
    (lambda sc: sc.mset({"fine": 1, "": 2}), ValueError, ["key=''"]),
    (lambda sc: sc.delete("fine", 5), TypeError, ["key=5"]),
    (lambda sc: list(sc.scan_iter(match="")), ValueError, ["match=''"]),
    (lambda sc: list(sc.scan_iter(count=0)), ValueError, ["count=0"]),
    (lambda sc: sc.execute("", "k"), ValueError, ["command=''"]),
    # move_keys
    (lambda sc: move_keys("old", sc), TypeError, ["old='old'", "ShardedClient"]),  # type: ignore[arg-type]
    (lambda sc: move_keys(sc, sc, batch=0), ValueError, ["batch=0", "from 1"]),
    (lambda sc: move_keys(sc, sc, batch=True), TypeError, ["batch=True"]),
    (lambda sc: move_keys(sc, sc, batch=10**6), ValueError, ["batch=1000000"]),
    (lambda sc: move_keys(sc, sc, timeout=math.nan), ValueError, ["timeout=nan"]),
    (lambda sc: move_keys(sc, sc, match=""), ValueError, ["match=''"]),
    # cluster nodes
    (lambda sc: cluster_nodes("127.0.0.1:7000"), TypeError, ["client='127.0.0.1"]),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(
    ("call", "error", "words"),
    BAD_LIBRARY_INPUT,
    ids=[f"case{i:02d}" for i in range(len(BAD_LIBRARY_INPUT))],
)
def test_bad_input_is_refused(
    r: redis.Redis,
    one: ShardedClient,
    call: Callable[[ShardedClient], object],
    error: type[Exception],
    words: list[str],
) -> None:
    """Each bad argument raises a clear error naming it, having written nothing."""
    r.set("fine", "kept")  # an existing key the refused calls must not touch
    assert_refused(r, lambda: call(one), error, *words)


def test_sharded_client_needs_a_socket_timeout(redis_url: str) -> None:
    """A client with no socket_timeout is refused: a frozen server would hang it."""
    client = redis.Redis.from_url(redis_url)  # redis-py's default: no timeout
    try:
        with pytest.raises(ValueError, match=r"clients\['a'\] has socket_timeout"):
            ShardedClient({"a": client}, JumpHash(["a"]))
    finally:
        client.close()


def test_move_keys_refuses_one_name_for_two_servers(
    clients: dict[str, redis.Redis],
) -> None:
    """A name present in both layouts must be the same server."""
    old = ShardedClient({"node0": clients["node0"]}, JumpHash(["node0"]))
    swapped = {"node0": clients["node1"], "node1": clients["node0"]}
    new = ShardedClient(swapped, JumpHash(["node0", "node1"]))
    with pytest.raises(ValueError, match=r"'node0' is .* must be the same server"):
        move_keys(old, new)


@pytest.mark.timeout(120)
def test_unreachable_server_fails_fast_with_its_name(
    clients: dict[str, redis.Redis],
) -> None:
    """A server that refuses connections: ShardUnavailableError naming it, quickly."""
    dead = redis.Redis(port=free_port(), socket_timeout=1, retry=no_retry())
    sc = ShardedClient(
        {"node0": clients["node0"], "gone": dead}, JumpHash(["node0", "gone"])
    )
    key = next(k for k in sample_keys(50) if sc.node_for(k) == "gone")
    with pytest.raises(
        ShardUnavailableError, match="server 'gone' did not answer GET"
    ) as info:
        sc.get(key)
    assert isinstance(info.value.__cause__, redis.ConnectionError)  # refused
    assert (info.value.node, info.value.key, info.value.command) == ("gone", key, "GET")
    with pytest.raises(ShardUnavailableError, match="'gone'"):
        sc.mget(sample_keys(50))
    with pytest.raises(MoveError, match="listing keys on 'gone'"):
        move_keys(sc, ShardedClient({"node0": clients["node0"]}, JumpHash(["node0"])))


# --- faults: a node frozen or killed during routed traffic and during a move --
@pytest.fixture
def trio() -> Iterator[list[Server]]:
    """Three servers of its own (the tests freeze and kill them)."""
    with ExitStack() as stack:
        servers = [stack.enter_context(Server()) for _ in range(3)]
        yield servers
        for s in servers:  # a test that failed mid-freeze must not leave it stopped
            if s.running:
                os.kill(pid_of(s), signal.SIGCONT)


def fast(server: Server) -> redis.Redis:
    """A client that fails at once: 1 s socket timeout, no retries."""
    return server.client(socket_timeout=1, retry=no_retry())


@pytest.mark.timeout(120)
def test_frozen_node_fails_in_seconds_then_recovers(trio: list[Server]) -> None:
    """SIGSTOP: calls on that node fail within the socket timeout; others serve."""
    sc = ShardedClient(
        {f"n{i}": fast(s) for i, s in enumerate(trio)}, JumpHash(["n0", "n1", "n2"])
    )
    data = {f"user:{i}": str(i) for i in range(300)}
    sc.mset(data)
    frozen = [k for k in data if sc.node_for(k) == "n1"]
    alive = [k for k in data if sc.node_for(k) != "n1"]
    os.kill(pid_of(trio[1]), signal.SIGSTOP)
    try:
        with pytest.raises(
            ShardUnavailableError, match="'n1' did not answer GET"
        ) as info:
            sc.get(frozen[0])
        assert isinstance(info.value.__cause__, redis.TimeoutError)
        assert [sc.get(k) for k in alive[:50]] == [data[k] for k in alive[:50]]
    finally:
        os.kill(pid_of(trio[1]), signal.SIGCONT)
    assert sc.mget(list(data)) == list(data.values())  # nothing lost


@pytest.mark.timeout(120)
def test_killed_node_during_traffic(trio: list[Server]) -> None:
    """SIGKILL mid-traffic: its calls fail fast by name, the other nodes go on."""
    sc = ShardedClient(
        {f"n{i}": fast(s) for i, s in enumerate(trio)}, JumpHash(["n0", "n1", "n2"])
    )
    keys = sample_keys(600, seed=5)
    failures: list[ShardUnavailableError] = []
    served = 0
    for i, key in enumerate(keys):
        if i == 200:
            trio[2].kill()
        try:
            sc.set(key, "v")
            served += 1
        except ShardUnavailableError as exc:
            failures.append(exc)
            assert isinstance(exc.__cause__, redis.ConnectionError)  # refused
    assert failures and {f.node for f in failures} == {"n2"}
    assert served + len(failures) == 600
    assert served >= 200 + sum(sc.node_for(k) != "n2" for k in keys[200:])
    trio[2].restart()  # empty again: nothing was persisted
    sc.set(keys[-1], "back")
    assert sc.get(keys[-1]) == "back"


def move_setup(
    trio: list[Server], n: int
) -> tuple[ShardedClient, ShardedClient, dict[str, str]]:
    """Keys on two servers; the new layout adds the third."""
    clients = {
        f"n{i}": s.client(socket_timeout=5, retry=no_retry())
        for i, s in enumerate(trio)
    }
    old = ShardedClient({k: clients[k] for k in ("n0", "n1")}, JumpHash(["n0", "n1"]))
    new = ShardedClient(clients, JumpHash(["n0", "n1", "n2"]))
    data = {f"item:{i}": str(i) for i in range(n)}
    old.mset(data)
    return old, new, data


def freeze_when_filling(server: Server, sig: int) -> threading.Thread:
    """A thread that signals ``server`` once keys start arriving on it."""
    probe = server.client(socket_timeout=1)

    def watch() -> None:
        wait_until(lambda: probe.dbsize() > 0, timeout=30, interval=0.002)
        os.kill(pid_of(server), sig)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


@pytest.mark.timeout(120)
def test_move_with_a_frozen_target_fails_then_finishes(trio: list[Server]) -> None:
    """SIGSTOP of the target mid-move: MoveError in seconds; a rerun moves the rest."""
    old, new, data = move_setup(trio, 3000)
    to_move = sum(new.node_for(k) == "n2" for k in data)
    watcher = freeze_when_filling(trio[2], signal.SIGSTOP)
    try:
        with pytest.raises(MoveError, match="run move_keys again") as info:
            move_keys(old, new, batch=1, timeout=1)
        watcher.join(timeout=5)
    finally:
        os.kill(pid_of(trio[2]), signal.SIGCONT)
    assert "timeout" in str(info.value)  # MIGRATE's timeout=1 fired
    assert 0 < info.value.moved < to_move
    assert info.value.target == "n2"
    report = move_keys(old, new)
    assert new.mget(list(data)) == list(data.values())  # nothing lost
    assert sum(new.dbsizes().values()) == len(data)  # nothing duplicated
    assert report.moved <= to_move


@pytest.mark.timeout(120)
def test_move_with_a_killed_target_costs_only_what_it_held(trio: list[Server]) -> None:
    """SIGKILL of the target mid-move: MoveError; keys not yet moved are intact."""
    old, new, data = move_setup(trio, 3000)
    watcher = freeze_when_filling(trio[2], signal.SIGKILL)
    with pytest.raises(MoveError) as info:
        move_keys(old, new, batch=1, timeout=1)
    watcher.join(timeout=5)
    still_old = old.mget(list(data))
    kept = sum(v is not None for v in still_old)
    # A key is either still on its old server or was moved to the dead one.
    assert kept + info.value.moved == len(data)
    assert kept >= len(data) - sum(new.node_for(k) == "n2" for k in data)


@pytest.mark.parametrize("decode", [True, False])
def test_sharded_client_decode_responses_either_way(
    redis_url: str, decode: bool
) -> None:
    """ShardedClient works with decode_responses True or False (redis-py's default):
    replies come back as the clients give them, keys route the same as str or bytes."""
    client = redis.Redis.from_url(redis_url, decode_responses=decode, socket_timeout=5)
    sc = ShardedClient({"a": client, "b": client}, HashRing(["a", "b"]))

    def text(s: str) -> str | bytes:
        return s if decode else s.encode()

    try:
        sc.mset({"dec:1": "x", "dec:2": "y"})
        assert sc.get("dec:1") == text("x") and sc.get(b"dec:1") == text("x")
        assert sc.mget(["dec:1", "dec:2", "dec:3"]) == [text("x"), text("y"), None]
        assert sc.incr("dec:n", 2) == 2 and sc.ttl("dec:n") == -1
        assert sorted(set(sc.scan_iter("dec:*"))) == [
            text(k) for k in ("dec:1", "dec:2", "dec:n")
        ]
        assert sc.node_for("dec:1") == sc.node_for(b"dec:1")
        assert sc.delete("dec:1", "dec:2", "dec:n") == 3
    finally:
        client.close()
