"""A commit that assumes its key is new (core/newkeys.py) on the real core:
SQLite store with its read cache, local backend, in process.

The guess saves the read of a key the store cannot answer from memory; a
wrong guess must cost only a retry, never a wrong result.  Keys are made
"unread" by dropping them from the store's cache, as a restart or a full
cache does.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import gatherResults, inlineCallbacks
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from lightningstor import errors
from lightningstor.authz.grants import GrantStore
from lightningstor.authz.local import LocalAuthorizer
from lightningstor.core import keys
from lightningstor.core.credentials import CredentialStore
from lightningstor.core.newkeys import NewKeyGuess
from lightningstor.core.objects import PutAttrs
from lightningstor.core.quotas import Usage
from lightningstor.core.service import Core
from lightningstor.core.types import Bucket, Principal, Versioning
from lightningstor.interfaces.metadata import IPointReadCache
from lightningstor.storage.chunks import ChunkManager
from lightningstor.storage.local import LocalFsBackend
from tests.unit.conftest import CoreFactory
from tests.unit.core_helpers import put_object, read_object

ALICE = Principal("alice", "org-a")


@pytest.fixture
def core(make_core: Any) -> Core:
    return make_core(fsync=False, chunk_size=4096, inline_threshold=512)


class _Reads:
    """Counts the store's point reads of the ``watched`` keys."""

    def __init__(self, core: Core, watched: set[bytes]) -> None:
        self.keys: list[bytes] = []
        inner = core.store.get

        def get(key: bytes) -> Any:
            if key in watched:
                self.keys.append(key)
            return inner(key)

        core.store.get = get  # type: ignore[method-assign]

    def of(self, key: bytes) -> int:
        return self.keys.count(key)


def _okey(bucket: Bucket, key: str) -> bytes:
    return keys.object_key(bucket.bucket_id, key)


def _unread(core: Core, bucket: Bucket, key: str) -> None:
    """Drop ``key``'s record from the store's read cache."""
    core.store.cache.forget(_okey(bucket, key))


@inlineCallbacks
def _usage(core: Core, bucket: Bucket) -> Any:
    usage = yield core.quotas.usage(bucket.org_id, bucket.project_id, bucket.bucket_id)
    return usage


@pytest_twisted.inlineCallbacks
def test_a_new_key_is_committed_without_reading_it(core: Core) -> Any:
    bucket = yield core.buckets.create(ALICE, "fresh")
    reads = _Reads(core, {_okey(bucket, f"k{i}") for i in range(5)})
    for i in range(5):
        yield put_object(core, bucket, f"k{i}", b"new %d" % i)
    assert reads.keys == []
    assert core.objects.new_keys.right == 5 and core.objects.new_keys.wrong == 0
    for i in range(5):
        record = yield core.objects.head(bucket, f"k{i}")
        assert (yield read_object(core, record)) == b"new %d" % i


@pytest_twisted.inlineCallbacks
def test_a_wrong_guess_overwrites_as_a_read_would(core: Core) -> Any:
    """Unversioned: the old object is replaced, its chunks freed, usage counts the new one only."""
    bucket = yield core.buckets.create(ALICE, "plain")
    old = yield put_object(core, bucket, "k", b"o" * 5000)  # chunked
    _unread(core, bucket, "k")
    new = yield put_object(core, bucket, "k", b"n" * 3000)
    assert core.objects.new_keys.wrong == 1
    current = yield core.objects.head(bucket, "k")
    assert current.etag == new.etag and (yield read_object(core, current)) == b"n" * 3000
    assert (yield _usage(core, bucket)) == Usage(3000, 1)
    with pytest.raises(errors.ChunkNotFound):
        yield read_object(core, old)


@pytest_twisted.inlineCallbacks
def test_a_wrong_guess_in_a_versioned_bucket_keeps_the_old_version(core: Core) -> Any:
    bucket = yield core.buckets.create(ALICE, "versioned")
    bucket = yield core.set_bucket_versioning(bucket, "Enabled")
    first = yield put_object(core, bucket, "k", b"first")
    _unread(core, bucket, "k")
    second = yield put_object(core, bucket, "k", b"second")
    assert core.objects.new_keys.wrong == 1
    assert second.sequence == first.sequence + 1
    page = yield core.list_object_versions(bucket)
    assert [(e.version_id, e.is_latest) for e in page.entries] == [
        (second.version_id, True), (first.version_id, False)]  # fmt: skip
    kept = yield core.objects.head(bucket, "k", first.version_id)
    assert (yield read_object(core, kept)) == b"first"
    assert (yield _usage(core, bucket)) == Usage(len(b"first") + len(b"second"), 2)
    assert bucket.versioning is Versioning.ENABLED


@pytest_twisted.inlineCallbacks
def test_a_quota_refusal_of_a_guess_is_decided_on_the_real_record(core: Core) -> Any:
    """Planned as new, an overwrite that fits only once the old object is
    subtracted would be refused; it is decided again after reading the key."""
    yield core.quotas.set_limits("org-a", None, {"max_total_size_bytes": 1500})
    bucket = yield core.buckets.create(ALICE, "limited")
    yield put_object(core, bucket, "k", b"a" * 1000)
    _unread(core, bucket, "k")
    yield put_object(core, bucket, "k", b"b" * 1000)
    assert (yield _usage(core, bucket)) == Usage(1000, 1)
    with pytest.raises(errors.QuotaExceeded):  # a real excess is still refused
        yield put_object(core, bucket, "other", b"c" * 600)


@pytest_twisted.inlineCallbacks
def test_if_match_always_reads_the_key(core: Core) -> Any:
    bucket = yield core.buckets.create(ALICE, "cond")
    old = yield put_object(core, bucket, "k", b"old")
    _unread(core, bucket, "k")
    reads = _Reads(core, {_okey(bucket, "k")})
    yield put_object(core, bucket, "k", b"new", PutAttrs(if_match=f'"{old.etag}"'))
    assert reads.of(_okey(bucket, "k")) == 1
    assert core.objects.new_keys.wrong == 0
    _unread(core, bucket, "k")
    with pytest.raises(errors.PreconditionFailed):
        yield put_object(core, bucket, "k", b"newer", PutAttrs(if_match=f'"{old.etag}"'))


@pytest_twisted.inlineCallbacks
def test_if_none_match_on_a_wrong_guess_is_refused(core: Core) -> Any:
    bucket = yield core.buckets.create(ALICE, "create-only")
    yield put_object(core, bucket, "k", b"there")
    _unread(core, bucket, "k")
    with pytest.raises(errors.PreconditionFailed):
        yield put_object(core, bucket, "k", b"again", PutAttrs(if_none_match_any=True))
    current = yield core.objects.head(bucket, "k")
    assert (yield read_object(core, current)) == b"there"


@pytest_twisted.inlineCallbacks
def test_overwrites_of_unread_keys_stop_the_guessing_and_new_keys_resume_it(core: Core) -> Any:
    bucket = yield core.buckets.create(ALICE, "mixed")
    for i in range(30):
        yield put_object(core, bucket, f"k{i}", b"v1")
    guess = core.objects.new_keys
    for i in range(30):
        _unread(core, bucket, f"k{i}")
        yield put_object(core, bucket, f"k{i}", b"v2")
    assert 1 <= guess.wrong <= 10  # it stopped guessing after a few
    assert not guess.likely()
    wrong = guess.wrong
    for i in range(30):
        yield put_object(core, bucket, f"new{i}", b"n")  # read, found new: learnt
    assert guess.likely() and guess.wrong == wrong
    for i in range(30):
        current = yield core.objects.head(bucket, f"k{i}")
        assert (yield read_object(core, current)) == b"v2"


@pytest_twisted.inlineCallbacks
def test_a_key_another_process_wrote_is_read_not_guessed(make_core: Any) -> Any:
    """Two stores on one database, as two worker processes: the writer's
    commit reaches the other's cache through the shared ring, so the other
    reads the key from memory rather than guessing wrong."""
    a = make_core(fsync=False, inline_threshold=512)
    b = make_core(fsync=False, inline_threshold=512)
    yield b.store.check()  # open, with its cache, before its first commit
    bucket = yield a.buckets.create(ALICE, "shared")
    yield put_object(a, bucket, "k", b"from a")
    yield put_object(b, bucket, "k", b"from b")
    assert b.objects.new_keys.wrong == 0
    current = yield a.objects.head(bucket, "k")
    assert (yield read_object(a, current)) == b"from b"


@pytest_twisted.inlineCallbacks
def test_concurrent_commits_read_their_keys_and_a_lone_one_guesses_again(core: Core) -> Any:
    """While commits overlap, each reads its key (the reads' hand-over
    gathers their transactions into one group commit); once they come one
    at a time again, new keys are guessed again."""
    bucket = yield core.buckets.create(ALICE, "busy")
    guess = core.objects.new_keys
    for wave in range(4):
        yield gatherResults([put_object(core, bucket, f"w{wave}/{i}", b"x") for i in range(16)])
    guesses = guess.right + guess.wrong
    assert guesses <= 8 and not guess.likely()  # a few before the crowd was noticed
    for i in range(40):
        yield put_object(core, bucket, f"alone/{i}", b"y")
    assert guess.likely() and guess.right > guesses and guess.wrong == 0


def test_the_share_decays_towards_what_it_learns() -> None:
    guess = NewKeyGuess()
    assert guess.likely()
    for _ in range(7):
        guess.guessed(False)
    assert not guess.likely() and guess.wrong == 7
    for _ in range(7):
        guess.learn(True)
    assert guess.likely() and guess.right == 0
    for _ in range(10):
        guess.company(3)
    assert not guess.likely()
    for _ in range(40):
        guess.company(0)
    assert guess.likely()


@implementer(IPointReadCache)
class _StoreOfAnEarlierContract:
    """A third party's metadata store written before ``holds`` joined
    IPointReadCache's contract: its cache has the counters the metrics read
    and nothing else (its ``get`` answers from memory itself)."""

    class _Counters:
        hits = misses = bypassed = bytes = 0

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.cache = self._Counters()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@pytest_twisted.inlineCallbacks
def test_a_cache_that_cannot_tell_what_it_holds_is_read_through(
    tmp_path: Path, pools: tuple[ThreadPool, ThreadPool]
) -> Any:
    """A store that declares IPointReadCache with a cache of the earlier
    contract (no ``holds``) keeps working: its commits read the key first,
    as before the guess (AttributeError, so a 500 on every PUT, otherwise)."""
    factory = CoreFactory(tmp_path, pools)
    factory(fsync=False)  # opens the SQLite store (closed at the end)
    inner = factory.stores[0]
    store = _StoreOfAnEarlierContract(inner)
    io, cpu = pools
    backend = LocalFsBackend(str(tmp_path / "chunks"), reactor, io, fsync=False)
    core = Core(store=store, backend=backend, chunks=ChunkManager(backend, reactor, cpu),
                credentials=CredentialStore(store, b"x" * 43 + b"="),
                authorizer=LocalAuthorizer(GrantStore(store, time.time), time.time, 0),
                clock=time.time)  # fmt: skip
    try:
        bucket = yield core.buckets.create(ALICE, "plugin")
        yield put_object(core, bucket, "k", b"first")
        yield put_object(core, bucket, "k", b"second")
        current = yield core.objects.head(bucket, "k")
        assert (yield read_object(core, current)) == b"second"
        assert core.objects.new_keys.right == core.objects.new_keys.wrong == 0  # read, never guessed
    finally:
        yield inner.close()
