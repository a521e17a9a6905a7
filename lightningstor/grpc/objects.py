"""``lightningstor.v1.ObjectService``: objects, listings, multipart uploads, tags.

Handlers translate messages into the same core calls the S3 handlers make
(``lightningstor.s3.handlers.objects`` / ``multipart``); the reactor-side
steps of each operation are small ``inlineCallbacks`` methods run through
:meth:`Rpc.call`, the thread-side loops (streaming a body in or out) feed or
drain the ChunkManager one message at a time, so memory stays bounded by a
few pieces whatever the object's size.

Range and ETag conditions use the S3 layer's parsers
(:mod:`lightningstor.s3.ranges`, :mod:`lightningstor.s3.conditions`): the
gRPC request carries the same header syntax, and S3's semantics are the
contract.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from itertools import chain
from typing import Any, TypeVar

import grpc
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.logger import Logger

from lightningstor import errors
from lightningstor.core.access import OBJECTS_GET, OBJECTS_LIST, AskedAs, in_scope
from lightningstor.core.acl import object_owner
from lightningstor.core.attributes import check_object_tags
from lightningstor.core.copy import check_copy_changes, resolve_copy_source
from lightningstor.core.multipart import PartRef, validate_part_number
from lightningstor.core.objects import (
    DEFAULT_CHECKSUM,
    READS_WHEN_REPLACED,
    PutAttrs,
    add_default_checksum,
    may_have_committed,
    replaced_meanwhile,
    validate_key,
    verify_digests,
)
from lightningstor.core.sse import KEY_REQUIRED, customer_encrypted
from lightningstor.core.types import Bucket, ObjectRecord, Principal
from lightningstor.core.versions import reported_version_id
from lightningstor.grpc import convert
from lightningstor.grpc.base import MAX_CONTENT_MESSAGE, Gate, Rpc, optional, require, streaming, unary
from lightningstor.grpc.gen import lightningstor_pb2 as pb
from lightningstor.grpc.gen import lightningstor_pb2_grpc as pb_grpc
from lightningstor.s3 import conditions, ranges

log = Logger()
_T = TypeVar("_T")


def encode_token(key: str) -> str:
    """ListObjects continuation token: opaque to clients, the last key inside."""
    return base64.urlsafe_b64encode(key.encode("utf-8")).decode("ascii")


def decode_token(value: str) -> str:
    try:
        key = base64.urlsafe_b64decode(value.encode("ascii")).decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError):
        key = ""
    if not key:
        raise errors.InvalidArgument(
            "The continuation token provided is incorrect", ArgumentName="continuation_token"
        )
    return key


def _versioned(value: str | None) -> dict[str, str]:
    return {} if value is None else {"version_id": value}


def _if_none_match_any(value: str | None) -> bool:
    """Writes support only ``If-None-Match: *`` (create-only), as the S3 layer."""
    if value is None:
        return False
    if value.strip() != "*":
        raise errors.NotImplementedS3("if_none_match on writes supports only '*'")
    return True


def _refuse_customer_encrypted(record: Any) -> None:
    """An SSE-C object is read or described only with its customer key,
    which the gRPC API cannot carry: as S3's GET and HEAD without the key,
    InvalidRequest (INVALID_ARGUMENT).  Its metadata and checksums are the
    plaintext's (a checksum would confirm a guess of the content), and an
    empty one needs no cipher to read, so the refusal comes before either."""
    if customer_encrypted(record.encryption):
        raise errors.InvalidRequest(KEY_REQUIRED)


def _read_conditions(request: Any, record: ObjectRecord) -> None:
    headers = {}
    for field, header in (("if_match", "if-match"), ("if_none_match", "if-none-match")):
        value = optional(request, field)
        if value is not None:
            headers[header] = value
    conditions.check_read_conditions(headers, record.etag, record.created_at)


# The fields of an UploadPart stream's first message that say what the part
# is (the strings and number, then the optional ones); later messages carry
# content only.
_PART_NAMING_FIELDS = ("bucket", "key", "upload_id", "part_number")
_PART_OPTIONAL_FIELDS = ("content_md5", "checksum_value", "content_length")


def _refuse_part_header(message: pb.UploadPartRequest) -> None:
    """INVALID_ARGUMENT for a later UploadPart message that sets a field of
    the first's: its content would otherwise go silently to the part the
    first message named, whatever this one names."""
    named = [f for f in _PART_NAMING_FIELDS if getattr(message, f)]
    named += [f for f in _PART_OPTIONAL_FIELDS if message.HasField(f)]
    if named:
        raise errors.InvalidArgument(
            f"Only the first UploadPart message may set {named[0]}; later messages carry content only",
            ArgumentName=named[0],
        )


def _feed(writer: Any, data: bytes) -> Any:
    """Reactor side of one streamed message: write it, wait while the writer is behind."""
    writer.write(data)
    return writer.when_drained() if writer.should_pause else None


def _open_first_piece(core: Any, record: ObjectRecord, start: int, length: int) -> Deferred[tuple[Any, bytes | None]]:
    """Reactor side: open a reader of the range and read its first piece:
    Deferred[(reader, piece)]."""

    def opened(reader: Any) -> Deferred[tuple[Any, bytes | None]]:
        d: Deferred[bytes | None] = reader.next_piece()
        return d.addCallback(lambda piece: (reader, piece))

    d: Deferred[Any] = core.open_reader(record, start, length)
    return d.addCallback(opened)


def _prefetch(reader: Any) -> Future[bytes | None]:
    """Reactor side: start reading the next piece; the handler thread waits on
    the returned future only when it needs the piece."""
    future: Future[bytes | None] = Future()
    d = reader.next_piece()
    d.addCallbacks(future.set_result, lambda failure: future.set_exception(failure.value))
    return future


class ObjectServicer(pb_grpc.ObjectServiceServicer):
    SERVICE_NAME = pb.DESCRIPTOR.services_by_name["ObjectService"].full_name  # access log paths

    def __init__(self, rpc: Rpc) -> None:
        self.rpc = rpc
        self.core = rpc.core

    # -- shared reactor-side steps ------------------------------------------------

    @inlineCallbacks
    def _lookup(self, gate: Gate, name: str, key: str, version_id: str | None) -> Any:
        bucket = yield gate.bucket(name, key)
        try:
            record = yield self.core.objects.head(bucket, key, version_id)
        except errors.NoSuchKey:
            # NOT_FOUND only for a caller who may list the bucket; anyone
            # else is refused, as over S3 (handlers/objects.py:_missing), so
            # a caller allowed to read some keys cannot probe for others.
            listing = AskedAs(gate, op="ListObjects")
            yield self.core.access.allow(gate.principal, bucket, OBJECTS_LIST, None, gate.decisions.append, listing)
            raise
        return bucket, record

    def _bucket(self, principal: Principal, name: str, key: str | None = None) -> Bucket:
        """The bucket, resolved in the caller's scope and authorized for this
        RPC's action on it (or on its object ``key``)."""
        bucket: Bucket = self.rpc.bucket(principal, require(name, "bucket"), key)
        return bucket

    # -- PutObject ----------------------------------------------------------------

    @unary
    def PutObject(self, principal: Principal, request: pb.PutObjectRequest, context: grpc.ServicerContext) -> pb.PutObjectResponse:
        name, key = require(request.bucket, "bucket"), require(request.key, "key")
        limit = self.rpc.options.max_put_object_bytes
        if len(request.content) > limit:
            raise errors.EntityTooLarge(
                f"PutObject takes at most {limit} bytes; upload larger objects with a multipart upload",
                MaxSizeAllowed=str(limit),
                ProposedSize=str(len(request.content)),
            )
        attrs = convert.put_attrs(
            request.attributes if request.HasField("attributes") else None,
            max_metadata_bytes=self.rpc.options.max_metadata_bytes,
            owner=principal.principal_id,
            content_type=request.content_type,
            metadata=request.metadata,
            tags=request.tags,
        )
        algorithm = convert.checksum_name(request.checksum_algorithm, allow_md5=True)
        if algorithm == "md5":
            attrs.content_md5 = request.checksum_value or None
        elif algorithm is not None:
            attrs.store_checksums = (algorithm,)
            if request.checksum_value:
                attrs.expected_checksums = {algorithm: convert.checksum_value(algorithm, request.checksum_value)}
        elif request.checksum_value:
            raise errors.InvalidArgument("checksum_value needs checksum_algorithm", ArgumentName="checksum_value")
        add_default_checksum(attrs)  # none chosen (or MD5 only): the core's default, as S3's PutObject
        attrs.if_none_match_any = _if_none_match_any(optional(request, "if_none_match"))
        attrs.if_match = optional(request, "if_match")
        bucket, record = self.rpc.call(self._put, self.rpc.gate(principal), name, key, request.content, attrs)
        self.rpc.wrote(record.size)
        return pb.PutObjectResponse(
            etag=record.etag,
            checksums=convert.checksums(record.checksums),
            size=record.size,
            **_versioned(reported_version_id(bucket, record.version_id)),
        )

    @inlineCallbacks
    def _put(self, gate: Gate, name: str, key: str, content: bytes, attrs: PutAttrs) -> Any:
        bucket = yield gate.bucket(name, key)
        validate_key(key)
        # Object Ownership: BucketOwnerEnforced gives the bucket owner what is
        # written (gRPC sets no ACL: ACLs are an S3 matter, core/acl.py).
        attrs.owner = object_owner(bucket, attrs.owner, None)
        # The bucket's default encryption applies (no SSE field on this RPC).
        algorithms = tuple(sorted({*attrs.store_checksums, *attrs.expected_checksums}))
        # A body that can never be committed is refused before it is
        # written, as S3's PutObject does from its Content-Length.
        yield self.core.quotas.check_put(bucket, key, len(content))
        writer = self.core.new_writer(bucket, key, attrs.encryption, algorithms)
        try:
            writer.write(content)
            result = yield writer.finish()
            checksums = verify_digests(attrs, result.md5_hex, result.digests)
            record = self.core.objects.new_record(key, result, attrs, checksums)
            yield self.core.objects.commit(bucket, record, attrs)
        except BaseException as e:
            if not may_have_committed(e):
                yield writer.abort()
            raise
        return bucket, record

    # -- GetObject / HeadObject ---------------------------------------------------------

    @streaming
    def GetObject(self, principal: Principal, request: pb.GetObjectRequest, context: grpc.ServicerContext) -> Iterator[pb.GetObjectResponse]:
        """The metadata message, then the content.

        The first piece is read before the metadata is sent: a version
        overwritten or deleted after its lookup whose chunks are gone
        already (``storage.free_delay_seconds``, which a slow start may
        outlast) is looked up again (``READS_WHEN_REPLACED`` lookups at
        most) and the current one answered, or NOT_FOUND, as the S3 GET does, instead of a stream that promised
        the old version and ends in INTERNAL.  Once a message was sent that
        is too late: a later loss ends the stream with an error.
        """
        gate = self.rpc.gate(principal)
        first, reader, piece = self._again_if_replaced(
            "GetObject", request.bucket, request.key, lambda: self._open_object(gate, request)
        )
        yield first
        # One piece of read-ahead: the next piece is read from storage while
        # this one is being sent (two pieces in memory at most).
        while piece is not None:
            upcoming = self.rpc.call(_prefetch, reader)
            if len(piece) <= MAX_CONTENT_MESSAGE:
                yield pb.GetObjectResponse(content=piece)
            else:
                view = memoryview(piece)
                for offset in range(0, len(piece), MAX_CONTENT_MESSAGE):
                    yield pb.GetObjectResponse(content=bytes(view[offset : offset + MAX_CONTENT_MESSAGE]))
            piece = upcoming.result()

    def _open_object(self, gate: Gate, request: pb.GetObjectRequest) -> tuple[pb.GetObjectResponse, Any, bytes | None]:
        """Look the object up, check the request's conditions and range
        against it and read the first piece of what it asks: (the metadata
        message, the reader, the first piece); no reader and no piece for
        an empty answer."""
        bucket, record = self.rpc.call(
            self._lookup, gate, require(request.bucket, "bucket"), require(request.key, "key"),
            optional(request, "version_id"),
        )  # fmt: skip
        _read_conditions(request, record)
        _refuse_customer_encrypted(record)
        span = ranges.parse_range(optional(request, "range"), record.size)
        first = pb.GetObjectResponse(metadata=convert.object_metadata(bucket, record, tags=in_scope(gate.principal, bucket)))
        if span is None:
            start, length = 0, record.size
        else:
            start, length = span[0], span[1] - span[0] + 1
            first.content_range.CopyFrom(pb.ContentRange(start=span[0], end=span[1], size=record.size))
        first.content_length = length
        if length == 0:
            return first, None, None
        reader, piece = self.rpc.call(_open_first_piece, self.core, record, start, length)
        return first, reader, piece

    @unary
    def HeadObject(self, principal: Principal, request: pb.HeadObjectRequest, context: grpc.ServicerContext) -> pb.HeadObjectResponse:
        bucket, record = self.rpc.call(
            self._lookup, self.rpc.gate(principal), require(request.bucket, "bucket"), require(request.key, "key"),
            optional(request, "version_id"),
        )  # fmt: skip
        _read_conditions(request, record)
        _refuse_customer_encrypted(record)
        return pb.HeadObjectResponse(metadata=convert.object_metadata(bucket, record, tags=in_scope(principal, bucket)))

    # -- deleting -------------------------------------------------------------------------

    @unary
    def DeleteObject(self, principal: Principal, request: pb.DeleteObjectRequest, context: grpc.ServicerContext) -> pb.DeleteObjectResponse:
        bucket = self._bucket(principal, request.bucket, require(request.key, "key"))
        outcome = self.rpc.call(
            self.core.objects.delete, bucket, request.key, optional(request, "version_id"),
            owner=principal.principal_id,
        )  # fmt: skip
        return pb.DeleteObjectResponse(delete_marker=outcome.delete_marker, **_versioned(outcome.version_id))

    @unary
    def DeleteObjects(self, principal: Principal, request: pb.DeleteObjectsRequest, context: grpc.ServicerContext) -> pb.DeleteObjectsResponse:
        limit = self.rpc.options.max_delete_keys
        if not request.objects:
            raise errors.InvalidArgument("objects must name at least one object", ArgumentName="objects")
        if len(request.objects) > limit:
            raise errors.InvalidArgument(f"At most {limit} objects may be deleted at once", ArgumentName="objects")
        # Resolved without a bucket-wide check: each key is authorized alone.
        bucket = self.rpc.call(self.core.access.resolve, principal, require(request.bucket, "bucket"))
        items = [(o.key, optional(o, "version_id")) for o in request.objects]
        gate = self.rpc.gate(principal)
        result = self.rpc.call(
            self.core.delete_objects, bucket, items, owner=principal.principal_id,
            principal=principal, trail=gate.decisions.append, request=gate,
        )  # fmt: skip
        response = pb.DeleteObjectsResponse()
        if not request.quiet:
            for d in result.deleted:
                entry = response.deleted.add(key=d.key, delete_marker=d.delete_marker, **_versioned(d.version_id))
                if d.delete_marker_version_id is not None:
                    entry.delete_marker_version_id = d.delete_marker_version_id
        for f in result.failed:
            response.errors.add(key=f.key, code=f.code, message=f.message, **_versioned(f.version_id))
        return response

    # -- CopyObject -----------------------------------------------------------------------

    @unary
    def CopyObject(self, principal: Principal, request: pb.CopyObjectRequest, context: grpc.ServicerContext) -> pb.CopyObjectResponse:
        """A source overwritten or deleted after its lookup, whose old chunks
        were freed before the copy read them, is looked up again and what is
        there then copied (or NOT_FOUND answered), as the S3 CopyObject does
        (``READS_WHEN_REPLACED`` lookups at most)."""
        return self._again_if_replaced(
            "CopyObject", request.source_bucket, request.source_key, lambda: self._copy_object(principal, request)
        )

    def _again_if_replaced(self, method: str, bucket: str, key: str, attempt: Callable[[], _T]) -> _T:
        """``attempt()``, made again while it fails because the version it
        read was replaced meanwhile (``replaced_meanwhile``), up to
        ``READS_WHEN_REPLACED`` attempts in all."""
        left = READS_WHEN_REPLACED
        while True:
            left -= 1
            try:
                return attempt()
            except Exception as e:
                if left == 0 or not replaced_meanwhile(e):
                    raise
                self.rpc.reactor.callFromThread(
                    log.info, "{method} {bucket}/{key}: the version read was replaced meanwhile ({err}); reading it again",
                    method=method, bucket=bucket, key=key, err=e,
                )  # fmt: skip

    def _copy_object(self, principal: Principal, request: pb.CopyObjectRequest) -> pb.CopyObjectResponse:
        if request.metadata_directive not in (pb.METADATA_DIRECTIVE_COPY, pb.METADATA_DIRECTIVE_REPLACE):
            # An undefined number (a newer client's) is refused as S3 refuses
            # an unknown x-amz-metadata-directive, never taken for COPY.
            raise errors.InvalidArgument("Unknown metadata directive.", ArgumentName="metadata_directive")
        replace = request.metadata_directive == pb.METADATA_DIRECTIVE_REPLACE
        src_version = optional(request, "source_version_id")
        src_bucket, dest_bucket, source = self.rpc.call(
            self._copy_source, self.rpc.gate(principal), request, src_version
        )
        source_conditions = {}
        for field, header in (("source_if_match", "x-amz-copy-source-if-match"),
                              ("source_if_none_match", "x-amz-copy-source-if-none-match")):  # fmt: skip
            value = optional(request, field)
            if value is not None:
                source_conditions[header] = value
        conditions.check_copy_source_conditions(source_conditions, source.etag, source.created_at)
        check_copy_changes(
            src_bucket, request.source_key, src_version, dest_bucket, request.key,
            replaces_metadata=replace, sets_storage_class=False,
        )  # fmt: skip
        replacement = None
        if replace:
            replacement = convert.put_attrs(
                request.attributes, max_metadata_bytes=self.rpc.options.max_metadata_bytes, owner=principal.principal_id
            )
        tags = None
        if request.replace_tags:
            tags = dict(request.tags)
            check_object_tags(tags)
        write_conditions = PutAttrs(if_none_match_any=_if_none_match_any(optional(request, "if_none_match")))
        record = self.rpc.call(
            self.core.copy_object, source, dest_bucket, request.key,
            replace_metadata=replacement, tags=tags, owner=object_owner(dest_bucket, principal.principal_id, None),
            conditions=write_conditions,
        )  # fmt: skip
        self.rpc.wrote(record.size)
        response = pb.CopyObjectResponse(
            etag=record.etag,
            last_modified=record.created_at,
            checksums=convert.checksums(record.checksums),
            size=record.size,
            **_versioned(reported_version_id(dest_bucket, record.version_id)),
        )
        source_reported = reported_version_id(src_bucket, source.version_id)
        if source_reported is not None:
            response.source_version_id = source_reported
        return response

    @inlineCallbacks
    def _copy_source(self, gate: Gate, request: pb.CopyObjectRequest, version_id: str | None) -> Any:
        dest_bucket = yield gate.bucket(require(request.bucket, "bucket"), require(request.key, "key"))
        validate_key(request.key)
        src_bucket = yield gate.bucket(
            require(request.source_bucket, "source_bucket"), require(request.source_key, "source_key"), OBJECTS_GET
        )
        source = yield resolve_copy_source(self.core, src_bucket, require(request.source_key, "source_key"), version_id)
        return src_bucket, dest_bucket, source

    # -- listings ---------------------------------------------------------------------------

    @unary
    def ListObjects(self, principal: Principal, request: pb.ListObjectsRequest, context: grpc.ServicerContext) -> pb.ListObjectsResponse:
        bucket = self._bucket(principal, request.bucket)
        max_keys = optional(request, "max_keys")
        after = decode_token(request.continuation_token) if request.continuation_token else (request.start_after or None)
        result = self.rpc.call(
            self.core.list_objects, bucket, prefix=request.prefix, delimiter=request.delimiter or None,
            after=after, max_keys=1000 if max_keys is None else max_keys,
        )  # fmt: skip
        next_token = encode_token(result.next_marker) if result.is_truncated and result.next_marker else ""
        return pb.ListObjectsResponse(
            objects=[convert.object_summary(e) for e in result.entries],
            common_prefixes=result.common_prefixes,
            is_truncated=result.is_truncated,
            next_continuation_token=next_token,
            key_count=len(result.entries) + len(result.common_prefixes),
        )

    @unary
    def ListObjectVersions(self, principal: Principal, request: pb.ListObjectVersionsRequest, context: grpc.ServicerContext) -> pb.ListObjectVersionsResponse:
        bucket = self._bucket(principal, request.bucket)
        max_keys = optional(request, "max_keys")
        result = self.rpc.call(
            self.core.list_object_versions, bucket, prefix=request.prefix, delimiter=request.delimiter or None,
            key_marker=request.key_marker or None, version_id_marker=request.version_id_marker or None,
            max_keys=1000 if max_keys is None else max_keys,
        )  # fmt: skip
        return pb.ListObjectVersionsResponse(
            versions=[convert.object_version(e) for e in result.entries],
            common_prefixes=result.common_prefixes,
            is_truncated=result.is_truncated,
            next_key_marker=result.next_marker or "",
            next_version_id_marker=result.next_version_id_marker or "",
        )

    # -- multipart --------------------------------------------------------------------------

    @unary
    def CreateMultipartUpload(self, principal: Principal, request: pb.CreateMultipartUploadRequest, context: grpc.ServicerContext) -> pb.CreateMultipartUploadResponse:
        bucket = self._bucket(principal, request.bucket, require(request.key, "key"))
        attrs = convert.put_attrs(
            request.attributes if request.HasField("attributes") else None,
            max_metadata_bytes=self.rpc.options.max_metadata_bytes,
            owner=object_owner(bucket, principal.principal_id, None),
            tags=request.tags,
        )
        upload = self.rpc.call(
            self.core.multipart.create, bucket, require(request.key, "key"), attrs, initiator=principal,
            checksum_algorithm=convert.checksum_name(request.checksum_algorithm),
            checksum_type=convert.checksum_type_name(request.checksum_type),
        )  # fmt: skip
        info = convert.upload_message(upload)
        return pb.CreateMultipartUploadResponse(
            bucket=bucket.name, key=upload.key, upload_id=upload.upload_id,
            checksum_algorithm=info.checksum_algorithm, checksum_type=info.checksum_type,
        )  # fmt: skip

    @unary
    def UploadPart(self, principal: Principal, requests: Iterator[pb.UploadPartRequest], context: grpc.ServicerContext) -> pb.UploadPartResponse:
        first = next(requests, None)
        if first is None:
            raise errors.InvalidArgument("UploadPart needs at least one message")
        validate_part_number(first.part_number)
        upload, writer, attrs = self.rpc.call(self._begin_part, self.rpc.gate(principal), first)
        limit = self.core.multipart.max_part_size
        # The declared size: a cancelled or cut-off stream can end here as
        # an ordinary end of stream (grpcio reports the reset only later),
        # and then this is what tells a short part from a whole one.
        declared = first.content_length if first.HasField("content_length") else None
        received = 0
        try:
            for message in chain([first], requests):
                if message is not first:
                    _refuse_part_header(message)
                if not message.content:
                    continue
                received += len(message.content)
                if received > limit:
                    raise errors.EntityTooLarge(MaxSizeAllowed=str(limit), ProposedSize=str(received))
                if declared is not None and received > declared:
                    raise errors.InvalidArgument(
                        "The part has more bytes than its content_length",
                        ArgumentName="content_length",
                        ArgumentValue=str(declared),
                    )
                self.rpc.call(_feed, writer, message.content)
            if declared is not None and received < declared:
                raise errors.IncompleteBody(
                    f"The part ended after {received} of the {declared} bytes its content_length declares"
                )
            result = self.rpc.call(writer.finish)
            # A stream its client cancelled (a deadline passed) can end here as
            # an ordinary end of stream; grpcio marks the call inactive soon
            # after, mostly while the writer's last chunk was being synced.
            # Without a declared size that is the only sign the part is cut.
            if not context.is_active():
                raise errors.IncompleteBody("The call ended (cancelled, or past its deadline) before the part was stored")
            part = self.rpc.call(self._commit_part, upload, first.part_number, result, attrs)
        except Exception as e:
            # A commit whose outcome is unknown (the metadata store went away
            # after it may have applied it) keeps its chunks: the part may be
            # listed, and a complete would make an object of them.  The
            # orphan collector takes them if it was not.  As over S3.
            if not may_have_committed(e):
                self.rpc.call(writer.abort)
            raise
        self.rpc.wrote(part.size)
        checksums = part.checksums
        if not checksums and part.default_checksum is not None:
            # An upload without a checksum algorithm: the part's default
            # CRC64NVME, as S3's UploadPart answers it.
            checksums = {DEFAULT_CHECKSUM: part.default_checksum}
        return pb.UploadPartResponse(
            part_number=part.part_number, etag=part.etag, size=part.size, checksums=convert.checksums(checksums)
        )

    @inlineCallbacks
    def _begin_part(self, gate: Gate, first: pb.UploadPartRequest) -> Any:
        principal = gate.principal
        bucket = yield gate.bucket(require(first.bucket, "bucket"), require(first.key, "key"))
        upload = yield self.core.multipart.get(bucket, require(first.key, "key"), require(first.upload_id, "upload_id"))
        algorithm = upload.checksum_algorithm
        value = optional(first, "checksum_value")
        if value is not None and algorithm is None:
            raise errors.InvalidRequest("The upload was created without a checksum algorithm; checksum_value cannot be checked")
        attrs = PutAttrs(
            content_md5=optional(first, "content_md5"),
            expected_checksums={algorithm: convert.checksum_value(algorithm, value)} if algorithm and value is not None else {},
            store_checksums=(algorithm,) if algorithm else (),
            owner=principal.principal_id,
        )
        yield self.core.multipart.check_part_length(upload, first.part_number, optional(first, "content_length"))
        writer = self.core.multipart.new_part_writer(upload)
        return upload, writer, attrs

    def _commit_part(self, upload: Any, part_number: int, result: Any, attrs: PutAttrs) -> Any:
        checksums = verify_digests(attrs, result.md5_hex, result.digests)
        return self.core.multipart.commit_part(upload, part_number, result, checksums)

    @unary
    def CompleteMultipartUpload(self, principal: Principal, request: pb.CompleteMultipartUploadRequest, context: grpc.ServicerContext) -> pb.CompleteMultipartUploadResponse:
        if not request.parts:
            raise errors.InvalidArgument("parts must list at least one part", ArgumentName="parts")
        bucket = self._bucket(principal, request.bucket, require(request.key, "key"))
        key, upload_id = require(request.key, "key"), require(request.upload_id, "upload_id")
        algorithm = None
        if request.HasField("checksum_value") or any(p.HasField("checksum_value") for p in request.parts):
            # Checksum values are of the upload's algorithm: look it up (only
            # then); the core answers it for an upload already completed too,
            # so a repeated complete gets the first one's answer.
            algorithm = self.rpc.call(self.core.multipart.checksum_algorithm, bucket, key, upload_id)

        def checksum_of(message: Any) -> dict[str, str]:
            value = optional(message, "checksum_value")
            if value is None:
                return {}
            if algorithm is None:
                raise errors.InvalidRequest(
                    "The upload was created without a checksum algorithm; checksum_value cannot be checked"
                )
            return {algorithm: value}

        listed = [PartRef(p.part_number, p.etag, checksum_of(p)) for p in request.parts]
        write_conditions = PutAttrs(
            if_none_match_any=_if_none_match_any(optional(request, "if_none_match")),
            if_match=optional(request, "if_match"),
        )
        done = self.rpc.call(
            self.core.multipart.complete, bucket, key, upload_id, listed, conditions=write_conditions,
            expected_checksums=checksum_of(request), checksum_type=convert.checksum_type_name(request.checksum_type),
            object_size=optional(request, "object_size"),
            public_acls_blocked=self.core.access.public_access_block(bucket).block_public_acls,
        )  # fmt: skip
        record = done.record
        self.rpc.wrote(record.size)
        return pb.CompleteMultipartUploadResponse(
            bucket=bucket.name,
            key=key,
            etag=record.etag,
            checksums=convert.checksums(done.answer_checksums),
            checksum_type=convert.CHECKSUM_TYPE_ENUMS.get(done.checksum_type, pb.CHECKSUM_TYPE_UNSPECIFIED),
            size=record.size,
            **_versioned(reported_version_id(bucket, record.version_id)),
        )

    @unary
    def AbortMultipartUpload(self, principal: Principal, request: pb.AbortMultipartUploadRequest, context: grpc.ServicerContext) -> pb.AbortMultipartUploadResponse:
        bucket = self._bucket(principal, request.bucket, require(request.key, "key"))
        self.rpc.call(
            self.core.multipart.abort, bucket, require(request.key, "key"), require(request.upload_id, "upload_id")
        )
        return pb.AbortMultipartUploadResponse()

    @unary
    def ListMultipartUploads(self, principal: Principal, request: pb.ListMultipartUploadsRequest, context: grpc.ServicerContext) -> pb.ListMultipartUploadsResponse:
        bucket = self._bucket(principal, request.bucket)
        max_uploads = optional(request, "max_uploads")
        listing = self.rpc.call(
            self.core.multipart.list_uploads, bucket, prefix=request.prefix, delimiter=request.delimiter or None,
            key_marker=request.key_marker, upload_id_marker=request.upload_id_marker,
            max_uploads=1000 if max_uploads is None else max_uploads,
        )  # fmt: skip
        return pb.ListMultipartUploadsResponse(
            uploads=[convert.upload_message(u) for u in listing.uploads],
            common_prefixes=listing.common_prefixes,
            is_truncated=listing.is_truncated,
            next_key_marker=listing.next_key_marker,
            next_upload_id_marker=listing.next_upload_id_marker,
        )

    @unary
    def ListParts(self, principal: Principal, request: pb.ListPartsRequest, context: grpc.ServicerContext) -> pb.ListPartsResponse:
        bucket = self._bucket(principal, request.bucket, require(request.key, "key"))
        max_parts = optional(request, "max_parts")
        listing = self.rpc.call(
            self.core.multipart.list_parts, bucket, require(request.key, "key"), require(request.upload_id, "upload_id"),
            marker=request.part_number_marker, max_parts=1000 if max_parts is None else max_parts,
        )  # fmt: skip
        return pb.ListPartsResponse(
            upload=convert.upload_message(listing.upload),
            # An SSE-C upload's part checksums are the plaintext's, and the
            # gRPC API carries no customer key: left out (as over S3 without it).
            parts=[convert.part_message(p, sealed=customer_encrypted(listing.upload.encryption)) for p in listing.parts],
            is_truncated=listing.is_truncated,
            next_part_number_marker=listing.next_marker,
        )

    # -- object tagging ---------------------------------------------------------------------

    @unary
    def GetObjectTagging(self, principal: Principal, request: pb.GetObjectTaggingRequest, context: grpc.ServicerContext) -> pb.ObjectTagging:
        bucket, record = self.rpc.call(
            self._lookup, self.rpc.gate(principal), require(request.bucket, "bucket"), require(request.key, "key"),
            optional(request, "version_id"),
        )  # fmt: skip
        return pb.ObjectTagging(tags=record.tags, **_versioned(reported_version_id(bucket, record.version_id)))

    def _set_tags(self, principal: Principal, request: Any, tags: dict[str, str]) -> pb.ObjectTagging:
        bucket = self._bucket(principal, request.bucket, require(request.key, "key"))
        record = self.rpc.call(
            self.core.objects.set_tags, bucket, request.key, optional(request, "version_id"), tags
        )
        return pb.ObjectTagging(tags=record.tags, **_versioned(reported_version_id(bucket, record.version_id)))

    @unary
    def PutObjectTagging(self, principal: Principal, request: pb.PutObjectTaggingRequest, context: grpc.ServicerContext) -> pb.ObjectTagging:
        return self._set_tags(principal, request, dict(request.tags))

    @unary
    def DeleteObjectTagging(self, principal: Principal, request: pb.DeleteObjectTaggingRequest, context: grpc.ServicerContext) -> pb.ObjectTagging:
        return self._set_tags(principal, request, {})
