"""A lean HTTP/1.1 load generator: pre-built requests, keep-alive, asyncio.

The generator shares the machine's cores with the server, so it must cost as
little as possible per request: every request (presigned URL, headers, body)
is built before the clock starts, responses are parsed just enough to find
their end (status line, ``Content-Length`` or chunked), and bodies are
discarded as they arrive.  ``concurrency`` connections each send their next
request as soon as the previous response has ended.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit

_READ = 1 << 20


@dataclass(frozen=True)
class Request:
    """One request, ready to send: ``head`` is the request line and headers."""

    head: bytes
    body: bytes | memoryview = b""
    method: str = "GET"


def build(method: str, url: str, body: bytes | memoryview = b"", headers: dict[str, str] | None = None) -> Request:
    """A request for ``url`` (presigned: the signature is in the query)."""
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    lines = [f"{method} {target} HTTP/1.1", f"Host: {parts.netloc}"]
    if body or method in ("PUT", "POST"):
        lines.append(f"Content-Length: {len(body)}")
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    return Request(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"), body, method)


@dataclass
class Result:
    """What a run did: requests, seconds, statuses and response body bytes."""

    requests: int = 0
    seconds: float = 0.0
    statuses: Counter[int] = field(default_factory=Counter)
    body_bytes: int = 0

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if not 200 <= status < 300)


async def _read_response(reader: asyncio.StreamReader, method: str) -> tuple[int, int, bool]:
    """(status, body bytes, keep-alive) of one response, body discarded."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")  # one await for the whole head
    except asyncio.IncompleteReadError as e:
        raise ConnectionError("connection closed") from e
    lines = head.split(b"\r\n")
    version, status = lines[0].split(b" ", 2)[:2]
    length: int | None = None
    chunked = False
    keep_alive = version == b"HTTP/1.1"
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
        elif name == b"connection":
            keep_alive = b"close" not in value.lower()
    code = int(status)
    received = 0
    if method == "HEAD" or code in (204, 304):
        return code, 0, keep_alive
    if chunked:
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            if size == 0:
                await reader.readline()
                break
            while size:
                piece = await reader.read(min(size, _READ))
                if not piece:
                    raise ConnectionError("short chunk")
                size -= len(piece)
                received += len(piece)
            await reader.readline()
    elif length is not None:
        remaining = length
        while remaining:
            piece = await reader.read(min(remaining, _READ))
            if not piece:
                raise ConnectionError("short body")
            remaining -= len(piece)
        received = length
    else:
        while piece := await reader.read(_READ):
            received += len(piece)
        keep_alive = False
    return code, received, keep_alive


async def _connection(host: str, port: int, requests: list[Request], cursor: list[int], result: Result) -> None:
    reader = writer = None
    try:
        while True:
            index = cursor[0]
            if index >= len(requests):
                return
            cursor[0] = index + 1
            request = requests[index]
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port, limit=_READ)
            assert reader is not None
            body = request.body
            if len(body) <= 65536:
                writer.write(request.head + body)  # one send for small requests
            else:
                writer.write(request.head)
                for offset in range(0, len(body), _READ):
                    writer.write(body[offset : offset + _READ])
                    await writer.drain()
            code, received, keep_alive = await _read_response(reader, request.method)
            result.requests += 1
            result.statuses[code] += 1
            result.body_bytes += received
            if not keep_alive:
                writer.close()
                reader = writer = None
    finally:
        if writer is not None:
            writer.close()


async def _run(url: str, requests: list[Request], concurrency: int) -> Result:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    result = Result()
    cursor = [0]
    start = time.perf_counter()
    await asyncio.gather(
        *(_connection(host, port, requests, cursor, result) for _ in range(min(concurrency, len(requests))))
    )
    result.seconds = time.perf_counter() - start
    return result


def run(url: str, requests: list[Request], concurrency: int) -> Result:
    """Send ``requests`` to the server of ``url`` over ``concurrency`` connections."""
    return asyncio.run(_run(url, requests, concurrency))
