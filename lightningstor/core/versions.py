"""Version identity and bucket-level versioning state.

A version id names one version of one key.  Ours carry the version's
*sequence* (its place in the key's commit order) next to random bytes:

* the sequence locates a noncurrent version with one read
  (:func:`lightningstor.core.keys.version_key`) and lets ListObjectVersions
  resume after a ``version-id-marker`` with one seek, with no id index to keep
  consistent;
* the random part keeps ids unique and unguessable: a sequence number is
  reused once every version of a key has been deleted, and a lookup always
  compares the whole id, so an old id never finds a newer version.

Ids are 32 characters of RFC 4648 base32 (``A-Z2-7``): URL-safe and never
starting with ``-`` (which command-line tools would read as an option).  The
sequence is masked with the random bytes so ids look as opaque as AWS's
(clients must not read meaning into them).  ``null`` is the
id of the version written while versioning was off or suspended.
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass
from typing import Any, Callable

from twisted.internet.defer import inlineCallbacks

from lightningstor import errors
from lightningstor.core import keys, records
from lightningstor.core.types import Bucket, Versioning
from lightningstor.interfaces.metadata import Compare, IMetadataStore, Put

NULL_VERSION = "null"
_RANDOM_BYTES = 12
_ID_LENGTH = 32  # base32 of 12 random + 8 sequence bytes, no padding


def new_version_id(sequence: int) -> str:
    """A fresh id for the version with ``sequence``."""
    salt = os.urandom(_RANDOM_BYTES)
    masked = sequence ^ int.from_bytes(salt[:8], "big")
    return base64.b32encode(salt + masked.to_bytes(8, "big")).decode("ascii")


@dataclass(frozen=True)
class VersionRef:
    """A parsed version id: the ``null`` version, or a sequence plus the full id."""

    text: str
    sequence: int | None  # None for the null version

    @property
    def is_null(self) -> bool:
        return self.sequence is None


def parse_version_id(text: str) -> VersionRef:
    """Parse a client's ``versionId``; a malformed one is 400 InvalidArgument
    (AWS's answer), a well-formed unknown one is the caller's NoSuchVersion."""
    if text == NULL_VERSION:
        return VersionRef(text, None)
    if len(text) != _ID_LENGTH:
        raise invalid_version_id(text)
    try:
        raw = base64.b32decode(text.encode("ascii"))
    except (binascii.Error, ValueError, UnicodeError):
        raise invalid_version_id(text) from None
    masked = int.from_bytes(raw[_RANDOM_BYTES:], "big")
    return VersionRef(text, masked ^ int.from_bytes(raw[:8], "big"))


def invalid_version_id(text: str) -> errors.S3Error:
    return errors.InvalidArgument("Invalid version id specified", ArgumentName="versionId", ArgumentValue=text)


def wire_version_id(version_id: str | None) -> str:
    """How a record's version id is spelled on the wire (``null`` for None)."""
    return NULL_VERSION if version_id is None else version_id


def reported_version_id(bucket: Bucket, version_id: str | None) -> str | None:
    """The version id a response reports for a version of an object in ``bucket``.

    A real id always; the null version's ``null`` only once the bucket has
    versioning configured (for a bucket never versioned AWS reports none).
    """
    if version_id is not None:
        return version_id
    if bucket.versioning is not Versioning.DISABLED:
        return NULL_VERSION
    return None


def next_versioning(current: Versioning, requested: str) -> Versioning:
    """The state PutBucketVersioning moves a bucket to.

    Only Enabled and Suspended can be requested; once configured a bucket
    never returns to "never versioned" (AWS has no such request either).
    """
    if requested == Versioning.ENABLED.value:
        return Versioning.ENABLED
    if requested == Versioning.SUSPENDED.value:
        return Versioning.SUSPENDED
    raise errors.MalformedXML()


@inlineCallbacks
def update_bucket(
    store: IMetadataStore, bucket: Bucket, change: Callable[[Bucket], None], now_ms: int
) -> Any:
    """Deferred[Bucket]: apply ``change`` to the stored bucket record atomically.

    Bucket settings (versioning state, tag set) are read-modify-writes of one
    record; the compare on its revision means two concurrent changes never
    lose one another, and a bucket deleted (or deleted and re-created) in the
    meantime is NoSuchBucket rather than resurrected.
    """
    bkey = keys.bucket_key(bucket.org_id, bucket.project_id, bucket.name)
    for _attempt in range(100):
        kv = yield store.get(bkey)
        stored = None if kv is None else records.decode_bucket(kv.value)
        if stored is None or stored.bucket_id != bucket.bucket_id:
            raise errors.NoSuchBucket(resource=bucket.name, BucketName=bucket.name)
        change(stored)
        stored.updated_at = now_ms
        result = yield store.txn([Compare(bkey, kv.mod_revision)], [Put(bkey, records.encode_bucket(stored))])
        if result.succeeded:
            stored.revision = result.revision
            return stored
    raise errors.SlowDown("Too many concurrent changes to this bucket")


@inlineCallbacks
def noncurrent_null(store: IMetadataStore, bucket_id: str, current: Any) -> Any:
    """Deferred[(KeyValue, ObjectRecord) | None]: the noncurrent null version
    the current record ``current`` points to (``null_sequence``), if it is
    still there and still null: what a write replaces while versioning is
    suspended (the commit removes it, the quota check credits it)."""
    if current.null_sequence is None:
        return None
    kv = yield store.get(keys.version_key(bucket_id, current.key, current.null_sequence))
    record = None if kv is None else records.decode_object(kv.value)
    if record is None or record.version_id is not None:
        return None
    return kv, record
