"""The ``Range`` request header of GetObject / HeadObject, the way S3 reads it.

S3 serves exactly one byte range per request and is deliberately forgiving:
a header it cannot use is *ignored* (200 with the whole object), and only a
well-formed range that lies wholly outside the object is an error
(416 ``InvalidRange``).  The cases, as AWS answers them:

==========================  =======================================================
``Range`` header            answer
==========================  =======================================================
absent                      200, whole object
``bytes=4-7``               206, ``Content-Range: bytes 4-7/11``
``bytes=4-`` / ``4-999``    206, end clipped to ``size - 1``
``bytes=-7``                206, the last 7 bytes (all of them if ``7 >= size``)
``bytes=40-50`` (size 11)   416 InvalidRange: first byte at or past the end
``bytes=0-``, size 0        416 InvalidRange: an empty object has no first byte
``bytes=-7``, size 0        200, the (empty) whole object: a suffix asks for "at
                            most the last 7 bytes" (AWS answers so; readers of a
                            file's tail, Trino's and object_store's, rely on it)
``bytes=-0``                416 InvalidRange: a zero-length suffix selects nothing
``bytes=5-2``               200, whole object: last < first makes the header
                            invalid (RFC 7233 §2.1) and AWS ignores it
``bytes=0-1,5-6``           200, whole object: S3 does not do multipart/byteranges
``items=0-1``, ``bytes=x``  200, whole object: unknown unit / not the grammar
==========================  =======================================================

Empty list elements (``bytes=0-1,``) are dropped before counting ranges, as
RFC 7230 §7 requires of list-valued headers.  Numbers are ASCII digits only:
``int()`` would accept ``+5``, ``5_0`` and other Unicode digits.  A number of
any length is read (``int()`` refuses more than 4300 digits, which would be a
500): beyond 19 significant digits it is larger than any object, which is all
the range logic needs to know.
"""

from __future__ import annotations

import re

from lightningstor import errors
from lightningstor.digits import clamped_int

# The unit is case-insensitive (RFC 7233 §2); whitespace is allowed only where
# the list grammar allows it (around the commas), not inside a range.
_UNIT = re.compile(r"\s*bytes=(.*)", re.ASCII | re.IGNORECASE | re.DOTALL)
_SPEC = re.compile(r"[ \t]*([0-9]*)-([0-9]*)[ \t]*", re.ASCII)


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(start, end_inclusive)`` to serve, or ``None`` for the whole object.

    Raises :class:`errors.InvalidRange` (416) for a valid but unsatisfiable
    range; the error carries ``Content-Range: bytes */size`` (RFC 7233 §4.4)
    and AWS's ``RangeRequested`` / ``ActualObjectSize`` error fields.
    """
    if header is None:
        return None
    unit = _UNIT.fullmatch(header)
    if unit is None:
        return None
    specs = [item for item in unit.group(1).split(",") if item.strip()]
    if len(specs) != 1:
        return None
    spec = _SPEC.fullmatch(specs[0])
    if spec is None:
        return None
    first, last = spec.groups()
    if not first and not last:
        return None
    if not first:
        suffix = clamped_int(last)
        if suffix == 0:
            raise _unsatisfiable(header, size)
        if size == 0:
            return None
        return max(0, size - suffix), size - 1
    start = clamped_int(first)
    if last:
        end = clamped_int(last)
        if _magnitude(last) < _magnitude(first):
            return None
    else:
        end = size - 1
    if start >= size:
        raise _unsatisfiable(header, size)
    return start, min(end, size - 1)


def _magnitude(digits: str) -> tuple[int, str]:
    """A key ordering ASCII digit strings by value, whatever their length."""
    significant = digits.lstrip("0")
    return len(significant), significant


def content_range(start: int, end: int, size: int) -> str:
    """The ``Content-Range`` value of a 206: ``bytes 0-9/100``."""
    return f"bytes {start}-{end}/{size}"


def _unsatisfiable(header: str, size: int) -> errors.S3Error:
    return errors.InvalidRange(
        headers={"Content-Range": f"bytes */{size}"},
        RangeRequested=header,
        ActualObjectSize=str(size),
    )
