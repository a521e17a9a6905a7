"""Reclaiming chunks that no committed record references.

Chunks are made durable *before* the metadata commit that references them, so
a crash (or a failed commit whose clean-up also failed) can leave chunks that
nothing points to.  Every chunk gets a chunk-index entry (core/chunkindex.py)
before its commit, naming where its holder lives.  The collector deletes a
chunk that has no entry, or whose entry's hint leads to no record that lists
it; the entry goes first, then the data.  A second step removes entries whose
chunk no longer exists and that no record needs.  Before both, paged chunk
lists (core/manifests.py) that no version names are dropped.

**Age is measured on one clock: the collector's own.**  The chunks of a write
still in flight are unreferenced too, until its commit.  Comparing a chunk's
file time (a storage node's clock) or an entry's write time (the writing
server's clock) with the collector's wall clock would delete them whenever
those clocks disagree by more than the grace period.  Instead the collector
remembers, in its sightings (core/sightings.py), when *it* first saw each
chunk, entry and manifest unreferenced, and removes it only once it has
stayed unreferenced for ``grace_seconds`` on that clock, across at least
two passes.  Writes end or give up within ``limits.max_write_seconds``
(storage/chunks.py), which configuration keeps at most half the grace, so a
write's chunks are referenced or abandoned before the collector may take
them.

The server's sightings are kept in the metadata store, on a logical clock
that adds up only the time its passes observed (core/sightings.py): age
accumulates across restarts and across servers taking the job's lease over,
and downtime never counts.  They hold only what the last pass saw
unreferenced.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.logger import Logger

from lightningstor.core import chunkindex, keys, manifests, scans
from lightningstor.core.sightings import SharedSightings, Sightings
from lightningstor.interfaces.metadata import Delete, DeleteRange, IMetadataStore, KeyValue, prefix_end
from lightningstor.interfaces.storage import IStorageBackend
from lightningstor.periodic import PeriodicService

log = Logger()

_INDEX_PAGE = 500
# How long something must stay unreferenced, on the collector's clock,
# before it is removed.  ``limits.max_write_seconds`` may be at most half of it.
GRACE_SECONDS = 24 * 3600.0


@inlineCallbacks
def collect_orphans(
    store: IMetadataStore,
    backend: IStorageBackend,
    now: float,
    grace_seconds: float,
    sightings: Sightings | None = None,
) -> Any:
    """Deferred[int]: delete chunks that have been unreferenced for the grace
    period (and index entries of chunks that are gone, and orphaned pages).

    ``now`` is the collector's clock, the one ``sightings`` (kept from pass
    to pass) were recorded on.  Without ``sightings`` this pass is the first
    one: with a grace period above 0 it removes nothing.  A grace of 0 is
    safe only while no server is writing.
    """
    seen = sightings if sightings is not None else Sightings()
    yield seen.begin(now, grace_seconds)
    # Pages of commits that never happened first: their chunks are then
    # unreferenced below in the same pass.
    pages = yield _drop_orphaned_manifests(store, seen)
    infos = yield backend.list_chunks()
    removed = 0
    cache: dict[str, frozenset[str]] = {}
    for info in infos:
        ckey = keys.chunk_key(info.chunk_id)
        kv = yield store.get(ckey)
        if kv is not None:
            needed = yield chunkindex.still_referenced(store, info.chunk_id, kv.value, cache)
            if needed:
                continue
        if not seen.aged("chunk", info.chunk_id):
            continue
        if kv is not None:
            yield store.txn([], [Delete(ckey)])
        deleted = yield backend.delete_chunk(info.chunk_id)
        seen.removed("chunk", info.chunk_id)
        if deleted:
            removed += 1
    stale = yield _drop_stale_entries(store, {info.chunk_id for info in infos}, seen, cache)
    yield seen.end()
    if removed or stale or pages:
        log.info(
            "Collected {n} orphaned chunks, {e} stale index entries and {m} orphaned manifests",
            n=removed, e=stale, m=pages,
        )  # fmt: skip
    if len(seen):
        log.info("{n} unreferenced chunks, entries or manifests are waiting out the grace period", n=len(seen))
    return removed


@inlineCallbacks
def _drop_orphaned_manifests(store: IMetadataStore, seen: Sightings) -> Any:
    """Deferred[int]: remove paged chunk lists (core/manifests.py) that no
    version has named for the grace period.

    One read per manifest: its first page (which says whose it is), then a
    jump past its other pages.
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
        orphan = yield manifests.orphaned(store, manifest_id, kv.value)
        if orphan and seen.aged("manifest", manifest_id):
            yield store.txn([], [DeleteRange(prefix, prefix_end(prefix))])
            seen.removed("manifest", manifest_id)
            dropped += 1
        start = prefix_end(prefix)


@inlineCallbacks
def _drop_stale_entries(
    store: IMetadataStore, existing: set[str], seen: Sightings, cache: dict[str, frozenset[str]]
) -> Any:
    """Deferred[int]: remove entries of chunks absent from the backend's
    listing that no record has listed for the grace period.

    Such an entry may belong to a write whose chunks were stored after the
    listing was taken, or that is about to commit (a long list is indexed
    ahead): its writer's time says nothing the collector's clock can be
    compared with, so only the collector's own sightings count.  A legacy
    entry (no hint) counts as a reference and stays.
    """
    dropped = 0

    @inlineCallbacks
    def visit(kv: KeyValue) -> Any:
        nonlocal dropped
        chunk_id = kv.key[len(keys.CHUNKS) :].decode()
        if chunk_id in existing:
            return
        needed = yield chunkindex.still_referenced(store, chunk_id, kv.value, cache)
        if not needed and seen.aged("entry", chunk_id):
            yield store.txn([], [Delete(kv.key)])
            seen.removed("entry", chunk_id)
            dropped += 1

    yield scans.scan_prefix(store, keys.CHUNKS, _INDEX_PAGE, visit)
    return dropped


# A temporary chunk file untouched this long belongs to no live writer.
TMP_IDLE_SECONDS = 3600.0


class CollectorService(PeriodicService):
    """Runs :func:`collect_orphans` periodically (first run one interval
    after start), its sightings shared through the metadata store
    (:class:`~lightningstor.core.sightings.SharedSightings`).

    ``clock`` must not jump (``time.monotonic``): deletion waits for the
    grace period measured on it.
    """

    description = "Orphan chunk collection"

    def __init__(
        self,
        store: IMetadataStore,
        backend: IStorageBackend,
        clock: Callable[[], float],
        reactor: Any,
        *,
        interval_seconds: float = 3600.0,
        grace_seconds: float = GRACE_SECONDS,
    ) -> None:
        super().__init__(reactor, interval_seconds)
        self.store = store
        self.backend = backend
        self.clock = clock
        self.grace_seconds = grace_seconds
        self.sightings: Sightings = SharedSightings(store)

    def run_once(self) -> Any:
        d: Deferred[Any] = collect_orphans(self.store, self.backend, self.clock(), self.grace_seconds, self.sightings)
        # A worker killed mid-chunk leaves its temporary file behind; the
        # backend removes such files at start, but a worker restarted at
        # once (its supervisor, a crash loop) finds them too young.  Each
        # pass removes those nobody has written to for an hour (a live
        # writer touches its file on every write, and a stalled upload ends
        # at its body deadline long before).
        cleanup = getattr(self.backend, "cleanup_tmp", None)
        if cleanup is not None:
            d.addCallback(lambda deleted: cleanup(TMP_IDLE_SECONDS).addCallback(lambda _: deleted))
        return d
