"""Incremental checksums under the names S3 uses (x-amz-checksum-*).

Every hasher has ``update(data)`` and ``digest()`` (raw bytes, big-endian for
CRCs, as AWS encodes them) so the streaming write path can feed them all the
same way.  CRCs come from ``awscrt`` (C, the implementation botocore uses).
"""

from __future__ import annotations

import base64
import hashlib
from typing import Callable, Protocol

from awscrt import checksums as _crt

# S3 algorithm name (lower case, as in the header suffix) -> header name.
ALGORITHMS = ("crc32", "crc32c", "crc64nvme", "sha1", "sha256")


class Hasher(Protocol):
    def update(self, data: bytes | memoryview, /) -> None: ...

    def digest(self) -> bytes: ...


class _Crc:
    """A running CRC with awscrt's ``f(data, previous)`` shape."""

    __slots__ = ("_fn", "_value", "_width")

    def __init__(self, fn: Callable[[bytes, int], int], width: int) -> None:
        self._fn = fn
        self._value = 0
        self._width = width

    def update(self, data: bytes | memoryview, /) -> None:
        self._value = self._fn(data, self._value)  # type: ignore[arg-type]

    @property
    def value(self) -> int:
        return self._value

    def digest(self) -> bytes:
        return self._value.to_bytes(self._width, "big")


def new_hasher(algorithm: str) -> Hasher:
    """A fresh hasher for an S3 checksum algorithm or ``md5``."""
    name = algorithm.lower()
    if name == "crc32":
        return _Crc(_crt.crc32, 4)
    if name == "crc32c":
        return _Crc(_crt.crc32c, 4)
    if name == "crc64nvme":
        return _Crc(_crt.crc64nvme, 8)
    if name in ("sha1", "sha256", "md5"):
        return hashlib.new(name)
    raise ValueError(f"unknown checksum algorithm {algorithm!r}")


_DIGEST_BYTES = {name: len(new_hasher(name).digest()) for name in (*ALGORITHMS, "md5")}


def is_digest_value(algorithm: str, value: str) -> bool:
    """Whether ``value`` is the base64 of a digest of ``algorithm``'s size
    (``md5`` included): the form of a checksum header or field, checked
    before a body is read (a malformed value is the client's mistake, not
    data that failed its check)."""
    try:
        digest = base64.b64decode(value, validate=True)
    except ValueError:  # binascii.Error is one
        return False
    return len(digest) == _DIGEST_BYTES[algorithm]


def crc32c(data: bytes | memoryview, previous: int = 0) -> int:
    """CRC32C of ``data``; the per-chunk integrity checksum."""
    return int(_crt.crc32c(data, previous))  # type: ignore[arg-type]


def b64(digest: bytes) -> str:
    """The base64 form AWS uses in x-amz-checksum-* headers."""
    return base64.b64encode(digest).decode("ascii")


def compute(algorithm: str, data: bytes) -> str:
    """One-shot base64 checksum (small bodies, tests)."""
    h = new_hasher(algorithm)
    h.update(data)
    return b64(h.digest())
