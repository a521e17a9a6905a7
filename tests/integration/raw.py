"""Raw HTTP requests signed by the root credential, for tests that need a
request exactly as written (a path boto3 would normalise, a body it would
re-encode, a header it would add or drop)."""

from __future__ import annotations

import base64
import hashlib
import http.client
import time
from typing import Any

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.integration.server import ROOT_ACCESS_KEY, ROOT_SECRET_KEY

CREDS = Credentials(ROOT_ACCESS_KEY, ROOT_SECRET_KEY)


def signed(server: Any, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """Send a SigV4-signed raw request with the path exactly as given;
    (status, body) of the answer."""
    url = f"{server.endpoint}{path}"
    req = AWSRequest(method, url, data=body, headers=dict(headers or {}))
    S3SigV4Auth(CREDS, "s3", "us-east-1").add_auth(req)  # signs the path as given (no dot-segment removal)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.putrequest(method, path, skip_accept_encoding=True)
    for k, v in req.headers.items():
        conn.putheader(k, v)
    conn.putheader("Content-Length", str(len(body)))
    conn.endheaders(body)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, data


def md5_header(body: bytes) -> dict[str, str]:
    """``Content-MD5`` of ``body`` (what S3 asks of configuration uploads)."""
    return {"Content-MD5": base64.b64encode(hashlib.md5(body).digest()).decode()}


def client_error(info: Any) -> tuple[int, str, str]:
    """(status, code, message) of the ClientError in ``pytest.raises``' info."""
    err = info.value.response
    return err["ResponseMetadata"]["HTTPStatusCode"], err["Error"]["Code"], err["Error"].get("Message", "")


def read_slowly(sock: Any, body: bytes, *, seconds: float = 8.0, step: int = 64 * 1024) -> None:
    """Read a GET's answer at ``step`` bytes a second for ``seconds`` (a
    client that reads slowly, not one that stopped), then the rest; the
    answer must be a 200 carrying exactly ``body``."""
    received = b""
    began = time.monotonic()
    while time.monotonic() - began < seconds:
        target = len(received) + step
        while len(received) < target:
            piece = sock.recv(target - len(received))
            assert piece, f"closed after {len(received)} bytes, {time.monotonic() - began:.1f} s"
            received += piece
        time.sleep(1.0)
    head, _, data = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    while len(data) < len(body):
        piece = sock.recv(1 << 20)
        assert piece, f"closed after {len(data)} body bytes"
        data += piece
    assert data == body
