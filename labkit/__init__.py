"""labkit: Redis patterns implemented properly, for the Redis Patterns Lab."""

from labkit.server import connect

__all__ = ["__version__", "connect"]

__version__ = "0.1.0"
