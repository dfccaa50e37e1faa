"""Lab: measuring pub/sub: who got what, fan-out cost, slow consumers, cluster cost."""

from labkit.lab.pubsub._cluster import (
    BUS_COUNTERS,
    bus_delta,
    bus_messages,
    cluster_publish_cost,
    total,
)
from labkit.lab.pubsub._delivery import delivery_matrix
from labkit.lab.pubsub._fanout import (
    MODES,
    CpuSample,
    FanoutResult,
    FanoutSubscribers,
    child_loop,
    measure_fanout,
    publish_cost,
    server_cpu,
)
from labkit.lab.pubsub._slow import (
    SlowConsumerResult,
    SlowLink,
    omem_of,
    slow_consumer,
)

__all__ = [
    "BUS_COUNTERS",
    "MODES",
    "CpuSample",
    "FanoutResult",
    "FanoutSubscribers",
    "SlowConsumerResult",
    "SlowLink",
    "bus_delta",
    "bus_messages",
    "child_loop",
    "cluster_publish_cost",
    "delivery_matrix",
    "measure_fanout",
    "omem_of",
    "publish_cost",
    "server_cpu",
    "slow_consumer",
    "total",
]
