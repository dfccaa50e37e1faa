"""Library: shared plumbing for the patterns: argument checks, Lua, clients, listening.

Library modules import from here, from :mod:`labkit.errors` and from redis-py,
and from nothing else of labkit.
"""
