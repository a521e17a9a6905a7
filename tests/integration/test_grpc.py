"""The native gRPC API against a real server process: every RPC, both protocols
on the same data, the documented error statuses, health and reflection."""

from __future__ import annotations

import base64
import hashlib
import os
import time
import uuid
import zlib
from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from lightningstor.client import LightningStorClient, errors
from lightningstor.grpc.errors import CODE_KEY
from lightningstor.grpc.gen import lightningstor_pb2 as pb
from lightningstor.grpc.gen import lightningstor_pb2_grpc as pb_grpc
from lightningstor.grpc.token import make_token
from tests.integration.conftest import make_client
from tests.integration.server import ROOT_ACCESS_KEY, ROOT_SECRET_KEY, ServerProcess
from tests.integration.test_input_properties import send, sign

MiB = 1 << 20


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[LightningStorClient]:
    c = LightningStorClient.connect(
        f"grpc://{server.grpc_endpoint}", access_key=ROOT_ACCESS_KEY, secret_key=ROOT_SECRET_KEY, timeout=30
    )
    yield c
    c.close()


@pytest.fixture(scope="module")
def boto(server: ServerProcess) -> object:
    return make_client(server.endpoint)


@pytest.fixture
def gbucket(client: LightningStorClient) -> Iterator[str]:
    name = f"g-{uuid.uuid4().hex[:16]}"
    client.create_bucket(name)
    yield name
    try:
        for v in client.iter_object_versions(name):
            client.delete_object(name, v.key, version_id=v.version_id)
        for u in client.list_multipart_uploads(name).uploads:
            client.abort_multipart_upload(name, u.key, u.upload_id)
        client.delete_bucket(name)
    except errors.LightningStorError:
        pass


def _raw(server: ServerProcess) -> tuple[grpc.Channel, pb_grpc.ObjectServiceStub, pb_grpc.BucketServiceStub]:
    channel = grpc.insecure_channel(server.grpc_endpoint)
    return channel, pb_grpc.ObjectServiceStub(channel), pb_grpc.BucketServiceStub(channel)


def _auth(token: str | None = None) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token or make_token(ROOT_ACCESS_KEY, ROOT_SECRET_KEY)}"),)


def _code(e: grpc.RpcError) -> str | None:
    return dict(e.trailing_metadata() or ()).get(CODE_KEY)  # type: ignore[attr-defined]


# -- buckets ---------------------------------------------------------------------------


def test_bucket_rpcs(client: LightningStorClient) -> None:
    """CreateBucket (versioned, tagged), HeadBucket, ListBuckets, versioning and tagging
    get/put/delete, DeleteBucket: each answers what was stored."""
    name = f"g-{uuid.uuid4().hex[:16]}"
    created = client.create_bucket(name, versioning=True, tags={"team": "storage"})
    assert created.name == name and created.org_id == "default"
    assert created.versioning.status == pb.VERSIONING_STATUS_ENABLED
    assert client.head_bucket(name).tags == {"team": "storage"}
    assert name in [b.name for b in client.list_buckets()]
    assert client.get_bucket_versioning(name) == "Enabled"
    client.put_bucket_versioning(name, "Suspended")
    assert client.get_bucket_versioning(name) == "Suspended"
    client.put_bucket_tagging(name, {"a": "1", "b": "2"})
    assert client.get_bucket_tagging(name) == {"a": "1", "b": "2"}
    client.delete_bucket_tagging(name)
    assert client.get_bucket_tagging(name) == {}
    with pytest.raises(errors.BucketAlreadyOwnedByYou) as exc:
        client.create_bucket(name)
    assert exc.value.status == grpc.StatusCode.ALREADY_EXISTS
    client.delete_bucket(name)
    with pytest.raises(errors.NoSuchBucket):
        client.head_bucket(name)


def test_bucket_errors_have_documented_statuses(client: LightningStorClient) -> None:
    """Invalid name -> INVALID_ARGUMENT, another org -> PERMISSION_DENIED, non-empty
    delete -> FAILED_PRECONDITION, too many tags -> INVALID_ARGUMENT (InvalidTag)."""
    with pytest.raises(errors.InvalidBucketName) as bad:
        client.create_bucket("No_Such")
    assert bad.value.status == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(errors.AccessDenied) as denied:
        client.create_bucket(f"g-{uuid.uuid4().hex[:12]}", org_id="someone-else")
    assert denied.value.status == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(errors.InvalidTag):
        client.create_bucket(f"g-{uuid.uuid4().hex[:12]}", tags={f"k{i}": "v" for i in range(51)})
    name = f"g-{uuid.uuid4().hex[:16]}"
    client.create_bucket(name)
    client.put_object(name, "x", b"1")
    with pytest.raises(errors.BucketNotEmpty) as full:
        client.delete_bucket(name)
    assert full.value.status == grpc.StatusCode.FAILED_PRECONDITION
    client.delete_object(name, "x")
    client.delete_bucket(name)


# -- objects ------------------------------------------------------------------------------


def test_put_get_head_delete(client: LightningStorClient, gbucket: str) -> None:
    """PutObject stores bytes, type, metadata, system attributes, tags and a verified
    checksum; GetObject streams them back (metadata first); HeadObject and
    DeleteObject behave as in S3."""
    body = os.urandom(300_000)
    crc = base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()
    put = client.put_object(
        gbucket, "dir/a.bin", body, content_type="application/x-test", metadata={"Owner": "me"},
        tags={"t": "1"}, checksum_algorithm="crc32", checksum_value=crc, cache_control="no-cache",
    )  # fmt: skip
    assert put.etag == hashlib.md5(body).hexdigest() and put.size == len(body)
    assert [(c.algorithm, c.value) for c in put.checksums] == [(pb.CHECKSUM_ALGORITHM_CRC32, crc)]
    assert not put.HasField("version_id")  # a bucket never versioned reports none, as S3
    with client.get_object(gbucket, "dir/a.bin") as stream:
        meta = stream.metadata
        assert stream.content_length == len(body)
        assert stream.read() == body
    assert meta.content_type == "application/x-test" and dict(meta.metadata) == {"owner": "me"}
    assert meta.cache_control == "no-cache" and dict(meta.tags) == {"t": "1"}
    assert client.head_object(gbucket, "dir/a.bin").etag == put.etag
    deleted = client.delete_object(gbucket, "dir/a.bin")
    assert not deleted.delete_marker
    with pytest.raises(errors.NoSuchKey) as gone:
        client.head_object(gbucket, "dir/a.bin")
    assert gone.value.status == grpc.StatusCode.NOT_FOUND


def test_put_without_checksum_gets_the_default_crc64nvme(client: LightningStorClient, gbucket: str, boto: object) -> None:
    """PutObject without a checksum algorithm (or with an MD5 only) stores
    the core's default CRC64NVME, as S3's PutObject does: the response
    carries it and S3's HeadObject with checksum mode shows it."""
    from lightningstor.checksums import compute

    body = os.urandom(100_000)
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    for key, kwargs in (("plain", {}), ("md5", {"checksum_algorithm": "md5", "checksum_value": md5})):
        put = client.put_object(gbucket, key, body, **kwargs)
        assert [(c.algorithm, c.value) for c in put.checksums] == [(pb.CHECKSUM_ALGORITHM_CRC64NVME, compute("crc64nvme", body))]
        head = boto.head_object(Bucket=gbucket, Key=key, ChecksumMode="ENABLED")  # type: ignore[attr-defined]
        assert (head["ChecksumCRC64NVME"], head["ChecksumType"]) == (compute("crc64nvme", body), "FULL_OBJECT")


def test_upload_part_without_an_algorithm_answers_the_default_crc64nvme(
    server: ServerProcess, client: LightningStorClient, gbucket: str
) -> None:
    """A part of an upload created without a checksum algorithm: UploadPart
    answers the part's CRC64NVME, the value S3's UploadPart answers for the
    same bytes (it answered none over gRPC)."""
    from lightningstor.checksums import compute

    body = os.urandom(100_000)
    up = client.create_multipart_upload(gbucket, "dflt")
    part = client.upload_part(gbucket, "dflt", up.upload_id, 1, body)
    assert [(c.algorithm, c.value) for c in part.checksums] == [(pb.CHECKSUM_ALGORITHM_CRC64NVME, compute("crc64nvme", body))]
    plain = make_client(server.endpoint, request_checksum_calculation="when_required")  # botocore sends no CRC32
    s3 = plain.upload_part(Bucket=gbucket, Key="dflt", UploadId=up.upload_id, PartNumber=2, Body=body)  # type: ignore[attr-defined]
    assert s3["ChecksumCRC64NVME"] == compute("crc64nvme", body)
    client.abort_multipart_upload(gbucket, "dflt", up.upload_id)


def test_get_range_and_conditions(client: LightningStorClient, gbucket: str) -> None:
    """range serves the bytes S3 would (with content_range); if_match / if_none_match
    fail with FAILED_PRECONDITION carrying PreconditionFailed / NotModified; an
    unsatisfiable range is OUT_OF_RANGE."""
    body = bytes(range(256)) * 40
    etag = client.put_object(gbucket, "r", body).etag
    with client.get_object(gbucket, "r", range="bytes=100-199") as s:
        assert s.read() == body[100:200]
        assert s.content_range is not None and (s.content_range.start, s.content_range.end) == (100, 199)
    with client.get_object(gbucket, "r", range="bytes=-10") as s:
        assert s.read() == body[-10:]
    with client.get_object(gbucket, "r", if_match=etag) as s:
        assert s.read() == body
    with pytest.raises(errors.PreconditionFailed) as pf:
        client.get_object(gbucket, "r", if_match="0" * 32)
    assert pf.value.status == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(errors.NotModified):
        client.get_object(gbucket, "r", if_none_match=f'"{etag}"')
    with pytest.raises(errors.InvalidRange) as oor:
        client.get_object(gbucket, "r", range=f"bytes={len(body) + 5}-")
    assert oor.value.status == grpc.StatusCode.OUT_OF_RANGE


def test_large_get_streams_in_messages_of_at_most_1_mib(server: ServerProcess, gbucket: str, client: LightningStorClient) -> None:
    """A multi-chunk object arrives as metadata, then content messages of <= 1 MiB."""
    data = os.urandom(3 * MiB + 123)
    up = client.create_multipart_upload(gbucket, "big")
    part = client.upload_part(gbucket, "big", up.upload_id, 1, data)
    client.complete_multipart_upload(gbucket, "big", up.upload_id, [part])
    channel, objects, _ = _raw(server)
    with channel:
        messages = list(objects.GetObject(pb.GetObjectRequest(bucket=gbucket, key="big"), metadata=_auth()))
    assert messages[0].HasField("metadata") and not messages[0].content
    sizes = [len(m.content) for m in messages[1:]]
    assert max(sizes) <= MiB and sum(sizes) == len(data)
    assert b"".join(m.content for m in messages[1:]) == data


def test_get_of_empty_objects_and_ranges_across_pieces(client: LightningStorClient, gbucket: str) -> None:
    """GetObject reads the first piece before the metadata message: an empty
    object (nothing to read) is its metadata alone, and a range that starts
    inside one piece and ends in another arrives whole, as over S3."""
    client.put_object(gbucket, "empty", b"")
    with client.get_object(gbucket, "empty") as s:
        assert s.content_length == 0 and s.metadata.size == 0
        assert s.read() == b""
    data = os.urandom(2 * MiB + 77)
    up = client.create_multipart_upload(gbucket, "big")
    part = client.upload_part(gbucket, "big", up.upload_id, 1, data)
    client.complete_multipart_upload(gbucket, "big", up.upload_id, [part])
    start, end = MiB - 5, 2 * MiB + 9
    with client.get_object(gbucket, "big", range=f"bytes={start}-{end}") as s:
        assert s.content_length == end - start + 1
        assert s.content_range is not None and (s.content_range.start, s.content_range.end) == (start, end)
        assert s.read() == data[start : end + 1]
    with client.get_object(gbucket, "big", range=f"bytes={len(data) - 1}-") as s:
        assert s.read() == data[-1:]


def test_conditional_put_and_limits(client: LightningStorClient, gbucket: str) -> None:
    """if_none_match='*' refuses to overwrite; a wrong checksum is BadDigest, and a
    value that is no SHA-256 digest at all InvalidRequest (as the S3 API answers a
    malformed x-amz-checksum-* header), neither storing anything; content above the
    PutObject limit is INVALID_ARGUMENT (EntityTooLarge) and stores nothing."""
    client.put_object(gbucket, "once", b"1", if_none_match="*")
    with pytest.raises(errors.PreconditionFailed):
        client.put_object(gbucket, "once", b"2", if_none_match="*")
    with pytest.raises(errors.BadDigest) as bad:
        client.put_object(gbucket, "sum", b"abc", checksum_algorithm="sha256", checksum_value="A" * 43 + "=")
    assert bad.value.status == grpc.StatusCode.INVALID_ARGUMENT
    for malformed in ("AAAA", "!!!"):
        with pytest.raises(errors.InvalidRequest) as invalid:
            client.put_object(gbucket, "sum", b"abc", checksum_algorithm="sha256", checksum_value=malformed)
        assert invalid.value.status == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(errors.NoSuchKey):
        client.head_object(gbucket, "sum")
    with pytest.raises(errors.EntityTooLarge) as big:
        client.put_object(gbucket, "huge", b"x" * (5 * MiB + 1))
    assert big.value.status == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(errors.NoSuchKey):
        client.head_object(gbucket, "huge")


def test_copy_object(client: LightningStorClient, gbucket: str) -> None:
    """CopyObject copies bytes and attributes (COPY) or replaces them (REPLACE); a
    self-copy changing nothing is InvalidRequest; a missing source is NoSuchKey."""
    client.put_object(gbucket, "src", b"payload", content_type="text/plain", metadata={"m": "1"}, tags={"t": "x"})
    copied = client.copy_object(gbucket, "src", gbucket, "dst")
    assert copied.etag == hashlib.md5(b"payload").hexdigest()
    meta = client.head_object(gbucket, "dst")
    assert meta.content_type == "text/plain" and dict(meta.metadata) == {"m": "1"} and dict(meta.tags) == {"t": "x"}
    client.copy_object(gbucket, "src", gbucket, "src", content_type="text/csv", tags={})
    replaced = client.head_object(gbucket, "src")
    assert replaced.content_type == "text/csv" and dict(replaced.metadata) == {} and dict(replaced.tags) == {}
    with pytest.raises(errors.InvalidRequest):
        client.copy_object(gbucket, "dst", gbucket, "dst")
    with pytest.raises(errors.NoSuchKey):
        client.copy_object(gbucket, "nope", gbucket, "x")


def test_listing_and_pagination(client: LightningStorClient, gbucket: str) -> None:
    """ListObjects pages with continuation tokens and groups common prefixes."""
    for key in ("a/1", "a/2", "b", "c/3", "d"):
        client.put_object(gbucket, key, b"")
    page = client.list_objects(gbucket, max_keys=2)
    assert [o.key for o in page.objects] == ["a/1", "a/2"] and page.is_truncated
    rest = client.list_objects(gbucket, continuation_token=page.next_continuation_token)
    assert [o.key for o in rest.objects] == ["b", "c/3", "d"] and not rest.is_truncated
    grouped = client.list_objects(gbucket, delimiter="/")
    assert list(grouped.common_prefixes) == ["a/", "c/"] and [o.key for o in grouped.objects] == ["b", "d"]
    assert grouped.key_count == 4
    assert [o.key for o in client.list_objects(gbucket, prefix="a/", start_after="a/1").objects] == ["a/2"]
    with pytest.raises(errors.InvalidArgument):
        client.list_objects(gbucket, continuation_token="!!!")


def test_listings_name_each_objects_checksum_algorithm_and_type(client: LightningStorClient, gbucket: str) -> None:
    """As S3's listings: the default CRC64NVME (FULL_OBJECT) of a plain put, a
    chosen SHA256, a multipart upload's COMPOSITE CRC32; never the values."""
    client.put_object(gbucket, "plain", b"data")
    client.put_object(gbucket, "chosen", b"data", checksum_algorithm="sha256")
    upload = client.create_multipart_upload(gbucket, "parts", checksum_algorithm="crc32")
    part = client.upload_part(gbucket, "parts", upload.upload_id, 1, b"part one")
    client.complete_multipart_upload(gbucket, "parts", upload.upload_id, [part])
    shown = {
        o.key: (list(o.checksum_algorithms), o.checksum_type) for o in client.list_objects(gbucket).objects
    }
    assert shown == {
        "chosen": ([pb.CHECKSUM_ALGORITHM_SHA256], pb.CHECKSUM_TYPE_FULL_OBJECT),
        "parts": ([pb.CHECKSUM_ALGORITHM_CRC32], pb.CHECKSUM_TYPE_COMPOSITE),
        "plain": ([pb.CHECKSUM_ALGORITHM_CRC64NVME], pb.CHECKSUM_TYPE_FULL_OBJECT),
    }
    versions = {
        v.key: (list(v.checksum_algorithms), v.checksum_type) for v in client.list_object_versions(gbucket).versions
    }
    assert versions == shown


def test_versions_delete_markers_and_delete_objects(client: LightningStorClient, gbucket: str) -> None:
    """With versioning: puts get version ids, GetObject by version_id reads old data,
    delete writes a marker, ListObjectVersions shows all, DeleteObjects reports
    per-key outcomes."""
    client.put_bucket_versioning(gbucket, "Enabled")
    v1 = client.put_object(gbucket, "k", b"one").version_id
    v2 = client.put_object(gbucket, "k", b"two").version_id
    assert v1 and v2 and v1 != v2
    with client.get_object(gbucket, "k", version_id=v1) as s:
        assert s.read() == b"one" and s.metadata.version_id == v1
    marker = client.delete_object(gbucket, "k")
    assert marker.delete_marker and marker.version_id
    with pytest.raises(errors.NoSuchKey):
        client.head_object(gbucket, "k")
    versions = client.list_object_versions(gbucket).versions
    assert [(v.version_id, v.delete_marker, v.is_latest) for v in versions] == [
        (marker.version_id, True, True), (v2, False, False), (v1, False, False)
    ]
    result = client.delete_objects(gbucket, [("k", v1), ("k", "not-a-version"), "other"])
    assert [(d.key, d.version_id) for d in result.deleted] == [("k", v1), ("other", "")]
    assert [(e.key, e.code) for e in result.errors] == [("k", "NoSuchVersion")]
    with pytest.raises(errors.NoSuchVersion):
        client.head_object(gbucket, "k", version_id=v1)
    with pytest.raises(errors.InvalidArgument):
        client.list_object_versions(gbucket, version_id_marker=v2)


def test_object_tagging(client: LightningStorClient, gbucket: str) -> None:
    """Put/Get/DeleteObjectTagging replace one version's tag set; 11 tags are InvalidTag."""
    client.put_object(gbucket, "t", b"x")
    client.put_object_tagging(gbucket, "t", {"a": "1"})
    assert client.get_object_tagging(gbucket, "t") == {"a": "1"}
    client.delete_object_tagging(gbucket, "t")
    assert client.get_object_tagging(gbucket, "t") == {}
    with pytest.raises(errors.InvalidTag):
        client.put_object_tagging(gbucket, "t", {f"k{i}": "v" for i in range(11)})


def test_multipart_rpcs(client: LightningStorClient, gbucket: str) -> None:
    """Create, UploadPart (bytes and an iterable), ListMultipartUploads, ListParts,
    CompleteMultipartUpload (S3's multipart ETag), AbortMultipartUpload, and the
    part errors: a wrong ETag is InvalidPart, a small non-last part EntityTooSmall."""
    first = os.urandom(5 * MiB)
    up = client.create_multipart_upload(gbucket, "mp", content_type="video/x", checksum_algorithm="crc32c")
    assert up.checksum_algorithm == pb.CHECKSUM_ALGORITHM_CRC32C
    p1 = client.upload_part(gbucket, "mp", up.upload_id, 1, first)
    p2 = client.upload_part(gbucket, "mp", up.upload_id, 2, (bytes([i]) * 4096 for i in range(100)))
    assert p1.etag == hashlib.md5(first).hexdigest() and p2.size == 409600
    assert [u.upload_id for u in client.list_multipart_uploads(gbucket).uploads] == [up.upload_id]
    assert [p.part_number for p in client.list_parts(gbucket, "mp", up.upload_id).parts] == [1, 2]
    with pytest.raises(errors.InvalidPart):
        client.complete_multipart_upload(gbucket, "mp", up.upload_id, [(1, "0" * 32), (2, p2.etag)])
    done = client.complete_multipart_upload(gbucket, "mp", up.upload_id, [p1, p2])
    expected = hashlib.md5(bytes.fromhex(p1.etag) + bytes.fromhex(p2.etag)).hexdigest() + "-2"
    assert done.etag == expected and done.size == 5 * MiB + 409600
    assert client.head_object(gbucket, "mp").parts_count == 2
    small = client.create_multipart_upload(gbucket, "small")
    s1 = client.upload_part(gbucket, "small", small.upload_id, 1, b"tiny")
    s2 = client.upload_part(gbucket, "small", small.upload_id, 2, b"tiny")
    with pytest.raises(errors.EntityTooSmall):
        client.complete_multipart_upload(gbucket, "small", small.upload_id, [s1, s2])
    client.abort_multipart_upload(gbucket, "small", small.upload_id)
    with pytest.raises(errors.NoSuchUpload) as gone:
        client.list_parts(gbucket, "small", small.upload_id)
    assert gone.value.status == grpc.StatusCode.NOT_FOUND
    with pytest.raises(errors.InvalidArgument):
        client.upload_part(gbucket, "mp2", "x", 0, b"")


# -- bad requests and authentication ----------------------------------------------------------


def test_missing_fields_unknown_bucket_and_bad_tokens(server: ServerProcess, gbucket: str) -> None:
    """Missing required fields are INVALID_ARGUMENT; an unknown bucket NOT_FOUND;
    no token, a malformed one, a wrong secret, an unknown key and an expired token
    are all UNAUTHENTICATED, each with its S3 code in trailing metadata."""
    channel, objects, buckets = _raw(server)
    with channel:
        cases = [
            (lambda md: objects.PutObject(pb.PutObjectRequest(key="k"), metadata=md), _auth(),
             grpc.StatusCode.INVALID_ARGUMENT, "InvalidArgument"),
            (lambda md: objects.HeadObject(pb.HeadObjectRequest(bucket=gbucket), metadata=md), _auth(),
             grpc.StatusCode.INVALID_ARGUMENT, "InvalidArgument"),
            (lambda md: buckets.CreateBucket(pb.CreateBucketRequest(), metadata=md), _auth(),
             grpc.StatusCode.INVALID_ARGUMENT, "InvalidArgument"),
            (lambda md: objects.ListObjects(pb.ListObjectsRequest(bucket="no-such-bucket-x"), metadata=md), _auth(),
             grpc.StatusCode.NOT_FOUND, "NoSuchBucket"),
            (lambda md: buckets.ListBuckets(pb.ListBucketsRequest(), metadata=md), (),
             grpc.StatusCode.UNAUTHENTICATED, "MissingSecurityHeader"),
            (lambda md: buckets.ListBuckets(pb.ListBucketsRequest(), metadata=md), (("authorization", "Basic x"),),
             grpc.StatusCode.UNAUTHENTICATED, "AuthorizationHeaderMalformed"),
            (lambda md: buckets.ListBuckets(pb.ListBucketsRequest(), metadata=md),
             _auth(make_token(ROOT_ACCESS_KEY, "wrong-secret")),
             grpc.StatusCode.UNAUTHENTICATED, "SignatureDoesNotMatch"),
            (lambda md: buckets.ListBuckets(pb.ListBucketsRequest(), metadata=md),
             _auth(make_token("LSNOSUCHKEY", ROOT_SECRET_KEY)),
             grpc.StatusCode.UNAUTHENTICATED, "InvalidAccessKeyId"),
            (lambda md: buckets.ListBuckets(pb.ListBucketsRequest(), metadata=md),
             _auth(make_token(ROOT_ACCESS_KEY, ROOT_SECRET_KEY, lifetime=60, now=1_000_000)),
             grpc.StatusCode.UNAUTHENTICATED, "ExpiredToken"),
        ]  # fmt: skip
        for call, metadata, status, code in cases:
            with pytest.raises(grpc.RpcError) as exc:
                call(metadata)
            assert (exc.value.code(), _code(exc.value)) == (status, code)  # type: ignore[attr-defined]
        # Streaming calls authenticate too.
        with pytest.raises(grpc.RpcError) as stream_exc:
            list(objects.GetObject(pb.GetObjectRequest(bucket=gbucket, key="k")))
        assert stream_exc.value.code() == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]


def test_message_above_grpc_limit_is_resource_exhausted(server: ServerProcess, gbucket: str) -> None:
    """A PutObject message larger than the server's message limit is refused by
    gRPC itself with RESOURCE_EXHAUSTED (documented next to the PutObject limit)."""
    channel = grpc.insecure_channel(server.grpc_endpoint, options=[("grpc.max_send_message_length", 64 * MiB)])
    with channel:
        stub = pb_grpc.ObjectServiceStub(channel)
        with pytest.raises(grpc.RpcError) as exc:
            stub.PutObject(pb.PutObjectRequest(bucket=gbucket, key="k", content=b"x" * (7 * MiB)), metadata=_auth())
    assert exc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # type: ignore[attr-defined]


# -- the two protocols on the same objects ----------------------------------------------------


def test_grpc_upload_reads_identically_over_s3(client: LightningStorClient, boto: object, gbucket: str) -> None:
    """An object written over gRPC (single and multipart) reads over S3 with the
    same bytes, ETag, content type and user metadata."""
    body = os.urandom(100_000)
    put = client.put_object(gbucket, "x/one", body, content_type="text/x-one", metadata={"Color": "blue"})
    got = boto.get_object(Bucket=gbucket, Key="x/one")  # type: ignore[attr-defined]
    assert got["Body"].read() == body and got["ETag"] == f'"{put.etag}"'
    assert got["ContentType"] == "text/x-one" and got["Metadata"] == {"color": "blue"}
    part1, part2 = os.urandom(5 * MiB), os.urandom(1000)
    up = client.create_multipart_upload(gbucket, "x/multi")
    parts = [client.upload_part(gbucket, "x/multi", up.upload_id, n, d) for n, d in ((1, part1), (2, part2))]
    done = client.complete_multipart_upload(gbucket, "x/multi", up.upload_id, parts)
    multi = boto.get_object(Bucket=gbucket, Key="x/multi")  # type: ignore[attr-defined]
    assert multi["ETag"] == f'"{done.etag}"' and multi["Body"].read() == part1 + part2


def test_s3_upload_reads_identically_over_grpc(client: LightningStorClient, boto: object, gbucket: str) -> None:
    """An object written over S3 reads over gRPC with the same bytes, ETag and metadata,
    and S3's listing sees objects gRPC wrote."""
    body = os.urandom(70_000)
    put = boto.put_object(  # type: ignore[attr-defined]
        Bucket=gbucket, Key="from-s3", Body=body, ContentType="image/x", Metadata={"k": "v"}, ChecksumAlgorithm="SHA256"
    )
    with client.get_object(gbucket, "from-s3") as stream:
        assert stream.read() == body
        meta = stream.metadata
    assert f'"{meta.etag}"' == put["ETag"] and meta.content_type == "image/x" and dict(meta.metadata) == {"k": "v"}
    assert {c.algorithm: c.value for c in meta.checksums}[pb.CHECKSUM_ALGORITHM_SHA256] == put["ChecksumSHA256"]
    client.put_object(gbucket, "from-grpc", b"g")
    listed = boto.list_objects_v2(Bucket=gbucket)  # type: ignore[attr-defined]
    assert [o["Key"] for o in listed["Contents"]] == ["from-grpc", "from-s3"]


def test_non_ascii_system_attributes_read_the_same_over_both_apis(
    server: ServerProcess, client: LightningStorClient, gbucket: str
) -> None:
    """A Content-Type or Content-Disposition with "é" or "日本", written over
    either API, reads back as the same text over gRPC and as its UTF-8 bytes
    over S3 (the bytes an S3 client sent; a gRPC write once went out as the
    latin-1 byte, or raw UTF-8, depending on its characters)."""
    disposition, ctype = 'attachment; filename="é日本.txt"', "text/plain; name=é"
    client.put_object(gbucket, "from-grpc", b"g", content_type=ctype, content_disposition=disposition)
    path = f"/{gbucket}/from-s3"
    # The UTF-8 bytes an S3 client sends (unsigned: SigV4 needs only host and x-amz-*).
    utf8 = {"Content-Type": ctype.encode().decode("latin-1"), "Content-Disposition": disposition.encode().decode("latin-1")}
    assert send(server, "PUT", path, {**sign(server, "PUT", path, body=b"s"), **utf8}, b"s").status == 200
    for key in ("from-grpc", "from-s3"):
        reply = send(server, "GET", f"/{gbucket}/{key}", sign(server, "GET", f"/{gbucket}/{key}"))
        assert reply.headers["content-type"].encode("latin-1") == ctype.encode()
        assert reply.headers["content-disposition"].encode("latin-1") == disposition.encode()
        meta = client.head_object(gbucket, key)
        assert (meta.content_type, meta.content_disposition) == (ctype, disposition)


def test_a_message_that_does_not_decode_is_invalid_argument(server: ServerProcess, gbucket: str) -> None:
    """A string field holding bytes that are not UTF-8 (as over S3, a key
    that is not UTF-8 is a 400) is INVALID_ARGUMENT with the S3 code, in a
    unary call and in a client stream alike, not grpcio's bare INTERNAL;
    nothing is stored."""
    channel, _, _ = _raw(server)
    try:
        good = pb.PutObjectRequest(bucket=gbucket, key="k\u00e9", content=b"x").SerializeToString()
        bad = good.replace("\u00e9".encode(), b"\xe9\xff")
        put = channel.unary_unary(
            "/lightningstor.v1.ObjectService/PutObject",
            request_serializer=lambda raw: raw, response_deserializer=pb.PutObjectResponse.FromString,
        )  # fmt: skip
        with pytest.raises(grpc.RpcError) as e:
            put(bad, metadata=_auth())
        assert (e.value.code(), _code(e.value)) == (grpc.StatusCode.INVALID_ARGUMENT, "InvalidArgument")
        part = channel.stream_unary(
            "/lightningstor.v1.ObjectService/UploadPart",
            request_serializer=lambda raw: raw, response_deserializer=pb.UploadPartResponse.FromString,
        )  # fmt: skip
        first = pb.UploadPartRequest(bucket=gbucket, key="k\u00e9", upload_id="u", part_number=1).SerializeToString()
        with pytest.raises(grpc.RpcError) as e:
            part(iter([first.replace("\u00e9".encode(), b"\xe9\xff")]), metadata=_auth())
        assert (e.value.code(), _code(e.value)) == (grpc.StatusCode.INVALID_ARGUMENT, "InvalidArgument")
        assert put(good, metadata=_auth()).size == 1  # the same request, decodable
    finally:
        channel.close()


# -- health and reflection ------------------------------------------------------------------------


def test_health_and_reflection(server: ServerProcess) -> None:
    """The standard health service answers SERVING (no token needed) for the server
    and both services; reflection lists ObjectService and BucketService."""
    with grpc.insecure_channel(server.grpc_endpoint) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "lightningstor.v1.ObjectService", "lightningstor.v1.BucketService"):
            reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        replies = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10)
        names = {s.name for r in replies for s in r.list_services_response.service}
    assert {"lightningstor.v1.ObjectService", "lightningstor.v1.BucketService", "grpc.health.v1.Health"} <= names


def test_health_list_answers_what_check_answers(server: ServerProcess) -> None:
    """Health/List (grpcio's servicer leaves it UNIMPLEMENTED) lists the
    server and both services, each with Check's status."""
    with grpc.insecure_channel(server.grpc_endpoint) as channel:
        reply = health_pb2_grpc.HealthStub(channel).List(health_pb2.HealthListRequest(), timeout=10)
    assert {name: status.status for name, status in reply.statuses.items()} == {
        name: health_pb2.HealthCheckResponse.SERVING
        for name in ("", "lightningstor.v1.ObjectService", "lightningstor.v1.BucketService")
    }


# -- memory ------------------------------------------------------------------------------------------


def _rss(pid: int) -> int:
    """Resident set size of ``pid`` in bytes (/proc/PID/status VmRSS)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_streaming_get_of_256_mib_keeps_memory_bounded(
    server: ServerProcess, client: LightningStorClient, gbucket: str, tmp_path: object
) -> None:
    """Downloading a 256 MiB object over GetObject grows neither the server's RSS
    nor the client's memory (tracemalloc peak and RSS) by more than a few
    pieces: the object is streamed, never held whole."""
    import threading
    import time
    import tracemalloc
    from pathlib import Path

    size, block = 256 * MiB, os.urandom(MiB)
    src = Path(str(tmp_path)) / "big.bin"
    expected = hashlib.md5()
    with open(src, "wb") as f:
        for _ in range(size // MiB):
            f.write(block)
            expected.update(block)
    client.upload_file(str(src), gbucket, "big", part_size=32 * MiB, concurrency=4)
    src.unlink()
    assert server.proc is not None
    pid = server.proc.pid
    server_before = _rss(pid)
    peak = [server_before]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak.append(_rss(pid))
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    client_before = _rss(os.getpid())
    client_peak_rss = client_before
    tracemalloc.start()
    digest, received = hashlib.md5(), 0
    try:
        with client.get_object(gbucket, "big") as stream:
            for i, chunk in enumerate(stream):
                digest.update(chunk)
                received += len(chunk)
                if i % 16 == 0:
                    client_peak_rss = max(client_peak_rss, _rss(os.getpid()))
        _current, traced_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        stop.set()
        sampler.join()
    assert received == size and digest.hexdigest() == expected.hexdigest()
    assert max(peak) - server_before < 64 * MiB, f"server RSS grew by {(max(peak) - server_before) / MiB:.0f} MiB"
    assert traced_peak < 16 * MiB, f"client traced peak {traced_peak / MiB:.1f} MiB"
    assert client_peak_rss - client_before < 64 * MiB, f"client RSS grew by {(client_peak_rss - client_before) / MiB:.0f} MiB"


def test_upload_part_whose_source_fails_stores_no_part(client: LightningStorClient, gbucket: str) -> None:
    """When the caller's data source raises mid-part, the client cancels the call
    (re-raising the caller's error) and the server stores nothing of the part."""
    up = client.create_multipart_upload(gbucket, "broken")

    def source() -> Iterator[bytes]:
        yield b"x" * MiB
        raise ValueError("source failed")

    with pytest.raises(ValueError, match="source failed"):
        client.upload_part(gbucket, "broken", up.upload_id, 1, source())
    assert list(client.list_parts(gbucket, "broken", up.upload_id).parts) == []


def test_upload_part_stream_that_ends_short_of_its_content_length_stores_nothing(
    server: ServerProcess, client: LightningStorClient, gbucket: str
) -> None:
    """A stream cut short by a cancellation or a lost connection can reach
    the server as an ordinary end of stream: with content_length declared,
    a part that ends short (IncompleteBody) or runs long is refused and no
    part is stored, so a complete made from ListParts cannot take a
    truncated part.  The client library declares it for every part."""
    up = client.create_multipart_upload(gbucket, "cut")
    channel, stub, _ = _raw(server)
    try:
        for sent, declared, code in ((3 * MiB, 4 * MiB, "IncompleteBody"), (3 * MiB, 2 * MiB, "InvalidArgument")):
            first = pb.UploadPartRequest(bucket=gbucket, key="cut", upload_id=up.upload_id, part_number=1,
                                         content_length=declared)  # fmt: skip
            rest = [pb.UploadPartRequest(content=b"c" * MiB) for _ in range(sent // MiB)]
            with pytest.raises(grpc.RpcError) as e:
                stub.UploadPart(iter([first, *rest]), metadata=_auth())
            assert (e.value.code(), _code(e.value)) == (grpc.StatusCode.INVALID_ARGUMENT, code)
            assert list(client.list_parts(gbucket, "cut", up.upload_id).parts) == []
        whole = pb.UploadPartRequest(bucket=gbucket, key="cut", upload_id=up.upload_id, part_number=1,
                                     content=b"w" * 1000, content_length=1000)  # fmt: skip
        assert stub.UploadPart(iter([whole]), metadata=_auth()).size == 1000
    finally:
        channel.close()
    with pytest.raises(errors.LightningStorError) as short:  # an iterable: the caller's length is sent
        client.upload_part(gbucket, "cut", up.upload_id, 2, iter([b"a" * 700, b"b" * 300]), content_length=1001)
    assert short.value.code == "IncompleteBody"
    assert client.upload_part(gbucket, "cut", up.upload_id, 2, b"z" * 1001).size == 1001
    assert [p.part_number for p in client.list_parts(gbucket, "cut", up.upload_id).parts] == [1, 2]
    client.abort_multipart_upload(gbucket, "cut", up.upload_id)


def test_upload_part_past_its_deadline_without_content_length_stores_nothing(
    server: ServerProcess, client: LightningStorClient, gbucket: str
) -> None:
    """A raw client that declares no size and whose deadline passes
    mid-stream: grpcio can hand the server the cut stream as an ordinary
    end of stream, so the server checks that the call is still live after
    the last write and before the commit.  Before, most such parts were
    stored short (8 of 10 in a review), and a complete from ListParts took
    them."""
    up = client.create_multipart_upload(gbucket, "late")
    channel, stub, _ = _raw(server)

    def slow(number: int) -> Iterator[pb.UploadPartRequest]:
        yield pb.UploadPartRequest(bucket=gbucket, key="late", upload_id=up.upload_id, part_number=number)
        for i in range(20):
            time.sleep(0.1)
            yield pb.UploadPartRequest(content=bytes([i]) * MiB)

    try:
        for number in range(1, 5):
            with pytest.raises(grpc.RpcError) as e:
                stub.UploadPart(slow(number), metadata=_auth(), timeout=0.75)
            assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    finally:
        channel.close()
    time.sleep(1.0)  # a handler that went on after the client gave up has ended by now
    assert [(p.part_number, p.size) for p in client.list_parts(gbucket, "late", up.upload_id).parts] == []
    client.abort_multipart_upload(gbucket, "late", up.upload_id)


LATER_FIELDS = {"bucket": "other", "key": "other", "upload_id": "other", "part_number": 2,
                "content_length": 20, "content_md5": "AAAAAAAAAAAAAAAAAAAAAA=="}  # fmt: skip


@pytest.mark.parametrize("field", sorted(LATER_FIELDS))
def test_a_later_upload_part_message_naming_a_part_is_refused(
    server: ServerProcess, client: LightningStorClient, gbucket: str, field: str
) -> None:
    """Only the first UploadPart message says which part it is; a later one
    that names another (or repeats a field) is INVALID_ARGUMENT and nothing
    is stored.  Its content went to the first message's part before."""
    up = client.create_multipart_upload(gbucket, "named")
    first = pb.UploadPartRequest(bucket=gbucket, key="named", upload_id=up.upload_id, part_number=1, content=b"a" * 10)
    later = pb.UploadPartRequest(content=b"b" * 10, **{field: LATER_FIELDS[field]})  # type: ignore[arg-type]
    channel, stub, _ = _raw(server)
    try:
        with pytest.raises(grpc.RpcError) as e:
            stub.UploadPart(iter([first, later]), metadata=_auth())
    finally:
        channel.close()
    assert (e.value.code(), _code(e.value)) == (grpc.StatusCode.INVALID_ARGUMENT, "InvalidArgument")
    assert field in (e.value.details() or "")
    assert list(client.list_parts(gbucket, "named", up.upload_id).parts) == []
    client.abort_multipart_upload(gbucket, "named", up.upload_id)


def test_sigterm_ends_health_watches_and_does_not_wait_for_them(tmp_data: object) -> None:
    """A client watching health (grpc's client-side health checking does)
    gets NOT_SERVING at SIGTERM, then the end of its stream, and the server
    stops at once: the open watch held the stop for its whole grace period
    (30 s) before."""
    import signal
    from pathlib import Path

    server = ServerProcess(Path(str(tmp_data))).start()
    try:
        with grpc.insecure_channel(server.grpc_endpoint) as channel:
            watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(), timeout=60)
            statuses = [next(watch).status]
            assert server.proc is not None
            started = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            statuses.extend(reply.status for reply in watch)  # ends with the stream
            assert statuses == [health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING]
            assert watch.code() == grpc.StatusCode.OK  # type: ignore[attr-defined]
            assert server.proc.wait(20) == -signal.SIGTERM
            assert time.monotonic() - started < 10
    finally:
        server.stop()


def test_sigterm_lets_a_streaming_get_finish(tmp_data: object) -> None:
    """On SIGTERM the gRPC server stops taking calls but a GetObject in flight
    streams to its end (grace period) before the process exits cleanly."""
    import signal
    from pathlib import Path

    server = ServerProcess(Path(str(tmp_data))).start()
    try:
        with LightningStorClient.connect(
            f"grpc://{server.grpc_endpoint}", access_key=ROOT_ACCESS_KEY, secret_key=ROOT_SECRET_KEY
        ) as c:
            c.create_bucket("drain")
            data = os.urandom(32 * MiB)  # far more than socket buffers and HTTP/2 windows hold
            up = c.create_multipart_upload("drain", "obj")
            c.complete_multipart_upload("drain", "obj", up.upload_id, [c.upload_part("drain", "obj", up.upload_id, 1, data)])
            stream = c.get_object("drain", "obj")
            chunks = iter(stream)
            received = [next(chunks)]
            assert server.proc is not None
            server.proc.send_signal(signal.SIGTERM)
            received.extend(chunks)
            assert b"".join(received) == data
            assert server.proc.wait(30) == -signal.SIGTERM  # twistd re-raises the signal after a clean stop
            assert any("gRPC API stopped" in line for line in server.output)
    finally:
        server.stop()


# -- listings asked for zero entries -----------------------------------------------------
#
# The page sizes are ``optional uint32`` (proto/lightningstor.proto): unset is
# the server default (1000), and a size *set* to 0 asks for no entries.  That
# page is the core's (:func:`lightningstor.core.listing.asks_nothing`), the same
# as S3's max-keys=0: empty and not truncated, so a client that pages on
# ``is_truncated`` (as ``LightningStorClient.iter_objects`` does) stops.  It
# was truncated with an empty continuation token / markers.


ZERO_LIMIT_KEYS = ["a", "b/1", "b/2", "c"]


@pytest.fixture
def zero_limit_bucket(client: LightningStorClient) -> Iterator[tuple[str, str]]:
    """A bucket holding KEYS and an upload in progress with parts 1-3."""
    name = f"gz-{uuid.uuid4().hex[:16]}"
    client.create_bucket(name)
    for key in ZERO_LIMIT_KEYS:
        client.put_object(name, key, key.encode())
    upload_id = client.create_multipart_upload(name, "mp").upload_id
    for number in (1, 2, 3):
        client.upload_part(name, "mp", upload_id, number, b"x" * number)
    yield name, upload_id
    client.abort_multipart_upload(name, "mp", upload_id)
    for key in ZERO_LIMIT_KEYS:
        client.delete_object(name, key)
    client.delete_bucket(name)


@pytest.mark.parametrize("delimiter", [None, "/"])
def test_list_objects_zero_is_empty_not_truncated(client: LightningStorClient, zero_limit_bucket: tuple[str, str],
                                                  delimiter: str | None) -> None:  # fmt: skip
    bucket, _ = zero_limit_bucket
    page = client.list_objects(bucket, delimiter=delimiter, max_keys=0)
    assert (list(page.objects), list(page.common_prefixes), page.key_count) == ([], [], 0)
    assert page.is_truncated is False and page.next_continuation_token == ""
    default = client.list_objects(bucket)  # unset: the server default, not zero
    assert [o.key for o in default.objects] == ZERO_LIMIT_KEYS and default.is_truncated is False


def test_list_object_versions_zero_is_empty_not_truncated(client: LightningStorClient,
                                                          zero_limit_bucket: tuple[str, str]) -> None:  # fmt: skip
    bucket, _ = zero_limit_bucket
    page = client.list_object_versions(bucket, max_keys=0)
    assert list(page.versions) == [] and page.is_truncated is False
    assert (page.next_key_marker, page.next_version_id_marker) == ("", "")
    assert [v.key for v in client.list_object_versions(bucket).versions] == ZERO_LIMIT_KEYS


def test_multipart_listings_zero_are_empty_not_truncated(client: LightningStorClient,
                                                         zero_limit_bucket: tuple[str, str]) -> None:  # fmt: skip
    bucket, upload_id = zero_limit_bucket
    uploads = client.list_multipart_uploads(bucket, max_uploads=0)
    assert list(uploads.uploads) == [] and uploads.is_truncated is False
    assert (uploads.next_key_marker, uploads.next_upload_id_marker) == ("", "")
    parts = client.list_parts(bucket, "mp", upload_id, max_parts=0)
    assert list(parts.parts) == [] and parts.is_truncated is False and parts.upload.upload_id == upload_id
    assert [p.part_number for p in client.list_parts(bucket, "mp", upload_id).parts] == [1, 2, 3]
    assert [u.upload_id for u in client.list_multipart_uploads(bucket).uploads] == [upload_id]


def test_storage_class_numbers_outside_the_enum_are_refused(
    server: ServerProcess, client: LightningStorClient, gbucket: str
) -> None:
    """A StorageClass number the enum does not define (a newer client's)
    is InvalidStorageClass, never stored as STANDARD; nor is a bucket made
    with one."""
    channel, objects, buckets = _raw(server)
    try:
        with pytest.raises(grpc.RpcError) as info:
            objects.PutObject(
                pb.PutObjectRequest(bucket=gbucket, key="odd-class", content=b"x",
                                    attributes=pb.ObjectAttributes(storage_class=99)),  # type: ignore[arg-type]
                metadata=_auth(),
            )
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and _code(info.value) == "InvalidStorageClass"
        with pytest.raises(errors.NoSuchKey):
            client.head_object(gbucket, "odd-class")
        with pytest.raises(grpc.RpcError) as info:
            buckets.CreateBucket(
                pb.CreateBucketRequest(name=f"odd-{uuid.uuid4().hex[:8]}", storage_class=99),  # type: ignore[arg-type]
                metadata=_auth(),
            )
        assert _code(info.value) == "InvalidStorageClass"
    finally:
        channel.close()


# -- input the S3 API refuses is refused here too ------------------------------------------


def test_header_attributes_beyond_what_a_request_header_holds_are_refused(
    server: ServerProcess, client: LightningStorClient, gbucket: str
) -> None:
    """content_type and the attributes S3's GET and HEAD send back as headers
    are bounded (8 KiB in all, AWS's PUT header limit): a 100 KB content_type
    was stored, and boto3 could then neither HEAD nor GET the object."""
    big = "x/" + "y" * 100_000
    for call in (
        lambda: client.put_object(gbucket, "big-type", b"x", content_type=big),
        lambda: client.put_object(gbucket, "big-type", b"x", cache_control="a" * 5000, content_disposition="b" * 5000),
        lambda: client.create_multipart_upload(gbucket, "big-type", content_type=big),
    ):
        with pytest.raises(errors.InvalidArgument) as info:
            call()
        assert info.value.status == grpc.StatusCode.INVALID_ARGUMENT
    client.put_object(gbucket, "src", b"s")
    with pytest.raises(errors.InvalidArgument):
        client.copy_object(gbucket, "src", gbucket, "big-type", content_type=big)  # REPLACE
    with pytest.raises(errors.NoSuchKey):
        client.head_object(gbucket, "big-type")
    assert [u.key for u in client.list_multipart_uploads(gbucket).uploads] == []
    client.put_object(gbucket, "fits", b"x", content_type="t/" + "y" * 8000)
    s3 = make_client(server.endpoint)
    assert s3.head_object(Bucket=gbucket, Key="fits")["ContentType"] == "t/" + "y" * 8000


def test_a_second_authorization_entry_is_refused(server: ServerProcess, gbucket: str) -> None:
    """As the S3 API refuses a second Authorization header: the first entry
    was used and the others ignored, whichever a proxy had checked."""
    channel, _, buckets = _raw(server)
    good = _auth()[0]
    with channel:
        for entries in ((good, ("authorization", "Bearer garbage")), (good, good)):
            with pytest.raises(grpc.RpcError) as info:
                buckets.ListBuckets(pb.ListBucketsRequest(), metadata=entries, timeout=10)
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert _code(info.value) == "AuthorizationHeaderMalformed"
        buckets.ListBuckets(pb.ListBucketsRequest(), metadata=(good,), timeout=10)


def test_enum_numbers_the_server_does_not_define_are_refused(
    server: ServerProcess, client: LightningStorClient, gbucket: str
) -> None:
    """Proto3 enums are open: a newer client's number used to be taken for
    the default (COPY, no checksum type, DISABLED), giving it something other
    than it asked for without a word; refused now, as S3 refuses an unknown
    x-amz-metadata-directive or x-amz-checksum-type."""
    client.put_object(gbucket, "src", b"s")
    channel, objects, buckets = _raw(server)
    with channel:
        calls = [
            (lambda: objects.CopyObject(pb.CopyObjectRequest(
                source_bucket=gbucket, source_key="src", bucket=gbucket, key="dst", metadata_directive=7,
            ), metadata=_auth(), timeout=10), "InvalidArgument"),
            (lambda: objects.CreateMultipartUpload(pb.CreateMultipartUploadRequest(
                bucket=gbucket, key="mpu", checksum_algorithm=pb.CHECKSUM_ALGORITHM_CRC32, checksum_type=7,
            ), metadata=_auth(), timeout=10), "InvalidRequest"),
            (lambda: buckets.CreateBucket(pb.CreateBucketRequest(
                name=f"g-{uuid.uuid4().hex[:12]}", versioning=pb.VersioningConfig(status=7),
            ), metadata=_auth(), timeout=10), "InvalidArgument"),
        ]  # fmt: skip
        for call, code in calls:
            with pytest.raises(grpc.RpcError) as info:
                call()
            assert (info.value.code(), _code(info.value)) == (grpc.StatusCode.INVALID_ARGUMENT, code)
    with pytest.raises(errors.NoSuchKey):
        client.head_object(gbucket, "dst")
    assert [u.key for u in client.list_multipart_uploads(gbucket).uploads] == []
