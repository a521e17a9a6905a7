"""Connection limits of the real server: slowloris headers are cut off by
``limits.header_timeout_seconds`` even though every byte resets the idle
timeout, a response the client stops reading by ``limits.idle_timeout_seconds``,
and connections above ``limits.max_connections`` get 503 SlowDown."""

from __future__ import annotations

import socket
import time
import urllib.error
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.raw import read_slowly
from tests.integration.server import ServerProcess
from tests.integration.test_metrics import _samples, _scrape_text, _value

CONFIG = """\
[limits]
idle_timeout_seconds = 3
header_timeout_seconds = 2
body_timeout_seconds = 2
max_connections = 4
"""


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    base = tmp_path_factory.mktemp("limits")
    (base / "data").mkdir()
    (base / "c.toml").write_text(CONFIG)
    proc = ServerProcess(base / "data", config=str(base / "c.toml")).start()
    yield proc
    proc.stop()


def _connect(server: ServerProcess) -> socket.socket:
    assert server.port is not None
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


def _response(sock: socket.socket) -> bytes:
    """Read until the peer closes or a full /health response (tiny) arrived."""
    data = b""
    while True:
        try:
            piece = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            return data
        if not piece:
            return data
        data += piece
        if b"\r\n\r\n" in data and data.split(b"\r\n\r\n", 1)[1]:
            return data


# The series a limit's answer shows in: (name, labels) by a short name.
_COUNTED = {
    "refused": ("lightningstor_connection_limit_closes_total", {"limit": "max_connections"}),
    "too_many": ("lightningstor_requests_total", {"operation": "TooManyConnections", "status": "503"}),
    "slow_down": ("lightningstor_s3_errors_total", {"code": "SlowDown", "status": "503"}),
    "body_timeout": ("lightningstor_connection_limit_closes_total", {"limit": "body_timeout"}),
    "put_400": ("lightningstor_requests_total", {"operation": "PutObject", "status": "400"}),
    "put_499": ("lightningstor_requests_total", {"operation": "PutObject", "status": "499"}),
    "request_timeout": ("lightningstor_s3_errors_total", {"code": "RequestTimeout", "status": "400"}),
    "header_timeout": ("lightningstor_connection_limit_closes_total", {"limit": "header_timeout"}),
}


def _counted(server: ServerProcess) -> dict[str, float]:
    """The metrics a limit's answer shows in, from one scrape (a connection of
    its own: one refused because the server has not yet seen an earlier
    connection close is tried again, and counts as a refusal itself)."""
    deadline = time.monotonic() + 10
    while True:
        try:
            samples = _samples(_scrape_text(f"{server.endpoint}/metrics"))
            break
        except urllib.error.HTTPError as e:
            if e.code != 503 or time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    return {short: _value(samples, name, **labels) for short, (name, labels) in _COUNTED.items()}


def _grew(server: ServerProcess, before: dict[str, float], **expected: float) -> None:
    """Wait (a request is counted when its connection is gone) until the
    metrics grew by ``expected`` (the others not at all).  Refusals count
    alike in three series, whoever was refused (the test, or a scrape)."""
    deadline = time.monotonic() + 5
    while True:
        now = _counted(server)
        grown = {k: now[k] - before[k] for k in now if now[k] != before[k]}
        want = dict(expected)
        extra = grown.get("refused", 0) - expected.get("refused", 0)  # scrapes refused on the way
        if extra > 0:
            for k in ("refused", "too_many", "slow_down"):
                want[k] = want.get(k, 0) + extra
        if grown == want or time.monotonic() > deadline:
            assert grown == want
            return
        time.sleep(0.1)


def _closed(sock: socket.socket) -> bool:
    try:
        sock.setblocking(False)
        try:
            return sock.recv(1) == b""
        except BlockingIOError:
            return False
    except (ConnectionResetError, BrokenPipeError):
        return True
    finally:
        sock.setblocking(True)


def test_headers_trickled_byte_by_byte_are_cut_off(limited: ServerProcess) -> None:
    """A client sending its headers one byte every 0.25 s (never idle for the 3 s idle
    timeout) is disconnected about 2 s after its first byte, long before it finishes."""
    request = b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"a" * 60 + b"\r\n\r\n"
    counted = _counted(limited)
    sock = _connect(limited)
    began = time.monotonic()
    closed_at = None
    try:
        for byte in request:
            try:
                sock.send(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                closed_at = time.monotonic()
                break
            if _closed(sock):
                closed_at = time.monotonic()
                break
            time.sleep(0.25)
    finally:
        sock.close()
    assert closed_at is not None, "the server waited for the whole trickled request"
    assert 1.5 <= closed_at - began <= 6.0
    _grew(limited, counted, header_timeout=1)


def test_headers_in_a_few_quick_pieces_are_served(limited: ServerProcess) -> None:
    """The deadline does not hurt a normal client: headers in pieces within the limit,
    then a second request on the same keep-alive connection, are both answered."""
    sock = _connect(limited)
    try:
        for _ in range(2):
            sock.sendall(b"GET /health HTTP/1.1\r\n")
            time.sleep(0.5)
            sock.sendall(b"Host: x\r\n")
            time.sleep(0.5)
            sock.sendall(b"\r\n")
            assert _response(sock).startswith(b"HTTP/1.1 200")
            time.sleep(1.0)  # idle between requests: not counted against the next one
    finally:
        sock.close()


def test_connections_above_the_cap_get_slow_down(limited: ServerProcess) -> None:
    """With max_connections = 4 and four connections open, a fifth gets 503 SlowDown
    and is closed; once one of the four closes, a new connection is served again.
    The metrics count the refusal as a 503 SlowDown request (the 5xx ratio an
    alert watches: no sign of the overload reached them before)."""
    counted = _counted(limited)
    held = [_connect(limited) for _ in range(4)]
    try:
        time.sleep(0.2)  # the server has accepted all four
        extra = _connect(limited)
        try:
            reply = _response(extra)
        finally:
            extra.close()
        assert reply.startswith(b"HTTP/1.1 503"), reply
        assert b"<Code>SlowDown</Code>" in reply
        held.pop().close()
        held.pop().close()  # room for the scrape too
        _grew(limited, counted, refused=1, too_many=1, slow_down=1)
        time.sleep(0.2)
        sock = _connect(limited)
        try:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert _response(sock).startswith(b"HTTP/1.1 200")
        finally:
            sock.close()
    finally:
        for sock in held:
            sock.close()


def test_a_trickled_body_gets_request_timeout_and_stores_nothing(limited: ServerProcess) -> None:
    """A signed PutObject whose body comes 20 bytes every 0.5 s (never idle for
    the 3 s idle timeout, but under 1 KiB per 2 s body period) is answered 400
    RequestTimeout and closed; the key does not exist.  A body sent at a
    normal pace through boto3 is stored.  The metrics count a 400
    RequestTimeout (they counted a 499, as if the client had left)."""
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    from botocore.exceptions import ClientError

    from tests.integration.conftest import make_client
    from tests.integration.server import ROOT_ACCESS_KEY, ROOT_SECRET_KEY

    s3 = make_client(limited.endpoint)
    s3.create_bucket(Bucket="slowbody")
    counted = _counted(limited)
    req = AWSRequest("PUT", f"{limited.endpoint}/slowbody/k",
                     headers={"Content-Length": "100000", "x-amz-content-sha256": "UNSIGNED-PAYLOAD"})
    S3SigV4Auth(Credentials(ROOT_ACCESS_KEY, ROOT_SECRET_KEY), "s3", "us-east-1").add_auth(req)
    head = ["PUT /slowbody/k HTTP/1.1", f"Host: 127.0.0.1:{limited.port}"]
    head += [f"{k}: {v}" for k, v in req.headers.items() if k.lower() != "host"]
    sock = _connect(limited)
    began = time.monotonic()
    reply = b""
    try:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        sock.settimeout(0.5)
        while time.monotonic() - began < 15 and b"</Error>" not in reply:
            try:
                sock.sendall(b"x" * 20)
            except (BrokenPipeError, ConnectionResetError):
                pass
            try:
                piece = sock.recv(65536)
                if not piece:
                    break
                reply += piece
            except TimeoutError:
                continue
    finally:
        sock.close()
    assert reply.startswith(b"HTTP/1.1 400"), reply[:200]
    assert b"<Code>RequestTimeout</Code>" in reply
    assert 1.5 <= time.monotonic() - began <= 8.0
    _grew(limited, counted, body_timeout=1, put_400=1, request_timeout=1)
    with pytest.raises(ClientError):
        s3.head_object(Bucket="slowbody", Key="k")
    body = b"y" * (3 * 1024 * 1024)
    s3.put_object(Bucket="slowbody", Key="fine", Body=body)
    assert s3.get_object(Bucket="slowbody", Key="fine")["Body"].read() == body



def test_a_chunked_body_is_timed_whichever_transfer_encoding_header_names_it(limited: ServerProcess) -> None:
    """``Transfer-Encoding: identity`` followed by ``Transfer-Encoding:
    chunked`` once left a trickled chunked body without its deadline; it is
    a framing RFC 9112 refuses (answered 400 at once, s3/framing.py), and
    a trickled body under it is never left open for as long as it trickles."""
    sock = _connect(limited)
    began = time.monotonic()
    closed_or_answered = False
    try:
        sock.sendall(
            f"PUT /tebucket/k HTTP/1.1\r\nHost: 127.0.0.1:{limited.port}\r\n"
            "Transfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        )
        sock.settimeout(0.5)
        while time.monotonic() - began < 20:
            try:
                sock.sendall(b"1\r\nx\r\n")
            except (BrokenPipeError, ConnectionResetError):
                closed_or_answered = True
                break
            try:
                piece = sock.recv(65536)
                if not piece or b"HTTP/1.1" in piece:
                    closed_or_answered = True
                    break
            except TimeoutError:
                pass
            except ConnectionResetError:
                closed_or_answered = True
                break
    finally:
        sock.close()
    assert closed_or_answered and time.monotonic() - began < 10


def test_a_client_that_does_not_read_cannot_pipeline_without_bound(server: ServerProcess, s3: Any) -> None:
    """A client that leaves a large GET unread and pipelines bytes behind
    it: the server stops reading from it (its memory does not grow with
    what the client sends), and serves everyone else meanwhile."""
    import http.client
    import os
    import uuid

    bucket = f"pipe-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="big", Body=os.urandom(32 << 20))
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "big"}, ExpiresIn=300)
    path = url.split(str(server.port), 1)[1]
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=3)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sent = 0
    try:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode())
        time.sleep(1.0)  # the answer fills the socket buffers; nobody reads it
        junk = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n" * 30_000  # about 1 MiB a round
        with pytest.raises(TimeoutError):  # the server stops reading: sendall blocks
            for _ in range(40):
                sock.sendall(junk)
                sent += len(junk)
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        conn.request("GET", "/health")
        assert conn.getresponse().status == 200
        conn.close()
    finally:
        sock.close()
    assert sent < 16 << 20, f"the server took {sent} pipelined bytes while its answer was not read"


def _big_object_path(server: ServerProcess, size: int) -> tuple[str, str, bytes]:
    """Store ``size`` random bytes under a fresh key: (its key, the presigned
    GET path, the bytes)."""
    import os
    import uuid

    from tests.integration.conftest import make_client

    s3: Any = make_client(server.endpoint)
    bucket = "slowread"
    if bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket=bucket)
    key = f"big-{uuid.uuid4().hex[:8]}"
    body = os.urandom(size)
    s3.put_object(Bucket=bucket, Key=key, Body=body)
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=300)
    return key, url.split(str(server.port), 1)[1], body


def _tcp_state(sock: socket.socket) -> int:
    """The kernel's TCP state of ``sock`` (Linux ``TCP_INFO``; 1 is
    ESTABLISHED), read without taking any received bytes."""
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]


def test_a_response_the_client_stops_reading_is_cut_off(limited: ServerProcess) -> None:
    """A GET of a 16 MiB object whose client reads nothing: twisted.web's idle
    timeout is off while a request is handled, so the connection (a slot, and
    the object's reader) was held for as long as the client liked.  With
    idle_timeout_seconds = 3 it is aborted a few seconds after the socket
    buffers fill, and the request ends: its access-log line is written with
    only part of the object sent."""
    key, path, body = _big_object_path(limited, 16 << 20)
    sock = _connect(limited)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    began = time.monotonic()
    closed_after = None
    try:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{limited.port}\r\n\r\n".encode())
        while time.monotonic() - began < 12:
            if _tcp_state(sock) != 1:
                closed_after = time.monotonic() - began
                break
            time.sleep(0.1)
        received = b""
        sock.settimeout(3)
        try:
            while piece := sock.recv(1 << 20):
                received += piece
        except (ConnectionResetError, TimeoutError):
            pass
    finally:
        sock.close()
    assert closed_after is not None, "the server waited for a client that never read"
    assert 2.5 <= closed_after <= 8.0, closed_after
    assert len(received) < len(body)
    deadline = time.monotonic() + 5
    while not any(f"GET /slowread/{key}?" in line for line in limited.output):
        assert time.monotonic() < deadline, "the cut-off GET never ended"
        time.sleep(0.1)


def test_a_client_reading_slowly_but_steadily_is_not_cut_off(limited: ServerProcess) -> None:
    """A client that takes 64 KiB a second (the server's send buffer stays
    full all along, and the socket's buffers hold megabytes, which it
    drains only slowly) for 8 s, more than twice the 3 s idle timeout, keeps
    its connection and then gets the whole object, intact."""
    _, path, body = _big_object_path(limited, 16 << 20)
    sock = _connect(limited)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    try:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{limited.port}\r\n\r\n".encode())
        read_slowly(sock, body)
    finally:
        sock.close()
