"""``LightningStorClient``: the Python client of the native gRPC API (SPEC §4.4).

Thin, synchronous and thread-safe (one channel, shared by threads; grpcio
multiplexes calls over it).  Every method returns the protobuf response
message of :mod:`lightningstor.grpc.gen.lightningstor_pb2` and raises the
typed exceptions of :mod:`lightningstor.client.errors`.

    client = LightningStorClient.connect("grpc://127.0.0.1:9001", token=token)
    client.create_bucket("my-bucket")
    client.put_object("my-bucket", "path/to/object.txt", b"Hello, World!", content_type="text/plain")
    with client.get_object("my-bucket", "path/to/object.txt") as stream:
        content = b"".join(stream)

Authentication: pass a bearer ``token`` (``lightningstor token`` prints one),
or ``access_key``/``secret_key``, from which the client mints short-lived
tokens itself and renews them before they expire.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

import grpc

from lightningstor.client import retry as retries
from lightningstor.client.errors import from_rpc_error
from lightningstor.grpc import token as tokens
from lightningstor.grpc.gen import lightningstor_pb2 as pb
from lightningstor.grpc.gen import lightningstor_pb2_grpc as pb_grpc

MiB = 1 << 20
DEFAULT_PORT = 9001
MESSAGE_CONTENT = 1 * MiB  # bytes per UploadPart message (the server's GetObject size too)
_RENEW_BEFORE_SECONDS = 300

CHECKSUM_ALGORITHMS = {
    "sha256": pb.CHECKSUM_ALGORITHM_SHA256,
    "sha1": pb.CHECKSUM_ALGORITHM_SHA1,
    "md5": pb.CHECKSUM_ALGORITHM_MD5,
    "crc32": pb.CHECKSUM_ALGORITHM_CRC32,
    "crc32c": pb.CHECKSUM_ALGORITHM_CRC32C,
    "crc64nvme": pb.CHECKSUM_ALGORITHM_CRC64NVME,
}
VERSIONING = {"Enabled": pb.VERSIONING_STATUS_ENABLED, "Suspended": pb.VERSIONING_STATUS_SUSPENDED}

T = TypeVar("T")


def parse_target(url: str) -> tuple[str, bool]:
    """``(host:port, tls)`` from ``grpc://h:p``, ``grpcs://h:p``, ``http(s)://h:p`` or ``h:p``."""
    if "://" not in url:
        url = "grpc://" + url
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("grpc", "grpcs", "http", "https"):
        raise ValueError(f"unsupported URL scheme {parts.scheme!r}: use grpc:// or grpcs://")
    if not parts.hostname:
        raise ValueError(f"no host in {url!r}")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{host}:{parts.port or DEFAULT_PORT}", scheme in ("grpcs", "https")


class _Credentials:
    """The bearer token sent with every call (renewed when it is minted here)."""

    def __init__(self, token: str | None, access_key: str | None, secret_key: str | None) -> None:
        if token is None and not (access_key and secret_key):
            raise ValueError("pass token=..., or access_key=... and secret_key=...")
        self._static = token
        self._access_key = access_key
        self._secret_key = secret_key
        self._lock = threading.Lock()
        self._minted: tuple[str, float] | None = None

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return ((tokens.METADATA_KEY, f"Bearer {self.token()}"),)

    def token(self) -> str:
        if self._static is not None:
            return self._static
        assert self._access_key is not None and self._secret_key is not None
        with self._lock:
            now = time.time()
            if self._minted is None or self._minted[1] - now < _RENEW_BEFORE_SECONDS:
                lifetime = tokens.DEFAULT_LIFETIME_SECONDS
                value = tokens.make_token(self._access_key, self._secret_key, lifetime=lifetime, now=now)
                self._minted = (value, now + lifetime)
            return self._minted[0]


class ObjectStream:
    """A GetObject response: ``metadata`` first, then the content as an
    iterator of byte chunks (at most 1 MiB each).  Close it (or use ``with``)
    to cancel a download that is not read to the end."""

    def __init__(self, call: Any) -> None:
        self._call = call
        try:
            first = next(call)
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None
        self.metadata: pb.ObjectMetadata = first.metadata
        self.content_length: int = first.content_length
        self.content_range: pb.ContentRange | None = first.content_range if first.HasField("content_range") else None

    def __iter__(self) -> Iterator[bytes]:
        try:
            for message in self._call:
                if message.content:
                    yield message.content
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None

    def read(self) -> bytes:
        """The whole content (only for objects that fit in memory)."""
        return b"".join(self)

    def close(self) -> None:
        self._call.cancel()

    def __enter__(self) -> ObjectStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _pieces(data: bytes | Iterable[bytes], size: int = MESSAGE_CONTENT) -> Iterator[bytes]:
    """``data`` re-cut into messages of ``size`` bytes (the last may be
    shorter): big chunks are split, small ones gathered, so a caller's 4 KiB
    reads do not become 4 KiB messages."""
    chunks: Iterable[bytes] = (bytes(data),) if isinstance(data, (bytes, bytearray, memoryview)) else data
    pending = bytearray()
    for chunk in chunks:
        if not pending and len(chunk) == size:
            yield bytes(chunk)
            continue
        pending += chunk
        while len(pending) >= size:
            yield bytes(pending[:size])
            del pending[:size]
    if pending:
        yield bytes(pending)


def _attributes(
    content_type: str | None,
    metadata: Mapping[str, str] | None,
    extra: Mapping[str, str] | None = None,
) -> pb.ObjectAttributes:
    attrs = pb.ObjectAttributes(content_type=content_type or "", metadata=dict(metadata or {}))
    for name, value in (extra or {}).items():
        setattr(attrs, name, value)
    return attrs


def _optional(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


KEEPALIVE_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    # What grpcio (1.85) waits for a ping's answer: 60 s by default, and
    # keepalive_timeout_ms above alone does not shorten it.
    ("grpc.http2.ping_timeout_ms", 20_000),
)
"""An HTTP/2 ping after 30 s without a byte from the server while a call
runs (never on an idle channel), and the connection given up when a ping
is not answered within 20 s.  A server whose host vanishes without a reset
(a partition, a power cut) sends no error: without pings a download waited
for it forever, and an upload for the kernel's retransmission timeout
(about 15 minutes).  The call then fails UNAVAILABLE, as on any lost
connection.  LightningStor servers accept pings as often as every 10 s
(``[limits] grpc_min_ping_interval_seconds``); ``options`` passed to
:meth:`LightningStorClient.connect` come later and override these."""


class LightningStorClient:
    """A connection to one LightningStor gRPC endpoint."""

    def __init__(
        self,
        channel: grpc.Channel,
        credentials: _Credentials,
        *,
        timeout: float | None = None,
        retry: retries.RetryPolicy | None = None,
    ) -> None:
        self._channel = channel
        self._credentials = credentials
        self.timeout = timeout
        # see lightningstor.client.retry for which calls are repeated on which errors
        self.retry = retry if retry is not None else retries.RetryPolicy()
        self.objects = pb_grpc.ObjectServiceStub(channel)
        self.buckets = pb_grpc.BucketServiceStub(channel)

    @classmethod
    def connect(
        cls,
        url: str,
        token: str | None = None,
        *,
        access_key: str | None = None,
        secret_key: str | None = None,
        root_certificates: bytes | None = None,
        certificate_chain: bytes | None = None,
        private_key: bytes | None = None,
        timeout: float | None = None,
        retry: retries.RetryPolicy | None = None,
        options: Iterable[tuple[str, Any]] = (),
    ) -> LightningStorClient:
        """Connect to ``url`` (``grpc://host:9001``; ``grpcs://`` for TLS, with
        ``root_certificates`` as PEM when the server's CA is not a system one,
        and ``certificate_chain``/``private_key`` (PEM) as the client
        certificate when the server requires mTLS).

        ``timeout`` (seconds) bounds every unary call; streams are unbounded.
        ``retry`` bounds the repeats of refused or failed calls
        (:class:`~lightningstor.client.retry.RetryPolicy`; ``retry.NO_RETRY`` for none).
        """
        target, tls = parse_target(url)
        if not tls and (root_certificates or private_key or certificate_chain):
            # Certificates for a plaintext channel would be set aside, and the
            # credentials sent in clear: the caller meant TLS.
            raise ValueError(f"{url}: certificates given for a plaintext endpoint (use grpcs:// for TLS)")
        # One entry per name, the caller's winning: grpc takes the first of
        # two entries with one name, so appended options changed nothing.
        channel_options = list({
            "grpc.max_receive_message_length": 8 * MiB,
            "grpc.max_send_message_length": 128 * MiB,
            **dict(KEEPALIVE_OPTIONS),
            **dict(options),
        }.items())
        if tls:
            creds = grpc.ssl_channel_credentials(
                root_certificates=root_certificates,
                private_key=private_key,
                certificate_chain=certificate_chain,
            )
            channel = grpc.secure_channel(target, creds, options=channel_options)
        else:
            channel = grpc.insecure_channel(target, options=channel_options)
        return cls(channel, _Credentials(token, access_key, secret_key), timeout=timeout, retry=retry)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> LightningStorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _unary(self, method: Callable[..., T], request: Any, *, idempotent: bool = False) -> T:
        """One unary call, repeated per :attr:`retry` (``idempotent``: safe to
        repeat even when the server may have acted)."""

        def once() -> T:
            try:
                return method(request, metadata=self._credentials.metadata(), timeout=self.timeout)
            except grpc.RpcError as e:
                raise from_rpc_error(e) from None

        return retries.call(once, self.retry, idempotent=idempotent)

    # -- buckets -------------------------------------------------------------------

    def create_bucket(
        self,
        name: str,
        *,
        org_id: str | None = None,
        project_id: str | None = None,
        versioning: bool = False,
        tags: Mapping[str, str] | None = None,
    ) -> pb.Bucket:
        request = pb.CreateBucketRequest(name=name, org_id=org_id or "", tags=dict(tags or {}), **_optional(project_id=project_id))
        if versioning:
            request.versioning.status = pb.VERSIONING_STATUS_ENABLED
        return self._unary(self.buckets.CreateBucket, request)

    def head_bucket(self, name: str) -> pb.Bucket:
        return self._unary(self.buckets.HeadBucket, pb.HeadBucketRequest(name=name), idempotent=True).bucket

    def delete_bucket(self, name: str) -> None:
        self._unary(self.buckets.DeleteBucket, pb.DeleteBucketRequest(name=name))

    def list_buckets(self) -> list[pb.Bucket]:
        return list(self._unary(self.buckets.ListBuckets, pb.ListBucketsRequest(), idempotent=True).buckets)

    def get_bucket_versioning(self, bucket: str) -> str:
        """``Enabled``, ``Suspended`` or ``Disabled`` (never configured)."""
        config = self._unary(self.buckets.GetBucketVersioning, pb.GetBucketVersioningRequest(bucket=bucket), idempotent=True)
        return {pb.VERSIONING_STATUS_ENABLED: "Enabled", pb.VERSIONING_STATUS_SUSPENDED: "Suspended"}.get(
            config.status, "Disabled"
        )

    def put_bucket_versioning(self, bucket: str, status: str) -> None:
        """``status``: ``Enabled`` or ``Suspended``."""
        if status not in VERSIONING:
            raise ValueError("status must be 'Enabled' or 'Suspended'")
        request = pb.PutBucketVersioningRequest(bucket=bucket, versioning=pb.VersioningConfig(status=VERSIONING[status]))
        self._unary(self.buckets.PutBucketVersioning, request)

    def get_bucket_tagging(self, bucket: str) -> dict[str, str]:
        return dict(self._unary(self.buckets.GetBucketTagging, pb.GetBucketTaggingRequest(bucket=bucket), idempotent=True).tags)

    def put_bucket_tagging(self, bucket: str, tags: Mapping[str, str]) -> None:
        self._unary(self.buckets.PutBucketTagging, pb.PutBucketTaggingRequest(bucket=bucket, tags=dict(tags)))

    def delete_bucket_tagging(self, bucket: str) -> None:
        self._unary(self.buckets.DeleteBucketTagging, pb.DeleteBucketTaggingRequest(bucket=bucket))

    # -- objects -------------------------------------------------------------------

    def put_object(
        self,
        bucket: str,
        key: str,
        content: bytes,
        *,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
        tags: Mapping[str, str] | None = None,
        checksum_algorithm: str | None = None,
        checksum_value: str | None = None,
        if_match: str | None = None,
        if_none_match: str | None = None,
        **attributes: str,
    ) -> pb.PutObjectResponse:
        """Store a small object (the server's limit is 5 MiB by default; use
        :meth:`upload_file` or multipart upload for larger ones).

        ``attributes``: ``content_encoding``, ``content_disposition``,
        ``content_language``, ``cache_control``, ``expires``.
        """
        request = pb.PutObjectRequest(
            bucket=bucket,
            key=key,
            content=bytes(content),
            content_type=content_type or "",
            metadata=dict(metadata or {}),
            tags=dict(tags or {}),
            checksum_value=checksum_value or "",
            **_optional(if_match=if_match, if_none_match=if_none_match),
        )
        if checksum_algorithm:
            request.checksum_algorithm = CHECKSUM_ALGORITHMS[checksum_algorithm.lower()]
        if attributes:
            request.attributes.CopyFrom(_attributes(None, None, attributes))
        return self._unary(self.objects.PutObject, request)

    def get_object(
        self,
        bucket: str,
        key: str,
        *,
        version_id: str | None = None,
        range: str | None = None,  # noqa: A002 - the S3 name
        if_match: str | None = None,
        if_none_match: str | None = None,
    ) -> ObjectStream:
        """Stream an object: ``.metadata``, then iterate for the content.
        Opening the stream is retried (a read is safe to repeat); a stream
        that fails once open is not."""
        request = pb.GetObjectRequest(
            bucket=bucket, key=key,
            **_optional(version_id=version_id, range=range, if_match=if_match, if_none_match=if_none_match),
        )  # fmt: skip
        return retries.call(
            lambda: ObjectStream(self.objects.GetObject(request, metadata=self._credentials.metadata())),
            self.retry, idempotent=True,
        )  # fmt: skip

    def head_object(
        self,
        bucket: str,
        key: str,
        *,
        version_id: str | None = None,
        if_match: str | None = None,
        if_none_match: str | None = None,
    ) -> pb.ObjectMetadata:
        request = pb.HeadObjectRequest(
            bucket=bucket, key=key, **_optional(version_id=version_id, if_match=if_match, if_none_match=if_none_match)
        )
        return self._unary(self.objects.HeadObject, request, idempotent=True).metadata

    def delete_object(self, bucket: str, key: str, *, version_id: str | None = None) -> pb.DeleteObjectResponse:
        request = pb.DeleteObjectRequest(bucket=bucket, key=key, **_optional(version_id=version_id))
        return self._unary(self.objects.DeleteObject, request)

    def delete_objects(
        self, bucket: str, keys: Iterable[str | tuple[str, str | None]], *, quiet: bool = False
    ) -> pb.DeleteObjectsResponse:
        """Delete up to 1000 keys (or ``(key, version_id)`` pairs) in one call."""
        request = pb.DeleteObjectsRequest(bucket=bucket, quiet=quiet)
        for item in keys:
            key, version = (item, None) if isinstance(item, str) else item
            request.objects.add(key=key, **_optional(version_id=version))
        return self._unary(self.objects.DeleteObjects, request)

    def copy_object(
        self,
        source_bucket: str,
        source_key: str,
        bucket: str,
        key: str,
        *,
        source_version_id: str | None = None,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
        tags: Mapping[str, str] | None = None,
        source_if_match: str | None = None,
        source_if_none_match: str | None = None,
        if_none_match: str | None = None,
    ) -> pb.CopyObjectResponse:
        """Server-side copy.  Passing ``content_type`` or ``metadata`` replaces
        the source's attributes (S3's REPLACE directive); ``tags`` replaces its tags."""
        request = pb.CopyObjectRequest(
            source_bucket=source_bucket, source_key=source_key, bucket=bucket, key=key,
            **_optional(source_version_id=source_version_id, source_if_match=source_if_match,
                        source_if_none_match=source_if_none_match, if_none_match=if_none_match),
        )  # fmt: skip
        if content_type is not None or metadata is not None:
            request.metadata_directive = pb.METADATA_DIRECTIVE_REPLACE
            request.attributes.CopyFrom(_attributes(content_type, metadata))
        if tags is not None:
            request.replace_tags = True
            request.tags.update(tags)
        return self._unary(self.objects.CopyObject, request)

    def list_objects(
        self,
        bucket: str,
        *,
        prefix: str = "",
        delimiter: str | None = None,
        max_keys: int | None = None,
        continuation_token: str = "",
        start_after: str = "",
    ) -> pb.ListObjectsResponse:
        """One page; :meth:`iter_objects` follows the pages."""
        request = pb.ListObjectsRequest(
            bucket=bucket, prefix=prefix, delimiter=delimiter or "", continuation_token=continuation_token,
            start_after=start_after, **_optional(max_keys=max_keys),
        )  # fmt: skip
        return self._unary(self.objects.ListObjects, request, idempotent=True)

    def iter_objects(self, bucket: str, *, prefix: str = "", delimiter: str | None = None) -> Iterator[pb.ObjectSummary | str]:
        """Every object (an ``ObjectSummary``) and common prefix (a ``str``) under ``prefix``."""
        token = ""
        while True:
            page = self.list_objects(bucket, prefix=prefix, delimiter=delimiter, continuation_token=token)
            yield from page.common_prefixes
            yield from page.objects
            if not page.is_truncated:
                return
            token = page.next_continuation_token

    def list_object_versions(
        self,
        bucket: str,
        *,
        prefix: str = "",
        delimiter: str | None = None,
        max_keys: int | None = None,
        key_marker: str = "",
        version_id_marker: str = "",
    ) -> pb.ListObjectVersionsResponse:
        request = pb.ListObjectVersionsRequest(
            bucket=bucket, prefix=prefix, delimiter=delimiter or "", key_marker=key_marker,
            version_id_marker=version_id_marker, **_optional(max_keys=max_keys),
        )  # fmt: skip
        return self._unary(self.objects.ListObjectVersions, request, idempotent=True)

    def iter_object_versions(self, bucket: str, *, prefix: str = "") -> Iterator[pb.ObjectVersion]:
        key_marker = version_marker = ""
        while True:
            page = self.list_object_versions(
                bucket, prefix=prefix, key_marker=key_marker, version_id_marker=version_marker
            )
            yield from page.versions
            if not page.is_truncated:
                return
            key_marker, version_marker = page.next_key_marker, page.next_version_id_marker

    def get_object_tagging(self, bucket: str, key: str, *, version_id: str | None = None) -> dict[str, str]:
        request = pb.GetObjectTaggingRequest(bucket=bucket, key=key, **_optional(version_id=version_id))
        return dict(self._unary(self.objects.GetObjectTagging, request, idempotent=True).tags)

    def put_object_tagging(
        self, bucket: str, key: str, tags: Mapping[str, str], *, version_id: str | None = None
    ) -> None:
        request = pb.PutObjectTaggingRequest(bucket=bucket, key=key, tags=dict(tags), **_optional(version_id=version_id))
        self._unary(self.objects.PutObjectTagging, request)

    def delete_object_tagging(self, bucket: str, key: str, *, version_id: str | None = None) -> None:
        request = pb.DeleteObjectTaggingRequest(bucket=bucket, key=key, **_optional(version_id=version_id))
        self._unary(self.objects.DeleteObjectTagging, request)

    # -- multipart -------------------------------------------------------------------

    def create_multipart_upload(
        self,
        bucket: str,
        key: str,
        *,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
        tags: Mapping[str, str] | None = None,
        checksum_algorithm: str | None = None,
    ) -> pb.CreateMultipartUploadResponse:
        request = pb.CreateMultipartUploadRequest(
            bucket=bucket, key=key, attributes=_attributes(content_type, metadata), tags=dict(tags or {})
        )
        if checksum_algorithm:
            request.checksum_algorithm = CHECKSUM_ALGORITHMS[checksum_algorithm.lower()]
        return self._unary(self.objects.CreateMultipartUpload, request)

    def upload_part(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        part_number: int,
        data: bytes | Iterable[bytes],
        *,
        content_md5: str | None = None,
        checksum_value: str | None = None,
        content_length: int | None = None,
    ) -> pb.UploadPartResponse:
        """Upload one part from bytes or from an iterable of byte chunks
        (streamed in messages of at most 1 MiB: memory stays bounded).
        A part given as bytes is retried (re-uploading a part replaces it);
        an iterable can be read only once, so its caller retries
        (:func:`lightningstor.client.transfer.upload_file` does).

        The part's size goes with it (``content_length``: the length of
        bytes, or what the caller gives for an iterable), so that a stream
        cut short by a cancellation or a lost connection is refused by the
        server instead of stored as a shorter part."""
        if isinstance(data, (bytes, bytearray, memoryview)):
            whole = bytes(data)
            return retries.call(
                lambda: self._upload_part_once(
                    bucket, key, upload_id, part_number, whole, content_md5, checksum_value, len(whole)
                ),
                self.retry, idempotent=True,
            )  # fmt: skip
        return self._upload_part_once(
            bucket, key, upload_id, part_number, data, content_md5, checksum_value, content_length
        )

    def _upload_part_once(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        part_number: int,
        data: bytes | Iterable[bytes],
        content_md5: str | None,
        checksum_value: str | None,
        content_length: int | None,
    ) -> pb.UploadPartResponse:

        failures: list[BaseException] = []

        def requests() -> Iterator[pb.UploadPartRequest]:
            yield pb.UploadPartRequest(
                bucket=bucket, key=key, upload_id=upload_id, part_number=part_number,
                **_optional(content_md5=content_md5, checksum_value=checksum_value, content_length=content_length),
            )  # fmt: skip
            try:
                for piece in _pieces(data):
                    yield pb.UploadPartRequest(content=piece)
            except BaseException as e:
                # grpc cancels the call (the server discards the part) and
                # reports UNKNOWN; the caller gets this exception instead.
                failures.append(e)
                raise

        try:
            return self.objects.UploadPart(requests(), metadata=self._credentials.metadata())
        except grpc.RpcError as e:
            if failures:
                raise failures[0] from None
            raise from_rpc_error(e) from None

    def complete_multipart_upload(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        parts: Iterable[pb.UploadPartResponse | pb.CompletedPart | tuple[int, str]],
        *,
        if_none_match: str | None = None,
        if_match: str | None = None,
    ) -> pb.CompleteMultipartUploadResponse:
        """``parts``: what :meth:`upload_part` returned, or ``(number, etag)`` pairs, ascending."""
        request = pb.CompleteMultipartUploadRequest(
            bucket=bucket, key=key, upload_id=upload_id, **_optional(if_none_match=if_none_match, if_match=if_match)
        )
        for part in parts:
            if isinstance(part, tuple):
                request.parts.add(part_number=part[0], etag=part[1])
            else:
                request.parts.add(part_number=part.part_number, etag=part.etag)
        return self._unary(self.objects.CompleteMultipartUpload, request, idempotent=True)

    def abort_multipart_upload(self, bucket: str, key: str, upload_id: str) -> None:
        request = pb.AbortMultipartUploadRequest(bucket=bucket, key=key, upload_id=upload_id)
        self._unary(self.objects.AbortMultipartUpload, request)

    def list_multipart_uploads(
        self,
        bucket: str,
        *,
        prefix: str = "",
        delimiter: str | None = None,
        key_marker: str = "",
        upload_id_marker: str = "",
        max_uploads: int | None = None,
    ) -> pb.ListMultipartUploadsResponse:
        request = pb.ListMultipartUploadsRequest(
            bucket=bucket, prefix=prefix, delimiter=delimiter or "", key_marker=key_marker,
            upload_id_marker=upload_id_marker, **_optional(max_uploads=max_uploads),
        )  # fmt: skip
        return self._unary(self.objects.ListMultipartUploads, request, idempotent=True)

    def list_parts(
        self, bucket: str, key: str, upload_id: str, *, part_number_marker: int = 0, max_parts: int | None = None
    ) -> pb.ListPartsResponse:
        request = pb.ListPartsRequest(
            bucket=bucket, key=key, upload_id=upload_id, part_number_marker=part_number_marker,
            **_optional(max_parts=max_parts),
        )  # fmt: skip
        return self._unary(self.objects.ListParts, request, idempotent=True)

    # -- files -------------------------------------------------------------------------

    def upload_file(self, path: str, bucket: str, key: str, **kwargs: Any) -> Any:
        """Upload a local file; see :func:`lightningstor.client.transfer.upload_file`."""
        from lightningstor.client.transfer import upload_file

        return upload_file(self, path, bucket, key, **kwargs)

    def download_file(self, bucket: str, key: str, path: str, **kwargs: Any) -> pb.ObjectMetadata:
        """Download to a local file; see :func:`lightningstor.client.transfer.download_file`."""
        from lightningstor.client.transfer import download_file

        return download_file(self, bucket, key, path, **kwargs)
