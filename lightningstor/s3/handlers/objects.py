"""Object operations: PutObject, GetObject, HeadObject, DeleteObject(s), CopyObject,
object tagging.

Versioning rules live in the core; here they only become headers:
``x-amz-version-id`` (``null`` for the null version of a bucket with
versioning configured, nothing for a bucket never versioned, as AWS) and
``x-amz-delete-marker``.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, unquote_plus

from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from lightningstor import errors
from lightningstor.auth.chunked import AwsChunkedDecoder
from lightningstor.core import access, objectlock
from lightningstor.core.acl import acls_enabled
from lightningstor.core.attributes import (
    MAX_OBJECT_TAGS,
    check_field_value,
    check_tags,
    validate_storage_class,
)
from lightningstor.core.copy import check_copy_changes, resolve_copy_source
from lightningstor.core.lifecycle import expiration_of
from lightningstor.core.multipart import FULL_OBJECT, checksum_type_of
from lightningstor.core.objects import (
    MAX_SINGLE_PUT_BYTES,
    READS_WHEN_REPLACED,
    PutAttrs,
    add_default_checksum,
    may_have_committed,
    replaced_meanwhile,
    validate_key,
    verify_digests,
)
from lightningstor.core.types import Acl, Bucket, Principal
from lightningstor.core.versions import reported_version_id
from lightningstor.s3 import conditions, ranges, ssec, xmlio
from lightningstor.s3.dates import http_date
from lightningstor.s3.handlers.acl import checked_write_acl, object_acl_for_write
from lightningstor.s3.headers import (
    RESPONSE_OVERRIDES,
    WEBSITE_REDIRECT_HEADER,
    check_expected_owner,
    check_website_redirect,
    checksum_algorithms,
    checksum_trailer,
    checksum_value,
    declares_length,
    object_headers,
    parse_tagging_header,
    put_attrs,
    refuse_sse_header,
    refuse_unsupported,
    sse_request,
    sse_response_headers,
)
from lightningstor.s3.objectlockxml import (
    HOLD_HEADER,
    MODE_HEADER,
    UNTIL_HEADER,
    bypass_requested,
    lock_headers,
)
from lightningstor.s3.streaming import ObjectProducer

log = Logger()

STREAMING_PAYLOADS = {
    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD": (True, False),
    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER": (True, True),
    "STREAMING-UNSIGNED-PAYLOAD-TRAILER": (False, True),
}


@dataclass
class UploadContext:
    """What ``prepare_upload`` learned before the first body byte is stored."""

    principal: Principal
    verified: Any
    bucket: Bucket
    attrs: PutAttrs
    writer: Any
    decoder: AwsChunkedDecoder | None
    trailer_algorithm: str | None
    decoded_length: int | None
    # The most data the object may hold, checked as the body arrives
    # (s3/body.py ObjectBody): a chunked body declares no length up front.
    max_bytes: int | None = MAX_SINGLE_PUT_BYTES


def decoded_length_of(call: Any, length: int | None) -> int | None:
    """The length of the object's bytes in the body: an aws-chunked body's
    ``x-amz-decoded-content-length`` (its decoder holds the body to it), or
    any other body's Content-Length (None when chunked).

    Every check made before a byte is stored (the size limits, the quotas)
    uses it, so a header that claims less than a plain body holds is
    refused: believed, it let a 20 MB body into a full bucket, refused only
    once written."""
    raw = call.headers.get("x-amz-decoded-content-length")
    streaming = _is_streaming(call)
    if raw is None:
        return None if streaming else length
    try:
        value = int(raw)
    except ValueError:
        raise errors.InvalidArgument("x-amz-decoded-content-length is not a number") from None
    if value < 0:
        raise errors.InvalidArgument("x-amz-decoded-content-length must not be negative")
    if not streaming and value != length:
        raise errors.InvalidArgument(
            f"x-amz-decoded-content-length {value} is not the Content-Length {length} of a body "
            "that is not aws-chunked (x-amz-content-sha256 STREAMING-*)"
        )
    return value


def _is_streaming(call: Any) -> bool:
    return call.headers.get("x-amz-content-sha256", "") in STREAMING_PAYLOADS


def body_plan(
    call: Any,
    verified: Any,
    decoded_length: int | None,
    keep: Iterable[str],
    expected: Iterable[str],
    trailer: str | None,
) -> tuple[tuple[str, ...], AwsChunkedDecoder | None]:
    """The hashes a streamed body needs and its aws-chunked decoder (or None).

    Shared by PutObject and UploadPart: both verify the same payload modes.
    """
    algorithms = set(keep) | set(expected)
    if verified.payload == "SIGNED":
        algorithms.add("sha256")
    decoder = None
    payload_mode = call.headers.get("x-amz-content-sha256", "")
    if payload_mode in STREAMING_PAYLOADS:
        signed, has_trailer = STREAMING_PAYLOADS[payload_mode]
        decoder = AwsChunkedDecoder(
            signing=verified.streaming if signed else None,
            trailer_expected=has_trailer,
            trailer_signed=signed and has_trailer,
            decoded_content_length=decoded_length,
            # Only the declared trailer: one sent without x-amz-trailer would
            # otherwise go unverified (its algorithm is known only from it).
            trailer_names=[f"x-amz-checksum-{trailer}"] if trailer else (),
        )
    elif trailer is not None:
        raise errors.InvalidRequest("x-amz-trailer requires a STREAMING-* x-amz-content-sha256")
    return tuple(sorted(algorithms)), decoder


def prepare_upload(api: Any, call: Any, length: int | None) -> Deferred[Any]:
    """Authenticate, resolve the bucket and validate headers before storing.

    Runs as soon as the headers arrive; the body waits (transport paused)
    until this fires, so nothing is stored for a request that would fail.
    """

    def authenticated(auth: Any) -> Deferred[Any]:
        principal, verified = auth
        return api.bucket(call, principal).addCallback(resolved, principal, verified)

    def resolved(bucket: Bucket, principal: Principal, verified: Any) -> Deferred[Any]:
        validate_key(call.key)
        decoded_length = decoded_length_of(call, length)
        # The configured largest object, when below AWS's single-PUT limit, is
        # refused before the body too (the commit would refuse it after).
        limit = min(MAX_SINGLE_PUT_BYTES, api.options.max_object_size_bytes)
        if decoded_length is not None and decoded_length > limit:
            raise errors.EntityTooLarge(MaxSizeAllowed=str(limit), ProposedSize=str(decoded_length))
        if not declares_length(call.headers):
            raise errors.MissingContentLength()
        # The ACL (x-amz-acl, x-amz-grant-*) is refused, if it is, before the body is stored.
        owned = object_acl_for_write(api, bucket, principal, call.headers)
        check_outsider_extras(
            principal, bucket, call.key, owned[0], lock=asks_lock(call.headers), tags=bool(call.headers.get("x-amz-tagging"))
        )
        # A body that can never fit the bucket's quotas is refused before it is stored.
        checked: Deferred[Any]
        if owned[1] is None:  # every PUT but those that set an ACL: no extra Deferred
            checked = api.core.quotas.check_put(bucket, call.key, decoded_length)
        else:
            checked = checked_write_acl(api, call, principal, bucket, call.key, owned)
            checked.addCallback(lambda _: api.core.quotas.check_put(bucket, call.key, decoded_length))
        if asks_lock_permissions(call.headers, bucket):  # PUTs without lock headers skip it
            checked.addCallback(lambda _: check_lock_permissions(api, call, principal, bucket))
        return checked.addCallback(
            lambda _: _upload_context(api, call, principal, verified, bucket, decoded_length, owned)
        )

    d: Deferred[Any] = call.auth.get()
    return d.addCallback(authenticated)


def keep_stored_encoding(attrs: PutAttrs) -> None:
    """Keep only the Content-Encoding the object is stored with
    (:func:`stored_content_encoding`: ``aws-chunked`` is transfer framing,
    not the object's), dropping the header when nothing is left."""
    encoding = attrs.system_headers.get("Content-Encoding")
    if encoding is not None:
        stored = stored_content_encoding(encoding)
        if stored:
            attrs.system_headers["Content-Encoding"] = stored
        else:
            del attrs.system_headers["Content-Encoding"]


def _upload_context(
    api: Any,
    call: Any,
    principal: Principal,
    verified: Any,
    bucket: Bucket,
    decoded_length: int | None,
    owned: tuple[str, Acl | None],
) -> UploadContext:
    attrs = put_attrs(call.headers, max_metadata_bytes=api.options.max_metadata_bytes)
    check_tags(attrs.tags, MAX_OBJECT_TAGS)
    check_lock_attrs(api, bucket, attrs)
    if (attrs.lock_mode is not None or attrs.legal_hold is not None) and not _has_integrity_check(call.headers):
        raise errors.InvalidRequest(
            "Content-MD5 OR x-amz-checksum- HTTP header is required for Put Object requests with Object Lock "
            "parameters"
        )
    keep_stored_encoding(attrs)
    attrs.customer_key = ssec.write_key(call.headers, call.request.isSecure)
    attrs.owner, attrs.acl = owned
    # put_attrs checked the checksum headers and kept what they ask for;
    # without any, the object gets the core's default checksum (as AWS).
    add_default_checksum(attrs)
    trailer = checksum_trailer(call.headers)
    algorithms, decoder = body_plan(
        call, verified, decoded_length, attrs.store_checksums, attrs.expected_checksums, trailer
    )
    writer = api.core.new_writer(bucket, call.key, attrs.encryption, algorithms, customer=attrs.customer_key)
    return UploadContext(principal, verified, bucket, attrs, writer, decoder, trailer, decoded_length)


def asks_lock(headers: Any) -> bool:
    """Whether a write's headers ask for Object Lock settings."""
    return MODE_HEADER in headers or UNTIL_HEADER in headers or HOLD_HEADER in headers


def check_outsider_extras(principal: Principal, bucket: Bucket, key: str, owner: str, *, lock: bool, tags: bool) -> None:
    """AccessDenied when a caller from outside the bucket's scope, let in by
    its ACL, asks a write to set Object Lock settings or tags on an object
    it will not own.

    An ACL grants writes (``s3:PutObject``) and nothing more: on AWS, tags and
    retention on a write need ``s3:PutObjectTagging`` and
    ``s3:PutObjectRetention``/``s3:PutObjectLegalHold``, which no ACL gives.
    Here the object's owner may tag and lock its own object (docs/
    access-control.md), so an outsider that will own what it writes (a
    signed writer in an ObjectWriter bucket) may set them on the write too;
    an anonymous writer, or one whose object goes to the bucket owner, may
    not: it could otherwise lock the bucket owner's version until a date
    nobody can delete it before.  A bucket with a policy leaves it to the
    policy (what it allows with ``s3:RequestObjectTag`` conditions, and its
    answer to ``s3:PutObjectRetention``/``s3:PutObjectLegalHold``:
    :func:`check_lock_permissions`)."""
    if (not lock and not tags) or bucket.policy or access.in_scope(principal, bucket):
        return
    if access.is_anonymous(principal) or owner != principal.principal_id:
        raise errors.AccessDenied(resource=f"/{bucket.name}/{key}")


def asks_lock_permissions(headers: Any, bucket: Bucket) -> bool:
    """Whether :func:`check_lock_permissions` has anything to ask."""
    return bool(bucket.policy) and asks_lock(headers)


def check_lock_permissions(api: Any, call: Any, principal: Principal, bucket: Bucket) -> Deferred[None]:
    """Deferred[None]: a write's Object Lock headers also ask for
    ``s3:PutObjectRetention`` (mode, retain-until date) and
    ``s3:PutObjectLegalHold`` (legal hold), as AWS asks, so that a bucket
    policy denying those cannot be bypassed by writing a locked version
    outright.  Without a policy the write's own authorization is the
    answer: the authorizer's action for both is the write's (objects:put)."""
    ops = []
    if MODE_HEADER in call.headers or UNTIL_HEADER in call.headers:
        ops.append("PutObjectRetention")
    if HOLD_HEADER in call.headers:
        ops.append("PutObjectLegalHold")
    d: Deferred[Any] = succeed(None)
    if not ops or not bucket.policy:
        return d

    def ask(_: object, op: str) -> Deferred[None]:
        asked = access.AskedAs(call, op=op)
        allowed: Deferred[None] = api.core.access.allow(
            principal, bucket, access.OBJECTS_PUT, call.key, call.decisions.append, asked
        )
        return allowed

    for op in ops:
        d.addCallback(ask, op)
    return d


def check_lock_attrs(api: Any, bucket: Bucket, attrs: PutAttrs) -> None:
    """The core's rules for the Object Lock settings a write asks for,
    checked before anything is stored (core/objectlock.py)."""
    objectlock.check_lock_request(bucket, attrs.lock_mode, attrs.lock_until, attrs.legal_hold, api.core.objects.now_ms())


def _has_integrity_check(headers: Any) -> bool:
    """Content-MD5 or an ``x-amz-checksum-*`` value (a header, or a trailer
    announced by ``x-amz-trailer``): AWS's condition for a PutObject that
    sets Object Lock parameters."""
    if "content-md5" in headers or "x-amz-trailer" in headers:
        return True
    return any(name.startswith("x-amz-checksum-") and name not in _NOT_CHECKSUM_VALUES for name in headers)


# x-amz-checksum-* headers that name an algorithm or mode rather than carry a value.
_NOT_CHECKSUM_VALUES = frozenset({"x-amz-checksum-algorithm", "x-amz-checksum-type", "x-amz-checksum-mode"})


def stored_content_encoding(encoding: str) -> str:
    """``Content-Encoding`` as stored: the value without its ``aws-chunked``
    tokens (they describe the upload's framing, not the object).

    A value without such a token is kept exactly as sent, since GET must
    return it unchanged (``deflate, gzip`` stays ``deflate, gzip``, as AWS);
    the remaining tokens of one that had it are joined with ``", "``.
    An empty string means nothing is left to store.
    """
    tokens = [token.strip() for token in encoding.split(",")]
    kept = [token for token in tokens if token.lower() != "aws-chunked"]
    if len(kept) == len(tokens):
        return encoding
    return ", ".join(token for token in kept if token)


def receive_upload(api: Any, call: Any) -> Deferred[Any]:
    """Wait for the streamed body; verify lengths, hashes and checksums.

    Deferred[(UploadContext, WriteResult, stored checksums)].  On any error
    the chunks written so far are deleted.  (Callback chains here and in
    :func:`put_object`: they run for every PUT and part.)
    """
    d: Deferred[Any] = call.sink.finish()
    return d.addCallback(_verify_upload, call)


def _verify_upload(finished: Any, call: Any) -> tuple[Any, Any, dict[str, str]]:
    ctx, body = finished
    result = body.write
    try:
        if ctx.decoded_length is not None and result.size != ctx.decoded_length:
            raise errors.IncompleteBody(
                "The decoded body length does not match x-amz-decoded-content-length"
            )
        if ctx.verified.payload == "SIGNED":
            got = result.digests["sha256"].hex()
            if not hmac.compare_digest(got, ctx.verified.payload_sha256.lower()):
                raise errors.XAmzContentSHA256Mismatch(
                    ClientComputedContentSHA256=ctx.verified.payload_sha256,
                    S3ComputedContentSHA256=got,
                )
        if ctx.trailer_algorithm is not None:
            value = body.trailers.get(f"x-amz-checksum-{ctx.trailer_algorithm}")
            if value is None:
                raise errors.InvalidRequest("The trailing checksum was not received")
            ctx.attrs.expected_checksums[ctx.trailer_algorithm] = checksum_value(
                ctx.trailer_algorithm, value.strip(), "trailing header"
            )
        checksums = verify_digests(ctx.attrs, result.md5_hex, result.digests)
    except BaseException:
        call.sink.abort()
        raise
    return ctx, result, checksums


def put_object(api: Any, call: Any) -> Deferred[Any]:
    return receive_upload(api, call).addCallback(commit_upload, api, call, call.key)


def commit_upload(
    received: Any,
    api: Any,
    call: Any,
    key: str,
    answer: Callable[[Any, list[tuple[str, str]]], bytes] | None = None,
) -> Deferred[Any]:
    """Commit an upload whose body is stored (``receive_upload``'s result)
    as ``key``, and answer with ``answer(record, headers)`` (PostObject's
    own answer; default: PutObject's empty 200), the headers being the
    written object's ETag, checksums and version id.  Unless the commit may
    have landed, the stored data is discarded on failure."""
    ctx, result, checksums = received
    record = api.core.objects.new_record(key, result, ctx.attrs, checksums)

    def failed(failure: Failure) -> Failure:
        value = failure.value
        if not (isinstance(value, BaseException) and may_have_committed(value)):
            call.sink.abort()
        return failure

    def committed(_: Any) -> bytes:
        call.object_size = record.size  # the metrics' object size (a chunked body states none)
        headers = [("ETag", record.quoted_etag)]
        headers += [(f"x-amz-checksum-{a}", v) for a, v in checksums.items()]
        if checksums:
            # AWS: "For PutObject uploads, the checksum type is always FULL_OBJECT".
            headers.append(("x-amz-checksum-type", FULL_OBJECT))
        headers += written_version_header(record.version_id)
        headers += sse_response_headers(record.encryption)
        if ctx.bucket.lifecycle:
            headers += expiration_header(api, ctx.bucket, record)
        if answer is None:
            return api.send(call, 200, headers=headers, content_type=None)  # type: ignore[no-any-return]
        return answer(record, headers)

    d: Deferred[Any] = api.core.objects.commit(ctx.bucket, record, ctx.attrs)
    return d.addCallbacks(committed, failed)


def version_header(bucket: Bucket, version_id: str | None) -> list[tuple[str, str]]:
    """``x-amz-version-id`` for a version of an object in ``bucket``.

    A real id always; the null version's ``null`` only once the bucket has
    versioning configured (a bucket never versioned sends none, as AWS).
    """
    reported = reported_version_id(bucket, version_id)
    return [] if reported is None else [("x-amz-version-id", reported)]


def expiration_header(api: Any, bucket: Bucket, record: Any) -> list[tuple[str, str]]:
    """``x-amz-expiration`` of the current version ``record`` in a bucket
    with lifecycle rules: when the earliest Days / Date expiration that
    applies to it falls due, and that rule's ID (URL-encoded, as AWS sends
    it); nothing if no rule expires it.  Only called for buckets that have
    rules: the others pay one attribute check."""
    if record.delete_marker:
        return []
    found = expiration_of(
        bucket.lifecycle, record.key, record.size, record.tags, record.created_at,
        api.options.lifecycle_day_seconds,
    )  # fmt: skip
    if found is None:
        return []
    due, rule = found
    return [("x-amz-expiration", f'expiry-date="{http_date(due)}", rule-id="{quote(rule.rule_id, safe="")}"')]


def written_version_header(version_id: str | None) -> list[tuple[str, str]]:
    """``x-amz-version-id`` of a write's answer (PutObject, CopyObject,
    CompleteMultipartUpload): a real version id only.  A write to a bucket
    whose versioning is suspended stores the null version but answers
    without the header, as AWS does (its PutObject reference's "versioning
    suspended" example); reads of that version do report ``null``.
    """
    return [] if version_id is None else [("x-amz-version-id", version_id)]


def _version_param(call: Any) -> str | None:
    """The ``versionId`` query parameter (the core parses and checks it)."""
    version: str | None = call.target.query.get("versionId")
    return version


def _lookup(api: Any, call: Any) -> Deferred[Any]:
    """Deferred[(principal, bucket, record)] of the object a GET or HEAD reads.

    A callback chain rather than a generator: GET and HEAD are the most
    frequent requests, and each generator level costs a frame and its own
    Deferred bookkeeping (docs/performance.md, "CPU per request").
    """

    def authenticated(auth: Any) -> Deferred[Any]:
        principal = auth[0]
        return api.bucket(call, principal).addCallback(resolved, principal)

    def resolved(bucket: Bucket, principal: Principal) -> Deferred[Any]:
        found: Deferred[Any] = api.core.objects.head(bucket, call.key, _version_param(call))
        found.addCallbacks(lambda record: (principal, bucket, record), _missing, errbackArgs=(api, call, principal, bucket))
        return found

    d: Deferred[Any] = call.auth.get()
    return d.addCallback(authenticated)


def _missing(failure: Failure, api: Any, call: Any, principal: Principal, bucket: Bucket) -> Any:
    """A missing key is ``404 NoSuchKey`` only for a caller who may list the
    bucket; anyone else gets ``403 AccessDenied``, as from AWS, so a caller
    allowed to read some keys (a public "download" policy without
    ``s3:ListBucket``) cannot probe which other keys exist."""
    if not failure.check(errors.NoSuchKey):
        return failure
    listing = access.AskedAs(call, op="ListObjects")  # the listing AWS checks then
    d: Deferred[Any] = api.core.access.allow(
        principal, bucket, access.OBJECTS_LIST, None, call.decisions.append, listing
    )
    return d.addCallback(lambda _: failure)



def get_object(api: Any, call: Any) -> Deferred[Any]:
    """GetObject and HeadObject: headers from the record, then the body.

    A GET whose object was overwritten or deleted between its lookup and
    the read of its first chunk, and whose old chunks are gone already
    (freed chunks wait ``storage.free_delay_seconds``, storage/retired.py,
    which a slow start may outlast), looks the object up again and
    answers with what is there now, the new object or 404, as AWS would,
    instead of a 500.  Once body bytes were sent that is too late: the
    connection is aborted (S3Api._on_failure), so a short body never
    passes for a whole one.  HEAD reads no chunk.
    """
    return read_again_if_replaced(call, lambda: _lookup(api, call).addCallback(_respond, api, call))


def read_again_if_replaced(call: Any, attempt: Callable[[], Deferred[Any]]) -> Deferred[Any]:
    """``attempt()`` (look the object up and answer with it), made again
    if the version it found lost its chunks (or chunk-list pages) before any
    byte of it was sent: the object was overwritten or deleted meanwhile.
    GetObject and the website endpoint share it, so both restore the
    response headers of the first attempt the same way; a later attempt
    sees the current state (another object, 404, an error document).  After
    ``READS_WHEN_REPLACED`` attempts the loss is an error like any other.
    HEAD reads no chunk.  Which failures mean "replaced" is the core's
    answer (``replaced_meanwhile``), which the gRPC GetObject asks too."""
    if call.method != "GET":
        return attempt()
    return again_if_replaced(call, attempt)


def again_if_replaced(call: Any, attempt: Callable[[], Deferred[Any]]) -> Deferred[Any]:
    """``attempt()``, made again (as :func:`read_again_if_replaced`) while
    the version it read lost its chunks before the response began; for
    any request that reads a version's bytes before it answers: GET, and
    the copies (CopyObject, UploadPartCopy), which then copy what the
    source is now or answer that it is gone, instead of a 500."""
    before = call.request.s3_headers.snapshot()
    return attempt().addErrback(_read_again, call, before, attempt, READS_WHEN_REPLACED - 1)


def _read_again(
    failure: Failure, call: Any, before: dict[bytes, list[bytes]], attempt: Callable[[], Deferred[Any]], left: int
) -> Any:
    request = call.request
    if left <= 0 or request.startedWriting or not replaced_meanwhile(failure.value):
        return failure
    log.info("{op} {res}: the version read was replaced meanwhile ({err}); reading it again",
             op=call.op, res=call.target.resource, err=failure.value)  # fmt: skip
    request.s3_headers.restore(before)
    return attempt().addErrback(_read_again, call, before, attempt, left - 1)


def lookup_object(api: Any, call: Any) -> Deferred[Any]:
    """Deferred[(principal, bucket, record)] of the object the call names,
    through the gate as for GetObject (the website endpoint reads so)."""
    return _lookup(api, call)


def respond_with_object(found: tuple[Principal, Bucket, Any], api: Any, call: Any, *, status: int = 200) -> Any:
    """GetObject's answer for an object :func:`lookup_object` found, with
    ``status`` for a whole body (the website endpoint's error document is
    sent with the error's status)."""
    return _respond(found, api, call, status=status)


def _respond(found: tuple[Principal, Bucket, Any], api: Any, call: Any, *, status: int = 200) -> Any:
    from lightningstor.s3.handlers.multipart import requested_part

    principal, bucket, record = found
    if "x-amz-server-side-encryption" in call.headers:
        refuse_sse_header(call.headers)
    # SSE-C: the object's key, checked against its record (s3/ssec.py).
    customer = ssec.read_key(call.headers, call.request.isSecure, record.encryption)
    checksum_mode = call.headers.get("x-amz-checksum-mode", "").upper() == "ENABLED"
    part = requested_part(call, record, checksum_mode=checksum_mode)  # ?partNumber=N: that part's span
    conditions.check_read_conditions(call.headers, record.etag, record.created_at)
    asked = [(k, v) for k, v in call.target.query.items() if k in RESPONSE_OVERRIDES]
    if asked:
        if access.is_anonymous(principal):
            # As AWS: otherwise anyone could serve a public text upload as an
            # HTML page of the storage origin (stored cross-site scripting).
            raise errors.InvalidRequest("Request specific response headers cannot be used for anonymous GET requests.")
        for name, value in asked:  # sent as a header: no control characters (core/attributes.py)
            check_field_value(value, name, name)
    overrides = [(RESPONSE_OVERRIDES[k], v) for k, v in asked]
    headers = object_headers(record, checksum_mode=checksum_mode, lock=access.in_scope(principal, bucket))
    if record.version_id is None:
        headers += version_header(bucket, None)
    if bucket.lifecycle and "versionId" not in call.target.query:
        headers += expiration_header(api, bucket, record)  # the current version only
    if overrides:
        override_names = {n.lower() for n, _ in overrides}
        headers = [(n, v) for n, v in headers if n.lower() not in override_names] + overrides
    span = ranges.parse_range(call.headers.get("range"), record.size) if part is None else part[0]
    if span is not None or (part is not None and record.part_sizes):
        # A whole-object checksum does not describe a range or a part of a
        # multipart object (the part's own checksums come with ``part``).
        headers = [(n, v) for n, v in headers if not n.startswith("x-amz-checksum-")]
    headers += part[1] if part is not None else []
    request = call.request
    if part is not None and part[0] is None:
        start, length = 0, 0  # an empty part (a last part may be): a 200 with no body
    elif span is None:
        start, length = 0, record.size
    else:
        start, end = span
        length, status = end - start + 1, 206
        headers.append(("Content-Range", ranges.content_range(start, end, record.size)))
    request.setResponseCode(status)
    response_headers = request.responseHeaders
    response_headers.set_pairs(headers)
    response_headers.put(b"Content-Length", b"%d" % length)
    if call.method == "HEAD" or length == 0:
        return b""
    d: Deferred[Any] = api.core.open_reader(record, start, length, customer)
    return d.addCallback(_stream, request)


def _stream(reader: Any, request: Any) -> Deferred[None]:
    return ObjectProducer(request, reader).start()


@inlineCallbacks
def delete_object(api: Any, call: Any) -> Any:
    principal, _ = yield call.auth.get()
    bucket = yield api.bucket(call, principal)
    version = _version_param(call)
    conditions.refuse_directory_bucket_conditions(call.headers)
    # A conditional delete (AWS, general purpose buckets since 2025): an ETag
    # or "*", checked in the deleting transaction.
    if_match = conditions.write_if_match(call.headers)
    yield api.core.allow_delete_condition(principal, bucket, call.key, if_match, call.decisions.append, call)
    bypass = False
    if version is not None and bypass_requested(call.headers):
        bypass = yield api.core.may_bypass_governance(principal, bucket, call.key, call.decisions.append, call)
    outcome = yield api.core.objects.delete(
        bucket, call.key, version, owner=principal.principal_id, bypass_governance=bypass, if_match=if_match
    )
    headers = []
    if outcome.delete_marker:
        headers.append(("x-amz-delete-marker", "true"))
    if outcome.version_id is not None:
        headers.append(("x-amz-version-id", outcome.version_id))
    return api.send(call, 204, headers=headers, content_type=None)


@inlineCallbacks
def delete_objects(api: Any, call: Any) -> Any:
    principal, _ = yield call.auth.get()
    # Resolved without a bucket-wide check: each key is authorized alone.
    bucket = yield api.core.access.resolve(principal, call.bucket)
    if access.is_anonymous(principal) and not bucket.policy and not acls_enabled(bucket):
        raise errors.AccessDenied(resource=f"/{bucket.name}")
    if "x-amz-expected-bucket-owner" in call.headers:
        check_expected_owner(bucket, call.headers["x-amz-expected-bucket-owner"])
    api.cross_origin(call, bucket)
    body = call.sink.content()
    check_body_digest(call, body)
    quiet, items, etags = xmlio.parse_delete_objects(body)
    if len(items) > api.options.max_delete_keys:
        raise errors.MalformedXML(f"At most {api.options.max_delete_keys} keys may be deleted at once")
    result = yield api.core.delete_objects(
        bucket, items, owner=principal.principal_id, principal=principal, trail=call.decisions.append, request=call,
        bypass_governance=bypass_requested(call.headers), if_match=etags,
    )  # fmt: skip
    deleted = [(d.key, d.version_id, d.delete_marker, d.delete_marker_version_id) for d in result.deleted]
    failed = [(f.key, f.version_id, f.code, f.message) for f in result.failed]
    return api.send_xml(call, xmlio.delete_result_xml(deleted, failed, quiet))


def check_body_digest(call: Any, body: bytes) -> None:
    """DeleteObjects and PutBucketCors (and the other configurations AWS
    names) need an integrity check: Content-MD5 (older SDKs) or an
    x-amz-checksum-* header (newer SDKs send only that).  ``body`` was
    checked against it when it was read (s3/body.py BufferedBody); this is
    the rule that one must be there."""
    expected, _keep, _trailer = checksum_algorithms(call.headers)
    if call.headers.get("content-md5") is None and not expected:
        raise errors.S3Error("Missing required header for this request: Content-MD5", code="InvalidRequest")


def parse_copy_source(value: str) -> tuple[str, str, str | None]:
    """``/bucket/key?versionId=x`` (leading slash optional, URL-encoded).

    A raw ``+`` is a space, as S3 decodes it: a key holding a plus is sent
    as ``%2B`` (botocore, minio-go, and rclone, which escapes it "for S3
    compatibility"), and a raw plus sent for one finds no key on AWS
    (aws-cli#614, aws-sdk-js#1821); clients that encode the header as a
    form (Java's URLEncoder, PHP's urlencode) send a space as ``+``."""
    raw, _, query = value.partition("?")
    source = unquote_plus(raw)
    if source.startswith("/"):
        source = source[1:]
    bucket, slash, key = source.partition("/")
    if not bucket or not slash or not key:
        raise errors.InvalidArgument("Copy Source must mention the source bucket and key: sourcebucket/sourcekey", ArgumentName="x-amz-copy-source")
    # versionId wherever it stands among the parameters (a client that puts
    # another one first must not get the current version copied instead).
    versions = [unquote(v) for n, _, v in (p.partition("=") for p in query.split("&")) if n == "versionId"]
    if len(versions) > 1:
        raise errors.InvalidArgument("Copy Source names more than one versionId", ArgumentName="x-amz-copy-source")
    return bucket, key, versions[0] if versions else None


def copy_object(api: Any, call: Any) -> Deferred[Any]:
    """CopyObject.  The source's bytes are read after its lookup: if the
    source is overwritten or deleted meanwhile and its old chunks freed
    before the copy read them (``storage.free_delay_seconds``), the copy
    starts again from the lookup (its conditions checked against what the
    source is then), as :func:`again_if_replaced` does for a GET."""
    return again_if_replaced(call, lambda: _copy_object(api, call))


@inlineCallbacks
def _copy_object(api: Any, call: Any) -> Any:
    principal, _ = yield call.auth.get()
    refuse_unsupported(call.headers)
    dest_bucket = yield api.bucket(call, principal)
    validate_key(call.key)
    src_bucket_name, src_key, src_version = parse_copy_source(call.headers["x-amz-copy-source"])
    src_bucket = yield api.bucket(
        call, principal, name=src_bucket_name, key=src_key, action=access.OBJECTS_GET, source_version=src_version
    )
    customer = ssec.write_key(call.headers, call.request.isSecure)
    source = yield resolve_copy_source(api.core, src_bucket, src_key, src_version)
    source_customer = ssec.read_key(call.headers, call.request.isSecure, source.encryption, ssec.COPY_SOURCE_PREFIX)
    conditions.check_copy_source_conditions(call.headers, source.etag, source.created_at)
    directive = call.headers.get("x-amz-metadata-directive", "COPY").upper()
    if directive not in ("COPY", "REPLACE"):
        raise errors.InvalidArgument("Unknown metadata directive.", ArgumentName="x-amz-metadata-directive", ArgumentValue=directive)
    tag_directive = call.headers.get("x-amz-tagging-directive", "COPY").upper()
    if tag_directive not in ("COPY", "REPLACE"):
        raise errors.InvalidArgument("Unknown tagging directive.", ArgumentName="x-amz-tagging-directive", ArgumentValue=tag_directive)
    # Whatever the directive, as AWS: the storage class, the website
    # redirect and the checksum algorithm are the request's (or none).
    storage_class = call.headers.get("x-amz-storage-class")
    if storage_class:
        validate_storage_class(storage_class)
    redirect = call.headers.get(WEBSITE_REDIRECT_HEADER)
    if redirect is not None:
        check_website_redirect(redirect)
    check_copy_changes(
        src_bucket,
        src_key,
        src_version,
        dest_bucket,
        call.key,
        replaces_metadata=directive == "REPLACE",
        sets_storage_class="x-amz-storage-class" in call.headers,
        sets_encryption=sse_request(call.headers) is not None or customer is not None,
        sets_website_redirect=redirect is not None,
    )
    replace = put_attrs(call.headers, max_metadata_bytes=api.options.max_metadata_bytes) if directive == "REPLACE" else None
    tags = None
    if tag_directive == "REPLACE":
        tags = parse_tagging_header(call.headers.get("x-amz-tagging", ""))
        check_tags(tags, MAX_OBJECT_TAGS)
    lock = lock_headers(call.headers)
    write_conditions = PutAttrs(
        if_none_match_any=conditions.write_if_none_match_any(call.headers),
        if_match=conditions.write_if_match(call.headers),  # the destination's current ETag
        lock_mode=lock.mode,
        lock_until=lock.until,
        legal_hold=lock.legal_hold,
    )
    check_lock_attrs(api, dest_bucket, write_conditions)
    # The copy's ACL is the request's, never the source's (as AWS).
    owner, acl = object_acl_for_write(api, dest_bucket, principal, call.headers)
    check_outsider_extras(principal, dest_bucket, call.key, owner, lock=asks_lock(call.headers), tags=bool(tags))
    yield check_lock_permissions(api, call, principal, dest_bucket)
    yield checked_write_acl(api, call, principal, dest_bucket, call.key, (owner, acl))
    record = yield api.core.copy_object(
        source,
        dest_bucket,
        call.key,
        replace_metadata=replace,
        tags=tags,
        owner=owner,
        acl=acl,
        conditions=write_conditions,
        encryption=sse_request(call.headers),
        customer=customer,
        source_customer=source_customer,
        checksum_algorithms=checksum_algorithms(call.headers)[1],
        website_redirect=redirect,
    )
    headers = written_version_header(record.version_id)
    headers += sse_response_headers(record.encryption)
    headers += [("x-amz-copy-source-version-id", v) for _, v in version_header(src_bucket, source.version_id)]
    if dest_bucket.lifecycle:
        headers += expiration_header(api, dest_bucket, record)
    kind = checksum_type_of(record.checksums) if record.checksums else None
    body = xmlio.copy_object_result_xml(record.etag, record.created_at, record.checksums, kind)
    call.object_size = record.size
    return api.send_xml(call, body, headers=headers)


@inlineCallbacks
def get_object_tagging(api: Any, call: Any) -> Any:
    _principal, bucket, record = yield _lookup(api, call)
    return api.send_xml(call, xmlio.tagging_xml(record.tags), headers=version_header(bucket, record.version_id))


@inlineCallbacks
def put_object_tagging(api: Any, call: Any) -> Any:
    """Replace one version's tags: a metadata-only change (data untouched)."""
    principal, _ = yield call.auth.get()
    bucket = yield api.bucket(call, principal)
    tags = xmlio.parse_tagging(call.sink.content())
    check_tags(tags, MAX_OBJECT_TAGS)
    record = yield api.core.objects.set_tags(bucket, call.key, _version_param(call), tags)
    return api.send(call, 200, headers=version_header(bucket, record.version_id), content_type=None)


@inlineCallbacks
def delete_object_tagging(api: Any, call: Any) -> Any:
    principal, _ = yield call.auth.get()
    bucket = yield api.bucket(call, principal)
    record = yield api.core.objects.set_tags(bucket, call.key, _version_param(call), {})
    return api.send(call, 204, headers=version_header(bucket, record.version_id), content_type=None)
