"""Patterns in which ``*`` stands for any run of characters (possibly empty)
and everything else for itself.

Grant resources (``org/acme/bucket/logs/object/2026/*``) and CORS origins and
header names (``https://*.example.com``) use this one form; nothing else is
special, so keys or names holding ``[`` or ``?`` need no escaping (which
``fnmatch`` would give a meaning).
"""

from __future__ import annotations

import re
from functools import lru_cache


@lru_cache(maxsize=4096)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")), re.DOTALL)


def matches(pattern: str, value: str) -> bool:
    """Whether ``value`` matches ``pattern`` (``*``: any characters)."""
    return _compiled(pattern).fullmatch(value) is not None
