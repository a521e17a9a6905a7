"""Quotas on the real server: limits set with ``lightningstor-admin quota`` (a
separate process, while the server runs), enforced against boto3 clients.

The module has a server of its own: org-wide limits must not leak into the
other integration tests' buckets.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import pytest_twisted
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from tests.integration.conftest import make_client
from tests.integration.server import ROOT_ACCESS_KEY, ROOT_SECRET_KEY, ServerProcess

ORG = "default"  # the root credential's org
KiB = 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    base = tmp_path_factory.mktemp("quotas")
    data = base / "data"
    data.mkdir()
    config = base / "server.toml"
    config.write_text("[storage]\nchunk_size_bytes = 1048576\n")  # chunks appear after 1 MiB
    proc = ServerProcess(data, config=str(config)).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def s3(server: ServerProcess) -> Any:
    return make_client(server.endpoint)


def admin(server: ServerProcess, *argv: str) -> tuple[int, str, str]:
    """Run ``lightningstor-admin quota ...`` on the server's data dir."""
    exe = str(Path(sys.executable).with_name("lightningstor-admin"))
    done = subprocess.run([exe, "quota", *argv, "--data-dir", str(server.data_dir)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    return done.returncode, done.stdout, done.stderr


def show(server: ServerProcess, *argv: str) -> dict[str, Any]:
    status, out, err = admin(server, "show", "--org", ORG, *argv, "--json")
    assert status == 0, err
    return json.loads(out)


def new_bucket(s3: Any) -> str:
    name = f"q-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=name)
    return name


def listed(s3: Any, bucket: str) -> tuple[int, int]:
    """(total bytes, object count) as the server lists them."""
    objects = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    return sum(o["Size"] for o in objects), len(objects)


def quota_error(exc: ClientError) -> tuple[str, int]:
    return exc.response["Error"]["Code"], exc.response["ResponseMetadata"]["HTTPStatusCode"]


def test_concurrent_uploads_stop_exactly_at_max_bytes(server: ServerProcess, s3: Any) -> None:
    """16 concurrent 100 KiB uploads into a bucket limited to 650 KiB: exactly
    6 are stored, the others get 403 QuotaExceeded (an S3 XML error boto3
    parsed), usage reported by ``quota show`` matches the listing, and
    deleting an object frees room for another."""
    bucket = new_bucket(s3)
    status, _out, err = admin(server, "set", "--org", ORG, "--bucket", bucket, "--max-bytes", "650KiB")
    assert status == 0, err
    body = b"z" * (100 * KiB)

    def put(i: int) -> str:
        client = make_client(server.endpoint)
        try:
            client.put_object(Bucket=bucket, Key=f"obj-{i:02d}", Body=body)
            return "ok"
        except ClientError as e:
            code, http_status = quota_error(e)
            return f"{code}/{http_status}"

    with ThreadPoolExecutor(max_workers=16) as pool:
        outcomes = list(pool.map(put, range(16)))
    assert outcomes.count("ok") == 6, outcomes
    assert outcomes.count("QuotaExceeded/403") == 10, outcomes
    total, count = listed(s3, bucket)
    assert (total, count) == (600 * KiB, 6)
    info = show(server, "--bucket", bucket)
    assert info["limits"]["max_size_bytes"] == 650 * KiB
    assert info["usage"]["total_size_bytes"] == total
    assert info["usage"]["object_count"] == count

    with pytest.raises(ClientError) as refused:
        s3.put_object(Bucket=bucket, Key="one-more", Body=body)
    assert quota_error(refused.value) == ("QuotaExceeded", 403)
    first = s3.list_objects_v2(Bucket=bucket)["Contents"][0]["Key"]
    s3.delete_object(Bucket=bucket, Key=first)
    s3.put_object(Bucket=bucket, Key="one-more", Body=body)
    assert listed(s3, bucket) == (600 * KiB, 6)


def test_multipart_parts_count_until_abort(server: ServerProcess, s3: Any) -> None:
    """Parts of an upload in progress show as upload bytes and count against
    the byte limit; aborting releases them."""
    bucket = new_bucket(s3)
    assert admin(server, "set", "--org", ORG, "--bucket", bucket, "--max-bytes", "8MiB")[0] == 0
    upload = s3.create_multipart_upload(Bucket=bucket, Key="big")["UploadId"]
    s3.upload_part(Bucket=bucket, Key="big", UploadId=upload, PartNumber=1, Body=b"a" * (5 * 1024 * KiB))
    assert show(server, "--bucket", bucket)["usage"]["upload_bytes"] == 5 * 1024 * KiB
    with pytest.raises(ClientError) as refused:
        s3.upload_part(Bucket=bucket, Key="big", UploadId=upload, PartNumber=2, Body=b"b" * (4 * 1024 * KiB))
    assert quota_error(refused.value) == ("QuotaExceeded", 403)
    s3.abort_multipart_upload(Bucket=bucket, Key="big", UploadId=upload)
    assert show(server, "--bucket", bucket)["usage"] == {
        "total_size_bytes": 0, "object_bytes": 0, "upload_bytes": 0, "object_count": 0,
    }  # fmt: skip


def _chunk_files(server: ServerProcess) -> set[str]:
    """Every file the ``local`` backend holds (finished chunks and ones being written)."""
    found = set()
    for top in ("chunks", "tmp"):
        for root in server.data_dir.rglob(top):
            found |= {str(p) for p in root.rglob("*") if p.is_file()}
    return found


def _slow_put(
    server: ServerProcess, s3: Any, bucket: str, key: str, length: int, headers: dict[str, str] | None = None
) -> tuple[int, bytes, set[str]]:
    """PUT ``length`` bytes in two steps, pausing after the first 1.25 MiB
    (more than one 1 MiB chunk) until chunk files appear (1.5 s at most).
    With ``headers``, the request is header-signed (with the body's SHA-256)
    with them; else presigned.

    Returns the status, the response body and the chunk files that appeared
    during the pause: an upload the server accepted has written its first
    chunk by then, one it refused from the headers has written nothing.
    """
    url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=300)
    parts = urlsplit(url)
    target, signed = f"{parts.path}?{parts.query}", {"Content-Length": str(length)}
    if headers is not None:
        request = AWSRequest(
            "PUT", f"{server.endpoint}/{bucket}/{key}", data=b"s" * length,
            headers={"Content-Length": str(length), **headers},
        )  # fmt: skip
        S3SigV4Auth(Credentials(ROOT_ACCESS_KEY, ROOT_SECRET_KEY), "s3", "us-east-1").add_auth(request)
        target, signed = f"/{bucket}/{key}", dict(request.headers.items())
    before = _chunk_files(server)
    first = 1280 * KiB
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.putrequest("PUT", target, skip_accept_encoding=True)
        for name, value in signed.items():
            conn.putheader(name, value)
        conn.endheaders()
        conn.send(b"s" * first)
        appeared: set[str] = set()
        deadline = time.monotonic() + 1.5
        while not appeared and time.monotonic() < deadline:
            time.sleep(0.05)
            appeared = _chunk_files(server) - before
        try:
            conn.send(b"s" * (length - first))
        except (BrokenPipeError, ConnectionResetError):
            pass  # answered and closed early (a 400 does not read the rest); its answer is in
        response = conn.getresponse()
        return response.status, response.read(), appeared
    finally:
        conn.close()


def test_oversized_bodies_are_refused_before_they_are_stored(server: ServerProcess, s3: Any) -> None:
    """max_object_size (org) and a Content-Length the bucket's remaining quota
    cannot hold are refused from the headers: 403 QuotaExceeded, and not one
    chunk is written while the body streams in (an accepted upload of the
    same shape writes its first chunk meanwhile: the control)."""
    bucket = new_bucket(s3)
    try:
        assert admin(server, "set", "--org", ORG, "--max-object-size", "2MiB")[0] == 0
        assert admin(server, "set", "--org", ORG, "--bucket", bucket, "--max-bytes", "3MiB")[0] == 0
        status, body, appeared = _slow_put(server, s3, bucket, "fits", 2 * 1024 * KiB)
        assert status == 200 and appeared, body
        status, body, appeared = _slow_put(server, s3, bucket, "too-big", 2560 * KiB)
        assert status == 403 and b"<Code>QuotaExceeded</Code>" in body and b"max_object_size" in body
        assert not appeared
        status, body, appeared = _slow_put(server, s3, bucket, "no-room", 1536 * KiB)
        assert status == 403 and b"<Code>QuotaExceeded</Code>" in body and b"max_size_bytes" in body
        assert not appeared
        assert listed(s3, bucket) == (2 * 1024 * KiB, 1)
        # An overwrite frees what it replaces, so it is not refused early.
        s3.put_object(Bucket=bucket, Key="fits", Body=b"g" * (2 * 1024 * KiB))
    finally:
        assert admin(server, "set", "--org", ORG, "--max-object-size", "none")[0] == 0
    s3.put_object(Bucket=bucket, Key="fits", Body=b"h" * (2560 * KiB))  # no size limit any more
    assert show(server, "--bucket", bucket)["usage"]["total_size_bytes"] == 2560 * KiB


def test_a_decoded_length_that_is_not_the_plain_bodys_length_is_refused_before_it_is_stored(
    server: ServerProcess, s3: Any
) -> None:
    """``x-amz-decoded-content-length`` describes an aws-chunked body; on a
    plain one that claims less than its Content-Length it passed the checks
    made from the headers (a 20 MB body went into a full bucket and was
    refused once written): now 400 InvalidArgument, no chunk written.  The
    header equal to the Content-Length is accepted (the control)."""
    bucket = new_bucket(s3)
    try:
        assert admin(server, "set", "--org", ORG, "--bucket", bucket, "--max-bytes", "1MiB")[0] == 0
        status, body, appeared = _slow_put(
            server, s3, bucket, "lies", 3 * 1024 * KiB, headers={"x-amz-decoded-content-length": "0"}
        )
        assert status == 400 and b"<Code>InvalidArgument</Code>" in body, body
        assert not appeared
        assert admin(server, "set", "--org", ORG, "--bucket", bucket, "--max-bytes", "none")[0] == 0
        length = 1536 * KiB
        status, body, appeared = _slow_put(
            server, s3, bucket, "honest", length, headers={"x-amz-decoded-content-length": str(length)}
        )
        assert status == 200 and appeared, body
        assert listed(s3, bucket) == (length, 1)
    finally:
        admin(server, "set", "--org", ORG, "--bucket", bucket, "--max-bytes", "none")


def test_writes_that_shrink_usage_pass_a_limit_lowered_below_it(server: ServerProcess, s3: Any) -> None:
    """docs/quotas.md: writes that only shrink usage are never refused, even
    over a limit lowered after the fact.  The check from the headers refused
    a smaller overwrite, a smaller re-upload of a part and a same-size
    overwrite over S3 (403, "this request adds ..."), while the commit and
    gRPC let them through; a write that adds bytes is still refused."""
    bucket = new_bucket(s3)
    for i in range(4):
        s3.put_object(Bucket=bucket, Key=f"o{i}", Body=b"o" * 1_000_000)
    upload = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload, PartNumber=1, Body=b"p" * 2_000_000)
    try:
        assert admin(server, "set", "--org", ORG, "--bucket", bucket, "--max-bytes", "3000000")[0] == 0
        s3.put_object(Bucket=bucket, Key="o0", Body=b"s" * 500_000)
        s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload, PartNumber=1, Body=b"q" * 100_000)
        s3.put_object(Bucket=bucket, Key="o3", Body=b"t" * 1_000_000)
        with pytest.raises(ClientError) as refused:
            s3.put_object(Bucket=bucket, Key="new", Body=b"n" * 10)
        assert quota_error(refused.value) == ("QuotaExceeded", 403)
        assert show(server, "--bucket", bucket)["usage"]["total_size_bytes"] == 3 * 1_000_000 + 500_000 + 100_000
    finally:
        admin(server, "set", "--org", ORG, "--bucket", bucket, "--max-bytes", "none")
        s3.abort_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload)


def test_grpc_uploads_that_cannot_fit_are_refused_before_they_are_stored(server: ServerProcess, s3: Any) -> None:
    """Over gRPC too: an UploadPart whose declared content_length the
    bucket's remaining quota cannot hold is refused (QuotaExceeded,
    RESOURCE_EXHAUSTED) after its first message, with no chunk written
    while the client holds the rest back; so is a PutObject.  Before, the
    part was received and stored whole, then refused at its commit."""
    from lightningstor.client import LightningStorClient, retry
    from lightningstor.client import errors as client_errors

    bucket = new_bucket(s3)
    upload = s3.create_multipart_upload(Bucket=bucket, Key="part")["UploadId"]
    assert admin(server, "set", "--org", ORG, "--bucket", bucket, "--max-bytes", "1MiB")[0] == 0
    appeared: set[str] = set()

    def held_back() -> Iterator[bytes]:
        before = _chunk_files(server)
        yield b"g" * (1280 * KiB)
        deadline = time.monotonic() + 1.5
        while not appeared and time.monotonic() < deadline:
            time.sleep(0.05)
            appeared.update(_chunk_files(server) - before)
        yield b"g" * (768 * KiB)

    client = LightningStorClient.connect(
        f"grpc://{server.grpc_endpoint}", access_key=ROOT_ACCESS_KEY, secret_key=ROOT_SECRET_KEY, retry=retry.NO_RETRY
    )
    try:
        with pytest.raises(client_errors.LightningStorError) as refused:
            client.upload_part(bucket, "part", upload, 1, held_back(), content_length=2048 * KiB)
        assert refused.value.code == "QuotaExceeded", refused.value
        assert not appeared
        with pytest.raises(client_errors.LightningStorError) as refused:
            client.put_object(bucket, "whole", b"w" * (2 * 1024 * KiB))
        assert refused.value.code == "QuotaExceeded", refused.value
        assert s3.list_parts(Bucket=bucket, Key="part", UploadId=upload).get("Parts", []) == []
        assert listed(s3, bucket) == (0, 0)
    finally:
        client.close()
        admin(server, "set", "--org", ORG, "--bucket", bucket, "--max-bytes", "none")
        s3.abort_multipart_upload(Bucket=bucket, Key="part", UploadId=upload)


@contextlib.contextmanager
def _chunks_appearing(server: ServerProcess) -> Iterator[set[str]]:
    """The chunk files that appear while the block runs, sampled every 2 ms
    (a file written and deleted within the block is seen too)."""
    before = _chunk_files(server)
    seen: set[str] = set()
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            seen.update(_chunk_files(server) - before)
            time.sleep(0.002)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        yield seen
    finally:
        done.set()
        watcher.join()


def test_copies_that_cannot_fit_are_refused_before_they_are_written(server: ServerProcess, s3: Any) -> None:
    """CopyObject and UploadPartCopy of a 24 MiB source into a bucket with
    1 MiB left are refused (403 QuotaExceeded) before a chunk of the copy
    is written: a watcher sampling the chunk directory during each call
    sees none appear.  Before, the copy was written whole, then refused at
    its commit and deleted."""
    source_bucket, bucket = new_bucket(s3), new_bucket(s3)
    s3.put_object(Bucket=source_bucket, Key="big", Body=b"b" * (24 * 1024 * KiB))
    upload = s3.create_multipart_upload(Bucket=bucket, Key="part")["UploadId"]
    assert admin(server, "set", "--org", ORG, "--bucket", bucket, "--max-bytes", "1MiB")[0] == 0
    copy_source = {"Bucket": source_bucket, "Key": "big"}
    try:
        for call in (
            lambda: s3.copy_object(Bucket=bucket, Key="copy", CopySource=copy_source),
            lambda: s3.upload_part_copy(Bucket=bucket, Key="part", UploadId=upload, PartNumber=1, CopySource=copy_source),
        ):
            with pytest.raises(ClientError) as refused, _chunks_appearing(server) as seen:
                call()
            assert quota_error(refused.value) == ("QuotaExceeded", 403)
            assert not seen, f"{len(seen)} chunk files written for a copy refused by its quota"
        assert listed(s3, bucket) == (0, 0)
    finally:
        admin(server, "set", "--org", ORG, "--bucket", bucket, "--max-bytes", "none")
        s3.abort_multipart_upload(Bucket=bucket, Key="part", UploadId=upload)


def test_max_buckets(server: ServerProcess, s3: Any) -> None:
    """The org's max_buckets refuses one bucket too many with 403
    QuotaExceeded; deleting a bucket frees its slot."""
    count = show(server)["usage"]["bucket_count"]
    try:
        assert admin(server, "set", "--org", ORG, "--max-buckets", str(count + 1))[0] == 0
        last = new_bucket(s3)
        with pytest.raises(ClientError) as refused:
            s3.create_bucket(Bucket=f"q-{uuid.uuid4().hex[:16]}")
        assert quota_error(refused.value) == ("QuotaExceeded", 403)
        s3.delete_bucket(Bucket=last)
        new_bucket(s3)
        assert show(server)["usage"]["bucket_count"] == count + 1
    finally:
        assert admin(server, "set", "--org", ORG, "--max-buckets", "none")[0] == 0


def test_quota_show_reports_what_was_written(server: ServerProcess, s3: Any) -> None:
    """``quota show --json`` of the org sums its buckets (objects, versions and
    in-progress parts) exactly as written through S3; bad input is refused."""
    before = show(server)["usage"]
    bucket = new_bucket(s3)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_object(Bucket=bucket, Key="a", Body=b"1" * 1000)
    s3.put_object(Bucket=bucket, Key="a", Body=b"2" * 300)  # a second version
    s3.put_object(Bucket=bucket, Key="b", Body=b"3" * 70 * KiB)
    s3.delete_object(Bucket=bucket, Key="b")  # a delete marker: still stored
    upload = s3.create_multipart_upload(Bucket=bucket, Key="m")["UploadId"]
    s3.upload_part(Bucket=bucket, Key="m", UploadId=upload, PartNumber=1, Body=b"4" * 4096)
    after = show(server)["usage"]
    written = 1000 + 300 + 70 * KiB
    assert after["object_bytes"] - before["object_bytes"] == written
    assert after["object_count"] - before["object_count"] == 3
    assert after["upload_bytes"] - before["upload_bytes"] == 4096
    assert after["bucket_count"] - before["bucket_count"] == 1
    mine = [b for b in show(server)["buckets"] if b["name"] == bucket]
    assert mine and mine[0]["total_size_bytes"] == written + 4096
    status, _out, err = admin(server, "set", "--org", ORG, "--max-bytes", "-5")
    assert status == 2 and "error" in err


# -- the same rules on etcd (compare-and-swap and transaction limits of its own) ------


@pytest.fixture(scope="module")
def etcd_core(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A Core on a real etcd member (the ``etcd`` store) and the local backend, in process."""
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

    etcd_binary()
    base = tmp_path_factory.mktemp("etcd-quotas")
    cluster = EtcdCluster(base / "etcd").start()
    io, cpu = ThreadPool(1, 4, "q-io"), ThreadPool(1, 2, "q-cpu")
    io.start()
    cpu.start()
    try:
        context = PluginContext(reactor=reactor, io_pool=io, data_dir=str(base))
        store = etcdStoreFactory.create(
            {"chainfire_endpoints": tuple(cluster.endpoints), "etcd": {"namespace": "quotas/"}}, context
        )
        backend = LocalFsBackend(str(base / "chunks"), reactor, io, fsync=False)
        core = Core(store=store, backend=backend, chunks=ChunkManager(backend, reactor, cpu, chunk_size=4096),
                    credentials=CredentialStore(store, b"x" * 43 + b"="),
                    authorizer=LocalAuthorizer(GrantStore(store, time.time), time.time, 0),
                    clock=time.time)  # fmt: skip
        core.multipart.min_part_size = 1000
        yield core
        pytest_twisted.blockon(store.close())
    finally:
        io.stop()
        cpu.stop()
        cluster.stop()


async def _etcd_put(core: Any, bucket: Any, key: str, size: int) -> Any:
    from lightningstor.core.objects import PutAttrs
    from lightningstor.core.types import ObjectRecord

    writer = core.chunks.new_writer(())
    writer.write(b"e" * size)
    result = await writer.finish()
    record = ObjectRecord(key=key, size=result.size, etag=result.md5_hex, created_at=core.objects.now_ms(),
                          chunks=list(result.chunks), inline=result.inline)  # fmt: skip
    try:
        return await core.objects.commit(bucket, record, PutAttrs())
    except BaseException:
        await writer.abort()
        raise


@pytest_twisted.ensureDeferred
async def test_limits_are_exact_on_etcd(etcd_core: Any) -> None:
    """On etcd: 12 concurrent 5000-byte puts against a project limit of
    32,000 bytes store exactly 6; max_buckets holds; a multipart upload's
    parts count and completion releases them; folding keeps totals exact."""
    from twisted.internet.defer import DeferredList, ensureDeferred

    from lightningstor import errors
    from lightningstor.core.multipart import PartRef
    from lightningstor.core.objects import PutAttrs
    from lightningstor.core.quotas import BucketScope, Usage
    from lightningstor.core.types import Principal

    core = etcd_core
    dave = Principal("dave", "org-e", project_id="p9")

    await core.quotas.set_limits("org-e", "p9", {"max_total_size_bytes": 32_000, "max_buckets": 1})
    bucket = await core.buckets.create(dave, "etcd-quota")
    [(ok, failure)] = await DeferredList([core.buckets.create(dave, "second")], consumeErrors=True)
    assert not ok and failure.check(errors.QuotaExceeded)
    results = await DeferredList(
        [ensureDeferred(_etcd_put(core, bucket, f"k{i}", 5000)) for i in range(12)], consumeErrors=True
    )
    refused = [r for ok, r in results if not ok]
    assert all(f.check(errors.QuotaExceeded) for f in refused), [f.getErrorMessage() for f in refused]
    assert len(results) - len(refused) == 6
    assert await core.quotas.usage("org-e", "p9") == Usage(30_000, 6)
    upload = await core.multipart.create(bucket, "mp", PutAttrs(), initiator=dave)
    parts = []
    for number, size in ((1, 1000), (2, 500)):
        writer = core.multipart.new_part_writer(upload)
        writer.write(b"p" * size)
        part = await core.multipart.commit_part(upload, number, await writer.finish(), {})
        parts.append(PartRef(number, part.etag))
    assert await core.quotas.usage("org-e", "p9") == Usage(30_000, 6, 1500)
    writer = core.multipart.new_part_writer(upload)
    writer.write(b"p" * 600)
    with pytest.raises(errors.QuotaExceeded):
        await core.multipart.commit_part(upload, 3, await writer.finish(), {})
    await writer.abort()
    await core.multipart.complete(bucket, "mp", upload.upload_id, parts)
    await core.quotas.fold_bucket(BucketScope.of(bucket).prefix)
    assert await core.quotas.usage("org-e", "p9") == Usage(31_500, 7, 0)
