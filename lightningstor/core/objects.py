"""Object records: validation, atomic commit, lookup and deletion.

Write order for every mutation (DESIGN "The data path"): chunks durable ->
metadata committed atomically (record + chunk index entries in one
transaction) -> success returned -> superseded chunks deleted.  A crash at
any point leaves the old or the new object visible, never a mix; chunks no
committed record references are reclaimed by the collector.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

from twisted.internet.defer import inlineCallbacks
from twisted.logger import Logger

from lightningstor import errors
from lightningstor.checksums import b64
from lightningstor.core import keys, records
from lightningstor.core.types import Bucket, ObjectRecord
from lightningstor.interfaces.metadata import Compare, Delete, IMetadataStore, Operation, Put

MAX_KEY_BYTES = 1024
MAX_SINGLE_PUT_BYTES = 5 * 1024**3  # AWS: larger objects need multipart

log = Logger()


def validate_key(key: str) -> None:
    """Object keys: 1-1024 UTF-8 bytes, no NUL (it could never round-trip XML)."""
    if not key:
        raise errors.InvalidArgument("Object key must not be empty")
    try:
        raw = key.encode("utf-8")
    except UnicodeEncodeError as e:  # lone surrogates from a bad %-escape
        raise errors.InvalidURI("Object key is not valid UTF-8") from e
    if len(raw) > MAX_KEY_BYTES:
        raise errors.KeyTooLongError(resource=key[:64] + "...")
    if "\x00" in key:
        raise errors.InvalidArgument("Object key must not contain NUL", ArgumentName="key")


@dataclass
class PutAttrs:
    """What a writer said about the object besides its bytes."""

    content_type: str = "binary/octet-stream"
    system_headers: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    content_md5: str | None = None  # base64, from Content-MD5
    expected_checksums: dict[str, str] = field(default_factory=dict)  # algorithm -> base64
    store_checksums: tuple[str, ...] = ()  # algorithms to keep even if not sent (SDK's choice)
    storage_class: str = "STANDARD"
    tags: dict[str, str] = field(default_factory=dict)
    owner: str = ""
    if_none_match_any: bool = False  # If-None-Match: *
    if_match: str | None = None


def validate_metadata(metadata: dict[str, str], limit: int) -> None:
    """AWS: user metadata (names + values, UTF-8) at most 2 KiB."""
    total = sum(len(k.encode()) + len(v.encode()) for k, v in metadata.items())
    if total > limit:
        raise errors.MetadataTooLarge(MaxSizeAllowed=str(limit), Size=str(total))


def verify_digests(attrs: PutAttrs, md5_hex: str, digests: dict[str, bytes]) -> dict[str, str]:
    """Compare client digests with what was computed; return checksums to store.

    Content-MD5 that is not base64 of 16 bytes is InvalidDigest; a mismatch
    of either kind is BadDigest (the object is not stored).
    """
    if attrs.content_md5 is not None:
        try:
            want = base64.b64decode(attrs.content_md5, validate=True)
        except (binascii.Error, ValueError) as e:
            raise errors.InvalidDigest() from e
        if len(want) != 16:
            raise errors.InvalidDigest()
        if not hmac.compare_digest(want, bytes.fromhex(md5_hex)):
            raise errors.BadDigest()
    stored: dict[str, str] = {}
    for algorithm, value in attrs.expected_checksums.items():
        got = b64(digests[algorithm])
        if not hmac.compare_digest(got.encode(), value.encode()):
            raise errors.BadDigest(
                f"The {algorithm.upper()} you specified did not match the calculated checksum."
            )
        stored[algorithm] = got
    for algorithm in attrs.store_checksums:
        if algorithm in digests:
            stored[algorithm] = b64(digests[algorithm])
    return stored


def _chunk_ops(record: ObjectRecord | None, owner: bytes, put: bool) -> list[Operation]:
    if record is None:
        return []
    if put:
        return [Put(keys.chunk_key(c.chunk_id), owner) for c in record.chunks]
    return [Delete(keys.chunk_key(c.chunk_id)) for c in record.chunks]


class ObjectManager:
    """Commits, finds and deletes object records."""

    def __init__(
        self,
        store: IMetadataStore,
        delete_chunks: Callable[[Iterable[Any]], Any],
        clock: Callable[[], float],
        *,
        max_metadata_bytes: int = 2048,
    ) -> None:
        self._store = store
        self._delete_chunks = delete_chunks
        self._clock = clock
        self.max_metadata_bytes = max_metadata_bytes

    def now_ms(self) -> int:
        return int(self._clock() * 1000)

    @inlineCallbacks
    def head(self, bucket: Bucket, key: str) -> Any:
        """Deferred[ObjectRecord]; NoSuchKey if absent."""
        validate_key(key)
        kv = yield self._store.get(keys.object_key(bucket.bucket_id, key))
        if kv is None:
            raise errors.NoSuchKey(resource=key, Key=key)
        return records.decode_object(kv.value)

    @inlineCallbacks
    def find(self, bucket: Bucket, key: str) -> Any:
        """Deferred[ObjectRecord | None]."""
        kv = yield self._store.get(keys.object_key(bucket.bucket_id, key))
        return None if kv is None else records.decode_object(kv.value)

    @inlineCallbacks
    def commit(
        self,
        bucket: Bucket,
        record: ObjectRecord,
        attrs: PutAttrs | None = None,
        *,
        extra_compares: Sequence[Compare] = (),
        extra_ops: Sequence[Operation] = (),
    ) -> Any:
        """Atomically make ``record`` the current object; Deferred[ObjectRecord].

        Retries on a lost compare of the object key (a concurrent writer of
        the same key): the last committer wins, as in S3.  Conditional writes
        (If-None-Match: *, If-Match) are checked against the record the
        transaction guards, so they hold even under races.  Superseded chunks
        are deleted after the commit.

        ``extra_compares``/``extra_ops`` join the same transaction (multipart
        completion removes its upload records atomically with the commit).  If
        one of the extra compares fails, :class:`ConflictError` is raised and
        nothing is written.
        """
        okey = keys.object_key(bucket.bucket_id, record.key)
        owner = okey
        for _attempt in range(100):
            kv = yield self._store.get(okey)
            current = None if kv is None else records.decode_object(kv.value)
            if attrs is not None:
                _check_write_conditions(attrs, current, record.key)
            ops: list[Operation] = []
            ops += _chunk_ops(current, owner, put=False)
            ops.append(Put(okey, records.encode_object(record)))
            ops += _chunk_ops(record, owner, put=True)
            ops += list(extra_ops)
            guard = Compare(okey, kv.mod_revision if kv else 0)
            result = yield self._store.txn([guard, *extra_compares], ops)
            if result.succeeded:
                if current is not None and current.chunks:
                    keep = {c.chunk_id for c in record.chunks}
                    self._delete_chunks([c for c in current.chunks if c.chunk_id not in keep])
                return record
            if extra_compares:
                # Was it our key or one of the caller's guards that moved?
                now = yield self._store.get(okey)
                if (now.mod_revision if now else 0) == guard.mod_revision:
                    raise ConflictError("a guarded record changed during the commit")
        raise errors.SlowDown("Too many concurrent writes to this key")

    @inlineCallbacks
    def delete(self, bucket: Bucket, key: str) -> Any:
        """Deferred[bool]: True if an object was removed.  Deleting a missing
        key succeeds (S3 answers 204 either way)."""
        validate_key(key)
        okey = keys.object_key(bucket.bucket_id, key)
        for _attempt in range(100):
            kv = yield self._store.get(okey)
            if kv is None:
                return False
            current = records.decode_object(kv.value)
            ops: list[Operation] = [Delete(okey)] + _chunk_ops(current, okey, put=False)
            result = yield self._store.txn([Compare(okey, kv.mod_revision)], ops)
            if result.succeeded:
                if current.chunks:
                    self._delete_chunks(current.chunks)
                return True
        raise errors.SlowDown("Too many concurrent writes to this key")


class ConflictError(Exception):
    """An ``extra_compares`` guard of :meth:`ObjectManager.commit` failed; the
    caller maps it to its own S3 error (e.g. NoSuchUpload)."""


def _check_write_conditions(attrs: PutAttrs, current: ObjectRecord | None, key: str) -> None:
    if attrs.if_none_match_any and current is not None and not current.delete_marker:
        raise errors.PreconditionFailed(Condition="If-None-Match")
    if attrs.if_match is not None:
        if current is None or current.delete_marker:
            raise errors.NoSuchKey(resource=key, Key=key)
        want = attrs.if_match.strip()
        if want != "*" and want.strip('"') != current.etag:
            raise errors.PreconditionFailed(Condition="If-Match")
