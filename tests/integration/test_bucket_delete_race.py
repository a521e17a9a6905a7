"""DeleteBucket racing object writes, through the real server and on etcd.

An object acknowledged into a bucket that is then deleted would be
unreachable, so a write and a DeleteBucket never both succeed (core/buckets.py,
"Deleting a bucket"):

* through the real server: a PUT whose headers arrived (bucket resolved)
  before a DeleteBucket, and whose body ends after it, answers 404
  NoSuchBucket, on SQLite and across two servers sharing etcd;
* puts racing a DeleteBucket many times over: either nothing was
  acknowledged and the bucket is gone, or it is refused and everything
  acknowledged reads back;
* the core's deterministic races (tests/unit/test_bucket_delete_race.py) on a
  real etcd member, so both stores answer the same.

The etcd parts are skipped where /usr/bin/etcd is missing, unless
LIGHTNINGSTOR_REQUIRE_TOOLS=1.
"""

from __future__ import annotations

import concurrent.futures
import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import pytest_twisted
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from twisted.internet import reactor
from twisted.python.threadpool import ThreadPool

from lightningstor.authz.grants import GrantStore
from lightningstor.authz.local import LocalAuthorizer
from lightningstor.core.credentials import CredentialStore
from lightningstor.core.service import Core
from lightningstor.interfaces.storage import PluginContext
from lightningstor.metadata.etcd import etcdStoreFactory
from lightningstor.storage.chunks import ChunkManager
from lightningstor.storage.local import LocalFsBackend
from tests.etcd_cluster import EtcdCluster, etcd_binary
from tests.integration.conftest import make_client
from tests.integration.server import ROOT_ACCESS_KEY, ROOT_SECRET_KEY, ServerProcess
from tests.integration.test_etcd_server import config, start_server
from tests.unit.test_bucket_delete_race import (  # noqa: F401  (collected here on etcd)
    HookedStore,
    test_a_cached_bucket_still_writes,
    test_a_deletion_left_pending_does_not_block_writers,
    test_a_deletion_left_pending_is_finished_by_the_next_delete,
    test_a_failed_delete_leaves_the_bucket_writable,
    test_a_fresh_bucket_costs_a_put_nothing_more,
    test_bucket_setting_changes_during_a_put_do_not_fail_it,
    test_complete_multipart_after_the_delete_fails,
    test_complete_multipart_after_the_scan_fails_the_delete,
    test_concurrent_deletes_of_one_bucket,
    test_copy_after_the_delete_fails,
    test_copy_into_the_bucket_after_the_scan_fails_the_delete,
    test_create_upload_after_the_delete_fails,
    test_delete_marker_landing_after_the_scan_fails_the_delete,
    test_many_racing_puts_and_a_delete,
    test_non_empty_bucket_is_refused_without_a_write,
    test_put_landing_after_the_emptiness_scan_fails_the_delete,
    test_put_resolved_before_the_delete_and_committed_after_fails,
    test_the_deletion_mark_is_stored_only_while_set,
    test_upload_created_during_the_delete_is_aborted,
)

CREDS = Credentials(ROOT_ACCESS_KEY, ROOT_SECRET_KEY)


# -- through the real server ---------------------------------------------------------------


class SlowPut:
    """A PutObject sent in two halves on a raw socket: the server resolves the
    bucket when the headers arrive, and commits when the body is complete."""

    def __init__(self, endpoint: str, bucket: str, key: str, body: bytes) -> None:
        url = f"{endpoint}/{bucket}/{key}"
        request = AWSRequest("PUT", url, headers={
            "x-amz-content-sha256": "UNSIGNED-PAYLOAD", "Content-Length": str(len(body)),
        })  # fmt: skip
        SigV4Auth(CREDS, "s3", "us-east-1").add_auth(request)
        parts = urlsplit(url)
        lines = [f"PUT {parts.path} HTTP/1.1", f"Host: {parts.netloc}"]
        lines += [f"{k}: {v}" for k, v in request.headers.items() if k.lower() != "host"]
        self.body = body
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body[: len(body) // 2])
        time.sleep(0.5)  # headers handled: the bucket is resolved, half the body stored

    def finish(self) -> tuple[int, bytes]:
        self.sock.sendall(self.body[len(self.body) // 2:])
        answer = b""
        while b"\r\n\r\n" not in answer or not _complete(answer):
            piece = self.sock.recv(65536)
            if not piece:
                break
            answer += piece
        self.sock.close()
        status = int(answer.split(b" ", 2)[1])
        return status, answer


def _complete(answer: bytes) -> bool:
    head, _, body = answer.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value.strip())
    return True


def _assert_put_after_delete_is_refused(s3_put: Any, endpoint_put: str, s3_delete: Any) -> None:
    name = f"race-{uuid.uuid4().hex[:12]}"
    s3_put.create_bucket(Bucket=name)
    slow = SlowPut(endpoint_put, name, "late", os.urandom(3 * 1024 * 1024))
    s3_delete.delete_bucket(Bucket=name)  # empty: 204
    status, answer = slow.finish()
    assert status == 404 and b"NoSuchBucket" in answer, answer[:600]
    with pytest.raises(ClientError) as e:
        s3_put.head_bucket(Bucket=name)
    assert e.value.response["Error"]["Code"] in ("404", "NoSuchBucket")
    # The name is free and the new bucket is empty (nothing was hidden either).
    s3_put.create_bucket(Bucket=name)
    assert s3_put.list_objects_v2(Bucket=name)["KeyCount"] == 0
    s3_put.delete_bucket(Bucket=name)


def test_put_resolved_before_delete_bucket_answers_no_such_bucket(server: ServerProcess, s3: Any) -> None:
    """Before the fix the PUT answered 200 and its object was lost with the bucket."""
    _assert_put_after_delete_is_refused(s3, server.endpoint, s3)


def test_put_and_delete_bucket_never_both_succeed(server: ServerProcess, s3: Any) -> None:
    """Puts and a DeleteBucket started together, round after round."""
    for _round in range(6):
        name = f"crowd-{uuid.uuid4().hex[:12]}"
        s3.create_bucket(Bucket=name)

        def put(i: int, bucket: str = name) -> str | None:
            try:
                s3.put_object(Bucket=bucket, Key=f"k{i}", Body=os.urandom(2000))
            except ClientError as e:
                assert e.response["Error"]["Code"] == "NoSuchBucket"
                return None
            return f"k{i}"

        def delete(bucket: str = name) -> bool:
            try:
                s3.delete_bucket(Bucket=bucket)
            except ClientError as e:
                assert e.response["Error"]["Code"] == "BucketNotEmpty"
                return False
            return True

        with concurrent.futures.ThreadPoolExecutor(9) as pool:
            puts = [pool.submit(put, i) for i in range(4)]
            deleted = pool.submit(delete)
            puts += [pool.submit(put, i) for i in range(4, 8)]
            acked = [k for k in (f.result() for f in puts) if k is not None]
            was_deleted = deleted.result()
        if was_deleted:
            assert acked == []
            continue
        assert acked, "BucketNotEmpty with nothing stored"
        listed = s3.list_objects_v2(Bucket=name).get("Contents", [])
        assert sorted(o["Key"] for o in listed) == sorted(acked)
        for key in acked:
            s3.delete_object(Bucket=name, Key=key)
        s3.delete_bucket(Bucket=name)


# -- on etcd ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    etcd_binary()
    cluster = EtcdCluster(tmp_path_factory.mktemp("etcd-race")).start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def etcd_pair(etcd: EtcdCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[ServerProcess]]:
    """Two API servers sharing the etcd member."""
    tmp = tmp_path_factory.mktemp("etcd-race-servers")
    cfg = config(tmp / "server.toml", etcd.endpoints, f"race-{uuid.uuid4().hex[:8]}/")
    servers: list[ServerProcess] = []
    try:
        servers.append(start_server(tmp, "a", cfg))
        servers.append(start_server(tmp, "b", cfg))
        yield servers
    finally:
        for s in servers:
            s.stop()


def test_put_on_one_server_delete_on_another_over_etcd(etcd_pair: list[ServerProcess]) -> None:
    """The PUT's server resolved the bucket; the other server deletes it."""
    a, b = etcd_pair
    _assert_put_after_delete_is_refused(make_client(a.endpoint), a.endpoint, make_client(b.endpoint))


@pytest.fixture
def pools() -> Iterator[tuple[ThreadPool, ThreadPool]]:
    io = ThreadPool(1, 4, "race-io")
    cpu = ThreadPool(1, 2, "race-cpu")
    io.start()
    cpu.start()
    yield io, cpu
    io.stop()
    cpu.stop()


@pytest.fixture
def core(etcd: EtcdCluster, tmp_path: Path, pools: tuple[ThreadPool, ThreadPool]) -> Iterator[Core]:
    """A Core over a fresh namespace of the etcd member (the unit tests' races run on it)."""
    context = PluginContext(reactor=reactor, io_pool=None, data_dir=str(tmp_path))
    options = {"chainfire_endpoints": tuple(etcd.endpoints), "namespace": f"r-{uuid.uuid4().hex[:12]}/"}
    store = etcdStoreFactory.create(options, context)
    io, cpu = pools
    backend = LocalFsBackend(str(tmp_path / "chunks"), reactor, io, fsync=False)
    chunks = ChunkManager(backend, reactor, cpu, chunk_size=4096, piece_size=1024, inline_threshold=1024)
    made = Core(store=store, backend=backend, chunks=chunks,
                credentials=CredentialStore(store, b"x" * 43 + b"="),
                authorizer=LocalAuthorizer(GrantStore(store, time.time), time.time, 0),
                clock=time.time)  # fmt: skip
    made.multipart.min_part_size = 1000
    yield made
    pytest_twisted.blockon(store.close())


@pytest.fixture
def hooked(core: Core) -> HookedStore:
    store = HookedStore(core.store)
    core.buckets._store = store
    return store
