"""boto3 end to end against ``twistd lightningstor`` with its chunks in RADOS."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterator
from typing import Any

import pytest
from boto3.s3.transfer import TransferConfig

from conftest import CephCluster
from rados_server import rados_server

pytestmark = pytest.mark.ceph  # needs the real cluster (conftest `ceph` fixture)
MiB = 1 << 20
POOL = "lsr-s3"
NAMESPACE = "e2e"


@pytest.fixture(scope="module")
def s3(ceph: CephCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with rados_server(tmp_path_factory.mktemp("s3"), ceph, POOL, NAMESPACE) as (_, client):
        yield client


def rados_objects(ceph: CephCluster) -> dict[str, int]:
    """Object name -> size of everything in the test namespace, read with librados directly."""
    import rados

    cluster = rados.Rados(conffile=ceph.conf_file, rados_id="admin", conf={"keyring": ceph.keyring})
    cluster.connect(timeout=10)
    try:
        ioctx = cluster.open_ioctx(POOL)
        ioctx.set_namespace(NAMESPACE)
        return {o.key: ioctx.stat(o.key)[0] for o in ioctx.list_objects() if "." not in o.key}
    finally:
        cluster.shutdown()


def test_single_put_lands_in_rados(s3: Any, ceph: CephCluster) -> None:
    """A PUT above the inline threshold is stored as a RADOS object and reads back byte-exact."""
    s3.create_bucket(Bucket="single")
    before = rados_objects(ceph)
    body = os.urandom(3 * MiB + 5)
    s3.put_object(Bucket="single", Key="k", Body=body)
    assert s3.get_object(Bucket="single", Key="k")["Body"].read() == body
    new = {k: v for k, v in rados_objects(ceph).items() if k not in before}
    assert sorted(new.values()) == [len(body)]


def test_multipart_100_mib(s3: Any, ceph: CephCluster) -> None:
    """A 100 MiB upload through boto3's multipart transfer (8 MiB parts) round-trips intact."""
    s3.create_bucket(Bucket="multi")
    body = os.urandom(100 * MiB)
    config = TransferConfig(multipart_threshold=8 * MiB, multipart_chunksize=8 * MiB, max_concurrency=4)
    s3.upload_fileobj(io.BytesIO(body), "multi", "big", Config=config)
    head = s3.head_object(Bucket="multi", Key="big")
    assert head["ContentLength"] == len(body) and head["ETag"].endswith('-13"')
    out = io.BytesIO()
    s3.download_fileobj("multi", "big", out, Config=config)
    assert hashlib.sha256(out.getvalue()).digest() == hashlib.sha256(body).digest()
    # Every byte of the 100 MiB is in RADOS (plus the other tests' objects).
    assert sum(rados_objects(ceph).values()) >= len(body)


def test_ranges(s3: Any) -> None:
    """Range GETs inside one chunk, across the 8 MiB chunk boundary, and suffix ranges."""
    s3.create_bucket(Bucket="ranges")
    body = os.urandom(20 * MiB + 7)
    s3.put_object(Bucket="ranges", Key="r", Body=body)
    for first, last in [(0, 0), (5, 1000), (8 * MiB - 10, 8 * MiB + 10), (MiB, 17 * MiB), (20 * MiB, 20 * MiB + 6)]:
        got = s3.get_object(Bucket="ranges", Key="r", Range=f"bytes={first}-{last}")
        assert got["Body"].read() == body[first : last + 1], (first, last)
        assert got["ContentRange"] == f"bytes {first}-{last}/{len(body)}"
    assert s3.get_object(Bucket="ranges", Key="r", Range="bytes=-100")["Body"].read() == body[-100:]


def test_versions(s3: Any) -> None:
    """With versioning on, each version keeps its own RADOS-stored bytes; deleting one leaves the other."""
    s3.create_bucket(Bucket="versions")
    s3.put_bucket_versioning(Bucket="versions", VersioningConfiguration={"Status": "Enabled"})
    v1_body, v2_body = os.urandom(MiB + 1), os.urandom(2 * MiB + 3)
    v1 = s3.put_object(Bucket="versions", Key="v", Body=v1_body)["VersionId"]
    v2 = s3.put_object(Bucket="versions", Key="v", Body=v2_body)["VersionId"]
    assert v1 != v2
    assert s3.get_object(Bucket="versions", Key="v")["Body"].read() == v2_body
    assert s3.get_object(Bucket="versions", Key="v", VersionId=v1)["Body"].read() == v1_body
    s3.delete_object(Bucket="versions", Key="v", VersionId=v2)
    assert s3.get_object(Bucket="versions", Key="v")["Body"].read() == v1_body
    listed = s3.list_object_versions(Bucket="versions")["Versions"]
    assert [v["VersionId"] for v in listed] == [v1]


def test_ready_reports_backend_ok(s3: Any) -> None:
    """The server's readiness probe passes: the backend's check() writes to the pool."""
    import urllib.request

    endpoint = s3.meta.endpoint_url
    with urllib.request.urlopen(f"{endpoint}/ready", timeout=30) as resp:
        assert resp.status == 200


