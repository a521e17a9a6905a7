"""Applying buckets' lifecycle rules in the background (S3 lifecycle expiration).

Every ``[lifecycle] interval_seconds`` the primary worker walks the bucket
records; for each bucket with an enabled rule it reads, a page at a time,

1. the current records under the rules' prefixes: a current version whose
   ``Expiration`` is due is deleted through :meth:`ObjectManager.delete`,
   which follows the bucket's versioning exactly as a DeleteObject does
   (unversioned: removed; Enabled: a delete marker; Suspended: the null
   delete marker).  A current delete marker that is its key's only version
   (an "expired object delete marker") is removed by
   ``ExpiredObjectDeleteMarker``, or by a Days / Date expiration once due;
2. the noncurrent versions (``NoncurrentVersionExpiration``): newest first
   per key, each noncurrent since its successor's creation, the
   ``NewerNoncurrentVersions`` newest kept; due ones are deleted for good
   by version id;
3. the multipart uploads (``AbortIncompleteMultipartUpload``), aborted
   through :meth:`MultipartManager.abort`.

**Never deleting what a client wrote after the scan.**  Every deletion is
conditional on the mod revision of the record the scan read
(``ObjectManager.delete(..., if_revision=...)``): an overwrite, a new
version, a tag change or a delete that lands in between makes the deletion
a no-op (counted as ``skipped``); the next run looks again.  Upload ids are
never reused, so an abort can only hit the upload that was read.

**Bounded work.**  Store reads go to the store's thread pool and a pause
between pages lets the reactor serve requests; one run makes at most
``max_actions`` deletions and aborts and then stops; the next run starts
with the bucket after the one where it stopped (and wraps around to that
one), so a backlog in one bucket does not starve the others.  With real days a
bucket walked completely is skipped until the next midnight UTC
(:meth:`LifecycleWorker._day_stamp`): hourly runs then cost one read of the
bucket records, not a walk of every object.  A failure on one object is logged and counted, and the
walk goes on; a failure of the whole run is logged by the periodic service.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks, maybeDeferred, succeed
from twisted.internet.task import deferLater
from twisted.logger import Logger

from lightningstor import errors
from lightningstor.core import keys, records
from lightningstor.core.buckets import decoded_bucket
from lightningstor.core.lifecycle import (
    DAY_SECONDS,
    MAX_NEWER_NONCURRENT_VERSIONS,
    abort_rule,
    expiring_rule,
    has_expiration,
    marker_expiring_rule,
    noncurrent_expiring_rule,
    scan_prefixes,
)
from lightningstor.core.multipart import MultipartManager, decode_upload
from lightningstor.core.objectlock import ObjectLocked
from lightningstor.core.objects import ConflictError, ObjectManager
from lightningstor.core.scans import scan_all, scan_prefix
from lightningstor.core.types import Bucket, LifecycleRule
from lightningstor.core.versions import wire_version_id
from lightningstor.interfaces.metadata import Compare, Delete, IMetadataStore, KeyValue, Put, prefix_end
from lightningstor.periodic import PeriodicService

log = Logger()

PAGE = 500  # rows per metadata read
CLAIM_SECONDS = 3600.0
"""How long a walk another server started and has not finished keeps the
others off that bucket (it may have died; then the next run after this
walks it)."""


@dataclass
class LifecycleCounts:
    """What one run did (logged, and counted by the metrics)."""

    buckets: int = 0  # buckets with enabled rules walked
    expired: int = 0  # current versions expired (removed, or hidden by a delete marker)
    noncurrent: int = 0  # noncurrent versions deleted for good
    markers: int = 0  # expired object delete markers removed
    aborted: int = 0  # incomplete multipart uploads aborted
    skipped: int = 0  # changed since the scan read them: left alone
    locked: int = 0  # under Object Lock retention or legal hold: left alone
    failed: int = 0  # actions that failed (logged)
    truncated: bool = False  # stopped at max_actions; the next run goes on

    @property
    def actions(self) -> int:
        return self.expired + self.noncurrent + self.markers + self.aborted


class LifecycleWorker:
    """One walk over every bucket with lifecycle rules (:meth:`run`).

    ``clock`` returns Unix seconds (injected: tests move time); ``pause``
    returns a Deferred that fires when the walk may go on after a page (the
    server passes :func:`reactor_pause`, a turn of the reactor, so a walk
    through pages a store answers at once still lets requests in; tests pass
    none); ``day_seconds`` is the length of a rule's day.
    """

    def __init__(
        self,
        store: IMetadataStore,
        objects: ObjectManager,
        multipart: MultipartManager,
        clock: Callable[[], float],
        *,
        day_seconds: float = DAY_SECONDS,
        max_actions: int = 10000,
        page: int = PAGE,
        pause: Callable[[], Deferred[Any]] | None = None,
    ) -> None:
        self._store = store
        self._objects = objects
        self._multipart = multipart
        self._clock = clock
        self.day_seconds = day_seconds
        self.max_actions = max_actions
        self._page = page
        self._pause = pause or (lambda: succeed(None))
        # Where the next run starts: after the bucket a truncated run stopped in.
        self._resume: bytes | None = None

    @inlineCallbacks
    def run(self) -> Any:
        """Deferred[LifecycleCounts] of one walk over every bucket."""
        counts = LifecycleCounts()
        now_ms = int(self._clock() * 1000)
        end = prefix_end(keys.BUCKETS)
        start = self._resume if self._resume is not None else keys.BUCKETS
        self._resume = None
        seen: set[bytes] = set()  # the walk records of the buckets with rules

        @inlineCallbacks
        def visit(kv: KeyValue) -> Any:
            yield self._visit_bucket(kv, now_ms, counts, seen)
            if counts.truncated:
                # The next run starts with the bucket after this one and
                # comes back to this one last: a bucket with more due work
                # than one run may do cannot starve the rest.
                self._resume = kv.key + b"\0"
            return counts.truncated

        for lo, hi in ((start, end), (keys.BUCKETS, start)):
            if lo < hi:
                stopped = yield scan_all(self._store, lo, hi, self._page, visit, between_pages=self._pause)
                if stopped:
                    return counts
        # Every bucket was visited: drop the walk records of buckets that are
        # gone or have no rules any more.
        yield scan_prefix(self._store, keys.LIFECYCLE_WALKS, self._page, lambda kv: self._forget(kv, seen))
        return counts

    def _forget(self, kv: KeyValue, seen: set[bytes]) -> Any:
        if kv.key in seen:
            return False
        return self._store.txn([Compare(kv.key, kv.mod_revision)], [Delete(kv.key)]).addCallback(lambda _: False)

    @inlineCallbacks
    def _visit_bucket(self, kv: KeyValue, now_ms: int, counts: LifecycleCounts, seen: set[bytes]) -> Any:
        try:
            bucket = decoded_bucket(kv)
        except Exception:
            return  # not a bucket record: nothing of ours
        assert bucket is not None
        rules = [r for r in bucket.lifecycle if r.enabled]
        if not rules:
            return
        walk_key = keys.lifecycle_walk_key(bucket.bucket_id)
        seen.add(walk_key)
        claim = None
        stamp = self._day_stamp(kv, now_ms)
        if stamp is not None:
            claim = yield self._claim(walk_key, stamp, now_ms)
            if claim is None:
                return  # walked today, or being walked, by this or another server
        counts.buckets += 1
        before = (counts.skipped, counts.failed)
        try:
            yield self._bucket(bucket, rules, now_ms, counts)
        except errors.NoSuchBucket:
            pass  # deleted while walked
        except Exception:
            counts.failed += 1
            log.failure("Lifecycle rules of bucket {bucket} failed", bucket=bucket.name)
        if claim is not None and stamp is not None:
            complete = not counts.truncated and (counts.skipped, counts.failed) == before
            # Done for the day; or not, and the next run (of any server) walks it again.
            ops = [Put(walk_key, _walk_record(stamp, now_ms, done=True))] if complete else [Delete(walk_key)]
            yield self._store.txn([Compare(walk_key, claim)], ops)

    @inlineCallbacks
    def _claim(self, walk_key: bytes, stamp: tuple[int, int], now_ms: int) -> Any:
        """Deferred[int | None]: the revision of this run's claim on today's
        walk of a bucket; None if the bucket was walked completely today
        (with its record as it is now), or another server's walk of it is
        under way (started less than :data:`CLAIM_SECONDS` ago), or another
        server claimed it first."""
        kv = yield self._store.get(walk_key)
        if kv is not None:
            try:
                day, revision, at, done = _read_walk_record(kv.value)
            except (ValueError, KeyError, TypeError):
                day = None  # not ours: claimed over
            if day is not None and (day, revision) == stamp:
                if done or now_ms - at < CLAIM_SECONDS * 1000:
                    return None
        result = yield self._store.txn(
            [Compare(walk_key, 0 if kv is None else kv.mod_revision)],
            [Put(walk_key, _walk_record(stamp, now_ms, done=False))],
        )
        return result.revision if result.succeeded else None

    def _day_stamp(self, kv: KeyValue, now_ms: int) -> tuple[int, int] | None:
        """With real days, what makes a bucket's walk last the day: the UTC
        day and the bucket record's revision; None with another day length.

        Every due time of a rule with real days falls on a midnight UTC
        (Days are rounded up to one, a Date is one), so once a bucket was
        walked completely after a midnight, nothing in it can fall due
        before the next one: the hourly runs of that day skip it, as AWS
        applies lifecycle rules once a day.  A changed bucket record (its
        rules or any setting), a run cut short by ``max_actions``, a lost
        race or a failure make the next run walk it again.  Only a lone
        delete marker under ``ExpiredObjectDeleteMarker``, which is due at
        once, may wait until the next day's walk.

        The walk of the day is recorded in the store
        (``keys.lifecycle_walk_key``), claimed before it starts with a
        compare on the record: every API server runs this service, and so
        only one of them walks a bucket each day, and a restart does not
        walk everything again.
        """
        if self.day_seconds != DAY_SECONDS:
            return None
        return now_ms // (DAY_SECONDS * 1000), kv.mod_revision

    @inlineCallbacks
    def _bucket(
        self, bucket: Bucket, rules: list[LifecycleRule], now_ms: int, counts: LifecycleCounts
    ) -> Any:
        for prefix in scan_prefixes(rules, has_expiration):
            yield self._current(bucket, rules, prefix, now_ms, counts)
        for prefix in scan_prefixes(rules, lambda r: r.noncurrent_days is not None):
            yield self._noncurrent(bucket, rules, prefix, now_ms, counts)
        for prefix in scan_prefixes(rules, lambda r: r.abort_days is not None):
            yield self._uploads(bucket, rules, prefix, now_ms, counts)

    def _walk(self, start: bytes, visit: Callable[[KeyValue], Any], counts: LifecycleCounts) -> Any:
        """Call ``visit`` (which may return a Deferred) for every row under
        ``start`` (a key prefix), a page at a time, until the run is
        truncated."""
        if counts.truncated:
            return succeed(False)
        return scan_prefix(
            self._store,
            start,
            self._page,
            lambda kv: maybeDeferred(visit, kv).addCallback(lambda _: counts.truncated),
            between_pages=self._pause,
        )

    # -- current versions --------------------------------------------------------

    def _current(
        self, bucket: Bucket, rules: list[LifecycleRule], prefix: str, now_ms: int, counts: LifecycleCounts
    ) -> Any:
        def visit(kv: KeyValue) -> Any:
            record = records.decode_object(kv.value)
            if record.delete_marker:
                return self._marker(bucket, rules, kv, record, now_ms, counts)
            rule = expiring_rule(
                rules, record.key, record.size, record.tags, record.created_at, now_ms, self.day_seconds
            )
            if rule is None:
                return None
            return self._act(
                counts,
                "expired",
                lambda: self._objects.delete(
                    bucket, record.key, owner=bucket.created_by, if_revision=kv.mod_revision
                ),
                (bucket, record.key, record.version_id, rule),
            )

        return self._walk(keys.object_key(bucket.bucket_id, prefix), visit, counts)

    @inlineCallbacks
    def _marker(
        self,
        bucket: Bucket,
        rules: list[LifecycleRule],
        kv: KeyValue,
        record: Any,
        now_ms: int,
        counts: LifecycleCounts,
    ) -> Any:
        rule = marker_expiring_rule(rules, record.key, record.created_at, now_ms, self.day_seconds)
        if rule is None:
            return
        # Only a marker with no noncurrent version left is "expired".  A
        # version appears only by demoting the current record, which moves
        # its revision, so the conditional delete below covers the race.
        vprefix = keys.key_versions_prefix(bucket.bucket_id, record.key)
        older = yield self._store.scan(vprefix, prefix_end(vprefix), 1)
        if older:
            return
        yield self._act(
            counts,
            "markers",
            lambda: self._objects.delete(
                bucket, record.key, wire_version_id(record.version_id), if_revision=kv.mod_revision
            ),
            (bucket, record.key, record.version_id, rule),
        )

    # -- noncurrent versions ------------------------------------------------------

    def _noncurrent(
        self, bucket: Bucket, rules: list[LifecycleRule], prefix: str, now_ms: int, counts: LifecycleCounts
    ) -> Any:
        # Versions are stored per key, newest first: each one became
        # noncurrent when the next newer one (the current record, for the
        # newest) was created.  State carried across rows and pages:
        # "current" guards the current record (a promotion or a new version
        # moves it), "rows" the nearest newer noncurrent rows still there.
        state: dict[str, Any] = {
            "key": None, "successor": None, "newer": 0, "current": None,
            "rows": deque(maxlen=MAX_NEWER_NONCURRENT_VERSIONS),
        }  # fmt: skip

        @inlineCallbacks
        def visit(kv: KeyValue) -> Any:
            version = records.decode_object(kv.value)
            rows: deque[Compare] = state["rows"]
            if version.key != state["key"]:
                state["key"], state["newer"] = version.key, 0
                okey = keys.object_key(bucket.bucket_id, version.key)
                current = yield self._store.get(okey)
                state["successor"] = (
                    None if current is None else records.decode_object(current.value).created_at
                )
                state["current"] = Compare(okey, 0 if current is None else current.mod_revision)
                rows.clear()
            since, newer, newer_rows = state["successor"], state["newer"], list(rows)
            state["successor"], state["newer"] = version.created_at, newer + 1
            rows.append(Compare(kv.key, kv.mod_revision))
            if since is None:
                return  # no current record: the key is being changed; the next run sees it settled
            size, tags = (0, {}) if version.delete_marker else (version.size, version.tags)
            rule = noncurrent_expiring_rule(
                rules, version.key, size, tags, since, newer, now_ms, self.day_seconds
            )
            if rule is None:
                return
            deleted = yield self._act(
                counts,
                "noncurrent",
                lambda: self._objects.delete(
                    bucket, version.key, wire_version_id(version.version_id), if_revision=kv.mod_revision,
                    also_unchanged=_decided_from(state["current"], newer_rows, rule),
                ),
                (bucket, version.key, version.version_id, rule),
            )  # fmt: skip
            if deleted:
                rows.pop()  # gone: older versions' guards hold the rows still there

        start = keys.versions_prefix(bucket.bucket_id) + prefix.encode("utf-8")
        return self._walk(start, visit, counts)

    # -- multipart uploads ------------------------------------------------------------

    def _uploads(
        self, bucket: Bucket, rules: list[LifecycleRule], prefix: str, now_ms: int, counts: LifecycleCounts
    ) -> Any:
        def visit(kv: KeyValue) -> Any:
            upload = decode_upload(kv.value)
            rule = abort_rule(rules, upload.key, upload.initiated_at, now_ms, self.day_seconds)
            if rule is None:
                return None
            return self._act(
                counts,
                "aborted",
                # The row is at hand: abort it (abort() would look it up again).
                lambda: self._multipart.abort_row(kv.key, upload.upload_id).addCallback(_gone_is_lost),
                (bucket, upload.key, upload.upload_id, rule),
            )

        start = keys.uploads_prefix(bucket.bucket_id) + prefix.encode("utf-8")
        return self._walk(start, visit, counts)

    # -- acting ------------------------------------------------------------------------

    @inlineCallbacks
    def _act(
        self,
        counts: LifecycleCounts,
        kind: str,
        action: Callable[[], Any],
        what: tuple[Bucket, str, str | None, LifecycleRule],
    ) -> Any:
        """Run one deletion or abort and count it; Deferred[whether it was
        done].  Lost races are skipped; any other failure of one object is
        logged and the walk goes on, except NoSuchBucket, which ends the
        bucket's walk.

        Each action done is logged with its bucket, key, version (or upload
        id) and rule: an object gone without a request in the access log
        must be traceable to the rule that removed it."""
        try:
            yield action()
        except (ConflictError, errors.NoSuchUpload):
            counts.skipped += 1
            return False
        except ObjectLocked:
            # A version under retention or legal hold stays: the core refused
            # (AWS's lifecycle likewise leaves locked versions alone).
            counts.locked += 1
            return False
        except errors.NoSuchBucket:
            raise
        except Exception:
            counts.failed += 1
            log.failure("A lifecycle action ({kind}) failed", kind=kind)
            return False
        setattr(counts, kind, getattr(counts, kind) + 1)
        bucket, key, version, rule = what
        log.info(
            "Lifecycle {action}: bucket {bucket} key {key!r} {which} by rule {rule}",
            action=_ACTION_NAMES[kind], bucket=bucket.name, bucket_id=bucket.bucket_id, key=key,
            which=f"upload {version}" if kind == "aborted" else f"version {version or 'null'}",
            rule=rule.rule_id,
        )  # fmt: skip
        if counts.actions >= self.max_actions:
            counts.truncated = True
        return True


# What each kind of action did, as its log line says it.
_ACTION_NAMES = {
    "expired": "expired the current version",
    "markers": "removed the expired delete marker",
    "noncurrent": "deleted the noncurrent version",
    "aborted": "aborted the multipart upload",
}


def _gone_is_lost(done: bool) -> None:
    """An upload already gone (completed or aborted since the scan) is a lost
    race, counted as skipped like any other."""
    if not done:
        raise errors.NoSuchUpload()


def _walk_record(stamp: tuple[int, int], now_ms: int, *, done: bool) -> bytes:
    day, revision = stamp
    return json.dumps({"day": day, "rev": revision, "at": now_ms, "done": done}).encode()


def _read_walk_record(value: bytes) -> tuple[int, int, int, bool]:
    d = json.loads(value)
    return int(d["day"]), int(d["rev"]), int(d["at"]), bool(d["done"])


class LifecycleService(PeriodicService):
    """Runs :meth:`LifecycleWorker.run` every ``interval_seconds`` (first run
    one interval after start), in the primary worker only; ``on_run`` gets
    each run's :class:`LifecycleCounts` (the metrics)."""

    description = "lifecycle run"

    def __init__(
        self,
        worker: LifecycleWorker,
        reactor: Any,
        *,
        interval_seconds: float = 3600.0,
        on_run: Callable[[LifecycleCounts], None] | None = None,
    ) -> None:
        super().__init__(reactor, interval_seconds)
        self.worker = worker
        self.on_run = on_run

    def run_once(self) -> Any:
        """Deferred[LifecycleCounts]: one walk, logged and handed to
        ``on_run`` (a failed walk is logged by PeriodicService, which keeps
        the loop going)."""

        def report(counts: LifecycleCounts) -> LifecycleCounts:
            if counts.actions or counts.failed or counts.truncated:
                log.info(
                    "Lifecycle: {expired} expired, {noncurrent} noncurrent versions and {markers} delete "
                    "markers deleted, {aborted} uploads aborted, {skipped} skipped, {locked} locked, {failed} failed "
                    "in {buckets} buckets{more}",
                    expired=counts.expired,
                    noncurrent=counts.noncurrent,
                    markers=counts.markers,
                    aborted=counts.aborted,
                    skipped=counts.skipped,
                    locked=counts.locked,
                    failed=counts.failed,
                    buckets=counts.buckets,
                    more=" (stopped at the limit; the next run goes on)" if counts.truncated else "",
                )
            if self.on_run is not None:
                self.on_run(counts)
            return counts

        d: Deferred[Any] = self.worker.run()
        return d.addCallback(report)


def reactor_pause(reactor: Any) -> Callable[[], Deferred[Any]]:
    """A pause of one reactor turn, between pages of a walk."""
    return lambda: deferLater(reactor, 0, lambda: None)


def _decided_from(current: Compare, newer_rows: list[Compare], rule: LifecycleRule) -> list[Compare]:
    """The records a noncurrent version's expiration was decided from, for
    the deleting transaction to guard (as the version's own row is): the
    current record, whose revision moves when a version is added or the
    current one deleted (a newer version promoted), and the nearest newer
    noncurrent rows (``newer_rows``, newest first): the one that made the
    version noncurrent (its age), and as many as the rule keeps
    (``NewerNoncurrentVersions``), so that a version the rule must keep
    once a newer one was deleted meanwhile is never deleted.  A client
    that changed any of them makes the deletion a lost race, skipped, and
    the next run decides again.  At most 1 + 100 guards (AWS's maximum
    ``NewerNoncurrentVersions``; the store's transaction limits allow it)."""
    keep = max(1, rule.newer_noncurrent_versions or 0)
    return [current, *newer_rows[-keep:]]
