"""Which object keys may become local file names, and where.

A download must never write outside its destination directory, whatever the
key: a key is a free-form string, and on Windows even ``\\``, ``C:`` or
``\\\\server`` inside one would be read as path syntax.  Kept apart from
the CLI so the rules can be checked for either platform on any platform.
"""

from __future__ import annotations

import ntpath
import os
import posixpath

_WINDOWS_RESERVED = frozenset(
    ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"] + [f"{d}{n}" for d in ("COM", "LPT") for n in "123456789"]
)


def _safe_part(part: str, *, windows: bool) -> bool:
    """Whether one ``/``-separated component of a key is a plain file name
    there: not empty, ``.`` or ``..``; on Windows also no ``\\`` (a separator
    there), no ``:`` (a drive or stream), no reserved device name."""
    if part in ("", ".", "..") or "\0" in part:
        return False
    if windows:
        if "\\" in part or ":" in part or part.endswith((" ", ".")):
            return False
        if part.split(".", 1)[0].upper().rstrip(" ") in _WINDOWS_RESERVED:
            return False
    return True


def safe_relative(key: str, prefix: str, *, windows: bool = os.name == "nt") -> str | None:
    """The local relative path for ``key`` under ``prefix``, or None when the
    key could escape the destination directory or name something else than
    the file it says: a ``..``, ``.`` or empty component, an absolute name,
    or (on Windows) backslashes, drive letters, UNC names, device names.
    Keys ending with ``/`` (folder markers) name no file either."""
    rel = key[len(prefix) :]
    parts = rel.split("/")
    if not rel or not all(_safe_part(p, windows=windows) for p in parts):
        return None
    return (ntpath if windows else posixpath).join(*parts)


def inside(directory: str, path: str) -> bool:
    """Whether ``path``, symlinks resolved, is inside ``directory`` (a
    symlinked subdirectory must not carry a download elsewhere)."""
    root = os.path.realpath(directory)
    return os.path.commonpath([root, os.path.realpath(path)]) == root
