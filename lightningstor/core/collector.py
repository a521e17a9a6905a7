"""Reclaiming chunks that no committed record references.

Chunks are made durable *before* the metadata commit that references them, so
a crash (or a failed commit whose clean-up also failed) can leave chunks that
nothing points to.  Every referenced chunk has a chunk-index entry written in
the same transaction as its object record; the collector deletes chunks that
have none, once they are older than a grace period long enough that no upload
still writing them can be running (a single PUT is at most 5 GiB).
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.defer import inlineCallbacks
from twisted.logger import Logger

from lightningstor.core import keys
from lightningstor.interfaces.metadata import IMetadataStore
from lightningstor.interfaces.storage import IStorageBackend
from lightningstor.periodic import PeriodicService

log = Logger()


@inlineCallbacks
def collect_orphans(
    store: IMetadataStore,
    backend: IStorageBackend,
    now: float,
    grace_seconds: float,
) -> Any:
    """Deferred[int]: delete unreferenced chunks older than the grace period."""
    infos = yield backend.list_chunks()
    removed = 0
    for info in infos:
        if now - info.created_at < grace_seconds:
            continue
        kv = yield store.get(keys.chunk_key(info.chunk_id))
        if kv is not None:
            continue
        deleted = yield backend.delete_chunk(info.chunk_id)
        if deleted:
            removed += 1
    if removed:
        log.info("Collected {n} orphaned chunks", n=removed)
    return removed


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
