"""labkit.pubsub against real servers: delivery, loss, catch-up, faults, clean stops."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import redis
from checks import assert_refused, audit_keys

import labkit
from labkit.core.listen import Listener
from labkit.core.wait import wait_until
from labkit.errors import ListenerError, MalformedMessageError, WrongTypeError
from labkit.lab.proxy import Proxy
from labkit.lab.pubsub import (
    FanoutSubscribers,
    bus_delta,
    bus_messages,
    cluster_publish_cost,
    delivery_matrix,
    measure_fanout,
    server_cpu,
    slow_consumer,
    total,
)
from labkit.pubsub import Publisher, Received, Subscriber, history_key
from labkit.server import Cluster, Server, free_port, no_retry

CHANNELS = ["Weather", "Sports", "Music"]
SUBSCRIPTIONS = {
    "A": ["Weather", "Sports", "Music"],
    "B": ["Weather", "Sports"],
    "C": ["Sports", "Music"],
}


@pytest.fixture
def threads() -> Iterator[None]:
    """Fail if a test leaves a thread behind."""
    before = set(threading.enumerate())
    yield
    assert wait_until(lambda: set(threading.enumerate()) <= before, timeout=5), (
        f"threads left: {set(threading.enumerate()) - before}"
    )


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """Three primaries, one replica each (shared by the cluster tests)."""
    with Cluster(masters=3, replicas=1) as c:
        yield c


def _victim(r: redis.Redis) -> str:
    """The id of the one pub/sub connection of the database's server."""
    [victim] = [c["id"] for c in r.client_list() if "P" in c["flags"]]
    return str(victim)


# --- delivery -----------------------------------------------------------------
def test_visualizer_delivery_matrix(r: redis.Redis, threads: None) -> None:
    """A gets every channel, B and C only their two; publish counts receivers."""
    subs = {
        n: Subscriber(r, chans, name=n).start() for n, chans in SUBSCRIPTIONS.items()
    }
    try:
        pub = Publisher(r)
        sent = {"Weather": 3, "Sports": 2, "Music": 1}
        receivers = {
            c: [pub.publish(c, f"{c} {i}") for i in range(n)] for c, n in sent.items()
        }
        assert receivers == {"Weather": [2, 2, 2], "Sports": [3, 3], "Music": [2]}
        for name, sub in subs.items():
            assert sub.wait_for(sum(sent[c] for c in SUBSCRIPTIONS[name]))
        matrix = delivery_matrix(subs, CHANNELS)
    finally:
        for sub in subs.values():
            sub.stop()
    assert matrix == {
        "A": {"Weather": 3, "Sports": 2, "Music": 1},
        "B": {"Weather": 3, "Sports": 2, "Music": 0},
        "C": {"Weather": 0, "Sports": 2, "Music": 1},
    }


def test_late_subscriber_receives_nothing_earlier(r: redis.Redis) -> None:
    """Messages published before a subscriber joins are gone for it."""
    pub = Publisher(r)
    assert [pub.publish("Weather", f"early {i}") for i in range(5)] == [0] * 5
    with Subscriber(r, ["Weather"]) as late:
        assert pub.publish("Weather", "late") == 1
        got = late.get(timeout=5)
        assert late.get(timeout=0.2) is None
    assert got is not None and got.data == "late" and got.seq == 6
    assert late.stats.received == 1 and late.stats.missed == 0


def test_no_message_lost_to_connected_subscriber(r: redis.Redis) -> None:
    """10,000 messages to a connected subscriber all arrive, in order."""
    n = 10_000
    with Subscriber(r, ["bulk"]) as sub:
        pub = Publisher(r, clock=time.perf_counter)
        for start in range(0, n, 1000):
            assert pub.publish_many("bulk", range(start, start + 1000)) == [1] * 1000
        assert sub.wait_for(n, timeout=30)
        got = sub.drain()
    assert [m.seq for m in got] == list(range(1, n + 1))
    assert [m.data for m in got[:3]] == ["0", "1", "2"]
    assert sub.stats.received == n and sub.stats.missed == 0
    assert all(m.latency is not None and m.latency >= 0 for m in got)


def test_envelope_carries_no_time_unless_a_clock_is_given(r: redis.Redis) -> None:
    """The default envelope has no t (no latency); clock= adds it as sent_at."""
    assert '"t"' not in Publisher(r, source="p").wrap("c", "x")
    assert json.loads(Publisher(r, clock=lambda: 12.5).wrap("c", "x"))["t"] == 12.5
    with Subscriber(r, ["c"], clock=lambda: 20.0) as sub:
        Publisher(r).publish("c", "plain")
        Publisher(r, clock=lambda: 12.5).publish("c", "timed")
        assert sub.wait_for(2, timeout=10)
        plain, timed = sub.drain()
    assert plain.sent_at is None and plain.latency is None and plain.seq == 1
    assert timed.sent_at == 12.5 and timed.latency == 7.5
    with pytest.raises(TypeError, match=r"clock=.*must be callable"):
        Publisher(r, clock=5)  # type: ignore[arg-type]


def test_callback_is_the_deprecated_name_of_on_message(r: redis.Redis) -> None:
    """callback= still works, with a deprecation warning; both names: a
    TypeError."""
    seen: list[Any] = []
    with pytest.warns(DeprecationWarning, match=r"callback=.*use on_message="):
        sub = Subscriber(r, ["c"], callback=seen.append)
    assert sub.on_message == sub.callback == seen.append
    with sub:
        Publisher(r).publish("c", "hi")
        assert wait_until(lambda: [m.data for m in seen] == ["hi"])
    with pytest.raises(TypeError, match="on_message= only"):
        Subscriber(r, ["c"], on_message=print, callback=print)
    with (
        pytest.warns(DeprecationWarning),
        pytest.raises(TypeError, match="callback=3"),
    ):
        Subscriber(r, ["c"], callback=3)  # type: ignore[arg-type]


def test_pattern_subscription_and_callback(r: redis.Redis) -> None:
    """A pattern matches by glob; an on_message callback replaces the queue."""
    seen: list[Received] = []
    with Subscriber(r, patterns=["news.*"], on_message=seen.append) as sub:
        pub = Publisher(r)
        pub.publish("news.tech", "a")
        pub.publish("sports.tennis", "b")
        pub.publish("news.art", "c")
        assert sub.wait_for(2)
        assert sub.get(timeout=0.1) is None  # went to the callback
    assert [(m.channel, m.pattern, m.data) for m in seen] == [
        ("news.tech", "news.*", "a"),
        ("news.art", "news.*", "c"),
    ]


def test_plain_publish_is_delivered_unnumbered(r: redis.Redis) -> None:
    """Messages not sent by Publisher arrive as they are, without seq or time."""
    with Subscriber(r, ["raw"]) as sub:
        r.publish("raw", "hello")
        got = sub.get(timeout=5)
    assert got is not None and got.data == "hello"
    assert got.seq is None and got.latency is None


def test_channels_are_not_keys(r: redis.Redis) -> None:
    """A channel is never created: EXISTS says 0; PUBSUB CHANNELS/NUMSUB see it."""
    with Subscriber(r, ["Weather"]):
        assert r.exists("Weather") == 0
        assert r.pubsub_channels() == ["Weather"]
        assert r.pubsub_numsub("Weather", "Music") == [("Weather", 1), ("Music", 0)]
    assert wait_until(lambda: r.pubsub_channels() == [])


def test_listener_threads_stop_cleanly(redis_url: str, threads: None) -> None:
    """After stop() no listener thread and no subscriber connection remain."""
    client = labkit.connect(redis_url, client_name="lab-sub-under-test")
    admin = labkit.connect(redis_url)

    def ours() -> list[dict[str, Any]]:
        return [c for c in admin.client_list() if c["name"] == "lab-sub-under-test"]

    subs = [Subscriber(client, [f"ch{i}"], name=f"sub-{i}").start() for i in range(3)]
    assert len(ours()) == 3 and all(s.running for s in subs)
    for s in subs:
        s.stop()
    assert wait_until(lambda: not ours())
    assert admin.pubsub_numsub("ch0", "ch1", "ch2") == [
        ("ch0", 0),
        ("ch1", 0),
        ("ch2", 0),
    ]
    client.close()
    admin.close()


# --- the listener survives (issue 13) --------------------------------------------
def test_callback_errors_and_bad_envelopes_do_not_kill_it(
    r: redis.Redis, threads: None
) -> None:
    """A raising callback and a malformed envelope are counted; the thread lives on."""
    seen: list[str] = []

    def callback(msg: object) -> None:
        data = getattr(msg, "data", "")
        if data == "boom":
            raise RuntimeError("the user's callback failed")
        seen.append(data)

    with Subscriber(r, ["c"], on_message=callback) as sub:
        pub = Publisher(r)
        pub.publish("c", "one")
        pub.publish("c", "boom")
        r.publish("c", '{"src": "x", "seq": "not a number", "t": 0, "data": ""}')
        r.publish("c", '{"src": broken json')
        pub.publish("c", "two")
        assert wait_until(lambda: seen == ["one", "two"])
        assert sub.running
        stats = sub.stats
    assert (stats.callback_errors, stats.bad_messages) == (1, 2)
    assert isinstance(stats.last_error, MalformedMessageError)
    assert stats.received == 3  # one, boom (delivered, then raised), two


def test_on_subscribe_reloads_after_client_kill(r: redis.Redis, threads: None) -> None:
    """CLIENT KILL: the subscriber resubscribes and on_subscribe runs again."""
    reloads: list[str] = []
    with Subscriber(
        r, ["feed"], on_subscribe=reloads.append, health_check_interval=0.1
    ) as sub:
        assert reloads == ["feed"]
        r.client_kill_filter(_id=_victim(r))
        assert wait_until(lambda: reloads == ["feed", "feed"])
        # redis-py may reconnect inside its own retry, unseen by the loop:
        # the reconnect is what is always counted.
        assert sub.stats.reconnects == 1 and not sub.stats.down


def test_stats_are_frozen_at_stop(r: redis.Redis, threads: None) -> None:
    """After stop() the counters stay put, even when the pooled connection the
    subscriber used is reused, killed and reconnected by someone else."""
    with Subscriber(r, ["a"]) as sub:
        pass
    raw = r.pubsub()  # takes the connection the subscriber gave back
    raw.subscribe("b")
    assert raw.get_message(timeout=2)["type"] == "subscribe"
    r.client_kill_filter(_id=_victim(r))
    kinds = []
    for _ in range(5):  # the first read may raise; a later one reconnects
        with contextlib.suppress(redis.ConnectionError):
            kinds.append((raw.get_message(timeout=0.5) or {}).get("type"))
    assert "subscribe" in kinds  # reconnected and resubscribed
    raw.close()
    assert sub.stats.reconnects == 0 and sub.stats.connects == 1


def test_killed_connection_is_noticed_and_gaps_counted(r: redis.Redis) -> None:
    """CLIENT KILL: the subscriber reconnects and counts what it missed."""
    with Subscriber(r, ["feed"], health_check_interval=0.2) as sub:
        pub = Publisher(r)
        pub.publish("feed", "before")
        assert sub.wait_for(1)
        # Kill and publish in one transaction: nothing can resubscribe between.
        pipe = r.pipeline(transaction=True)
        pipe.client_kill_filter(_id=_victim(r))
        for i in range(50):
            pipe.publish("feed", pub.wrap("feed", f"lost {i}"))
        assert pipe.execute() == [1] + [0] * 50
        assert wait_until(lambda: r.pubsub_numsub("feed") == [("feed", 1)])
        for i in range(10):
            pub.publish("feed", f"after {i}")
        assert sub.wait_for(11)
    assert sub.stats.received == 11 and sub.stats.missed == 50
    assert sub.stats.reconnects == 1


@pytest.mark.parametrize(("history", "recovered"), [(100, 50), (10, 10)])
def test_catch_up_from_history_after_client_kill(
    r: redis.Redis, threads: None, history: int, recovered: int
) -> None:
    """With history, the 50 messages published while down are read back (up to
    MAXLEN: a shorter history loses the oldest, and the gap is counted)."""
    pub = Publisher(r, history=history)
    with Subscriber(r, ["feed"], catch_up=True, health_check_interval=0.2) as sub:
        assert pub.publish("feed", "before") == 1
        assert sub.wait_for(1)
        tx = r.pipeline(transaction=True)
        tx.client_kill_filter(_id=_victim(r))
        for i in range(50):
            pub.queue(tx, "feed", f"while down {i}")
        replies = tx.execute()
        assert replies[0] == 1 and [rep[0] for rep in replies[1:]] == [0] * 50
        assert sub.wait_for(1 + recovered)  # read back at the resubscription
        for i in range(10):
            pub.publish("feed", f"after {i}")
        assert sub.wait_for(1 + recovered + 10)
        got = sub.drain()
    assert [m.seq for m in got] == [1, *range(52 - recovered, 52), *range(52, 62)]
    assert [m.recovered for m in got].count(True) == recovered
    stats = sub.stats
    assert (stats.recovered, stats.missed) == (recovered, 50 - recovered)
    assert r.xlen(history_key("feed")) == min(history, 61)
    assert 0 < r.ttl(history_key("feed")) <= 3600


def test_history_keys_are_bounded(r: redis.Redis) -> None:
    """Every key a history publisher writes is capped and expires (keys audit)."""
    pub = Publisher(r, history=5, history_ttl=60)
    for channel in ("a", "b"):
        pub.publish_many(channel, range(20))
    audit = audit_keys(r, Publisher)
    assert sorted(audit) == ["labkit:pubsub:{a}", "labkit:pubsub:{b}"]
    assert r.xlen("labkit:pubsub:{a}") == 5 and 0 < r.ttl("labkit:pubsub:{a}") <= 60


# --- faults on real servers (issue 13) ----------------------------------------
def test_sigkill_of_the_server_is_reported_then_survived(threads: None) -> None:
    """SIGKILL: the subscriber reports the outage within seconds; after a
    restart on the same port it is back, with the downtime measured."""
    with Server() as srv:
        client = srv.client(retry=no_retry(), socket_timeout=1)
        with Subscriber(client, ["c"], health_check_interval=0.1) as sub:
            srv.kill()
            assert wait_until(lambda: sub.stats.down, timeout=3)
            assert sub.running and sub.stats.network_errors >= 1
            srv.restart()
            assert wait_until(lambda: client.pubsub_numsub("c") == [("c", 1)], 10)
            Publisher(client).publish("c", "back")
            got = sub.get(timeout=5)
            stats = sub.stats
        client.close()
    assert got is not None and got.data == "back"
    assert stats.reconnects >= 1 and stats.downtime > 0 and not stats.down


@pytest.mark.timeout(120)
def test_sigstop_is_found_by_the_watchdog(threads: None) -> None:
    """SIGSTOP: the watchdog closes the silent connection within seconds; after
    SIGCONT the subscriber is back and receives again."""
    with Server() as srv:
        client = srv.client(retry=no_retry(), socket_timeout=1)
        assert srv.pid is not None
        with Subscriber(
            client, ["c"], health_check_interval=0.1, dead_after=0.3
        ) as sub:
            os.kill(srv.pid, signal.SIGSTOP)
            try:
                assert wait_until(lambda: sub.stats.unresponsive >= 1, timeout=60)
                assert sub.stats.down
            finally:
                os.kill(srv.pid, signal.SIGCONT)
            assert wait_until(lambda: client.pubsub_numsub("c") == [("c", 1)], 10)
            Publisher(client).publish("c", "after the freeze")
            got = sub.get(timeout=5)
        client.close()
    assert got is not None and got.data == "after the freeze"


def test_redis_py_health_check_misses_a_black_hole(threads: None) -> None:
    """Behind a black hole redis-py's health_check_interval raises nothing; the
    Subscriber's watchdog notices within dead_after."""
    with Server() as srv, Proxy.to(srv) as px:
        raw_client = px.client(health_check_interval=0.1, socket_timeout=5)
        raw = raw_client.pubsub()
        raw.subscribe("c")
        assert raw.get_message(timeout=2)["type"] == "subscribe"
        sub_client = px.client(retry=no_retry(), socket_timeout=1)
        sub = Subscriber(sub_client, ["c"], health_check_interval=0.1, dead_after=0.5)
        sub.start()
        try:
            px.blackhole()
            deadline = time.monotonic() + 1.5
            while time.monotonic() < deadline:  # no exception: it looks healthy
                assert raw.get_message(timeout=0.1) is None
            assert sub.stats.unresponsive >= 1
        finally:
            px.heal()
            sub.stop()
            raw.close()
            raw_client.close()
            sub_client.close()


@pytest.mark.timeout(120)
def test_frozen_server_fails_start_within_seconds(threads: None) -> None:
    """start() on a frozen server raises a clear ListenerError in bounded time."""
    with Server() as srv:
        client = srv.client(
            retry=no_retry(), socket_timeout=1, socket_connect_timeout=1
        )
        assert srv.pid is not None
        os.kill(srv.pid, signal.SIGSTOP)
        try:
            with pytest.raises(ListenerError, match="frozen-sub") as info:
                Subscriber(client, ["c"], name="frozen-sub").start(timeout=1)
            # The socket timeout, or start()'s own: a timeout fired, no hang.
            cause = info.value.__cause__
            assert isinstance(cause, redis.TimeoutError) or "within 1 s" in str(
                info.value
            )
        finally:
            os.kill(srv.pid, signal.SIGCONT)
        client.close()


# --- cluster --------------------------------------------------------------------
def test_sharded_pubsub_and_history_on_cluster(cluster: Cluster) -> None:
    """SPUBLISH/SSUBSCRIBE on a cluster, history streams in each channel's slot."""
    channels = ["alpha", "beta", "gamma", "delta", "epsilon"]
    rc = cluster.client()
    try:
        assert len({rc.keyslot(c) for c in channels}) == len(channels)
        owners = {rc.get_node_from_key(c).name for c in channels}
        with Subscriber(rc, channels, sharded=True, catch_up=True) as sub:
            pub = Publisher(rc, sharded=True, history=10)
            assert [pub.publish(c, c.upper()) for c in channels] == [1] * 5
            assert sub.wait_for(5)
            got = sub.drain()
        assert sorted(m.data for m in got) == sorted(c.upper() for c in channels)
        assert {m.kind for m in got} == {"smessage"} and all(m.id for m in got)
        assert sub.stats.connects == len(owners)  # one connection per shard
        for c in channels:
            assert rc.xlen(history_key(c)) == 1
            assert rc.keyslot(history_key(c)) == rc.keyslot(c)
        with pytest.raises(TypeError, match="sharded=True"):
            Subscriber(rc, channels)
    finally:
        rc.close()


def test_publish_is_broadcast_spublish_stays_in_its_shard(cluster: Cluster) -> None:
    """PUBLISH is sent to every other node; SPUBLISH only to the shard's replica."""
    cost = cluster_publish_cost(cluster, messages=50)
    nodes = len(cluster.nodes)
    assert total(cost["PUBLISH"], "cluster_stats_messages_publish_sent") == 50 * (
        nodes - 1
    )
    assert total(cost["SPUBLISH"], "cluster_stats_messages_publish_sent") == 0
    assert total(cost["SPUBLISH"], "cluster_stats_messages_publishshard_sent") == 50
    receivers = [
        port
        for port, c in cost["SPUBLISH"].items()
        if c["cluster_stats_messages_publishshard_received"]
    ]
    assert len(receivers) == 1  # the one replica of the channel's shard


# --- lab measurements -------------------------------------------------------------
@pytest.mark.parametrize("mode", ["processes", "threads"])
def test_measure_fanout(r: redis.Redis, threads: None, mode: str) -> None:
    """One latency per message and subscriber; the server's time per PUBLISH."""
    res = measure_fanout(r, subscribers=5, messages=4, mode=mode, processes=2)
    assert res.latency.shape == (4, 5) and (res.latency > 0).all()
    assert res.receivers == [5] * 4 and res.server_us > 0
    assert res.server_cpu_us > 0  # the main thread's CPU per PUBLISH (INFO cpu)
    assert np.array_equal(res.last, res.latency.max(axis=1))
    assert r.pubsub_numsub("lab:fanout") == [("lab:fanout", 0)]


def test_server_cpu_counts_publish_calls(r: redis.Redis) -> None:
    """server_cpu reads PUBLISH's calls and the main thread's CPU, both growing."""
    before = server_cpu(r)
    for i in range(3):
        r.publish("lab:nobody", str(i))
    after = server_cpu(r)
    assert after.calls - before.calls == 3 and after.usec >= before.usec
    assert after.cpu >= before.cpu > 0


def test_fanout_subscribers_stop_leaves_no_subscriber(r: redis.Redis) -> None:
    """Stopped before any message, the harness leaves nobody on the channel."""
    with FanoutSubscribers(r, 3, 1, mode="processes", channel="lab:fan") as subs:
        assert r.pubsub_numsub(subs.channel) == [("lab:fan", 3)]
    assert wait_until(lambda: r.pubsub_numsub("lab:fan") == [("lab:fan", 0)], 5)


def test_bus_delta_counts_one_publish_per_other_node(cluster: Cluster) -> None:
    """One PUBLISH to a primary is sent over the bus to every other node."""
    before = bus_messages(cluster)
    node = cluster.masters[0].client()
    try:
        node.publish("lab:bus", "x")
    finally:
        node.close()
    delta = bus_delta(cluster, before)
    sent = total(delta, "cluster_stats_messages_publish_sent")
    assert sent == len(cluster.nodes) - 1
    assert total(delta, "cluster_stats_messages_publish_received") == sent


def test_slow_consumer_is_cut_off_and_counts_its_gap(threads: None) -> None:
    """Behind a capped link the output buffer grows until the server drops the
    subscriber; PUBLISH had counted it for messages it never read."""
    res = slow_consumer(limit=64 * 1024, size=2048)
    assert res.cut and res.disconnections in (None, 1) and res.reconnects == 1
    assert max(omem for _, omem in res.samples) > 0
    assert res.received + res.missed == res.published
    assert res.queued_for > res.received  # counted as receiver, never read
    assert res.missed > 0


def test_a_listener_is_what_subscriber_runs_on(r: redis.Redis) -> None:
    """The Subscriber's loop is the core Listener (one loop in labkit)."""
    sub = Subscriber(r, ["x"])
    assert isinstance(sub.listener, Listener)


# --- bad input (issue 13): refused at once, naming the argument, nothing written ---
NAN, INF = float("nan"), float("inf")


def _unreachable() -> redis.Redis:
    return redis.Redis(
        host="127.0.0.1",
        port=free_port(),
        retry=no_retry(),
        socket_connect_timeout=1,
        socket_timeout=1,
    )


BAD_INPUT = [
    # (id, call taking the test client, error, words the message must contain)
    ("sub-str-channels", lambda r: Subscriber(r, "news"), TypeError,
     ["channels='news'", "bare str"]),
    ("sub-empty-channel", lambda r: Subscriber(r, [""]), ValueError,
     ["channels item=''", "non-empty"]),
    ("sub-int-channel", lambda r: Subscriber(r, [5]), TypeError,  # type: ignore[list-item]
     ["channels item=5", "str"]),
    ("sub-nothing", lambda r: Subscriber(r), ValueError, ["subscribe to something"]),
    ("sub-str-patterns", lambda r: Subscriber(r, patterns="a*"), TypeError,
     ["patterns='a*'", "bare str"]),
    ("sub-hci-nan", lambda r: Subscriber(r, ["a"], health_check_interval=NAN),
     ValueError, ["health_check_interval=nan", "finite number of seconds"]),
    ("sub-hci-inf", lambda r: Subscriber(r, ["a"], health_check_interval=INF),
     ValueError, ["health_check_interval=inf", "3600"]),
    ("sub-hci-zero", lambda r: Subscriber(r, ["a"], health_check_interval=0),
     ValueError, ["health_check_interval=0", "0.01"]),
    ("sub-hci-bool", lambda r: Subscriber(r, ["a"], health_check_interval=True),
     TypeError, ["health_check_interval=True"]),
    ("sub-dead-after-neg", lambda r: Subscriber(r, ["a"], dead_after=-1), ValueError,
     ["dead_after=-1", "seconds"]),
    ("sub-poll-huge", lambda r: Subscriber(r, ["a"], poll_interval=1e9), ValueError,
     ["poll_interval=1000000000.0", "to 5"]),
    ("sub-on-message", lambda r: Subscriber(r, ["a"], on_message=3), TypeError,  # type: ignore[arg-type]
     ["on_message=3", "callable"]),
    ("sub-on-subscribe", lambda r: Subscriber(r, ["a"], on_subscribe="reload"),  # type: ignore[arg-type]
     TypeError, ["on_subscribe='reload'", "callable"]),
    ("sub-sharded-int", lambda r: Subscriber(r, ["a"], sharded=1), TypeError,  # type: ignore[arg-type]
     ["sharded=1", "True or False"]),
    ("sub-sharded-plain", lambda r: Subscriber(r, ["a"], sharded=True), TypeError,
     ["sharded=True needs a redis.RedisCluster"]),
    ("sub-sharded-patterns", lambda r: Subscriber(r, patterns=["a*"], sharded=True),
     TypeError, ["RedisCluster"]),
    ("sub-catchup-patterns", lambda r: Subscriber(r, patterns=["a*"], catch_up=True),
     ValueError, ["patterns=['a*']", "catch_up=True"]),
    ("sub-catchup-brace", lambda r: Subscriber(r, ["a{b"], catch_up=True),
     ValueError, ["channel='a{b'", "'{'"]),
    ("sub-prefix-brace", lambda r: Subscriber(r, ["a"], prefix="lab:{x}"),
     ValueError, ["prefix='lab:{x}'", "'{'"]),
    ("sub-queue-zero", lambda r: Subscriber(r, ["a"], queue_size=0), ValueError,
     ["queue_size=0", "from 1"]),
    ("sub-client-url", lambda r: Subscriber("redis://localhost", ["a"]), TypeError,  # type: ignore[arg-type]
     ["client='redis://localhost'", "redis.Redis"]),
    ("sub-name-empty", lambda r: Subscriber(r, ["a"], name=""), ValueError,
     ["name=''", "non-empty"]),
    ("sub-get-nan", lambda r: Subscriber(r, ["a"]).get(timeout=NAN), ValueError,
     ["timeout=nan"]),
    ("sub-wait-count-zero", lambda r: Subscriber(r, ["a"]).wait_for(0), ValueError,
     ["count=0", "from 1"]),
    ("sub-wait-timeout-inf", lambda r: Subscriber(r, ["a"]).wait_for(1, timeout=INF),
     ValueError, ["timeout=inf"]),
    ("sub-start-timeout-neg", lambda r: Subscriber(r, ["a"]).start(timeout=-1),
     ValueError, ["timeout=-1"]),
    ("sub-unreachable", lambda r: Subscriber(_unreachable(), ["a"], name="far").start(),
     ListenerError, ["far: cannot subscribe", "127.0.0.1"]),
    ("pub-client-none", lambda r: Publisher(None), TypeError,  # type: ignore[arg-type]
     ["client=None", "redis.Redis"]),
    ("pub-sharded-str", lambda r: Publisher(r, sharded="yes"), TypeError,  # type: ignore[arg-type]
     ["sharded='yes'"]),
    ("pub-history-neg", lambda r: Publisher(r, history=-1), ValueError,
     ["history=-1", "from 0 to 1000000"]),
    ("pub-history-bool", lambda r: Publisher(r, history=True), TypeError,
     ["history=True"]),
    ("pub-history-huge", lambda r: Publisher(r, history=10**9), ValueError,
     ["history=1000000000"]),
    ("pub-history-float", lambda r: Publisher(r, history=2.5), TypeError,  # type: ignore[arg-type]
     ["history=2.5", "an int"]),
    ("pub-ttl-nan", lambda r: Publisher(r, history=5, history_ttl=NAN), ValueError,
     ["history_ttl=nan", "finite"]),
    ("pub-ttl-zero", lambda r: Publisher(r, history=5, history_ttl=0), ValueError,
     ["history_ttl=0", "> 0"]),
    ("pub-prefix-empty", lambda r: Publisher(r, prefix=""), ValueError,
     ["prefix=''", "non-empty"]),
    ("pub-source-empty", lambda r: Publisher(r, source=""), ValueError,
     ["source=''"]),
    ("pub-channel-empty", lambda r: Publisher(r).publish("", "x"), ValueError,
     ["channel=''", "non-empty"]),
    ("pub-channel-int", lambda r: Publisher(r).publish(5, "x"), TypeError,  # type: ignore[arg-type]
     ["channel=5"]),
    ("pub-data-none", lambda r: Publisher(r).publish("c", None), TypeError,  # type: ignore[arg-type]
     ["data=None", "str"]),
    ("pub-data-bool", lambda r: Publisher(r).publish("c", True), TypeError,
     ["data=True"]),
    ("pub-many-str", lambda r: Publisher(r).publish_many("c", "abc"), TypeError,
     ["items='abc'", "bare str"]),
    ("pub-many-bad-item", lambda r: Publisher(r).publish_many("c", ["a", None]),  # type: ignore[list-item]
     TypeError, ["data=None"]),
    ("pub-history-empty-tag", lambda r: Publisher(r, history=5).publish("}", "x"),
     ValueError, ["channel='}'", "'{'"]),
    ("pub-history-wrong-type", lambda r: _wrong_type_history(r), WrongTypeError,
     ["labkit:pubsub:{feed}", "holds a string", "nothing was published"]),
    ("pub-unreachable", lambda r: Publisher(_unreachable()).publish("c", "x"),
     redis.ConnectionError, ["127.0.0.1"]),
    ("fanout-zero", lambda r: measure_fanout(r, 0, 1), ValueError,
     ["subscribers=0", "from 1"]),
    ("fanout-messages-nan", lambda r: measure_fanout(r, 1, NAN), TypeError,  # type: ignore[arg-type]
     ["messages=nan"]),
    ("fanout-mode", lambda r: measure_fanout(r, 1, 1, mode="fibers"), ValueError,
     ["mode='fibers'", "processes"]),
    ("fanout-procs-bool", lambda r: measure_fanout(r, 1, 1, processes=True),
     TypeError, ["processes=True"]),
    ("slow-limit-small", lambda r: slow_consumer(limit=100), ValueError,
     ["limit=100", "16384"]),
    ("slow-bandwidth-nan", lambda r: slow_consumer(bandwidth=NAN), ValueError,
     ["bandwidth=nan"]),
]  # fmt: skip


def _wrong_type_history(r: redis.Redis) -> int:
    return Publisher(r, history=5).publish("feed", "x")


@pytest.mark.parametrize(
    ("call", "error", "words"),
    [case[1:] for case in BAD_INPUT],
    ids=[case[0] for case in BAD_INPUT],
)
def test_bad_input_refused(
    r: redis.Redis, call: Any, error: type[Exception], words: list[str]
) -> None:
    """Refused at once with a message naming the argument; nothing written."""
    r.set("labkit:pubsub:{feed}", "a string, not a stream")
    assert_refused(r, lambda: call(r), error, *words)
    assert r.get("labkit:pubsub:{feed}") == "a string, not a stream"
