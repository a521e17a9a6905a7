"""Quotas and usage (lightningstor/core/quotas.py) on the real core: SQLite store,
local backend, in process.

Usage is checked against what the store really holds (a listing of every
version), not only against numbers the quota code computed itself, so a
delta that is lost, doubled or wrongly signed fails.
"""

from __future__ import annotations

import argparse
import io
import json
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import DeferredList, inlineCallbacks
from twisted.internet.task import Clock, deferLater

from lightningstor import errors
from lightningstor.admin import build_parser
from lightningstor.admin_quotas import execute, parse_limit
from lightningstor.core import keys
from lightningstor.core.multipart import PartRef
from lightningstor.core.objects import PutAttrs
from lightningstor.core.quotas import BucketScope, QuotaManager, Usage, UsageFoldService
from lightningstor.core.service import Core
from lightningstor.core.types import Bucket, Principal
from lightningstor.interfaces.metadata import prefix_end
from tests.unit.core_helpers import put_object, put_part

ALICE = Principal("alice", "org-a")
BOB = Principal("bob", "org-a", project_id="p1")
CAROL = Principal("carol", "org-b")
MIN_PART = 1000


@pytest.fixture
def core(make_core: Any) -> Core:
    c = make_core(fsync=False, chunk_size=4096, piece_size=1024, inline_threshold=512)
    c.multipart.min_part_size = MIN_PART
    return c


def _put(core: Core, bucket: Bucket, key: str, size: int) -> Any:
    return put_object(core, bucket, key, b"x" * size)


def _part(core: Core, upload: Any, number: int, size: int) -> Any:
    return put_part(core, upload, number, b"p" * size)


@inlineCallbacks
def _usage(core: Core, bucket: Bucket) -> Any:
    usage = yield core.quotas.usage(bucket.org_id, bucket.project_id, bucket.bucket_id)
    return usage


@inlineCallbacks
def _stored(core: Core, bucket: Bucket) -> Any:
    """Usage recomputed from every stored version (the ground truth)."""
    total, count = 0, 0
    marker: dict[str, Any] = {}
    while True:
        page = yield core.list_object_versions(bucket, max_keys=1000, **marker)
        for e in page.entries:
            if not e.delete_marker:
                total += e.size
                count += 1
        if not page.is_truncated:
            return Usage(total, count)
        marker = {"key_marker": page.next_key_marker, "version_id_marker": page.next_version_id_marker}


@inlineCallbacks
def _rows(core: Core, bucket: Bucket) -> Any:
    prefix = BucketScope.of(bucket).prefix
    rows = yield core.store.scan(prefix, prefix_end(prefix))
    return rows


# -- usage bookkeeping -----------------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_usage_follows_put_overwrite_and_delete(core: Core) -> Any:
    """Unversioned: a put adds, an overwrite replaces, a delete subtracts; a
    delete of nothing changes nothing."""
    bucket = yield core.buckets.create(ALICE, "plain")
    yield _put(core, bucket, "a", 100)
    assert (yield _usage(core, bucket)) == Usage(100, 1)
    yield _put(core, bucket, "a", 40)
    assert (yield _usage(core, bucket)) == Usage(40, 1)
    yield _put(core, bucket, "b", 5000)  # chunked, not inline
    assert (yield _usage(core, bucket)) == Usage(5040, 2)
    yield core.objects.delete(bucket, "a")
    yield core.objects.delete(bucket, "missing")
    assert (yield _usage(core, bucket)) == Usage(5000, 1) == (yield _stored(core, bucket))
    yield core.objects.set_tags(bucket, "b", None, {"k": "v"})  # metadata only: no change
    assert (yield _usage(core, bucket)) == Usage(5000, 1)


@pytest_twisted.inlineCallbacks
def test_usage_counts_noncurrent_versions_until_deleted(core: Core) -> Any:
    """Enabled: overwrites keep the old version (still counted); delete markers
    count nothing; deleting a version by id releases exactly it."""
    bucket = yield core.buckets.create(ALICE, "versioned")
    bucket = yield core.set_bucket_versioning(bucket, "Enabled")
    v1 = yield _put(core, bucket, "k", 100)
    v2 = yield _put(core, bucket, "k", 50)
    assert (yield _usage(core, bucket)) == Usage(150, 2)
    marker = yield core.objects.delete(bucket, "k")
    assert marker.delete_marker
    assert (yield _usage(core, bucket)) == Usage(150, 2)
    yield core.objects.delete(bucket, "k", v1.version_id)
    assert (yield _usage(core, bucket)) == Usage(50, 1)
    yield core.objects.delete(bucket, "k", marker.version_id)  # v2 current again
    assert (yield _usage(core, bucket)) == Usage(50, 1) == (yield _stored(core, bucket))
    yield core.objects.delete(bucket, "k", v2.version_id)
    assert (yield _usage(core, bucket)) == Usage(0, 0)


@pytest_twisted.inlineCallbacks
def test_usage_with_suspended_versioning_replaces_the_null_version(core: Core) -> Any:
    """Suspended: a new null version replaces the old null one (released),
    versions with ids stay counted."""
    bucket = yield core.buckets.create(ALICE, "suspended")
    bucket = yield core.set_bucket_versioning(bucket, "Enabled")
    yield _put(core, bucket, "k", 100)  # a real version id
    bucket = yield core.set_bucket_versioning(bucket, "Suspended")
    yield _put(core, bucket, "k", 30)  # null, 100 demoted
    yield _put(core, bucket, "k", 20)  # null replaces null
    assert (yield _usage(core, bucket)) == Usage(120, 2) == (yield _stored(core, bucket))
    bucket = yield core.set_bucket_versioning(bucket, "Enabled")
    yield _put(core, bucket, "k", 40)  # the null version (20) becomes noncurrent
    bucket = yield core.set_bucket_versioning(bucket, "Suspended")
    yield _put(core, bucket, "k", 5)  # 40 demoted; the noncurrent null (20) is replaced
    assert (yield _usage(core, bucket)) == Usage(145, 3) == (yield _stored(core, bucket))
    yield core.objects.delete(bucket, "k")  # a null delete marker replaces the null version
    assert (yield _usage(core, bucket)) == Usage(140, 2) == (yield _stored(core, bucket))


@pytest_twisted.inlineCallbacks
def test_multipart_parts_count_until_complete_releases_them(core: Core) -> Any:
    """In-progress parts count as upload bytes; a replaced part counts once;
    completion turns the listed parts into object bytes and releases the
    unlisted ones."""
    bucket = yield core.buckets.create(ALICE, "mpu")
    upload = yield core.multipart.create(bucket, "big", PutAttrs(), initiator=ALICE)
    p1 = yield _part(core, upload, 1, 1000)
    yield _part(core, upload, 2, 1500)
    p3 = yield _part(core, upload, 3, 300)
    assert (yield _usage(core, bucket)) == Usage(0, 0, 2800)
    yield _part(core, upload, 2, 1200)  # replaces part 2
    assert (yield _usage(core, bucket)) == Usage(0, 0, 2500)
    done = yield core.multipart.complete(
        bucket, "big", upload.upload_id, [PartRef(1, p1.etag), PartRef(3, p3.etag)]
    )
    assert done.record.size == 1300
    assert (yield _usage(core, bucket)) == Usage(1300, 1, 0) == (yield _stored(core, bucket))


@pytest_twisted.inlineCallbacks
def test_abort_and_expiry_release_parts(core: Core) -> Any:
    """Abort (and upload expiry, which aborts) releases every part's bytes."""
    bucket = yield core.buckets.create(ALICE, "aborts")
    first = yield core.multipart.create(bucket, "a", PutAttrs(), initiator=ALICE)
    second = yield core.multipart.create(bucket, "b", PutAttrs(), initiator=ALICE)
    yield _part(core, first, 1, 700)
    yield _part(core, second, 1, 900)
    assert (yield _usage(core, bucket)) == Usage(0, 0, 1600)
    yield core.multipart.abort(bucket, "a", first.upload_id)
    assert (yield _usage(core, bucket)) == Usage(0, 0, 900)
    expired = yield core.multipart.expire(-1)
    assert expired == 1
    assert (yield _usage(core, bucket)) == Usage(0, 0, 0)


@pytest_twisted.inlineCallbacks
def test_deleting_a_bucket_drops_its_usage_rows_and_quota(core: Core) -> Any:
    """A deleted bucket leaves no usage rows or bucket quota behind (its
    in-progress uploads are aborted first), so the org's usage drops."""
    bucket = yield core.buckets.create(ALICE, "doomed")
    yield core.quotas.set_bucket_quota(bucket, {"max_objects": 5})
    upload = yield core.multipart.create(bucket, "a", PutAttrs(), initiator=ALICE)
    yield _part(core, upload, 1, 700)
    yield _put(core, bucket, "k", 10)
    yield core.objects.delete(bucket, "k")
    assert (yield core.quotas.usage("org-a")) == Usage(0, 0, 700)
    yield core.buckets.delete(ALICE, "doomed")
    assert (yield _rows(core, bucket)) == []
    assert (yield core.quotas.usage("org-a")) == Usage()
    assert (yield core.quotas.get_bucket_quota(bucket.bucket_id)) is None


@pytest_twisted.inlineCallbacks
def test_scope_usage_sums_buckets_and_keeps_orgs_apart(core: Core) -> Any:
    """Org usage covers its project buckets; a project's only its own; another
    org with a same-named bucket is separate."""
    org_bucket = yield core.buckets.create(ALICE, "shared")
    proj_bucket = yield core.buckets.create(BOB, "shared")
    other = yield core.buckets.create(CAROL, "shared")
    yield _put(core, org_bucket, "a", 100)
    yield _put(core, proj_bucket, "a", 200)
    yield _put(core, other, "a", 400)
    assert (yield core.quotas.usage("org-a")) == Usage(300, 2)
    assert (yield core.quotas.usage("org-a", "p1")) == Usage(200, 1)
    assert (yield core.quotas.usage("org-b")) == Usage(400, 1)
    assert (yield core.quotas.bucket_count("org-a")) == 2
    assert (yield core.quotas.bucket_count("org-a", "p1")) == 1


# -- folding ---------------------------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_folding_keeps_totals_exact_while_writers_run(core: Core) -> Any:
    """Folds (several at once, interleaved with writes and deletes) leave
    exactly one base row and the same totals as the store's contents."""
    core.quotas.fold_every = 10**9  # only the folds this test starts
    bucket = yield core.buckets.create(ALICE, "folding")
    for i in range(30):
        yield _put(core, bucket, f"k{i}", 10 + i)
    assert len((yield _rows(core, bucket))) == 30
    work = [_put(core, bucket, f"n{i}", 7) for i in range(20)]
    work += [core.objects.delete(bucket, f"k{i}") for i in range(0, 30, 3)]
    work += [core.quotas.fold_bucket(BucketScope.of(bucket).prefix) for _ in range(4)]
    results = yield DeferredList(work, consumeErrors=True)
    assert all(ok for ok, _ in results), [r for ok, r in results if not ok]
    yield core.quotas.fold_all()
    rows = yield _rows(core, bucket)
    assert [kv.key for kv in rows] == [keys.usage_base_key(BucketScope.of(bucket).prefix)]
    assert (yield _usage(core, bucket)) == (yield _stored(core, bucket))
    assert (yield _usage(core, bucket)).objects == 40


@pytest_twisted.inlineCallbacks
def test_many_deltas_trigger_a_background_fold(core: Core) -> Any:
    """After ``fold_every`` deltas the bucket is folded without anyone asking."""
    core.quotas.fold_every = 5
    bucket = yield core.buckets.create(ALICE, "autofold")
    for i in range(12):
        yield _put(core, bucket, f"k{i}", 3)
    for _ in range(50):
        rows = yield _rows(core, bucket)
        if len(rows) <= 3:
            break
        yield deferLater(reactor, 0.02, lambda: None)
    assert len(rows) <= 3
    assert (yield _usage(core, bucket)) == Usage(36, 12)


@pytest_twisted.inlineCallbacks
def test_fold_service_folds_on_its_interval(core: Core) -> Any:
    """UsageFoldService (started by the primary process) folds every bucket
    one interval after start, not before."""
    core.quotas.fold_every = 10**9
    bucket = yield core.buckets.create(ALICE, "service")
    for i in range(5):
        yield _put(core, bucket, f"k{i}", 10)
    clock = Clock()
    service = UsageFoldService(core.quotas, clock, interval_seconds=60)
    service.startService()
    try:
        clock.advance(59)
        assert len((yield _rows(core, bucket))) == 5
        clock.advance(1)
        for _ in range(100):
            rows = yield _rows(core, bucket)
            if len(rows) == 1:
                break
            yield deferLater(reactor, 0.02, lambda: None)
        assert len(rows) == 1
    finally:
        service.stopService()
    assert (yield _usage(core, bucket)) == Usage(50, 5)


@pytest_twisted.inlineCallbacks
def test_fold_all_drops_rows_of_deleted_buckets(core: Core) -> Any:
    """Usage rows a write left for a bucket deleted under it are removed."""
    bucket = yield core.buckets.create(ALICE, "racer")
    yield core.buckets.delete(ALICE, "racer")
    yield core.store.txn([], core.quotas.unguarded(BucketScope.of(bucket), Usage(5, 1)).ops)  # the late write
    assert len((yield _rows(core, bucket))) == 1
    yield core.quotas.fold_all()
    assert (yield _rows(core, bucket)) == []


# -- limits ------------------------------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_max_object_size_of_org_and_project(core: Core) -> Any:
    """The smaller of the org's and the project's max_object_size applies,
    and a refused object is not stored."""
    yield core.quotas.set_limits("org-a", None, {"max_object_size_bytes": 1000})
    yield core.quotas.set_limits("org-a", "p1", {"max_object_size_bytes": 600})
    org_bucket = yield core.buckets.create(ALICE, "sizes")
    proj_bucket = yield core.buckets.create(BOB, "sizes")
    yield _put(core, org_bucket, "ok", 1000)
    with pytest.raises(errors.QuotaExceeded):
        yield _put(core, org_bucket, "big", 1001)
    yield _put(core, proj_bucket, "ok", 600)
    with pytest.raises(errors.QuotaExceeded) as info:
        yield _put(core, proj_bucket, "big", 601)
    assert info.value.status == 403 and "max_object_size_bytes" in info.value.message
    assert (yield core.objects.find(proj_bucket, "big")) is None
    assert (yield _usage(core, proj_bucket)) == Usage(600, 1)


@pytest_twisted.inlineCallbacks
def test_org_total_bytes_covers_project_buckets(core: Core) -> Any:
    """max_total_size_bytes of an org counts every bucket of it; writes that
    only shrink usage pass even over a lowered limit."""
    yield core.quotas.set_limits("org-a", None, {"max_total_size_bytes": 1000})
    org_bucket = yield core.buckets.create(ALICE, "total")
    proj_bucket = yield core.buckets.create(BOB, "total")
    yield _put(core, org_bucket, "a", 600)
    with pytest.raises(errors.QuotaExceeded):
        yield _put(core, proj_bucket, "a", 401)
    yield _put(core, proj_bucket, "a", 400)
    assert (yield core.quotas.usage("org-a")) == Usage(1000, 2)
    yield core.quotas.set_limits("org-a", None, {"max_total_size_bytes": 500})
    yield _put(core, org_bucket, "a", 550)  # shrinks: allowed although over the limit
    with pytest.raises(errors.QuotaExceeded):
        yield _put(core, org_bucket, "a", 560)  # grows: refused
    yield core.objects.delete(org_bucket, "a")
    yield _put(core, org_bucket, "b", 100)
    assert (yield core.quotas.usage("org-a")) == Usage(500, 2)


@pytest_twisted.inlineCallbacks
def test_project_total_bytes_leaves_org_buckets_alone(core: Core) -> Any:
    """A project limit binds the project's buckets, not the org's own."""
    yield core.quotas.set_limits("org-a", "p1", {"max_total_size_bytes": 100})
    org_bucket = yield core.buckets.create(ALICE, "free")
    proj_bucket = yield core.buckets.create(BOB, "tight")
    yield _put(core, org_bucket, "a", 5000)
    with pytest.raises(errors.QuotaExceeded):
        yield _put(core, proj_bucket, "a", 101)
    yield _put(core, proj_bucket, "a", 100)


@pytest_twisted.inlineCallbacks
def test_max_objects_per_bucket_and_bucket_quota(core: Core) -> Any:
    """Object limits count versions per bucket; overwrites of unversioned keys
    add nothing; deleting frees a slot.  A bucket quota's max_objects and
    max_size_bytes bind that bucket only."""
    yield core.quotas.set_limits("org-a", None, {"max_objects_per_bucket": 2})
    first = yield core.buckets.create(ALICE, "objects-a")
    second = yield core.buckets.create(ALICE, "objects-b")
    yield _put(core, first, "a", 1)
    yield _put(core, first, "b", 1)
    yield _put(core, first, "b", 2)  # overwrite
    with pytest.raises(errors.QuotaExceeded):
        yield _put(core, first, "c", 1)
    yield _put(core, second, "a", 1)  # another bucket has its own count
    yield core.objects.delete(first, "a")
    yield _put(core, first, "c", 1)
    yield core.quotas.set_bucket_quota(second, {"max_objects": 1, "max_size_bytes": 50})
    with pytest.raises(errors.QuotaExceeded):
        yield _put(core, second, "b", 1)
    with pytest.raises(errors.QuotaExceeded):
        yield _put(core, second, "a", 51)
    yield _put(core, second, "a", 50)
    assert (yield _usage(core, second)) == Usage(50, 1)


@pytest_twisted.inlineCallbacks
def test_versions_count_against_object_limits(core: Core) -> Any:
    """With versioning, an overwrite adds a version: it needs room."""
    bucket = yield core.buckets.create(ALICE, "vlimit")
    bucket = yield core.set_bucket_versioning(bucket, "Enabled")
    yield core.quotas.set_bucket_quota(bucket, {"max_objects": 2})
    v1 = yield _put(core, bucket, "k", 1)
    yield _put(core, bucket, "k", 1)
    with pytest.raises(errors.QuotaExceeded):
        yield _put(core, bucket, "k", 1)
    yield core.objects.delete(bucket, "k")  # a delete marker needs no room
    yield core.objects.delete(bucket, "k", v1.version_id)
    yield _put(core, bucket, "k", 1)
    assert (yield _usage(core, bucket)) == Usage(2, 2) == (yield _stored(core, bucket))


@pytest_twisted.inlineCallbacks
def test_parts_count_against_byte_limits_and_complete_against_object_limits(core: Core) -> Any:
    """A part that does not fit is refused (nothing stored); completion needs
    room for one more object and leaves the upload intact when refused."""
    bucket = yield core.buckets.create(ALICE, "mpu-limits")
    yield core.quotas.set_bucket_quota(bucket, {"max_size_bytes": 2500, "max_objects": 1})
    yield _put(core, bucket, "existing", 10)
    upload = yield core.multipart.create(bucket, "big", PutAttrs(), initiator=ALICE)
    p1 = yield _part(core, upload, 1, 1500)
    with pytest.raises(errors.QuotaExceeded):
        yield _part(core, upload, 2, 1000)
    p2 = yield _part(core, upload, 2, 990)
    assert (yield _usage(core, bucket)) == Usage(10, 1, 2490)
    refs = [PartRef(1, p1.etag), PartRef(2, p2.etag)]
    with pytest.raises(errors.QuotaExceeded):
        yield core.multipart.complete(bucket, "big", upload.upload_id, refs)
    assert (yield core.multipart.get(bucket, "big", upload.upload_id)).upload_id == upload.upload_id
    yield core.objects.delete(bucket, "existing")
    done = yield core.multipart.complete(bucket, "big", upload.upload_id, refs)
    assert (yield _usage(core, bucket)) == Usage(done.record.size, 1, 0) == Usage(2490, 1)


@pytest_twisted.inlineCallbacks
def test_max_buckets_of_org_and_project_under_concurrency(core: Core) -> Any:
    """Concurrent creates never exceed max_buckets; deleting frees a slot."""
    yield core.quotas.set_limits("org-a", None, {"max_buckets": 4})
    yield core.quotas.set_limits("org-a", "p1", {"max_buckets": 1})
    yield core.buckets.create(BOB, "proj-one")
    with pytest.raises(errors.QuotaExceeded):
        yield core.buckets.create(BOB, "proj-two")
    # Re-creating an existing bucket adds none: it answers as without a quota.
    with pytest.raises(errors.BucketAlreadyOwnedByYou):
        yield core.buckets.create(BOB, "proj-one")
    results = yield DeferredList([core.buckets.create(ALICE, f"org-{i}") for i in range(8)], consumeErrors=True)
    made = [r for ok, r in results if ok]
    refused = [r for ok, r in results if not ok]
    assert len(made) == 3
    assert all(f.check(errors.QuotaExceeded) for f in refused)
    assert (yield core.quotas.bucket_count("org-a")) == 4
    yield core.buckets.delete(ALICE, made[0].name)
    yield core.buckets.create(ALICE, "org-again")
    yield core.buckets.create(CAROL, "other-org")  # another org is not limited


@pytest_twisted.inlineCallbacks
def test_concurrent_puts_never_overshoot(core: Core) -> Any:
    """16 concurrent 1000-byte puts against 10,000 bytes of which 3,500 are
    used: exactly 6 succeed, the rest are QuotaExceeded, usage is exact."""
    yield core.quotas.set_limits("org-a", None, {"max_total_size_bytes": 10_000})
    bucket = yield core.buckets.create(ALICE, "race")
    yield _put(core, bucket, "seed", 3500)
    results = yield DeferredList([_put(core, bucket, f"k{i}", 1000) for i in range(16)], consumeErrors=True)
    ok = [r for success, r in results if success]
    failed = [r for success, r in results if not success]
    assert all(f.check(errors.QuotaExceeded) for f in failed), [f.getErrorMessage() for f in failed]
    assert len(ok) == 6
    assert (yield _usage(core, bucket)) == Usage(9500, 7) == (yield _stored(core, bucket))


@pytest_twisted.inlineCallbacks
def test_a_limit_set_elsewhere_binds_the_next_commit(core: Core) -> Any:
    """Another process (here: another QuotaManager, as lightningstor-admin
    uses) sets a limit while the core has the bucket's limits cached: the
    very next commit is held to it."""
    core.quotas.cache_seconds = 3600
    bucket = yield core.buckets.create(ALICE, "cached")
    yield _put(core, bucket, "a", 100)  # caches "no limits"
    admin = QuotaManager(core.store, core.clock)
    yield admin.set_bucket_quota(bucket, {"max_size_bytes": 150})
    with pytest.raises(errors.QuotaExceeded):
        yield _put(core, bucket, "b", 51)
    yield _put(core, bucket, "b", 50)


@pytest_twisted.inlineCallbacks
def test_early_checks_never_refuse_on_a_stale_cache(core: Core) -> Any:
    """A limit raised or removed elsewhere while the core holds the old one
    cached: the early check does not refuse a body the new limits allow."""
    core.quotas.cache_seconds = 3600
    yield core.quotas.set_limits("org-a", None, {"max_object_size_bytes": 100})
    bucket = yield core.buckets.create(ALICE, "stale")
    with pytest.raises(errors.QuotaExceeded):
        yield core.quotas.check_put(bucket, "k", 101)  # now cached: max 100
    admin = QuotaManager(core.store, core.clock)
    yield admin.set_limits("org-a", None, {"max_object_size_bytes": None})
    yield core.quotas.check_put(bucket, "k", 101)
    yield _put(core, bucket, "k", 101)


@pytest.mark.parametrize("limit", ["max_size_bytes", "max_objects"])
@pytest_twisted.inlineCallbacks
def test_commits_never_refuse_on_a_stale_cache(core: Core, limit: str) -> Any:
    """A limit removed elsewhere while the core holds the old one cached:
    a commit without an early check (CopyObject, a complete, gRPC writes)
    is not refused under the cached limit.  It used to be, until something
    re-read the limits: the refusal came before the transaction whose epoch
    compare would have told."""
    core.quotas.cache_seconds = 3600
    bucket = yield core.buckets.create(ALICE, f"stale-{limit.replace('_', '-')}")
    yield core.quotas.set_bucket_quota(bucket, {limit: 1})
    yield _put(core, bucket, "a", 1)
    with pytest.raises(errors.QuotaExceeded):
        yield _put(core, bucket, "b", 1)  # the limits are cached now
    admin = QuotaManager(core.store, core.clock)
    yield admin.set_bucket_quota(bucket, {limit: None})
    yield _put(core, bucket, "b", 1)
    yield admin.set_bucket_quota(bucket, {limit: 2})  # and a limit set elsewhere still binds
    with pytest.raises(errors.QuotaExceeded):
        yield _put(core, bucket, "c", 1)


@pytest_twisted.inlineCallbacks
def test_early_checks_count_what_an_overwrite_frees(core: Core) -> Any:
    """check_put refuses a length that can never fit, but not an overwrite
    that frees enough; check_part refuses a part over max_object_size."""
    yield core.quotas.set_limits("org-a", None, {"max_total_size_bytes": 1000, "max_object_size_bytes": 800})
    bucket = yield core.buckets.create(ALICE, "early")
    yield _put(core, bucket, "a", 700)
    yield core.quotas.check_put(bucket, "a", 800)  # replaces 700: fits
    with pytest.raises(errors.QuotaExceeded):
        yield core.quotas.check_put(bucket, "b", 301)
    with pytest.raises(errors.QuotaExceeded):
        yield core.quotas.check_put(bucket, "a", 801)  # max_object_size
    yield core.quotas.check_put(bucket, "b", None)  # unknown length: the commit decides
    upload = yield core.multipart.create(bucket, "m", PutAttrs(), initiator=ALICE)
    with pytest.raises(errors.QuotaExceeded):
        yield core.quotas.check_part(upload.usage_scope, upload.upload_id, 1, 301)
    yield core.quotas.check_part(upload.usage_scope, upload.upload_id, 1, 300)


@pytest_twisted.inlineCallbacks
def test_early_check_credits_the_noncurrent_null_version_a_suspended_put_replaces(core: Core) -> Any:
    """Versioning suspended over a real version: a PUT replaces the
    noncurrent null version, as its commit does, so the early check does
    not refuse a write that fits once that version is gone."""
    bucket = yield core.buckets.create(ALICE, "early-null")
    yield _put(core, bucket, "k", 600)  # the null version
    bucket = yield core.set_bucket_versioning(bucket, "Enabled")
    yield _put(core, bucket, "k", 100)  # current; the null version is noncurrent
    bucket = yield core.set_bucket_versioning(bucket, "Suspended")
    yield core.quotas.set_limits("org-a", None, {"max_total_size_bytes": 700})
    yield core.quotas.check_put(bucket, "k", 600)  # 700 - 600 + 600: fits
    yield _put(core, bucket, "k", 600)
    assert (yield _usage(core, bucket)) == Usage(700, 2) == (yield _stored(core, bucket))
    with pytest.raises(errors.QuotaExceeded):  # still no room for more than it frees
        yield core.quotas.check_put(bucket, "k", 601)


@pytest_twisted.inlineCallbacks
def test_invalid_limits_change_nothing(core: Core) -> Any:
    """Negative, non-integer or unknown limits are InvalidArgument."""
    yield core.quotas.set_limits("org-a", None, {"max_buckets": 3})
    for bad in ({"max_buckets": -1}, {"max_buckets": 1.5}, {"max_buckets": True}, {"nonsense": 1}):
        with pytest.raises(errors.InvalidArgument):
            yield core.quotas.set_limits("org-a", None, bad)
    assert (yield core.quotas.get_limits("org-a")).max_buckets == 3
    cleared = yield core.quotas.set_limits("org-a", None, {"max_buckets": None})
    assert cleared.is_empty()
    assert (yield core.store.get(keys.org_quota_key("org-a"))) is None


# -- lightningstor-admin quota, in process --------------------------------------------


@inlineCallbacks
def _admin(core: Core, *argv: str) -> Any:
    from twisted.internet.defer import ensureDeferred

    args = build_parser().parse_args(["quota", *argv])
    out, err = io.StringIO(), io.StringIO()
    status = yield ensureDeferred(execute(args.quota_command, args, out, err, core.store))
    return status, out.getvalue(), err.getvalue()


@pytest_twisted.inlineCallbacks
def test_admin_quota_set_and_show(core: Core) -> Any:
    """``quota set`` stores what it was given (read back through the core) and
    ``quota show --json`` reports usage equal to what was written; wrong
    combinations are refused with status 2 and change nothing."""
    bucket = yield core.buckets.create(BOB, "admin-b")
    yield _put(core, bucket, "a", 1234)
    status, out, err = yield _admin(core, "set", "--org", "org-a", "--max-bytes", "1MiB", "--max-buckets", "9")
    assert status == 0, err
    limits = yield core.quotas.get_limits("org-a")
    assert (limits.max_total_size_bytes, limits.max_buckets) == (1024**2, 9)
    status, out, err = yield _admin(core, "set", "--org", "org-a", "--project", "p1", "--bucket", "admin-b",
                                    "--max-objects", "7", "--json")  # fmt: skip
    assert status == 0, err
    assert json.loads(out)["limits"] == {"max_size_bytes": None, "max_objects": 7}
    assert (yield core.quotas.get_bucket_quota(bucket.bucket_id)).max_objects == 7
    status, out, err = yield _admin(core, "show", "--org", "org-a", "--json")
    shown = json.loads(out)
    assert shown["usage"] == {"bucket_count": 1, "total_size_bytes": 1234, "object_bytes": 1234,
                              "upload_bytes": 0, "object_count": 1}  # fmt: skip
    assert shown["limits"]["max_total_size_bytes"] == 1024**2
    assert shown["buckets"][0]["name"] == "admin-b" and shown["buckets"][0]["object_count"] == 1
    status, out, err = yield _admin(core, "show", "--org", "org-a")
    assert "max_total_size_bytes" in out and "1234" in out
    for argv in (["set", "--org", "org-a", "--max-objects", "3"],  # bucket-only option
                 ["set", "--org", "org-a", "--bucket", "admin-b", "--max-buckets", "3"],
                 ["set", "--org", "org-a"],
                 ["set", "--org", "bad/org", "--max-buckets", "1"],
                 ["show", "--org", "org-a", "--bucket", "nope"]):  # fmt: skip
        status, out, err = yield _admin(core, *argv)
        assert status == 2 and err.startswith("error:"), (argv, err)
    assert (yield core.quotas.get_limits("org-a")).max_buckets == 9


def test_parse_limit() -> None:
    """Sizes with binary/decimal units, counts, and none."""
    assert parse_limit("10GiB") == 10 * 1024**3
    assert parse_limit("500MB") == 500 * 10**6
    assert parse_limit("42") == 42
    assert parse_limit("none") is None
    for bad in ("-1", "1.5GiB", "lots"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_limit(bad)
    # The largest a signed 64-bit number holds, and no more: 4,301 digits
    # made int() raise past argparse (a traceback, not an error line).
    assert parse_limit(str(2**63 - 1)) == 2**63 - 1
    assert parse_limit("0" * 30 + "7") == 7
    assert parse_limit("8191PiB") == 8191 * 2**50
    for huge in (str(2**63), "8192PiB", "9" * 4301 + "PiB", "9" * 20):
        with pytest.raises(argparse.ArgumentTypeError, match="at most"):
            parse_limit(huge)


def test_delta_keys_are_unique_within_a_millisecond_and_across_a_fork() -> None:
    """Delta rows of concurrent writers (workers, API servers) never share a
    key: a shared key would overwrite a delta, and usage would drift.  Many
    keys in one frozen millisecond are distinct and share its time prefix;
    a forked worker draws different keys than its parent."""
    import os

    clock = Clock()
    clock.advance(1_700_000_000)
    quotas = QuotaManager(None, clock.seconds)  # type: ignore[arg-type]
    drawn = [quotas._unique() for _ in range(20_000)]
    assert len(set(drawn)) == len(drawn)
    assert {k[:13] for k in drawn} == {f"{1_700_000_000_000:013x}"}
    assert all(len(k) == 29 and int(k, 16) >= 0 for k in drawn)
    clock.advance(1)
    assert quotas._unique() > max(drawn)

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next key and leave at once
        os.write(write, quotas._unique().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    assert child != quotas._unique()
