"""labkit.pubsub against a real server: delivery, loss, health checks, clean stops."""

from __future__ import annotations

import threading

import pytest
import redis

import labkit
from labkit.lab.measure import wait_until
from labkit.lab.pubsub import delivery_matrix, measure_fanout
from labkit.pubsub import Publisher, Subscriber
from labkit.server import Cluster, Server

CHANNELS = ["Weather", "Sports", "Music"]
SUBSCRIPTIONS = {
    "A": ["Weather", "Sports", "Music"],
    "B": ["Weather", "Sports"],
    "C": ["Sports", "Music"],
}


def test_visualizer_delivery_matrix(r: redis.Redis) -> None:
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
        pub = Publisher(r)
        for start in range(0, n, 1000):
            assert pub.publish_many("bulk", range(start, start + 1000)) == [1] * 1000
        assert sub.wait_for(n, timeout=30)
        got = sub.drain()
    assert [m.seq for m in got] == list(range(1, n + 1))
    assert [m.data for m in got[:3]] == ["0", "1", "2"]
    assert sub.stats.received == n and sub.stats.missed == 0
    assert all(m.latency is not None and m.latency >= 0 for m in got)


def test_pattern_subscription_and_callback(r: redis.Redis) -> None:
    """A pattern matches by glob; a callback replaces the queue."""
    seen = []
    with Subscriber(r, patterns=["news.*"], callback=seen.append) as sub:
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


def test_listener_threads_stop_cleanly(redis_url: str) -> None:
    """After stop() no listener thread and no subscriber connection remain."""
    client = labkit.connect(redis_url, client_name="lab-sub-under-test")
    admin = labkit.connect(redis_url)

    def ours() -> list[dict]:
        return [c for c in admin.client_list() if c["name"] == "lab-sub-under-test"]

    threads_before = set(threading.enumerate())
    subs = [Subscriber(client, [f"ch{i}"], name=f"sub-{i}").start() for i in range(3)]
    assert len(ours()) == 3 and all(s.running for s in subs)
    for s in subs:
        s.stop()
    assert set(threading.enumerate()) == threads_before
    assert wait_until(lambda: not ours())
    assert admin.pubsub_numsub("ch0", "ch1", "ch2") == [
        ("ch0", 0),
        ("ch1", 0),
        ("ch2", 0),
    ]
    client.close()
    admin.close()


def test_killed_connection_is_noticed_and_gaps_counted(r: redis.Redis) -> None:
    """CLIENT KILL: the subscriber reconnects and counts what it missed."""
    with Subscriber(r, ["feed"], health_check_interval=0.2) as sub:
        pub = Publisher(r)
        pub.publish("feed", "before")
        assert sub.wait_for(1)
        [victim] = [c["id"] for c in r.client_list() if "P" in c["flags"]]
        # Kill and publish in one transaction: nothing can resubscribe between.
        pipe = r.pipeline(transaction=True)
        pipe.client_kill_filter(_id=victim)
        for i in range(50):
            pub_msg = pub.wrap("feed", f"lost {i}")
            pipe.publish("feed", pub_msg)
        assert pipe.execute() == [1] + [0] * 50
        assert wait_until(lambda: r.pubsub_numsub("feed") == [("feed", 1)])
        for i in range(10):
            pub.publish("feed", f"after {i}")
        assert sub.wait_for(11)
    assert sub.stats.received == 11 and sub.stats.missed == 50
    assert sub.stats.reconnects == 1


def test_unresponsive_server_is_detected() -> None:
    """A server that stops answering PING is declared dead and reconnected."""
    with Server() as server:
        client = server.client(decode_responses=True)
        with Subscriber(
            client, ["feed"], health_check_interval=0.1, dead_after=0.3
        ) as sub:
            client.execute_command("CLIENT", "PAUSE", 2000, "ALL")
            assert wait_until(lambda: sub.stats.unresponsive >= 1, timeout=2)
            assert wait_until(lambda: client.pubsub_numsub("feed") == [("feed", 1)])
            Publisher(client).publish("feed", "still here")
            got = sub.get(timeout=5)
        assert got is not None and got.data == "still here"
        assert sub.stats.reconnects >= 1
        client.close()


def test_sharded_pubsub_on_cluster() -> None:
    """SPUBLISH/SSUBSCRIBE on a 3-master cluster: each channel reaches its shard."""
    channels = ["alpha", "beta", "gamma", "delta", "epsilon"]
    threads_before = set(threading.enumerate())
    with Cluster(masters=3) as cluster:
        rc = cluster.client()
        assert len({rc.keyslot(c) for c in channels}) == len(channels)
        with Subscriber(rc, channels, sharded=True) as sub:
            pub = Publisher(rc, sharded=True)
            assert [pub.publish(c, c.upper()) for c in channels] == [1] * 5
            assert sub.wait_for(5)
            got = sub.drain()
        assert sorted(m.data for m in got) == sorted(c.upper() for c in channels)
        assert {m.kind for m in got} == {"smessage"}
        assert sub.stats.connects == 3  # one connection per shard owning a channel
        rc.close()
    assert set(threading.enumerate()) == threads_before


def test_measure_fanout_shape(r: redis.Redis) -> None:
    """One latency per message and subscriber, all positive."""
    lat = measure_fanout(r, subscribers=3, messages=5)
    assert lat.shape == (5, 3) and (lat > 0).all()
    assert r.pubsub_numsub("lab:fanout") == [("lab:fanout", 0)]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({}, ValueError, "subscribe to something"),
        ({"channels": [""]}, ValueError, "channels"),
        ({"channels": ["a"], "health_check_interval": 0}, ValueError, "health_check"),
        ({"channels": ["a"], "dead_after": -1}, ValueError, "dead_after"),
        ({"channels": ["a"], "callback": 3}, TypeError, "callback"),
        ({"patterns": ["a*"], "sharded": True}, ValueError, "sharded"),
    ],
)
def test_bad_arguments(r: redis.Redis, kwargs: dict, error: type, match: str) -> None:
    """Bad arguments raise at once, naming the argument."""
    with pytest.raises(error, match=match):
        Subscriber(r, **kwargs)


def test_bad_fanout_and_channel_arguments(r: redis.Redis) -> None:
    """measure_fanout and publish reject nonsense sizes and channels."""
    with pytest.raises(ValueError, match="subscribers=0"):
        measure_fanout(r, subscribers=0, messages=1)
    with pytest.raises(ValueError, match="channel=''"):
        Publisher(r).publish("", "x")


def test_wait_until_is_bounded() -> None:
    """wait_until answers True once the condition holds, False after the timeout."""
    calls = []
    assert wait_until(lambda: calls.append(1) or len(calls) >= 3, timeout=5)
    assert not wait_until(lambda: False, timeout=0.05)
    with pytest.raises(ValueError, match="timeout=0"):
        wait_until(lambda: True, timeout=0)
