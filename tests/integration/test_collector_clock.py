"""The orphan collector never deletes a chunk of a write in flight (real server).

The single-node server (SQLite + local backend, 1 MiB chunks) takes a PUT
whose body arrives slowly.  While it is in flight:

* a collector pass runs in a separate process, opened on the same data the
  way ``lightningstor-admin collect`` opens it, with a clock 25 h ahead of
  the chunk files' times (as if the server holding the ``collector`` lease,
  or a storage node, had a wrong clock, or the PUT had run for 25 h).  It
  deletes nothing; the PUT answers 200 and reads back whole;
* with ``limits.max_write_seconds`` short, a body still arriving after it
  fails with ``400 RequestTimeout`` and leaves no chunk behind, instead of
  committing chunks the collector may already have deleted.

Genuine orphans (the chunks of a PUT cut off by SIGKILL) are still collected
by ``lightningstor-admin collect``: it looks twice, ``--grace-seconds``
apart on its own clock, and deletes what stayed unreferenced.
"""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from botocore.exceptions import ClientError

from tests.integration.conftest import make_client
from tests.integration.server import ServerProcess

MiB = 1 << 20
CONFIG = """\
[storage]
chunk_size_bytes = 1048576
inline_threshold_bytes = 1024
"""
SKEW = 25 * 3600


def chunk_files(data: Path) -> set[str]:
    """The chunk files of the local backend (``data/chunks/xx/yy/id``)."""
    root = data / "data" / "chunks"
    return {name for _dirs, _sub, files in os.walk(root) for name in files}


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


class SlowUpload:
    """A presigned PUT (object or part) whose body is sent in two halves."""

    def __init__(self, s3: Any, method: str, params: dict[str, Any], body: bytes) -> None:
        url = urlsplit(s3.generate_presigned_url(method, Params=params, ExpiresIn=600))
        self.body = body
        self.conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
        self.conn.putrequest("PUT", f"{url.path}?{url.query}", skip_accept_encoding=True)
        self.conn.putheader("Content-Length", str(len(body)))
        self.conn.endheaders()

    def send_first(self, n: int) -> None:
        self.conn.send(self.body[:n])
        self.sent = n

    def finish(self) -> tuple[int, bytes]:
        try:
            self.conn.send(self.body[self.sent :])
        except OSError:
            pass  # the server answered early and closed: read its answer
        resp = self.conn.getresponse()
        out = resp.status, resp.read()
        self.conn.close()
        return out


def config_file(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "server.toml"
    path.write_text(CONFIG + extra)
    return path


def skewed_collect(config: Path, data: Path, skew: float) -> str:
    """One ``collect_orphans`` pass (default grace, 24 h) in a separate
    process whose clock reads ``skew`` seconds ahead of real time."""
    code = textwrap.dedent(
        f"""
        import argparse, sys, time
        from lightningstor import admin
        from lightningstor.core.collector import collect_orphans

        async def work(store, backend):
            n = await collect_orphans(store, backend, time.time() + {skew!r}, 24 * 3600.0)
            print("deleted", n)
            return 0

        args = argparse.Namespace(config={str(config)!r}, data_dir={str(data)!r})
        sys.exit(admin._with_stores(args, sys.stderr, work))
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    return done.stdout.strip()


@pytest.fixture
def data(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    return d


def test_a_pass_with_a_clock_25h_ahead_keeps_a_put_in_flight(tmp_path: Path, data: Path) -> None:
    """The first 2 MiB of a 3 MiB PUT arrive and its first chunk is stored
    (the server may still buffer part of the second); a collector
    pass with its clock 25 h ahead runs; the rest of the body follows.  The
    PUT answers 200, reads back byte-identical, and its chunks are on disk."""
    config = config_file(tmp_path)
    server = ServerProcess(data, config=str(config)).start()
    try:
        s3: Any = make_client(server.endpoint)
        s3.create_bucket(Bucket="bkt")
        body = os.urandom(3 * MiB)
        upload = SlowUpload(s3, "put_object", {"Bucket": "bkt", "Key": "inflight"}, body)
        upload.send_first(2 * MiB + 1)
        wait_for(lambda: len(chunk_files(data)) >= 1)
        assert skewed_collect(config, data, SKEW) == "deleted 0"
        status, answer = upload.finish()
        assert status == 200, answer
        got = s3.get_object(Bucket="bkt", Key="inflight")["Body"].read()
        assert got == body
        assert len(chunk_files(data)) == 3
    finally:
        server.stop()


@pytest.mark.parametrize("kind", ["object", "part"])
def test_a_write_longer_than_max_write_seconds_fails_and_leaves_nothing(
    tmp_path: Path, data: Path, kind: str
) -> None:
    """With ``limits.max_write_seconds = 2`` a PUT (or UploadPart) body
    whose first chunk was stored 3 s before the rest arrives gets ``400
    RequestTimeout``; nothing is committed and no chunk file is left.  A
    prompt write of the same size succeeds."""
    config = config_file(tmp_path, "\n[limits]\nmax_write_seconds = 2\n")
    server = ServerProcess(data, config=str(config)).start()
    try:
        s3: Any = make_client(server.endpoint)
        s3.create_bucket(Bucket="bkt")
        body = os.urandom(3 * MiB)
        if kind == "object":
            method, params = "put_object", {"Bucket": "bkt", "Key": "slow"}
        else:
            upload_id = s3.create_multipart_upload(Bucket="bkt", Key="slow")["UploadId"]
            method = "upload_part"
            params = {"Bucket": "bkt", "Key": "slow", "UploadId": upload_id, "PartNumber": 1}
        upload = SlowUpload(s3, method, params, body)
        upload.send_first(2 * MiB + 1)
        wait_for(lambda: len(chunk_files(data)) >= 1)
        time.sleep(3)
        status, answer = upload.finish()
        assert status == 400, answer
        assert b"<Code>RequestTimeout</Code>" in answer
        wait_for(lambda: chunk_files(data) == set())
        if kind == "object":
            with pytest.raises(ClientError) as caught:
                s3.head_object(Bucket="bkt", Key="slow")
            assert caught.value.response["Error"]["Code"] == "404"
            s3.put_object(Bucket="bkt", Key="prompt", Body=body)
            assert s3.get_object(Bucket="bkt", Key="prompt")["Body"].read() == body
        else:
            assert s3.list_parts(Bucket="bkt", Key="slow", UploadId=upload_id).get("Parts", []) == []
            s3.upload_part(Bucket="bkt", Key="slow", UploadId=upload_id, PartNumber=1, Body=body)
            assert len(s3.list_parts(Bucket="bkt", Key="slow", UploadId=upload_id)["Parts"]) == 1
    finally:
        server.stop()


def test_admin_collect_deletes_orphans_after_looking_twice(tmp_path: Path, data: Path) -> None:
    """A SIGKILL cuts a PUT off after one or two of its chunks were stored: they
    are orphans.  ``lightningstor-admin collect --grace-seconds 2
    --unsafe-short-grace`` (the server is stopped: no write is in flight)
    notes them, looks again 2 s later on its own clock and deletes them; a
    committed object's chunks stay and it reads back after a restart."""
    config = config_file(tmp_path)
    server = ServerProcess(data, config=str(config)).start()
    try:
        s3: Any = make_client(server.endpoint)
        s3.create_bucket(Bucket="bkt")
        kept = os.urandom(2 * MiB)
        s3.put_object(Bucket="bkt", Key="kept", Body=kept)
        live = chunk_files(data)
        upload = SlowUpload(s3, "put_object", {"Bucket": "bkt", "Key": "cut"}, os.urandom(3 * MiB))
        upload.send_first(2 * MiB + 1)
        wait_for(lambda: len(chunk_files(data)) > len(live))
        server.kill()
        upload.conn.close()
        orphans = chunk_files(data) - live
        assert orphans
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "lightningstor.admin", "collect", "--grace-seconds", "2",
             "--unsafe-short-grace", "--config", str(config), "--data-dir", str(data)],
            capture_output=True, text=True, timeout=120, check=True,
        )  # fmt: skip
        assert time.monotonic() - started >= 2
        assert f"{len(orphans)} unreferenced chunks, entries or manifests; looking again every 0.5 s until 2 s have passed" in done.stdout
        assert f"collected {len(orphans)} orphaned chunks" in done.stdout
        assert chunk_files(data) == live
        server.start()
        s3 = make_client(server.endpoint)
        assert s3.get_object(Bucket="bkt", Key="kept")["Body"].read() == kept
    finally:
        server.stop()
