"""Bitrot against the real server: corrupt chunk files are never served, and
the scrub (``lightningstor-admin scrub`` and the background ScrubService)
finds corrupt and missing chunks and counts them in /metrics."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import make_client
from tests.integration.server import ServerProcess

MiB = 1 << 20
CONFIG = "[storage]\nchunk_size_bytes = 1048576\ninline_threshold_bytes = 1024\n"
BAD_OFFSET = 100_000  # inside 64 KiB block 1 of the second chunk


def _chunk_ids(data_dir: Path, key: str) -> list[str]:
    """The object's chunk ids in object order, read from SQLite directly."""
    import json

    conn = sqlite3.connect(f"file:{data_dir / 'metadata.db'}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT key, value FROM kv WHERE key >= ? AND key < ?",
                            (b"lightningstor/objects/", b"lightningstor/objects0")).fetchall()
    finally:
        conn.close()
    for k, v in rows:
        if k.endswith(b"/" + key.encode()):
            return [c[0] for c in json.loads(v)["chunks"]]
    raise AssertionError(f"no record for {key}")


def _chunk_path(data_dir: Path, chunk_id: str) -> Path:
    return next((data_dir / "data" / "chunks").rglob(chunk_id))


def _flip(path: Path, offset: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0x40
    path.write_bytes(bytes(raw))


def _get(s3: Any, **kwargs: Any) -> bytes | None:
    """The body, or None if the server answered 5xx or cut the connection
    before Content-Length was reached (both are acceptable for bad data)."""
    try:
        resp = s3.get_object(**kwargs)
    except ClientError as exc:
        assert exc.response["ResponseMetadata"]["HTTPStatusCode"] >= 500, exc.response
        return None
    try:
        body: bytes = resp["Body"].read()
    except Exception:  # noqa: BLE001 - urllib3/botocore raise several types for a cut body
        return None
    if len(body) != resp["ContentLength"]:
        return None
    return body


@pytest.fixture
def corrupted(tmp_path: Path) -> Any:
    """A server holding a 2.5 MiB object (three 1 MiB-chunks) whose second chunk
    has one flipped byte; yields (server, client, original bytes, chunk ids)."""
    data = tmp_path / "data"
    data.mkdir()
    config = tmp_path / "c.toml"
    config.write_text(CONFIG)
    server = ServerProcess(data, config=str(config)).start()
    try:
        s3: Any = make_client(server.endpoint)
        s3.create_bucket(Bucket="rot")
        body = os.urandom(2 * MiB + MiB // 2)
        s3.put_object(Bucket="rot", Key="obj", Body=body)
        ids = _chunk_ids(data, "obj")
        assert len(ids) == 3
        _flip(_chunk_path(data, ids[1]), BAD_OFFSET)
        yield server, s3, body, ids
    finally:
        server.stop()


def test_get_of_flipped_bytes_fails_and_never_returns_them(corrupted: Any) -> None:
    """A ranged GET touching the bad 64 KiB block and a full GET both fail (5xx,
    or a cut before Content-Length); neighbouring data still reads back intact."""
    server, s3, body, _ids = corrupted
    bad = MiB + BAD_OFFSET
    assert _get(s3, Bucket="rot", Key="obj", Range=f"bytes={bad - 10}-{bad + 10}") is None
    assert _get(s3, Bucket="rot", Key="obj", Range=f"bytes={MiB}-{2 * MiB - 1}") is None
    assert _get(s3, Bucket="rot", Key="obj") is None
    # Blocks and chunks that are intact are still served (the check is per block).
    assert _get(s3, Bucket="rot", Key="obj", Range="bytes=0-99999") == body[:100000]
    assert _get(s3, Bucket="rot", Key="obj", Range=f"bytes={MiB}-{MiB + 65535}") == body[MiB:MiB + 65536]
    assert _get(s3, Bucket="rot", Key="obj", Range=f"bytes={2 * MiB}-") == body[2 * MiB:]


def test_admin_scrub_reports_corrupt_and_missing_chunks(corrupted: Any, tmp_path: Path) -> None:
    """``lightningstor-admin scrub`` on the stopped server's data exits 3 and names the
    corrupt chunk and a deleted one, each with the record holding it."""
    server, _s3, _body, ids = corrupted
    server.stop()
    _chunk_path(server.data_dir, ids[2]).unlink()
    result = subprocess.run(
        [sys.executable, "-m", "lightningstor.admin", "scrub",
         "--config", str(tmp_path / "c.toml"), "--data-dir", str(server.data_dir)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 3, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith(f"corrupt\t{ids[1]}\t") and line.endswith("/obj") for line in lines), lines
    assert any(line.startswith(f"missing\t{ids[2]}\t") for line in lines), lines
    assert lines[-1].startswith("records=1 chunks=3 bytes=1048576 ")


def test_background_scrub_logs_and_counts_problems(corrupted: Any, tmp_path: Path) -> None:
    """With ``storage.scrub_interval_seconds`` set, the server scrubs by itself, logs the
    corrupt chunk, and counts it in lightningstor_scrub_errors_total{kind="corrupt"}."""
    server, _s3, _body, ids = corrupted
    server.stop()
    config = tmp_path / "scrub.toml"
    config.write_text(CONFIG + "scrub_interval_seconds = 1\n")
    server.config = str(config)
    server.start()
    deadline = time.monotonic() + 20
    value = None
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{server.endpoint}/metrics", timeout=5) as reply:
            text = reply.read().decode()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "lightningstor_scrub_errors_total" and sample.labels == {"kind": "corrupt"}:
                    value = sample.value
        if value:
            break
        time.sleep(0.3)
    assert value is not None and value >= 1, text
    # The server's output reaches the test through a pipe read by another
    # thread: the line may arrive after the metric was seen.
    while time.monotonic() < deadline and not any("Scrub: corrupt chunk " + ids[1] in line for line in server.output):
        time.sleep(0.1)
    assert any("Scrub: corrupt chunk " + ids[1] in line for line in server.output)


def test_error_before_the_body_carries_no_object_headers(corrupted: Any) -> None:
    """When the first chunk read fails, the error response describes the error, not the
    object: no ETag, Content-Range or checksum headers (a default boto3 client would
    otherwise try to validate a checksum against the error document)."""
    import http.client

    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    from tests.integration.server import ROOT_ACCESS_KEY, ROOT_SECRET_KEY

    server, _s3, _body, _ids = corrupted
    bad = MiB + BAD_OFFSET
    url = f"{server.endpoint}/rot/obj"
    headers = {"Range": f"bytes={bad}-{bad + 10}", "x-amz-checksum-mode": "ENABLED"}
    req = AWSRequest("GET", url, headers=headers)
    S3SigV4Auth(Credentials(ROOT_ACCESS_KEY, ROOT_SECRET_KEY), "s3", "us-east-1").add_auth(req)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("GET", "/rot/obj", headers=dict(req.headers.items()))
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    assert resp.status >= 500 and b"<Error>" in body
    names = {name.lower() for name, _ in resp.getheaders()}
    assert not names & {"etag", "content-range", "last-modified", "accept-ranges"}
    assert not any(n.startswith("x-amz-checksum-") or n.startswith("x-amz-meta-") for n in names)
    assert "x-amz-request-id" in names and resp.getheader("Content-Type") == "application/xml"
