"""Shared plumbing for every pattern: argument checks, Lua scripts, clients, listening.

Library modules import from here, from :mod:`labkit.errors` and from redis-py,
and from nothing else of labkit.
"""
