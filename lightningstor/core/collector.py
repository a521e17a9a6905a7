"""Reclaiming chunks that no committed record references.

Chunks are made durable *before* the metadata commit that references them, so
a crash (or a failed commit whose clean-up also failed) can leave chunks that
nothing points to.  Every chunk gets a chunk-index entry (core/chunkindex.py)
before its commit, naming where its holder lives.  The collector deletes a
chunk older than a grace period (long enough that no upload still writing
it can be running: a single PUT is at most 5 GiB) when it has no entry, or
when its entry's hint leads to no record that lists it; the entry goes
first, then the data.  A second pass removes entries older than the grace
period whose chunk no longer exists and that no record needs.  Before both,
paged chunk lists (core/manifests.py) that no version names are dropped.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.defer import inlineCallbacks
from twisted.logger import Logger

from lightningstor.core import chunkindex, keys, manifests, scans
from lightningstor.interfaces.metadata import Delete, DeleteRange, IMetadataStore, KeyValue, prefix_end
from lightningstor.interfaces.storage import IStorageBackend
from lightningstor.periodic import PeriodicService

log = Logger()

_INDEX_PAGE = 500


@inlineCallbacks
def collect_orphans(
    store: IMetadataStore,
    backend: IStorageBackend,
    now: float,
    grace_seconds: float,
) -> Any:
    """Deferred[int]: delete unreferenced chunks older than the grace period
    (and stale index entries of chunks that are gone)."""
    # Pages of commits that never happened first: their chunks are then
    # unreferenced below in the same pass.
    pages = yield _drop_orphaned_manifests(store, now, grace_seconds)
    infos = yield backend.list_chunks()
    removed = 0
    cache: dict[str, frozenset[str]] = {}
    for info in infos:
        if now - info.created_at < grace_seconds:
            continue
        ckey = keys.chunk_key(info.chunk_id)
        kv = yield store.get(ckey)
        if kv is not None:
            needed = yield chunkindex.still_referenced(store, info.chunk_id, kv.value, cache)
            if needed:
                continue
            yield store.txn([], [Delete(ckey)])
        deleted = yield backend.delete_chunk(info.chunk_id)
        if deleted:
            removed += 1
    stale = yield _drop_stale_entries(store, {info.chunk_id for info in infos}, now, grace_seconds, cache)
    if removed or stale or pages:
        log.info(
            "Collected {n} orphaned chunks, {e} stale index entries and {m} orphaned manifests",
            n=removed, e=stale, m=pages,
        )  # fmt: skip
    return removed


@inlineCallbacks
def _drop_orphaned_manifests(store: IMetadataStore, now: float, grace_seconds: float) -> Any:
    """Deferred[int]: remove paged chunk lists (core/manifests.py) that no
    version names and that are older than the grace period.

    One read per manifest: its first page (which says whose it is and when
    it was written), then a jump past its other pages.
    """
    dropped = 0
    start, end = keys.MANIFESTS, prefix_end(keys.MANIFESTS)
    while True:
        rows = yield store.scan(start, end, 1)
        if not rows:
            return dropped
        (kv,) = rows
        manifest_id = kv.key[len(keys.MANIFESTS) :].split(b"/", 1)[0].decode()
        prefix = keys.manifest_prefix(manifest_id)
        written = manifests.written_ms(kv.value)
        if written is not None and now - written / 1000 >= grace_seconds:
            orphan = yield manifests.orphaned(store, manifest_id, kv.value)
            if orphan:
                yield store.txn([], [DeleteRange(prefix, prefix_end(prefix))])
                dropped += 1
        start = prefix_end(prefix)


@inlineCallbacks
def _drop_stale_entries(
    store: IMetadataStore, existing: set[str], now: float, grace_seconds: float, cache: dict[str, frozenset[str]]
) -> Any:
    """Deferred[int]: remove entries of chunks absent from the backend's
    listing, written longer than the grace period ago, that no record lists.

    An entry younger than that may belong to a write whose chunks were
    stored after the listing was taken; a legacy entry has no time and stays.
    """
    dropped = 0

    @inlineCallbacks
    def visit(kv: KeyValue) -> Any:
        nonlocal dropped
        chunk_id = kv.key[len(keys.CHUNKS) :].decode()
        if chunk_id in existing:
            return
        written = chunkindex.hint_time_ms(kv.value)
        if written is None or now - written / 1000 < grace_seconds:
            return
        needed = yield chunkindex.still_referenced(store, chunk_id, kv.value, cache)
        if not needed:
            yield store.txn([], [Delete(kv.key)])
            dropped += 1

    yield scans.scan_prefix(store, keys.CHUNKS, _INDEX_PAGE, visit)
    return dropped


class CollectorService(PeriodicService):
    """Runs :func:`collect_orphans` periodically (first run one interval after start)."""

    description = "Orphan chunk collection"

    def __init__(
        self,
        store: IMetadataStore,
        backend: IStorageBackend,
        clock: Callable[[], float],
        reactor: Any,
        *,
        interval_seconds: float = 3600.0,
        grace_seconds: float = 24 * 3600.0,
    ) -> None:
        super().__init__(reactor, interval_seconds)
        self.store = store
        self.backend = backend
        self.clock = clock
        self.grace_seconds = grace_seconds

    def run_once(self) -> Any:
        return collect_orphans(self.store, self.backend, self.clock(), self.grace_seconds)
