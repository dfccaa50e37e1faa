"""Key names: one rule, so two tenants (or two ids) never share a key.

Every labkit key is *fixed text* (a prefix such as ``lab:ratelimit:fixed``, a
suffix such as ``:lease``) around *parts* the caller chose (a namespace, an
owner, an id, a channel, a series). The rule, for every pattern:

    each part goes through :func:`key_part`, which replaces ``%`` by ``%25`` and
    ``:`` by ``%3A``; fixed text is used as given.

A part then holds no ``:``, so the colons of a key say where each part starts
and ends, and the map from (prefix, parts) to key is injective:
``Cache(r, "a:b")`` + ``"c"`` and ``Cache(r, "a")`` + ``"b:c"`` build
``labkit:cache:{a%3Ab:c}`` and ``labkit:cache:{a:b%3Ac}``. A part without ``:`` or
``%`` (``"users"``, ``"7"``, ``"ip-203.0.113.7"``) is unchanged, so the keys of
ordinary names are what they always were. Braces are not escaped: where a part
sits inside a ``{hash tag}`` the pattern refuses them (:func:`labkit.core.args.
check_tag`), as before.
"""

from __future__ import annotations

import re

__all__ = ["from_key_part", "key_part"]


def key_part(text: str) -> str:
    """``text`` made safe to sit between the colons of a key (see the module)."""
    if ":" in text or "%" in text:
        return text.replace("%", "%25").replace(":", "%3A")
    return text


def from_key_part(text: str) -> str:
    """The inverse of :func:`key_part`: the caller's original part."""
    if "%" in text:
        return re.sub("%(25|3A)", lambda m: "%" if m[1] == "25" else ":", text)
    return text
