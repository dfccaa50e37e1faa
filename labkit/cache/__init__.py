"""Caching patterns: cache-aside, stampede protection, grouped and local caches."""

from labkit.cache._aside import STAMPEDE_MODES, Cache
from labkit.cache._base import CacheStats
from labkit.cache._group import GroupedCache, supports_field_expiry
from labkit.cache._local import ClientSideCache

__all__ = [
    "STAMPEDE_MODES",
    "Cache",
    "CacheStats",
    "ClientSideCache",
    "GroupedCache",
    "supports_field_expiry",
]
