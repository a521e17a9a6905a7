"""Buffered request bodies (XML documents, up to 8 MiB for DeleteObjects) on
the real server: what the server keeps of them is bounded by configuration,
whoever sends them.

* A ``Content-Length`` above the operation's limit is answered at once
  (``400 MaxMessageLengthExceeded``, ``Connection: close``) without the body.
* A request known to be refused before its body is needed (no credential
  for a bucket that does not exist or that only its owner may use, an
  unknown access key, a wrong signature) keeps none of its body; it is still
  answered once the body has been sent.
* Accepted requests keep their bodies within ``limits.max_inflight_upload_bytes``
  (4 MiB here): while it is full, reading pauses.
* However a request ends (answered, failed, its client gone), its bytes
  leave the budget.

Memory is the server's VmRSS, sampled every 20 ms while 32 connections each
send all but the last KiB of an 8 MiB body and hold it (before these
bounds, such clients grew the server by about the sum of their bodies).
"""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.integration.conftest import make_client
from tests.integration.raw import CREDS
from tests.integration.server import ServerProcess
from tests.integration.test_inflight_limit import RssSampler, status_kib

KiB = 1 << 10
MiB = 1 << 20
LIMIT = 4 * MiB
BODY = 8 * MiB - 64 * KiB  # under DeleteObjects' 8 MiB
CONNECTIONS = 32
# Growth allowed while the 32 bodies are held: nothing for refused requests
# but socket reads and slack for the allocator; for accepted ones, the budget,
# one body that reads on while nothing else can free memory (the budget's
# "runner", s3/inflight.py), one 64 KiB read per connection, and the same slack.
REFUSED_GROWTH = 16 * MiB
ACCEPTED_GROWTH = LIMIT + 8 * MiB + CONNECTIONS * 64 * KiB + 16 * MiB


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    base = tmp_path_factory.mktemp("buffered")
    (base / "data").mkdir()
    (base / "c.toml").write_text(f"[limits]\nmax_inflight_upload_bytes = {LIMIT}\nbody_timeout_seconds = 60\n")
    proc = ServerProcess(base / "data", config=str(base / "c.toml")).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def client(limited: ServerProcess) -> Any:
    s3: Any = make_client(limited.endpoint, max_pool_connections=4)
    s3.create_bucket(Bucket="private")
    s3.put_object(Bucket="private", Key="keep", Body=b"kept")
    return s3


class _UnsignedPayload(S3SigV4Auth):
    """botocore's signer with x-amz-content-sha256 UNSIGNED-PAYLOAD (botocore
    replaces a value set beforehand with the hash of the body it was given,
    here none: the server would refuse the body as not the one signed)."""

    def payload(self, request: Any) -> str:
        return "UNSIGNED-PAYLOAD"


def head_of(server: ServerProcess, method: str, path: str, length: int | str, creds: Credentials | None = CREDS,
            *, tamper: bool = False, extra: dict[str, str] | None = None) -> bytes:
    """The request line and headers of a raw request with this body length
    (``Transfer-Encoding: chunked`` for ``length="chunked"``): signed by
    ``creds`` (UNSIGNED-PAYLOAD), anonymous without, and with a wrong
    signature if ``tamper``."""
    headers = dict(extra or {})
    if length == "chunked":
        headers["Transfer-Encoding"] = "chunked"
    else:
        headers["Content-Length"] = str(length)
    if creds is not None:
        req = AWSRequest(method, f"{server.endpoint}{path}", headers=headers)
        _UnsignedPayload(creds, "s3", "us-east-1").add_auth(req)
        headers = dict(req.headers.items())
        if tamper:
            headers["Authorization"] = headers["Authorization"][:-4] + "0000"
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{server.port}"]
    lines += [f"{k}: {v}" for k, v in headers.items() if k.lower() != "host"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def connect(server: ServerProcess, timeout: float = 10.0) -> socket.socket:
    assert server.port is not None
    return socket.create_connection(("127.0.0.1", server.port), timeout=timeout)


def read_response(sock: socket.socket) -> bytes:
    """One response (headers and a Content-Length body), or what came before EOF."""
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(65536)
        if not piece:
            return data
        data += piece
    head, _, rest = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        piece = sock.recv(65536)
        if not piece:
            break
        rest += piece
    return head + b"\r\n\r\n" + rest


def code_of(response: bytes) -> tuple[int, str]:
    status = int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/1.1 ") else 0
    start = response.find(b"<Code>")
    code = response[start + 6:response.find(b"</Code>")].decode() if start >= 0 else ""
    return status, code


class Sender(threading.Thread):
    """Sends ``head`` and then ``size`` body bytes in 256 KiB pieces, as far
    as the server lets it: a send that makes no progress for ``stall``
    seconds leaves the rest unsent (the server paused reading)."""

    def __init__(self, sock: socket.socket, head: bytes, size: int, stall: float) -> None:
        super().__init__(daemon=True)
        self.sock, self.head, self.size, self.stall = sock, head, size, stall
        self.sent = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        piece = b" " * (256 * KiB)
        try:
            self.sock.settimeout(self.stall)
            self.sock.sendall(self.head)
            while self.sent < self.size:
                n = self.sock.send(piece[: self.size - self.sent])
                self.sent += n
        except TimeoutError:
            return
        except OSError as e:
            self.error = e


def hold_bodies(
    server: ServerProcess, heads: list[bytes], stall: float
) -> tuple[int, list[socket.socket], list[Sender]]:
    """Open one connection per head, send all but the last KiB of a
    ``BODY``-byte body on each (a sender stops after ``stall`` seconds
    without progress), and hold them; the server's RSS growth over its RSS
    before, sampled until every sender has stopped."""
    assert server.proc is not None
    pid = server.proc.pid
    before = status_kib(pid, "VmRSS") * KiB
    sampler = RssSampler(pid)
    sampler.start()
    socks = [connect(server) for _ in heads]
    senders = [Sender(sock, head, BODY - KiB, stall) for sock, head in zip(socks, heads)]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join(120)
    time.sleep(1.0)  # what the server still takes from the socket buffers
    sampler.stop()
    assert sampler.samples > 0
    return sampler.peak - before, socks, senders


def answer_within(server: ServerProcess, seconds: float) -> None:
    """A small signed request is served within ``seconds``."""
    started = time.monotonic()
    with connect(server, timeout=seconds) as sock:
        sock.sendall(head_of(server, "GET", "/private?tagging", 0))
        assert read_response(sock).startswith(b"HTTP/1.1 404 ")  # NoSuchTagSet
    assert time.monotonic() - started < seconds


@pytest.mark.parametrize(
    ("path", "length", "signed"),
    [
        ("/private?delete", 8 * MiB + 1, True),
        ("/private?delete", 8 * MiB + 1, False),
        ("/nobucket?delete", 64 * MiB, False),
        ("/private?tagging", 2 * MiB + 1, True),
        ("/private/mp?uploadId=x", 4 * MiB + 1, True),
        ("/private?policy", "9" * 30, False),
    ],
)
def test_a_declared_length_over_the_limit_is_answered_before_the_body(
    limited: ServerProcess, client: Any, path: str, length: int | str, signed: bool
) -> None:
    """The error comes at once, without a byte of the body, and the
    connection closes (the body is never read)."""
    method = "PUT" if "tagging" in path or "policy" in path else "POST"
    with connect(limited, timeout=5) as sock:
        sock.sendall(head_of(limited, method, path, length, CREDS if signed else None))
        response = read_response(sock)
        assert code_of(response) == (400, "MaxMessageLengthExceeded"), response[:400]
        assert b"connection: close" in response.lower()
        assert sock.recv(1) == b""  # closed by the server
    assert client.get_object(Bucket="private", Key="keep")["Body"].read() == b"kept"


def test_refused_requests_keep_none_of_their_bodies(limited: ServerProcess, client: Any) -> None:
    """32 connections that will be refused (no credential for a bucket that
    does not exist or that has neither a policy nor ACLs, an unknown access
    key, a wrong signature) each send 8 MiB but the last KiB of a DeleteObjects
    body: the server keeps none of it.  Each is answered with its error once
    the last KiB arrives, and its connection then serves the next request."""
    unknown = Credentials("LSUNKNOWNACCESSKEY00", "not-a-secret")
    kinds = [
        ("/nobucket?delete", None, False, "NoSuchBucket"),
        ("/private?delete", None, False, "AccessDenied"),
        ("/private?delete", unknown, False, "InvalidAccessKeyId"),
        ("/private?delete", CREDS, True, "SignatureDoesNotMatch"),
    ]
    chosen = [kinds[n % len(kinds)] for n in range(CONNECTIONS)]
    heads = [head_of(limited, "POST", path, BODY, creds, tamper=tamper) for path, creds, tamper, _ in chosen]
    growth, socks, senders = hold_bodies(limited, heads, stall=20.0)  # never paused: read to the end
    try:
        print(f"\nrefused: {sum(s.sent for s in senders) / MiB:.0f} MiB sent, server grew {growth / MiB:.1f} MiB")
        assert all(s.error is None and s.sent == BODY - KiB for s in senders), "the server stopped reading"
        assert growth <= REFUSED_GROWTH, f"the server grew by {growth / MiB:.1f} MiB"
        answer_within(limited, 5.0)
        for sock, (_, _, _, code) in zip(socks, chosen):
            sock.settimeout(10)
            sock.sendall(b" " * KiB)
            response = read_response(sock)
            assert code_of(response)[1] == code, response[:400]
            sock.sendall(head_of(limited, "GET", "/private?tagging", 0))
            assert code_of(read_response(sock)) == (404, "NoSuchTagSet")  # still in sync
    finally:
        for sock in socks:
            sock.close()


def test_accepted_bodies_are_held_within_the_in_flight_budget(limited: ServerProcess, client: Any) -> None:
    """32 signed DeleteObjects bodies of 8 MiB held at once: the server keeps
    what the in-flight budget allows and pauses the rest, rather than taking
    256 MiB; it keeps serving other requests meanwhile."""
    heads = [head_of(limited, "POST", "/private?delete", BODY) for _ in range(CONNECTIONS)]
    growth, socks, senders = hold_bodies(limited, heads, stall=3.0)
    try:
        sent = sum(s.sent for s in senders)
        print(f"\naccepted: {sent / MiB:.0f} MiB sent (socket buffers included), server grew {growth / MiB:.1f} MiB")
        assert all(s.error is None for s in senders)
        assert growth <= ACCEPTED_GROWTH, f"the server grew by {growth / MiB:.1f} MiB"
        answer_within(limited, 5.0)
    finally:
        for sock in socks:
            sock.close()


def _delete_body(keys: int, key_bytes: int) -> bytes:
    items = "".join(f"<Object><Key>{n:08d}{'k' * (key_bytes - 8)}</Key></Object>" for n in range(keys))
    return f"<Delete><Quiet>true</Quiet>{items}</Delete>".encode()


def test_every_way_a_request_ends_gives_its_bytes_back(limited: ServerProcess, client: Any) -> None:
    """Many buffered bodies that end every way (answered, refused by the
    handler, over the limit, discarded, cut off by their client) and then a
    check that the budget is empty: one client holds part of a body and
    stalls, and another's body of several socket reads must still be read.
    Had any of those ended requests left its bytes in the budget, the
    budget would be full: the stalled body would be the one allowed to read
    on and the other would wait for it (60 s, the body deadline)."""
    import base64

    def md5(body: bytes) -> dict[str, str]:
        return {"Content-MD5": base64.b64encode(hashlib.md5(body).digest()).decode()}

    answered = _delete_body(1000, 900)  # about 0.9 MiB
    for _ in range(6):  # answered: 200
        with connect(limited) as sock:
            sock.sendall(head_of(limited, "POST", "/private?delete", len(answered), extra=md5(answered)) + answered)
            assert code_of(read_response(sock))[0] == 200
    for _ in range(6):  # refused by the handler after the body: BadDigest, MalformedXML
        for body, headers in ((answered, md5(b"other")), (b"<Delete>" + b" " * MiB, {})):
            with connect(limited) as sock:
                sock.sendall(head_of(limited, "POST", "/private?delete", len(body), extra=headers) + body)
                assert code_of(read_response(sock))[0] == 400
    for _ in range(6):  # over the limit while it arrives (no declared length)
        with connect(limited) as sock:
            sock.sendall(head_of(limited, "PUT", "/private?tagging", "chunked"))
            piece = b" " * (512 * KiB)
            for _ in range(5):
                sock.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
            sock.sendall(b"0\r\n\r\n")
            assert code_of(read_response(sock)) == (400, "MaxMessageLengthExceeded")
    for _ in range(6):  # refused before the body is needed, body dropped
        with connect(limited) as sock:
            sock.sendall(head_of(limited, "POST", "/private?delete", MiB, None) + b" " * MiB)
            assert code_of(read_response(sock)) == (403, "AccessDenied")
    for _ in range(6):  # cut off by the client mid-body
        with connect(limited) as sock:
            sock.sendall(head_of(limited, "POST", "/private?delete", 2 * MiB) + b" " * (MiB + 512 * KiB))
            time.sleep(0.2)
    time.sleep(0.5)

    with connect(limited, timeout=20) as stalled:
        stalled.sendall(head_of(limited, "POST", "/private?delete", MiB) + b" " * (600 * KiB))
        time.sleep(0.5)
        body = _delete_body(1000, 300)  # about 330 KiB: several reads
        started = time.monotonic()
        with connect(limited, timeout=20) as sock:
            sock.sendall(head_of(limited, "POST", "/private?delete", len(body), extra=md5(body)) + body)
            assert code_of(read_response(sock))[0] == 200
        assert time.monotonic() - started < 10
        stalled.sendall(b" " * (MiB - 600 * KiB))
        assert code_of(read_response(stalled))[0] == 400


def test_a_legal_body_larger_than_the_budget_is_still_read(limited: ServerProcess, client: Any) -> None:
    """DeleteObjects of 1000 maximal keys, each 1024 ``&`` (about 5 MiB of
    XML once escaped, more than the 4 MiB budget): with nothing else in
    flight, the budget lets it read on, and every key is deleted."""
    keys = [f"{n:04d}" + "&" * 1020 for n in range(1000)]
    for key in keys[:3]:
        client.put_object(Bucket="private", Key=key, Body=b"x")
    result = client.delete_objects(Bucket="private", Delete={"Objects": [{"Key": k} for k in keys]})
    assert len(result.get("Deleted", [])) == 1000 and not result.get("Errors")
    assert [o["Key"] for o in client.list_objects_v2(Bucket="private").get("Contents", [])] == ["keep"]
