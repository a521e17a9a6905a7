"""Bucket lifecycle rules: the XML document, validation with AWS's answers,
matching and due times, and the evaluation (LifecycleWorker) on a real
in-process core (SQLite store, local backend) with an injected clock.
"""

from __future__ import annotations

import calendar
import json
import time
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import Clock

from lightningstor import errors
from lightningstor.core import keys, records
from lightningstor.core.access import BUCKETS_CREATE, BUCKETS_GET, action_of
from lightningstor.core.lifecycle import (
    DAY_SECONDS,
    abort_rule,
    due_ms,
    expiring_rule,
    marker_expiring_rule,
    matches,
    noncurrent_expiring_rule,
    scan_prefixes,
    validate_rules,
)
from lightningstor.core.lifecycle_service import (
    CLAIM_SECONDS,
    LifecycleCounts,
    LifecycleService,
    LifecycleWorker,
)
from lightningstor.core.objects import ConflictError, PutAttrs
from lightningstor.core.service import Core
from lightningstor.core.types import (
    Bucket,
    LifecycleFilter,
    LifecycleRule,
    ObjectRecord,
    Principal,
)
from lightningstor.interfaces.metadata import Put, prefix_end
from lightningstor.s3 import operations
from lightningstor.s3.addressing import parse_target
from lightningstor.s3.lifecyclexml import lifecycle_configuration_xml, parse_lifecycle_configuration

ALICE = Principal("alice", "org-a")
DAY_MS = DAY_SECONDS * 1000


def doc(*rules: str) -> bytes:
    return ("<LifecycleConfiguration>" + "".join(f"<Rule>{r}</Rule>" for r in rules) + "</LifecycleConfiguration>").encode()


def parse_valid(body: bytes) -> tuple[LifecycleRule, ...]:
    parsed = parse_lifecycle_configuration(body)
    return validate_rules(parsed.rules, transitions=parsed.transitions)


def utc_ms(text: str) -> int:
    return calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M")) * 1000


# -- the document -----------------------------------------------------------------

FULL = doc(
    "<ID>logs</ID><Filter><Prefix>logs/</Prefix></Filter><Status>Enabled</Status>"
    "<Expiration><Days>30</Days></Expiration>"
    "<NoncurrentVersionExpiration><NoncurrentDays>7</NoncurrentDays>"
    "<NewerNoncurrentVersions>3</NewerNoncurrentVersions></NoncurrentVersionExpiration>"
    "<AbortIncompleteMultipartUpload><DaysAfterInitiation>2</DaysAfterInitiation></AbortIncompleteMultipartUpload>",
    "<ID>tmp</ID><Filter><And><Prefix>tmp/</Prefix><Tag><Key>a</Key><Value>1</Value></Tag>"
    "<Tag><Key>b</Key><Value></Value></Tag><ObjectSizeGreaterThan>10</ObjectSizeGreaterThan>"
    "<ObjectSizeLessThan>1000</ObjectSizeLessThan></And></Filter><Status>Disabled</Status>"
    "<Expiration><Date>2030-01-01T00:00:00.000Z</Date></Expiration>",
    "<ID>markers</ID><Filter></Filter><Status>Enabled</Status>"
    "<Expiration><ExpiredObjectDeleteMarker>true</ExpiredObjectDeleteMarker></Expiration>",
    "<ID>tagged</ID><Filter><Tag><Key>k</Key><Value>v</Value></Tag></Filter><Status>Enabled</Status>"
    "<Expiration><Days>1</Days></Expiration>",
    "<ID>big</ID><Filter><ObjectSizeGreaterThan>5</ObjectSizeGreaterThan></Filter><Status>Enabled</Status>"
    "<NoncurrentVersionExpiration><NoncurrentDays>1</NoncurrentDays></NoncurrentVersionExpiration>",
)


def test_document_round_trips() -> None:
    """Every action and filter form parses to the values meant, and
    GetBucketLifecycleConfiguration's document parses back to the same rules."""
    rules = parse_valid(FULL)
    assert rules[0] == LifecycleRule(
        "logs", True, LifecycleFilter(prefix="logs/"), "filter", expiration_days=30,
        noncurrent_days=7, newer_noncurrent_versions=3, abort_days=2,
    )  # fmt: skip
    assert rules[1].form == "and" and not rules[1].enabled
    assert rules[1].filter == LifecycleFilter("tmp/", (("a", "1"), ("b", "")), 10, 1000)
    assert rules[1].expiration_date == calendar.timegm((2030, 1, 1, 0, 0, 0))
    assert rules[2].filter == LifecycleFilter() and rules[2].expired_object_delete_marker is True
    assert rules[3].filter.tags == (("k", "v"),)
    assert rules[4].filter.size_greater_than == 5
    again = parse_valid(lifecycle_configuration_xml(rules))
    assert again == rules


def test_legacy_prefix_round_trips_and_ids_are_generated() -> None:
    """A V1 rule (rule-level Prefix) is written back as V1; a rule without an
    ID gets a generated one, distinct from the others, kept on the next read."""
    rules = parse_valid(doc("<Prefix>a/</Prefix><Status>Enabled</Status><Expiration><Days>1</Days></Expiration>",
                            "<Prefix>b/</Prefix><Status>Enabled</Status><Expiration><Days>1</Days></Expiration>"))
    assert rules[0].form == "prefix" and rules[0].filter.prefix == "a/"
    assert rules[0].rule_id and rules[1].rule_id and rules[0].rule_id != rules[1].rule_id
    xml = lifecycle_configuration_xml(rules)
    assert b"<Prefix>a/</Prefix><Status>" in xml and b"<Filter>" not in xml
    assert parse_valid(xml) == rules


def test_bucket_record_round_trip() -> None:
    """The rules are stored in the bucket record and read back equal; a
    bucket without rules stores no lifecycle field (records stay as they were)."""
    bucket = Bucket("b", "id1", "org", None, 1, 1, "alice")
    assert b'"lc"' not in records.encode_bucket(bucket)
    bucket.lifecycle = parse_valid(FULL)
    assert records.decode_bucket(records.encode_bucket(bucket)).lifecycle == bucket.lifecycle


EXP = "<Expiration><Days>1</Days></Expiration>"
ON = "<Status>Enabled</Status>"
ALL = "<Filter></Filter>"


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        (b"<LifecycleConfiguration><Rule>", "MalformedXML", ""),
        (b"<Other/>", "MalformedXML", ""),
        (doc(f"{ALL}{EXP}"), "MalformedXML", ""),  # no Status
        (doc(f"{ALL}<Status>enabled</Status>{EXP}"), "MalformedXML", ""),
        (doc(f"{ON}{EXP}"), "MalformedXML", ""),  # neither Filter nor Prefix
        (doc(f"<Prefix>a</Prefix>{ALL}{ON}{EXP}"), "MalformedXML", ""),
        (doc(f"{ALL}{ON}<Expiration><Days>1</Days><ExpiredObjectDeleteMarker>true</ExpiredObjectDeleteMarker></Expiration>"), "MalformedXML", ""),
        (doc(f"{ALL}{ON}<Expiration></Expiration>"), "MalformedXML", ""),
        (doc(f"{ALL}{ON}<Expiration><Days>ten</Days></Expiration>"), "MalformedXML", ""),
        (doc(f"{ALL}{ON}<Expiration><Date>tomorrow</Date></Expiration>"), "MalformedXML", ""),
        # midnight, but past 9999-12-31 in UTC: it would be shown as year 10000, which SDKs cannot parse
        (doc(f"{ALL}{ON}<Expiration><Date>9999-12-31T19:00:00-05:00</Date></Expiration>"), "MalformedXML", ""),
        (doc(f"<Filter><Prefix>a</Prefix><Tag><Key>k</Key><Value>v</Value></Tag></Filter>{ON}{EXP}"), "MalformedXML", ""),
        (doc(f"{ALL}{ON}{EXP}<Unknown/>"), "MalformedXML", ""),
        (doc(f"{ALL}{ON}<NoncurrentVersionExpiration></NoncurrentVersionExpiration>"), "MalformedXML", ""),
        (b"<LifecycleConfiguration></LifecycleConfiguration>", "InvalidRequest", "At least one lifecycle rule"),
        (doc(*[f"{ALL}{ON}{EXP}"] * 1001), "InvalidRequest", "allowed limit of 1000 rules"),
        (doc(f"<ID>{'x' * 256}</ID>{ALL}{ON}{EXP}"), "InvalidArgument", "ID length should not exceed allowed limit of 255"),
        (doc(f"<ID>a</ID>{ALL}{ON}{EXP}", f"<ID>a</ID>{ALL}{ON}{EXP}"), "InvalidArgument",
         "Rule ID must be unique. Found same ID for more than one rule"),
        (doc(f"{ALL}{ON}"), "InvalidRequest", "At least one action needs to be specified in a rule"),
        (doc(f"{ALL}{ON}<Expiration><Days>0</Days></Expiration>"), "InvalidArgument",
         "'Days' for Expiration action must be a positive integer"),
        (doc(f"{ALL}{ON}<Expiration><Days>-3</Days></Expiration>"), "InvalidArgument", "positive integer"),
        (doc(f"{ALL}{ON}<Expiration><Date>2030-01-01T10:00:00Z</Date></Expiration>"), "InvalidArgument",
         "'Date' must be at midnight GMT"),
        (doc(f"{ALL}{ON}<NoncurrentVersionExpiration><NoncurrentDays>0</NoncurrentDays></NoncurrentVersionExpiration>"),
         "InvalidArgument", "'NoncurrentDays' for NoncurrentVersionExpiration action must be a positive integer"),
        (doc(f"{ALL}{ON}<NoncurrentVersionExpiration><NoncurrentDays>1</NoncurrentDays><NewerNoncurrentVersions>0</NewerNoncurrentVersions></NoncurrentVersionExpiration>"),
         "InvalidArgument", "'NewerNoncurrentVersions' must be a positive integer"),
        (doc(f"{ALL}{ON}<AbortIncompleteMultipartUpload><DaysAfterInitiation>0</DaysAfterInitiation></AbortIncompleteMultipartUpload>"),
         "InvalidArgument", "'DaysAfterInitiation' for AbortIncompleteMultipartUpload action must be a positive integer"),
        (doc(f"<Filter><Tag><Key>k</Key><Value>v</Value></Tag></Filter>{ON}<AbortIncompleteMultipartUpload><DaysAfterInitiation>1</DaysAfterInitiation></AbortIncompleteMultipartUpload>"),
         "InvalidRequest", "AbortIncompleteMultipartUpload cannot be specified with Tags."),
        (doc(f"<Filter><ObjectSizeLessThan>9</ObjectSizeLessThan></Filter>{ON}<AbortIncompleteMultipartUpload><DaysAfterInitiation>1</DaysAfterInitiation></AbortIncompleteMultipartUpload>"),
         "InvalidRequest", "AbortIncompleteMultipartUpload cannot be specified with Object Size."),
        (doc(f"<Filter><Tag><Key>k</Key><Value>v</Value></Tag></Filter>{ON}<Expiration><ExpiredObjectDeleteMarker>true</ExpiredObjectDeleteMarker></Expiration>"),
         "InvalidRequest", "ExpiredObjectDeleteMarker cannot be specified with Tags."),
        (doc(f"<Filter><And><Tag><Key>k</Key><Value>1</Value></Tag><Tag><Key>k</Key><Value>2</Value></Tag></And></Filter>{ON}{EXP}"),
         "InvalidRequest", "Duplicate Tag Keys are not allowed."),
        (doc(f"<Filter><And><ObjectSizeGreaterThan>10</ObjectSizeGreaterThan><ObjectSizeLessThan>10</ObjectSizeLessThan></And></Filter>{ON}{EXP}"),
         "InvalidRequest", "'ObjectSizeLessThan' has to be a value greater than 'ObjectSizeGreaterThan'."),
        (doc(f"<Filter><ObjectSizeLessThan>0</ObjectSizeLessThan></Filter>{ON}{EXP}"),
         "InvalidRequest", "'ObjectSizeLessThan' should be between 1 and"),
        (doc(f"<Prefix>a</Prefix>{ON}{EXP}", f"{ALL}{ON}{EXP}"), "InvalidRequest",
         "Filter element can only be used in Lifecycle V2."),
        (doc(f"{ALL}{ON}{EXP}", f"<Prefix>a</Prefix>{ON}{EXP}"), "InvalidRequest",
         "Base level prefix cannot be used in Lifecycle V2"),
        (doc(f"<Prefix>a</Prefix>{ON}{EXP}", f"<Prefix>ab</Prefix>{ON}{EXP}"), "InvalidRequest",
         "Found overlapping prefixes 'a' and 'ab' for same action type 'Expiration'"),
        (doc(f"{ALL}{ON}<Transition><Days>30</Days><StorageClass>GLACIER</StorageClass></Transition>"),
         "NotImplemented", "Transition"),
        (doc(f"{ALL}{ON}{EXP}<NoncurrentVersionTransition><NoncurrentDays>30</NoncurrentDays><StorageClass>GLACIER</StorageClass></NoncurrentVersionTransition>"),
         "NotImplemented", "Transition"),
        # A transition is checked against the schema before it is refused.
        (doc(f"{ALL}{ON}<Transition><Date>20220927</Date><StorageClass>GLACIER</StorageClass></Transition>"),
         "MalformedXML", ""),
        (doc(f"{ALL}{ON}<Transition><Days>30</Days></Transition>"), "MalformedXML", ""),
        # boto3 turns a date of "20220927" into 1970-08-23T00:55:27Z: not midnight.
        (doc(f"{ALL}{ON}<Transition><Date>1970-08-23T00:55:27Z</Date><StorageClass>GLACIER</StorageClass></Transition>"),
         "InvalidArgument", "'Date' must be at midnight GMT"),
        (doc(f"{ALL}{ON}<NoncurrentVersionTransition><StorageClass>GLACIER</StorageClass></NoncurrentVersionTransition>"),
         "MalformedXML", ""),
        (doc(f"{ALL}{ON}<Expiration><Date>20300101</Date></Expiration>"), "MalformedXML", ""),
        # Another fault is answered before the transition's 501, as S3 orders them.
        (doc(f"{ALL}{ON}<Expiration><Days>0</Days></Expiration><Transition><Days>30</Days><StorageClass>GLACIER</StorageClass></Transition>"),
         "InvalidArgument", "'Days' for Expiration action"),
    ],
)  # fmt: skip
def test_refused_configurations(body: bytes, code: str, message: str) -> None:
    """What AWS refuses is refused with its code (and message, where known)."""
    with pytest.raises(errors.S3Error) as info:
        parse_valid(body)
    assert info.value.code == code
    assert message in info.value.message
    if code == "NotImplemented":
        assert info.value.status == 501


@pytest.mark.parametrize(
    ("method", "op", "action"),
    [
        ("GET", "GetBucketLifecycleConfiguration", BUCKETS_GET),
        ("PUT", "PutBucketLifecycleConfiguration", BUCKETS_CREATE),
        ("DELETE", "DeleteBucketLifecycle", BUCKETS_CREATE),
    ],
)
def test_operations_and_actions(method: str, op: str, action: str) -> None:
    """``?lifecycle`` is classified as AWS names the operations, and each
    needs the action the CORS configuration needs (reading: buckets:get;
    changing: buckets:create)."""
    assert operations.classify(method, parse_target(b"/b?lifecycle", None, None)) == op
    assert action_of(op, object_level=False) == action


def test_overlapping_filters_are_allowed_in_v2() -> None:
    """Overlapping prefixes are refused only in V1 configurations (AWS)."""
    rules = parse_valid(doc(f"<Filter><Prefix>a</Prefix></Filter>{ON}{EXP}", f"<Filter><Prefix>ab</Prefix></Filter>{ON}{EXP}"))
    assert len(rules) == 2


# -- matching and timing ---------------------------------------------------------------


def test_due_time_rounds_up_to_midnight_utc() -> None:
    """AWS's example: created 2014-01-15 10:30 UTC + 3 days is due 2014-01-19
    00:00 UTC; a sum that is already midnight stays; a custom day length
    does not round."""
    assert due_ms(utc_ms("2014-01-15T10:30"), 3) == utc_ms("2014-01-19T00:00")
    assert due_ms(utc_ms("2014-01-15T00:00"), 3) == utc_ms("2014-01-18T00:00")
    assert due_ms(utc_ms("2014-01-15T10:30"), 3, day_seconds=2) == utc_ms("2014-01-15T10:30") + 6000


def test_matching() -> None:
    """A rule matches when enabled and every condition holds: prefix, each
    filter tag with its value (other tags do not matter), sizes exclusive."""
    rule = LifecycleRule("r", True, LifecycleFilter("p/", (("a", "1"),), 10, 20), "and", expiration_days=1)
    assert matches(rule, "p/x", 11, {"a": "1", "z": "9"})
    assert not matches(rule, "q/x", 11, {"a": "1"})
    assert not matches(rule, "p/x", 11, {"a": "2"})
    assert not matches(rule, "p/x", 11, {})
    assert not matches(rule, "p/x", 10, {"a": "1"})
    assert not matches(rule, "p/x", 20, {"a": "1"})
    assert not matches(LifecycleRule("r", False, expiration_days=1), "k", 1, {})
    assert matches(LifecycleRule("r", True, expiration_days=1), "anything", 0, {})


def test_which_rule_acts() -> None:
    """Each action kind is due only from its own start and conditions."""
    created = utc_ms("2024-03-01T12:00")
    days2 = LifecycleRule("d", True, expiration_days=2)
    assert expiring_rule([days2], "k", 1, {}, created, utc_ms("2024-03-03T23:59"), DAY_SECONDS) is None
    assert expiring_rule([days2], "k", 1, {}, created, utc_ms("2024-03-04T00:00"), DAY_SECONDS) is days2
    date = LifecycleRule("t", True, expiration_date=calendar.timegm((2024, 5, 1, 0, 0, 0)))
    assert expiring_rule([date], "k", 1, {}, created, utc_ms("2024-04-30T23:59")) is None
    assert expiring_rule([date], "k", 1, {}, created, utc_ms("2024-05-01T00:00")) is date
    marker = LifecycleRule("m", True, expired_object_delete_marker=True)
    assert marker_expiring_rule([marker], "k", created, created) is marker
    assert marker_expiring_rule([LifecycleRule("m", True, expired_object_delete_marker=False)], "k", created, created) is None
    assert marker_expiring_rule([days2], "k", created, utc_ms("2024-03-04T00:00")) is days2
    keep2 = LifecycleRule("n", True, noncurrent_days=1, newer_noncurrent_versions=2)
    later = utc_ms("2024-03-10T00:00")
    assert noncurrent_expiring_rule([keep2], "k", 1, {}, created, 1, later) is None
    assert noncurrent_expiring_rule([keep2], "k", 1, {}, created, 2, later) is keep2
    assert noncurrent_expiring_rule([keep2], "k", 1, {}, later, 5, later) is None
    abort = LifecycleRule("a", True, LifecycleFilter("up/"), abort_days=1)
    assert abort_rule([abort], "up/x", created, later) is abort
    assert abort_rule([abort], "other", created, later) is None


def test_scan_prefixes() -> None:
    """A pass reads each needed prefix once, none inside another."""
    rules = [LifecycleRule(str(i), True, LifecycleFilter(p), expiration_days=1) for i, p in enumerate(["a/b", "a/", "c"])]
    rules.append(LifecycleRule("x", False, LifecycleFilter("d"), expiration_days=1))
    assert scan_prefixes(rules, lambda r: True) == ["a/", "c"]
    assert scan_prefixes([*rules, LifecycleRule("all", True, expiration_days=1)], lambda r: True) == [""]


# -- the evaluation on a real core -------------------------------------------------------


@pytest.fixture
def core(make_core: Any) -> Core:
    return make_core(fsync=False, chunk_size=4096, inline_threshold=512)


class FakeClock:
    """The worker's clock: real time plus a settable offset."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def worker_for(core: Core, clock: FakeClock, **kw: Any) -> LifecycleWorker:
    return LifecycleWorker(core.store, core.objects, core.multipart, clock, day_seconds=10.0, **kw)


@inlineCallbacks
def make_bucket(core: Core, name: str, rules: list[LifecycleRule], versioning: str | None = None) -> Any:
    bucket = yield core.buckets.create(ALICE, name)
    if versioning is not None:
        bucket = yield core.set_bucket_versioning(bucket, versioning)
    bucket = yield core.buckets.set_lifecycle(bucket, rules)
    return bucket


@inlineCallbacks
def put(core: Core, bucket: Bucket, key: str, data: bytes = b"x", tags: dict[str, str] | None = None, age: float = 0) -> Any:
    """Write an object whose creation time is ``age`` seconds in the past."""
    writer = core.chunks.new_writer(())
    writer.write(data)
    result = yield writer.finish()
    record = ObjectRecord(key=key, size=result.size, etag=result.md5_hex, created_at=core.objects.now_ms() - int(age * 1000),
                          chunks=list(result.chunks), inline=result.inline, tags=dict(tags or {}))  # fmt: skip
    committed = yield core.objects.commit(bucket, record, PutAttrs())
    return committed


@inlineCallbacks
def current_keys(core: Core, bucket: Bucket) -> Any:
    prefix = keys.objects_prefix(bucket.bucket_id)
    rows = yield core.store.scan(prefix, prefix_end(prefix))
    out = {}
    for kv in rows:
        record = records.decode_object(kv.value)
        out[record.key] = "marker" if record.delete_marker else record.size
    return out


@inlineCallbacks
def versions_of(core: Core, bucket: Bucket, key: str) -> Any:
    """[(version id, delete marker)] newest first, current included."""
    page = yield core.list_object_versions(bucket, prefix=key)
    return [(e.version_id, e.delete_marker) for e in page.entries if e.key == key]


@pytest_twisted.inlineCallbacks
def test_unversioned_expiration_honours_filters(core: Core) -> None:
    """Unversioned: due objects matching prefix, tag and size are deleted;
    the young, the other prefix, the wrong tag and the wrong size stay."""
    rules = [
        LifecycleRule("logs", True, LifecycleFilter("logs/"), expiration_days=1),
        LifecycleRule("tagged", True, LifecycleFilter(tags=(("tmp", "yes"),)), expiration_days=1),
        LifecycleRule("big", True, LifecycleFilter("big/", size_greater_than=4), "and", expiration_days=1),
        LifecycleRule("off", False, LifecycleFilter("off/"), expiration_days=1),
    ]
    bucket = yield make_bucket(core, "plain", rules)
    yield put(core, bucket, "logs/old", age=20)
    yield put(core, bucket, "logs/young", age=5)
    yield put(core, bucket, "data/old", age=20)
    yield put(core, bucket, "data/tagged", tags={"tmp": "yes", "x": "1"}, age=20)
    yield put(core, bucket, "data/other-tag", tags={"tmp": "no"}, age=20)
    yield put(core, bucket, "big/large", b"123456", age=20)
    yield put(core, bucket, "big/small", b"1234", age=20)
    yield put(core, bucket, "off/old", age=20)
    counts = yield worker_for(core, FakeClock()).run()
    assert counts.expired == 3 and counts.failed == 0
    left = yield current_keys(core, bucket)
    assert sorted(left) == ["big/small", "data/old", "data/other-tag", "logs/young", "off/old"]


@pytest_twisted.inlineCallbacks
def test_versioned_expiration_noncurrent_and_markers(core: Core) -> None:
    """Enabled: an expired current version gets a delete marker (nothing is
    deleted); noncurrent versions are deleted once noncurrent long enough,
    the NewerNoncurrentVersions newest kept; a lone delete marker is removed,
    one with versions behind it is not."""
    rules = [
        LifecycleRule("cur", True, LifecycleFilter("cur/"), expiration_days=1),
        LifecycleRule("nc", True, LifecycleFilter("nc/"), noncurrent_days=1, newer_noncurrent_versions=1),
        LifecycleRule("dm", True, LifecycleFilter("dm/"), expired_object_delete_marker=True),
        LifecycleRule("young", True, LifecycleFilter("young/"), noncurrent_days=1),
    ]
    bucket = yield make_bucket(core, "versioned", rules, "Enabled")
    yield put(core, bucket, "cur/a", age=20)
    for age in (50, 40, 30, 20):  # 4 versions; the newest is current
        yield put(core, bucket, "nc/k", age=age)
    yield put(core, bucket, "young/k", age=50)  # old, but noncurrent only since now:
    yield put(core, bucket, "young/k", age=0)
    yield core.objects.delete(bucket, "dm/lone")  # a marker with no version
    yield put(core, bucket, "dm/kept", age=20)
    yield core.objects.delete(bucket, "dm/kept")  # a marker with a version behind it
    before = yield versions_of(core, bucket, "nc/k")
    counts = yield worker_for(core, FakeClock()).run()
    assert (counts.expired, counts.noncurrent, counts.markers, counts.failed) == (1, 2, 1, 0)
    cur = yield versions_of(core, bucket, "cur/a")
    assert [m for _v, m in cur] == [True, False]
    nc = yield versions_of(core, bucket, "nc/k")
    assert nc == before[:2]  # the current one and the newest noncurrent one
    fresh = yield versions_of(core, bucket, "young/k")
    assert len(fresh) == 2
    assert (yield versions_of(core, bucket, "dm/lone")) == []
    kept = yield versions_of(core, bucket, "dm/kept")
    assert [m for _v, m in kept] == [True, False]


@pytest_twisted.inlineCallbacks
def test_marker_removed_once_its_versions_expire(core: Core) -> None:
    """Noncurrent expiry and ExpiredObjectDeleteMarker together empty a key
    over two runs, as in AWS (the marker is "expired" once alone)."""
    rules = [LifecycleRule("all", True, noncurrent_days=1, expired_object_delete_marker=True)]
    bucket = yield make_bucket(core, "cleanup", rules, "Enabled")
    yield put(core, bucket, "k", age=30)
    yield core.objects.delete(bucket, "k")
    clock = FakeClock()
    clock.offset = 30
    worker = worker_for(core, clock)
    first = yield worker.run()
    assert (first.noncurrent, first.markers) == (1, 0)
    second = yield worker.run()
    assert second.markers == 1
    assert (yield versions_of(core, bucket, "k")) == []


@pytest_twisted.inlineCallbacks
def test_suspended_expiration_writes_the_null_marker(core: Core) -> None:
    """Suspended: expiring the null current version replaces it with the
    null delete marker (the object's data is gone, as in AWS)."""
    bucket = yield make_bucket(core, "suspended", [LifecycleRule("r", True, expiration_days=1)], "Suspended")
    yield put(core, bucket, "k", age=20)
    counts = yield worker_for(core, FakeClock()).run()
    assert counts.expired == 1
    assert (yield versions_of(core, bucket, "k")) == [(None, True)]  # the null version


@pytest_twisted.inlineCallbacks
def test_incomplete_uploads_aborted_under_the_prefix(core: Core) -> None:
    """Uploads initiated more than DaysAfterInitiation ago under the rule's
    prefix are aborted; others stay."""
    rules = [LifecycleRule("mpu", True, LifecycleFilter("up/"), abort_days=1)]
    bucket = yield make_bucket(core, "uploads", rules)
    old = yield core.multipart.create(bucket, "up/a", PutAttrs(), initiator=ALICE)
    other = yield core.multipart.create(bucket, "keep/a", PutAttrs(), initiator=ALICE)
    clock = FakeClock()
    worker = worker_for(core, clock)
    counts = yield worker.run()
    assert counts.aborted == 0
    clock.offset = 11
    counts = yield worker.run()
    assert counts.aborted == 1
    with pytest.raises(errors.NoSuchUpload):
        yield core.multipart.get(bucket, "up/a", old.upload_id)
    kept = yield core.multipart.get(bucket, "keep/a", other.upload_id)
    assert kept.upload_id == other.upload_id


class RacingStore:
    """A store whose first scan of the objects key space (or of ``space``)
    is followed by ``race()`` before the rows reach the caller: a client's
    write landing between the lifecycle scan and its delete."""

    def __init__(self, inner: Any, race: Any, space: bytes = keys.OBJECTS) -> None:
        self.inner = inner
        self.race = race
        self.space = space

    def scan(self, start: bytes, end: bytes, limit: int = 0) -> Any:
        d = self.inner.scan(start, end, limit)
        if start.startswith(self.space) and self.race is not None:
            race, self.race = self.race, None
            d.addCallback(lambda rows: race().addCallback(lambda _: rows))
        return d

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.mark.parametrize("versioning", [None, "Enabled"])
@pytest_twisted.inlineCallbacks
def test_a_racing_overwrite_wins(core: Core, versioning: str | None) -> None:
    """An object overwritten after the scan read it is not deleted (nor
    hidden by a delete marker): the deletion is conditional on the revision
    the scan saw, and is counted as skipped."""
    bucket = yield make_bucket(core, f"race-{(versioning or 'off').lower()}", [LifecycleRule("r", True, expiration_days=1)], versioning)
    yield put(core, bucket, "k", b"old", age=20)
    store = RacingStore(core.store, lambda: put(core, bucket, "k", b"new-data"))
    worker = LifecycleWorker(store, core.objects, core.multipart, FakeClock(), day_seconds=10.0)
    counts = yield worker.run()
    assert (counts.expired, counts.skipped) == (0, 1)
    assert (yield current_keys(core, bucket)) == {"k": 8}


@pytest.mark.parametrize("deleted", ["current", "newer noncurrent"])
@pytest_twisted.inlineCallbacks
def test_a_version_kept_by_newer_noncurrent_versions_after_a_racing_delete_survives(core: Core, deleted: str) -> None:
    """NewerNoncurrentVersions=1 over v1 < v2 < v3 (current): v1 is due,
    v2 is the one noncurrent version kept.  A client deletes v3 (v2 is
    promoted) or v2 by version id after the walk counted v1's newer
    versions: v1 is then the only noncurrent version, which the rule keeps,
    and its deletion is a lost race (skipped).  Before the fix the deletion
    was guarded by v1's own row only, and v1 was deleted."""
    rule = LifecycleRule("keep-1", True, noncurrent_days=1, newer_noncurrent_versions=1)
    bucket = yield make_bucket(core, f"newer-{deleted.replace(' ', '-')}", [rule], "Enabled")
    v1 = yield put(core, bucket, "k", b"one", age=50)
    v2 = yield put(core, bucket, "k", b"two", age=40)
    v3 = yield put(core, bucket, "k", b"three", age=30)
    gone = v3 if deleted == "current" else v2
    store = RacingStore(core.store, lambda: core.objects.delete(bucket, "k", gone.version_id), keys.VERSIONS)
    counts = yield LifecycleWorker(store, core.objects, core.multipart, FakeClock(), day_seconds=10.0).run()
    assert (counts.noncurrent, counts.skipped) == (0, 1)
    left = [v for v, _ in (yield versions_of(core, bucket, "k"))]
    assert left == [v.version_id for v in (v3, v2, v1) if v is not gone]
    counts = yield worker_for(core, FakeClock()).run()  # the next run: v1 is the one kept
    assert (counts.noncurrent, counts.skipped) == (0, 0)
    assert len((yield versions_of(core, bucket, "k"))) == 2


@pytest_twisted.inlineCallbacks
def test_versioning_enabled_during_a_run_keeps_the_object(core: Core) -> None:
    """Versioning turned on after the walk read the bucket as unversioned:
    the expiry does not remove the object for good (skipped); the next run
    sees a versioned bucket and hides it behind a delete marker."""
    bucket = yield make_bucket(core, "race-versioning", [LifecycleRule("r", True, expiration_days=1)])
    yield put(core, bucket, "k", b"kept", age=20)
    store = RacingStore(core.store, lambda: core.set_bucket_versioning(bucket, "Enabled"))
    worker = LifecycleWorker(store, core.objects, core.multipart, FakeClock(), day_seconds=10.0)
    counts = yield worker.run()
    assert (counts.expired, counts.skipped) == (0, 1)
    assert (yield current_keys(core, bucket)) == {"k": 4}
    counts = yield worker_for(core, FakeClock()).run()
    assert counts.expired == 1
    assert [marker for _, marker in (yield versions_of(core, bucket, "k"))] == [True, False]


@pytest_twisted.inlineCallbacks
def test_conditional_delete_refuses_a_changed_version(core: Core) -> None:
    """ObjectManager.delete(if_revision=...) on a noncurrent version whose
    record changed (a tag set rewritten) raises ConflictError and keeps it."""
    bucket = yield make_bucket(core, "cond", [LifecycleRule("r", True, expiration_days=1)], "Enabled")
    first = yield put(core, bucket, "k")
    yield put(core, bucket, "k")
    vprefix = keys.key_versions_prefix(bucket.bucket_id, "k")
    rows = yield core.store.scan(vprefix, prefix_end(vprefix))
    yield core.objects.set_tags(bucket, "k", first.version_id, {"a": "b"})
    with pytest.raises(ConflictError):
        yield core.objects.delete(bucket, "k", first.version_id, if_revision=rows[0].mod_revision)
    assert len((yield versions_of(core, bucket, "k"))) == 2


@pytest_twisted.inlineCallbacks
def test_work_per_run_is_bounded_and_fair(core: Core) -> None:
    """A run stops after max_actions and says so; the next run starts with
    the next bucket, so a bucket with a backlog does not starve the others,
    and comes back to the first: everything is done in the end."""
    first = yield make_bucket(core, "bound-a", [LifecycleRule("r", True, expiration_days=1)])
    second = yield make_bucket(core, "bound-b", [LifecycleRule("r", True, expiration_days=1)])
    for i in range(7):
        yield put(core, first, f"k{i}", age=20)
    yield put(core, second, "only", age=20)
    worker = worker_for(core, FakeClock(), max_actions=3, page=2)
    counts = yield worker.run()
    assert (counts.expired, counts.truncated) == (3, True)
    assert len((yield current_keys(core, first))) == 4
    counts = yield worker.run()
    assert (yield current_keys(core, second)) == {}  # its turn came although bound-a has more
    runs = [(counts.expired, counts.truncated)]
    for _ in range(2):
        counts = yield worker.run()
        runs.append((counts.expired, counts.truncated))
    assert runs == [(3, True), (2, False), (0, False)]
    assert (yield current_keys(core, first)) == {}


class FailingObjects:
    """ObjectManager whose deletes of one key fail."""

    def __init__(self, inner: Any, bad: str) -> None:
        self.inner = inner
        self.bad = bad

    def delete(self, bucket: Any, key: str, *args: Any, **kw: Any) -> Any:
        if key == self.bad:
            raise RuntimeError("disk on fire")
        return self.inner.delete(bucket, key, *args, **kw)


@pytest_twisted.inlineCallbacks
def test_with_real_days_a_bucket_is_walked_once_a_day(core: Core) -> None:
    """Due times fall on midnights UTC, so a bucket walked completely is
    skipped by the rest of that day's runs, and walked again after the next
    midnight, after its record changed, or after a run cut short in it."""
    bucket = yield make_bucket(core, "daily", [LifecycleRule("r", True, expiration_days=1)])
    first = yield put(core, bucket, "a")
    due = due_ms(first.created_at, 1)
    clock = FakeClock()
    clock.offset = (due - 3_600_000) / 1000 - time.time()  # an hour before it falls due
    worker = LifecycleWorker(core.store, core.objects, core.multipart, clock, max_actions=1)
    counts = yield worker.run()
    assert (counts.buckets, counts.expired) == (1, 0)
    counts = yield worker.run()
    assert counts.buckets == 0  # walked today, nothing can have fallen due
    bucket = yield core.buckets.set_lifecycle(bucket, [LifecycleRule("r", True, expiration_days=1)])
    counts = yield worker.run()
    assert counts.buckets == 1  # the record changed: walked again
    yield put(core, bucket, "b")
    clock.offset += 2 * 3600  # past midnight: both are due, one action per run
    counts = yield worker.run()
    assert (counts.buckets, counts.expired, counts.truncated) == (1, 1, True)
    counts = yield worker.run()  # cut short in this bucket: walked again the same day
    assert (counts.buckets, counts.expired) == (1, 1)
    assert (yield current_keys(core, bucket)) == {}
    counts = yield worker.run()  # that run reached the limit too: one more walk, now complete
    assert (counts.buckets, counts.expired, counts.truncated) == (1, 0, False)
    counts = yield worker.run()
    assert counts.buckets == 0


@pytest_twisted.inlineCallbacks
def test_the_walk_of_the_day_is_shared_by_every_server(core: Core) -> None:
    """The walk of the day is recorded in the store: a second server (or a
    restarted one) skips a bucket walked today; a walk under way elsewhere
    keeps others off until CLAIM_SECONDS have passed; the record of a bucket
    that lost its rules is dropped."""
    bucket = yield make_bucket(core, "shared", [LifecycleRule("r", True, expiration_days=1)])
    yield put(core, bucket, "a")

    def server() -> LifecycleWorker:
        return LifecycleWorker(core.store, core.objects, core.multipart, FakeClock())

    counts = yield server().run()
    assert counts.buckets == 1
    counts = yield server().run()
    assert counts.buckets == 0  # another server, or this one restarted: walked today
    walk_key = keys.lifecycle_walk_key(bucket.bucket_id)
    kv = yield core.store.get(walk_key)
    record = json.loads(kv.value)
    assert record["done"] is True
    # A walk another server started a minute ago and has not finished.
    record.update(done=False, at=int((time.time() - 60) * 1000))
    yield core.store.txn([], [Put(walk_key, json.dumps(record).encode())])
    counts = yield server().run()
    assert counts.buckets == 0
    # ... or started longer ago than a claim lasts: that server may be gone.
    record.update(at=int((time.time() - CLAIM_SECONDS - 60) * 1000))
    yield core.store.txn([], [Put(walk_key, json.dumps(record).encode())])
    counts = yield server().run()
    assert counts.buckets == 1
    yield core.buckets.delete_lifecycle(bucket)
    yield server().run()
    assert (yield core.store.get(walk_key)) is None


@pytest_twisted.inlineCallbacks
def test_one_failure_does_not_stop_the_walk(core: Core) -> None:
    """A failing deletion is counted and logged; the others still happen."""
    bucket = yield make_bucket(core, "failing", [LifecycleRule("r", True, expiration_days=1)])
    for key in ("a", "b", "c"):
        yield put(core, bucket, key, age=20)
    worker = LifecycleWorker(core.store, FailingObjects(core.objects, "b"), core.multipart, FakeClock(), day_seconds=10.0)  # type: ignore[arg-type]
    counts = yield worker.run()
    assert (counts.expired, counts.failed) == (2, 1)
    assert (yield current_keys(core, bucket)) == {"b": 1}


def test_service_runs_each_interval_and_survives_failures() -> None:
    """The service runs the worker one interval after start and then every
    interval, hands the counts to on_run, and a failing run does not stop it."""
    clock = Clock()
    seen: list[LifecycleCounts] = []

    class Worker:
        calls = 0

        def run(self) -> Any:
            from twisted.internet.defer import fail, succeed

            self.calls += 1
            if self.calls == 2:
                return fail(RuntimeError("boom"))
            return succeed(LifecycleCounts(expired=self.calls))

    worker = Worker()
    service = LifecycleService(worker, clock, interval_seconds=60, on_run=seen.append)  # type: ignore[arg-type]
    service.startService()
    assert worker.calls == 0
    for _ in range(3):
        clock.advance(60)
    service.stopService()
    assert worker.calls == 3
    assert [c.expired for c in seen] == [1, 3]


def test_metrics_count_each_run() -> None:
    """lightningstor_lifecycle_actions_total{action} adds up every run's
    counts, and each label is exposed from the first run on."""
    from lightningstor.metrics import S3Metrics

    metrics = S3Metrics()
    metrics.lifecycle_finished(LifecycleCounts(expired=2, aborted=1))
    metrics.lifecycle_finished(LifecycleCounts(expired=1, skipped=4))
    samples = {
        s.labels["action"]: s.value
        for m in metrics.registry.collect()
        for s in m.samples
        if s.name == "lightningstor_lifecycle_actions_total"
    }
    assert samples == {"expired": 3, "noncurrent": 0, "markers": 0, "aborted": 1, "skipped": 4, "failed": 0}
