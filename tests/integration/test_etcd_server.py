"""The real server on the etcd metadata store, driven with boto3.

Two ``twistd lightningstor`` processes share one etcd member (the config's
``[metadata] backend = "etcd"``): what one writes the other reads at once.
Each keeps chunks on its own disk, so the cross-server reads use objects
small enough to live inline in their metadata record.  The last test loses
etcd under a running server (503, then recovery).

Skipped where /usr/bin/etcd is missing, unless LIGHTNINGSTOR_REQUIRE_TOOLS=1.
"""

from __future__ import annotations

import concurrent.futures
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.etcd_cluster import EtcdCluster, etcd_binary, raw_keys
from tests.integration.conftest import make_client
from tests.integration.server import ServerProcess


def config(
    path: Path, endpoints: list[str], namespace: str, *, storage: str = "", metadata: str = "", **etcd_options: float
) -> str:
    """Servers sharing etcd must share the master key that encrypts credentials."""
    lines = [
        storage,
        "[security]",
        f'master_key_file = "{path.parent / "master.key"}"',
        "[metadata]",
        'backend = "etcd"',
        "chainfire_endpoints = [" + ", ".join(f'"{e}"' for e in endpoints) + "]",
        metadata,
        "[metadata.etcd]",
        f'namespace = "{namespace}"',
        *(f"{k} = {v}" for k, v in etcd_options.items()),
    ]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def start_server(tmp: Path, name: str, cfg: str) -> ServerProcess:
    data = tmp / name / "data"
    data.mkdir(parents=True)
    return ServerProcess(data, config=cfg).start()


@contextmanager
def two_servers(tmp: Path, namespace: str) -> Iterator[tuple[list[ServerProcess], str]]:
    """Two API servers over one etcd member, and their configuration file."""
    etcd_binary()
    etcd = EtcdCluster(tmp / "etcd").start()
    cfg = config(tmp / "server.toml", etcd.endpoints, namespace)
    servers: list[ServerProcess] = []
    try:
        servers.append(start_server(tmp, "a", cfg))
        servers.append(start_server(tmp, "b", cfg))
        yield servers, cfg
    finally:
        for s in servers:
            s.stop()
        etcd.stop()


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any]]:
    """Two API servers over one etcd member; boto3 clients for each."""
    with two_servers(tmp_path_factory.mktemp("etcd-server"), "e2e/") as (servers, _cfg):
        yield make_client(servers[0].endpoint), make_client(servers[1].endpoint)


def test_buckets_objects_and_listing(pair: tuple[Any, Any]) -> None:
    """Buckets, put/get (inline and chunked), ranged get, listing with a
    delimiter and pagination, delete: all on etcd metadata."""
    s3, _ = pair
    bucket = f"e-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    assert bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    big = os.urandom(9 * 1024 * 1024 + 5)  # two chunks on the local backend
    s3.put_object(Bucket=bucket, Key="dir/big.bin", Body=big)
    for i in range(12):
        s3.put_object(Bucket=bucket, Key=f"dir/small-{i:02d}", Body=b"x%d" % i)
    s3.put_object(Bucket=bucket, Key="top", Body=b"t")
    assert s3.get_object(Bucket=bucket, Key="dir/big.bin")["Body"].read() == big
    ranged = s3.get_object(Bucket=bucket, Key="dir/big.bin", Range="bytes=8388600-8388620")
    assert ranged["Body"].read() == big[8388600:8388621]
    top = s3.list_objects_v2(Bucket=bucket, Delimiter="/")
    assert [p["Prefix"] for p in top["CommonPrefixes"]] == ["dir/"]
    assert [o["Key"] for o in top["Contents"]] == ["top"]
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="dir/", PaginationConfig={"PageSize": 5}):
        keys += [o["Key"] for o in page["Contents"]]
    assert keys == ["dir/big.bin", *(f"dir/small-{i:02d}" for i in range(12))]
    for key in [*keys, "top"]:
        s3.delete_object(Bucket=bucket, Key=key)
    s3.delete_bucket(Bucket=bucket)
    assert bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_versioning(pair: tuple[Any, Any]) -> None:
    """With versioning on, overwrites keep versions and a delete leaves a
    marker; old versions stay readable by id."""
    s3, _ = pair
    bucket = f"v-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    v1 = s3.put_object(Bucket=bucket, Key="k", Body=b"one")["VersionId"]
    v2 = s3.put_object(Bucket=bucket, Key="k", Body=b"two")["VersionId"]
    assert v1 != v2
    marker = s3.delete_object(Bucket=bucket, Key="k")
    assert marker["DeleteMarker"] is True
    with pytest.raises(ClientError) as info:
        s3.get_object(Bucket=bucket, Key="k")
    assert info.value.response["Error"]["Code"] == "NoSuchKey"
    assert s3.get_object(Bucket=bucket, Key="k", VersionId=v1)["Body"].read() == b"one"
    listed = s3.list_object_versions(Bucket=bucket)
    assert [v["VersionId"] for v in listed["Versions"]] == [v2, v1]
    assert [m["VersionId"] for m in listed["DeleteMarkers"]] == [marker["VersionId"]]


def test_two_servers_see_each_other_at_once(pair: tuple[Any, Any]) -> None:
    """A bucket and object written through one server are read through the
    other immediately; racing writes of one key through both servers leave
    exactly one version per acknowledged PUT (nothing torn or lost)."""
    a, b = pair
    bucket = f"x-{uuid.uuid4().hex[:12]}"
    a.create_bucket(Bucket=bucket)
    a.put_object(Bucket=bucket, Key="hello", Body=b"from a")
    assert b.get_object(Bucket=bucket, Key="hello")["Body"].read() == b"from a"
    b.put_object(Bucket=bucket, Key="hello", Body=b"from b")
    assert a.get_object(Bucket=bucket, Key="hello")["Body"].read() == b"from b"

    a.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})

    def put(client: Any, n: int) -> str:
        return str(client.put_object(Bucket=bucket, Key="race", Body=b"%d" % n)["VersionId"])

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(lambda n: put(a if n % 2 else b, n), range(16)))
    versions = b.list_object_versions(Bucket=bucket, Prefix="race")["Versions"]
    assert sorted(v["VersionId"] for v in versions) == sorted(ids)
    latest = [v for v in versions if v["IsLatest"]]
    assert len(latest) == 1
    body = a.get_object(Bucket=bucket, Key="race")["Body"].read()
    assert body == b.get_object(Bucket=bucket, Key="race", VersionId=latest[0]["VersionId"])["Body"].read()


def test_losing_etcd_answers_503_then_recovers(tmp_path: Path) -> None:
    """With etcd gone, S3 calls fail fast with 503 (ServiceUnavailable), and
    work again once etcd is back; what was acknowledged before is still there."""
    etcd_binary()
    etcd = EtcdCluster(tmp_path / "etcd").start()
    cfg = config(tmp_path / "server.toml", etcd.endpoints, "outage/", timeout=1.5, request_timeout=0.5)
    server = start_server(tmp_path, "s", cfg)
    try:
        s3 = make_client(server.endpoint)
        s3.create_bucket(Bucket="outage")
        s3.put_object(Bucket="outage", Key="before", Body=b"kept")
        [member] = etcd.members
        member.kill()
        started = time.monotonic()
        with pytest.raises(ClientError) as info:
            s3.put_object(Bucket="outage", Key="during", Body=b"x")
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        assert time.monotonic() - started < 10
        etcd.restart(member)
        etcd.wait_healthy()
        s3.put_object(Bucket="outage", Key="after", Body=b"y")
        assert s3.get_object(Bucket="outage", Key="before")["Body"].read() == b"kept"
    finally:
        server.stop()
        etcd.stop()


def test_objects_of_many_chunks_fit_etcds_default_limits(tmp_path: Path) -> None:
    """etcd allows 128 operations per transaction by default.  Objects of 140
    chunks (single PUT and multipart), a versioned overwrite that demotes one
    and the deletes that promote and remove them all commit on a default etcd,
    read back, and leave no chunk-index entry behind (each commit carries a
    fixed handful of operations; the index is written in batches before it).
    With ``chunks_per_record = 50`` their chunk lists are paged (3 pages
    each), so ranged reads and version moves go through the pages too."""
    etcd_binary()
    etcd = EtcdCluster(tmp_path / "etcd").start()
    storage = "[storage]\nchunk_size_bytes = 1048576"
    cfg = config(tmp_path / "server.toml", etcd.endpoints, "big/", storage=storage, metadata="chunks_per_record = 50")
    server = start_server(tmp_path, "s", cfg)
    try:
        s3 = make_client(server.endpoint)
        s3.create_bucket(Bucket="big")
        s3.put_bucket_versioning(Bucket="big", VersioningConfiguration={"Status": "Enabled"})
        body = os.urandom(140 * 1024 * 1024)
        first = s3.put_object(Bucket="big", Key="obj", Body=body)["VersionId"]
        # The store's data lives under "{namespace}d/".
        assert len(raw_keys(etcd.endpoints[0], b"big/d/lightningstor/chunks/")) == 140
        assert len(raw_keys(etcd.endpoints[0], b"big/d/lightningstor/manifests/")) == 3
        ranged = s3.get_object(Bucket="big", Key="obj", Range="bytes=52428700-104857699")["Body"].read()
        assert ranged == body[52428700:104857700]
        parts = [body[i * 35 * 1024 * 1024 : (i + 1) * 35 * 1024 * 1024] for i in range(4)]
        upload = s3.create_multipart_upload(Bucket="big", Key="obj")["UploadId"]
        etags = [
            s3.upload_part(Bucket="big", Key="obj", UploadId=upload, PartNumber=n, Body=p)["ETag"]
            for n, p in enumerate(reversed(parts), 1)
        ]
        second = s3.complete_multipart_upload(
            Bucket="big", Key="obj", UploadId=upload,
            MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)]},
        )["VersionId"]  # fmt: skip
        assert s3.get_object(Bucket="big", Key="obj")["Body"].read() == b"".join(reversed(parts))
        assert s3.get_object(Bucket="big", Key="obj", VersionId=first)["Body"].read() == body
        s3.delete_object(Bucket="big", Key="obj", VersionId=second)  # the first is promoted back
        assert s3.get_object(Bucket="big", Key="obj")["Body"].read() == body
        s3.delete_object(Bucket="big", Key="obj", VersionId=first)
        assert s3.list_object_versions(Bucket="big").get("Versions", []) == []
        index = raw_keys(etcd.endpoints[0], b"big/d/lightningstor/chunks/")
        assert index == [], f"{len(index)} chunk-index entries left"
        assert raw_keys(etcd.endpoints[0], b"big/d/lightningstor/manifests/") == []
    finally:
        server.stop()
        etcd.stop()
