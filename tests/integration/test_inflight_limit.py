"""``limits.max_inflight_upload_bytes`` on the real server: many concurrent
large uploads are slowed down (their connections paused), never failed, and
the server's memory stays bounded by the limit rather than by the number of
uploads.

The server runs with an 8 MiB limit.  Sixteen clients each stream a 48 MiB
body over raw ``http.client`` (presigned PUT, 1 MiB sends) at the same time,
so 768 MiB arrive far faster than the server can hash and fsync them.  The
server's VmRSS is sampled from /proc every 20 ms and its VmHWM read at the end.
Every upload must succeed with the right ETag and read back byte-identical.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.integration.conftest import make_client
from tests.integration.server import ServerProcess

MiB = 1 << 20
LIMIT = int(os.environ.get("LIGHTNINGSTOR_TEST_INFLIGHT_LIMIT", 8 * MiB))
UPLOADS = 16
SIZE = 48 * MiB
# What the server may grow by during the concurrent uploads, over its peak
# with one upload in flight: the limit, the overshoot it allows (about one
# 64 KiB read per upload: uploads read 1 MiB at a time only while the budget
# has room for all of them to), and slack for the io threads' allocator
# arenas.  Measured on 2 cores: 9-11 MiB with the 8 MiB limit (25 MiB when
# every upload read 1 MiB at a time whatever the budget), about 50 MiB with
# LIGHTNINGSTOR_TEST_INFLIGHT_LIMIT=1073741824 (each upload then holds up to
# 3 MiB), which fails this bound.
ALLOWED_GROWTH = LIMIT + 20 * MiB

# Eight distinct random blocks; upload u's block i is block (u + i) % 8 with
# (u, i) written over its first 16 bytes, so a misplaced, repeated or foreign
# block changes the digest.
_BLOCKS = [os.urandom(MiB) for _ in range(8)]


def block(upload: int, index: int) -> bytes:
    return struct.pack(">QQ", upload, index) + _BLOCKS[(upload + index) % 8][16:]


def status_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


class RssSampler(threading.Thread):
    """Polls the server's VmRSS until stopped; ``peak`` in bytes."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = 0
        self.samples = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(0.02):
            self.peak = max(self.peak, status_kib(self.pid, "VmRSS") * 1024)
            self.samples += 1

    def stop(self) -> None:
        self._halt.set()
        self.join(5)


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    base = tmp_path_factory.mktemp("inflight")
    (base / "data").mkdir()
    (base / "c.toml").write_text(f"[limits]\nmax_inflight_upload_bytes = {LIMIT}\n")
    proc = ServerProcess(base / "data", config=str(base / "c.toml")).start()
    yield proc
    proc.stop()
    shutil.rmtree(base, ignore_errors=True)  # about 800 MiB of uploads


def put_streaming(url: str, upload: int, blocks: int) -> tuple[int, str, str, str]:
    """PUT ``blocks`` MiB to a presigned ``url``, one 1 MiB send at a time.

    Returns (status, ETag, MD5 hex, SHA-256 hex of what was sent).
    """
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=300)
    md5, sha = hashlib.md5(), hashlib.sha256()
    try:
        conn.putrequest("PUT", f"{parts.path}?{parts.query}", skip_accept_encoding=True)
        conn.putheader("Content-Length", str(blocks * MiB))
        conn.endheaders()
        for index in range(blocks):
            data = block(upload, index)
            md5.update(data)
            sha.update(data)
            conn.send(data)
        response = conn.getresponse()
        response.read()
        return response.status, (response.getheader("ETag") or "").strip('"'), md5.hexdigest(), sha.hexdigest()
    finally:
        conn.close()


def get_sha256(client: Any, bucket: str, key: str) -> tuple[int, str]:
    body = client.get_object(Bucket=bucket, Key=key)["Body"]
    sha, size = hashlib.sha256(), 0
    for piece in iter(lambda: body.read(MiB), b""):
        sha.update(piece)
        size += len(piece)
    return size, sha.hexdigest()


def test_concurrent_uploads_are_paused_not_failed_and_memory_stays_bounded(
    limited: ServerProcess, tmp_path: Path
) -> None:
    """16 concurrent 48 MiB uploads against an 8 MiB limit: all succeed and read
    back byte-identical, and the server's peak RSS grows by less than the
    limit plus a fixed slack over its peak with a single upload in flight."""
    assert limited.proc is not None
    pid = limited.proc.pid
    client: Any = make_client(limited.endpoint, max_pool_connections=UPLOADS)
    bucket = "inflight"
    client.create_bucket(Bucket=bucket)

    def presign(key: str) -> str:
        url: str = client.generate_presigned_url(
            "put_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=3600
        )
        return url

    # Warm-up: thread pools, allocator arenas and one upload's own buffers.
    status, _, _, _ = put_streaming(presign("warm-up"), 99, SIZE // MiB)
    assert status == 200
    baseline = status_kib(pid, "VmHWM") * 1024

    sampler = RssSampler(pid)
    sampler.start()
    results: dict[int, tuple[int, str, str, str] | BaseException] = {}
    urls = {u: presign(f"big-{u}") for u in range(UPLOADS)}

    def run(u: int) -> None:
        try:
            results[u] = put_streaming(urls[u], u, SIZE // MiB)
        except BaseException as e:  # reported below, per upload
            results[u] = e

    threads = [threading.Thread(target=run, args=(u,)) for u in range(UPLOADS)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    elapsed = time.monotonic() - started
    sampler.stop()
    peak_hwm = status_kib(pid, "VmHWM") * 1024

    failures = {u: r for u, r in results.items() if isinstance(r, BaseException) or r[0] != 200}
    assert len(results) == UPLOADS and not failures, failures
    for u in range(UPLOADS):
        result = results[u]
        assert not isinstance(result, BaseException)
        _status, etag, md5_hex, sha_hex = result
        assert etag == md5_hex, f"upload {u}: ETag {etag} is not the MD5 of what was sent"
        size, stored_sha = get_sha256(client, bucket, f"big-{u}")
        assert (size, stored_sha) == (SIZE, sha_hex), f"upload {u} does not read back byte-identical"

    growth = max(peak_hwm, sampler.peak) - baseline
    print(
        f"\n{UPLOADS} x {SIZE // MiB} MiB in {elapsed:.1f} s, limit {LIMIT / MiB:.0f} MiB: "
        f"HWM before {baseline / MiB:.1f} MiB, after {peak_hwm / MiB:.1f} MiB, "
        f"sampled peak {sampler.peak / MiB:.1f} MiB ({sampler.samples} samples), growth {growth / MiB:.1f} MiB"
    )
    assert sampler.samples > 0
    assert growth <= ALLOWED_GROWTH, (
        f"server memory grew by {growth / MiB:.1f} MiB with a {LIMIT / MiB:.0f} MiB limit "
        f"(allowed {ALLOWED_GROWTH / MiB:.0f} MiB)"
    )
