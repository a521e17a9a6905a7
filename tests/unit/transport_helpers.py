"""A real TCP ``Connection`` over a socket pair, and the wrapper every S3
connection has, for unit tests of code that tunes the transport under a
request (s3/streaming.py sends, s3/body.py reads)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from twisted.internet import reactor
from twisted.internet.tcp import Connection
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory


@contextmanager
def socket_connection() -> Iterator[Connection]:
    a, b = socket.socketpair()
    connection = Connection(a, None, reactor)  # type: ignore[arg-type]
    try:
        yield connection
    finally:
        a.close()
        b.close()


def wrapped(inner: Any) -> ProtocolWrapper:
    """As the connection limits wrap every S3 connection."""
    wrapper = ProtocolWrapper(WrappingFactory(None), None)  # type: ignore[arg-type]
    wrapper.transport = inner
    return wrapper
