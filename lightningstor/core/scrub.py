"""Scrub: re-reading every referenced chunk to find bitrot and lost files early.

A GET already refuses corrupt data (block CRCs in the ``local`` backend, the
``ChunkRef`` CRC32C in the ChunkManager), but only for the objects someone
reads.  Data that is rarely read can rot unnoticed until the day it is
needed, so :func:`scrub` walks every record that references chunks (current
objects, noncurrent versions and parts of unfinished multipart uploads),
reads each chunk in full through the backend and checks its CRC32C against
the record.  It also audits the chunk index both ways, because the orphan
collector trusts it: a referenced chunk without an index entry would be
collected, and an index entry without a referencing record keeps an orphan
forever.

The collector decides from the index, not from the records: a chunk
without an entry is unreferenced to it (only an entry leads it to the
records, core/collector.py), so a live object's chunk whose entry was lost
(an older bug, a manual edit) would be deleted once its grace period is
over, and chunk repair could not find the chunk's record either
(storage/repair.py).  So scrub re-creates each missing entry from the
record that lists the chunk (the same hint a commit writes, only where no
entry exists by then), and counts it (``index_entries_recreated``) besides
reporting the ``index`` problem it found.

A backend that keeps several copies of each chunk (``distributed``,
providing ``IReplicaScrub``) verifies every replica instead of the first good
one, and rewrites rotten or lost replicas from a good copy: those are
reported as repairs, not problems, since the object is whole again.  The
single-node ``local`` backend has no second copy to repair from: its
problems are reported (logged, counted in ``lightningstor_scrub_errors_total``
by the :class:`ScrubService` caller) so an operator can restore the objects.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThread
from twisted.logger import Logger

from lightningstor.checksums import crc32c
from lightningstor.core import chunkindex, keys, records, scans
from lightningstor.core.leases import Lease, release_quietly, run_leased
from lightningstor.core.types import ChunkRef
from lightningstor.errors import ChunkCorrupted, ChunkNotFound, StorageError
from lightningstor.interfaces.metadata import Compare, IMetadataStore, Put
from lightningstor.interfaces.storage import IReplicaScrub, IStorageBackend, ReplicaCheck

log = Logger()

#: Record key spaces whose values carry ``"chunks": [[id, offset, size, crc], ...]``
#: (manifest pages hold the chunk lists of records that are paged).
CHUNK_HOLDERS = (keys.OBJECTS, keys.VERSIONS, keys.PARTS, keys.MANIFESTS)

MISSING = "missing"
CORRUPT = "corrupt"
INDEX = "index"
# A damaged replica (missing or corrupt copy) of a chunk that has a good one.
REPLICA = "replica"
# verify_chunk: the backend could not say (a timeout, an unavailable
# device): neither good nor bad, counted as unverified, and the pass goes on.
UNVERIFIED = "unverified"


@dataclass(frozen=True)
class ScrubProblem:
    """One finding: ``kind`` is ``missing``, ``corrupt`` or ``index``."""

    kind: str
    chunk_id: str
    record_key: bytes | None
    detail: str


@dataclass(frozen=True)
class ReplicaRepair:
    """Damaged replicas of one chunk, found by a replicated backend's scrub."""

    chunk_id: str
    record_key: bytes
    damaged: tuple[str, ...]  # node addresses
    repaired: tuple[str, ...]

    @property
    def complete(self) -> bool:
        return set(self.damaged) <= set(self.repaired)


@dataclass
class ScrubReport:
    """What one :func:`scrub` pass saw."""

    records: int = 0
    chunks_checked: int = 0
    bytes_checked: int = 0
    index_entries: int = 0
    # Index entries no record lists (yet, or any more): not problems.
    unreferenced_entries: int = 0
    problems: list[ScrubProblem] = field(default_factory=list)
    # Replicated backends: chunks with damaged replicas (rewritten when possible).
    replica_repairs: list[ReplicaRepair] = field(default_factory=list)
    # Chunks whose every copy was on unreachable nodes: not verified this pass.
    unverified: int = 0
    # Missing index entries of referenced chunks, written again (each is
    # also an ``index`` problem: it was missing).
    index_entries_recreated: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def count(self, kind: str) -> int:
        return sum(1 for p in self.problems if p.kind == kind)


def chunk_refs(value: bytes) -> list[ChunkRef]:
    """The chunks a record references, without decoding the rest of it.

    Object, version and part records share the ``chunks`` field's format
    (``core/records.py``, ``core/multipart.py``)."""
    d = records.record_fields(value)
    return records.decode_chunks(d.get("chunks", ()))


@inlineCallbacks
def verify_chunk(backend: IStorageBackend, ref: ChunkRef) -> Any:
    """Deferred[str | None]: ``None`` if the chunk reads back whole and matches
    ``ref``; otherwise ``"missing"`` or ``"corrupt"`` (the backend's own
    block checks raise ``ChunkCorrupted``, the size and CRC32C are checked
    here), or ``"unverified"`` when the backend failed to answer at all
    (``StorageError``): one chunk a backend cannot read, say an object
    that times out on every read, must not end the whole pass and leave
    every chunk after it unchecked, scheduled pass after pass."""
    try:
        data = yield backend.get_chunk(ref.chunk_id)
    except ChunkNotFound:
        return MISSING
    except ChunkCorrupted:
        return CORRUPT
    except StorageError as e:
        log.warn("Scrub: chunk {chunk_id} not verified: {err}", chunk_id=ref.chunk_id, err=e)
        return UNVERIFIED
    if len(data) != ref.size:
        return CORRUPT
    # A whole chunk (up to 64 MiB, ~20 ms) is checksummed in a thread: the
    # CRC releases the GIL, so the reactor keeps serving meanwhile.
    found = yield deferToThread(crc32c, data)
    if found != ref.checksum:
        return CORRUPT
    return None


@inlineCallbacks
def scrub(
    store: IMetadataStore, backend: IStorageBackend, *, page: int = 500, stopping: Callable[[], bool] | None = None
) -> Any:
    """Deferred[ScrubReport]: verify every referenced chunk and the chunk index.

    Records written while the pass runs may be reported as index problems
    if they change between the two scans; run it on a quiet store (or
    re-check a reported chunk) before acting on an ``index`` finding.

    ``stopping``: asked before each record, chunk and index entry; once it
    answers yes the pass ends with :class:`ScrubStopped` (a server stopping: a pass reads every
    chunk, which takes hours on a large store).
    """
    report = ScrubReport()
    referenced: dict[str, bytes] = {}
    listed_in: dict[str, bytes] = {}  # chunk id -> the record (or manifest page) listing it

    replicated = IReplicaScrub.providedBy(backend)

    def check_stop() -> None:
        if stopping is not None and stopping():
            raise ScrubStopped(report.chunks_checked)

    @inlineCallbacks
    def visit_record(key: bytes, value: bytes) -> Any:
        check_stop()  # also for records without chunks (inline objects)
        report.records += 1
        holder = key
        if key.startswith(keys.MANIFESTS):
            # A page's chunks are the object's: audit their entries against it.
            head = json.loads(value)
            holder = keys.object_key(head["b"], head["k"])
        for ref in chunk_refs(value):
            check_stop()
            referenced[ref.chunk_id] = holder
            listed_in[ref.chunk_id] = key
            if replicated:
                check = yield IReplicaScrub(backend).scrub_chunk(ref.chunk_id, ref.size, ref.checksum)
                problem = _replica_outcome(report, key, ref, check)
            else:
                problem = yield verify_chunk(backend, ref)
            report.chunks_checked += 1
            if problem == UNVERIFIED:
                report.unverified += 1
            elif problem is None:
                report.bytes_checked += ref.size
            elif (yield _still_listed(store, key, ref.chunk_id)):
                _found(report, ScrubProblem(problem, ref.chunk_id, key, f"{problem} chunk of {key!r}"))
            else:
                # Overwritten or deleted since the page was read, and its
                # chunk freed: nothing is lost (the live store moved on).
                referenced.pop(ref.chunk_id, None)

    for prefix in CHUNK_HOLDERS:
        # Manifest pages are ~150 KB each: read a few at a time.
        yield scans.scan_prefix(
            store, prefix, 4 if prefix == keys.MANIFESTS else page, lambda kv: visit_record(kv.key, kv.value)
        )

    def visit_index(key: bytes, value: bytes) -> None:
        check_stop()
        report.index_entries += 1
        chunk_id = key[len(keys.CHUNKS):].decode()
        holder = referenced.pop(chunk_id, None)
        if holder is None:
            # Written before a commit that is still to come, or left by a
            # crash after a delete: the collector resolves and removes these.
            report.unreferenced_entries += 1
        elif not chunkindex.names_holder(value, holder):
            _found(report, ScrubProblem(INDEX, chunk_id, value, f"index entry {value!r} does not lead to {holder!r}"))

    yield scans.scan_prefix(store, keys.CHUNKS, page, lambda kv: visit_index(kv.key, kv.value))
    uploads: dict[str, tuple[str, str]] | None = None
    for chunk_id, holder in referenced.items():
        check_stop()
        if not (yield _still_listed(store, listed_in[chunk_id], chunk_id)):
            continue  # freed since the records were read: no entry is due
        if holder.startswith(keys.PARTS) and uploads is None:
            uploads = yield _uploads(store, page)
        hint = _hint(holder, uploads or {})
        if hint is None:
            _found(report, ScrubProblem(INDEX, chunk_id, holder, "referenced chunk has no index entry "
                                        "(not re-created: its upload is gone)"))
            continue
        try:
            result = yield store.txn([Compare(keys.chunk_key(chunk_id), 0)], [Put(keys.chunk_key(chunk_id), hint)])
        except Exception as e:
            _found(report, ScrubProblem(INDEX, chunk_id, holder,
                                        f"referenced chunk has no index entry (re-creating it failed: {e})"))
            continue
        # A failed compare: an entry was written meanwhile, which is as good.
        report.index_entries_recreated += int(result.succeeded)
        _found(report, ScrubProblem(INDEX, chunk_id, holder, "referenced chunk had no index entry; re-created"))
    return report


@inlineCallbacks
def _still_listed(store: IMetadataStore, key: bytes, chunk_id: str) -> Any:
    """Deferred[bool]: whether the record (or manifest page) at ``key``
    still lists ``chunk_id``, read again now.  A scrub reads records a page
    at a time and their chunks afterwards: on a live store a record of the
    page may be overwritten or deleted meanwhile and its chunks freed, which
    is no damage; only a chunk its record still lists is one missing."""
    kv = yield store.get(key)
    if kv is None:
        return False
    try:
        return any(ref.chunk_id == chunk_id for ref in chunk_refs(kv.value))
    except (ValueError, KeyError, TypeError):
        return True  # unreadable now: report what was found


def _hint(holder: bytes, uploads: dict[str, tuple[str, str]]) -> bytes | None:
    """The index entry a commit writes for a chunk of the record at
    ``holder`` (an object, a noncurrent version or a part; a manifest
    page's chunks are audited against their object key), or None for a
    part whose upload is gone.  ``uploads``: upload id -> (bucket id, key)."""
    now_ms = int(time.time() * 1000)  # informative only (core/chunkindex.py)
    if holder.startswith(keys.PARTS):
        upload_id, _, number = holder[len(keys.PARTS):].decode().partition("/")
        found = uploads.get(upload_id)
        if found is None:
            return None
        return chunkindex.part_hint(found[0], found[1], upload_id, int(number), now_ms)
    prefix = keys.OBJECTS if holder.startswith(keys.OBJECTS) else keys.VERSIONS
    bucket_id, _, rest = holder[len(prefix):].partition(b"/")
    key = rest.partition(b"\x00")[0] if prefix == keys.VERSIONS else rest
    return chunkindex.object_hint(bucket_id.decode(), key.decode("utf-8"), now_ms)


@inlineCallbacks
def _uploads(store: IMetadataStore, page: int) -> Any:
    """Deferred[{upload id: (bucket id, key)}] of every open multipart upload
    (read once, and only when a part's chunk lacks its entry)."""
    found: dict[str, tuple[str, str]] = {}

    def visit(value: bytes) -> None:
        try:
            d = json.loads(value)
            found[d["id"]] = (d["bucket"], d["key"])
        except (ValueError, KeyError, TypeError):
            pass  # unreadable: its parts' entries stay missing (reported)

    yield scans.scan_prefix(store, keys.UPLOADS, page, lambda kv: visit(kv.value))
    return found


def _replica_outcome(report: ScrubReport, key: bytes, ref: ChunkRef, check: ReplicaCheck) -> str | None:
    """Fold one chunk's :class:`ReplicaCheck` into the report; the problem
    kind when no good copy was read (``None``: the chunk is readable)."""
    if check.damaged and check.good:
        repair = ReplicaRepair(ref.chunk_id, key, check.damaged, check.repaired)
        report.replica_repairs.append(repair)
        log_event = log.info if repair.complete else log.error
        log_event(
            "Scrub: chunk {chunk_id} had damaged replicas on {damaged}; rewritten on {repaired}",
            chunk_id=ref.chunk_id, damaged=", ".join(check.damaged), repaired=", ".join(check.repaired) or "none",
        )  # fmt: skip
    if check.good:
        return None
    if check.corrupt:
        return CORRUPT
    if check.unreachable:
        log.warn("Scrub: chunk {chunk_id} not verified: its nodes did not answer", chunk_id=ref.chunk_id)
        return UNVERIFIED
    return MISSING


def _found(report: ScrubReport, problem: ScrubProblem) -> None:
    report.problems.append(problem)
    log.error(
        "Scrub: {kind} chunk {chunk_id}: {detail}",
        kind=problem.kind, chunk_id=problem.chunk_id, detail=problem.detail,
    )  # fmt: skip


def iter_problem_lines(report: ScrubReport) -> Iterator[str]:
    """The report as lines for humans (``lightningstor-admin scrub``)."""
    for p in report.problems:
        holder = p.record_key.decode("utf-8", "backslashreplace") if p.record_key else "-"
        yield f"{p.kind}\t{p.chunk_id}\t{holder}"
    for r in report.replica_repairs:
        yield f"{REPLICA}\t{r.chunk_id}\tdamaged={','.join(r.damaged)}\trepaired={','.join(r.repaired) or '-'}"
    summary = (
        f"records={report.records} chunks={report.chunks_checked} bytes={report.bytes_checked} "
        f"index_entries={report.index_entries} unreferenced_entries={report.unreferenced_entries} "
        f"problems={len(report.problems)}"
    )
    if report.index_entries_recreated:
        summary += f" index_entries_recreated={report.index_entries_recreated}"
    if report.replica_repairs:
        summary += f" replica_repairs={len(report.replica_repairs)}"
    if report.replica_repairs or report.unverified:
        summary += f" unverified={report.unverified}"
    yield summary


class ScrubStopped(Exception):
    """A pass ended before its end because the server is stopping."""

    def __init__(self, chunks_checked: int) -> None:
        super().__init__(f"stopped after {chunks_checked} chunks")
        self.chunks_checked = chunks_checked


class ScrubService(Service):
    """Runs :func:`scrub` every ``interval_seconds`` (first run one interval
    after start), and passes each report to ``on_report`` (the server counts
    its problems in ``lightningstor_scrub_errors_total``).

    With ``lease`` (several servers sharing the store) only the server
    holding it scrubs: a scrub reads every chunk, which N servers would
    read N times."""

    def __init__(
        self,
        store: IMetadataStore,
        backend: IStorageBackend,
        reactor: Any,
        *,
        interval_seconds: float,
        on_report: Callable[[ScrubReport], None] | None = None,
        lease: Lease | None = None,
    ) -> None:
        self.store = store
        self.reactor = reactor
        self.lease = lease
        self.backend = backend
        self.interval_seconds = interval_seconds
        self.on_report = on_report
        self._loop = LoopingCall(self._run)
        self._loop.clock = reactor
        self._running: Deferred[Any] | None = None
        self._stopping = False

    def _run(self) -> Deferred[Any]:
        d = run_leased(self.lease, self.reactor, self._scrub, "Scrub")
        d.addErrback(self._failed)
        return d

    def _failed(self, failure: Any) -> None:
        if failure.check(ScrubStopped):
            log.info("Scrub pass ended by the stop ({reason}); the next pass starts from the beginning",
                     reason=failure.value)  # fmt: skip
        else:
            log.failure("Scrub failed", failure)

    def _scrub(self) -> Deferred[Any]:
        d: Deferred[Any] = scrub(self.store, self.backend, stopping=lambda: self._stopping)
        return d.addCallback(self._reported)

    def _reported(self, report: ScrubReport) -> None:
        log.info(
            "Scrub checked {chunks} chunks ({nbytes} bytes): {problems} problems",
            chunks=report.chunks_checked, nbytes=report.bytes_checked, problems=len(report.problems),
        )  # fmt: skip
        if self.on_report is not None:
            self.on_report(report)

    def startService(self) -> None:
        super().startService()
        self._running = self._loop.start(self.interval_seconds, now=False)

    def stopService(self) -> Any:
        """Stop the loop and end a pass in progress at its next record, chunk
        or index entry, and wait for that (at most one chunk's check or one
        page read): the store and the backend
        are closed by a service stopped after this one.  Then give the lease
        up, so another server need not wait for its expiry."""
        super().stopService()
        self._stopping = True
        if self._loop.running:
            self._loop.stop()
        running: Deferred[Any] = self._running if self._running is not None else succeed(None)
        return running.addCallback(lambda _: release_quietly(self.lease))
