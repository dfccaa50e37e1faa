"""labkit.lab.chat: private replies, one answer per message, sessions that expire."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import pytest
import redis

from labkit.errors import SessionExpiredError
from labkit.lab.chat import ChatClient, ChatService, ChatWorker, echo_model


def test_two_clients_two_workers_each_reply_to_its_own_client(r: redis.Redis) -> None:
    """Every message is answered once, and only its sender receives the answer."""
    svc = ChatService(r)
    ada, bob = ChatClient(svc), ChatClient(svc)
    workers = [ChatWorker(svc, name="w1"), ChatWorker(svc, name="w2")]
    sent = {ada.token: [], bob.token: []}
    for i in range(5):
        for client in (ada, bob):
            sent[client.token].append(client.send(f"{client.token[:4]} #{i}"))
        for w in workers:
            w.step(count=1)
    while sum(w.step() for w in workers):
        pass
    for client in (ada, bob):
        replies = client.receive()
        assert [rep.request for rep in replies] == sent[client.token]
        assert all(client.token[:4] in rep.text for rep in replies)
    assert sum(w.answered for w in workers) == 10
    assert all(w.answered > 0 for w in workers)  # the group shared the work
    assert r.xlen(svc.requests) == 0 and ada.receive() == []


def test_request_of_a_dead_worker_stays_pending_and_is_recovered(
    r: redis.Redis,
) -> None:
    """A request read by a worker that dies is answered by another, once."""
    svc = ChatService(r)
    ada = ChatClient(svc)
    request = ada.send("anyone?")
    r.xreadgroup("chat-workers", "dead", {svc.requests: ">"}, count=1)  # then dies
    live = ChatWorker(svc, name="live")
    assert live.step() == 0 and r.xpending(svc.requests, "chat-workers")["pending"] == 1
    assert live.recover(idle=60) == 0  # not idle long enough yet
    time.sleep(0.05)
    assert live.recover(idle=0.05) == 1 and live.recovered == 1
    assert [rep.request for rep in ada.receive()] == [request]
    assert r.xpending(svc.requests, "chat-workers")["pending"] == 0
    assert live.recover(idle=0) == 0  # nothing left, nothing answered twice
    with pytest.raises(ValueError, match="idle=-1"):
        live.recover(idle=-1)


def test_prompt_holds_the_last_four_messages(r: redis.Redis) -> None:
    """The model sees at most four messages, the newest last."""
    seen: list[list[str]] = []

    def model(messages: Sequence[Mapping[str, str]]) -> str:
        seen.append([m["content"] for m in messages])
        return echo_model(messages)

    svc = ChatService(r)
    client = ChatClient(svc)
    worker = ChatWorker(svc, model)
    for text in ("one", "two", "three"):
        client.send(text)
        worker.step()
    assert seen[0] == ["session started", "one"]
    assert seen[2] == [
        "[2 in context] you said: one",
        "two",
        "[4 in context] you said: two",
        "three",
    ]
    history = client.history()
    assert [m["role"] for m in history] == ["system"] + ["user", "assistant"] * 3
    assert history[-1]["content"] == "[4 in context] you said: three"


def test_expired_session_is_refused(r: redis.Redis) -> None:
    """After the TTL, history and send raise SessionExpiredError naming the token."""
    svc = ChatService(r, ttl=0.2)
    client = ChatClient(svc)
    client.send("hello")
    assert 0 < r.pttl(svc.session_key(client.token)) <= 200
    time.sleep(0.3)
    with pytest.raises(SessionExpiredError, match=client.token):
        client.history()
    with pytest.raises(SessionExpiredError):
        client.send("anyone there?")
    worker = ChatWorker(svc)
    assert worker.step() == 0 and worker.expired == 1
    assert r.exists(svc.session_key(client.token)) == 0


def test_default_session_lives_one_hour(r: redis.Redis) -> None:
    """A new session expires in 3600 s and sending does not extend it."""
    svc = ChatService(r)
    token = svc.new_session()
    svc.send(token, "hi")
    assert 3590 < r.ttl(svc.session_key(token)) <= 3600


def test_bad_input_is_refused(r: redis.Redis) -> None:
    """A non-str message or a non-positive TTL raises naming the argument."""
    svc = ChatService(r)
    with pytest.raises(TypeError, match="text=42"):
        svc.send(svc.new_session(), 42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ttl=0"):
        ChatService(r, ttl=0)
