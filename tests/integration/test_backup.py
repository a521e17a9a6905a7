"""``lightningstor-admin backup`` against a running server (real processes).

A server (two workers, 1 MiB chunks) holds objects of every kind: inline,
single- and multi-chunk, versions, an SSE-S3 object, a completed and an
open multipart upload.  The backup is taken while a client writes new keys,
overwrites and deletes.  A second server started on the backup directory
then serves every object written before the backup began, byte-identical;
every key written during it is either absent or whole; the open upload
completes; ``scrub`` finds the backup clean and its chunk files are exactly
the ones its records list.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tests.integration.conftest import make_client
from tests.integration.server import ServerProcess

MiB = 1 << 20
CONFIG = "[storage]\nmin_free_bytes = 0\nchunk_size_bytes = 1048576\n"
ADMIN = str(Path(sys.executable).with_name("lightningstor-admin"))


def admin(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ADMIN, *args], capture_output=True, text=True, timeout=300)


def chunk_files(data_dir: Path) -> set[str]:
    return {p.name for p in (data_dir / "data" / "chunks").rglob("*") if p.is_file()}


class Writer:
    """Writes while the backup runs: new keys (never overwritten), overwrites
    of five hot keys, and deletes of the ``gone/`` keys; keeps what each
    write stored once it was acknowledged."""

    def __init__(self, s3: Any) -> None:
        self.s3 = s3
        self.new: dict[str, bytes] = {}
        self.hot: dict[str, list[bytes]] = {f"hot/{i}": [] for i in range(5)}
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        n = 0
        try:
            while not self.stop.is_set():
                body = os.urandom((n % 3) * MiB + 1000 + n)  # inline-sized to multi-chunk
                key = f"during/{n}"
                self.s3.put_object(Bucket="live", Key=key, Body=body)
                self.new[key] = body
                hot = f"hot/{n % 5}"
                body = os.urandom(200_000 + n)
                self.hot[hot].append(body)
                self.s3.put_object(Bucket="live", Key=hot, Body=body)
                if n < 10:
                    self.s3.delete_object(Bucket="live", Key=f"gone/{n}")
                n += 1
        except BaseException as e:  # reported by the test
            self.errors.append(e)


def test_a_backup_taken_during_writes_serves_every_object_and_scrubs_clean(tmp_path: Path) -> None:
    config = tmp_path / "server.toml"
    config.write_text(CONFIG)
    source = tmp_path / "data"
    server = ServerProcess(source, config=str(config), extra_args=["--workers", "2"]).start()
    restored: ServerProcess | None = None
    try:
        s3: Any = make_client(server.endpoint)
        s3.create_bucket(Bucket="live")
        before: dict[str, bytes] = {}
        for i, size in enumerate([5, 60_000, 200_000, MiB, 3 * MiB + 17]):
            before[f"before/{i}"] = os.urandom(size)
            s3.put_object(Bucket="live", Key=f"before/{i}", Body=before[f"before/{i}"])
        for i in range(10):
            s3.put_object(Bucket="live", Key=f"gone/{i}", Body=os.urandom(150_000))
        for i in range(5):
            s3.put_object(Bucket="live", Key=f"hot/{i}", Body=b"first")
        secret = os.urandom(2 * MiB + 5)
        s3.put_object(Bucket="live", Key="sse", Body=secret, ServerSideEncryption="AES256")
        s3.create_bucket(Bucket="versions")
        s3.put_bucket_versioning(Bucket="versions", VersioningConfiguration={"Status": "Enabled"})
        versions = {}
        for body in (os.urandom(1500 * 1024), os.urandom(100)):
            versions[s3.put_object(Bucket="versions", Key="v", Body=body)["VersionId"]] = body
        parts = [os.urandom(5 * MiB), os.urandom(MiB + 3)]
        done = s3.create_multipart_upload(Bucket="live", Key="multipart")["UploadId"]
        etags = [
            s3.upload_part(Bucket="live", Key="multipart", UploadId=done, PartNumber=n + 1, Body=p)["ETag"]
            for n, p in enumerate(parts)
        ]
        s3.complete_multipart_upload(
            Bucket="live", Key="multipart", UploadId=done,
            MultipartUpload={"Parts": [{"PartNumber": n + 1, "ETag": e} for n, e in enumerate(etags)]},
        )  # fmt: skip
        open_upload = s3.create_multipart_upload(Bucket="live", Key="open")["UploadId"]
        open_part = s3.upload_part(Bucket="live", Key="open", UploadId=open_upload, PartNumber=1, Body=parts[0])

        writer = Writer(make_client(server.endpoint))
        writer.thread.start()
        while len(writer.new) < 3 and not writer.errors:
            time.sleep(0.01)
        backup = tmp_path / "backup"
        result = admin("backup", str(backup), "--config", str(config), "--data-dir", str(source))
        writer.stop.set()
        writer.thread.join(60)
        assert not writer.errors, writer.errors
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(f"backup in {backup}: metadata as of "), result.stdout
        assert (backup / "BACKUP.json").is_file() and (backup / "master.key").is_file()
        assert oct((backup / "metadata.db").stat().st_mode & 0o777) == "0o600"
        # Written before the backup began or during it: the backup missed none.
        assert len(writer.new) > 3

        scrubbed = admin("scrub", "--config", str(config), "--data-dir", str(backup))
        assert scrubbed.returncode == 0, scrubbed.stdout + scrubbed.stderr
        assert "problems=0" in scrubbed.stdout

        restored = ServerProcess(backup, config=str(config)).start()
        r3: Any = make_client(restored.endpoint)
        for key, body in before.items():
            assert r3.get_object(Bucket="live", Key=key)["Body"].read() == body, key
        assert r3.get_object(Bucket="live", Key="sse")["Body"].read() == secret
        for version_id, body in versions.items():
            assert r3.get_object(Bucket="versions", Key="v", VersionId=version_id)["Body"].read() == body
        got = r3.get_object(Bucket="live", Key="multipart")["Body"].read()
        assert hashlib.md5(got).digest() == hashlib.md5(b"".join(parts)).digest()
        listed = {o["Key"] for page in r3.get_paginator("list_objects_v2").paginate(Bucket="live") for o in page["Contents"]}
        # Keys written during the backup: each there whole or not at all;
        # the first three were acknowledged before it began.
        for n, (key, body) in enumerate(writer.new.items()):
            if n < 3:
                assert key in listed, key
            if key in listed:
                assert r3.get_object(Bucket="live", Key=key)["Body"].read() == body, key
        for key, bodies in writer.hot.items():
            assert r3.get_object(Bucket="live", Key=key)["Body"].read() in [b"first", *bodies], key
        for i in range(10):
            if f"gone/{i}" in listed:
                assert len(r3.get_object(Bucket="live", Key=f"gone/{i}")["Body"].read()) == 150_000
        # The open upload goes on from the backup.
        assert [p["ETag"] for p in r3.list_parts(Bucket="live", Key="open", UploadId=open_upload)["Parts"]] == [
            open_part["ETag"]
        ]
        r3.complete_multipart_upload(
            Bucket="live", Key="open", UploadId=open_upload,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": open_part["ETag"]}]},
        )  # fmt: skip
        assert r3.get_object(Bucket="live", Key="open")["Body"].read() == parts[0]
    finally:
        server.stop()
        if restored is not None:
            restored.stop()


def test_a_backup_of_a_source_that_lost_a_chunk_fails_and_leaves_nothing(tmp_path: Path) -> None:
    """A chunk a record lists is missing from the source (a lost file):
    the backup says so and exits 1, keeping nothing; the directory it was
    given (empty) stays, empty.  A non-empty directory is refused (exit 2)
    without a file touched; so is a store other than SQLite + local."""
    config = tmp_path / "server.toml"
    config.write_text(CONFIG)
    source = tmp_path / "data"
    server = ServerProcess(source, config=str(config)).start()
    try:
        s3: Any = make_client(server.endpoint)
        s3.create_bucket(Bucket="lost")
        s3.put_object(Bucket="lost", Key="whole", Body=os.urandom(MiB + 1))
        before = chunk_files(source)
        s3.put_object(Bucket="lost", Key="broken", Body=os.urandom(100_000))
        (lost,) = chunk_files(source) - before
        next((source / "data" / "chunks").rglob(lost)).unlink()

        empty = tmp_path / "empty"
        empty.mkdir()
        result = admin("backup", str(empty), "--config", str(config), "--data-dir", str(source))
        assert result.returncode == 1, result.stderr
        assert "1 chunks that records of the snapshot list are missing" in result.stderr
        assert lost in result.stderr
        assert empty.is_dir() and list(empty.iterdir()) == []

        busy = tmp_path / "busy"
        busy.mkdir()
        (busy / "keep").write_text("mine")
        result = admin("backup", str(busy), "--config", str(config), "--data-dir", str(source))
        assert result.returncode == 2 and "is not empty" in result.stderr
        assert [p.name for p in busy.iterdir()] == ["keep"]

        etcd = tmp_path / "etcd.toml"
        etcd.write_text(CONFIG + '[metadata]\nbackend = "etcd"\n[metadata.etcd]\nendpoints = ["127.0.0.1:1"]\n')
        result = admin("backup", str(tmp_path / "other"), "--config", str(etcd), "--data-dir", str(source))
        assert result.returncode == 2 and "etcdctl snapshot save" in result.stderr
        assert not (tmp_path / "other").exists()
    finally:
        server.stop()


def test_backups_succeed_while_freed_chunks_are_deleted_at_once(tmp_path: Path) -> None:
    """``storage.free_delay_seconds = 0`` deletes a chunk as soon as an
    overwrite frees it, so one written after the first copy and overwritten
    just after the snapshot can be gone before the backup opens it: the
    backup then takes the snapshot again.  Under steady overwrites of
    multi-chunk objects, three backups in a row succeed and scrub clean
    (before: 7 of 8 failed, saying the source had lost chunks)."""
    config = tmp_path / "server.toml"
    config.write_text(CONFIG + "free_delay_seconds = 0\n")
    source = tmp_path / "data"
    server = ServerProcess(source, config=str(config), extra_args=["--workers", "2"]).start()
    stop = threading.Event()
    errors: list[BaseException] = []

    def overwrite(n: int) -> None:
        s3: Any = make_client(server.endpoint)
        try:
            while not stop.is_set():
                s3.put_object(Bucket="churn", Key=f"k{n}", Body=os.urandom(3 * MiB))
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=overwrite, args=(n,), daemon=True) for n in range(3)]
    try:
        s3: Any = make_client(server.endpoint)
        s3.create_bucket(Bucket="churn")
        for i in range(8):  # 128 chunk files for the first copy to go through
            s3.put_object(Bucket="churn", Key=f"base{i}", Body=os.urandom(16 * MiB))
        for t in threads:
            t.start()
        retried = 0
        for n in range(3):
            backup = tmp_path / f"backup{n}"
            result = admin("backup", str(backup), "--config", str(config), "--data-dir", str(source))
            assert result.returncode == 0, result.stderr
            retried += result.stderr.count("taking it again")
            scrubbed = admin("scrub", "--config", str(config), "--data-dir", str(backup))
            assert scrubbed.returncode == 0 and "problems=0" in scrubbed.stdout, scrubbed.stdout + scrubbed.stderr
        print(f"snapshots taken again: {retried}")
    finally:
        stop.set()
        for t in threads:
            t.join(60)
        server.stop()
    assert not errors, errors
