"""Multipart upload operations: the wire side of :mod:`lightningstor.core.multipart`.

CreateMultipartUpload, UploadPart (streamed like PutObject: the body goes
through :func:`prepare_part_upload` and the shared ``receive_upload``, so
Content-MD5, x-amz-checksum-*, signed payloads and aws-chunked framing are
verified exactly as for PutObject), UploadPartCopy, CompleteMultipartUpload,
AbortMultipartUpload, ListMultipartUploads and ListParts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from twisted.internet.defer import Deferred, inlineCallbacks

from lightningstor import errors
from lightningstor.auth.chunked import AwsChunkedDecoder
from lightningstor.core import access
from lightningstor.core.copy import resolve_copy_source
from lightningstor.core.lifecycle import abort_due
from lightningstor.core.multipart import (
    MAX_LISTED,
    PartRef,
    Upload,
    checksum_type_of,
    parse_part_number,
    part_range,
)
from lightningstor.core.objects import DEFAULT_CHECKSUM, PutAttrs, may_have_committed, validate_key
from lightningstor.core.sse import customer_encrypted
from lightningstor.core.types import Bucket, ObjectRecord, Principal
from lightningstor.digits import clamped_int
from lightningstor.s3 import conditions, ssec, xmlio
from lightningstor.s3.dates import http_date
from lightningstor.s3.handlers.acl import checked_write_acl, object_acl_for_write
from lightningstor.s3.handlers.listing import page_limit
from lightningstor.s3.handlers.objects import (
    again_if_replaced,
    asks_lock,
    body_plan,
    check_lock_attrs,
    check_lock_permissions,
    check_outsider_extras,
    decoded_length_of,
    expiration_header,
    parse_copy_source,
    receive_upload,
    version_header,
    written_version_header,
)
from lightningstor.s3.headers import (
    checksum_algorithms,
    checksum_values,
    declares_length,
    put_attrs,
    refuse_sse_header,
    sse_response_headers,
)


@dataclass
class PartUploadContext:
    """What ``receive_upload`` needs (the fields of objects.UploadContext),
    plus the upload and part number the body belongs to."""

    principal: Principal
    verified: Any
    bucket: Bucket
    attrs: PutAttrs
    writer: Any
    decoder: AwsChunkedDecoder | None
    trailer_algorithm: str | None
    decoded_length: int | None
    upload: Upload
    part_number: int
    max_bytes: int | None = None  # as objects.UploadContext's: the part size limit


def _encoding(query: dict[str, str]) -> str | None:
    value = query.get("encoding-type") or None
    if value is not None and value.lower() != "url":
        raise errors.InvalidArgument(
            "Invalid Encoding Method specified in Request", ArgumentName="encoding-type", ArgumentValue=value
        )
    return value


def _upload_id(call: Any) -> str:
    return str(call.target.query.get("uploadId", ""))


def _initiator(upload: Upload) -> tuple[str, str]:
    """The initiator as listings show principals: by id, for ``ID`` and
    ``DisplayName`` alike (object listings do the same).  Its display name
    is not every lister's to read: a principal of another tenant writing in
    an ObjectWriter bucket, read by the bucket's tenant or an unsigned
    caller of a public bucket."""
    return upload.initiator, upload.initiator


def _owner(upload: Upload) -> tuple[str, str]:
    """Who will own the object (AWS's ``Owner``): the initiator, or the
    bucket's owner where Object Ownership gives it the object.  Another
    principal is shown by its id, as ACLs show principals of other tenants."""
    if not upload.owner or upload.owner == upload.initiator:
        return _initiator(upload)
    return upload.owner, upload.owner


def _algorithm_header(upload: Upload) -> list[tuple[str, str]]:
    if not upload.checksum_algorithm:
        return []
    return [
        ("x-amz-checksum-algorithm", upload.checksum_algorithm.upper()),
        ("x-amz-checksum-type", upload.checksum_type or ""),
    ]


@inlineCallbacks
def _resolve(api: Any, call: Any) -> Any:
    principal, verified = yield call.auth.get()
    bucket = yield api.bucket(call, principal)
    validate_key(call.key)
    return principal, verified, bucket


# -- CreateMultipartUpload -----------------------------------------------------


@inlineCallbacks
def create_multipart_upload(api: Any, call: Any) -> Any:
    principal, _verified, bucket = yield _resolve(api, call)
    attrs = put_attrs(call.headers, max_metadata_bytes=api.options.max_metadata_bytes)
    attrs.customer_key = ssec.write_key(call.headers, call.request.isSecure)
    # The ACL lands on the completed object (the upload record keeps it).
    attrs.owner, attrs.acl = object_acl_for_write(api, bucket, principal, call.headers)
    check_outsider_extras(principal, bucket, call.key, attrs.owner, lock=asks_lock(call.headers), tags=bool(attrs.tags))
    check_lock_attrs(api, bucket, attrs)
    yield check_lock_permissions(api, call, principal, bucket)
    yield checked_write_acl(api, call, principal, bucket, call.key, (attrs.owner, attrs.acl))
    algorithm = call.headers.get("x-amz-checksum-algorithm") or call.headers.get("x-amz-sdk-checksum-algorithm")
    upload = yield api.core.multipart.create(
        bucket,
        call.key,
        attrs,
        initiator=principal,
        checksum_algorithm=algorithm,
        checksum_type=call.headers.get("x-amz-checksum-type"),
    )
    body = xmlio.initiate_multipart_xml(bucket.name, call.key, upload.upload_id)
    headers = _algorithm_header(upload) + sse_response_headers(upload.encryption) + _abort_headers(api, bucket, upload)
    return api.send_xml(call, body, headers=headers)


def _abort_headers(api: Any, bucket: Any, upload: Any) -> list[tuple[str, str]]:
    """``x-amz-abort-date`` and ``x-amz-abort-rule-id`` (CreateMultipartUpload,
    ListParts): when a lifecycle rule of the bucket aborts this upload, as
    AWS reports it; nothing for a bucket without such a rule."""
    if not bucket.lifecycle:
        return []
    found = abort_due(bucket.lifecycle, upload.key, upload.initiated_at, api.options.lifecycle_day_seconds)
    if found is None:
        return []
    due, rule = found
    return [("x-amz-abort-date", http_date(due)), ("x-amz-abort-rule-id", rule.rule_id)]


# -- UploadPart ----------------------------------------------------------------


@inlineCallbacks
def prepare_part_upload(api: Any, call: Any, length: int | None) -> Any:
    """UploadPart's counterpart of ``objects.prepare_upload``: runs when the
    headers arrive, so nothing is stored for a part of an unknown upload, an
    invalid part number or a part over 5 GiB."""
    principal, verified, bucket = yield _resolve(api, call)
    refuse_sse_header(call.headers)  # the upload's encryption was fixed at its creation
    part_number = parse_part_number(call.target.query.get("partNumber"))
    upload = yield api.core.multipart.get(bucket, call.key, _upload_id(call))
    customer = ssec.part_key(call.headers, call.request.isSecure, upload.encryption)
    decoded_length = decoded_length_of(call, length)
    if not declares_length(call.headers):
        raise errors.MissingContentLength()
    # Past 5 GiB or the bucket's quotas: refused before a byte is stored.
    yield api.core.multipart.check_part_length(upload, part_number, decoded_length)
    expected, keep, trailer = checksum_algorithms(call.headers)
    wanted = upload.checksum_algorithm
    if wanted is not None:
        # Every algorithm the part names: a value header, a trailer, or
        # x-amz-sdk-checksum-algorithm alone (``keep`` holds them all).
        for sent in keep:
            if sent != wanted:
                raise errors.InvalidRequest(
                    f"Checksum Type mismatch occurred, expected checksum Type: {wanted}, actual checksum Type: {sent}"
                )
        keep = tuple(sorted({*keep, wanted}))
    attrs = PutAttrs(
        content_md5=call.headers.get("content-md5"),
        expected_checksums=expected,
        store_checksums=keep,
        owner=principal.principal_id,
    )
    algorithms, decoder = body_plan(call, verified, decoded_length, keep, expected, trailer)
    writer = api.core.multipart.new_part_writer(upload, algorithms, customer)
    return PartUploadContext(
        principal, verified, bucket, attrs, writer, decoder, trailer, decoded_length, upload, part_number,
        api.core.multipart.max_part_size,
    )


@inlineCallbacks
def upload_part(api: Any, call: Any) -> Any:
    ctx, result, checksums = yield receive_upload(api, call)
    try:
        part = yield api.core.multipart.commit_part(ctx.upload, ctx.part_number, result, checksums)
    except BaseException as e:
        if not may_have_committed(e):
            call.sink.abort()
        raise
    call.object_size = part.size  # the metrics' object size (a chunked body states none)
    headers = [("ETag", f'"{part.etag}"')]
    headers += [(f"x-amz-checksum-{a}", v) for a, v in sorted(part.checksums.items())]
    if part.default_checksum is not None and not part.checksums:
        # The core's default for a part of an upload without a checksum (as AWS).
        headers.append((f"x-amz-checksum-{DEFAULT_CHECKSUM}", part.default_checksum))
    headers += sse_response_headers(ctx.upload.encryption)
    return api.send(call, 200, headers=headers, content_type=None)


# -- UploadPartCopy --------------------------------------------------------------

_COPY_RANGE = re.compile(r"bytes=([0-9]+)-([0-9]+)", re.ASCII)


def parse_copy_source_range(value: str | None, size: int) -> tuple[int, int]:
    """x-amz-copy-source-range ``bytes=first-last`` -> (start, length).

    Only that one form is allowed (no suffix or open ranges, no lists):
    anything else is InvalidArgument; a range past the source's end is
    InvalidRange.  No header means the whole source.
    """
    if value is None:
        return 0, size
    m = _COPY_RANGE.fullmatch(value.strip())
    if m is None:
        raise errors.InvalidArgument(
            "The x-amz-copy-source-range value must be of the form bytes=first-last where first and last "
            "are the zero-based offsets of the first and last bytes to copy",
            ArgumentName="x-amz-copy-source-range",
            ArgumentValue=value,
        )
    first, last = clamped_int(m.group(1)), clamped_int(m.group(2))
    if last < first:
        raise errors.InvalidArgument(
            "The x-amz-copy-source-range value must be of the form bytes=first-last where first <= last",
            ArgumentName="x-amz-copy-source-range",
            ArgumentValue=value,
        )
    if last >= size:
        # AWS: 400 InvalidArgument here, not the 416 InvalidRange of a GET.
        raise errors.InvalidArgument(
            f"Range specified is not valid for source object of size: {size}",
            ArgumentName="x-amz-copy-source-range",
            ArgumentValue=value,
        )
    return first, last - first + 1


def upload_part_copy(api: Any, call: Any) -> Deferred[Any]:
    """UploadPartCopy, started again from the source's lookup if the source
    lost its chunks while they were copied (as CopyObject)."""
    return again_if_replaced(call, lambda: _upload_part_copy(api, call))


@inlineCallbacks
def _upload_part_copy(api: Any, call: Any) -> Any:
    refuse_sse_header(call.headers)  # as UploadPart: the upload's encryption was fixed at its creation
    principal, _verified, bucket = yield _resolve(api, call)
    part_number = parse_part_number(call.target.query.get("partNumber"))
    upload = yield api.core.multipart.get(bucket, call.key, _upload_id(call))
    customer = ssec.part_key(call.headers, call.request.isSecure, upload.encryption)
    src_bucket_name, src_key, src_version = parse_copy_source(call.headers["x-amz-copy-source"])
    src_bucket = yield api.bucket(
        call, principal, name=src_bucket_name, key=src_key, action=access.OBJECTS_GET, source_version=src_version
    )
    source = yield resolve_copy_source(api.core, src_bucket, src_key, src_version)
    source_customer = ssec.read_key(call.headers, call.request.isSecure, source.encryption, ssec.COPY_SOURCE_PREFIX)
    conditions.check_copy_source_conditions(call.headers, source.etag, source.created_at)
    start, length = parse_copy_source_range(call.headers.get("x-amz-copy-source-range"), source.size)
    limit = api.core.multipart.max_part_size
    if length > limit:
        raise errors.InvalidRequest(
            f"The specified copy source is larger than the maximum allowable size for a copy source: {limit}"
        )
    part = yield api.core.multipart.copy_part(upload, part_number, source, start, length, customer, source_customer)
    headers = [(f"x-amz-checksum-{a}", v) for a, v in sorted(part.checksums.items())]
    headers += [("x-amz-copy-source-version-id", v) for _, v in version_header(src_bucket, source.version_id)]
    headers += sse_response_headers(upload.encryption)
    call.object_size = length
    return api.send_xml(call, xmlio.copy_part_result_xml(part.etag, part.created_at, part.checksums), headers=headers)


# -- CompleteMultipartUpload / AbortMultipartUpload ---------------------------------


def _location(call: Any, bucket: str, key: str) -> str:
    scheme = "https" if call.request.isSecure() else "http"
    host = call.headers.get("host", "")
    return f"{scheme}://{host}/{quote(bucket)}/{quote(key, safe='/')}"


@inlineCallbacks
def complete_multipart_upload(api: Any, call: Any) -> Any:
    _principal, _verified, bucket = yield _resolve(api, call)
    # SSE-C headers are optional here (AWS needs them only for some
    # checksum cases); sent, they must be well formed and over TLS.
    ssec.require_secure(call.headers, call.request.isSecure)
    ssec.customer_key(call.headers)
    listed = [
        PartRef(p.part_number, p.etag, dict(p.checksums))
        for p in xmlio.parse_complete_multipart(call.sink.content())
    ]
    write_conditions = PutAttrs(
        if_none_match_any=conditions.write_if_none_match_any(call.headers),
        if_match=conditions.write_if_match(call.headers),
    )
    raw_size = call.headers.get("x-amz-mp-object-size")
    object_size = None
    if raw_size is not None:
        if not raw_size.isascii() or not raw_size.isdigit():
            raise errors.InvalidArgument("x-amz-mp-object-size must be a number", ArgumentName="x-amz-mp-object-size")
        object_size = clamped_int(raw_size)
    done = yield api.core.multipart.complete(
        bucket,
        call.key,
        _upload_id(call),
        listed,
        conditions=write_conditions,
        expected_checksums=checksum_values(call.headers, complete=True),
        checksum_type=call.headers.get("x-amz-checksum-type"),
        object_size=object_size,
        public_acls_blocked=api.core.access.public_access_block(bucket).block_public_acls,
        part_checksums_required=True,  # S3's rule; optional in the gRPC API
    )
    record = done.record
    body = xmlio.complete_multipart_xml(
        _location(call, bucket.name, call.key),
        bucket.name,
        call.key,
        record.etag,
        done.answer_checksums,
        checksum_type=done.checksum_type,
    )
    headers = written_version_header(record.version_id)
    headers += sse_response_headers(record.encryption)
    if bucket.lifecycle:
        headers += expiration_header(api, bucket, record)
    call.object_size = record.size
    return api.send_xml(call, body, headers=headers)


@inlineCallbacks
def abort_multipart_upload(api: Any, call: Any) -> Any:
    _principal, _verified, bucket = yield _resolve(api, call)
    yield api.core.multipart.abort(bucket, call.key, _upload_id(call))
    return api.send(call, 204, content_type=None)


# -- listings --------------------------------------------------------------------
#
# max-uploads / max-parts: parsed as max-keys (page_limit), capped at 1000 and
# echoed capped, as AWS does (part-number-marker is parsed the same way); 0 is the core's empty page that is not truncated
# (lightningstor.core.listing.asks_nothing), so a client paging on
# IsTruncated stops instead of asking again from the same place.


@inlineCallbacks
def list_parts(api: Any, call: Any) -> Any:
    _principal, _verified, bucket = yield _resolve(api, call)
    query = call.target.query
    marker = page_limit(query, "part-number-marker", 0)
    max_parts = min(page_limit(query, "max-parts", MAX_LISTED), MAX_LISTED)
    listing = yield api.core.multipart.list_parts(
        bucket, call.key, _upload_id(call), marker=marker, max_parts=max_parts
    )
    upload = listing.upload
    # An SSE-C upload's part checksums are the plaintext's: shown only to a
    # caller that sends the upload's key (AWS asks for it when the upload
    # has a checksum algorithm), since one would confirm a guess of a part.
    sealed = customer_encrypted(upload.encryption)
    keyed = sealed and ssec.KEY_HEADER in call.headers
    if keyed:
        ssec.part_key(call.headers, call.request.isSecure, upload.encryption)
    body = xmlio.list_parts_xml(
        bucket=bucket.name,
        key=call.key,
        upload_id=upload.upload_id,
        parts=[
            xmlio.ListedPart(p.part_number, p.created_at, p.etag, p.size, p.checksums if keyed or not sealed else {})
            for p in listing.parts
        ],
        part_number_marker=marker,
        next_part_number_marker=listing.next_marker,
        max_parts=max_parts,
        is_truncated=listing.is_truncated,
        initiator=_initiator(upload),
        owner=_owner(upload),
        storage_class=upload.storage_class,
        checksum_algorithm=upload.checksum_algorithm.upper() if upload.checksum_algorithm else None,
        checksum_type=upload.checksum_type if upload.checksum_algorithm else None,
    )
    headers = _algorithm_header(upload) + _abort_headers(api, bucket, upload)
    if keyed:
        headers += ssec.response_headers(upload.encryption)
    return api.send_xml(call, body, headers=headers)


@inlineCallbacks
def list_multipart_uploads(api: Any, call: Any) -> Any:
    principal, _verified = yield call.auth.get()
    bucket = yield api.bucket(call, principal)
    query = call.target.query
    prefix = query.get("prefix", "")
    delimiter = query.get("delimiter") or None
    key_marker = query.get("key-marker", "")
    upload_id_marker = query.get("upload-id-marker", "") if key_marker else ""
    max_uploads = min(page_limit(query, "max-uploads", MAX_LISTED), MAX_LISTED)
    encoding = _encoding(query)
    listing = yield api.core.multipart.list_uploads(
        bucket,
        prefix=prefix,
        delimiter=delimiter,
        key_marker=key_marker,
        upload_id_marker=upload_id_marker,
        max_uploads=max_uploads,
    )
    uploads = [
        xmlio.ListedUpload(
            key=u.key,
            upload_id=u.upload_id,
            initiated_ms=u.initiated_at,
            initiator=_initiator(u),
            owner=_owner(u),
            storage_class=u.storage_class,
            checksum_algorithm=u.checksum_algorithm.upper() if u.checksum_algorithm else None,
            checksum_type=u.checksum_type if u.checksum_algorithm else None,
        )
        for u in listing.uploads
    ]
    body = xmlio.list_multipart_uploads_xml(
        bucket=bucket.name,
        uploads=uploads,
        common_prefixes=listing.common_prefixes,
        prefix=prefix,
        delimiter=delimiter,
        key_marker=key_marker,
        upload_id_marker=upload_id_marker,
        next_key_marker=listing.next_key_marker,
        next_upload_id_marker=listing.next_upload_id_marker,
        max_uploads=max_uploads,
        is_truncated=listing.is_truncated,
        encoding_type=encoding,
    )
    return api.send_xml(call, body)


# -- GetObject / HeadObject ?partNumber= ------------------------------------------


def requested_part(
    call: Any, record: ObjectRecord, *, checksum_mode: bool
) -> tuple[tuple[int, int] | None, list[tuple[str, str]]] | None:
    """For GetObject/HeadObject: None without ``partNumber``; else the byte
    span of that part (None for an empty one: a 200 with no body) and the
    headers that go with it (``x-amz-mp-parts-count`` for multipart objects).

    A Range header together with partNumber is InvalidRequest, as in AWS.
    """
    raw = call.target.query.get("partNumber")
    if raw is None:
        return None
    if "range" in call.headers:
        raise errors.InvalidRequest("Cannot specify both Range header and partNumber query parameter")
    number = parse_part_number(raw)
    start, end = part_range(record, number)
    headers = [("x-amz-mp-parts-count", str(len(record.part_sizes)))] if record.part_sizes else []
    if checksum_mode:
        sums = {a: v[number - 1] for a, v in record.part_checksums.items() if len(v) == len(record.part_sizes)}
        headers += [(f"x-amz-checksum-{a}", v) for a, v in sorted(sums.items())]
        if sums:
            headers.append(("x-amz-checksum-type", checksum_type_of(record.checksums)))
    return ((start, end) if end >= start else None), headers
