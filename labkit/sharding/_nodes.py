"""``CLUSTER NODES`` parsed once: who is in a cluster, their roles and their slots.

The reply is one line per node, space-separated (the Redis Cluster
specification's format, unchanged since Redis 3 apart from the address field
growing a hostname and, in Valkey 8+, ``key=value`` aux fields):

``<id> <ip:port@cport[,hostname[,aux...]]> <flags> <master-id|-> <ping-sent>
<pong-recv> <config-epoch> <link-state> <slot> <slot> ...``

where each slot entry is ``N``, ``N-M``, ``[N->-<target-id>]`` (migrating)
or ``[N-<-<source-id>]`` (importing).

redis-py parses this reply into a dict keyed by address (two nodes without an
address collapse into one entry), so :func:`cluster_nodes` asks for the raw
text (``execute_command("CLUSTER", "NODES")``: the two-word spelling has no
response callback) and parses it here.
"""

from __future__ import annotations

from typing import NamedTuple

import redis

from labkit.core.clients import execute
from labkit.sharding._hash import SLOTS

__all__ = ["NodeInfo", "cluster_nodes", "parse_cluster_nodes"]

#: Flags of a node that cannot serve: still shaking hands, no address known,
#: or failed in the view of a majority of masters.
UNUSABLE = frozenset({"handshake", "noaddr", "fail"})


class NodeInfo(NamedTuple):
    """One line of ``CLUSTER NODES``.

    Attributes:
        id: The 40-character node id.
        host: IP address ("" while unknown, flag ``noaddr``).
        port: Client port (0 while unknown).
        bus_port: Cluster bus port.
        flags: E.g. ``{"myself", "master"}``; ``"fail?"`` is suspected,
            ``"fail"`` agreed by a majority of masters.
        master_id: For a replica, its master's id; else None.
        config_epoch: The node's configuration epoch.
        connected: True if the asking node's link to it is up.
        slots: Slot ranges served, as inclusive ``(first, last)`` pairs.
        migrating: ``{slot: target id}`` for slots being moved out.
        importing: ``{slot: source id}`` for slots being moved in.
    """

    id: str
    host: str
    port: int
    bus_port: int
    flags: frozenset[str]
    master_id: str | None
    config_epoch: int
    connected: bool
    slots: tuple[tuple[int, int], ...]
    migrating: dict[int, str]
    importing: dict[int, str]

    @property
    def address(self) -> str:
        """``host:port``, the name cluster clients use for a node."""
        return f"{self.host}:{self.port}"

    @property
    def is_master(self) -> bool:
        """True for a primary (with or without slots)."""
        return "master" in self.flags

    @property
    def myself(self) -> bool:
        """True for the node that answered."""
        return "myself" in self.flags

    @property
    def usable(self) -> bool:
        """Neither handshaking, address-less nor failed."""
        return not self.flags & UNUSABLE

    def slot_list(self) -> list[int]:
        """Every slot served, in order."""
        return [s for lo, hi in self.slots for s in range(lo, hi + 1)]

    def slot_count(self) -> int:
        """How many slots this node serves."""
        return sum(hi - lo + 1 for lo, hi in self.slots)


def _slot(text: str, line: str) -> int:
    value = int(text)
    if not 0 <= value < SLOTS:
        raise ValueError(f"CLUSTER NODES line {line!r}: slot {value} out of range")
    return value


def _parse_line(line: str) -> NodeInfo:
    fields = line.split()
    if len(fields) < 8:
        raise ValueError(
            f"CLUSTER NODES line {line!r}: expected at least 8 fields, "
            f"got {len(fields)}"
        )
    node_id, addr, flags, master, _ping, _pong, epoch, link = fields[:8]
    address = addr.split(",", 1)[0]  # drop ",hostname,aux=..." (Redis 7+)
    hostport, _, cport = address.partition("@")
    host, _, port = hostport.rpartition(":")
    slots: list[tuple[int, int]] = []
    migrating: dict[int, str] = {}
    importing: dict[int, str] = {}
    for entry in fields[8:]:
        if entry.startswith("["):
            body = entry.strip("[]")
            if "->-" in body:
                slot, other = body.split("->-")
                migrating[_slot(slot, line)] = other
            elif "-<-" in body:
                slot, other = body.split("-<-")
                importing[_slot(slot, line)] = other
            continue
        lo, _, hi = entry.partition("-")
        slots.append((_slot(lo, line), _slot(hi or lo, line)))
    return NodeInfo(
        id=node_id,
        host=host,
        port=int(port or 0),
        bus_port=int(cport or 0),
        flags=frozenset(flags.split(",")),
        master_id=None if master == "-" else master,
        config_epoch=int(epoch),
        connected=link == "connected",
        slots=tuple(slots),
        migrating=migrating,
        importing=importing,
    )


def parse_cluster_nodes(text: str | bytes) -> list[NodeInfo]:
    """Parse the text of a ``CLUSTER NODES`` reply, one :class:`NodeInfo` per line.

    Raises:
        TypeError: ``text`` is not str or bytes (e.g. a reply redis-py
            already parsed into a dict).
        ValueError: A line does not have the documented format.
    """
    if isinstance(text, bytes):
        text = text.decode()
    if not isinstance(text, str):
        raise TypeError(
            f"text={text!r}: expected the raw CLUSTER NODES reply (str or bytes)"
        )
    return [_parse_line(line) for line in text.splitlines() if line.strip()]


def cluster_nodes(client: redis.Redis | redis.RedisCluster) -> list[NodeInfo]:
    """Every node that ``client``'s node knows of, as that node sees them.

    Args:
        client: A ``redis.Redis`` connected to one cluster node, or a
            ``RedisCluster`` (its default node is asked).

    Raises:
        TypeError: ``client`` is neither.
        redis.ResponseError: The server is not in cluster mode.
    """
    if isinstance(client, redis.RedisCluster):
        node = client.get_default_node()  # type: ignore[no-untyped-call]
        client = client.get_redis_connection(node)
    if not isinstance(client, redis.Redis):
        raise TypeError(
            f"client={client!r}: expected a redis.Redis or redis.RedisCluster"
        )
    return parse_cluster_nodes(execute(client, "CLUSTER", "NODES"))
