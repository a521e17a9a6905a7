"""Patterns in which ``*`` stands for any run of characters (possibly empty)
and everything else for itself.

Grant resources (``org/acme/bucket/logs/object/2026/*``) and CORS origins and
header names (``https://*.example.com``) use this one form; nothing else is
special, so keys or names holding ``[`` or ``?`` need no escaping (which
``fnmatch`` would give a meaning).  Matching takes linear time however many
stars a pattern holds (:mod:`lightningstor.core.globs`): the value is a
client's (an ``Origin`` header, an object key).
"""

from __future__ import annotations

from lightningstor.core.globs import compile_glob


def matches(pattern: str, value: str) -> bool:
    """Whether ``value`` matches ``pattern`` (``*``: any characters)."""
    return compile_glob(pattern, question_mark=False).fullmatch(value)
