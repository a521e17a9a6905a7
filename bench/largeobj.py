"""One large PUT or GET over one connection, with a blocking socket.

The asyncio generator (:mod:`bench.loadgen`) copies every received byte
three times (transport buffer, StreamReader buffer, the bytes it returns):
against a server that sends from memory it tops out near a third of one
loopback connection, so it cannot show a server going faster than that.
This client does what the "one loopback TCP connection" limit does: the body
is received with ``recv_into`` into one reused 1 MiB buffer and discarded,
and sent with ``sendall`` of 1 MiB slices of the caller's buffer.  Requests
are presigned (the signature is in the query), so it speaks plain HTTP/1.1.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

MiB = 1 << 20


@dataclass(frozen=True)
class Transfer:
    status: int
    body_bytes: int  # response body bytes (GET) or request body bytes (PUT)
    seconds: float


def _connect(url: str) -> tuple[socket.socket, str, str]:
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    return sock, target, parts.netloc


def _response(sock: socket.socket, buf: bytearray) -> tuple[int, int]:
    """(status, body bytes) of one Content-Length response; the body is discarded."""
    view = memoryview(buf)
    head = bytearray()
    while b"\r\n\r\n" not in head:
        n = sock.recv_into(buf)
        if not n:
            raise ConnectionError("connection closed before the response head")
        head += view[:n]
    raw, _, rest = bytes(head).partition(b"\r\n\r\n")
    lines = raw.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    got = len(rest)
    while got < length:
        n = sock.recv_into(buf)
        if not n:
            raise ConnectionError("short body")
        got += n
    return status, got


def get(url: str) -> Transfer:
    """GET ``url`` (presigned); the clock runs from the request to the last body byte."""
    sock, target, host = _connect(url)
    buf = bytearray(MiB)
    try:
        start = time.perf_counter()
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode("latin-1"))
        status, n = _response(sock, buf)
        return Transfer(status, n, time.perf_counter() - start)
    finally:
        sock.close()


def put(url: str, body: bytes | memoryview) -> Transfer:
    """PUT ``body`` to ``url`` (presigned); the clock runs until the response."""
    sock, target, host = _connect(url)
    view = memoryview(body)
    buf = bytearray(64 * 1024)
    try:
        start = time.perf_counter()
        head = f"PUT {target} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(view)}\r\n\r\n"
        sock.sendall(head.encode("latin-1"))
        for offset in range(0, len(view), MiB):
            sock.sendall(view[offset : offset + MiB])
        status, _ = _response(sock, buf)
        return Transfer(status, len(view), time.perf_counter() - start)
    finally:
        sock.close()
