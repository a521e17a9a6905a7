"""Buckets: naming, scoping and lifecycle (SPEC §3.1, §7.1-7.2).

A bucket belongs to an org and optionally a project; its name is unique within
that scope.  A caller's bucket name resolves in the caller's scope: the
project's buckets first, then the org's.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail, inlineCallbacks, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from lightningstor import errors
from lightningstor.core import keys, records
from lightningstor.core.acl import BUCKET_OWNER_ENFORCED, acls_enabled, check_ownership, owner_only
from lightningstor.core.attributes import check_bucket_tags, validate_storage_class
from lightningstor.core.cors import validate_rules as validate_cors_rules
from lightningstor.core.lifecycle import validate_rules as validate_lifecycle_rules
from lightningstor.core.objectlock import validate_default_retention
from lightningstor.core.quotas import BucketScope, QuotaManager
from lightningstor.core.scans import scan_prefix
from lightningstor.core.types import (
    Acl,
    Bucket,
    BucketEncryption,
    CorsRule,
    DefaultRetention,
    LifecycleRule,
    Principal,
    PublicAccessBlock,
    Versioning,
    WebsiteConfiguration,
)
from lightningstor.core.versions import update_bucket
from lightningstor.deferreds import Shared
from lightningstor.interfaces.metadata import (
    Compare,
    Delete,
    IMetadataStore,
    Operation,
    Put,
    has_point_read_cache,
    prefix_end,
)

_log = Logger()
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]\Z")
# Paths the S3 port answers itself (GET /health ...): a bucket of that name
# could never be listed path-style, so the names are refused up front.
RESERVED_NAMES = frozenset({"health", "ready", "metrics"})
# Prefixes and suffixes AWS reserves ("General purpose bucket naming rules"):
# punycode labels, and the names of access point aliases and other bucket
# kinds, which clients and tools read as such.
RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", "--x-s3", "--table-s3")


def validate_bucket_name(name: str) -> None:
    """SPEC §3.1: 3-63 characters of lower-case letters, digits and hyphens,
    starting (and, as AWS requires, ending) with a letter or digit; none of
    AWS's reserved prefixes and suffixes."""
    if (
        not _NAME.match(name)
        or name in RESERVED_NAMES
        or name.startswith(RESERVED_PREFIXES)
        or name.endswith(RESERVED_SUFFIXES)
    ):
        raise errors.InvalidBucketName(resource=name, BucketName=name)


def check_scope(principal: Principal, org_id: str | None, project_id: str | None) -> None:
    """AccessDenied unless ``org_id``/``project_id`` (None: the caller's own)
    are the caller's scope: a principal can only resolve buckets there."""
    if org_id is not None and org_id != principal.org_id:
        raise errors.AccessDenied(f"Principal {principal.principal_id} cannot create buckets in org {org_id}")
    if project_id is not None and project_id != (principal.project_id or ""):
        raise errors.AccessDenied(
            f"Principal {principal.principal_id} cannot create buckets in project {project_id}"
        )


#: How long a resolved bucket serves object reads without a metadata read.
READ_CACHE_SECONDS = 1.0
_READ_CACHE_MAX = 4096
_DELETE_ATTEMPTS = 100
# Rows read per page by the walks over every bucket record or name entry
# (BucketManager._bucket_names and index_names).
_SCAN_PAGE = 1000
_INDEX_ATTEMPTS = 10
NAME_INDEX_SECONDS = 10.0
"""Only for a store whose name index is not complete yet (see
:meth:`BucketManager.find_unique`): how long the names read by walking every
bucket record are reused before they are read again."""
_AMBIGUOUS = b""  # a name held by buckets in several scopes
NAME_INDEX_MAX = 100_000
"""Only for a store whose name index is not complete yet: the most bucket
names a worker keeps from its walk (about 10 MiB).  Past it, until the
index is complete, unsigned preflights resolve by credential only."""


# -- Deleting a bucket ---------------------------------------------------------
#
# DeleteBucket must not succeed if an object write succeeds too: S3 lets one
# of them fail (NoSuchBucket or BucketNotEmpty), never both, since an object
# acknowledged into a deleted bucket is unreachable (a re-created bucket of
# the same name gets another internal id).  An emptiness scan followed by the
# delete cannot promise that alone: a write may land between the two.  So:
#
# * every transaction that lands an object record (PutObject, CopyObject,
#   CompleteMultipartUpload, a delete marker: all go through
#   ``ObjectManager.commit``) compares the bucket record's mod revision as the
#   writer read it (:class:`Bucket` ``.revision``; one more compare in the
#   commit, no extra read).  Deleting the record fails it;
# * DeleteBucket scans; if empty, marks the record ``deleting`` (a write,
#   bumping its revision, so every commit holding an older revision fails and
#   re-reads), scans again, and deletes the record guarded by the marked
#   revision;
# * a writer that finds the record marked clears the mark in its own commit
#   (:func:`read_bucket_guard`): the write wins, its bump fails DeleteBucket's
#   final compare, and DeleteBucket, retrying, finds the object:
#   BucketNotEmpty.  A write committed before the mark is seen by the second
#   scan; one committed after it either cleared the mark or failed.
#
# A changed bucket setting (versioning, tags) also moves the revision: a
# writer then re-reads the record once and retries, so it never fails for
# that, and a cached or hand-made Bucket (revision unknown) costs one read.
# A mark left by a server that died mid-delete blocks nothing: the next write
# clears it and the next DeleteBucket completes it.


@dataclass
class BucketGuard:
    """What a transaction landing an object carries so that it cannot commit
    into a bucket deleted, being deleted, or replaced since it was read."""

    compare: Compare
    # Clearing a pending deletion (the write wins over it); empty otherwise.
    ops: list[Operation] = field(default_factory=list)
    # The bucket as stored at that revision, when the guard was read from the
    # store: a commit that found the record moved plans again with these
    # settings (versioning, default retention), not the ones it started with.
    stored: Bucket | None = field(default=None, compare=False)


def bucket_guard(bucket: Bucket, *, keep_alive: bool = True) -> BucketGuard | None:
    """The guard from the caller's copy of ``bucket``, without I/O; None if
    the copy cannot make one and :func:`read_bucket_guard` must (revision
    unknown, or a pending deletion to clear, which needs the stored record)."""
    if bucket.revision <= 0 or (keep_alive and bucket.deleting):
        return None
    return BucketGuard(Compare(keys.bucket_key(bucket.org_id, bucket.project_id, bucket.name), bucket.revision))


@inlineCallbacks
def read_bucket_guard(store: IMetadataStore, bucket: Bucket, *, keep_alive: bool = True) -> Any:
    """Deferred[BucketGuard] at the bucket record's current revision.

    NoSuchBucket if the record is gone or now holds another bucket of the
    same name.  With ``keep_alive`` (the write lands an object) a pending
    deletion is cleared by the guarded transaction; without (an upload,
    which does not keep a bucket alive) it is only compared.
    """
    bkey = keys.bucket_key(bucket.org_id, bucket.project_id, bucket.name)
    kv = yield store.get(bkey)
    stored = None if kv is None else records.decode_bucket(kv.value)
    if stored is None or stored.bucket_id != bucket.bucket_id:
        raise errors.NoSuchBucket(resource=bucket.name, BucketName=bucket.name)
    guard = BucketGuard(Compare(bkey, kv.mod_revision), stored=replace(stored, revision=kv.mod_revision))
    if keep_alive and stored.deleting:
        guard.ops.append(Put(bkey, records.encode_bucket(replace(stored, deleting=False))))
    return guard


class BucketManager:
    """Create, find, list and delete buckets in a principal's scope.

    **The read cache.**  Every S3 request resolves its bucket: a metadata
    read (a thread hop with SQLite, a round trip with etcd) and a JSON
    decode.  Object reads and listings (:meth:`find_for_read`) take the
    bucket from a small cache for :data:`READ_CACHE_SECONDS` instead (SPEC
    appendix E, "hot bucket metadata cached").  Most of what they use of it
    never changes (id, scope, name) or only affects what they report
    (versioning: whether a version id header is sent), and a bucket must be
    empty to be deleted, so a cached bucket can turn a NoSuchBucket into a
    NoSuchKey or an empty listing for that second.  Its access settings
    (policy, Block Public Access, ACL) are used too: a change made through
    another worker or server reaches object reads within the second, as S3
    documents its bucket policy and access changes as eventually
    consistent.  On a store that answers point reads from memory, exactly
    across processes (SQLite: metadata/readcache.py), a cached bucket is
    used only while its record is still the one it was decoded from (one
    read, answered at once), so there such a change takes effect at once,
    as does a project bucket hiding the org bucket a project caller's entry
    resolved to (one more read); an anonymous entry's name becoming
    ambiguous (a second tenant's bucket) still takes the second.  Writes, bucket
    configuration reads and everything else always read the record.  A
    change made through this process clears the cache at once; another
    worker or server sees it within the second.  Absent buckets are never
    cached, so a bucket is usable as soon as its creation returns.
    """

    def __init__(
        self, store: IMetadataStore, clock: Callable[[], float], region: str, quotas: QuotaManager | None = None
    ) -> None:
        self._store = store
        # Whether ``get`` answers from memory, exactly (IPointReadCache): then a
        # cached bucket is checked against its record instead of a clock.
        self._cached_reads = has_point_read_cache(store)
        self.read_cache_seconds = READ_CACHE_SECONDS
        self._read_cache: dict[tuple[str, str | None, str], tuple[float, Bucket]] = {}
        # The last bucket decoded from each record key, by the row's revision:
        # a row's bytes never change under one revision, so a lookup that
        # reads the same row again (every write resolves its bucket afresh)
        # takes a copy instead of decoding the JSON (policies, CORS, rules).
        self._decoded: dict[bytes, Bucket] = {}
        self._clock = clock
        self._region = region
        # Whether the store's name index is complete (its marker seen: it is
        # never removed, so once True this is never read again).
        self._names_indexed = False
        # Until then, every bucket name, for find_unique: (read at, names),
        # and the read in progress, shared by concurrent lookups.
        self._names: tuple[float, dict[str, bytes]] | None = None
        self._names_loading: Shared | None = None
        self._names_generation = 0
        self.name_index_max = NAME_INDEX_MAX
        # max_buckets is checked in the create transaction; a deleted
        # bucket's usage rows and bucket quota go with it.
        self._quotas = quotas if quotas is not None else QuotaManager(store, clock)
        # The Object Ownership of a bucket created without one
        # ([s3] default_object_ownership; AWS's default since April 2023).
        self.default_object_ownership = BUCKET_OWNER_ENFORCED

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    @inlineCallbacks
    def create(
        self,
        principal: Principal,
        name: str,
        *,
        location: str | None = None,
        org_id: str | None = None,
        project_id: str | None = None,
        versioning: Versioning = Versioning.DISABLED,
        tags: dict[str, str] | None = None,
        storage_class: str = "STANDARD",
        object_lock: bool = False,
        object_ownership: str | None = None,
        acl: Acl | None = None,
    ) -> Any:
        """Deferred[Bucket].  BucketAlreadyOwnedByYou if the caller's scope has it;
        BucketAlreadyExists if another scope has it, or if a bucket of
        another scope with that name is reachable from outside its scope
        (:func:`reachable_from_outside`: a second one would hide it).

        ``org_id``/``project_id`` name the scope the caller asks for (None:
        its own); a principal creates buckets only in its own scope, since
        those are the only buckets it can resolve (AccessDenied otherwise).
        ``versioning`` and ``tags`` are stored with the bucket record in the
        same write, so a bucket never exists without them.  QuotaExceeded if
        the org's or the project's max_buckets is reached (exact under
        concurrent creates: see :mod:`lightningstor.core.quotas`).
        ``object_lock`` creates it with Object Lock enabled, and so with
        versioning Enabled (AWS's x-amz-bucket-object-lock-enabled).
        ``object_ownership`` None takes :attr:`default_object_ownership`
        (``[s3] default_object_ownership``); ``acl`` is the bucket's ACL
        (None: private), which a bucket with ACLs disabled takes only if it
        grants its owner FULL_CONTROL alone (400
        InvalidBucketAclWithObjectOwnership otherwise, as AWS), and then
        does not store.
        """
        validate_bucket_name(name)
        if object_lock:
            versioning = Versioning.ENABLED
        check_scope(principal, org_id, project_id)
        check_bucket_tags(tags or {})
        validate_storage_class(storage_class)
        if versioning is Versioning.SUSPENDED:
            raise errors.InvalidArgument(
                "A new bucket's versioning is Enabled or never configured", ArgumentName="versioning"
            )
        if location == "EU" and self._region == "eu-west-1":
            location = self._region  # AWS's legacy name for eu-west-1, still a valid constraint
        if location not in (None, "", self._region):
            raise errors.S3Error(
                f"The specified location-constraint is not valid: {location}",
                code="InvalidLocationConstraint",
                LocationConstraint=str(location),
            )
        shared = yield self.find_unique(name)
        if shared is not None and (shared.org_id, shared.project_id) != (principal.org_id, principal.project_id):
            if reachable_from_outside(shared):
                # A second bucket of this name would make the name ambiguous,
                # and so cut off the anonymous readers, other tenants and
                # website visitors who reach the first one by its name alone.
                raise errors.BucketAlreadyExists(resource=name, BucketName=name)
        ownership = check_ownership(object_ownership) if object_ownership is not None else self.default_object_ownership
        if acl is not None and ownership == BUCKET_OWNER_ENFORCED:
            if not owner_only(acl, principal.principal_id):
                raise errors.InvalidBucketAclWithObjectOwnership()
            acl = None
        now = self._now_ms()
        bucket = Bucket(
            name=name,
            bucket_id=uuid.uuid4().hex,
            org_id=principal.org_id,
            project_id=principal.project_id,
            created_at=now,
            updated_at=now,
            created_by=principal.principal_id,
            versioning=versioning,
            storage_class=storage_class,
            region=self._region,
            tags=dict(tags or {}),
            object_lock=object_lock,
            object_ownership=ownership,
            acl=acl,
        )
        bkey = keys.bucket_key(bucket.org_id, bucket.project_id, name)
        # The name index entry goes in the same transaction, so it exists
        # exactly when the record does.  It is put, not compared: an entry
        # left by an older server's delete (see index_names) must not block
        # the name, and the record's compare already makes this create unique.
        index = Put(keys.bucket_name_key(bucket.org_id, bucket.project_id, name), bkey)
        # Unique within the caller's own scope (a project bucket may share its
        # name with an org bucket; the project's one then resolves first).
        # A bucket already at ``bkey`` is in the caller's own scope, so its
        # tenant's: BucketAlreadyOwnedByYou, whoever of the tenant created it
        # (AWS's owner is the account, which a tenant is here), and before a
        # bucket-count quota (re-creating an existing bucket adds none; tools
        # that "ensure" a bucket take that answer for success).
        for _attempt in range(100):
            try:
                quota = yield self._quotas.plan_bucket_create(bucket.org_id, bucket.project_id)
            except errors.QuotaExceeded:
                existing = yield self._store.get(bkey)
                if existing is not None:
                    raise errors.BucketAlreadyOwnedByYou(resource=name, BucketName=name) from None
                raise
            result = yield self._store.txn(
                [Compare(bkey, 0), *quota.compares], [Put(bkey, records.encode_bucket(bucket)), index, *quota.ops]
            )
            if result.succeeded:
                bucket.revision = result.revision
                # A project bucket now hides an org bucket of the same name.
                self.forget_cached()
                return bucket
            kv = yield self._store.get(bkey)
            if kv is None:
                continue  # a quota guard or limit moved: count again
            raise errors.BucketAlreadyOwnedByYou(resource=name, BucketName=name)
        raise errors.SlowDown("Too many concurrent bucket creations")

    def find(self, principal: Principal, name: str) -> Deferred[Any]:
        """Deferred[Bucket | None]: resolve ``name`` in the caller's scope
        (a project's bucket first, then its org's)."""
        org_key = keys.bucket_key(principal.org_id, None, name)
        if not principal.project_id:
            # One place to look (every org-level caller): one read, no generator.
            d: Deferred[Any] = self._store.get(org_key)
            return d.addCallback(self._decoded_bucket)
        return self._find_in(keys.bucket_key(principal.org_id, principal.project_id, name), org_key)

    @inlineCallbacks
    def _find_in(self, *candidates: bytes) -> Any:
        for k in candidates:
            kv = yield self._store.get(k)
            if kv is not None:
                return self._decoded_bucket(kv)
        return None

    def _decoded_bucket(self, kv: Any) -> Bucket | None:
        """:func:`decoded_bucket`, decoding a row only once per revision."""
        if kv is None:
            return None
        known = self._decoded.get(kv.key)
        if known is not None and known.revision == kv.mod_revision:
            return _copy(known)  # callers may change what they get
        bucket = records.decode_bucket(kv.value)
        bucket.revision = kv.mod_revision  # what object commits compare
        if len(self._decoded) >= _READ_CACHE_MAX:
            self._decoded.clear()
        self._decoded[kv.key] = _copy(bucket)
        return bucket

    def find_for_read(self, principal: Principal, name: str) -> Deferred[Any]:
        """Deferred[Bucket]: as :meth:`get`, served from the read cache when
        the same scope resolved ``name`` less than ``read_cache_seconds`` ago
        (object reads and listings only; see the class docstring)."""
        scope = (principal.org_id, principal.project_id, name)
        now = self._clock()
        hit = self._read_cache.get(scope)
        if hit is not None and now - hit[0] < self.read_cache_seconds:
            if not self._cached_reads or self._store.cache is None:  # type: ignore[attr-defined]
                return succeed(_copy(hit[1]))  # callers may not change the cached one
            # The store answers point reads from memory, exactly across
            # processes (metadata/readcache.py): the cached bucket stands
            # only while its record is the one it was decoded from.
            cached = hit[1]
            check: Deferred[Any] = self._store.get(keys.bucket_key(cached.org_id, cached.project_id, cached.name))
            check.addCallback(self._still_current, principal, cached)
            return check.addCallback(self._cached_or_resolved, principal, name, scope, now, cached)
        return self._resolve_for_read(principal, name, scope, now)

    def _still_current(self, kv: Any, principal: Principal, cached: Bucket) -> Any:
        """Deferred[bool] or bool: whether ``cached`` is still what the
        caller's name resolves to: its record unchanged, and, for a project
        caller it resolved to an org bucket, no project bucket of that name
        created since (through another worker), which now hides it."""
        if kv is None or kv.mod_revision != cached.revision:
            return False
        if not principal.project_id or cached.project_id is not None or not principal.principal_id:
            return True
        d: Deferred[Any] = self._store.get(keys.bucket_key(principal.org_id, principal.project_id, cached.name))
        return d.addCallback(lambda shadow: shadow is None)

    def _cached_or_resolved(
        self, current: bool, principal: Principal, name: str, scope: tuple[str, str | None, str], now: float,
        cached: Bucket,
    ) -> Any:  # fmt: skip
        if current:
            return _copy(cached)
        self._read_cache.pop(scope, None)  # changed, gone or hidden through another worker
        return self._resolve_for_read(principal, name, scope, now)

    def _resolve_for_read(
        self, principal: Principal, name: str, scope: tuple[str, str | None, str], now: float
    ) -> Deferred[Any]:
        d: Deferred[Any] = self.get(principal, name) if principal.principal_id else self.get_unique(name)

        def remember(bucket: Bucket) -> Bucket:
            if len(self._read_cache) >= _READ_CACHE_MAX:
                self._read_cache.clear()
            self._read_cache[scope] = (now, _copy(bucket))
            return bucket

        return d.addCallback(remember)

    def forget_cached(self) -> None:
        """Drop the read cache and the bucket names: a bucket changed
        (or was created or deleted) through this process."""
        self._read_cache.clear()
        self._names = None
        self._names_generation += 1  # a read in progress may predate the change

    def get(self, principal: Principal, name: str) -> Deferred[Any]:
        """Deferred[Bucket]; NoSuchBucket if it is not in the caller's scope."""
        d: Deferred[Any] = self.find(principal, name)
        return d.addCallback(_existing, name)

    def get_unique(self, name: str) -> Deferred[Any]:
        """Deferred[Bucket]: the one bucket called ``name`` in any scope
        (:meth:`find_unique`), for a request that names no tenant (an
        anonymous one, or one a bucket policy may let in from another
        scope: core/access.py); NoSuchBucket if there is none, or several."""
        d: Deferred[Any] = self.find_unique(name)
        return d.addCallback(_existing, name)

    @inlineCallbacks
    def list(self, principal: Principal, *, name_prefix: str = "", after: str = "") -> Any:
        """Deferred[list[Bucket]] visible to the caller, sorted by name:
        those whose name starts with ``name_prefix`` and sorts after ``after``
        (ListBuckets' ``prefix`` and ``continuation-token``).

        Each name once: an org bucket whose name one of the caller's
        project buckets shares is hidden by it, as name resolution hides it
        (:meth:`find`), so a listing never shows a name twice (S3 clients
        cannot tell the two apart, and a page boundary between them lost
        one)."""
        prefix = keys.org_buckets_prefix(principal.org_id)
        rows = yield self._store.scan(prefix, prefix_end(prefix))
        found: dict[str, Bucket] = {}
        for kv in rows:
            parts = kv.key[len(prefix):].split(b"/")
            if len(parts) == 1 or (principal.project_id and parts[0] == principal.project_id.encode()):
                bucket = records.decode_bucket(kv.value)
                if bucket.name.startswith(name_prefix) and bucket.name > after:
                    if bucket.name not in found or bucket.project_id:
                        found[bucket.name] = bucket
        return sorted(found.values(), key=lambda b: b.name)

    # Set by the Core: Deferred-returning "abort every upload of this bucket".
    abort_uploads: Callable[[Bucket], Any] | None = None

    @inlineCallbacks
    def delete(self, principal: Principal, name: str) -> Any:
        """Deferred[None]; BucketNotEmpty unless the bucket holds no object.

        Never succeeds together with a write landing an object in the bucket
        (see "Deleting a bucket" above): such a write either committed first
        (BucketNotEmpty here) or fails with NoSuchBucket.  A non-empty bucket
        is refused after one scan, without a write.

        In-progress multipart uploads do not keep a bucket alive (AWS deletes
        the bucket and drops them): they are aborted once the bucket is gone.
        """
        bucket_id: str | None = None
        for _attempt in range(_DELETE_ATTEMPTS):
            bucket = yield self.get(principal, name)
            if bucket_id is not None and bucket.bucket_id != bucket_id:
                # Ours went (another DeleteBucket) and the name was reused.
                raise errors.NoSuchBucket(resource=name, BucketName=name)
            bucket_id = bucket.bucket_id
            bkey = keys.bucket_key(bucket.org_id, bucket.project_id, name)
            empty = yield self._is_empty(bucket)
            if not empty:
                raise errors.BucketNotEmpty(resource=name, BucketName=name)
            fence = bucket.revision
            if not bucket.deleting:
                # From here every object commit holding an older revision
                # fails, and one that reads the mark clears it.
                marked = replace(bucket, deleting=True)
                result = yield self._store.txn([Compare(bkey, fence)], [Put(bkey, records.encode_bucket(marked))])
                if not result.succeeded:
                    continue  # the record changed since we read it: read it again
                fence = result.revision
                empty = yield self._is_empty(bucket)
                if not empty:
                    # Unmark (as read); if a writer already did, nothing to do.
                    yield self._store.txn([Compare(bkey, fence)], [Put(bkey, records.encode_bucket(bucket))])
                    raise errors.BucketNotEmpty(resource=name, BucketName=name)
            # Else it was marked when read (a DeleteBucket running or one that
            # died): the scan above came after the mark, as the second one would.
            # The name index entry goes with the record, in one transaction.
            name_key = keys.bucket_name_key(bucket.org_id, bucket.project_id, name)
            try:
                result = yield self._store.txn([Compare(bkey, fence)], [Delete(bkey), Delete(name_key)])
                deleted = result.succeeded
            except errors.MetadataUnavailable:
                # The answer may have been lost after the store applied it
                # (etcd: a dropped connection, a leader change), and a
                # deletion is not repeated blindly.  Gone now means deleted
                # (the fence kept any change from passing): finish the job.
                self.forget_cached()
                deleted = yield self._gone(bkey, bucket.bucket_id)
                if not deleted:
                    raise
            self.forget_cached()
            if deleted:
                if self.abort_uploads is not None:
                    yield self.abort_uploads(bucket)
                # After the aborts, which release their parts into these rows.
                yield self._quotas.forget_bucket(BucketScope.of(bucket))
                return None
            # A writer cleared the mark (so the bucket is no longer empty), a
            # setting changed, or another DeleteBucket won: look again.
        raise errors.SlowDown("Too many concurrent changes to this bucket")

    @inlineCallbacks
    def _gone(self, bkey: bytes, bucket_id: str) -> Any:
        """Deferred[bool]: whether the bucket record at ``bkey`` no longer
        holds ``bucket_id`` (deleted, or the name already reused); False
        too when the store cannot answer."""
        try:
            kv = yield self._store.get(bkey)
        except errors.MetadataUnavailable:
            return False
        return kv is None or records.decode_bucket(kv.value).bucket_id != bucket_id

    @inlineCallbacks
    def _is_empty(self, bucket: Bucket) -> Any:
        """Deferred[bool]: no object record (a key with noncurrent versions
        always has one: its current version or delete marker)."""
        prefix = keys.objects_prefix(bucket.bucket_id)
        rows = yield self._store.scan(prefix, prefix_end(prefix), 1)
        return not rows

    def _set(self, bucket: Bucket, **settings: Any) -> Deferred[Any]:
        """Deferred[Bucket] with ``settings`` (Bucket attributes) stored in
        its record (guarded: never resurrects a bucket deleted meanwhile,
        never loses another change to the record); the read cache forgets
        it at once."""

        def change(stored: Bucket) -> None:
            for name, value in settings.items():
                setattr(stored, name, value)

        def stored(updated: Bucket) -> Bucket:
            self.forget_cached()
            return updated

        d: Deferred[Any] = update_bucket(self._store, bucket, change, self._now_ms())
        return d.addCallback(stored)

    def set_versioning(self, bucket: Bucket, status: Versioning) -> Deferred[Any]:
        """Deferred[Bucket] with the new versioning state stored."""
        return self._set(bucket, versioning=status)

    @inlineCallbacks
    def set_cors(self, bucket: Bucket, rules: Sequence[CorsRule]) -> Any:
        """Deferred[Bucket] with ``rules`` as its CORS configuration,
        validated as AWS does (1 to 100 rules: a document without one is
        refused, never taken for a deletion) and stored in the bucket
        record, so it lives and dies with the bucket on every metadata store."""
        validate_cors_rules(rules)
        stored = yield self._set(bucket, cors=tuple(rules))
        return stored

    def delete_cors(self, bucket: Bucket) -> Deferred[Any]:
        """Deferred[Bucket] without a CORS configuration."""
        return self._set(bucket, cors=())

    @inlineCallbacks
    def set_lifecycle(
        self, bucket: Bucket, rules: Sequence[LifecycleRule], *, transitions: Collection[int] = ()
    ) -> Any:
        """Deferred[Bucket] with ``rules`` as its lifecycle configuration,
        validated as AWS does (at least one rule; rules without an ID get
        one) and stored in the bucket record like the CORS rules, so it
        lives and dies with the bucket on every metadata store and the
        lifecycle service finds it where it finds the bucket."""
        new = validate_lifecycle_rules(rules, transitions=transitions)
        stored = yield self._set(bucket, lifecycle=new)
        return stored

    def delete_lifecycle(self, bucket: Bucket) -> Deferred[Any]:
        """Deferred[Bucket] without a lifecycle configuration."""
        return self._set(bucket, lifecycle=())

    def set_website(self, bucket: Bucket, config: WebsiteConfiguration | None) -> Deferred[Any]:
        """Deferred[Bucket] with ``config`` as its static website configuration
        (None: none), stored in the bucket record like the CORS rules, so the
        website endpoint finds it with the bucket in one read."""
        return self._set(bucket, website=config)

    def set_encryption(self, bucket: Bucket, config: BucketEncryption | None) -> Deferred[Any]:
        """Deferred[Bucket] with ``config`` as its default encryption (None:
        none), stored in the bucket record; the core applies it to every
        write that asks for no encryption (core/sse.py)."""
        return self._set(bucket, encryption=config)

    def set_object_lock(self, bucket: Bucket, rule: DefaultRetention | None) -> Deferred[Any]:
        """Deferred[Bucket] with Object Lock enabled and ``rule`` as its
        default retention (None: no default), as PutObjectLockConfiguration.

        Enabling it on an existing bucket needs versioning Enabled, checked
        against the stored record in the same guarded update (409
        InvalidBucketState otherwise, AWS's answer).  Once enabled it stays
        enabled: the configuration has no "Disabled" state.
        """
        if rule is not None:
            try:
                validate_default_retention(rule)
            except errors.S3Error:
                return fail()

        def change(stored: Bucket) -> None:
            if not stored.object_lock and stored.versioning is not Versioning.ENABLED:
                raise errors.S3Error(
                    "Versioning must be 'Enabled' on the bucket to apply a Object Lock configuration",
                    code="InvalidBucketState",
                    BucketName=stored.name,
                )
            stored.object_lock = True
            stored.default_retention = rule

        def stored(updated: Bucket) -> Bucket:
            self.forget_cached()
            return updated

        d: Deferred[Any] = update_bucket(self._store, bucket, change, self._now_ms())
        return d.addCallback(stored)

    def set_policy(self, bucket: Bucket, text: str) -> Deferred[Any]:
        """Deferred[Bucket] with ``text`` as its bucket policy (empty: none),
        already validated by the caller (core/policy.py), stored in the
        bucket record like the CORS rules."""
        return self._set(bucket, policy=text)

    def set_acl(self, bucket: Bucket, acl: Acl | None) -> Deferred[Any]:
        """Deferred[Bucket] with ``acl`` as its ACL (None: private), refused
        with 400 AccessControlListNotSupported if the stored record has ACLs
        disabled by then (the handler checked the copy it read)."""

        def change(stored: Bucket) -> None:
            if not acls_enabled(stored):
                raise errors.AccessControlListNotSupported()
            stored.acl = acl

        return self._guarded(bucket, change)

    def set_object_ownership(self, bucket: Bucket, ownership: str | None) -> Deferred[Any]:
        """Deferred[Bucket] with its Object Ownership (None: no ownership
        controls).  ``BucketOwnerEnforced`` is refused while the stored ACL
        grants anyone but the owner (400 InvalidBucketAclWithObjectOwnership,
        as AWS); the ACL of a bucket that switches to it is dropped (it only
        gave the owner what it has anyway)."""

        def change(stored: Bucket) -> None:
            if ownership == BUCKET_OWNER_ENFORCED:
                if stored.acl is not None and not owner_only(stored.acl, stored.created_by):
                    raise errors.InvalidBucketAclWithObjectOwnership()
                stored.acl = None
            stored.object_ownership = ownership

        return self._guarded(bucket, change)

    def _guarded(self, bucket: Bucket, change: Callable[[Bucket], None]) -> Deferred[Any]:
        """Deferred[Bucket] with ``change`` (which may refuse by raising)
        applied to the stored record in one guarded update."""

        def stored(updated: Bucket) -> Bucket:
            self.forget_cached()
            return updated

        d: Deferred[Any] = update_bucket(self._store, bucket, change, self._now_ms())
        return d.addCallback(stored)

    def set_public_access_block(self, bucket: Bucket, settings: PublicAccessBlock | None) -> Deferred[Any]:
        """Deferred[Bucket] with its Block Public Access settings (None:
        none), stored in the bucket record."""
        return self._set(bucket, public_access_block=settings)

    @inlineCallbacks
    def find_unique(self, name: str) -> Any:
        """Deferred[Bucket | None]: the one bucket called ``name`` in any
        tenant's scope; None if there is none, or several.

        For a request that names a bucket without naming a tenant (an
        unsigned CORS preflight, which anyone can send).  The bucket key
        space is ordered by scope, not by name, so the name index
        (``keys.BUCKET_NAMES``) answers: one scan of the name's entries,
        at most two of them, then one read of the record if there was
        exactly one.  The entries are written and deleted in the
        transactions that create and delete the records, so a lookup sees
        every bucket as soon as its creation returned, through any worker
        or server, and its cost does not grow with the number of buckets.

        A store written by an older version has buckets without entries
        until :meth:`index_names` has run to the end and set its marker;
        until then the answer comes from walking every bucket record
        (:meth:`_find_unique_by_walk`).
        """
        if "\x00" in name:
            return None  # no bucket name holds one; it would end the prefix
        if not self._names_indexed:
            marker = yield self._store.get(keys.BUCKET_NAMES_INDEXED)
            if marker is None:
                found = yield self._find_unique_by_walk(name)
                return found
            self._names_indexed = True
        prefix = keys.bucket_name_prefix(name)
        entries = yield self._store.scan(prefix, prefix_end(prefix), 2)
        if len(entries) != 1:
            return None  # none, or several scopes hold the name
        kv = yield self._store.get(entries[0].value)
        bucket = decoded_bucket(kv)
        # An entry an older server's delete left behind (see index_names)
        # points at no record: that is no bucket.
        if bucket is None or bucket.name != name:
            return None
        return bucket

    def _find_unique_by_walk(self, name: str) -> Deferred[Any]:
        """:meth:`find_unique` without the name index (not complete yet): the
        names come from reading every bucket record (:meth:`_bucket_names`).
        That costs in proportion to the number of buckets on the whole
        system, so one such read serves every lookup for
        :data:`NAME_INDEX_SECONDS` and concurrent lookups share the read in
        progress: a stream of preflights, whatever names they carry, costs
        at most one pass over the bucket records per interval and worker.
        A bucket created or deleted through this process is seen at once
        (:meth:`forget_cached`); through another worker or server, within
        the interval."""
        d = self._bucket_names()

        def look_up(names: dict[str, bytes]) -> Any:
            key = names.get(name)
            if not key:  # none, or several (_AMBIGUOUS)
                return None
            found: Deferred[Any] = self._store.get(key)
            return found.addCallback(decoded_bucket).addCallback(
                lambda bucket: bucket if bucket is not None and bucket.name == name else None
            )

        return d.addCallback(look_up)

    def _bucket_names(self) -> Deferred[Any]:
        """Deferred[dict]: every bucket name -> its record's key, or
        :data:`_AMBIGUOUS` for a name in several scopes; at most
        :data:`NAME_INDEX_SECONDS` old; empty when there are more than
        ``name_index_max`` buckets.  Names are read from the keys
        (``.../{name}``), so no record is decoded."""
        now = self._clock()
        if self._names is not None and now - self._names[0] < NAME_INDEX_SECONDS:
            return succeed(self._names[1])
        if self._names_loading is None:
            names: dict[str, bytes] = {}
            generation = self._names_generation

            def visit(kv: Any) -> bool:
                if len(names) >= self.name_index_max:
                    names.clear()  # too many to keep: no name resolves (NAME_INDEX_MAX)
                    return True
                name = kv.key.rsplit(b"/", 1)[-1].decode("utf-8", "replace")
                names[name] = _AMBIGUOUS if name in names else kv.key
                return False

            def loaded(result: Any) -> Any:
                self._names_loading = None
                if isinstance(result, Failure):
                    return result
                if generation == self._names_generation:  # else: serve it once, keep none
                    self._names = (now, names)
                return names

            scan: Deferred[Any] = scan_prefix(self._store, keys.BUCKETS, _SCAN_PAGE, visit)
            self._names_loading = Shared(scan.addBoth(loaded))
        return self._names_loading.get()

    @inlineCallbacks
    def index_names(self, should_stop: Callable[[], bool] | None = None) -> Any:
        """Deferred[NameIndexReport]: bring the name index in line with the
        bucket records, then set its marker (``keys.BUCKET_NAMES_INDEXED``).

        Run by the primary worker at every start (NameIndexService), in the
        background.  Idempotent: a pass over a complete index only reads.

        * Every bucket record without its entry gets one, in a transaction
          that compares the record's revision as read and the entry's
          absence: a bucket deleted meanwhile gets no entry (a record gone
          for good, or re-created, fails the compare), and one created
          meanwhile by this version already has its own.  A record changed
          meanwhile (a setting, a deletion mark) is read again.
        * Every entry whose record is gone is deleted, in a transaction that
          compares the record's absence and the entry's revision (a bucket
          re-created meanwhile keeps its new entry).  Only a server of an
          older version leaves such an entry (its DeleteBucket knows of no
          index), as one leaves a bucket without an entry when it creates
          one: see docs/operations.md, "Upgrading", for why one pass at
          every start is enough.

        ``should_stop`` is asked before each row: True ends the pass early,
        without the marker (the server is stopping; the next start runs it
        again).  Rows come ``_SCAN_PAGE`` at a time, so memory stays flat
        however many buckets there are.
        """
        report = NameIndexReport()

        def stopping() -> bool:
            return should_stop is not None and should_stop()

        @inlineCallbacks
        def add_entry(kv: Any) -> Any:
            if stopping():
                return True
            scope = keys.bucket_key_scope(kv.key)
            if scope is None:
                return False  # not a bucket record's key: nothing to index
            ikey = keys.bucket_name_key(*scope)
            revision = kv.mod_revision
            for _attempt in range(_INDEX_ATTEMPTS):
                entry = yield self._store.get(ikey)
                if entry is not None and entry.value == kv.key:
                    return False
                result = yield self._store.txn(
                    [Compare(kv.key, revision), Compare(ikey, entry.mod_revision if entry else 0)],
                    [Put(ikey, kv.key)],
                )
                if result.succeeded:
                    report.added += 1
                    return False
                record = yield self._store.get(kv.key)
                if record is None:
                    return False  # deleted meanwhile: no entry for it
                revision = record.mod_revision
            report.busy += 1  # changing all the time: the next pass tries again
            return False

        @inlineCallbacks
        def drop_stale(kv: Any) -> Any:
            if stopping():
                return True
            scope = keys.bucket_key_scope(kv.value)
            if scope is not None and keys.bucket_name_key(*scope) == kv.key:
                record = yield self._store.get(kv.value)
                if record is not None:
                    return False
                compares = [Compare(kv.value, 0), Compare(kv.key, kv.mod_revision)]
            else:
                compares = [Compare(kv.key, kv.mod_revision)]  # not ours to keep
            result = yield self._store.txn(compares, [Delete(kv.key)])
            if result.succeeded:
                report.removed += 1
            return False

        stopped = yield scan_prefix(self._store, keys.BUCKETS, _SCAN_PAGE, add_entry)
        if not stopped:
            stopped = yield scan_prefix(self._store, keys.BUCKET_NAMES, _SCAN_PAGE, drop_stale)
        if stopped or report.busy:
            return report
        marker = yield self._store.get(keys.BUCKET_NAMES_INDEXED)
        if marker is None:
            yield self._store.txn([], [Put(keys.BUCKET_NAMES_INDEXED, b"1")])
        self._names_indexed = True
        report.complete = True
        return report


class NameIndexService(Service):
    """Runs :meth:`BucketManager.index_names` once, in the background, at
    every start of the primary worker (like the other background services).

    Not awaited by start-up: it reads every bucket record (one metadata
    read each, more on a store written by an older version), which must not
    hold readiness back, and lookups by name are correct while it runs
    (they walk the records until its marker is set).  A failure is logged;
    the next start runs it again.  At every start, not once, because a
    server of an older version sharing the store (a rolling upgrade on
    etcd) creates and deletes buckets without entries: the pass of the last
    server upgraded completes the index.  Stopping waits for the pass,
    which ends at its next row: the store is closed by a service stopped
    after this one.
    """

    def __init__(self, buckets: BucketManager, reactor: Any) -> None:
        self.buckets = buckets
        self.reactor = reactor
        self._pass: Deferred[Any] | None = None

    def startService(self) -> None:
        super().startService()
        self.reactor.callWhenRunning(self._start)

    def _start(self) -> None:
        if not self.running:
            return
        started = self.reactor.seconds()

        def done(report: NameIndexReport) -> None:
            _log.info(
                "Bucket name index: {added} entries added, {removed} stale removed, "
                "complete={complete} ({busy} busy buckets left for the next start; {seconds:.1f} s)",
                added=report.added, removed=report.removed, complete=report.complete, busy=report.busy,
                seconds=self.reactor.seconds() - started,
            )  # fmt: skip

        def failed(f: Failure) -> None:
            _log.failure("Bucket name index pass failed (the next start retries it)", f)

        d: Deferred[Any] = self.buckets.index_names(should_stop=lambda: not self.running)
        self._pass = d.addCallbacks(done, failed)

    def stopService(self) -> Any:
        super().stopService()
        return self._pass


@dataclass
class NameIndexReport:
    """What one :meth:`BucketManager.index_names` pass did."""

    added: int = 0  # entries written for buckets that had none
    removed: int = 0  # entries deleted whose bucket was gone
    busy: int = 0  # buckets skipped because their record kept changing
    complete: bool = False  # the pass reached the end and the marker is set


def reachable_from_outside(bucket: Bucket) -> bool:
    """Whether callers outside the bucket's scope may reach it by its name
    alone: through its policy (anonymous callers, other tenants), its ACLs
    (enabled: the bucket's or any object's may grant outsiders) or its
    website.  Such a name is kept unique across scopes (:meth:`BucketManager.create`)."""
    return bool(bucket.policy) or acls_enabled(bucket) or bucket.website is not None


def _existing(bucket: Bucket | None, name: str) -> Bucket:
    if bucket is None:
        raise errors.NoSuchBucket(resource=name, BucketName=name)
    return bucket


def _copy(bucket: Bucket) -> Bucket:
    """A shallow copy (as ``dataclasses.replace(bucket)``, whose field-by-field
    ``__init__`` costs a dozen calls on every cached object read)."""
    copy = object.__new__(Bucket)
    copy.__dict__.update(bucket.__dict__)
    return copy


def decoded_bucket(kv: Any) -> Bucket | None:
    """The bucket a store row holds, with the row's revision (what object
    commits compare); None for no row."""
    if kv is None:
        return None
    bucket = records.decode_bucket(kv.value)
    bucket.revision = kv.mod_revision  # what object commits compare
    return bucket
