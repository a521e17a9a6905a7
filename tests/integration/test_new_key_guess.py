"""Commits that assume their key is new (core/newkeys.py), on real servers.

A wrong guess costs a failed transaction and a second attempt that reads
the key; it must never change what is stored.  These tests make servers
guess wrong many times (overwrites of keys no worker holds in memory,
interleaved with new keys so that the share of new keys stays above the
threshold) and then compare, per bucket, the usage the admin tool reports
with what ListObjectVersions shows, and read every version back whole:

* two worker processes on one SQLite database (``--workers 2``); a
  multipart completion (a range delete, which empties every worker's read
  cache) before each series of overwrites makes their keys unread;
* two servers on one etcd member: the etcd store has no read cache, so
  every overwrite that follows a few new keys is guessed.

Each runs PutObject, CopyObject and PostObject onto existing keys, deletes,
multipart completions, in an unversioned bucket, a versioned one and one
whose versioning was suspended (null versions beside real ones), one
request at a time (the guess is only made for lone commits) and then in
concurrent bursts on the same keys.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import make_client
from tests.integration.server import ServerProcess, start_workers
from tests.integration.test_post_object import stream_post

KiB = 1024
SIZES = [1 * KiB, 200 * KiB, 2600 * KiB]  # inline; one chunk; three 1 MiB chunks


def _body(size: int) -> bytes:
    """Random bytes followed by their SHA-256: a torn or mixed body fails the check."""
    payload = os.urandom(size)
    return payload + hashlib.sha256(payload).digest()


def _intact(body: bytes) -> bool:
    return len(body) >= 32 and hashlib.sha256(body[:-32]).digest() == body[-32:]


def _usage(server: ServerProcess, bucket: str, config: str | None = None) -> dict[str, Any]:
    """``lightningstor-admin quota show --bucket``'s usage (a separate process)."""
    exe = str(Path(sys.executable).with_name("lightningstor-admin"))
    where = ["--config", config] if config else ["--data-dir", str(server.data_dir)]
    done = subprocess.run([exe, "quota", "show", "--org", "default", "--bucket", bucket, "--json", *where],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["usage"]  # type: ignore[no-any-return]


def _versions(s3: Any, bucket: str) -> list[dict[str, Any]]:
    """Every version and delete marker (``Marker`` True for those)."""
    found: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"Bucket": bucket}
    while True:
        page = s3.list_object_versions(**kwargs)
        found += [dict(v, Marker=False) for v in page.get("Versions", [])]
        found += [dict(m, Marker=True) for m in page.get("DeleteMarkers", [])]
        if not page.get("IsTruncated"):
            return found
        kwargs.update(KeyMarker=page["NextKeyMarker"], VersionIdMarker=page["NextVersionIdMarker"])


def _check_bucket(s3: Any, server: ServerProcess, bucket: str, config: str | None = None) -> int:
    """Usage equals the versions listed, and every version reads back whole;
    the number of versions."""
    versions = [v for v in _versions(s3, bucket) if not v["Marker"]]
    # The admin tool's process (about a second) runs while the versions
    # are read back: reads change no usage.
    with ThreadPoolExecutor(1) as pool:
        asked = pool.submit(_usage, server, bucket, config)
        for v in versions:
            body = s3.get_object(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"])["Body"].read()
            assert len(body) == v["Size"] and _intact(body), (bucket, v["Key"], v["VersionId"])
        usage = asked.result()
    assert (usage["total_size_bytes"], usage["object_count"]) == (
        sum(v["Size"] for v in versions), len(versions)), (bucket, usage)  # fmt: skip
    return len(versions)


class _Workload:
    """Writes through ``clients`` (round robin) and remembers what each key
    of the sequential part must hold."""

    def __init__(self, clients: list[Any], endpoints: list[str], bucket: str, seed: int, sizes: list[int]) -> None:
        self.clients = clients
        self.endpoints = endpoints
        self.bucket = bucket
        self.rng = random.Random(seed)
        self.sizes = sizes
        self.turn = 0
        self.expected: dict[str, bytes | None] = {}

    def client(self) -> tuple[Any, str]:
        self.turn += 1
        i = self.turn % len(self.clients)
        return self.clients[i], self.endpoints[i]

    def put(self, key: str) -> None:
        body = _body(self.rng.choice(self.sizes))
        self.client()[0].put_object(Bucket=self.bucket, Key=key, Body=body)
        self.expected[key] = body

    def copy(self, source: str, key: str) -> None:
        self.client()[0].copy_object(Bucket=self.bucket, Key=key, CopySource={"Bucket": self.bucket, "Key": source})
        self.expected[key] = self.expected[source]

    def post(self, key: str) -> None:
        s3, endpoint = self.client()
        body = _body(self.rng.choice(self.sizes))
        form = s3.generate_presigned_post(self.bucket, key, ExpiresIn=600)
        response = stream_post(f"{endpoint}/{self.bucket}", form["fields"], [body])
        assert response.status == 204, response.body
        self.expected[key] = body

    def delete(self, key: str) -> None:
        self.client()[0].delete_object(Bucket=self.bucket, Key=key)
        self.expected[key] = None

    def multipart(self, key: str) -> None:
        """A one-part upload completed: its range delete of the part rows
        leaves no entry of any worker's read cache valid.  Through the
        first client, which the checks read through: a part is a chunk on
        its server's disk, however small."""
        s3 = self.clients[0]
        body = _body(self.rng.choice(self.sizes))
        upload = s3.create_multipart_upload(Bucket=self.bucket, Key=key)
        part = s3.upload_part(Bucket=self.bucket, Key=key, UploadId=upload["UploadId"], PartNumber=1, Body=body)
        s3.complete_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload["UploadId"],
                                     MultipartUpload={"Parts": [{"ETag": part["ETag"], "PartNumber": 1}]})  # fmt: skip
        self.expected[key] = body

    def sequential(self, rounds: int) -> None:
        """Lone requests: per round, a completion, then new keys and
        overwrites (put, copy, post) of older keys, two new to one old."""
        old = [f"k{i}" for i in range(4)]
        for key in old:
            self.put(key)
        for r in range(rounds):
            self.multipart("mp")
            for i in range(6):
                self.put(f"new/{r}/{i}/a")
                self.put(f"new/{r}/{i}/b")
                key = old[(r + i) % len(old)]
                what = self.rng.random()
                if what < 0.5:
                    self.put(key)
                elif what < 0.7:
                    self.copy(f"new/{r}/{i}/a", key)
                elif what < 0.85:
                    self.post(key)
                else:
                    self.delete(key)
        s3 = self.clients[0]  # it holds every chunk (the etcd servers' disks are their own)
        for key, body in self.expected.items():
            if body is None:
                assert s3.list_objects_v2(Bucket=self.bucket, Prefix=key).get("KeyCount", 0) in (0, 1)
                continue
            got = s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
            assert got == body, key

    def bursts(self, count: int) -> None:
        """Sixteen writers at a time on four keys (puts, copies, deletes)."""

        def one(n: int) -> None:
            s3 = self.clients[n % len(self.clients)]
            key = f"k{n % 4}"
            if n % 7 == 3:
                s3.delete_object(Bucket=self.bucket, Key=key)
            elif n % 5 == 1:
                s3.copy_object(Bucket=self.bucket, Key=key, CopySource={"Bucket": self.bucket, "Key": "new/0/0/a"})
            else:
                s3.put_object(Bucket=self.bucket, Key=key, Body=_body(random.choice(self.sizes)))

        with ThreadPoolExecutor(16) as pool:
            for burst in range(count):
                list(pool.map(one, range(burst * 16, burst * 16 + 16)))


def _buckets(s3: Any, tag: str) -> list[str]:
    """An unversioned bucket, a versioned one, and one suspended after versions were written."""
    names = [f"g{tag}-{kind}-{uuid.uuid4().hex[:8]}" for kind in ("plain", "versioned", "suspended")]
    for name in names:
        s3.create_bucket(Bucket=name)
    for name in names[1:]:
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return names


# -- two workers on SQLite --------------------------------------------------------


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    base = tmp_path_factory.mktemp("guess-workers")
    proc = start_workers(base, "[storage]\nchunk_size_bytes = 1048576\nfree_delay_seconds = 0\n")
    yield proc
    proc.stop()
    shutil.rmtree(base, ignore_errors=True)


def test_wrong_guesses_in_two_workers_store_what_reads_would(workers: ServerProcess) -> None:
    """Per bucket kind: the sequential part leaves each key holding its
    last write; after it and after the concurrent bursts, usage equals the
    listed versions and every version reads back whole."""
    clients = [make_client(workers.endpoint, max_pool_connections=32) for _ in range(2)]
    plain, versioned, suspended = _buckets(clients[0], "w")
    for n, bucket in enumerate((plain, versioned, suspended)):
        load = _Workload(clients, [workers.endpoint] * 2, bucket, n, SIZES)
        if bucket == suspended:
            load.sequential(1)
            clients[0].put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
        load.sequential(4)
        _check_bucket(clients[0], workers, bucket)
        load.bursts(4)
        _check_bucket(clients[0], workers, bucket)


# -- two servers on etcd ------------------------------------------------------------


@pytest.fixture(scope="module")
def etcd_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[ServerProcess], str]]:
    """Two API servers over one etcd member, and their configuration file."""
    from tests.integration.test_etcd_server import two_servers

    with two_servers(tmp_path_factory.mktemp("guess-etcd"), "guess/") as pair:
        yield pair


def test_wrong_guesses_on_etcd_store_what_reads_would(etcd_pair: tuple[list[ServerProcess], str]) -> None:
    """As above on two servers sharing etcd metadata.  Each keeps chunks on
    its own disk, so only objects small enough to live in their record
    (inline) are written: both servers can read every version."""
    servers, cfg = etcd_pair
    clients = [make_client(s.endpoint) for s in servers]
    endpoints = [s.endpoint for s in servers]
    plain, versioned, suspended = _buckets(clients[0], "e")
    for n, bucket in enumerate((plain, versioned, suspended)):
        load = _Workload(clients, endpoints, bucket, 10 + n, [100, 1 * KiB, 20 * KiB])
        if bucket == suspended:
            load.sequential(1)
            clients[0].put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
        load.sequential(4)
        _check_bucket(clients[0], servers[0], bucket, cfg)
        load.bursts(3)
        _check_bucket(clients[0], servers[0], bucket, cfg)
