"""Lab: the AI-chatbot tutorial system on streams: sessions with a TTL, private replies.

Clients append their message to the session history and add a request to one
stream; workers in a consumer group each get different requests, build the
prompt from the last four messages, call the model and put the answer in the
history and in a reply stream *of that session*, which only its client reads.
The tutorial's version read the request stream without a group (every worker
answered every message) and sent all replies down one shared stream that each
client trimmed with XDEL (replies to other clients were lost); notebook 08
shows both faults. The model here is a deterministic local function, so the
lab runs offline.

Delivery: a request is *processed* at least once (a worker that dies or
stalls past the visibility timeout has its request taken over, so the model
may be called twice) and *answered* once: the answer is delivered by a script
that first checks a per-session set of answered requests.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import redis

from labkit.core.args import (
    DAY,
    check_callable,
    check_count,
    check_name,
    check_seconds,
    check_tag,
)
from labkit.core.clients import check_client
from labkit.core.scripts import Script
from labkit.errors import QueueFullError, WrongTypeError
from labkit.lab.errors import SessionExpiredError

__all__ = [
    "ChatClient",
    "ChatService",
    "ChatWorker",
    "Reply",
    "echo_model",
]

Message = dict[str, str]
Model = Callable[[Sequence[Mapping[str, str]]], str]

GROUP = "chat-workers"
CONTEXT = 4  # messages of history the prompt is built from
SEND = Script("queues_chat_send", package="labkit.lab")
ANSWER = Script("queues_chat_answer", package="labkit.lab")
_NO_CLUSTER = (
    "a request's answer is one script over the shared request stream and the "
    "session's keys, which cannot share a cluster slot"
)


def _expired(token: str) -> SessionExpiredError:
    """The error for a session that is unknown or whose hour is over."""
    return SessionExpiredError(
        f"session {token!r} does not exist or has expired; start a new one "
        "with ChatService.new_session()",
        token=token,
    )


def _script_error(exc: redis.ResponseError, token: str = "") -> Exception:
    """The labkit error a chat script's error reply stands for."""
    words = str(exc).split()
    code = words[0] if words else ""
    if code == "EXPIRED":
        return _expired(token)
    if code == "BADTYPE" and len(words) == 4:
        key, found, expected = words[1:]
        return WrongTypeError(
            f"key {key!r} holds a {found}, where the chat keeps a {expected}; "
            "nothing was written",
            key=key,
            found=found,
            expected=expected,
        )
    if code == "FULL" and len(words) == 3:
        return QueueFullError(
            f"{words[1]} chat requests are waiting (max_pending={words[2]}): "
            "send refused, nothing written; add workers",
            queue=GROUP,
            length=int(words[1]),
            max_length=int(words[2]),
        )
    return exc


class Reply(NamedTuple):
    """One answer, as the client receives it.

    Attributes:
        id: Entry id in the session's reply stream.
        request: Entry id of the request it answers.
        text: The model's answer.
        worker: Name of the worker that answered.
    """

    id: str
    request: str
    text: str
    worker: str


def echo_model(messages: Sequence[Mapping[str, str]]) -> str:
    """A stand-in for a language model: deterministic, offline, instant.

    It says how many messages it was given and echoes the last user message,
    which is enough to check that the prompt holds the right context.
    """
    last = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
    return f"[{len(messages)} in context] you said: {last}"


class ChatService:
    """Sessions, the request stream and the per-session reply streams.

    Args:
        client: A ``redis.Redis`` made with ``decode_responses=True`` (not a
            cluster: an answer is one script over the shared request stream
            and a session's keys, which cannot share a slot).
        prefix: Start of every key.
        ttl: Seconds a session lives from its creation (the tutorial's hour;
            up to a day).
        max_pending: Most requests waiting or in flight; :meth:`send` refuses
            beyond it (backpressure).
        max_replies: Most replies kept per session (older ones are trimmed).

    Keys:
        ``<prefix>:session:<token>`` (list of JSON messages with role and
        content): the history; it expires ttl seconds after creation, and
        nothing extends it.
        ``<prefix>:requests`` (stream with the group chat-workers): token,
        text; no TTL: each request is deleted once answered, and send()
        refuses when max_pending are waiting.
        ``<prefix>:replies:<token>`` (stream): this session's answers, at most
        max_replies; it expires with the session.
        ``<prefix>:answered:<token>`` (set): ids of the session's answered
        requests (the answer-once marker); it expires with the session.
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str = "lab:chat",
        ttl: float = 3600,
        max_pending: int = 10_000,
        max_replies: int = 1000,
    ) -> None:
        self.client = check_client(
            client, owner="ChatService", cluster=_NO_CLUSTER, decode=True
        )
        self.prefix = check_name("prefix", prefix)
        self.ttl_ms = round(check_seconds("ttl", ttl, min=0.001, max=DAY) * 1000)
        self.max_pending = check_count("max_pending", max_pending, max=10**7)
        self.max_replies = check_count("max_replies", max_replies, max=10**6)
        self.requests = f"{prefix}:requests"
        found = client.type(self.requests)
        if found not in ("stream", "none"):
            raise _script_error(
                redis.ResponseError(f"BADTYPE {self.requests} {found!s} stream")
            )
        try:
            client.xgroup_create(self.requests, GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def session_key(self, token: str) -> str:
        """The history list of a session."""
        return f"{self.prefix}:session:{token}"

    def replies_key(self, token: str) -> str:
        """The reply stream of a session."""
        return f"{self.prefix}:replies:{token}"

    def answered_key(self, token: str) -> str:
        """The set of a session's answered request ids."""
        return f"{self.prefix}:answered:{token}"

    def new_session(self) -> str:
        """Start a session; returns its token (a random uuid, 32 hex digits)."""
        token = uuid.uuid4().hex
        opening = json.dumps({"role": "system", "content": "session started"})
        pipe = self.client.pipeline(transaction=True)
        pipe.rpush(self.session_key(token), opening)
        pipe.pexpire(self.session_key(token), self.ttl_ms)
        pipe.execute()
        return token

    def history(self, token: str) -> list[Message]:
        """All messages of a live session, oldest first.

        Raises:
            SessionExpiredError: No such session, or it has expired.
        """
        check_tag("token", token)
        try:
            raw = self.client.lrange(self.session_key(token), 0, -1)
        except redis.ResponseError as exc:
            key = self.session_key(token)
            raise _script_error(
                redis.ResponseError(f"BADTYPE {key} {self.client.type(key)} list")
            ) from exc
        if not raw:
            raise _expired(token)
        return [json.loads(m) for m in raw]

    def send(self, token: str, text: str) -> str:
        """Add a user message to the history and queue it; returns the request id.

        One script: the history and the request stream are written both or
        neither, and an expired session is never recreated without a TTL.

        Raises:
            TypeError: ``text`` is not a str.
            ValueError: ``text`` is empty or over 100000 characters.
            SessionExpiredError: The session does not exist or has expired.
            QueueFullError: ``max_pending`` requests are waiting already.
        """
        check_tag("token", token)
        if not isinstance(text, str):
            raise TypeError(f"text={text!r}: must be a str")
        if not text or len(text) > 100_000:
            raise ValueError(f"text={text!r:.40}: must be from 1 to 100000 characters")
        message = json.dumps({"role": "user", "content": text})
        keys = [self.session_key(token), self.requests]
        args: list[str | int] = [token, text, message, GROUP, self.max_pending]
        try:
            return str(SEND(self.client, keys, args))
        except redis.ResponseError as exc:
            raise _script_error(exc, token) from exc

    def replies(
        self, token: str, after: str = "0-0", *, block: float | None = None
    ) -> list[Reply]:
        """Replies of one session newer than entry id ``after``.

        Nothing is deleted: each client keeps its own position, and the
        stream expires with the session.

        Args:
            token: The session.
            after: Last reply id already seen.
            block: Seconds to wait for a first reply (None: do not wait; at
                most 60, and keep it below the client's socket timeout).
        """
        check_tag("token", token)
        if block is not None:
            check_seconds("block", block, max=60)
        ms = None if block is None else max(1, round(block * 1000))
        got: Any = self.client.xread({self.replies_key(token): after}, block=ms)
        entries = got[0][1] if got else []
        return [Reply(eid, f["request"], f["text"], f["worker"]) for eid, f in entries]


class ChatClient:
    """One user's side of a chat: a token and a position in its reply stream."""

    def __init__(self, service: ChatService, token: str | None = None) -> None:
        if not isinstance(service, ChatService):
            raise TypeError(f"service={service!r}: must be a ChatService")
        self.service = service
        self.token = (
            service.new_session() if token is None else check_tag("token", token)
        )
        self.last = "0-0"

    def send(self, text: str) -> str:
        """Send a message; returns the request id."""
        return self.service.send(self.token, text)

    def receive(self, block: float | None = None) -> list[Reply]:
        """Replies not yet received, waiting up to ``block`` seconds for one."""
        got = self.service.replies(self.token, self.last, block=block)
        if got:
            self.last = got[-1].id
        return got

    def history(self) -> list[Message]:
        """The session's history (raises SessionExpiredError once expired)."""
        return self.service.history(self.token)


class ChatWorker:
    """A consumer in the ``chat-workers`` group: answers requests with a model.

    Args:
        service: The chat service.
        model: ``model(messages) -> str``; gets the last 4 messages.
        name: Consumer name, unique among live workers.

    A request is processed at least once and answered once. A worker that
    dies mid-request leaves it pending in the group (``XPENDING``) until a
    live worker takes it over with :meth:`recover` (``XAUTOCLAIM`` after a
    visibility timeout); a worker that is only slow may then find, when it
    finishes, that the request was answered meanwhile: the answer script
    (``print(ChatWorker.script.source)``) checks the session's set of
    answered requests and drops the second answer, in the same step that
    would deliver it.
    """

    #: The script that delivers an answer once.
    script = ANSWER

    def __init__(
        self, service: ChatService, model: Model = echo_model, *, name: str = "w1"
    ) -> None:
        if not isinstance(service, ChatService):
            raise TypeError(f"service={service!r}: must be a ChatService")
        self.service = service
        self.model = check_callable("model", model, signature="messages -> str")
        self.name = check_name("name", name, max_len=200)
        self.answered = 0  #: answers this worker delivered
        self.duplicates = 0  #: answers dropped: another worker answered first
        self.model_calls = 0  #: requests this worker processed
        self.expired = 0  #: requests dropped because their session had expired
        self.recovered = 0  #: requests taken over from dead workers

    def step(self, *, count: int = 10, block: float = 0.05) -> int:
        """Read up to ``count`` requests and answer them; returns answers sent.

        Args:
            count: Most requests read (1 to 1000).
            block: Seconds to wait for a request (up to 60; keep it below the
                client's socket timeout).
        """
        check_count("count", count, max=1000)
        check_seconds("block", block, max=60)
        svc = self.service
        got: Any = svc.client.xreadgroup(
            GROUP,
            self.name,
            {svc.requests: ">"},
            count=count,
            block=max(1, round(block * 1000)),
        )
        return self._answer(got[0][1] if got else [])

    def recover(self, idle: float = 30.0, *, count: int = 10) -> int:
        """Take over requests left pending by a dead worker, and answer them.

        ``XAUTOCLAIM`` transfers to this worker the requests that have waited
        unacknowledged for at least ``idle`` seconds (their worker died
        between reading and answering, or hangs), then they are answered as
        usual. Too short an ``idle`` steals requests from a slow live worker,
        whose answer then comes twice.

        Args:
            idle: Seconds a request must have been pending (the visibility
                timeout).
            count: Most requests taken over in one call.

        Returns:
            Answers sent.
        """
        check_seconds("idle", idle, max=DAY, min_open=False)
        check_count("count", count, max=1000)
        svc = self.service
        _cursor, entries, *_ = svc.client.xautoclaim(
            svc.requests,
            GROUP,
            self.name,
            min_idle_time=round(idle * 1000),
            count=count,
        )
        entries = [(eid, fields) for eid, fields in entries if fields]
        self.recovered += len(entries)
        return self._answer(entries)

    def _answer(self, entries: list[tuple[str, dict[str, str]]]) -> int:
        svc, r = self.service, self.service.client
        sent = 0
        for eid, fields in entries:
            token = fields["token"]
            raw = r.lrange(svc.session_key(token), -CONTEXT, -1)
            text = ""
            if raw:
                self.model_calls += 1
                text = self.model([json.loads(m) for m in raw])
            message = json.dumps({"role": "assistant", "content": text})
            keys = [
                svc.requests,
                svc.session_key(token),
                svc.replies_key(token),
                svc.answered_key(token),
            ]
            args: list[str | int] = [
                GROUP,
                eid,
                text,
                message,
                self.name,
                svc.max_replies,
            ]
            try:
                outcome, _reply_id = ANSWER(r, keys, args)
            except redis.ResponseError as exc:
                raise _script_error(exc, token) from exc
            if outcome == 1:
                sent += 1
            elif outcome == 0:
                self.duplicates += 1
            else:
                self.expired += 1
        self.answered += sent
        return sent
