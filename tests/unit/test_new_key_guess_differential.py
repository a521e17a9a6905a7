"""The new-key guess (core/newkeys.py) changes no outcome: the same random
sequence of writes, run on two real cores (SQLite store, local backend, in
process), one that guesses on every commit and one that never guesses,
leaves the same versions, data, usage and errors.

Why a differential test: a guess that is wrong costs a failed transaction
and a second, read attempt.  Whatever the write was (an overwrite in an
unversioned bucket, a new version or null version, a delete marker, a
copy onto an existing key, a multipart completion, an object whose chunk
list is paged, a write refused by a quota, a write with a stale copy of
its bucket), the retry must end exactly where the read would have.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Any

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import gatherResults, inlineCallbacks
from twisted.internet.task import deferLater

from lightningstor.core import keys, manifests, records
from lightningstor.core.multipart import PartRef
from lightningstor.core.objects import PutAttrs
from lightningstor.core.quotas import ZERO, record_usage
from lightningstor.core.service import Core
from lightningstor.core.types import Bucket, Principal
from lightningstor.core.versions import wire_version_id
from lightningstor.interfaces.metadata import prefix_end
from tests.unit.conftest import CoreFactory
from tests.unit.core_helpers import put_object, read_object

ALICE = Principal("alice", "org-a")
KEYS = ["a", "b", "c"]
SIZES = [0, 100, 700, 3000, 9000]  # inline up to 512; 4 KiB chunks; paged past 2 chunks


def _core(tmp_path: Path, name: str, pools: Any, guess: bool) -> tuple[CoreFactory, Core]:
    factory = CoreFactory(tmp_path / name, pools)
    (tmp_path / name).mkdir()
    core = factory(fsync=False, chunk_size=4096, inline_threshold=512)
    core.objects.chunks_per_record = 2
    core.multipart.min_part_size = 1000
    if guess:
        # Every first attempt assumes the key is new, whatever the cache holds.
        core.objects._held = lambda okey: False  # type: ignore[method-assign]
        core.objects.new_keys.likely = lambda: True  # type: ignore[method-assign]
    else:
        core.objects.new_keys.likely = lambda: False  # type: ignore[method-assign]
    return factory, core


@inlineCallbacks
def _state(core: Core, bucket: Bucket) -> Any:
    """Every version of every key, oldest first, as (current, marker, null,
    size, etag, md5 of the data read back); and the checks that hold on
    any store: usage equals the versions stored, every chunk is indexed."""
    rows = yield core.store.scan(keys.objects_prefix(bucket.bucket_id), prefix_end(keys.objects_prefix(bucket.bucket_id)))
    rows += yield core.store.scan(
        keys.versions_prefix(bucket.bucket_id), prefix_end(keys.versions_prefix(bucket.bucket_id))
    )
    current = {bytes(r.key) for r in rows if r.key.startswith(keys.objects_prefix(bucket.bucket_id))}
    out: dict[str, list[Any]] = {}
    total = ZERO
    for row in rows:
        record = records.decode_object(row.value)
        total += record_usage(record)
        digest = None
        if not record.delete_marker:
            data = yield read_object(core, record)
            assert len(data) == record.size
            digest = hashlib.md5(data).hexdigest()
            chunks = record.chunks
            if record.manifest is not None:
                chunks = yield manifests.load(core.store, record.manifest)
            for chunk in chunks:
                assert (yield core.store.get(keys.chunk_key(chunk.chunk_id))) is not None
        out.setdefault(record.key, []).append(
            (record.sequence, row.key in current, record.delete_marker, record.version_id is None,
             record.size, record.etag, digest, record.null_sequence is not None)  # fmt: skip
        )
    usage = yield core.quotas.usage(bucket.org_id, bucket.project_id, bucket.bucket_id)
    assert usage.bytes == total.bytes and usage.objects == total.objects, (usage, total)
    return {k: sorted(v) for k, v in out.items()}


@inlineCallbacks
def _chunks_agree(core: Core) -> Any:
    """Every indexed chunk has its file (nothing a record lists was freed)
    and every file is indexed (nothing leaked), once deletions settled."""
    yield deferLater(reactor, 0.3, lambda: None)
    infos = yield core.backend.list_chunks()
    files = {i.chunk_id for i in infos}
    rows = yield core.store.scan(keys.CHUNKS, prefix_end(keys.CHUNKS))
    indexed = {bytes(r.key[len(keys.CHUNKS):]).decode() for r in rows}
    assert indexed <= files, sorted(indexed - files)[:5]
    assert files <= indexed, sorted(files - indexed)[:5]
    return len(files)


@inlineCallbacks
def _multipart(core: Core, bucket: Bucket, key: str, data: bytes) -> Any:
    mp = core.multipart
    upload = yield mp.create(bucket, key, PutAttrs(), initiator=ALICE)
    refs = []
    for number, piece in enumerate([data[:1500], data[1500:]], 1):
        writer = mp.new_part_writer(upload)
        writer.write(piece)
        result = yield writer.finish()
        try:
            part = yield mp.commit_part(upload, number, result, {})
        except BaseException:
            yield writer.abort()  # as the S3 handler does: the caller deletes what it wrote
            raise
        refs.append(PartRef(part.part_number, part.etag))
    done = yield mp.complete(bucket, key, upload.upload_id, refs)
    return done.record


class _Runner:
    """One core and its current (and one stale) copy of each bucket."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self.buckets: dict[str, Bucket] = {}
        self.stale: dict[str, Bucket] = {}

    @inlineCallbacks
    def setup(self) -> Any:
        yield self.core.quotas.set_limits("org-a", None, {"max_total_size_bytes": 100000})
        for name in ("plain", "versioned", "toggled"):
            self.buckets[name] = yield self.core.buckets.create(ALICE, name)
        self.buckets["versioned"] = yield self.core.set_bucket_versioning(self.buckets["versioned"], "Enabled")
        # Full with its three keys: a guess (planned as one more object) is
        # refused, the overwrite it really is is not.
        yield self.core.quotas.set_bucket_quota(self.buckets["plain"], {"max_objects": 3})
        yield self.core.quotas.set_bucket_quota(self.buckets["toggled"], {"max_objects": 10})
        self.stale = dict(self.buckets)

    @inlineCallbacks
    def version_ids(self, name: str, key: str) -> Any:
        bucket = self.buckets[name]
        rows = yield self.core.store.scan(keys.key_versions_prefix(bucket.bucket_id, key),
                                          prefix_end(keys.key_versions_prefix(bucket.bucket_id, key)))  # fmt: skip
        found = [records.decode_object(r.value) for r in rows]
        kv = yield self.core.store.get(keys.object_key(bucket.bucket_id, key))
        if kv is not None:
            found.append(records.decode_object(kv.value))
        return [wire_version_id(r.version_id) for r in sorted(found, key=lambda r: r.sequence)]

    @inlineCallbacks
    def run(self, op: tuple[Any, ...]) -> Any:
        """The outcome of ``op``: what it returned that both cores share, or its error's name."""
        try:
            result = yield self._run(op)
        except Exception as e:  # QuotaExceeded, PreconditionFailed...: compared by name
            return type(e).__name__
        return result

    @inlineCallbacks
    def _run(self, op: tuple[Any, ...]) -> Any:
        kind, name, key = op[0], op[1], op[2]
        core = self.core
        bucket = self.stale[name] if kind.endswith("-stale") else self.buckets[name]
        if kind in ("put", "put-stale"):
            record = yield put_object(core, bucket, key, op[3])
            return ("put", record.version_id is None, record.sequence)
        if kind == "put-if-none-match":
            record = yield put_object(core, bucket, key, op[3], PutAttrs(if_none_match_any=True))
            return ("put", record.version_id is None, record.sequence)
        if kind == "delete":
            outcome = yield core.objects.delete(bucket, key)
            return ("delete", outcome.delete_marker)
        if kind == "delete-version":
            ids = yield self.version_ids(name, key)
            if not ids:
                return "none"
            outcome = yield core.objects.delete(bucket, key, ids[op[3] % len(ids)])
            return ("delete-version", outcome.delete_marker)
        if kind == "copy":
            source = yield core.objects.find(bucket, op[3])
            if source is None or source.delete_marker:
                return "no source"
            record = yield core.copy_object(source, bucket, key, replace_metadata=None, tags=None, owner="alice")
            return ("copy", record.version_id is None, record.sequence, record.size)
        if kind == "multipart":
            record = yield _multipart(core, bucket, key, op[3])
            return ("multipart", record.version_id is None, record.sequence)
        if kind == "versioning":
            self.buckets[name] = yield core.set_bucket_versioning(bucket, op[3])
            return "ok"
        raise AssertionError(op)


def _ops(seed: int, count: int) -> list[tuple[Any, ...]]:
    rng = random.Random(seed)
    ops: list[tuple[Any, ...]] = []
    for _ in range(count):
        name = rng.choice(["plain", "versioned", "toggled"])
        key = rng.choice(KEYS)
        roll = rng.random()
        body = bytes([rng.randrange(256)]) * rng.choice(SIZES)
        if roll < 0.35:
            ops.append(("put", name, key, body))
        elif roll < 0.42:
            ops.append(("put-stale", name, key, body))
        elif roll < 0.48:
            ops.append(("put-if-none-match", name, key, body))
        elif roll < 0.60:
            ops.append(("delete", name, key))
        elif roll < 0.72:
            ops.append(("delete-version", name, key, rng.randrange(8)))
        elif roll < 0.82:
            ops.append(("copy", name, key, rng.choice(KEYS)))
        elif roll < 0.90:
            ops.append(("multipart", name, key, bytes([rng.randrange(256)]) * 2600))
        else:
            ops.append(("versioning", "toggled", key, rng.choice(["Enabled", "Suspended"])))
    return ops


@pytest_twisted.inlineCallbacks
def test_guessing_and_reading_leave_the_same_store(tmp_path: Path, pools: Any) -> Any:
    """Sequential random writes over three buckets (unversioned, Enabled,
    toggled between Enabled and Suspended) and three keys, with an org
    byte limit that refuses some: every outcome and the final versions,
    data and usage are the same with and without the guess, and the
    guessing core did guess wrong (overwrites of existing keys)."""
    fa, guessing = _core(tmp_path, "guess", pools, True)
    fb, reading = _core(tmp_path, "read", pools, False)
    try:
        a, b = _Runner(guessing), _Runner(reading)
        yield a.setup()
        yield b.setup()
        for seed in range(3):
            for i, op in enumerate(_ops(seed, 150)):
                got = yield a.run(op)
                want = yield b.run(op)
                assert got == want, (seed, i, op[:3], got, want)
            for name in a.buckets:
                sa = yield _state(guessing, a.buckets[name])
                sb = yield _state(reading, b.buckets[name])
                assert sa == sb, (seed, name)
            na = yield _chunks_agree(guessing)
            nb = yield _chunks_agree(reading)
            assert na == nb
        assert guessing.objects.new_keys.wrong > 50 and guessing.objects.new_keys.right > 10
        assert reading.objects.new_keys.wrong == reading.objects.new_keys.right == 0
    finally:
        for f in (fa, fb):
            for store in f.stores:
                yield store.close()


@pytest_twisted.inlineCallbacks
def test_concurrent_guessed_writes_keep_every_invariant(tmp_path: Path, pools: Any) -> Any:
    """Waves of concurrent writes to the same few keys, every commit
    guessing first: afterwards usage equals what is stored, every version
    stored reads back whole, and each key's current record is one of the
    wave's writes."""
    factory, core = _core(tmp_path, "conc", pools, True)
    try:
        runner = _Runner(core)
        yield runner.setup()
        rng = random.Random(7)
        for wave in range(25):
            ops = _ops(1000 + wave, 12)
            ops = [op for op in ops if op[0] != "versioning"]
            if wave % 5 == 4:
                yield runner.run(("versioning", "toggled", "a", rng.choice(["Enabled", "Suspended"])))
            yield gatherResults([runner.run(op) for op in ops])
            for name in runner.buckets:
                yield _state(core, runner.buckets[name])
            yield _chunks_agree(core)
        assert core.objects.new_keys.wrong > 20
    finally:
        for store in factory.stores:
            yield store.close()
