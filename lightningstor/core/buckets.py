"""Buckets: naming, scoping and lifecycle (SPEC §3.1, §7.1-7.2).

A bucket belongs to an org and optionally a project; its name is unique within
that scope.  A caller's bucket name resolves in the caller's scope: the
project's buckets first, then the org's.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import replace
from typing import Any, Callable

from twisted.internet.defer import Deferred, inlineCallbacks, succeed

from lightningstor import errors
from lightningstor.core import keys, records
from lightningstor.core.attributes import check_bucket_tags, validate_storage_class
from lightningstor.core.quotas import BucketScope, QuotaManager
from lightningstor.core.types import Bucket, Principal, Versioning
from lightningstor.interfaces.metadata import Compare, Delete, IMetadataStore, Put, prefix_end

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
# Paths the S3 port answers itself (GET /health ...): a bucket of that name
# could never be listed path-style, so the names are refused up front.
RESERVED_NAMES = frozenset({"health", "ready", "metrics"})


def validate_bucket_name(name: str) -> None:
    """SPEC §3.1: 3-63 characters of lower-case letters, digits and hyphens,
    starting (and, as AWS requires, ending) with a letter or digit."""
    if not _NAME.match(name) or name in RESERVED_NAMES:
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


class BucketManager:
    """Create, find, list and delete buckets in a principal's scope.

    **The read cache.**  Every S3 request resolves its bucket: a metadata
    read (a thread hop with SQLite, a round trip with etcd) and a JSON
    decode.  Object reads and listings (:meth:`find_for_read`) take the
    bucket from a small cache for :data:`READ_CACHE_SECONDS` instead (SPEC
    appendix E, "hot bucket metadata cached").  What they use of it never
    changes (id, scope, name) or only affects what they report
    (versioning: whether a version id header is sent), and a bucket must be
    empty to be deleted, so a cached bucket can only turn a NoSuchBucket
    into a NoSuchKey or an empty listing for that second, as in S3, whose
    bucket configuration is eventually consistent.  Writes, bucket
    configuration reads and everything else always read the record.  A
    change made through this process clears the cache at once; another
    worker or server sees it within the second.  Absent buckets are never
    cached, so a bucket is usable as soon as its creation returns.
    """

    def __init__(
        self, store: IMetadataStore, clock: Callable[[], float], region: str, quotas: QuotaManager | None = None
    ) -> None:
        self._store = store
        self.read_cache_seconds = READ_CACHE_SECONDS
        self._read_cache: dict[tuple[str, str | None, str], tuple[float, Bucket]] = {}
        self._clock = clock
        self._region = region
        # max_buckets is checked in the create transaction; a deleted
        # bucket's usage rows and bucket quota go with it.
        self._quotas = quotas if quotas is not None else QuotaManager(store, clock)

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
    ) -> Any:
        """Deferred[Bucket].  BucketAlreadyOwnedByYou if the caller's scope has it.

        ``org_id``/``project_id`` name the scope the caller asks for (None:
        its own); a principal creates buckets only in its own scope, since
        those are the only buckets it can resolve (AccessDenied otherwise).
        ``versioning`` and ``tags`` are stored with the bucket record in the
        same write, so a bucket never exists without them.  QuotaExceeded if
        the org's or the project's max_buckets is reached (exact under
        concurrent creates: see :mod:`lightningstor.core.quotas`).
        """
        validate_bucket_name(name)
        check_scope(principal, org_id, project_id)
        check_bucket_tags(tags or {})
        validate_storage_class(storage_class)
        if versioning is Versioning.SUSPENDED:
            raise errors.InvalidArgument(
                "A new bucket's versioning is Enabled or never configured", ArgumentName="versioning"
            )
        if location not in (None, "", self._region):
            raise errors.S3Error(
                f"The specified location-constraint is not valid: {location}",
                code="InvalidLocationConstraint",
                LocationConstraint=str(location),
            )
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
        )
        bkey = keys.bucket_key(bucket.org_id, bucket.project_id, name)
        # Unique within the caller's own scope (a project bucket may share its
        # name with an org bucket; the project's one then resolves first).
        for _attempt in range(100):
            quota = yield self._quotas.plan_bucket_create(bucket.org_id, bucket.project_id)
            result = yield self._store.txn(
                [Compare(bkey, 0), *quota.compares], [Put(bkey, records.encode_bucket(bucket)), *quota.ops]
            )
            if result.succeeded:
                # A project bucket now hides an org bucket of the same name.
                self.forget_cached()
                return bucket
            kv = yield self._store.get(bkey)
            if kv is None:
                continue  # a quota guard or limit moved: count again
            owner = records.decode_bucket(kv.value).created_by
            if owner == principal.principal_id:
                raise errors.BucketAlreadyOwnedByYou(resource=name, BucketName=name)
            raise errors.BucketAlreadyExists(resource=name, BucketName=name)
        raise errors.SlowDown("Too many concurrent bucket creations")

    def find(self, principal: Principal, name: str) -> Deferred[Any]:
        """Deferred[Bucket | None]: resolve ``name`` in the caller's scope
        (a project's bucket first, then its org's)."""
        org_key = keys.bucket_key(principal.org_id, None, name)
        if not principal.project_id:
            # One place to look (every org-level caller): one read, no generator.
            d: Deferred[Any] = self._store.get(org_key)
            return d.addCallback(_decoded_bucket)
        return self._find_in(keys.bucket_key(principal.org_id, principal.project_id, name), org_key)

    @inlineCallbacks
    def _find_in(self, *candidates: bytes) -> Any:
        for k in candidates:
            kv = yield self._store.get(k)
            if kv is not None:
                return records.decode_bucket(kv.value)
        return None

    def find_for_read(self, principal: Principal, name: str) -> Deferred[Any]:
        """Deferred[Bucket]: as :meth:`get`, served from the read cache when
        the same scope resolved ``name`` less than ``read_cache_seconds`` ago
        (object reads and listings only; see the class docstring)."""
        scope = (principal.org_id, principal.project_id, name)
        now = self._clock()
        hit = self._read_cache.get(scope)
        if hit is not None and now - hit[0] < self.read_cache_seconds:
            return succeed(replace(hit[1]))  # callers may not change the cached one
        d: Deferred[Any] = self.get(principal, name)

        def remember(bucket: Bucket) -> Bucket:
            if len(self._read_cache) >= _READ_CACHE_MAX:
                self._read_cache.clear()
            self._read_cache[scope] = (now, replace(bucket))
            return bucket

        return d.addCallback(remember)

    def forget_cached(self) -> None:
        """Drop the read cache: a bucket changed through this process."""
        self._read_cache.clear()

    def get(self, principal: Principal, name: str) -> Deferred[Any]:
        """Deferred[Bucket]; NoSuchBucket if it is not in the caller's scope."""
        d: Deferred[Any] = self.find(principal, name)
        return d.addCallback(_existing, name)

    @inlineCallbacks
    def list(self, principal: Principal, *, name_prefix: str = "", after: str = "") -> Any:
        """Deferred[list[Bucket]] visible to the caller, sorted by name:
        those whose name starts with ``name_prefix`` and sorts after ``after``
        (ListBuckets' ``prefix`` and ``continuation-token``)."""
        prefix = keys.org_buckets_prefix(principal.org_id)
        rows = yield self._store.scan(prefix, prefix_end(prefix))
        out = []
        for kv in rows:
            parts = kv.key[len(prefix):].split(b"/")
            if len(parts) == 1 or (principal.project_id and parts[0] == principal.project_id.encode()):
                bucket = records.decode_bucket(kv.value)
                if bucket.name.startswith(name_prefix) and bucket.name > after:
                    out.append(bucket)
        out.sort(key=lambda b: b.name)
        return out

    # Set by the Core: Deferred-returning "abort every upload of this bucket".
    abort_uploads: Callable[[Bucket], Any] | None = None

    @inlineCallbacks
    def delete(self, principal: Principal, name: str) -> Any:
        """Deferred[None]; BucketNotEmpty unless the bucket holds no object.

        In-progress multipart uploads do not keep a bucket alive (AWS deletes
        the bucket and drops them): they are aborted once the bucket is gone.
        """
        bucket = yield self.get(principal, name)
        prefix = keys.objects_prefix(bucket.bucket_id)
        rows = yield self._store.scan(prefix, prefix_end(prefix), 1)
        if rows:
            raise errors.BucketNotEmpty(resource=name, BucketName=name)
        bkey = keys.bucket_key(bucket.org_id, bucket.project_id, name)
        kv = yield self._store.get(bkey)
        if kv is None:
            raise errors.NoSuchBucket(resource=name, BucketName=name)
        # Guard on the bucket record's revision; a PUT racing the delete may
        # still land an object under the old id, which the collector reclaims.
        result = yield self._store.txn([Compare(bkey, kv.mod_revision)], [Delete(bkey)])
        self.forget_cached()
        if result.succeeded:
            if self.abort_uploads is not None:
                yield self.abort_uploads(bucket)
            # After the aborts, which release their parts into these rows.
            yield self._quotas.forget_bucket(BucketScope.of(bucket))
        return None

    @inlineCallbacks
    def set_versioning(self, bucket: Bucket, status: Versioning) -> Any:
        """Deferred[Bucket] with the new versioning state stored."""
        bkey = keys.bucket_key(bucket.org_id, bucket.project_id, bucket.name)
        bucket.versioning = status
        bucket.updated_at = self._now_ms()
        yield self._store.txn([], [Put(bkey, records.encode_bucket(bucket))])
        self.forget_cached()
        return bucket


def _existing(bucket: Bucket | None, name: str) -> Bucket:
    if bucket is None:
        raise errors.NoSuchBucket(resource=name, BucketName=name)
    return bucket


def _decoded_bucket(kv: Any) -> Bucket | None:
    return None if kv is None else records.decode_bucket(kv.value)
