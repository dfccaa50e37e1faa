"""Library: caching patterns: cache-aside, stampede control, grouped, local caches."""

from labkit.cache._aside import STAMPEDE_MODES, Cache
from labkit.cache._base import JSON_DECODER, CacheStats
from labkit.cache._group import GroupedCache, supports_field_expiry
from labkit.cache._local import ClientSideCache, TrackingStats

__all__ = [
    "JSON_DECODER",
    "STAMPEDE_MODES",
    "Cache",
    "CacheStats",
    "ClientSideCache",
    "GroupedCache",
    "TrackingStats",
    "supports_field_expiry",
]
