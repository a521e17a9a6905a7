"""Object records: validation, atomic commit, lookup and deletion.

Write order for every mutation (DESIGN "The data path"): chunks durable ->
metadata committed atomically, with the chunk-index hints (core/chunkindex.py;
a long chunk list's hints are written just before) -> success returned ->
superseded chunks unindexed, then deleted.  A crash at
any point leaves the old or the new object visible, never a mix; chunks no
committed record references are reclaimed by the collector.

Versioning (S3 semantics: Enabled, Suspended, the ``null`` version, delete
markers) is decided here too; see :class:`ObjectManager` for the key spaces
and the invariants every transaction keeps.
"""

from __future__ import annotations

import base64
import hmac
from dataclasses import dataclass, field, replace
from email.utils import formatdate
from typing import Any, Callable, Collection, Iterable, Sequence

from twisted.internet.defer import CancelledError, Deferred, fail, inlineCallbacks
from twisted.logger import Logger

from lightningstor import errors
from lightningstor.checksums import b64, is_digest_value
from lightningstor.core import chunkindex, keys, manifests, objectlock, records
from lightningstor.core.attributes import check_object_tags
from lightningstor.core.buckets import bucket_guard, read_bucket_guard
from lightningstor.core.newkeys import NewKeyGuess
from lightningstor.core.quotas import ZERO, BucketScope, QuotaManager, Usage, record_usage
from lightningstor.core.sse import CustomerKey, customer_etag
from lightningstor.core.types import Acl, Bucket, ChunkRef, ObjectRecord, Versioning
from lightningstor.core.versions import (
    VersionRef,
    new_version_id,
    noncurrent_null,
    parse_version_id,
    wire_version_id,
)
from lightningstor.deferreds import uncancellable
from lightningstor.interfaces.metadata import (
    Compare,
    Delete,
    IMetadataStore,
    Operation,
    Put,
    has_point_read_cache,
    prefix_end,
)

MAX_KEY_BYTES = 1024
MAX_SINGLE_PUT_BYTES = 5 * 1024**3  # AWS: larger objects need multipart
MAX_OBJECT_SIZE = 5 * 1024**4  # AWS's largest object, the default of [limits] max_object_size_bytes

log = Logger()


def _decoded_or_none(kv: Any) -> ObjectRecord | None:
    return None if kv is None else records.decode_object(kv.value)


def _current_or_missing(kv: Any, key: str) -> ObjectRecord:
    if kv is None:
        raise errors.NoSuchKey(resource=key, Key=key)
    return records.decode_object(kv.value)


def _readable(record: ObjectRecord, explicit_version: bool) -> ObjectRecord:
    if record.delete_marker:
        raise unreadable(record, explicit_version=explicit_version)
    return record


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
    # Object Lock settings the writer asked for (core/objectlock.py).
    lock_mode: str | None = None
    lock_until: int | None = None  # Unix ms
    legal_hold: bool | None = None
    # SSE-S3 the writer asked for (``AES256``; None: nothing asked, the
    # bucket's default encryption decides, core/sse.py).
    encryption: str | None = None
    # SSE-C: the customer's key for this write (core/sse.py; never stored).
    customer_key: CustomerKey | None = None
    # The ACL the write set (x-amz-acl, x-amz-grant-*), already expanded for
    # ``owner`` (core/acl.py); None: private.
    acl: Acl | None = None


def validate_metadata(metadata: dict[str, str], limit: int) -> None:
    """AWS: user metadata (names + values, UTF-8) at most 2 KiB."""
    total = sum(len(k.encode()) + len(v.encode()) for k, v in metadata.items())
    if total > limit:
        raise errors.MetadataTooLarge(MaxSizeAllowed=str(limit), Size=str(total))


DEFAULT_CHECKSUM = "crc64nvme"
"""The checksum AWS S3 has added, since 2025, to every new object written
without one: "Amazon S3 added the default checksum, CRC64NVME, to the
uploaded object" (PutObject's ``ChecksumCRC64NVME``), a FULL_OBJECT
checksum.  SDKs that validate downloads by default (boto3 1.36 on) then
check such objects end to end too.  CRC64NVME runs at memory speed in C,
negligible next to the MD5 every body pays for its ETag."""


def with_default_checksum(requested: tuple[str, ...], expected: Collection[str] = ()) -> tuple[str, ...]:
    """The algorithms a new object's body is checksummed with: those the
    writer chose (``requested``, and any it sent a value for, ``expected``),
    else :data:`DEFAULT_CHECKSUM`, as AWS.  Content-MD5 is no checksum
    choice: an upload with only that gets the default too.  Every object
    write path (PutObject, PostObject, CopyObject, gRPC) asks here."""
    if requested or expected:
        return requested
    return (DEFAULT_CHECKSUM,)


def add_default_checksum(attrs: PutAttrs) -> None:
    """Give a write that chose no checksum the default one
    (:func:`with_default_checksum`), kept whatever the body turns out to be."""
    attrs.store_checksums = with_default_checksum(attrs.store_checksums, attrs.expected_checksums)


def verify_digests(attrs: PutAttrs, md5_hex: str, digests: dict[str, bytes]) -> dict[str, str]:
    """Compare client digests with what was computed; return checksums to store.

    Content-MD5 that is not base64 of 16 bytes is InvalidDigest; a mismatch
    of either kind is BadDigest (the object is not stored).
    """
    if attrs.content_md5 is not None:
        if not is_digest_value("md5", attrs.content_md5):
            raise errors.InvalidDigest()
        want = base64.b64decode(attrs.content_md5, validate=True)
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


def _dedupe(ops: Sequence[Operation]) -> list[Operation]:
    """Keep only the last operation on each key, in order (etcd refuses a
    transaction naming one key twice; the interface applies them in order)."""
    seen: set[bytes] = set()
    out: list[Operation] = []
    for op in reversed(ops):
        key = op.key if isinstance(op, (Put, Delete)) else None
        if key is not None:
            if key in seen:
                continue
            seen.add(key)
        out.append(op)
    out.reverse()
    return out


def _has_history(record: ObjectRecord | None) -> bool:
    """True if ``record`` was written with versioning configured."""
    return record is not None and (
        record.sequence != 0 or record.version_id is not None or record.null_sequence is not None
    )


def effective_versioning(bucket: Bucket, current: ObjectRecord | None) -> Versioning:
    """The versioning rules a write to a key follows.

    A bucket never returns to Disabled once configured, so a current record
    with version history under a bucket the caller saw as Disabled means the
    caller's copy of the bucket is stale (versioning was enabled while the
    request ran).  Following the null-version rules then keeps every version
    and never breaks the key's history, where unversioned rules would drop it.
    """
    if bucket.versioning is Versioning.DISABLED and _has_history(current):
        return Versioning.SUSPENDED
    return bucket.versioning


def _http_date(ms: int) -> str:
    return formatdate(ms / 1000, usegmt=True)


def unreadable(record: ObjectRecord, *, explicit_version: bool) -> errors.S3Error:
    """The error for reading a delete marker.

    As the current version it makes the key look absent: 404 NoSuchKey;
    named by its version id it is 405 MethodNotAllowed (a marker has no
    data).  Both carry ``x-amz-delete-marker`` and the marker's version id.
    """
    headers = {
        "x-amz-delete-marker": "true",
        "x-amz-version-id": wire_version_id(record.version_id),
    }
    if not explicit_version:
        return errors.NoSuchKey(resource=record.key, headers=headers, Key=record.key)
    headers["Last-Modified"] = _http_date(record.created_at)
    return errors.MethodNotAllowed(
        "The specified method is not allowed against this resource.",
        headers=headers,
        ResourceType="DeleteMarker",
    )


@dataclass
class DeleteOutcome:
    """What a DeleteObject did, for the response headers / DeleteResult."""

    version_id: str | None  # x-amz-version-id to report (None: unversioned delete)
    delete_marker: bool  # a delete marker was created, or the deleted version was one


@dataclass
class _Located:
    """A version found by id: where its record lives and the key's current record."""

    record: ObjectRecord
    storage_key: bytes  # the object key (current) or a version key (noncurrent)
    revision: int
    current: ObjectRecord
    current_revision: int

    @property
    def is_current(self) -> bool:
        return self.record is self.current


@dataclass
class _Plan:
    """The writes that make a new record current, beyond the object key's own guard."""

    ops: list[Operation] = field(default_factory=list)
    compares: list[Compare] = field(default_factory=list)
    freed: list[ChunkRef] = field(default_factory=list)  # chunks of versions gone for good
    kept: set[str] = field(default_factory=set)  # chunk ids still referenced afterwards
    delta: Usage = ZERO  # what the commit changes in the bucket's usage (core.quotas)


def _unchanged_bucket(bucket: Bucket) -> Compare:
    """The compare that holds only while ``bucket``'s record is the one the
    caller read (its settings unchanged); the caller must know its revision."""
    if bucket.revision <= 0:
        raise ValueError("a conditional delete needs the bucket's record revision")
    return Compare(keys.bucket_key(bucket.org_id, bucket.project_id, bucket.name), bucket.revision)


class ObjectManager:
    """Commits, finds and deletes object records and their versions.

    Key spaces: the *current* version of every key lives at
    :func:`keys.object_key`, so GET, HEAD and ListObjects read exactly what
    they read without versioning; *noncurrent* versions live at
    :func:`keys.version_key` (newest first per key).  Invariants, each kept
    by transactions that compare the object key's revision:

    * a key has noncurrent versions only while it has a current record;
    * the current record's ``sequence`` is greater than every noncurrent
      one's, and its ``null_sequence`` names the noncurrent null version;
    * every chunk of every existing version has a chunk-index entry naming
      the object key (core/chunkindex.py), written with the commit (or
      before it, for long lists) and removed only after the transaction
      that permanently removed the version; chunks are deleted only after
      that.  A commit carries at most a few dozen index operations, so its
      size does not grow with the object's.
    """

    def __init__(
        self,
        store: IMetadataStore,
        delete_chunks: Callable[[Iterable[Any]], Any],
        clock: Callable[[], float],
        *,
        max_metadata_bytes: int = 2048,
        quotas: QuotaManager | None = None,
        chunks_per_record: int = manifests.DEFAULT_CHUNKS_PER_RECORD,
    ) -> None:
        self._store = store
        # Longer chunk lists are paged out of the record (core/manifests.py).
        self.chunks_per_record = chunks_per_record
        self._delete_chunks = delete_chunks
        self._clock = clock
        self.max_metadata_bytes = max_metadata_bytes
        # [limits] max_object_size_bytes (set by the Core): the largest object commit() stores.
        self.max_object_size = MAX_OBJECT_SIZE
        # Usage rows and limits ride along in every transaction below.
        self.quotas = quotas if quotas is not None else QuotaManager(store, clock)
        # Whether a commit may skip reading a key it cannot read from memory.
        self.new_keys = NewKeyGuess()
        self._committing = 0  # object commits under way in this process (_commit)
        self._cached_reads = has_point_read_cache(store)

    def now_ms(self) -> int:
        return int(self._clock() * 1000)

    def new_record(self, key: str, result: Any, attrs: PutAttrs, checksums: dict[str, str]) -> ObjectRecord:
        """The record of a body just written (a ChunkManager ``WriteResult``)
        with the writer's attributes, ready for :meth:`commit`.

        ``checksums`` are the values :func:`verify_digests` returned.  One
        place for this mapping keeps objects written over S3 and gRPC alike.
        """
        return ObjectRecord(
            key=key,
            size=result.size,
            etag=customer_etag(result.md5_hex, result.encryption),
            created_at=self.now_ms(),
            content_type=attrs.content_type,
            system_headers=attrs.system_headers,
            metadata=attrs.metadata,
            checksums=checksums,
            storage_class=attrs.storage_class,
            chunks=list(result.chunks),
            inline=result.inline,
            tags=attrs.tags,
            owner=attrs.owner,
            lock_mode=attrs.lock_mode,
            lock_until=attrs.lock_until,
            legal_hold=attrs.legal_hold,
            encryption=result.encryption,
            acl=attrs.acl,
        )

    # -- reading ---------------------------------------------------------
    # head/find/get_version are plain callback chains, not inlineCallbacks
    # generators: they run once for every GET and HEAD, and a generator
    # frame plus its Deferred bookkeeping cost more than the lookup's own
    # Python work (docs/performance.md, "CPU per request").
    def head(self, bucket: Bucket, key: str, version_id: str | None = None) -> Deferred[Any]:
        """Deferred[ObjectRecord] whose data can be read.

        NoSuchKey if absent or if the current version is a delete marker;
        NoSuchVersion / InvalidArgument for an unknown / malformed
        ``version_id``; MethodNotAllowed if it names a delete marker.
        """
        return self.get_version(bucket, key, version_id).addCallback(_readable, version_id is not None)

    def find(self, bucket: Bucket, key: str) -> Deferred[Any]:
        """Deferred[ObjectRecord | None]: the current version (maybe a delete marker)."""
        return self._store.get(keys.object_key(bucket.bucket_id, key)).addCallback(_decoded_or_none)

    def get_version(self, bucket: Bucket, key: str, version_id: str | None = None) -> Deferred[Any]:
        """Deferred[ObjectRecord]: the current version or the one named, delete
        markers included.  NoSuchKey / NoSuchVersion if there is none."""
        try:
            validate_key(key)
        except errors.S3Error:  # a failed Deferred, as from a generator
            return fail()
        if version_id is None:
            return self._store.get(keys.object_key(bucket.bucket_id, key)).addCallback(_current_or_missing, key)
        return self._get_named_version(bucket, key, version_id)

    @inlineCallbacks
    def _get_named_version(self, bucket: Bucket, key: str, version_id: str) -> Any:
        ref = parse_version_id(version_id)
        located = yield self._locate(bucket, key, ref)
        if located is None:
            raise errors.NoSuchVersion(resource=key, Key=key, VersionId=version_id)
        return located.record

    @inlineCallbacks
    def _locate(self, bucket: Bucket, key: str, ref: VersionRef) -> Any:
        """Deferred[_Located | None] for the version ``ref`` names.

        The current record is read first (a GET by the id a PUT returned is
        the common case); a noncurrent version is then one more read.  If the
        version was not where the current record said and the key changed in
        between (a delete promoted it), the lookup is repeated.
        """
        okey = keys.object_key(bucket.bucket_id, key)
        for _attempt in range(10):
            kv = yield self._store.get(okey)
            if kv is None:
                return None
            current = records.decode_object(kv.value)
            if ref.is_null:
                if current.version_id is None:
                    return _Located(current, okey, kv.mod_revision, current, kv.mod_revision)
                sequence = current.null_sequence
            else:
                if current.version_id == ref.text:
                    return _Located(current, okey, kv.mod_revision, current, kv.mod_revision)
                sequence = ref.sequence
            if sequence is None:
                return None
            vkey = keys.version_key(bucket.bucket_id, key, sequence)
            vkv = yield self._store.get(vkey)
            if vkv is not None:
                record = records.decode_object(vkv.value)
                if record.version_id == (None if ref.is_null else ref.text):
                    return _Located(record, vkey, vkv.mod_revision, current, kv.mod_revision)
            again = yield self._store.get(okey)
            if again is not None and again.mod_revision == kv.mod_revision:
                return None
        return None

    # -- writing ---------------------------------------------------------
    @uncancellable
    @inlineCallbacks
    def commit(
        self,
        bucket: Bucket,
        record: ObjectRecord,
        attrs: PutAttrs | None = None,
        *,
        extra_compares: Sequence[Compare] = (),
        extra_ops: Sequence[Operation] = (),
        extra_usage: Usage = ZERO,
        indexed: bool = False,
    ) -> Any:
        """Atomically make ``record`` the current object; Deferred[ObjectRecord].

        With versioning Enabled the record gets a fresh version id and the
        previous current version becomes noncurrent; Suspended (and records
        written before versioning was enabled) use the ``null`` version,
        which replaces any earlier null version.  Without versioning the old
        object is replaced.  ``record.version_id``/``sequence`` are set here.

        Retries on a lost compare of the object key (a concurrent writer of
        the same key): the last committer wins, as in S3.  Conditional writes
        (If-None-Match: *, If-Match) are checked against the record the
        transaction guards, so they hold even under races.  Chunks of
        versions that are gone for good are deleted after the commit.

        ``extra_compares``/``extra_ops`` join the same transaction (multipart
        completion removes its upload records atomically with the commit).  If
        one of the extra compares fails, :class:`ConflictError` is raised and
        nothing is written.  ``extra_usage`` is the caller's own change to the
        bucket's usage (multipart completion releases its parts' bytes).

        Quotas (:mod:`lightningstor.core.quotas`) are checked against fresh
        usage on every attempt; QuotaExceeded leaves everything as it was.

        NoSuchBucket if ``bucket`` was deleted (or replaced by another of its
        name) since the caller read it, and nothing is written: an object
        acknowledged into a deleted bucket could never be read again.  The
        transaction compares ``bucket.revision``; a bucket whose settings
        changed meanwhile only costs a re-read (core/buckets.py, "Deleting a
        bucket").

        The record's chunks are indexed in the same transaction, or first
        for a long list (``indexed``: the caller's chunks already are, as a
        completed upload's parts); entries written first are removed again
        if the commit surely failed.
        """
        if record.manifest is not None and len(record.chunks) != record.manifest.count:
            # A record read back from the store lists no chunks when paged:
            # committing it as is would store an object without its data.
            raise ValueError("a paged record must be committed with its chunks loaded")
        if record.size > self.max_object_size:
            # [limits] max_object_size_bytes, for every way an object is
            # written (PUT, POST, copy, gRPC, complete): it used to bind
            # multipart uploads only.
            raise errors.EntityTooLarge(MaxSizeAllowed=str(self.max_object_size), ProposedSize=str(record.size))
        # Every new version passes here, whichever layer wrote it: the
        # bucket's default retention is applied and stray lock settings refused.
        objectlock.settle_new_version(bucket, record)
        okey = keys.object_key(bucket.bucket_id, record.key)
        hinted = record.chunks if not indexed else []
        index_ops: list[Operation] = []
        if hinted:
            index_ops = yield chunkindex.prepare(
                self._store, hinted, chunkindex.object_hint(bucket.bucket_id, record.key, self.now_ms())
            )
        written_ahead = bool(hinted) and not index_ops
        record.manifest = None
        try:
            if len(record.chunks) > self.chunks_per_record:
                yield manifests.write(self._store, bucket.bucket_id, record, self.chunks_per_record, self.now_ms())
            self.new_keys.company(self._committing)
            self._committing += 1
            try:
                committed = yield self._commit(
                    bucket, okey, record, attrs, extra_compares, [*extra_ops, *index_ops], extra_usage
                )
            finally:
                self._committing -= 1
        except Exception as e:
            if not may_have_committed(e):
                if record.manifest is not None:
                    yield manifests.drop(self._store, record.manifest)
                    record.manifest = None
                if written_ahead:
                    yield chunkindex.forget(self._store, hinted)
            raise
        return committed

    @inlineCallbacks
    def _commit(
        self,
        bucket: Bucket,
        okey: bytes,
        record: ObjectRecord,
        attrs: PutAttrs | None,
        extra_compares: Sequence[Compare],
        extra_ops: Sequence[Operation],
        extra_usage: Usage,
    ) -> Any:
        scope = BucketScope.of(bucket)
        # The bucket record's revision as the caller read it: the commit
        # cannot land in a bucket deleted since (core/buckets.py, "Deleting
        # a bucket").  Read here only if the caller's copy cannot tell.
        alive = bucket_guard(bucket)
        for attempt in range(100):
            if alive is None:
                alive = yield read_bucket_guard(self._store, bucket)
            # The first attempt may assume a key it cannot read from memory
            # is new (core/newkeys.py): the compare below with revision 0
            # refuses the write if it is not, and the next attempt reads it.
            # Never with If-Match, which needs the current record.  The
            # cache is asked only when a guess could be made; otherwise the
            # read itself tells (a read answered from memory has fired).
            guessed = (
                attempt == 0
                and self.new_keys.likely()
                and (attrs is None or attrs.if_match is None)
                and not self._held(okey)
            )
            if guessed:
                kv = None
            else:
                read = self._store.get(okey)
                unread = attempt == 0 and not read.called
                kv = yield read
                if unread:
                    self.new_keys.learn(kv is None)
            current = None if kv is None else records.decode_object(kv.value)
            if attrs is not None:
                _check_write_conditions(attrs, current, record.key)
            try:
                plan = yield self._plan_replace(bucket, okey, current, record)
            except manifests.PagesMissing:
                continue  # the version it replaces went meanwhile: read again
            try:
                quota = yield self.quotas.plan(
                    scope,
                    plan.delta + extra_usage,
                    object_size=None if record.delete_marker else record.size,
                )
            except errors.QuotaExceeded:
                if guessed:
                    # Planned as a new object, nothing of a replaced one
                    # was subtracted: decide on the key's real record.
                    continue
                raise
            guards = [Compare(okey, kv.mod_revision if kv else 0), *plan.compares, *quota.compares]
            result = yield self._store.txn(
                [*guards, alive.compare, *extra_compares],
                _dedupe([*plan.ops, *quota.ops, *extra_ops, *alive.ops]),
            )
            if guessed:
                self.new_keys.guessed(result.succeeded)
            if result.succeeded:
                self.quotas.committed(quota)
                yield self._free(plan.freed, plan.kept | {c.chunk_id for c in record.chunks})
                return record
            if guessed:
                # Most likely the key exists.  Anything else that moved (the
                # bucket, a limit, a caller's guard) fails the next attempt
                # too, which then finds out which.
                continue
            self.quotas.conflicted(scope)
            # NoSuchBucket if the bucket went.  A new revision (a setting
            # changed, a deletion began) is retried with, and planned with:
            # versioning turned on since the caller read the bucket must
            # keep the current version as a noncurrent one, not replace it.
            fresh = yield read_bucket_guard(self._store, bucket)
            if fresh != alive:
                alive = fresh
                if fresh.stored is not None:
                    bucket = fresh.stored
                    objectlock.settle_new_version(bucket, record)
                continue
            if extra_compares:
                # Was it one of our keys or one of the caller's guards that moved?
                moved = yield self._any_moved(guards)
                if not moved:
                    raise ConflictError("a guarded record changed during the commit")
        raise errors.SlowDown("Too many concurrent writes to this key")

    def _held(self, okey: bytes) -> bool:
        """Whether the store would answer a read of ``okey`` from memory.

        A cache that cannot tell (a plugin's, written before ``holds`` was
        part of IPointReadCache) is taken to hold every key: its commits
        read first, as they always did, rather than fail on the call."""
        if not self._cached_reads:
            return False
        cache = self._store.cache  # type: ignore[attr-defined]
        if cache is None:
            return False
        holds = getattr(cache, "holds", None)
        return holds is None or bool(holds(okey))

    @inlineCallbacks
    def _removal(self, record: ObjectRecord | None) -> Any:
        """Deferred[(chunks, ops)] for removing ``record`` for good: all its
        chunks (read from its manifest if paged) and the operation that
        removes the manifest's pages in the same transaction."""
        if record is None:
            return [], []
        if record.manifest is None:
            return list(record.chunks), []
        chunks = yield manifests.load(self._store, record.manifest)
        return chunks, [manifests.drop_op(record.manifest)]

    @inlineCallbacks
    def _plan_replace(
        self, bucket: Bucket, okey: bytes, current: ObjectRecord | None, record: ObjectRecord
    ) -> Any:
        """Deferred[_Plan] that puts ``record`` at ``okey`` in place of ``current``."""
        mode = effective_versioning(bucket, current)
        plan = _Plan(delta=record_usage(record))
        record.null_sequence = None
        if mode is Versioning.DISABLED:
            # Unversioned: exactly the old behaviour (no history is kept).
            record.version_id = None
            record.sequence = 0
            chunks, ops = yield self._removal(current)
            plan.freed += chunks
            plan.ops += ops
            plan.delta -= record_usage(current)
        else:
            record.sequence = (current.sequence if current is not None else 0) + 1
            if mode is Versioning.ENABLED:
                record.version_id = new_version_id(record.sequence)
                if current is not None:
                    plan.ops += self._demote(bucket, current)
                    plan.kept |= {c.chunk_id for c in current.chunks}
                    record.null_sequence = (
                        current.sequence if current.version_id is None else current.null_sequence
                    )
            else:  # SUSPENDED: the new record is the null version
                record.version_id = None
                if current is not None and current.version_id is None:
                    chunks, ops = yield self._removal(current)
                    plan.freed += chunks
                    plan.ops += ops
                    plan.delta -= record_usage(current)
                elif current is not None:
                    plan.ops += self._demote(bucket, current)
                    plan.kept |= {c.chunk_id for c in current.chunks}
                    found = yield noncurrent_null(self._store, bucket.bucket_id, current)
                    if found is not None:
                        nkv, old_null = found
                        chunks, ops = yield self._removal(old_null)
                        plan.ops += [Delete(nkv.key), *ops]
                        plan.compares.append(Compare(nkv.key, nkv.mod_revision))
                        plan.freed += chunks
                        plan.delta -= record_usage(old_null)
        plan.ops.append(Put(okey, records.encode_object(record)))
        return plan

    def _demote(self, bucket: Bucket, current: ObjectRecord) -> list[Operation]:
        """Operations moving the current record to the noncurrent key space."""
        vkey = keys.version_key(bucket.bucket_id, current.key, current.sequence)
        noncurrent = replace(current, null_sequence=None)
        return [Put(vkey, records.encode_object(noncurrent))]

    @inlineCallbacks
    def _any_moved(self, guards: Sequence[Compare]) -> Any:
        for guard in guards:
            kv = yield self._store.get(guard.key)
            if (kv.mod_revision if kv else 0) != guard.mod_revision:
                return True
        return False

    def _free(self, chunks: Iterable[ChunkRef], keep: set[str]) -> Deferred[None]:
        """Deferred[None] once the chunks of versions gone for good (but not
        those in ``keep``) are unindexed; their deletion follows."""
        doomed = [c for c in chunks if c.chunk_id not in keep]
        d: Deferred[None] = chunkindex.release(self._store, doomed, self._delete_chunks)
        return d

    # -- deleting --------------------------------------------------------
    @uncancellable
    @inlineCallbacks
    def delete(
        self,
        bucket: Bucket,
        key: str,
        version_id: str | None = None,
        *,
        owner: str = "",
        if_revision: int | None = None,
        bypass_governance: bool = False,
        if_match: str | None = None,
        also_unchanged: Sequence[Compare] = (),
    ) -> Any:
        """Deferred[DeleteOutcome].

        Without ``version_id``: an unversioned bucket removes the object;
        a versioned one writes a delete marker (Enabled: a new version;
        Suspended: the null version, replacing an earlier one), even if the
        key has no version yet, as S3 does.  With ``version_id`` that version
        is removed for good; removing the current one makes the next newest
        current again (so deleting a delete marker restores the object).
        Deleting what does not exist succeeds (S3 answers 204 either way).

        ``if_revision``: act only if the record the delete removes or
        supersedes (the current record; with ``version_id``, that version's
        record) still has this mod revision, else raise
        :class:`ConflictError` and change nothing: a background deletion
        (lifecycle expiration) must lose to a write that raced it.
        ``also_unchanged`` (with ``version_id`` and ``if_revision``): more
        records the decision to delete was read from, guarded the same way
        in the deleting transaction (the lifecycle's count of newer
        noncurrent versions, and the version that made this one noncurrent).

        Object Lock: a version under retention or legal hold is not removed
        (:class:`~lightningstor.core.objectlock.ObjectLocked`, 403);
        ``bypass_governance`` (the caller asked and may) lets GOVERNANCE
        retention yield.  A delete marker is always allowed.

        ``if_match`` (a conditional delete: an ETag, or ``*``) is checked
        against the current version in the transaction that deletes, as a
        conditional write is: NoSuchKey when there is no current object (or
        it is a delete marker), PreconditionFailed when its ETag differs.
        AWS evaluates it "only against the current version"; with
        ``version_id`` it would guard a different record than the one
        removed, which this server does not do (NotImplemented).
        """
        validate_key(key)
        condition = PutAttrs(if_match=if_match) if if_match is not None else None
        if version_id is not None:
            if condition is not None:
                raise errors.NotImplementedS3(
                    "A header you provided implies functionality that is not implemented",
                    Header="If-Match",
                    additionalMessage="Conditional deletes of a version named by versionId are not supported",
                )
            outcome = yield self._delete_version(
                bucket, key, parse_version_id(version_id), if_revision, bypass_governance, also_unchanged
            )
            return outcome
        if also_unchanged:
            raise ValueError("also_unchanged guards only the deletion of a version")
        okey = keys.object_key(bucket.bucket_id, key)
        for _attempt in range(100):
            kv = yield self._store.get(okey)
            if if_revision is not None and (kv.mod_revision if kv else 0) != if_revision:
                raise ConflictError("the object changed since it was read")
            current = None if kv is None else records.decode_object(kv.value)
            mode = effective_versioning(bucket, current)
            if mode is not Versioning.DISABLED:
                marker = ObjectRecord(
                    key=key, size=0, etag="", created_at=self.now_ms(), delete_marker=True, owner=owner
                )
                guard = [Compare(okey, if_revision)] if if_revision is not None else []
                # The commit checks ``condition`` against the record it guards.
                yield self.commit(replace(bucket, versioning=mode), marker, condition, extra_compares=guard)
                return DeleteOutcome(wire_version_id(marker.version_id), True)
            if condition is not None:
                _check_write_conditions(condition, current, key)  # the txn below compares this revision
            if kv is None or current is None:
                return DeleteOutcome(None, False)
            if bucket.revision <= 0:
                guard = yield read_bucket_guard(self._store, bucket, keep_alive=False)
                assert guard.stored is not None
                bucket = guard.stored
                continue
            quota = self.quotas.unguarded(BucketScope.of(bucket), ZERO - record_usage(current))
            try:
                chunks, pages = yield self._removal(current)
            except manifests.PagesMissing:
                continue  # removed by a concurrent delete: read again
            ops: list[Operation] = [Delete(okey), *pages, *quota.ops]
            # "Unversioned" was decided from the bucket as read; had
            # versioning been turned on since, this would destroy what must
            # become a noncurrent version.
            compares = [Compare(okey, kv.mod_revision), _unchanged_bucket(bucket)]
            result = yield self._store.txn(compares, _dedupe(ops))
            if result.succeeded:
                self.quotas.committed(quota)
                yield self._free(chunks, set())
                return DeleteOutcome(None, False)
            if if_revision is not None:
                raise ConflictError("the object or its bucket changed since it was read")
            # The key or the bucket moved: decide again with the bucket as stored.
            fresh = yield read_bucket_guard(self._store, bucket, keep_alive=False)
            if fresh.stored is not None:
                bucket = fresh.stored
        raise errors.SlowDown("Too many concurrent writes to this key")

    @inlineCallbacks
    def _delete_version(
        self,
        bucket: Bucket,
        key: str,
        ref: VersionRef,
        if_revision: int | None = None,
        bypass_governance: bool = False,
        also_unchanged: Sequence[Compare] = (),
    ) -> Any:
        okey = keys.object_key(bucket.bucket_id, key)
        for _attempt in range(100):
            located = yield self._locate(bucket, key, ref)
            if if_revision is not None and (located is None or located.revision != if_revision):
                raise ConflictError("the version changed since it was read")
            if located is None:
                return DeleteOutcome(ref.text, False)
            gone = located.record
            # Checked against the record the transaction below compares: a
            # retention or legal hold set meanwhile moves its revision, and
            # the retry sees it.
            objectlock.check_delete(gone, self.now_ms(), bypass_governance=bypass_governance)
            compares = [Compare(located.storage_key, located.revision), *also_unchanged]
            try:
                gone_chunks, ops = yield self._removal(gone)
            except manifests.PagesMissing:
                continue  # removed by a concurrent delete: read again
            kept: set[str] = set()
            if located.is_current:
                prefix = keys.key_versions_prefix(bucket.bucket_id, key)
                rows = yield self._store.scan(prefix, prefix_end(prefix), 1)
                if rows:
                    # The newest noncurrent version becomes current again.
                    promoted = records.decode_object(rows[0].value)
                    promoted.null_sequence = None if promoted.version_id is None else gone.null_sequence
                    compares.append(Compare(rows[0].key, rows[0].mod_revision))
                    ops += [Delete(rows[0].key), Put(okey, records.encode_object(promoted))]
                    kept = {c.chunk_id for c in promoted.chunks}
                else:
                    ops.append(Delete(okey))
            else:
                ops.append(Delete(located.storage_key))
                if gone.version_id is None:
                    # The current record points at the null version: unlink it.
                    current = replace(located.current, null_sequence=None)
                    compares.append(Compare(okey, located.current_revision))
                    ops.append(Put(okey, records.encode_object(current)))
            # Promotion only moves a version: the one removed is all that changes.
            quota = self.quotas.unguarded(BucketScope.of(bucket), ZERO - record_usage(gone))
            result = yield self._store.txn(compares, _dedupe([*ops, *quota.ops]))
            if result.succeeded:
                self.quotas.committed(quota)
                yield self._free(gone_chunks, kept)
                return DeleteOutcome(ref.text, gone.delete_marker)
            if also_unchanged:
                raise ConflictError("a record the deletion was decided from changed")
        raise errors.SlowDown("Too many concurrent writes to this key")

    # -- object lock -----------------------------------------------------
    def set_retention(
        self,
        bucket: Bucket,
        key: str,
        version_id: str | None,
        mode: str | None,
        until: int | None,
        *,
        bypass_governance: bool = False,
    ) -> Deferred[Any]:
        """Deferred[ObjectRecord]: PutObjectRetention on one version
        (``mode``/``until`` None: remove it), allowed as
        :func:`objectlock.check_retention_change` says; the check and the
        write are one guarded step, so a concurrent change is re-checked."""
        if not bucket.object_lock:
            return fail(objectlock.missing_configuration())
        if (mode is None) != (until is None):
            return fail(errors.MalformedXML())

        def change(record: ObjectRecord) -> None:
            objectlock.check_retention_change(
                record, mode, until, self.now_ms(), bypass_governance=bypass_governance
            )
            record.lock_mode, record.lock_until = mode, until

        return self._update_version(bucket, key, version_id, change)

    def set_legal_hold(self, bucket: Bucket, key: str, version_id: str | None, on: bool) -> Deferred[Any]:
        """Deferred[ObjectRecord]: PutObjectLegalHold on one version.  Anyone
        allowed to call it may place or lift a hold: it has no mode."""
        if not bucket.object_lock:
            return fail(objectlock.missing_configuration())

        def change(record: ObjectRecord) -> None:
            record.legal_hold = on

        return self._update_version(bucket, key, version_id, change)

    # -- tagging ---------------------------------------------------------
    @inlineCallbacks
    def set_tags(
        self, bucket: Bucket, key: str, version_id: str | None, tags: dict[str, str]
    ) -> Any:
        """Deferred[ObjectRecord]: replace one version's tag set.

        Only the metadata record is rewritten (guarded by its revision); the
        object's data, ETag and Last-Modified stay as they are.  A delete
        marker cannot be tagged (NoSuchKey / MethodNotAllowed as for GET).
        A tag set AWS would refuse is InvalidTag.
        """
        validate_key(key)
        check_object_tags(tags)

        def change(record: ObjectRecord) -> None:
            record.tags = dict(tags)

        updated = yield self._update_version(bucket, key, version_id, change)
        return updated

    def set_acl(
        self, bucket: Bucket, key: str, version_id: str | None, acl: Acl | None, *, owner: str | None = None
    ) -> Deferred[Any]:
        """Deferred[ObjectRecord]: replace one version's ACL (PutObjectAcl;
        None: private), a metadata-only change like :meth:`set_tags`.  The
        ACL's owner must be the version's owner (the caller expanded it so);
        ``owner`` is the one the caller authorized and expanded for: a
        version that another writer replaced meanwhile is 409
        OperationAborted rather than given an ACL meant for another."""

        def change(record: ObjectRecord) -> None:
            if owner is not None and (record.owner or bucket.created_by) != owner:
                raise errors.S3Error(code="OperationAborted")
            record.acl = acl

        d: Deferred[Any] = self._update_version(bucket, key, version_id, change)
        return d

    @inlineCallbacks
    def _update_version(
        self, bucket: Bucket, key: str, version_id: str | None, change: Callable[[ObjectRecord], None]
    ) -> Any:
        """Deferred[ObjectRecord]: apply ``change`` (which may refuse by
        raising) to one version's metadata record and store it, guarded by
        the record's revision and retried if it moved.  A delete marker
        cannot be changed (NoSuchKey / MethodNotAllowed as for GET)."""
        validate_key(key)
        okey = keys.object_key(bucket.bucket_id, key)
        for _attempt in range(100):
            if version_id is None:
                kv = yield self._store.get(okey)
                if kv is None:
                    raise errors.NoSuchKey(resource=key, Key=key)
                record = records.decode_object(kv.value)
                where, revision = okey, kv.mod_revision
            else:
                located = yield self._locate(bucket, key, parse_version_id(version_id))
                if located is None:
                    raise errors.NoSuchVersion(resource=key, Key=key, VersionId=version_id)
                record, where, revision = located.record, located.storage_key, located.revision
            if record.delete_marker:
                raise unreadable(record, explicit_version=version_id is not None)
            change(record)
            result = yield self._store.txn([Compare(where, revision)], [Put(where, records.encode_object(record))])
            if result.succeeded:
                return record
        raise errors.SlowDown("Too many concurrent writes to this key")


def may_have_committed(exc: BaseException) -> bool:
    """Whether a failed metadata commit might nevertheless have been applied.

    A store that lost its connection mid-transaction (etcd failover) cannot
    always tell; deleting the new chunks then could leave a committed record
    pointing at nothing.  Such chunks (and their index entries) are left to
    the orphan collector, which deletes them only if no record lists them.

    A cancelled wait (CancelledError: the request's client went away while
    the commit was under way) is the same unknown: the transaction may be
    queued in the store and land after the waiter has gone.
    """
    if getattr(exc, "not_applied", False):
        return False  # the store proved it refused the write (etcd's NOSPACE)
    return isinstance(exc, (errors.MetadataUnavailable, CancelledError))


READS_WHEN_REPLACED = 5
"""How many times a GET looks an object up when each version it found lost
its chunks before it sent a byte (:func:`replaced_meanwhile`).  Under a
storm of overwrites with no free delay, the version of a second lookup can
be replaced too; each further lookup is cheap, and the bound keeps a chunk
lost under an unchanged record (which fails every time) from looping."""


def replaced_meanwhile(exc: BaseException | None) -> bool:
    """Whether a read of a version failed because that version is gone for
    good: its chunks (or the pages of its chunk list) were freed after an
    overwrite or a delete that landed after the record was looked up and
    more than ``storage.free_delay_seconds`` before the read (storage/retired.py).

    A GET that has sent nothing of the object yet then looks it up once
    more and answers what is there now (another version, or not found), as
    AWS would; both APIs decide so from this one test (the S3 GET and website
    endpoint, s3/handlers/objects.py ``read_again_if_replaced``; the gRPC
    GetObject), up to :data:`READS_WHEN_REPLACED` lookups in all.  A chunk
    lost while its record is unchanged fails every read the same way, and
    the last one is an error like any other.
    """
    return isinstance(exc, (errors.ChunkNotFound, manifests.PagesMissing))


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
