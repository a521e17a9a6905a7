"""Quotas (SPEC §7.4): limits per org, project and bucket; usage; enforcement.

Limits
------
:class:`StorageLimits` (max buckets, max total bytes, max objects per
bucket, max object size) may be set for an org and for a project of an org;
:class:`BucketQuota` (SPEC §3.1: max bytes, max objects) for one bucket.  Org
limits cover every bucket of the org, project buckets included; project
limits cover the project's buckets.  Each is one record in the metadata store
(:func:`keys.org_quota_key` ...); an absent record or field means "no limit".

Usage
-----
A bucket's usage (:class:`Usage`) counts every stored object *version*
(current and noncurrent; delete markers count nothing) and the parts of its
in-progress multipart uploads (``upload_bytes``: parts occupy storage until
the upload is completed or aborted, so they count against byte limits; an
abort, an expiry or a completion that leaves parts out releases them).

Every transaction of the write path carries one *delta row* for its bucket:
a ``Put`` under a unique key that no transaction compares, so keeping usage
costs writers of a bucket nothing in contention.  A bucket's usage is its
folded *base row* plus its pending deltas.  The rows of a bucket, a project
and an org are adjacent keys (:func:`keys.usage_scope_prefix`), so a single
scan reads a scope's usage at one revision, consistent however folds and
writes interleave.  Folding (:meth:`QuotaManager.fold_bucket`) adds deltas
into the base and deletes exactly the deltas it added, in one transaction
guarded by the base's revision; it runs periodically
(:class:`UsageFoldService`) and whenever one process has written many deltas
for a bucket.  Totals never change by folding.

Enforcement
-----------
Only when a limit applies does a commit do more.  A write that *increases*
a limited dimension reads a per-scope *guard* key, then the scope's usage,
checks that usage plus its delta stays within the limit (QuotaExceeded
otherwise), and commits with a compare on the guard's revision and a put
that bumps it.  Two such commits in one scope therefore cannot both succeed
on the same reading: the loser retries with fresh usage (the write paths all
re-plan on a failed transaction).  Limits are exact: no overshoot, even under
concurrent uploads.  Writes that only decrease usage (deletes, smaller
overwrites) are never refused and never take the guard.

The limits a bucket is subject to are cached per process.  Every change to
a limit record of an org bumps the org's *quota epoch* key in the same
transaction, and every commit compares that key's revision, so a limit set
by an admin (another process) applies to the very next commit: a stale cache
only costs one retry.  Checks made before a body is stored, which have no
transaction, reuse a cached answer for ``cache_seconds`` at most.
"""

from __future__ import annotations

import json
import random
from collections import OrderedDict
from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable, Mapping

from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.logger import Logger

from lightningstor import errors
from lightningstor.core import keys, records
from lightningstor.core.types import Bucket, ObjectRecord, Versioning
from lightningstor.core.versions import noncurrent_null
from lightningstor.interfaces.metadata import (
    Compare,
    Delete,
    DeleteRange,
    IMetadataStore,
    KeyValue,
    Operation,
    Put,
    prefix_end,
)
from lightningstor.periodic import PeriodicService

log = Logger()

_FORMAT = 1
FOLD_BATCH = 100  # deltas folded per transaction (etcd allows 128 operations)
_SCAN_BATCH = 1000


# -- values ------------------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    """What a bucket (or a sum of buckets) stores; also used for deltas."""

    bytes: int = 0  # logical size of every stored object version
    objects: int = 0  # stored object versions (delete markers excluded)
    upload_bytes: int = 0  # parts of in-progress multipart uploads

    @property
    def total_bytes(self) -> int:
        """What counts against byte limits: versions and pending parts."""
        return self.bytes + self.upload_bytes

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.bytes + other.bytes, self.objects + other.objects, self.upload_bytes + other.upload_bytes)

    def __sub__(self, other: Usage) -> Usage:
        return Usage(self.bytes - other.bytes, self.objects - other.objects, self.upload_bytes - other.upload_bytes)

    def __bool__(self) -> bool:
        return bool(self.bytes or self.objects or self.upload_bytes)


ZERO = Usage()


def record_usage(record: ObjectRecord | None) -> Usage:
    """What one object version contributes to usage (a delete marker: nothing)."""
    if record is None or record.delete_marker:
        return ZERO
    return Usage(bytes=record.size, objects=1)


@dataclass(frozen=True)
class StorageLimits:
    """SPEC §7.4 limits of an org or a project; None is "no limit"."""

    max_buckets: int | None = None
    max_total_size_bytes: int | None = None
    max_objects_per_bucket: int | None = None
    max_object_size_bytes: int | None = None

    def is_empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in fields(self))


@dataclass(frozen=True)
class BucketQuota:
    """SPEC §3.1 BucketQuota; None is "no limit"."""

    max_size_bytes: int | None = None
    max_objects: int | None = None

    def is_empty(self) -> bool:
        return self.max_size_bytes is None and self.max_objects is None


@dataclass(frozen=True)
class BucketScope:
    """Where a bucket's usage rows live: its org, project and internal id."""

    org_id: str
    project_id: str | None
    bucket_id: str

    @classmethod
    def of(cls, bucket: Bucket) -> BucketScope:
        return cls(bucket.org_id, bucket.project_id, bucket.bucket_id)

    @property
    def prefix(self) -> bytes:
        return keys.usage_bucket_prefix(self.org_id, self.project_id, self.bucket_id)


@dataclass(frozen=True)
class Applicable:
    """The limit records one bucket is subject to, as of one revision of its
    org's quota epoch (:func:`keys.quota_epoch_key`)."""

    org: StorageLimits | None
    project: StorageLimits | None
    bucket: BucketQuota | None
    epoch: Compare  # fails a transaction if any limit of the org changed since
    fetched_at: float

    @property
    def unlimited(self) -> bool:
        return self.org is None and self.project is None and self.bucket is None

    def max_object_size(self) -> tuple[int, str] | None:
        """The smallest max_object_size_bytes that applies, and whose it is."""
        found = [
            (limits.max_object_size_bytes, who)
            for limits, who in ((self.org, "org"), (self.project, "project"))
            if limits is not None and limits.max_object_size_bytes is not None
        ]
        return min(found) if found else None


@dataclass
class QuotaPlan:
    """What one mutating transaction adds for quotas: compares and operations."""

    scope: BucketScope | None = None
    compares: list[Compare] = field(default_factory=list)
    ops: list[Operation] = field(default_factory=list)
    wrote_delta: bool = False


@dataclass(frozen=True)
class _Check:
    guard: bytes
    usage_prefix: bytes
    dimension: str  # "total_bytes" | "objects"
    limit: int
    what: str  # for the error message


# -- records -------------------------------------------------------------------


def _dumps(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode("utf-8")


def encode_usage(u: Usage) -> bytes:
    return _dumps({"v": _FORMAT, "b": u.bytes, "o": u.objects, "u": u.upload_bytes})


def decode_usage(data: bytes) -> Usage:
    d = json.loads(data)
    return Usage(int(d.get("b", 0)), int(d.get("o", 0)), int(d.get("u", 0)))


def encode_limits(limits: StorageLimits | BucketQuota) -> bytes:
    d: dict[str, Any] = {"v": _FORMAT}
    d.update({f.name: getattr(limits, f.name) for f in fields(limits) if getattr(limits, f.name) is not None})
    return _dumps(d)


def decode_storage_limits(data: bytes) -> StorageLimits:
    d = json.loads(data)
    return StorageLimits(**{f.name: d.get(f.name) for f in fields(StorageLimits)})


def decode_bucket_quota(data: bytes) -> BucketQuota:
    d = json.loads(data)
    return BucketQuota(**{f.name: d.get(f.name) for f in fields(BucketQuota)})


def validate_limit(name: str, value: int | None) -> None:
    """A limit is a non-negative integer (0 forbids the resource outright)."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise errors.InvalidArgument(f"Quota {name} must be a non-negative integer", ArgumentName=name)


def _sum_rows(rows: list[KeyValue]) -> Usage:
    total = ZERO
    for kv in rows:
        total += decode_usage(kv.value)
    return total


def _bucket_prefix_of(key: bytes) -> bytes | None:
    """``usage/{org}/{project}/{bucket_id}/`` of a usage row's key."""
    rest = key[len(keys.USAGE):]
    parts = rest.split(b"/", 3)
    if len(parts) < 4:
        return None
    return keys.USAGE + b"/".join(parts[:3]) + b"/"


def usage_row_bucket(key: bytes) -> bytes | None:
    """The bucket prefix (``usage/{org}/{project}/{bucket_id}/``) of a usage
    row's key, None for a key that is not one.

    Public for readers that sum many buckets page by page
    (:func:`lightningstor.metrics.count_store`): a fold between two scans
    moves deltas into a base row already read, so such a reader must read
    each bucket's rows in one scan, and needs to know where a bucket ends.
    """
    return _bucket_prefix_of(key)


# -- the manager -------------------------------------------------------------------


class QuotaManager:
    """Limits records, usage rows and the quota part of every write transaction.

    ``cache_seconds`` bounds how long the limits of a bucket are reused for
    early checks (commits are exact regardless, see the module docstring);
    after ``fold_every`` deltas written by this process for one bucket, that
    bucket is folded in the background.
    """

    def __init__(
        self,
        store: IMetadataStore,
        clock: Callable[[], float],
        *,
        cache_seconds: float = 2.0,
        cache_size: int = 4096,
        fold_every: int = 256,
    ) -> None:
        self._store = store
        self._clock = clock
        self.cache_seconds = cache_seconds
        self._cache_size = cache_size
        self._cache: OrderedDict[str, Applicable] = OrderedDict()
        self.fold_every = fold_every
        self._pending: dict[bytes, int] = {}
        self._folding: set[bytes] = set()

    # -- limit records -----------------------------------------------------------

    @inlineCallbacks
    def get_limits(self, org_id: str, project_id: str | None = None) -> Any:
        """Deferred[StorageLimits | None] of an org, or of a project when given."""
        key = keys.project_quota_key(org_id, project_id) if project_id else keys.org_quota_key(org_id)
        kv = yield self._store.get(key)
        return None if kv is None else decode_storage_limits(kv.value)

    @inlineCallbacks
    def get_bucket_quota(self, bucket_id: str) -> Any:
        """Deferred[BucketQuota | None]."""
        kv = yield self._store.get(keys.bucket_quota_key(bucket_id))
        return None if kv is None else decode_bucket_quota(kv.value)

    def set_limits(self, org_id: str, project_id: str | None, changes: Mapping[str, int | None]) -> Any:
        """Deferred[StorageLimits]: merge ``changes`` (None removes a limit)
        into the org's (or project's) limits record.  Limits not named keep
        their value; a record left with no limit is deleted."""
        key = keys.project_quota_key(org_id, project_id) if project_id else keys.org_quota_key(org_id)
        return self._update(org_id, key, StorageLimits(), decode_storage_limits, changes)

    def set_bucket_quota(self, bucket: Bucket, changes: Mapping[str, int | None]) -> Any:
        """Deferred[BucketQuota]: as :meth:`set_limits`, for one bucket."""
        key = keys.bucket_quota_key(bucket.bucket_id)
        return self._update(bucket.org_id, key, BucketQuota(), decode_bucket_quota, changes)

    @inlineCallbacks
    def _update(
        self, org_id: str, key: bytes, empty: Any, decode: Callable[[bytes], Any], changes: Mapping[str, int | None]
    ) -> Any:
        """Read-modify-write of one limits record, bumping the org's quota
        epoch in the same transaction (every server's next commit in the org
        then fails its epoch compare and reads the limits again)."""
        known = {f.name for f in fields(empty)}
        for name, value in changes.items():
            if name not in known:
                raise errors.InvalidArgument(f"Unknown quota limit {name}", ArgumentName=name)
            validate_limit(name, value)
        for _attempt in range(100):
            kv = yield self._store.get(key)
            current = empty if kv is None else decode(kv.value)
            updated = replace(current, **changes)
            op: Operation = Delete(key) if updated.is_empty() else Put(key, encode_limits(updated))
            epoch = Put(keys.quota_epoch_key(org_id), b"1")
            result = yield self._store.txn([Compare(key, kv.mod_revision if kv else 0)], [op, epoch])
            if result.succeeded:
                self._cache.clear()
                return updated
        raise errors.SlowDown("Too many concurrent quota changes")

    # -- which limits apply --------------------------------------------------------

    def _cached(self, scope: BucketScope, max_age: float | None) -> Applicable | None:
        cached = self._cache.get(scope.bucket_id)
        if cached is not None and (max_age is None or self._clock() - cached.fetched_at < max_age):
            return cached
        return None

    @inlineCallbacks
    def applicable(self, scope: BucketScope, *, max_age: float | None = None) -> Any:
        """Deferred[Applicable] for one bucket.

        A cached answer of any age (``max_age`` None) is right for commits:
        they compare the org's quota epoch, so a stale one only costs a
        retry.  Checks without a transaction pass ``max_age``.
        """
        cached = self._cached(scope, max_age)
        if cached is not None:
            return cached
        now = self._clock()
        epoch_key = keys.quota_epoch_key(scope.org_id)
        ekv = yield self._store.get(epoch_key)
        okv = pkv = bkv = None
        if ekv is not None:  # no epoch: no limit was ever set in this org
            okv = yield self._store.get(keys.org_quota_key(scope.org_id))
            if scope.project_id:
                pkv = yield self._store.get(keys.project_quota_key(scope.org_id, scope.project_id))
            bkv = yield self._store.get(keys.bucket_quota_key(scope.bucket_id))
        found = Applicable(
            org=None if okv is None else decode_storage_limits(okv.value),
            project=None if pkv is None else decode_storage_limits(pkv.value),
            bucket=None if bkv is None else decode_bucket_quota(bkv.value),
            epoch=Compare(epoch_key, 0 if ekv is None else ekv.mod_revision),
            fetched_at=now,
        )
        self._cache[scope.bucket_id] = found
        self._cache.move_to_end(scope.bucket_id)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return found

    def conflicted(self, scope: BucketScope | None) -> None:
        """A transaction carrying a plan for ``scope`` failed: maybe a limit
        record changed, so the next attempt reads the limits again."""
        if scope is not None:
            self._cache.pop(scope.bucket_id, None)

    # -- usage ---------------------------------------------------------------------

    @inlineCallbacks
    def read_usage(self, prefix: bytes) -> Any:
        """Deferred[Usage]: the sum of every usage row under ``prefix`` (one scan)."""
        rows = yield self._store.scan(prefix, prefix_end(prefix))
        return _sum_rows(rows)

    def usage(self, org_id: str, project_id: str | None = None, bucket_id: str | None = None) -> Any:
        """Deferred[Usage] of an org (all its buckets), a project, or a bucket.

        ``bucket_id`` needs the bucket's ``project_id`` (None for an org bucket).
        """
        if bucket_id is not None:
            return self.read_usage(keys.usage_bucket_prefix(org_id, project_id, bucket_id))
        return self.read_usage(keys.usage_scope_prefix(org_id, project_id))

    @inlineCallbacks
    def bucket_count(self, org_id: str, project_id: str | None = None) -> Any:
        """Deferred[int]: buckets of an org (project buckets included) or of a project."""
        if project_id:
            prefix = keys.bucket_key(org_id, project_id, "")
        else:
            prefix = keys.org_buckets_prefix(org_id)
        rows = yield self._store.scan(prefix, prefix_end(prefix))
        return len(rows)

    # -- the write path ------------------------------------------------------------

    def unguarded(self, scope: BucketScope | None, delta: Usage) -> QuotaPlan:
        """The delta row of a write that cannot exceed any limit (no I/O)."""
        plan = QuotaPlan(scope)
        if scope is not None and delta:
            plan.ops.append(Put(keys.usage_delta_key(scope.prefix, self._unique()), encode_usage(delta)))
            plan.wrote_delta = True
        return plan

    def plan(self, scope: BucketScope | None, delta: Usage, *, object_size: int | None = None) -> Any:
        """Deferred[QuotaPlan] for a write changing ``scope``'s usage by ``delta``.

        ``object_size`` is the size of a new object (or part), checked against
        max_object_size_bytes.  QuotaExceeded if the write would take a scope
        over a limit it increases.  Call again for every retry of the
        transaction: the usage read is only valid with the guards it returns.

        The common case, a bucket of an org without limits whose answer is
        cached, does no I/O: one delta row and one epoch compare.
        """
        plan = self.unguarded(scope, delta)
        if scope is None:
            return succeed(plan)
        cached = self._cached(scope, None)
        if cached is not None and cached.unlimited:
            plan.compares.append(cached.epoch)
            return succeed(plan)
        return self._plan_limited(scope, delta, object_size, plan)

    @inlineCallbacks
    def _plan_limited(self, scope: BucketScope, delta: Usage, object_size: int | None, plan: QuotaPlan) -> Any:
        """The plan under the limits cached (of any age: the epoch compare
        catches a limit changed since); a refusal under cached limits is
        confirmed with freshly read ones, as the early checks' are.  A
        refusal raises before any transaction runs, so the epoch compare
        would never tell a limit raised or removed elsewhere (another
        worker, lightningstor-admin): such writes were refused until
        something re-read the limits."""
        was_cached = self._cached(scope, None) is not None
        app = yield self.applicable(scope)
        try:
            planned = yield self._plan_under(app, scope, delta, object_size, plan)
        except errors.QuotaExceeded:
            if not was_cached:
                raise
            fresh = yield self.applicable(scope, max_age=0)
            planned = yield self._plan_under(fresh, scope, delta, object_size, self.unguarded(scope, delta))
        return planned

    @inlineCallbacks
    def _plan_under(
        self, app: Applicable, scope: BucketScope, delta: Usage, object_size: int | None, plan: QuotaPlan
    ) -> Any:
        plan.compares.append(app.epoch)
        if app.unlimited:
            return plan
        size_limit = app.max_object_size()
        if object_size is not None and size_limit is not None and object_size > size_limit[0]:
            raise errors.QuotaExceeded(
                f"The object size {object_size} exceeds the {size_limit[1]} quota "
                f"max_object_size_bytes of {size_limit[0]}."
            )
        checks = self._checks(scope, app, delta)
        if not checks:
            return plan
        # Guards first, usage second: any guarded commit between the two
        # reads, or after them, moves a guard and fails our transaction.
        for guard in dict.fromkeys(c.guard for c in checks):
            kv = yield self._store.get(guard)
            plan.compares.append(Compare(guard, kv.mod_revision if kv else 0))
            plan.ops.append(Put(guard, b"1"))
        usages: dict[bytes, Usage] = {}
        for prefix in dict.fromkeys(c.usage_prefix for c in checks):
            usages[prefix] = yield self.read_usage(prefix)
        for check in checks:
            used = getattr(usages[check.usage_prefix], check.dimension)
            if used + getattr(delta, check.dimension) > check.limit:
                raise errors.QuotaExceeded(
                    f"Storage quota exceeded: {check.what} is {check.limit} "
                    f"({used} in use, this request adds {getattr(delta, check.dimension)})."
                )
        return plan

    def _checks(self, scope: BucketScope, app: Applicable, delta: Usage) -> list[_Check]:
        """The limits ``delta`` increases, each with its guard and usage scope."""
        bucket_guard = keys.bucket_guard_key(scope.bucket_id)
        checks: list[_Check] = []
        scopes: list[tuple[StorageLimits | None, bytes, bytes, str]] = [
            (app.org, keys.org_guard_key(scope.org_id), keys.usage_scope_prefix(scope.org_id), f"org {scope.org_id}"),
        ]
        if scope.project_id:
            scopes.append((
                app.project,
                keys.project_guard_key(scope.org_id, scope.project_id),
                keys.usage_scope_prefix(scope.org_id, scope.project_id),
                f"project {scope.org_id}/{scope.project_id}",
            ))  # fmt: skip
        for limits, guard, prefix, who in scopes:
            if limits is None:
                continue
            if delta.total_bytes > 0 and limits.max_total_size_bytes is not None:
                checks.append(_Check(guard, prefix, "total_bytes", limits.max_total_size_bytes,
                                     f"the {who} max_total_size_bytes"))  # fmt: skip
            if delta.objects > 0 and limits.max_objects_per_bucket is not None:
                checks.append(_Check(bucket_guard, scope.prefix, "objects", limits.max_objects_per_bucket,
                                     f"the {who} max_objects_per_bucket"))  # fmt: skip
        if app.bucket is not None:
            if delta.total_bytes > 0 and app.bucket.max_size_bytes is not None:
                checks.append(_Check(bucket_guard, scope.prefix, "total_bytes", app.bucket.max_size_bytes,
                                     "the bucket max_size_bytes"))  # fmt: skip
            if delta.objects > 0 and app.bucket.max_objects is not None:
                checks.append(_Check(bucket_guard, scope.prefix, "objects", app.bucket.max_objects,
                                     "the bucket max_objects"))  # fmt: skip
        return checks

    def committed(self, plan: QuotaPlan) -> None:
        """A transaction carrying ``plan`` succeeded: count its delta, and fold
        the bucket in the background once this process wrote many."""
        if not plan.wrote_delta or plan.scope is None:
            return
        prefix = plan.scope.prefix
        count = self._pending.get(prefix, 0) + 1
        if count < self.fold_every:
            if len(self._pending) > 10000:
                self._pending.clear()
            self._pending[prefix] = count
            return
        self._pending.pop(prefix, None)
        if prefix in self._folding:
            return
        self._folding.add(prefix)
        d = self.fold_bucket(prefix)
        d.addErrback(lambda f: log.failure("Folding usage of {prefix} failed", f, prefix=prefix))
        d.addBoth(lambda _: self._folding.discard(prefix))

    # -- early checks (before a body is stored) ------------------------------------

    def check_put(self, bucket: Bucket, key: str, length: int | None) -> Deferred[None]:
        """Deferred[None]; QuotaExceeded if a PutObject body of ``length``
        bytes can never be committed.  Advisory: the commit decides exactly.

        An overwrite frees what it replaces (the current object of an
        unversioned bucket, the null version otherwise), so that is read
        only when a byte limit applies.  A bucket recently found to have no
        limits at all (the common case) is answered at once, without a
        generator: this runs for every PutObject.
        """
        if length is None:
            return succeed(None)
        scope = BucketScope.of(bucket)
        cached = self._cached(scope, self.cache_seconds)
        if cached is not None and cached.unlimited:
            return succeed(None)
        return self._check_put(bucket, scope, key, length)

    @inlineCallbacks
    def _check_put(self, bucket: Bucket, scope: BucketScope, key: str, length: int) -> Any:

        @inlineCallbacks
        def replaced() -> Any:
            if bucket.versioning is Versioning.ENABLED:
                return 0
            kv = yield self._store.get(keys.object_key(bucket.bucket_id, key))
            current = None if kv is None else records.decode_object(kv.value)
            if current is None:
                return 0
            if current.version_id is None:
                return record_usage(current).bytes
            # Versioning suspended over a real version: the write replaces the
            # noncurrent null version, as the commit does (ObjectManager._plan_replace).
            found = yield noncurrent_null(self._store, bucket.bucket_id, current)
            return 0 if found is None else record_usage(found[1]).bytes

        yield self._check_early(scope, length, replaced)
        return None

    @inlineCallbacks
    def check_part(self, scope: BucketScope | None, upload_id: str, part_number: int, length: int | None) -> Any:
        """Deferred[None]; as :meth:`check_put` for an UploadPart body (a part
        replaced by the same number frees its size)."""
        if length is None or scope is None:
            return None

        @inlineCallbacks
        def replaced() -> Any:
            kv = yield self._store.get(keys.part_key(upload_id, part_number))
            return 0 if kv is None else int(json.loads(kv.value).get("size", 0))

        yield self._check_early(scope, length, replaced)
        return None

    @inlineCallbacks
    def _check_early(self, scope: BucketScope, length: int, replaced: Callable[[], Any]) -> Any:
        """Refuse ``length`` bytes that cannot fit.  Limits cached for up to
        ``cache_seconds`` may let a body through (the commit is exact), but
        never refuse one: a refusal is confirmed with freshly read limits, so
        a limit just raised or removed is honoured at once."""
        was_cached = self._cached(scope, self.cache_seconds) is not None
        app = yield self.applicable(scope, max_age=self.cache_seconds)
        refusal = yield self._early_refusal(scope, app, length, replaced)
        if refusal is not None and was_cached:
            app = yield self.applicable(scope, max_age=0)
            refusal = yield self._early_refusal(scope, app, length, replaced)
        if refusal is not None:
            raise refusal
        return None

    @inlineCallbacks
    def _early_refusal(self, scope: BucketScope, app: Applicable, length: int, replaced: Callable[[], Any]) -> Any:
        """Deferred[QuotaExceeded | None] for a body of ``length`` bytes under ``app``."""
        if app.unlimited:
            return None
        size_limit = app.max_object_size()
        if size_limit is not None and length > size_limit[0]:
            return errors.QuotaExceeded(
                f"The object size {length} exceeds the {size_limit[1]} quota "
                f"max_object_size_bytes of {size_limit[0]}."
            )
        byte_checks = [c for c in self._checks(scope, app, Usage(bytes=1)) if c.dimension == "total_bytes"]
        if not byte_checks or length == 0:
            return None
        freed = yield replaced()
        if length <= freed:
            # Shrinks usage (or keeps it): never refused, even in a scope
            # over a limit lowered after the fact (the commit's exact check
            # agrees; docs/quotas.md).
            return None
        for check in byte_checks:
            used = yield self.read_usage(check.usage_prefix)
            if used.total_bytes + length - freed > check.limit:
                return errors.QuotaExceeded(
                    f"Storage quota exceeded: {check.what} is {check.limit} "
                    f"({used.total_bytes} in use, this request adds {length})."
                )
        return None

    # -- buckets -------------------------------------------------------------------

    @inlineCallbacks
    def plan_bucket_create(self, org_id: str, project_id: str | None) -> Any:
        """Deferred[QuotaPlan] for creating one bucket in a scope; QuotaExceeded
        if that takes the org (or the project) over its max_buckets."""
        plan = QuotaPlan()
        scopes: list[tuple[bytes, bytes, str | None, str]] = [
            (keys.org_quota_key(org_id), keys.org_guard_key(org_id), None, f"org {org_id}"),
        ]
        if project_id:
            scopes.append((keys.project_quota_key(org_id, project_id), keys.project_guard_key(org_id, project_id),
                           project_id, f"project {org_id}/{project_id}"))  # fmt: skip
        for record_key, guard, project, who in scopes:
            kv = yield self._store.get(record_key)
            plan.compares.append(Compare(record_key, kv.mod_revision if kv else 0))
            limits = None if kv is None else decode_storage_limits(kv.value)
            if limits is None or limits.max_buckets is None:
                continue
            gkv = yield self._store.get(guard)
            plan.compares.append(Compare(guard, gkv.mod_revision if gkv else 0))
            plan.ops.append(Put(guard, b"1"))
            count = yield self.bucket_count(org_id, project)
            if count + 1 > limits.max_buckets:
                raise errors.QuotaExceeded(
                    f"Storage quota exceeded: the {who} max_buckets is {limits.max_buckets} ({count} exist)."
                )
        return plan

    def forget_bucket(self, scope: BucketScope) -> Any:
        """Deferred: drop a deleted bucket's usage rows, quota and guard."""
        prefix = scope.prefix
        self._cache.pop(scope.bucket_id, None)
        self._pending.pop(prefix, None)
        return self._store.txn(
            [],
            [
                DeleteRange(prefix, prefix_end(prefix)),
                Delete(keys.bucket_quota_key(scope.bucket_id)),
                Delete(keys.bucket_guard_key(scope.bucket_id)),
            ],
        )

    # -- folding -------------------------------------------------------------------

    @inlineCallbacks
    def fold_bucket(self, prefix: bytes) -> Any:
        """Deferred[int]: fold a bucket's pending deltas into its base row.

        Each transaction compares the base's revision and deletes exactly the
        deltas it added, so concurrent folds (other workers, the periodic
        service) and concurrent writers never lose or double-count a delta.
        """
        base_key = keys.usage_base_key(prefix)
        folded = 0
        for _attempt in range(1000):
            rows = yield self._store.scan(prefix, prefix_end(prefix), FOLD_BATCH + 1)
            base = rows[0] if rows and rows[0].key == base_key else None
            deltas = [kv for kv in rows if kv.key != base_key][:FOLD_BATCH]
            if not deltas:
                return folded
            total = (decode_usage(base.value) if base is not None else ZERO) + _sum_rows(deltas)
            ops: list[Operation] = [Put(base_key, encode_usage(total))]
            ops += [Delete(kv.key) for kv in deltas]
            result = yield self._store.txn([Compare(base_key, base.mod_revision if base else 0)], ops)
            if result.succeeded:
                folded += len(deltas)
                if len(deltas) < FOLD_BATCH:
                    return folded  # caught up; deltas written since wait for the next fold
        return folded

    @inlineCallbacks
    def fold_all(self) -> Any:
        """Deferred[int]: fold every bucket with pending deltas, and drop the
        usage rows of buckets that no longer exist (a write that raced its
        bucket's deletion can leave some)."""
        folded = 0
        pos = keys.USAGE
        end = prefix_end(keys.USAGE)
        with_deltas: dict[bytes, None] = {}
        seen: dict[bytes, None] = {}
        while True:
            rows = yield self._store.scan(pos, end, _SCAN_BATCH)
            for kv in rows:
                prefix = _bucket_prefix_of(kv.key)
                if prefix is None:
                    continue
                seen[prefix] = None
                if kv.key != keys.usage_base_key(prefix):
                    with_deltas[prefix] = None
            if len(rows) < _SCAN_BATCH:
                break
            pos = rows[-1].key + b"\x00"
        dead = yield self._dead_buckets(list(seen))
        for prefix in seen:
            if prefix in dead:
                yield self._store.txn([], [DeleteRange(prefix, prefix_end(prefix))])
            elif prefix in with_deltas:
                folded += yield self.fold_bucket(prefix)
        return folded

    @inlineCallbacks
    def _dead_buckets(self, prefixes: list[bytes]) -> Any:
        """Deferred[set[bytes]]: usage prefixes whose bucket record is gone.

        Runs after the usage scan: a bucket id seen there existed before, and
        ids are never reused, so a bucket missing now is gone for good.
        """
        live: dict[str, set[str]] = {}
        dead: set[bytes] = set()
        for prefix in prefixes:
            org = prefix[len(keys.USAGE):].split(b"/", 1)[0].decode()
            if org not in live:
                bprefix = keys.org_buckets_prefix(org)
                rows = yield self._store.scan(bprefix, prefix_end(bprefix))
                live[org] = {records.decode_bucket(kv.value).bucket_id for kv in rows}
            bucket_id = prefix[:-1].rsplit(b"/", 1)[1].decode()
            if bucket_id not in live[org]:
                dead.add(prefix)
        return dead

    # -- helpers -------------------------------------------------------------------

    def _unique(self) -> str:
        """A delta row's key: time-ordered (folds take the oldest first), random.

        Unique, not secret: 64 bits of the process-wide Mersenne Twister
        (seeded from the OS, reseeded in a forked worker) per millisecond.
        ``secrets`` would make a ``getrandom`` system call on every write,
        which releases the GIL and hands the reactor's turn to a pool thread
        (docs/performance.md, "the GIL hand-over after each system call").
        """
        return f"{int(self._clock() * 1000):013x}{random.getrandbits(64):016x}"


class UsageFoldService(PeriodicService):
    """Folds usage deltas every ``interval_seconds`` (primary process only)."""

    description = "Usage folding"

    def __init__(self, quotas: QuotaManager, reactor: Any, *, interval_seconds: float = 60.0) -> None:
        super().__init__(reactor, interval_seconds)
        self.quotas = quotas

    def run_once(self) -> Any:
        return self.quotas.fold_all()
