"""A client that goes away while its write's metadata commit is under way
must not lose data, whatever the commit's outcome.

twisted.web cancels a request's handler when its connection is lost.  If
that cancellation reached a commit already in the metadata store's hands,
the handler took the CancelledError for "not committed" and deleted the
new object's chunks, while the transaction landed anyway: the key then
named data that no longer existed, and the version it replaced was gone
too.  Here the commit is held back deterministically by holding the SQLite
store's writer lock (the flock the worker processes queue on), the client
disconnects during that window, and every object must read back whole
afterwards.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import http.client
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.integration.conftest import make_client
from tests.integration.server import ServerProcess

MiB = 1 << 20


@pytest.fixture(scope="module")
def own_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data = tmp_path_factory.mktemp("disconnect") / "data"
    data.mkdir()
    server = ServerProcess(data).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def c(own_server: ServerProcess) -> Any:
    return make_client(own_server.endpoint)


@contextlib.contextmanager
def commits_held(server: ServerProcess) -> Iterator[None]:
    """Hold the SQLite writer lock: commits queue until the block ends."""
    paths = glob.glob(str(Path(server.data_dir) / "**" / "*-writer.lock"), recursive=True)
    assert paths, "the SQLite store's writer lock file"
    fd = os.open(paths[0], os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def send_and_vanish(url: str, body: bytes) -> None:
    """PUT ``body`` to a presigned ``url`` in full, wait until the server has
    it, and close the connection without reading the answer."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    conn.putrequest("PUT", f"{parts.path}?{parts.query}", skip_accept_encoding=True)
    conn.putheader("Content-Length", str(len(body)))
    conn.endheaders()
    conn.send(body)
    time.sleep(1.0)  # stored; the commit waits for the writer lock
    assert conn.sock is not None
    conn.sock.close()
    time.sleep(0.5)  # the server sees the connection lost and cancels the handler


def read_back(c: Any, bucket: str, key: str, deadline: float = 10.0) -> bytes:
    """The object's bytes once the held commit has settled."""
    end = time.monotonic() + deadline
    while True:
        try:
            data: bytes = c.get_object(Bucket=bucket, Key=key)["Body"].read()
            return data
        except Exception:
            if time.monotonic() > end:
                raise
            time.sleep(0.2)


def test_put_whose_client_vanishes_during_the_commit_loses_nothing(own_server: ServerProcess, c: Any) -> None:
    bucket = f"gone-{uuid.uuid4().hex[:8]}"
    c.create_bucket(Bucket=bucket)
    first, second = os.urandom(2 * MiB), os.urandom(2 * MiB)
    c.put_object(Bucket=bucket, Key="k", Body=first)
    url = c.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=600)
    with commits_held(own_server):
        send_and_vanish(url, second)
    time.sleep(1.0)  # the queued commit lands
    got = read_back(c, bucket, "k")
    # The write may or may not have landed; either way the key reads whole.
    assert got in (first, second)
    head = c.head_object(Bucket=bucket, Key="k")
    assert head["ETag"] == f'"{hashlib.md5(got).hexdigest()}"'


def test_part_whose_client_vanishes_during_the_commit_completes_readable(
    own_server: ServerProcess, c: Any
) -> None:
    """A client resuming from ListParts skips a part listed with its MD5:
    that part's data must be there."""
    bucket = f"gone-{uuid.uuid4().hex[:8]}"
    c.create_bucket(Bucket=bucket)
    part = os.urandom(2 * MiB)
    upload = c.create_multipart_upload(Bucket=bucket, Key="big")["UploadId"]
    url = c.generate_presigned_url(
        "upload_part", Params={"Bucket": bucket, "Key": "big", "UploadId": upload, "PartNumber": 1}, ExpiresIn=600
    )
    with commits_held(own_server):
        send_and_vanish(url, part)
    time.sleep(1.0)
    listed = c.list_parts(Bucket=bucket, Key="big", UploadId=upload).get("Parts", [])
    if not listed:  # the part's commit did not land: upload it again, as a client would
        c.upload_part(Bucket=bucket, Key="big", UploadId=upload, PartNumber=1, Body=part)
        listed = c.list_parts(Bucket=bucket, Key="big", UploadId=upload)["Parts"]
    assert listed[0]["ETag"] == f'"{hashlib.md5(part).hexdigest()}"'
    c.complete_multipart_upload(Bucket=bucket, Key="big", UploadId=upload, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": listed[0]["ETag"]}]})  # fmt: skip
    assert read_back(c, bucket, "big") == part


def test_pipelined_puts_cut_off_by_a_close_are_not_server_faults(own_server: ServerProcess, c: Any) -> None:
    """Three PUTs pipelined on one connection, the client reads the first
    answer and closes: the queued ones are cancelled (and store nothing),
    which is the client's doing, never an "Unhandled error" the server logs
    as its own fault (it was, at critical level, once per close)."""
    import socket

    bucket = f"piped-{uuid.uuid4().hex[:8]}"
    c.create_bucket(Bucket=bucket)
    first_line = len(own_server.output)
    for round_ in range(5):
        pipelined = b""
        for n in range(3):
            url = urlsplit(c.generate_presigned_url(
                "put_object", Params={"Bucket": bucket, "Key": f"q{round_}-{n}"}, ExpiresIn=600))
            body = b"x" * (n + 1)
            pipelined += (
                f"PUT {url.path}?{url.query} HTTP/1.1\r\nHost: {url.netloc}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode() + body
        with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
            sock.sendall(pipelined)
            answer = sock.recv(65536)
            assert answer.startswith(b"HTTP/1.1 200"), answer[:80]
        time.sleep(0.3)
    time.sleep(1.0)
    faults = [line for line in own_server.output[first_line:] if "Unhandled error" in line or "critical" in line]
    assert faults == [], faults[:3]
    stored = [o["Key"] for o in c.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert {f"q{r}-0" for r in range(5)} <= set(stored)
