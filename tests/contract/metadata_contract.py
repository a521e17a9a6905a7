"""The conformance suite every :class:`IMetadataStore` implementation must pass.

Use it through a thin pytest class that says how to build a store::

    class TestMyStore(MetadataStoreContract):
        def make_store(self, tmp_path):
            return MyStore(...)

``make_store`` may return the store, a Deferred or a coroutine of it, and must
hand back an *empty* store that nothing else writes to while the test runs
(the revision tests count bumps exactly).  The suite closes every store it
made when the test ends.

Tests are written against the interface only, so they hold for etcd as well:
they never assume where the revision starts, and never put two operations on
the same key in one transaction (etcd rejects that).

The ``scan_items`` tests run only for stores whose class declares the
optional ``IScanItems`` and are skipped otherwise: a store without it is
listed through ``scan``, which the other tests cover.  A subclass sets
``scan_items_expected = True`` (both built-in stores do) to make a missing
declaration fail instead of silently skipping them.
They check the same ordering, bounds, limits and empty ranges as the ``scan``
tests, and that both methods read the same rows.
"""

from __future__ import annotations

import inspect
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import DeferredList, gatherResults
from zope.interface.verify import verifyObject

from lightningstor.errors import MetadataUnavailable
from lightningstor.interfaces.metadata import (
    Compare,
    Delete,
    DeleteRange,
    IMetadataStore,
    IScanItems,
    IScanTogether,
    KeyValue,
    Put,
    TxnResult,
    prefix_end,
)

# Keys whose byte order differs from naive string or length order: NUL and '/'
# sort before letters, UTF-8 multibyte (é = c3 a9) after ASCII, 0xff last, and
# a key sorts before every longer key it prefixes.
ORDERED_KEYS = [b"a", b"a\x00", b"a\x00\x00", b"a/", b"a/b", b"ab", b"b", b"\xc3\xa9", b"\xff", b"\xff\x00"]


class MetadataStoreContract:
    """Mixin of contract tests; subclasses implement :meth:`make_store`."""

    #: True: the store must declare IScanItems (the scan_items tests fail
    #: rather than skip without it), so losing the declaration is caught.
    scan_items_expected = False
    #: True: the store must declare IScanTogether (ListObjectVersions reads
    #: its two key spaces through it).
    scan_together_expected = False

    def make_store(self, tmp_path: Path) -> Any:
        """Return an empty IMetadataStore (or a Deferred/awaitable of one)."""
        raise NotImplementedError

    @pytest.fixture(autouse=True)
    def _close_stores(self) -> Iterator[None]:
        self._stores: list[Any] = []
        yield
        for store in self._stores:
            pytest_twisted.blockon(store.close())

    async def open_store(self, tmp_path: Path) -> Any:
        store = self.make_store(tmp_path)
        if inspect.isawaitable(store):
            store = await store
        self._stores.append(store)
        return store

    async def put(self, store: Any, key: bytes, value: bytes = b"v") -> TxnResult:
        result: TxnResult = await store.txn([], [Put(key, value)])
        assert result.succeeded
        return result

    async def all_keys(self, store: Any) -> list[bytes]:
        return [kv.key for kv in await store.scan(b"", prefix_end(b""))]

    # -- basics --------------------------------------------------------------

    @pytest_twisted.ensureDeferred
    async def test_provides_interface(self, tmp_path: Path) -> None:
        """The store provides every IMetadataStore method and a string name."""
        store = await self.open_store(tmp_path)
        assert verifyObject(IMetadataStore, store)
        assert isinstance(store.name, str) and store.name

    @pytest_twisted.ensureDeferred
    async def test_check(self, tmp_path: Path) -> None:
        """check() fires with None on a healthy store."""
        store = await self.open_store(tmp_path)
        assert await store.check() is None

    @pytest_twisted.ensureDeferred
    async def test_get_missing(self, tmp_path: Path) -> None:
        """get() of an absent key fires with None, not an error."""
        store = await self.open_store(tmp_path)
        assert await store.get(b"nope") is None

    @pytest_twisted.ensureDeferred
    async def test_put_then_get(self, tmp_path: Path) -> None:
        """A committed Put is readable at once, stamped with the txn's revision."""
        store = await self.open_store(tmp_path)
        result = await self.put(store, b"k", b"value")
        assert await store.get(b"k") == KeyValue(b"k", b"value", result.revision)

    @pytest_twisted.ensureDeferred
    async def test_values_are_opaque_bytes(self, tmp_path: Path) -> None:
        """Values of every byte, and the empty value, round-trip unchanged."""
        store = await self.open_store(tmp_path)
        blob = bytes(range(256)) * 4
        await store.txn([], [Put(b"blob", blob), Put(b"empty", b"")])
        assert (await store.get(b"blob")).value == blob
        assert (await store.get(b"empty")).value == b""

    @pytest_twisted.ensureDeferred
    async def test_overwrite_bumps_revision(self, tmp_path: Path) -> None:
        """Each changing txn bumps the revision by exactly one; overwrites restamp the key."""
        store = await self.open_store(tmp_path)
        first = await self.put(store, b"k", b"1")
        second = await self.put(store, b"k", b"2")
        assert second.revision == first.revision + 1
        assert await store.get(b"k") == KeyValue(b"k", b"2", second.revision)

    @pytest_twisted.ensureDeferred
    async def test_one_revision_per_txn(self, tmp_path: Path) -> None:
        """All keys written by one txn share its single new revision."""
        store = await self.open_store(tmp_path)
        before = await self.put(store, b"x")
        result = await store.txn([], [Put(b"a", b"1"), Put(b"b", b"2"), Delete(b"x")])
        assert result == TxnResult(True, before.revision + 1)
        assert (await store.get(b"a")).mod_revision == result.revision
        assert (await store.get(b"b")).mod_revision == result.revision
        assert await store.get(b"x") is None

    @pytest_twisted.ensureDeferred
    async def test_txn_that_changes_nothing_keeps_revision(self, tmp_path: Path) -> None:
        """Deleting absent keys succeeds without bumping the revision."""
        store = await self.open_store(tmp_path)
        before = await self.put(store, b"k")
        result = await store.txn([], [Delete(b"absent"), DeleteRange(b"q", b"r")])
        assert result == TxnResult(True, before.revision)

    # -- scans ---------------------------------------------------------------

    async def _store_with_ordered_keys(self, tmp_path: Path) -> Any:
        store = await self.open_store(tmp_path)
        shuffled = ORDERED_KEYS[:]
        random.Random(7).shuffle(shuffled)
        await store.txn([], [Put(k, b"v:" + k) for k in shuffled])
        return store

    @pytest_twisted.ensureDeferred
    async def test_scan_orders_keys_as_bytes(self, tmp_path: Path) -> None:
        """A full scan returns keys in unsigned byte order (S3's UTF-8 order)."""
        store = await self._store_with_ordered_keys(tmp_path)
        rows = await store.scan(b"", prefix_end(b""))
        assert [kv.key for kv in rows] == ORDERED_KEYS
        assert all(kv.value == b"v:" + kv.key for kv in rows)

    @pytest_twisted.ensureDeferred
    async def test_scan_is_half_open(self, tmp_path: Path) -> None:
        """scan(start, end) includes start and excludes end."""
        store = await self._store_with_ordered_keys(tmp_path)
        rows = await store.scan(b"a\x00", b"ab")
        assert [kv.key for kv in rows] == [b"a\x00", b"a\x00\x00", b"a/", b"a/b"]

    @pytest_twisted.ensureDeferred
    async def test_scan_prefix(self, tmp_path: Path) -> None:
        """scan(p, prefix_end(p)) lists exactly the keys starting with p, even for 0xff."""
        store = await self._store_with_ordered_keys(tmp_path)
        keys = [kv.key for kv in await store.scan(b"a", prefix_end(b"a"))]
        assert keys == [b"a", b"a\x00", b"a\x00\x00", b"a/", b"a/b", b"ab"]
        keys = [kv.key for kv in await store.scan(b"a/", prefix_end(b"a/"))]
        assert keys == [b"a/", b"a/b"]
        keys = [kv.key for kv in await store.scan(b"\xff", prefix_end(b"\xff"))]
        assert keys == [b"\xff", b"\xff\x00"]

    @pytest_twisted.ensureDeferred
    async def test_scan_limit(self, tmp_path: Path) -> None:
        """limit > 0 returns the first keys of the range; 0 means no limit."""
        store = await self._store_with_ordered_keys(tmp_path)
        assert [kv.key for kv in await store.scan(b"a", b"b", 2)] == [b"a", b"a\x00"]
        assert len(await store.scan(b"", prefix_end(b""), 0)) == len(ORDERED_KEYS)
        assert len(await store.scan(b"", prefix_end(b""), 1000)) == len(ORDERED_KEYS)

    @pytest_twisted.ensureDeferred
    async def test_scan_empty_ranges(self, tmp_path: Path) -> None:
        """A range with no keys, or with start >= end, is empty."""
        store = await self._store_with_ordered_keys(tmp_path)
        assert await store.scan(b"c", b"d") == []
        assert await store.scan(b"b", b"a") == []
        assert await store.scan(b"b", b"b") == []

    # -- scan_items (the optional IScanItems) ---------------------------------

    async def _items_store(self, tmp_path: Path) -> Any:
        """The ordered keys in a store that provides IScanItems (else skip)."""
        store = await self._store_with_ordered_keys(tmp_path)
        if not IScanItems.implementedBy(type(store)):
            if self.scan_items_expected:
                pytest.fail(f"{type(store).__name__} does not declare IScanItems")
            pytest.skip("the store does not declare the optional IScanItems")
        return store

    @pytest_twisted.ensureDeferred
    async def test_scan_items_declared_and_provided(self, tmp_path: Path) -> None:
        """A class declaring IScanItems has a ``scan_items`` zope can verify."""
        store = await self._items_store(tmp_path)
        assert verifyObject(IScanItems, store)

    @pytest_twisted.ensureDeferred
    async def test_scan_items_orders_keys_as_bytes(self, tmp_path: Path) -> None:
        """A full scan_items gives (key, value) tuples in unsigned byte order."""
        store = await self._items_store(tmp_path)
        rows = await store.scan_items(b"", prefix_end(b""))
        assert rows == [(k, b"v:" + k) for k in ORDERED_KEYS]
        assert all(type(row) is tuple for row in rows)

    @pytest_twisted.ensureDeferred
    async def test_scan_items_is_half_open(self, tmp_path: Path) -> None:
        """scan_items(start, end) includes start and excludes end."""
        store = await self._items_store(tmp_path)
        rows = await store.scan_items(b"a\x00", b"ab")
        assert [k for k, _v in rows] == [b"a\x00", b"a\x00\x00", b"a/", b"a/b"]

    @pytest_twisted.ensureDeferred
    async def test_scan_items_prefix(self, tmp_path: Path) -> None:
        """scan_items(p, prefix_end(p)) gives exactly the keys starting with p, even for 0xff."""
        store = await self._items_store(tmp_path)
        keys = [k for k, _v in await store.scan_items(b"a", prefix_end(b"a"))]
        assert keys == [b"a", b"a\x00", b"a\x00\x00", b"a/", b"a/b", b"ab"]
        keys = [k for k, _v in await store.scan_items(b"\xff", prefix_end(b"\xff"))]
        assert keys == [b"\xff", b"\xff\x00"]

    @pytest_twisted.ensureDeferred
    async def test_scan_items_limit(self, tmp_path: Path) -> None:
        """limit > 0 gives the first rows of the range; 0 means no limit."""
        store = await self._items_store(tmp_path)
        assert await store.scan_items(b"a", b"b", 2) == [(b"a", b"v:a"), (b"a\x00", b"v:a\x00")]
        assert len(await store.scan_items(b"", prefix_end(b""), 0)) == len(ORDERED_KEYS)
        assert len(await store.scan_items(b"", prefix_end(b""), 1000)) == len(ORDERED_KEYS)
        assert len(await store.scan_items(b"a/", prefix_end(b""), 3)) == 3

    @pytest_twisted.ensureDeferred
    async def test_scan_items_empty_ranges(self, tmp_path: Path) -> None:
        """A range with no keys, or with start >= end, is an empty list."""
        store = await self._items_store(tmp_path)
        assert await store.scan_items(b"c", b"d") == []
        assert await store.scan_items(b"b", b"a") == []
        assert await store.scan_items(b"b", b"b") == []
        assert await store.scan_items(b"\xff\x01", prefix_end(b"")) == []

    @pytest_twisted.ensureDeferred
    async def test_scan_items_are_the_scanned_rows(self, tmp_path: Path) -> None:
        """For every range and limit, scan_items reads what scan reads
        (empty and binary values included): listings may use either."""
        store = await self._items_store(tmp_path)
        await store.txn([], [Put(b"a/empty", b""), Put(b"a/blob", bytes(range(256)))])
        bounds = [b"", b"a", b"a\x00", b"a/", b"a/blob", b"b", b"\xc3", b"\xff", b"\xff\x00", prefix_end(b"")]
        for start in bounds:
            for end in bounds:
                for limit in (0, 1, 2, 5):
                    rows = await store.scan(start, end, limit)
                    items = await store.scan_items(start, end, limit)
                    assert items == [(kv.key, kv.value) for kv in rows], (start, end, limit)

    @pytest_twisted.ensureDeferred
    async def test_scan_items_after_close_is_unavailable(self, tmp_path: Path) -> None:
        """After close, scan_items fails with MetadataUnavailable, as scan does."""
        store = await self._items_store(tmp_path)
        await store.close()
        [(ok, value)] = await DeferredList([store.scan_items(b"", b"z")], consumeErrors=True)
        assert not ok and value.check(MetadataUnavailable), value

    # -- scan_items_together (the optional IScanTogether) ---------------------

    @pytest_twisted.ensureDeferred
    async def test_scan_items_together_reads_each_range_as_scan_items(self, tmp_path: Path) -> None:
        """For every set of ranges (empty, reversed, limited, overlapping),
        scan_items_together answers one list per range, each what
        scan_items reads for it.  (That they share one snapshot needs a
        write between the ranges: each store's own tests force one.)"""
        store = await self._items_store(tmp_path)
        if not IScanTogether.implementedBy(type(store)):
            if self.scan_together_expected:
                pytest.fail(f"{type(store).__name__} does not declare IScanTogether")
            pytest.skip("the store does not declare the optional IScanTogether")
        assert verifyObject(IScanTogether, store)
        ranges = [(b"a", prefix_end(b"a"), 0), (b"a/", b"b", 2), (b"b", b"a", 0), (b"c", b"d", 5),
                  (b"", prefix_end(b""), 3), (b"\xff", prefix_end(b""), 0)]  # fmt: skip
        assert await store.scan_items_together([]) == []
        for count in (1, 2, len(ranges)):
            chosen = ranges[:count]
            together = await store.scan_items_together(chosen)
            assert together == [await store.scan_items(*r) for r in chosen], chosen

    # -- transactions --------------------------------------------------------

    @pytest_twisted.ensureDeferred
    async def test_create_if_absent(self, tmp_path: Path) -> None:
        """Compare(key, 0) holds only while the key does not exist."""
        store = await self.open_store(tmp_path)
        created = await store.txn([Compare(b"k", 0)], [Put(b"k", b"first")])
        assert created.succeeded
        again = await store.txn([Compare(b"k", 0)], [Put(b"k", b"second")])
        assert again == TxnResult(False, created.revision)
        assert (await store.get(b"k")).value == b"first"

    @pytest_twisted.ensureDeferred
    async def test_compare_mod_revision(self, tmp_path: Path) -> None:
        """A txn guarded by the key's current mod_revision wins; a stale guard loses."""
        store = await self.open_store(tmp_path)
        old = await self.put(store, b"k", b"1")
        new = await store.txn([Compare(b"k", old.revision)], [Put(b"k", b"2")])
        assert new.succeeded
        stale = await store.txn([Compare(b"k", old.revision)], [Put(b"k", b"3")])
        assert stale == TxnResult(False, new.revision)
        assert (await store.get(b"k")).value == b"2"

    @pytest_twisted.ensureDeferred
    async def test_failed_compare_applies_nothing(self, tmp_path: Path) -> None:
        """If any compare fails, none of the operations happen (atomicity)."""
        store = await self.open_store(tmp_path)
        a = await self.put(store, b"a", b"1")
        await self.put(store, b"b", b"1")
        result = await store.txn(
            [Compare(b"a", a.revision), Compare(b"b", 0)],  # the second one is false
            [Put(b"a", b"2"), Put(b"new", b"x"), Delete(b"b"), DeleteRange(b"c", b"d")],
        )
        assert not result.succeeded
        assert await self.all_keys(store) == [b"a", b"b"]
        assert (await store.get(b"a")) == KeyValue(b"a", b"1", a.revision)

    @pytest_twisted.ensureDeferred
    async def test_delete_and_delete_range(self, tmp_path: Path) -> None:
        """Delete removes one key; DeleteRange removes exactly [start, end)."""
        store = await self._store_with_ordered_keys(tmp_path)
        result = await store.txn([], [Delete(b"b"), DeleteRange(b"a/", prefix_end(b"a/"))])
        assert result.succeeded
        keys = await self.all_keys(store)
        assert keys == [k for k in ORDERED_KEYS if k not in (b"b", b"a/", b"a/b")]
        await store.txn([], [DeleteRange(b"\xc3", prefix_end(b"\xc3"))])
        assert b"\xc3\xa9" not in await self.all_keys(store)

    @pytest_twisted.ensureDeferred
    async def test_racing_creates_have_one_winner(self, tmp_path: Path) -> None:
        """Of many concurrent create-if-absent txns on one key, exactly one succeeds."""
        store = await self.open_store(tmp_path)
        results = await gatherResults(
            [store.txn([Compare(b"k", 0)], [Put(b"k", b"%d" % i)]) for i in range(20)]
        )
        winners = [i for i, r in enumerate(results) if r.succeeded]
        assert len(winners) == 1
        assert (await store.get(b"k")).value == b"%d" % winners[0]

    @pytest_twisted.ensureDeferred
    async def test_racing_compare_and_swap_has_one_winner(self, tmp_path: Path) -> None:
        """Concurrent CAS txns guarded by the same revision: exactly one applies."""
        store = await self.open_store(tmp_path)
        base = await self.put(store, b"counter", b"0")
        results = await gatherResults(
            [store.txn([Compare(b"counter", base.revision)], [Put(b"counter", b"%d" % i)]) for i in range(10)]
        )
        assert sum(r.succeeded for r in results) == 1

    # -- shutdown ------------------------------------------------------------

    @pytest_twisted.ensureDeferred
    async def test_close(self, tmp_path: Path) -> None:
        """After close, calls fail with MetadataUnavailable; close is idempotent."""
        store = await self.open_store(tmp_path)
        await self.put(store, b"k")
        await store.close()
        await store.close()
        outcomes = await DeferredList(
            [store.get(b"k"), store.scan(b"", b"z"), store.txn([], [Put(b"k", b"v")]), store.check()],
            consumeErrors=True,
        )
        for ok, value in outcomes:
            assert not ok and value.check(MetadataUnavailable), value
