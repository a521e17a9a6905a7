"""Finding a bucket by name alone, across tenants (BucketManager.find_unique),
for unsigned CORS preflights: what it answers, and that a stream of lookups,
whatever names they carry, reads the bucket records at most once per
interval (anyone can send preflights, and each read walks every bucket).

A real SQLite store on the real reactor (pytest-twisted); the clock is a
stand-in, so the interval passes without waiting.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest_twisted
from twisted.internet import defer
from twisted.internet import reactor as global_reactor

from lightningstor.core.buckets import NAME_INDEX_SECONDS, BucketManager
from lightningstor.core.types import Principal
from lightningstor.metadata.sqlite import SqliteMetadataStore

reactor: Any = global_reactor
ACME = Principal("acme-admin", "acme", roles=("admin",))
GLOBEX = Principal("globex-admin", "globex", roles=("admin",))
WEB = Principal("web-rw", "acme", "web")


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class CountingStore:
    """The store, with its range reads counted (each is a page of a walk)."""

    def __init__(self, store: SqliteMetadataStore) -> None:
        self._store = store
        self.scans = 0

    def scan(self, *args: Any, **kwargs: Any) -> Any:
        self.scans += 1
        return self._store.scan(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def _managers(tmp_path: Path, stores: list[SqliteMetadataStore]) -> tuple[BucketManager, BucketManager, CountingStore, Clock]:
    """Two managers on one database, as two workers would have: one makes
    the buckets, the other answers the lookups."""
    store = SqliteMetadataStore(str(tmp_path / "meta.db"), reactor)
    stores.append(store)
    counting = CountingStore(store)
    clock = Clock()
    writer = BucketManager(store, clock, "us-east-1")
    reader = BucketManager(counting, clock, "us-east-1")  # type: ignore[arg-type]
    return writer, reader, counting, clock


@pytest_twisted.ensureDeferred
async def test_a_name_in_one_scope_is_found_and_a_shared_or_unknown_one_is_not(
    tmp_path: Path, stores: list[SqliteMetadataStore]
) -> None:
    writer, reader, _counting, _clock = _managers(tmp_path, stores)
    await writer.create(ACME, "backups")
    await writer.create(GLOBEX, "backups")
    await writer.create(ACME, "photos")
    await writer.create(WEB, "site")  # a project's bucket: org/project/name
    photos = await reader.find_unique("photos")
    assert photos is not None and (photos.org_id, photos.name) == ("acme", "photos")
    site = await reader.find_unique("site")
    assert site is not None and (site.org_id, site.project_id) == ("acme", "web")
    assert await reader.find_unique("backups") is None  # two tenants have one
    assert await reader.find_unique("nothing") is None
    assert await reader.find_unique("photo") is None  # names match whole, not by prefix


@pytest_twisted.ensureDeferred
async def test_lookups_share_one_read_of_the_names_per_interval(
    tmp_path: Path, stores: list[SqliteMetadataStore]
) -> None:
    writer, reader, counting, clock = _managers(tmp_path, stores)
    for i in range(30):
        await writer.create(ACME, f"b{i:02d}")
    # Concurrent lookups of many names share one walk ...
    found = await defer.gatherResults([reader.find_unique(f"b{i % 40:02d}") for i in range(200)])
    assert sum(1 for b in found if b is not None) == 150
    assert counting.scans == 1
    # ... and later ones, until the interval is over, need none.
    assert await reader.find_unique("b07") is not None
    assert await reader.find_unique("unknown") is None
    assert counting.scans == 1

    # A bucket another worker creates is found once the interval is over.
    await writer.create(GLOBEX, "late")
    assert await reader.find_unique("late") is None
    clock.now += NAME_INDEX_SECONDS
    late = await reader.find_unique("late")
    assert late is not None and late.org_id == "globex"
    assert counting.scans == 2

    # One created through this worker is found at once.
    await reader.create(ACME, "mine")
    mine = await reader.find_unique("mine")
    assert mine is not None and counting.scans == 3


@pytest_twisted.ensureDeferred
async def test_past_the_bound_no_name_resolves(
    tmp_path: Path, stores: list[SqliteMetadataStore]
) -> None:
    """More buckets than a worker keeps names for: no unsigned name
    resolves, not even one read before the bound was reached; with the
    bound raised, the same names resolve."""
    writer, reader, counting, _clock = _managers(tmp_path, stores)
    for i in range(12):
        await writer.create(ACME, f"c{i:02d}")
    reader.name_index_max = 5
    assert await reader.find_unique("c00") is None
    assert await reader.find_unique("c11") is None
    assert counting.scans == 1
    reader.name_index_max = 12
    reader.forget_cached()
    found = await reader.find_unique("c11")
    assert found is not None and found.name == "c11"
