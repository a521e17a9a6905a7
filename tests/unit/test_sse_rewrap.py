"""``sse rewrap`` (core/sse_rewrap.py, KeyManager.rewrap, admin_sse.py):
stored SSE-S3 data keys wrapped under an older master key line are wrapped
again under the first line, so the older line can leave the file.

On a real Core (SQLite store, local backend): objects, noncurrent versions
and multipart uploads written under an old line read back, byte for byte,
with the new line alone after the walk and not before it; records already
current, SSE-C and unencrypted ones are not written at all; a lost
compare-and-swap is retried on the record as re-read (a concurrent change
survives); a key no line opens is counted and listed without stopping the
walk; a record that moves between key spaces during a walk is caught by the
next one.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from cryptography.fernet import Fernet
from twisted.internet.defer import inlineCallbacks, maybeDeferred

from lightningstor.admin_sse import print_report
from lightningstor.core import keys, records
from lightningstor.core.multipart import PartRef
from lightningstor.core.objects import PutAttrs
from lightningstor.core.service import Core
from lightningstor.core.sse import CustomerKey, KeyManager, KeyUnavailable
from lightningstor.core.sse_rewrap import RewrapReport, plan, rewrap_all
from lightningstor.core.types import Bucket, ObjectRecord, Principal
from lightningstor.interfaces.metadata import prefix_end
from tests.unit.core_helpers import drain

ALICE = Principal("alice", "org-a")
OLD = Fernet.generate_key()
NEW = Fernet.generate_key()
ROTATED = NEW + b"\n" + OLD + b"\n"
MIN_PART = 1000
CUSTOMER = CustomerKey(bytes(range(32)), base64.b64encode(hashlib.md5(bytes(range(32))).digest()).decode())


@pytest.fixture
def core(make_core: Any) -> Core:
    c: Core = make_core(fsync=False, chunk_size=4096, piece_size=1024, inline_threshold=512)
    c.multipart.min_part_size = MIN_PART
    use_keys(c, OLD)
    return c


def use_keys(core: Core, master_key: bytes) -> None:
    """The Core as a server started with this master key file."""
    core.sse = KeyManager(master_key)
    core.multipart.sse = core.sse


@inlineCallbacks
def put(core: Core, bucket: Bucket, key: str, data: bytes, requested: str | None = "AES256",
        customer: CustomerKey | None = None) -> Any:
    """Deferred[ObjectRecord]: a write as PutObject makes it (SSE-S3 by default)."""
    writer = core.new_writer(bucket, key, requested, customer=customer)
    writer.write(data)
    result = yield writer.finish()
    record = core.objects.new_record(key, result, PutAttrs(), {})
    committed = yield core.objects.commit(bucket, record, PutAttrs())
    return committed


@inlineCallbacks
def read(core: Core, record: ObjectRecord, customer: CustomerKey | None = None) -> Any:
    """Deferred[bytes]: the whole object, decrypted with the Core's current keys."""
    reader = yield core.open_reader(record, 0, record.size, customer)
    data = yield drain(reader)
    return data


@inlineCallbacks
def rows(core: Core) -> Any:
    """Deferred[dict[bytes, KeyValue]]: every object, version and upload record."""
    found = {}
    for space in (keys.OBJECTS, keys.VERSIONS, keys.UPLOADS):
        for kv in (yield core.store.scan(space, prefix_end(space))):
            found[kv.key] = kv
    return found


def fields_and_tail(value: bytes) -> tuple[dict[str, Any], bytes]:
    end = value.find(b"\x00")
    head, tail = (value, b"") if end < 0 else (value[:end], value[end:])
    return json.loads(head), tail


def body(size: int, tag: str) -> bytes:
    return (tag.encode() * (size // len(tag) + 1))[:size]


# -- KeyManager.rewrap ----------------------------------------------------------------


def test_key_manager_rewrap() -> None:
    """Under an older line: a new wrapping (fresh nonce) under the first
    line, of the same data key, bound to the same object key; under the
    first line already: None; under no line: KeyUnavailable; SSE-C: refused."""
    old_cipher = KeyManager(OLD).new_cipher("photos/cat.jpg")
    rotated = KeyManager(ROTATED)
    wrapped = rotated.rewrap(old_cipher.encryption, "photos/cat.jpg")
    assert wrapped is not None and wrapped != old_cipher.encryption.wrapped_key
    assert len(wrapped) == len(old_cipher.encryption.wrapped_key)
    moved = type(old_cipher.encryption)("AES256", wrapped, old_cipher.encryption.inline_nonce)
    assert KeyManager(NEW).cipher(moved, "photos/cat.jpg")._key == old_cipher._key
    with pytest.raises(KeyUnavailable):
        KeyManager(NEW).cipher(moved, "photos/dog.jpg")
    assert rotated.rewrap(moved, "photos/cat.jpg") is None
    again = rotated.rewrap(old_cipher.encryption, "photos/cat.jpg")
    assert again is not None and again[:12] != wrapped[:12]  # fresh nonce every time
    with pytest.raises(KeyUnavailable):
        rotated.rewrap(old_cipher.encryption, "photos/dog.jpg")
    with pytest.raises(KeyUnavailable):
        KeyManager(Fernet.generate_key()).rewrap(old_cipher.encryption, "photos/cat.jpg")
    with pytest.raises(ValueError):
        rotated.rewrap(rotated.customer_cipher(CUSTOMER).encryption, "photos/cat.jpg")


def test_plan_changes_only_the_wrapped_key() -> None:
    """A rewritten record is the same JSON with only ``sse.k`` replaced, and
    an object record's inline data (after the NUL) byte for byte."""
    enc = KeyManager(OLD).new_cipher("k").encryption
    record = ObjectRecord("k", 5, "e" * 32, 1, metadata={"m": "ünï"}, tags={"t": "v"}, inline=b"\x00a\x00b\xff",
                          checksums={"crc32": "AAAAAA=="}, encryption=enc)
    value = records.encode_object(record)
    verdict, new = plan(KeyManager(ROTATED), value)
    assert verdict == "rewrap" and isinstance(new, bytes)
    before, tail_before = fields_and_tail(value)
    after, tail_after = fields_and_tail(new)
    assert tail_after == tail_before == b"\x00\x00a\x00b\xff"
    assert after["sse"]["k"] != before["sse"]["k"]
    after["sse"]["k"] = before["sse"]["k"]
    assert after == before
    assert list(after) == list(before)  # field order too
    assert plan(KeyManager(NEW), new)[0] == "current"
    assert plan(KeyManager(ROTATED), records.encode_object(ObjectRecord("p", 0, "e", 1))) == ("plain", None)
    assert plan(KeyManager(ROTATED), b"{not json")[0] == "unreadable"
    odd = dict(before, key=7)
    assert plan(KeyManager(ROTATED), json.dumps(odd).encode())[0] == "unreadable"
    ssec = KeyManager(OLD).customer_cipher(CUSTOMER).encryption
    assert plan(KeyManager(ROTATED), records.encode_object(ObjectRecord("c", 1, "e", 1, encryption=ssec))) == (
        "customer", None)


# -- the walk on a real Core -----------------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_rewrap_objects_versions_and_leaves_the_rest(core: Core) -> None:
    bucket = yield core.buckets.create(ALICE, "rewrap")
    bucket = yield core.set_bucket_versioning(bucket, "Enabled")
    small, big = body(100, "small"), body(10_000, "big-chunked")
    v1, v2 = body(3000, "version-one"), body(200, "version-two")
    plain = body(700, "plain")
    written = {
        "small": (yield put(core, bucket, "small", small)),
        "big": (yield put(core, bucket, "big", big)),
        "v-old": (yield put(core, bucket, "v", v1)),
        "v-new": (yield put(core, bucket, "v", v2)),
        "gone": (yield put(core, bucket, "gone", small)),
        "plain": (yield put(core, bucket, "plain", plain, requested=None)),
        "ssec": (yield put(core, bucket, "ssec", big, requested=None, customer=CUSTOMER)),
    }
    assert written["big"].inline is None and len(written["big"].chunks) > 1
    assert written["small"].inline is not None
    yield core.objects.delete(bucket, "gone")  # a delete marker over an encrypted version
    # The rotation: a new first line; servers restarted write under it.
    use_keys(core, ROTATED)
    written["fresh"] = yield put(core, bucket, "fresh", small)
    before = yield rows(core)
    old_only = 5  # small, big, v (both versions), the version under gone's delete marker
    # Nothing opens those with the new line alone yet.
    use_keys(core, NEW)
    for name in ("small", "big", "v-old", "v-new"):
        with pytest.raises(KeyUnavailable):
            core.cipher_of(written[name])

    report = yield rewrap_all(core.store, ROTATED)
    assert (report.checked, report.rewrapped, report.current, report.unreadable) == (old_only + 1, old_only, 1, 0)
    assert (report.customer, report.plain, report.conflicts, report.gone) == (1, 2, 0, 0)
    assert report.records == len(before) and report.settled and report.ok and report.passes == 2
    after = yield rows(core)
    assert set(after) == set(before)
    changed = {k for k in before if before[k].mod_revision != after[k].mod_revision}
    unchanged_values = {k: before[k].value for k in before if k not in changed}
    # The current one, SSE-C, the unencrypted object and the delete marker: not written.
    fresh_key = keys.object_key(bucket.bucket_id, "fresh")
    assert fresh_key in unchanged_values
    assert keys.object_key(bucket.bucket_id, "ssec") in unchanged_values
    assert keys.object_key(bucket.bucket_id, "plain") in unchanged_values
    assert keys.object_key(bucket.bucket_id, "gone") in unchanged_values
    assert len(changed) == report.rewrapped
    for k in changed:
        old_fields, old_tail = fields_and_tail(before[k].value)
        new_fields, new_tail = fields_and_tail(after[k].value)
        assert new_tail == old_tail
        assert new_fields["sse"]["k"] != old_fields["sse"]["k"]
        new_fields["sse"]["k"] = old_fields["sse"]["k"]
        assert new_fields == old_fields

    # The new line alone now opens every version, current and noncurrent.
    use_keys(core, NEW)
    expect = {"small": small, "big": big, "v-old": v1, "v-new": v2, "gone": small, "fresh": small}
    for name, data in expect.items():
        stored = yield core.objects.get_version(bucket, written[name].key, written[name].version_id)
        assert (yield read(core, stored)) == data, name
    stored = yield core.objects.head(bucket, "ssec")
    assert (yield read(core, stored, CUSTOMER)) == big
    stored = yield core.objects.head(bucket, "plain")
    assert (yield read(core, stored)) == plain

    # A second run finds nothing to do and writes nothing.
    again = yield rewrap_all(core.store, ROTATED)
    assert (again.rewrapped, again.current, again.passes, again.ok) == (0, old_only + 1, 1, True)
    assert {k: kv.mod_revision for k, kv in (yield rows(core)).items()} == {
        k: kv.mod_revision for k, kv in after.items()}


@pytest_twisted.inlineCallbacks
def test_multipart_upload_rewrapped_and_completes(core: Core) -> None:
    """An upload in progress (its key in the upload record, parts written
    under it) is rewrapped; with the new line alone another part is
    written, the upload completes and reads back whole."""
    bucket = yield core.buckets.create(ALICE, "mpu")
    mp = core.multipart
    upload = yield mp.create(bucket, "obj", PutAttrs(encryption="AES256"), initiator=ALICE)
    assert upload.encryption is not None
    data = [body(1500, "part-one"), body(2500, "part-two"), body(700, "part-three")]
    parts = []
    for number, chunk in enumerate(data[:2], 1):
        writer = mp.new_part_writer(upload)
        writer.write(chunk)
        result = yield writer.finish()
        parts.append((yield mp.commit_part(upload, number, result, {})))

    use_keys(core, NEW)
    stale = yield mp.get(bucket, "obj", upload.upload_id)
    with pytest.raises(KeyUnavailable):
        mp.new_part_writer(stale)
    report = yield rewrap_all(core.store, ROTATED)
    assert (report.rewrapped, report.checked, report.ok) == (1, 1, True)

    stored = yield mp.get(bucket, "obj", upload.upload_id)
    assert stored.encryption.wrapped_key != upload.encryption.wrapped_key
    assert stored.encryption.inline_nonce == upload.encryption.inline_nonce
    writer = mp.new_part_writer(stored)  # opens with NEW alone now
    writer.write(data[2])
    result = yield writer.finish()
    parts.append((yield mp.commit_part(stored, 3, result, {})))
    done = yield mp.complete(bucket, "obj", upload.upload_id, [PartRef(p.part_number, p.etag) for p in parts])
    assert (yield read(core, done.record)) == b"".join(data)
    current = yield core.objects.head(bucket, "obj")
    assert (yield read(core, current)) == b"".join(data)


class ConflictingStore:
    """Delegates to a store; before the first compare-and-swap of each
    record key in ``targets``, runs ``meanwhile(key)`` (a concurrent server's
    write), so the walk's compare loses once."""

    def __init__(self, inner: Any, targets: set[bytes], meanwhile: Any) -> None:
        self.inner = inner
        self.targets = targets
        self.meanwhile = meanwhile
        self.lost: list[bytes] = []

    @inlineCallbacks
    def txn(self, compares: Any, operations: Any) -> Any:
        key = compares[0].key if compares else None
        if key in self.targets:
            self.targets.discard(key)
            self.lost.append(key)
            yield self.meanwhile(key)
        result = yield self.inner.txn(compares, operations)
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest_twisted.inlineCallbacks
def test_lost_compare_is_retried_on_the_record_as_reread(core: Core) -> None:
    """A tag change committed between the walk's read and its write wins
    the compare; the walk reads the record again and rewraps that one, so
    the change survives; a record deleted meanwhile is skipped."""
    bucket = yield core.buckets.create(ALICE, "race")
    yield put(core, bucket, "tagged", body(100, "tagged"))
    yield put(core, bucket, "deleted", body(100, "deleted"))
    tagged_key = keys.object_key(bucket.bucket_id, "tagged")
    deleted_key = keys.object_key(bucket.bucket_id, "deleted")

    def meanwhile(key: bytes) -> Any:
        if key == tagged_key:
            return core.objects.set_tags(bucket, "tagged", None, {"during": "rewrap"})
        return core.objects.delete(bucket, "deleted")

    racing = ConflictingStore(core.store, {tagged_key, deleted_key}, meanwhile)
    report = yield rewrap_all(racing, ROTATED)
    assert sorted(racing.lost) == sorted([tagged_key, deleted_key])
    assert (report.conflicts, report.gone, report.rewrapped, report.ok) == (2, 1, 1, True)
    use_keys(core, NEW)
    stored = yield core.objects.head(bucket, "tagged")
    assert stored.tags == {"during": "rewrap"}
    assert (yield read(core, stored)) == body(100, "tagged")
    assert (yield core.objects.find(bucket, "deleted")) is None


@pytest_twisted.inlineCallbacks
def test_unreadable_key_is_counted_and_the_walk_goes_on(core: Core) -> None:
    bucket = yield core.buckets.create(ALICE, "lost")
    yield put(core, bucket, "a", body(100, "aaa"))
    use_keys(core, Fernet.generate_key())  # another deployment's key file
    yield put(core, bucket, "foreign", body(100, "foreign"))
    use_keys(core, OLD)
    yield put(core, bucket, "z", body(5000, "zzz"))
    foreign_key = keys.object_key(bucket.bucket_id, "foreign")
    foreign_before = yield core.store.get(foreign_key)

    report = yield rewrap_all(core.store, ROTATED)
    assert (report.checked, report.rewrapped, report.unreadable, report.ok) == (3, 2, 1, False)
    assert [(u.record_key, u.object_key) for u in report.unreadable_keys] == [(foreign_key, "foreign")]
    assert (yield core.store.get(foreign_key)).mod_revision == foreign_before.mod_revision
    use_keys(core, NEW)
    for name, data in (("a", body(100, "aaa")), ("z", body(5000, "zzz"))):
        stored = yield core.objects.head(bucket, name)
        assert (yield read(core, stored)) == data
    out = io.StringIO()
    assert print_report(report, out, as_json=False) == 3
    assert "unreadable:         1" in out.getvalue() and "foreign" in out.getvalue()
    out = io.StringIO()
    assert print_report(report, out, as_json=True) == 3
    shown = json.loads(out.getvalue())
    assert (shown["unreadable"], shown["rewrapped"], shown["ok"]) == (1, 2, False)
    assert shown["unreadable_keys"][0]["key"] == "foreign"


class HookedScans:
    """Delegates to a store; ``hook(start, walk)`` runs before each scan
    that begins a key space (``walk`` counts scans of ``keys.UPLOADS``)."""

    def __init__(self, inner: Any, hook: Any) -> None:
        self.inner = inner
        self.hook = hook
        self.walk = 0

    @inlineCallbacks
    def scan(self, start: bytes, end: bytes, limit: int = 0) -> Any:
        if start == keys.UPLOADS:
            self.walk += 1
        yield maybeDeferred(self.hook, start, self.walk)
        found = yield self.inner.scan(start, end, limit)
        return found

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest_twisted.inlineCallbacks
def test_a_version_promoted_during_the_walk_is_caught_by_the_next(core: Core) -> None:
    """The current version is deleted after the walk read ``objects/`` and
    before it reads ``versions/``: the noncurrent version, still under the
    old line, moves into the range already read.  One walk misses it; the
    walk that follows (a walk rewrapped something) catches it."""
    bucket = yield core.buckets.create(ALICE, "moves")
    bucket = yield core.set_bucket_versioning(bucket, "Enabled")
    first = yield put(core, bucket, "k", body(300, "first"))
    second = yield put(core, bucket, "k", body(300, "second"))

    def hook(start: bytes, walk: int) -> Any:
        if walk == 1 and start == keys.VERSIONS:
            return core.objects.delete(bucket, "k", second.version_id)
        return None

    report = yield rewrap_all(HookedScans(core.store, hook), ROTATED, max_passes=1)
    assert (report.rewrapped, report.settled, report.ok) == (1, False, False)  # the walk missed one
    out = io.StringIO()
    assert print_report(report, out, as_json=False) == 3 and "run again" in out.getvalue()

    report = yield rewrap_all(core.store, ROTATED)
    assert (report.rewrapped, report.passes, report.ok) == (1, 2, True)
    use_keys(core, NEW)
    stored = yield core.objects.head(bucket, "k")
    assert stored.version_id == first.version_id
    assert (yield read(core, stored)) == body(300, "first")


@pytest_twisted.inlineCallbacks
def test_promotion_during_a_walk_settles_by_itself(core: Core) -> None:
    bucket = yield core.buckets.create(ALICE, "moves2")
    bucket = yield core.set_bucket_versioning(bucket, "Enabled")
    yield put(core, bucket, "k", body(300, "first"))
    second = yield put(core, bucket, "k", body(300, "second"))

    def hook(start: bytes, walk: int) -> Any:
        if walk == 1 and start == keys.VERSIONS:
            return core.objects.delete(bucket, "k", second.version_id)
        return None

    report = yield rewrap_all(HookedScans(core.store, hook), ROTATED)
    assert (report.rewrapped, report.passes, report.ok) == (2, 3, True)
    use_keys(core, NEW)
    assert (yield read(core, (yield core.objects.head(bucket, "k")))) == body(300, "first")


@pytest_twisted.inlineCallbacks
def test_an_unreadable_key_promoted_during_a_walk_is_reported(core: Core) -> None:
    """A version whose key no line opens, promoted into objects/ after the
    first walk read that range, is found by the second walk: it is counted
    and listed (exit status 3), never reported as opening with the first
    line; a third walk does not count it again."""
    bucket = yield core.buckets.create(ALICE, "lostmove")
    bucket = yield core.set_bucket_versioning(bucket, "Enabled")
    yield put(core, bucket, "a", body(100, "aaa"))  # rewrapped by walk 1, so walk 2 runs
    use_keys(core, Fernet.generate_key())  # a key file none of ROTATED's lines holds
    yield put(core, bucket, "k", body(300, "lost"))
    use_keys(core, OLD)
    second = yield put(core, bucket, "k", body(300, "second"))

    def hook(start: bytes, walk: int) -> Any:
        if walk == 1 and start == keys.VERSIONS:  # objects/ read, versions/ not yet
            return core.objects.delete(bucket, "k", second.version_id)  # promotes the lost key
        return None

    report = yield rewrap_all(HookedScans(core.store, hook), ROTATED, max_passes=3)
    out = io.StringIO()
    assert print_report(report, out, as_json=False) == 3
    assert report.unreadable == 1 and not report.ok
    assert [u.object_key for u in report.unreadable_keys] == ["k"]


@pytest_twisted.inlineCallbacks
def test_a_server_still_on_the_old_line_keeps_it_unsettled(core: Core) -> None:
    """A server not restarted with the new file writes keys under the old
    line during every walk: the walks stop at ``max_passes`` and the report
    does not say the old line may go."""
    bucket = yield core.buckets.create(ALICE, "laggard")
    counter = iter(range(100))

    def hook(start: bytes, walk: int) -> Any:
        if start == keys.UPLOADS:
            return put(core, bucket, f"new-{next(counter)}", body(100, "late"))  # core still on OLD
        return None

    report = yield rewrap_all(HookedScans(core.store, hook), ROTATED, max_passes=3)
    assert (report.passes, report.settled, report.ok, report.rewrapped) == (3, False, False, 3)


# -- the console script ------------------------------------------------------------------


def _admin(data: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lightningstor.admin", *argv, "--data-dir", str(data)],
        capture_output=True, text=True, timeout=60, cwd=str(data.parent),
        env={k: v for k, v in os.environ.items() if not k.startswith("LIGHTNINGSTOR_")},
    )


def test_console_script_refuses_without_a_master_key_file(tmp_path: Path) -> None:
    """A wrong --data-dir: exit status 2, and nothing is created there (no
    key file that would open nothing, no database)."""
    data = tmp_path / "nowhere"
    done = _admin(data, "sse", "rewrap")
    assert done.returncode == 2, done.stderr
    assert "no master key file" in done.stderr
    assert not data.exists()


def test_console_script_reports_counts_as_json(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "master.key").write_bytes(ROTATED)
    (data / "metadata.db").touch()  # an empty store: the command creates none (a wrong --data-dir)
    done = _admin(data, "sse", "rewrap", "--json")
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert shown == {**RewrapReport(passes=1, settled=True).as_dict(), "ok": True}
    text = _admin(data, "sse", "rewrap")
    assert text.returncode == 0 and "rewrapped:          0" in text.stdout
    bad = _admin(data, "sse", "rewrap", "--max-passes", "0")
    assert bad.returncode == 2
