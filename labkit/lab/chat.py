"""Lab: the AI-chatbot tutorial system on streams: sessions with a TTL, private replies.

Clients append their message to the session history and add a request to one
stream; workers in a consumer group each get different requests, build the
prompt from the last four messages, call the model and put the answer in the
history and in a reply stream *of that session*, which only its client reads.
The tutorial's version read the request stream without a group (every worker
answered every message) and sent all replies down one shared stream that each
client trimmed with XDEL (replies to other clients were lost); notebook 06
shows both faults. The model here is a deterministic local function, so the
lab runs offline.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import redis

from labkit.errors import SessionExpiredError

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
        client: A ``redis.Redis`` (``decode_responses=True``).
        prefix: Start of every key.
        ttl: Seconds a session lives from its creation (the tutorial's hour).

    Keys:
        ``<prefix>:session:<token>`` (list of JSON messages ``{"role",
        "content"}``): the history; it expires ``ttl`` seconds after creation.
        ``<prefix>:requests`` (stream, group ``chat-workers``): token, text.
        ``<prefix>:replies:<token>`` (stream): this session's answers.
    """

    def __init__(
        self, client: redis.Redis, *, prefix: str = "lab:chat", ttl: float = 3600
    ) -> None:
        if not isinstance(client, redis.Redis | redis.RedisCluster):
            raise TypeError(f"client={client!r}: must be a redis.Redis")
        if isinstance(ttl, bool) or not isinstance(ttl, int | float) or ttl <= 0:
            raise ValueError(f"ttl={ttl!r}: must be a number of seconds > 0")
        self.client = client
        self.prefix = prefix
        self.ttl_ms = max(1, round(ttl * 1000))
        self.requests = f"{prefix}:requests"
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
        raw = self.client.lrange(self.session_key(token), 0, -1)
        if not raw:
            raise SessionExpiredError(token)
        return [json.loads(m) for m in raw]

    def send(self, token: str, text: str) -> str:
        """Add a user message to the history and queue it; returns the request id.

        Raises:
            TypeError: ``text`` is not a str.
            SessionExpiredError: The session does not exist or has expired.
        """
        if not isinstance(text, str):
            raise TypeError(f"text={text!r}: must be a str")
        message = json.dumps({"role": "user", "content": text})
        # RPUSHX appends only to an existing list: an expired session is not
        # silently recreated without a TTL.
        if not self.client.rpushx(self.session_key(token), message):
            raise SessionExpiredError(token)
        return str(self.client.xadd(self.requests, {"token": token, "text": text}))

    def replies(
        self, token: str, after: str = "0-0", *, block: float | None = None
    ) -> list[Reply]:
        """Replies of one session newer than entry id ``after``.

        Nothing is deleted: each client keeps its own position, and the
        stream expires with the session.

        Args:
            token: The session.
            after: Last reply id already seen.
            block: Seconds to wait for a first reply (None: do not wait).
        """
        ms = None if block is None else max(1, round(block * 1000))
        got: Any = self.client.xread({self.replies_key(token): after}, block=ms)
        entries = got[0][1] if got else []
        return [Reply(eid, f["request"], f["text"], f["worker"]) for eid, f in entries]


class ChatClient:
    """One user's side of a chat: a token and a position in its reply stream."""

    def __init__(self, service: ChatService, token: str | None = None) -> None:
        self.service = service
        self.token = token or service.new_session()
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

    A request is acknowledged in the same transaction that delivers its
    answer, so it is answered at most once. A worker that dies mid-request
    leaves it pending in the group (``XPENDING``) until a live worker takes
    it over with :meth:`recover` (``XAUTOCLAIM`` after a visibility timeout).
    """

    def __init__(
        self, service: ChatService, model: Model = echo_model, *, name: str = "w1"
    ) -> None:
        self.service = service
        self.model = model
        self.name = name
        self.answered = 0
        self.expired = 0  #: requests dropped because their session had expired
        self.recovered = 0  #: requests taken over from dead workers

    def step(self, *, count: int = 10, block: float = 0.05) -> int:
        """Read up to ``count`` requests and answer them; returns answers sent."""
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
        if isinstance(idle, bool) or not isinstance(idle, int | float) or idle < 0:
            raise ValueError(f"idle={idle!r}: must be a number of seconds >= 0")
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
            pipe = r.pipeline(transaction=True)
            if raw:
                text = self.model([json.loads(m) for m in raw])
                message = json.dumps({"role": "assistant", "content": text})
                pipe.rpushx(svc.session_key(token), message)
                reply: dict[Any, Any] = {
                    "request": eid,
                    "text": text,
                    "worker": self.name,
                }
                pipe.xadd(svc.replies_key(token), reply, maxlen=1000, approximate=True)
                pipe.pexpire(svc.replies_key(token), svc.ttl_ms)
                sent += 1
            else:
                self.expired += 1
            # Acknowledged in the same transaction that delivers the answer.
            pipe.xack(svc.requests, GROUP, eid)
            pipe.xdel(svc.requests, eid)
            pipe.execute()
        self.answered += sent
        return sent
