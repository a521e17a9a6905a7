"""Object Lock in the core: the pure rules (core/objectlock.py), the records,
and enforcement on a real in-process Core (SQLite store, local backend):
retention and legal holds refuse the deletion of a version whatever path
asks for it (DeleteObject, DeleteObjects, the lifecycle service), even when
the lock is set while the deletion runs."""

from __future__ import annotations

import calendar
import time
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import inlineCallbacks

from lightningstor import errors
from lightningstor.core import objectlock, records
from lightningstor.core.lifecycle_service import LifecycleWorker
from lightningstor.core.objectlock import ObjectLocked
from lightningstor.core.objects import PutAttrs
from lightningstor.core.service import Core
from lightningstor.core.types import (
    COMPLIANCE,
    GOVERNANCE,
    Bucket,
    DefaultRetention,
    LifecycleRule,
    ObjectRecord,
    Principal,
    Versioning,
)
from tests.unit.core_helpers import put_object

ALICE = Principal("alice", "org-a")
HOUR_MS = 3_600_000


def _utc_ms(*fields: int) -> int:
    return calendar.timegm((*fields, 0, 0, 0)[:9]) * 1000


def _record(**kw: Any) -> ObjectRecord:
    return ObjectRecord(key="k", size=1, etag="e", created_at=0, **kw)


# -- the rules ------------------------------------------------------------------------


def test_default_retention_validation() -> None:
    """A known upper-case mode and exactly one positive period; else AWS's errors."""
    objectlock.validate_default_retention(DefaultRetention(GOVERNANCE, days=1))
    objectlock.validate_default_retention(DefaultRetention(COMPLIANCE, years=100))
    for bad, code in [
        (DefaultRetention("governance", days=1), "MalformedXML"),
        (DefaultRetention(GOVERNANCE, days=1, years=1), "MalformedXML"),
        (DefaultRetention(GOVERNANCE), "MalformedXML"),
        (DefaultRetention(GOVERNANCE, days=0), "InvalidRetentionPeriod"),
        (DefaultRetention(GOVERNANCE, years=-1), "InvalidRetentionPeriod"),
        (DefaultRetention(GOVERNANCE, years=101), "InvalidRetentionPeriod"),
    ]:
        with pytest.raises(errors.S3Error) as e:
            objectlock.validate_default_retention(bad)
        assert e.value.code == code, bad


def test_default_until_counts_days_and_calendar_years() -> None:
    created = _utc_ms(2024, 2, 29, 12, 0, 0) + 123
    assert objectlock.default_until(DefaultRetention(GOVERNANCE, days=2), created) == created + 2 * 86_400_000
    assert objectlock.default_until(DefaultRetention(GOVERNANCE, years=1), created) == _utc_ms(2025, 2, 28, 12, 0, 0) + 123
    assert objectlock.default_until(DefaultRetention(GOVERNANCE, years=4), created) == _utc_ms(2028, 2, 29, 12, 0, 0) + 123


def test_check_delete() -> None:
    """Legal hold always protects; COMPLIANCE until it passes; GOVERNANCE unless bypassed."""
    now = 10 * HOUR_MS
    objectlock.check_delete(_record(), now, bypass_governance=False)
    objectlock.check_delete(_record(legal_hold=False), now, bypass_governance=False)
    with pytest.raises(ObjectLocked) as e:
        objectlock.check_delete(_record(legal_hold=True), now, bypass_governance=True)
    assert (e.value.code, e.value.status, e.value.message) == (
        "AccessDenied", 403, "Access Denied because object protected by object lock."
    )
    gov = _record(lock_mode=GOVERNANCE, lock_until=now + 1)
    with pytest.raises(ObjectLocked):
        objectlock.check_delete(gov, now, bypass_governance=False)
    objectlock.check_delete(gov, now, bypass_governance=True)
    comp = _record(lock_mode=COMPLIANCE, lock_until=now + 1)
    with pytest.raises(ObjectLocked):
        objectlock.check_delete(comp, now, bypass_governance=True)
    objectlock.check_delete(_record(lock_mode=COMPLIANCE, lock_until=now), now, bypass_governance=False)  # passed
    objectlock.check_delete(_record(delete_marker=True, legal_hold=True), now, bypass_governance=False)


def test_check_retention_change() -> None:
    """Extending is always allowed; COMPLIANCE can never be shortened, changed or
    removed; GOVERNANCE only with the bypass; dates must be in the future."""
    now = 10 * HOUR_MS
    later, much_later = now + HOUR_MS, now + 2 * HOUR_MS
    comp = _record(lock_mode=COMPLIANCE, lock_until=later)
    gov = _record(lock_mode=GOVERNANCE, lock_until=later)
    objectlock.check_retention_change(comp, COMPLIANCE, much_later, now, bypass_governance=False)
    objectlock.check_retention_change(gov, GOVERNANCE, much_later, now, bypass_governance=False)
    for mode, until in [(COMPLIANCE, now + 1), (GOVERNANCE, much_later), (None, None)]:
        with pytest.raises(ObjectLocked):
            objectlock.check_retention_change(comp, mode, until, now, bypass_governance=True)
    for mode, until in [(GOVERNANCE, now + 1), (COMPLIANCE, later), (None, None)]:
        with pytest.raises(ObjectLocked):
            objectlock.check_retention_change(gov, mode, until, now, bypass_governance=False)
        objectlock.check_retention_change(gov, mode, until, now, bypass_governance=True)
    with pytest.raises(errors.InvalidArgument):
        objectlock.check_retention_change(_record(), GOVERNANCE, now, now, bypass_governance=False)
    # A retention that has passed no longer constrains anything.
    objectlock.check_retention_change(_record(lock_mode=COMPLIANCE, lock_until=now), None, None, now, bypass_governance=False)


def test_check_lock_request() -> None:
    plain = Bucket("b", "id", "o", None, 0, 0, "alice")
    locked = Bucket("b", "id", "o", None, 0, 0, "alice", versioning=Versioning.ENABLED, object_lock=True)
    objectlock.check_lock_request(plain, None, None, None, 0)
    with pytest.raises(errors.InvalidRequest, match="Bucket is missing Object Lock Configuration"):
        objectlock.check_lock_request(plain, None, None, True, 0)
    with pytest.raises(errors.InvalidArgument, match="must both be supplied"):
        objectlock.check_lock_request(locked, GOVERNANCE, None, None, 0)
    with pytest.raises(errors.InvalidArgument, match="must both be supplied"):
        objectlock.check_lock_request(locked, None, 5, None, 0)
    with pytest.raises(errors.InvalidArgument, match="in the future"):
        objectlock.check_lock_request(locked, GOVERNANCE, 5, None, 5)
    objectlock.check_lock_request(locked, COMPLIANCE, 6, False, 5)


def test_records_round_trip_lock_fields_only_when_set() -> None:
    bucket = Bucket("b", "id", "o", None, 0, 0, "alice")
    assert b'"lock"' not in records.encode_bucket(bucket) and b"dret" not in records.encode_bucket(bucket)
    bucket.object_lock = True
    bucket.default_retention = DefaultRetention(COMPLIANCE, years=2)
    back = records.decode_bucket(records.encode_bucket(bucket))
    assert (back.object_lock, back.default_retention) == (True, DefaultRetention(COMPLIANCE, None, 2))
    plain = _record()
    assert b'"lm"' not in records.encode_object(plain) and b'"lh"' not in records.encode_object(plain)
    locked = _record(lock_mode=GOVERNANCE, lock_until=123, legal_hold=False)
    back_record = records.decode_object(records.encode_object(locked))
    assert (back_record.lock_mode, back_record.lock_until, back_record.legal_hold) == (GOVERNANCE, 123, False)


# -- on a real core ---------------------------------------------------------------------


@inlineCallbacks
def _put(core: Core, bucket: Bucket, key: str, data: bytes, attrs: PutAttrs | None = None) -> Any:
    """Commit ``data`` as ``key``; the lock settings of ``attrs`` go on the
    record, as ``ObjectManager.new_record`` puts them for the protocol layers."""
    attrs = attrs or PutAttrs()
    original = core.objects.commit

    def commit(bucket: Bucket, record: ObjectRecord, *args: Any, **kw: Any) -> Any:
        record.lock_mode, record.lock_until, record.legal_hold = attrs.lock_mode, attrs.lock_until, attrs.legal_hold
        return original(bucket, record, *args, **kw)

    core.objects.commit = commit  # type: ignore[method-assign]
    try:
        record = yield put_object(core, bucket, key, data, attrs)
    finally:
        del core.objects.commit
    return record


@pytest.fixture
def core(make_core: Any) -> Core:
    return make_core(fsync=False, chunk_size=4096, inline_threshold=512)


@inlineCallbacks
def _locked_bucket(core: Core, name: str, rule: DefaultRetention | None = None) -> Any:
    bucket = yield core.buckets.create(ALICE, name, object_lock=True)
    if rule is not None:
        bucket = yield core.buckets.set_object_lock(bucket, rule)
    return bucket


def _future(core: Core, hours: int = 1) -> int:
    return core.objects.now_ms() + hours * HOUR_MS


@pytest_twisted.inlineCallbacks
def test_lock_bucket_is_versioned_and_stays_so(core: Core) -> None:
    """Created with Object Lock: versioning Enabled, and it cannot be suspended."""
    bucket = yield _locked_bucket(core, "lbk")
    assert (bucket.object_lock, bucket.versioning) == (True, Versioning.ENABLED)
    with pytest.raises(errors.S3Error) as e:
        yield core.set_bucket_versioning(bucket, "Suspended")
    assert (e.value.code, e.value.status) == ("InvalidBucketState", 409)
    again = yield core.set_bucket_versioning(bucket, "Enabled")
    assert again.versioning is Versioning.ENABLED


@pytest_twisted.inlineCallbacks
def test_enabling_on_an_existing_bucket_needs_versioning_enabled(core: Core) -> None:
    bucket = yield core.buckets.create(ALICE, "later")
    rule = DefaultRetention(GOVERNANCE, days=1)
    for status in (None, "Suspended"):
        if status is not None:
            bucket = yield core.set_bucket_versioning(bucket, status)
        with pytest.raises(errors.S3Error) as e:
            yield core.buckets.set_object_lock(bucket, rule)
        assert e.value.code == "InvalidBucketState"
    bucket = yield core.set_bucket_versioning(bucket, "Enabled")
    bucket = yield core.buckets.set_object_lock(bucket, rule)
    stored = yield core.buckets.get(ALICE, "later")
    assert (stored.object_lock, stored.default_retention) == (True, rule)
    with pytest.raises(errors.S3Error) as e:
        yield core.buckets.set_object_lock(bucket, DefaultRetention(GOVERNANCE, days=0))
    assert e.value.code == "InvalidRetentionPeriod"


@pytest_twisted.inlineCallbacks
def test_default_retention_applies_to_new_versions_only_without_their_own(core: Core) -> None:
    bucket = yield _locked_bucket(core, "dflt", DefaultRetention(COMPLIANCE, days=3))
    rec = yield _put(core, bucket, "k", b"x")
    assert (rec.lock_mode, rec.lock_until) == (COMPLIANCE, rec.created_at + 3 * 86_400_000)
    own = yield _put(core, bucket, "k2", b"x", PutAttrs(lock_mode=GOVERNANCE, lock_until=_future(core)))
    assert own.lock_mode == GOVERNANCE
    stored = yield core.objects.head(bucket, "k", rec.version_id)
    assert stored.lock_mode == COMPLIANCE


@pytest_twisted.inlineCallbacks
def test_lock_settings_in_a_bucket_without_lock_are_refused(core: Core) -> None:
    bucket = yield core.buckets.create(ALICE, "plain")
    with pytest.raises(errors.InvalidRequest):
        yield _put(core, bucket, "k", b"x", PutAttrs(legal_hold=True))
    with pytest.raises(errors.InvalidRequest):
        yield core.objects.set_legal_hold(bucket, "k", None, True)
    with pytest.raises(errors.InvalidRequest):
        yield core.objects.set_retention(bucket, "k", None, GOVERNANCE, _future(core))
    assert (yield core.objects.find(bucket, "k")) is None


@pytest_twisted.inlineCallbacks
def test_retained_version_cannot_be_deleted_but_gets_a_marker(core: Core) -> None:
    """GOVERNANCE: refused without the bypass, allowed with it.  A delete
    without a version id only adds a marker; an overwrite adds a version."""
    bucket = yield _locked_bucket(core, "gov")
    rec = yield _put(core, bucket, "k", b"data", PutAttrs(lock_mode=GOVERNANCE, lock_until=_future(core)))
    with pytest.raises(ObjectLocked):
        yield core.objects.delete(bucket, "k", rec.version_id)
    outcome = yield core.objects.delete(bucket, "k")
    assert outcome.delete_marker
    newer = yield _put(core, bucket, "k", b"newer")
    assert newer.version_id != rec.version_id
    with pytest.raises(ObjectLocked):
        yield core.objects.delete(bucket, "k", rec.version_id)
    yield core.objects.delete(bucket, "k", rec.version_id, bypass_governance=True)
    with pytest.raises(errors.NoSuchVersion):
        yield core.objects.head(bucket, "k", rec.version_id)


@pytest_twisted.inlineCallbacks
def test_compliance_and_legal_hold_yield_to_no_bypass(core: Core) -> None:
    bucket = yield _locked_bucket(core, "comp")
    comp = yield _put(core, bucket, "c", b"x", PutAttrs(lock_mode=COMPLIANCE, lock_until=_future(core)))
    held = yield _put(core, bucket, "h", b"x", PutAttrs(legal_hold=True))
    for key, rec in (("c", comp), ("h", held)):
        with pytest.raises(ObjectLocked):
            yield core.objects.delete(bucket, key, rec.version_id, bypass_governance=True)
    with pytest.raises(ObjectLocked):
        yield core.objects.set_retention(bucket, "c", comp.version_id, GOVERNANCE, _future(core, 2), bypass_governance=True)
    with pytest.raises(ObjectLocked):
        yield core.objects.set_retention(bucket, "c", comp.version_id, None, None, bypass_governance=True)
    yield core.objects.set_retention(bucket, "c", comp.version_id, COMPLIANCE, _future(core, 2))
    yield core.objects.set_legal_hold(bucket, "h", held.version_id, False)
    yield core.objects.delete(bucket, "h", held.version_id)


@pytest_twisted.inlineCallbacks
def test_passed_retention_no_longer_protects(core: Core) -> None:
    bucket = yield _locked_bucket(core, "passed")
    rec = yield _put(core, bucket, "k", b"x", PutAttrs(lock_mode=COMPLIANCE, lock_until=_future(core)))
    real_clock = core.objects._clock
    core.objects._clock = lambda: real_clock() + 2 * 3600
    try:
        yield core.objects.delete(bucket, "k", rec.version_id)
    finally:
        core.objects._clock = real_clock


@pytest_twisted.inlineCallbacks
def test_delete_objects_fails_locked_entries_alone(core: Core) -> None:
    bucket = yield _locked_bucket(core, "bulk")
    locked = yield _put(core, bucket, "a", b"x", PutAttrs(lock_mode=GOVERNANCE, lock_until=_future(core)))
    free = yield _put(core, bucket, "b", b"x")
    result = yield core.delete_objects(bucket, [("a", locked.version_id), ("b", free.version_id)], owner="alice")
    assert [(f.key, f.code, f.message) for f in result.failed] == [
        ("a", "AccessDenied", "Access Denied because object protected by object lock.")
    ]
    assert [d.key for d in result.deleted] == ["b"]
    result = yield core.delete_objects(bucket, [("a", locked.version_id)], owner="alice", bypass_governance=True)
    assert [d.key for d in result.deleted] == ["a"] and not result.failed


@pytest_twisted.inlineCallbacks
def test_multipart_upload_carries_its_lock_to_the_object(core: Core) -> None:
    from tests.unit.core_helpers import put_part

    bucket = yield _locked_bucket(core, "mpu", DefaultRetention(GOVERNANCE, days=1))
    upload = yield core.multipart.create(bucket, "k", PutAttrs(legal_hold=True), initiator=ALICE)
    part = yield put_part(core, upload, 1, b"x" * 10)
    from lightningstor.core.multipart import PartRef

    done = yield core.multipart.complete(bucket, "k", upload.upload_id, [PartRef(1, part.etag)])
    rec = done.record
    assert rec.legal_hold is True and rec.lock_mode == GOVERNANCE  # default retention too
    with pytest.raises(ObjectLocked):
        yield core.objects.delete(bucket, "k", rec.version_id, bypass_governance=True)


class _RacingTxnStore:
    """A store whose next transaction is preceded by ``race()``: a change
    landing between a deletion's check and its commit."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.race: Any = None

    def txn(self, compares: Any, ops: Any) -> Any:
        if self.race is None:
            return self.inner.txn(compares, ops)
        race, self.race = self.race, None
        return race().addCallback(lambda _: self.inner.txn(compares, ops))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest_twisted.inlineCallbacks
def test_a_hold_placed_while_a_delete_runs_wins(core: Core) -> None:
    """The deletion compares the version's revision: a legal hold that lands
    after its check fails the transaction, and the retry sees the hold."""
    bucket = yield _locked_bucket(core, "race")
    rec = yield _put(core, bucket, "k", b"x")
    racing = _RacingTxnStore(core.store)
    core.objects._store = racing
    try:
        racing.race = lambda: core.objects.set_legal_hold(bucket, "k", rec.version_id, True)
        with pytest.raises(ObjectLocked):
            yield core.objects.delete(bucket, "k", rec.version_id)
    finally:
        core.objects._store = core.store
    held = yield core.objects.head(bucket, "k", rec.version_id)
    assert held.legal_hold is True


class _Clock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest_twisted.inlineCallbacks
def test_lifecycle_leaves_locked_noncurrent_versions(core: Core) -> None:
    """Noncurrent expiration deletes the unlocked version and counts the
    locked one as locked, leaving it."""
    bucket = yield _locked_bucket(core, "lcy")
    bucket = yield core.buckets.set_lifecycle(bucket, [LifecycleRule("nc", True, noncurrent_days=1)])
    old_locked = yield _put(core, bucket, "a", b"1", PutAttrs(lock_mode=GOVERNANCE, lock_until=_future(core, 1000)))
    yield _put(core, bucket, "a", b"2")
    old_free = yield _put(core, bucket, "b", b"1")
    yield _put(core, bucket, "b", b"2")
    clock = _Clock()
    clock.offset = 100.0
    worker = LifecycleWorker(core.store, core.objects, core.multipart, clock, day_seconds=10.0)
    counts = yield worker.run()
    assert (counts.noncurrent, counts.locked, counts.failed) == (1, 1, 0)
    yield core.objects.head(bucket, "a", old_locked.version_id)
    with pytest.raises(errors.NoSuchVersion):
        yield core.objects.head(bucket, "b", old_free.version_id)
