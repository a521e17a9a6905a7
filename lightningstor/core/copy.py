"""CopyObject: a new object from an existing one's bytes.

Data is copied chunk by chunk through the ChunkManager (read piece -> write
piece), so memory stays bounded and the copy gets its own chunks: deleting
either object never affects the other.  The destination follows its bucket's
versioning like any write (``core.objects.commit``); restoring an old version
is a copy of that version onto its own key.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks

from lightningstor import errors
from lightningstor.core.objects import PutAttrs, may_have_committed, verify_digests, with_default_checksum
from lightningstor.core.sse import CustomerKey, customer_etag
from lightningstor.core.types import Acl, Bucket, ObjectRecord
from lightningstor.core.website import REDIRECT_HEADER
from lightningstor.storage.chunks import pump


@inlineCallbacks
def copy_data(
    core: Any, source: ObjectRecord, algorithms: tuple[str, ...], dest_bucket: Bucket, dest_key: str,
    encryption: str | None,
    customer: CustomerKey | None = None,
    source_customer: CustomerKey | None = None,
) -> Any:
    """Deferred[WriteResult] holding a fresh copy of ``source``'s bytes.

    The copy is written like any new object (``core.new_writer``): its
    encryption is what the copy request asks for (``customer``: SSE-C
    under that key), else the destination bucket's default, never the
    source's key: an encrypted source is decrypted (an SSE-C one with
    ``source_customer``) and re-encrypted into new chunks."""
    writer = core.new_writer(dest_bucket, dest_key, encryption, algorithms, customer=customer)
    try:
        reader = yield core.open_reader(source, 0, source.size, source_customer)
    except BaseException:
        yield writer.abort()
        raise
    result = yield Deferred.fromCoroutine(pump(reader, writer))  # aborts the writer if it fails
    return result


@inlineCallbacks
def resolve_copy_source(core: Any, bucket: Bucket, key: str, version_id: str | None) -> Any:
    """Deferred[ObjectRecord]: the version a copy (or UploadPartCopy) reads.

    Without a version id a current delete marker makes the key absent
    (NoSuchKey); naming a delete marker's version id is InvalidRequest, as
    AWS answers, since a marker has no data to copy.
    """
    if version_id is None:
        record = yield core.objects.head(bucket, key)
        return record
    record = yield core.objects.get_version(bucket, key, version_id)
    if record.delete_marker:
        raise errors.InvalidRequest(
            "The source of a copy request may not specifically refer to a delete marker by version id."
        )
    return record


def check_copy_changes(
    source_bucket: Bucket,
    source_key: str,
    source_version_id: str | None,
    dest_bucket: Bucket,
    dest_key: str,
    *,
    replaces_metadata: bool,
    sets_storage_class: bool,
    sets_encryption: bool = False,
    sets_website_redirect: bool = False,
) -> None:
    """InvalidRequest for a copy of an object onto itself that changes nothing.

    Copying a named version onto its own key is how an old version is
    restored, so only an unversioned self-copy must change something (its
    metadata or storage class), as AWS requires.
    """
    same = (
        source_bucket.bucket_id == dest_bucket.bucket_id
        and source_key == dest_key
        and source_version_id is None
    )
    if same and not (replaces_metadata or sets_storage_class or sets_encryption or sets_website_redirect):
        raise errors.InvalidRequest(
            "This copy request is illegal because it is trying to copy an object to itself without "
            "changing the object's metadata, storage class, website redirect location or encryption attributes."
        )


@inlineCallbacks
def copy_object(
    core: Any,
    source: ObjectRecord,
    dest_bucket: Bucket,
    dest_key: str,
    *,
    replace_metadata: PutAttrs | None,
    tags: dict[str, str] | None,
    owner: str,
    conditions: PutAttrs | None = None,
    encryption: str | None = None,
    customer: CustomerKey | None = None,
    source_customer: CustomerKey | None = None,
    acl: Acl | None = None,
    checksum_algorithms: tuple[str, ...] = (),
    website_redirect: str | None = None,
) -> Any:
    """Deferred[ObjectRecord] of the new object.

    ``replace_metadata`` None means x-amz-metadata-directive COPY (take the
    source's content type, system headers and user metadata); ``tags`` None
    means copy the source's tags.  The source's Object Lock settings are
    never copied (as in AWS): the copy gets those ``conditions`` carries
    (the request's headers), else its bucket's default retention.  Nor is
    its encryption: ``encryption`` (the request's SSE) or the destination
    bucket's default decides (:func:`copy_data`); ``customer`` and
    ``source_customer`` are the SSE-C keys of the copy and of its source.
    Nor is its ACL: the copy gets ``acl`` (the request's; None: private).
    Nor, whatever the directive, is its website redirect: the copy gets
    ``website_redirect`` (the request's header) or none, as AWS documents.

    ``checksum_algorithms`` (the request's ``x-amz-checksum-algorithm``)
    replaces the source's algorithm, under either directive: an object has
    the checksums of one algorithm, as on AWS; without it the copy is
    checksummed as its source was.
    """
    requested = checksum_algorithms or (replace_metadata.store_checksums if replace_metadata is not None else ())
    # A source without checksums gets the default one: the copy is a new
    # object, hashed anyway as it is written (AWS adds CRC64NVME to new
    # objects written without a checksum).
    keep = with_default_checksum(tuple(sorted(requested)) if requested else tuple(sorted(source.checksums)))
    # A copy that can never be committed is refused before its bytes are
    # written (as PutObject from its headers); the commit decides exactly.
    yield core.quotas.check_put(dest_bucket, dest_key, source.size)
    result = yield copy_data(core, source, keep, dest_bucket, dest_key, encryption, customer, source_customer)
    checksums = verify_digests(PutAttrs(store_checksums=keep), result.md5_hex, result.digests)
    meta_from = source
    record = ObjectRecord(
        key=dest_key,
        size=result.size,
        etag=customer_etag(result.md5_hex, result.encryption),
        created_at=core.objects.now_ms(),
        content_type=meta_from.content_type,
        system_headers={k: v for k, v in meta_from.system_headers.items() if k != REDIRECT_HEADER},
        metadata=dict(meta_from.metadata),
        checksums=checksums,
        storage_class=meta_from.storage_class,
        chunks=list(result.chunks),
        inline=result.inline,
        tags=dict(source.tags) if tags is None else tags,
        owner=owner,
        encryption=result.encryption,
        acl=acl,
    )
    if replace_metadata is not None:
        record.content_type = replace_metadata.content_type
        record.system_headers = dict(replace_metadata.system_headers)
        record.metadata = dict(replace_metadata.metadata)
        record.storage_class = replace_metadata.storage_class
    elif website_redirect is not None:
        record.system_headers[REDIRECT_HEADER] = website_redirect
    if conditions is not None:
        record.lock_mode, record.lock_until = conditions.lock_mode, conditions.lock_until
        record.legal_hold = conditions.legal_hold
    try:
        committed = yield core.objects.commit(dest_bucket, record, conditions)
    except BaseException as e:
        if not may_have_committed(e):
            core.chunks.delete_chunks(result.chunks)
        raise
    return committed
