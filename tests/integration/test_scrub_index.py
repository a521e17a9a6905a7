"""Scrub re-creates lost chunk-index entries, against the real single-node
server (SQLite + local storage) and ``lightningstor-admin``.

The orphan collector decides from the chunk index: a chunk without an
entry is unreferenced to it, so a live object's chunk whose entry was lost
(an older bug, a manual edit) would be deleted by the next collection.
Here every entry is deleted from SQLite behind the server's back; the scrub
reports each as an ``index`` problem and writes it again (the hint a commit
writes: object key, plus upload and part for a part), so that a collection
afterwards deletes nothing a current object, a noncurrent version or an
open upload's part still needs.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.integration.conftest import make_client
from tests.integration.server import ServerProcess

KiB = 1 << 10
MiB = 1 << 20
CONFIG = "[storage]\nchunk_size_bytes = 1048576\ninline_threshold_bytes = 1024\n"
CHUNKS = (b"lightningstor/chunks/", b"lightningstor/chunks0")


def _entries(data_dir: Path) -> dict[str, dict[str, Any]]:
    conn = sqlite3.connect(f"file:{data_dir / 'metadata.db'}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT key, value FROM kv WHERE key >= ? AND key < ?", CHUNKS).fetchall()
    finally:
        conn.close()
    return {bytes(k)[len(CHUNKS[0]):].decode(): json.loads(v) for k, v in rows}


def _drop_entries(data_dir: Path) -> None:
    conn = sqlite3.connect(str(data_dir / "metadata.db"))
    try:
        with conn:
            conn.execute("DELETE FROM kv WHERE key >= ? AND key < ?", CHUNKS)
    finally:
        conn.close()


def _admin(config: Path, data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lightningstor.admin", *args, "--config", str(config), "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_scrub_recreates_missing_index_entries_so_collect_keeps_live_chunks(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    config = tmp_path / "c.toml"
    config.write_text(CONFIG)
    server = ServerProcess(data, config=str(config)).start()
    try:
        s3: Any = make_client(server.endpoint)
        s3.create_bucket(Bucket="idx")
        s3.put_bucket_versioning(Bucket="idx", VersioningConfiguration={"Status": "Enabled"})
        body = os.urandom(MiB + 300 * KiB)  # two chunks
        s3.put_object(Bucket="idx", Key="obj", Body=body)
        old = os.urandom(20 * KiB)
        first = s3.put_object(Bucket="idx", Key="ver", Body=old)["VersionId"]
        s3.put_object(Bucket="idx", Key="ver", Body=os.urandom(20 * KiB))  # "old" is noncurrent now
        upload = s3.create_multipart_upload(Bucket="idx", Key="mp")["UploadId"]
        part = os.urandom(30 * KiB)
        etag = s3.upload_part(Bucket="idx", Key="mp", UploadId=upload, PartNumber=1, Body=part)["ETag"]
    finally:
        server.stop()
    written = _entries(data)
    assert len(written) == 5  # 2 + 1 + 1 + 1 chunks
    _drop_entries(data)

    result = _admin(config, data, "scrub")
    assert result.returncode == 3, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert sorted(line.split("\t")[1] for line in lines if line.startswith("index\t")) == sorted(written)
    assert "index_entries_recreated=5" in lines[-1], lines[-1]
    recreated = _entries(data)
    assert {c: {k: v for k, v in h.items() if k != "t"} for c, h in recreated.items()} == {
        c: {k: v for k, v in h.items() if k != "t"} for c, h in written.items()
    }

    again = _admin(config, data, "scrub")
    assert again.returncode == 0, again.stdout + again.stderr
    collected = _admin(config, data, "collect", "--grace-seconds", "0", "--unsafe-short-grace")
    assert collected.returncode == 0, collected.stdout + collected.stderr

    server = ServerProcess(data, config=str(config)).start()
    try:
        s3 = make_client(server.endpoint)
        assert s3.get_object(Bucket="idx", Key="obj")["Body"].read() == body
        assert s3.get_object(Bucket="idx", Key="ver", VersionId=first)["Body"].read() == old
        s3.complete_multipart_upload(Bucket="idx", Key="mp", UploadId=upload,
                                     MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
        assert s3.get_object(Bucket="idx", Key="mp")["Body"].read() == part
    finally:
        server.stop()
