"""The embedded metadata store: :class:`IMetadataStore` on one SQLite file.

Why it looks like this:

* Keys are BLOBs, and SQLite orders BLOBs with ``memcmp`` (shorter first on a
  tie), which is exactly S3's UTF-8 byte order, so ``scan`` needs no collation.
* The database runs in WAL mode with ``synchronous=FULL``: readers never wait
  for the writer, and a committed transaction survives power loss.
* An fsync per transaction would cap us near the disk's sync rate, so ONE
  writer thread does *group commit*: it takes every transaction already
  queued (up to ``batch_max``), runs them in one ``BEGIN IMMEDIATE ... COMMIT``
  with a SAVEPOINT each, and only fires their Deferreds after the COMMIT
  returned.  Durability is unchanged; the fsync is shared.
* Reads run on a small pool of their own (one connection per thread) so they
  never queue behind writes, and see committed data only.  The pool is not
  twisted's ``ThreadPool``: a reader thread takes every read already queued
  and answers them all with one ``callFromThread`` (:class:`_ReadPool`).
  Under concurrent requests that is a fraction of a thread wake-up, GIL
  hand-over and reactor wake-up per read instead of several each, which
  measured as a large part of a small GET's CPU time (docs/performance.md,
  "CPU per request").
* Several processes may open the same file: the store revision lives in the
  ``meta`` table and is read inside each write transaction, after the write
  lock is held, so revisions stay one sequence across processes.
* Writers of several processes (``--workers``) queue on an ``flock`` of
  ``<database>-writer.lock`` before ``BEGIN IMMEDIATE``.  Without it, a writer
  finding the database locked by another process's commit is left to
  SQLite's busy handler, which sleeps and retries (1, 2, 5, 10 ms...) and
  so waits longer than the commit it waits for; the kernel wakes an
  ``flock`` waiter as soon as the holder lets go.  Other programs opening
  the file (no lock file) still meet the busy handler, as before.

* Point reads (``get``) are answered from a per-process cache when it holds
  the key at the current generation of a counter shared by every process,
  which the writers move around each COMMIT under the writer lock
  (lightningstor/metadata/readcache.py explains why that is exact).  A hit
  takes no thread hand-over at all.

* A free-space reserve (``[storage] min_free_bytes``, lightningstor/diskspace.py):
  while the database's volume has less free than that, a transaction that
  would add object data (a small object's bytes, inline in its record) is
  refused with ``MetadataBelowReserve`` (507).  Everything else commits, so
  a nearly full server can still be emptied: deletes, delete markers, bucket
  deletion, and moves of data already stored (a version demoted or promoted,
  a record re-tagged), which are recognised by the same bytes leaving
  another key of the transaction.  The check is one cached ``statvfs`` per
  batch, in the writer thread; the old values are read only while short.

  Deleting small objects frees pages inside the database file, which SQLite
  reuses but never gives back to the filesystem, so the volume's free space
  does not show them.  While short, a transaction that adds object data is
  therefore still let through when the database's free pages can hold it
  (:func:`_reuse_cost` against ``PRAGMA freelist_count``): the file does not
  grow, and users who deleted small objects can store small objects again,
  up to what they deleted.

Nothing here touches SQLite on the reactor thread.
"""

from __future__ import annotations

import fcntl
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from twisted.plugin import IPlugin
from twisted.python.failure import Failure
from twisted.python.threadable import isInIOThread
from zope.interface import implementer

from lightningstor.diskspace import FreeSpaceReserve, configured_min_free_bytes, inline_data
from lightningstor.errors import ConfigError, MetadataBelowReserve, MetadataFull, MetadataUnavailable
from lightningstor.interfaces.metadata import (
    Compare,
    Delete,
    DeleteRange,
    IMetadataStore,
    IMetadataStoreFactory,
    IPointReadCache,
    IQueueDepths,
    IScanItems,
    IScanTogether,
    KeyValue,
    Operation,
    Put,
    TxnResult,
)
from lightningstor.interfaces.storage import PluginContext
from lightningstor.metadata.published import Published, PublishedWrites
from lightningstor.metadata.readcache import Generations, ReadCache, slot_of

_T = TypeVar("_T")

log = Logger()

SYNCHRONOUS_MODES = ("OFF", "NORMAL", "FULL", "EXTRA")

# Per process; small records (a few hundred bytes) and objects stored inline
# (up to 64 KiB each by default) share it.
DEFAULT_CACHE_BYTES = 32 << 20

# etcd's convention (see ``prefix_end``): an end key of b"\0" means "no upper bound".
_UNBOUNDED = b"\x00"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    key BLOB PRIMARY KEY,
    value BLOB NOT NULL,
    mod_revision INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO meta (name, value) VALUES ('revision', 0);
"""

# A transaction's compares, and each run of its consecutive puts, go to
# SQLite as one statement per up to _GROUP keys rather than one per key.
# The sqlite3 module lets go of the GIL for every step of a statement, and
# under load the writer then waits for the reactor thread to hand it back:
# a PUT's three compares (two steps each: the row, then the end of rows)
# and its one or two puts (the record; the usage row of a new key) were
# seven or eight such steps, now three.  Counted with strace on
# the writer thread, 2,000 PUTs of 4 KiB at c=16: 4.1 futex calls per PUT,
# now 3.7.  The outcome is the same: a missing key compares as revision 0,
# and the rows of one INSERT are written in order (a later put of the same
# key wins).  Fixed sizes keep the statement texts few, so they stay in the
# connection's statement cache.
_GROUP = 8
_COMPARES = [""] + [
    "SELECT " + ", ".join(["(SELECT mod_revision FROM kv WHERE key = ?)"] * n) for n in range(1, _GROUP + 1)
]
_PUTS = [""] + [
    "INSERT INTO kv (key, value, mod_revision) VALUES " + ", ".join(["(?, ?, ?)"] * n)
    + " ON CONFLICT (key) DO UPDATE SET value = excluded.value, mod_revision = excluded.mod_revision"
    for n in range(1, _GROUP + 1)
]


@dataclass
class _PendingTxn:
    compares: Sequence[Compare]
    operations: Sequence[Operation]
    deferred: Deferred[TxnResult] = field(default_factory=Deferred)


_STOP = object()  # queued by close(): the writer drains what is ahead of it, then stops

# The most reads one reader thread runs before answering them.
_READ_BATCH = 64


def _deliver(results: list[tuple[Deferred[Any], bool, Any]]) -> None:
    """Reactor thread: fire the Deferreds of one batch of reads."""
    for d, ok, value in results:
        if ok:
            d.callback(value)
        else:
            d.errback(value)


class _ReadPool:
    """Threads that run reads and answer them in batches.

    ``submit`` collects the calls made during one reactor turn and queues
    them as one list at the end of it (waking a blocked thread costs a
    system call, and on a VM an inter-processor interrupt, per queue put).
    Each thread blocks for the first queued list, then takes whatever else
    is queued (up to :data:`_READ_BATCH` calls), runs them one after another
    and hands all the outcomes back in one ``callFromThread``.  A lone read
    costs about what it did with ``deferToThreadPool``; concurrent reads
    share the wake-ups.  A slow read (a long scan) delays only the reads
    batched behind it: the other threads keep taking new ones.  ``stop``
    lets the threads finish what is queued, then joins them.
    """

    def __init__(self, reactor: Any, size: int, run: Callable[..., Any], name: str) -> None:
        self._reactor = reactor
        self._run = run
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._pending: list[tuple[Deferred[Any], Callable[..., Any], tuple[Any, ...]]] = []
        self._threads = [threading.Thread(target=self._loop, name=name, daemon=True) for _ in range(size)]
        self._started = False

    def start(self) -> None:
        """Start the threads (once; the store does, at its first use: not
        when it is built, which twistd does before it forks into a daemon,
        and threads do not survive a fork)."""
        if not self._started:
            self._started = True
            for thread in self._threads:
                thread.start()

    def submit(self, fn: Callable[..., _T], *args: Any) -> Deferred[_T]:
        d: Deferred[_T] = Deferred()
        if not isInIOThread():
            self._queue.put([(d, fn, args)])  # not the reactor thread: no turn to wait for
            return d
        pending = self._pending
        pending.append((d, fn, args))
        if len(pending) == 1:
            self._reactor.callLater(0, self._flush)
        return d

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        if batch:
            self._queue.put(batch)

    def flush(self) -> None:
        """Reactor thread: queue the calls of this turn now (before closing)."""
        self._flush()

    def queued(self) -> int:
        """Reads waiting for a thread, in their batches: those of this
        reactor turn count as one (metrics; approximate)."""
        return self._queue.qsize() + (1 if self._pending else 0)

    def _loop(self) -> None:
        q = self._queue
        run = self._run
        while True:
            item = q.get()
            stop = item is _STOP
            batch = [] if stop else list(item)
            while not stop and len(batch) < _READ_BATCH:
                try:
                    item = q.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True  # exactly one sentinel per thread is taken
                else:
                    batch.extend(item)
            if batch:
                results: list[tuple[Deferred[Any], bool, Any]] = []
                for d, fn, args in batch:
                    try:
                        results.append((d, True, run(fn, *args)))
                    except BaseException:
                        results.append((d, False, Failure()))
                self._reactor.callFromThread(_deliver, results)
            if stop:
                return

    def stop(self) -> None:
        """Run what is queued, then end and join every thread.  Any thread;
        calls still collected on the reactor were queued by :meth:`flush`."""
        if not self._started:
            return  # nothing was ever submitted
        for _ in self._threads:
            self._queue.put(_STOP)
        for thread in self._threads:
            thread.join()


@dataclass
class _Settled:
    """The counter value the batch's writer left even for each key it put
    or deleted, and the range-delete counter, read under the writer lock
    (computed in the writer thread, so the reactor hashes no key again)."""

    tags: dict[bytes, int]
    everything: int
    entries: list[Published] | None  # what it committed (_committed)


# A range delete that removes at most this many keys moves only their
# counter slots; a larger one moves slot 0, which every cached entry of
# every process depends on (readcache.py), so that all of them miss once.
_RANGE_KEYS_MAX = 4096


def _slots_of(batch: Sequence[_PendingTxn]) -> tuple[dict[bytes, int], set[int], list[DeleteRange]]:
    """The counter slot of every key the batch may put or delete, the slots
    it writes for them, and its range deletes (:func:`_range_slots`)."""
    keyed: dict[bytes, int] = {}
    ranges: list[DeleteRange] = []
    for pending in batch:
        for op in pending.operations:
            if isinstance(op, DeleteRange):
                ranges.append(op)
            else:
                keyed[op.key] = slot_of(op.key)
    return keyed, set(keyed.values()), ranges


def _range_slots(conn: sqlite3.Connection, ranges: Sequence[DeleteRange]) -> set[int]:
    """The counter slots of the keys ``ranges`` will remove; ``{0}`` (every
    entry, readcache.py) for more than :data:`_RANGE_KEYS_MAX` keys or if
    they cannot be read.

    Why not always slot 0: every multipart completion and abort removes its
    upload's part records with a range delete, and moving slot 0 emptied
    every worker's read cache each time.  Read under the writer lock, before
    the batch runs: no other process writes until it is released, so these
    are exactly the keys the range deletes find, but for keys the batch
    itself puts first, whose slots are the batch's own anyway.  A key of the
    range that is absent stays absent: its cached "no such key" stays true.
    """
    found: set[int] = set()
    budget = _RANGE_KEYS_MAX
    try:
        for op in ranges:
            where, params = _range_sql(op.start, op.end)
            rows = _rows(conn, f"SELECT key FROM kv WHERE {where} LIMIT ?", (*params, budget + 1))
            if len(rows) > budget:
                return {0}
            budget -= len(rows)
            found.update(slot_of(key) for (key,) in rows)
    except sqlite3.Error:
        return {0}
    return found


def _in_range(key: bytes, op: DeleteRange) -> bool:
    return op.start <= key and (op.end == _UNBOUNDED or key < op.end)


def _committed(
    batch: Sequence[_PendingTxn], outcomes: Sequence[TxnResult | BaseException], tags: dict[bytes, int], everything: int
) -> list[Published]:
    """What the batch left in keys whose last write in it compared them, in
    commit order, at the counters its writer set (readcache.py): the keys
    that are read before they are written (object records, buckets...) and
    so read again.  Keys written blind (usage deltas, index entries) are
    scanned, not read one by one, and would only take room.  A key a range
    delete removed after the batch put it gets none either (it is absent,
    which a read will find)."""
    # One entry per key: its state at the end of the batch, which is what
    # the counter value the writer left stands for.  A key whose last write
    # in the batch did not compare it gets none.
    last: dict[bytes, Published | None] = {}
    for pending, outcome in zip(batch, outcomes):
        if not isinstance(outcome, TxnResult) or not outcome.succeeded:
            continue
        compared = {c.key for c in pending.compares}
        for op in pending.operations:
            if isinstance(op, DeleteRange):
                for key in [key for key in last if _in_range(key, op)]:
                    last[key] = None
                continue
            last.pop(op.key, None)  # keeps the keys in the order of their last write
            if op.key not in compared:
                last[op.key] = None
            elif isinstance(op, Put):
                last[op.key] = (op.key, op.value, outcome.revision, tags[op.key], everything)
            else:
                last[op.key] = (op.key, None, 0, tags[op.key], everything)
    return [entry for entry in last.values() if entry is not None]


def _write_through(
    cache: ReadCache, batch: Sequence[_PendingTxn], outcomes: Sequence[TxnResult | BaseException], settled: _Settled
) -> None:
    """Keep the batch's committed puts and deletes at the counters the writer
    set; forget the keys of a failed compare (the caller reads them again)."""
    for pending, outcome in zip(batch, outcomes):
        if isinstance(outcome, TxnResult) and not outcome.succeeded:
            for c in pending.compares:
                cache.forget(c.key)
    for key, value, revision, tag, everything in settled.entries or ():
        cache.keep(key, None if value is None else KeyValue(key, value, revision), tag, everything)


# Below this much free space an I/O error of a write is taken for ENOSPC
# (Python's sqlite3 does not tell the OS error): a write fails there for want
# of the pages it was about to add, and every retry would fail alike.
_FULL_BELOW_BYTES = 1 << 20


def _unavailable(what: str, e: BaseException, directory: str | None = None) -> MetadataUnavailable:
    """The error a failed write answers: MetadataFull when the disk (or its
    quota) is full, so the client hears 507 rather than a 503 it would
    retry in vain.  SQLite says SQLITE_FULL for a write that hit ENOSPC,
    but growing the WAL index (``-shm``, by one-byte writes each time the
    log passes another 4,096 frames: a reader holding an old snapshot, a
    large group commit) fails as SQLITE_IOERR_SHMSIZE, and other writes as
    other I/O errors; those are "full" when the database's volume
    (``directory``) has almost no space left."""
    extended = getattr(e, "sqlite_errorcode", 0)
    if extended & 0xFF == sqlite3.SQLITE_FULL or extended == _SQLITE_IOERR_SHMSIZE:
        return MetadataFull(f"{what}: {e}")
    if extended & 0xFF == sqlite3.SQLITE_IOERR and directory is not None and _nearly_full(directory):
        return MetadataFull(f"{what}: {e}")
    return MetadataUnavailable(f"{what}: {e}")


_SQLITE_IOERR_SHMSIZE = sqlite3.SQLITE_IOERR | (19 << 8)  # 4874, as sqlite3.h defines it


def _nearly_full(directory: str) -> bool:
    """Whether the volume of ``directory`` has less than ``_FULL_BELOW_BYTES``
    free for this process (False when it cannot be asked)."""
    try:
        st = os.statvfs(directory)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < _FULL_BELOW_BYTES


def _put_bytes(batch: Sequence[_PendingTxn]) -> int:
    """The bytes of the values a batch writes: what the reserve is charged."""
    return sum(len(op.value) for pending in batch for op in pending.operations if isinstance(op, Put))


def _free_pages(conn: sqlite3.Connection) -> tuple[int, int]:
    """``(bytes, page size)`` of the database's free pages: space inside the
    file that SQLite fills before it grows the file (writer thread, in the
    transaction)."""
    count: int = _rows(conn, "PRAGMA freelist_count")[0][0]
    size: int = _rows(conn, "PRAGMA page_size")[0][0]
    return count * size, size


def _reuse_cost(operations: Sequence[Operation], page_size: int) -> int:
    """What a transaction's writes are charged against the free pages: the
    bytes it writes, plus a quarter for page headers, cell overhead and
    partly filled overflow pages, plus four pages per write for the b-tree
    pages a new row may split.  Generous on purpose: a write refused here
    waits for space, one let through wrongly grows a file on a full disk."""
    puts = [len(op.value) for op in operations if isinstance(op, Put)]
    written = sum(puts)
    return written + written // 4 + 4 * page_size * len(puts)


def _adds_object_data(conn: sqlite3.Connection, operations: Sequence[Operation]) -> bool:
    """Whether applying ``operations`` would store object data that is not
    already stored under a key they overwrite or delete.

    A versioned DELETE moves the current record (data included) to a version
    key, deleting a version may move the next one back, tagging rewrites a
    record with its data: none of that adds data, and all of it must work
    while the reserve is short.  A new small object, a copy or an overwrite
    with other bytes does add data.  Writer thread, inside the transaction,
    before the operations are applied; only called while the reserve is short.
    """
    added = [data for op in operations if isinstance(op, Put) and (data := inline_data(op.value)) is not None]
    if not added:
        return False
    leaving: list[bytes] = []
    for op in operations:
        if isinstance(op, (Put, Delete)):
            rows = _rows(conn, "SELECT value FROM kv WHERE key = ?", (op.key,))
            old = inline_data(rows[0][0]) if rows else None
            if old is not None:
                leaving.append(old)
    for data in added:
        if data in leaving:
            leaving.remove(data)
        else:
            return True
    return False


def _key(value: Any, what: str = "key") -> bytes:
    """Keys must be bytes: a ``str`` would be stored as TEXT and sort apart."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"metadata {what} must be bytes, not {type(value).__name__}")


def _normalize(operations: Sequence[Operation]) -> list[Operation]:
    out: list[Operation] = []
    for op in operations:
        if isinstance(op, Put):
            out.append(Put(_key(op.key), _key(op.value, "value")))
        elif isinstance(op, Delete):
            out.append(Delete(_key(op.key)))
        elif isinstance(op, DeleteRange):
            out.append(DeleteRange(_key(op.start), _key(op.end)))
        else:
            raise TypeError(f"unknown metadata operation {op!r}")
    return out


def _rows(conn: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> list[Any]:
    """Run a query to completion: a half-read statement would hold its snapshot."""
    return conn.execute(sql, params).fetchall()


def _range_sql(start: bytes, end: bytes) -> tuple[str, tuple[bytes, ...]]:
    if end == _UNBOUNDED:
        return "key >= ?", (start,)
    return "key >= ? AND key < ?", (start, end)


def _open_published(path: str, reactor: Any) -> PublishedWrites | None:
    """The shared ring of committed writes, or None if it cannot be made
    (a full volume): the caches then only miss more, nothing is wrong."""
    try:
        return PublishedWrites(path, int.from_bytes(os.urandom(4), "little"))
    except OSError as e:
        reactor.callFromThread(log.warn, "No shared ring of committed writes ({path}): {err}", path=path, err=e)
        return None


def _open_writer_lock(path: str) -> int | None:
    """The file descriptor of ``<path>-writer.lock``, which the writers of
    every process using this database ``flock`` around their write
    transactions (module docstring); None for an in-memory database."""
    if path == ":memory:" or path.startswith("file:"):
        return None
    # The real path: every process must find the same lock (and counters,
    # readcache.py) whatever name it opened the database by.
    return os.open(os.path.realpath(path) + "-writer.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)


@implementer(IMetadataStore, IScanItems, IScanTogether, IPointReadCache, IQueueDepths)
class SqliteMetadataStore:
    """Ordered, transactional metadata in a SQLite file (see the module doc).

    ``commit_count`` counts COMMITs the writer has made, so tests and metrics
    can see how well group commit batches.
    """

    name = "sqlite"

    def __init__(
        self,
        path: str,
        reactor: Any,
        *,
        synchronous: str = "FULL",
        batch_max: int = 256,
        busy_timeout: float = 10.0,
        readers: int = 2,
        min_free_bytes: int = 0,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> None:
        if synchronous.upper() not in SYNCHRONOUS_MODES:
            raise ValueError(f"synchronous must be one of {SYNCHRONOUS_MODES}, not {synchronous!r}")
        if batch_max < 1 or readers < 1:
            raise ValueError("batch_max and readers must be at least 1")
        if cache_bytes < 0:
            raise ValueError("cache_bytes must not be negative")
        self.path = path
        # The reserve is checked on the database's directory (its volume);
        # an in-memory database has none.  0 (off) unless configured.
        in_memory = path == ":memory:" or path.startswith("file:")
        self.reserve = FreeSpaceReserve(
            os.path.dirname(os.path.abspath(path)), 0 if in_memory else min_free_bytes
        )
        self._writer_lock: int | None = None  # fd of <path>-writer.lock (writer thread)
        # Why the free-space reserve is short, for the batch being committed
        # (writer thread); None while there is room.
        self._shortfall: str | None = None
        # While short: the bytes of the database's free pages not yet
        # promised to a transaction of the batch (writer thread).
        self._reusable = 0
        self._page_bytes = 4096
        self.commit_count = 0
        # Set by the writer thread once the database is open (readcache.py):
        # every writer moves the shared counters, whatever its own cache size.
        self._generations: Generations | None = None
        self._cache_bytes = cache_bytes
        self.cache: ReadCache | None = None
        # The ring of committed writes shared with the other processes'
        # caches (published.py); None for an in-memory database.
        self._published: PublishedWrites | None = None
        self._reactor = reactor
        self._synchronous = synchronous.upper()
        self._batch_max = batch_max
        self._busy_timeout = busy_timeout
        self._closed = False
        self._close_waiters: list[Deferred[None]] | None = []
        self._ready = threading.Event()
        self._startup_error: str | None = None
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._local = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._reader_lock = threading.Lock()
        self._readers = _ReadPool(reactor, readers, self._in_reader, "lightningstor-sqlite-read")
        # Daemon: a store nobody closed must not keep the process alive; the
        # shutdown trigger below still drains it when the reactor stops.
        # Started at the first use (_start_writer), not here: twistd builds
        # the service, and so this store, before it forks into a daemon,
        # and a thread does not survive a fork (the daemon's reads and writes
        # then waited forever).
        self._writer = threading.Thread(
            target=self._write_loop, name="lightningstor-sqlite-write", daemon=True
        )
        self._writer_started = False
        # "during", not "before": services stop in the "before" phase and may
        # still be finishing requests that write metadata.
        self._trigger: Any = reactor.addSystemEventTrigger("during", "shutdown", self._close_on_shutdown)

    # -- IMetadataStore ------------------------------------------------------

    def get(self, key: bytes) -> Deferred[KeyValue | None]:
        try:
            k = _key(key)
        except TypeError:
            return fail()
        cache = self.cache
        if cache is not None and not self._closed and isInIOThread():
            return cache.get(k, self._read_one)
        return self._read(self._get, k)

    def _read_one(self, key: bytes) -> Deferred[KeyValue | None]:
        return self._read(self._get, key)

    def scan(self, start: bytes, end: bytes, limit: int = 0) -> Deferred[list[KeyValue]]:
        try:
            s, e = _key(start), _key(end, "end")
        except TypeError:
            return fail()
        return self._read(self._scan, s, e, limit)

    def scan_items(self, start: bytes, end: bytes, limit: int = 0) -> Deferred[list[tuple[bytes, bytes]]]:
        """``scan`` as ``(key, value)`` tuples, without a ``KeyValue`` per row.

        The optional ``IScanItems``, which listings use when the store's
        class declares it.  A full walk reads every row once, and
        building a frozen dataclass per row was ~8% of the walk's GIL samples,
        plus its share of garbage collection.
        """
        try:
            s, e = _key(start), _key(end, "end")
        except TypeError:
            return fail()
        return self._read(self._scan_items, s, e, limit)

    def scan_items_together(
        self, ranges: Sequence[tuple[bytes, bytes, int]]
    ) -> Deferred[list[list[tuple[bytes, bytes]]]]:
        """``scan_items`` of each range, in one read transaction
        (IScanTogether): WAL gives every statement of it the same snapshot,
        so a transaction another thread or process commits meanwhile is in
        all the ranges or in none."""
        try:
            bounds = [(_key(start), _key(end, "end"), limit) for start, end, limit in ranges]
        except TypeError:
            return fail()
        return self._read(self._scan_items_together, bounds)

    def queue_depths(self) -> dict[str, int]:
        """Work waiting for the store's threads, for the metrics
        (``S3Metrics.watch_metadata_queues``): ``transactions`` queued for the
        writer (not yet gathered into a batch: the writer may be waiting for
        the disk or another process's commit) and ``read_batches`` queued for
        the readers.  Approximate, as any sample of a moving queue."""
        return {"transactions": self._queue.qsize(), "read_batches": self._readers.queued()}

    def txn(self, compares: Sequence[Compare], operations: Sequence[Operation]) -> Deferred[TxnResult]:
        if self._closed:
            return fail(MetadataUnavailable("metadata store is closed"))
        try:
            pending = _PendingTxn(
                [Compare(_key(c.key), c.mod_revision) for c in compares], _normalize(operations)
            )
        except TypeError:
            return fail()
        if not self._writer_started:
            self._start_writer()
        self._queue.put(pending)
        return pending.deferred

    def _start_writer(self) -> None:
        """Start the writer thread, which opens the database, and the reader
        threads, which wait for it (once)."""
        if not self._writer_started:
            self._writer_started = True
            self._writer.start()
            self._readers.start()

    def check(self) -> Deferred[None]:
        return self._read(self._ping)

    def close(self) -> Deferred[None]:
        """Drain queued writes, stop the threads, close every connection."""
        if self._trigger is not None:
            self._reactor.removeSystemEventTrigger(self._trigger)
            self._trigger = None
        if self._close_waiters is None:  # already closed
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._close_waiters.append(d)
        if not self._closed:
            self._closed = True
            # Reads of this reactor turn go ahead of the stop (no read is
            # accepted after it): the writer stops the readers last.
            self._readers.flush()
            self._start_writer()  # a store never used still opens and closes cleanly
            self._queue.put(_STOP)
        return d

    def _close_on_shutdown(self) -> Deferred[None]:
        self._trigger = None  # it is firing now; removing it would warn
        return self.close()

    def _closed_in_writer(self) -> None:
        """Reactor thread: the writer has stopped; release everyone waiting in close()."""
        waiters, self._close_waiters = self._close_waiters or [], None
        for d in waiters:
            d.callback(None)

    # -- reads (reader pool) -------------------------------------------------

    def _read(self, fn: Callable[..., _T], *args: Any) -> Deferred[_T]:
        if self._closed:
            return fail(MetadataUnavailable("metadata store is closed"))
        if not self._writer_started:
            self._start_writer()
        return self._readers.submit(fn, *args)

    def _in_reader(self, fn: Callable[..., _T], *args: Any) -> _T:
        self._ready.wait()  # the writer creates the schema first
        if self._startup_error is not None:
            raise MetadataUnavailable(self._startup_error)
        try:
            conn = getattr(self._local, "conn", None)
            if conn is None:
                conn = self._connect()
                conn.execute("PRAGMA query_only = 1")
                self._local.conn = conn
                with self._reader_lock:
                    self._reader_conns.append(conn)
            return fn(conn, *args)
        except sqlite3.Error as e:
            raise MetadataUnavailable(f"sqlite read failed: {e}") from e

    @staticmethod
    def _ping(conn: sqlite3.Connection) -> None:
        _rows(conn, "SELECT value FROM meta WHERE name = 'revision'")

    @staticmethod
    def _get(conn: sqlite3.Connection, key: bytes) -> KeyValue | None:
        rows = _rows(conn, "SELECT value, mod_revision FROM kv WHERE key = ?", (key,))
        return KeyValue(key, *rows[0]) if rows else None

    @staticmethod
    def _scan(conn: sqlite3.Connection, start: bytes, end: bytes, limit: int) -> list[KeyValue]:
        where, params = _range_sql(start, end)
        sql = f"SELECT key, value, mod_revision FROM kv WHERE {where} ORDER BY key LIMIT ?"
        return [KeyValue(*row) for row in _rows(conn, sql, (*params, limit if limit > 0 else -1))]

    @staticmethod
    def _scan_items(conn: sqlite3.Connection, start: bytes, end: bytes, limit: int) -> list[tuple[bytes, bytes]]:
        where, params = _range_sql(start, end)
        sql = f"SELECT key, value FROM kv WHERE {where} ORDER BY key LIMIT ?"
        return _rows(conn, sql, (*params, limit if limit > 0 else -1))

    @staticmethod
    def _scan_items_together(
        conn: sqlite3.Connection, ranges: list[tuple[bytes, bytes, int]]
    ) -> list[list[tuple[bytes, bytes]]]:
        conn.execute("BEGIN")
        try:
            return [SqliteMetadataStore._scan_items(conn, start, end, limit) for start, end, limit in ranges]
        finally:
            conn.execute("COMMIT")

    # -- writes (the writer thread) ------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves.  check_same_thread
        # is off only so close can release a reader's connection after its
        # thread has exited; each connection is used by one thread.
        return sqlite3.connect(
            self.path, timeout=self._busy_timeout, isolation_level=None, check_same_thread=False
        )

    def _open_writer(self) -> sqlite3.Connection:
        # Switching a fresh file to WAL can fail with SQLITE_BUSY at once, without
        # the busy handler, when another process is doing the same: retry it here.
        deadline = time.monotonic() + self._busy_timeout
        while True:
            try:
                return self._init_writer()
            except sqlite3.OperationalError as e:
                busy = getattr(e, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_BUSY
                if not busy or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def _init_writer(self) -> sqlite3.Connection:
        # The writer opens the file first (readers wait for it): created here,
        # not at start-up, so that a server started as root creates its files
        # after it switched to its run user (lightningstor.run_user).
        _create_private(self.path)
        conn = self._connect()
        try:
            mode = _rows(conn, "PRAGMA journal_mode = WAL")[0][0]
            if mode.lower() != "wal":
                raise sqlite3.OperationalError(f"cannot enable WAL (journal_mode is {mode})")
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
            # One script: executescript would COMMIT a transaction begun outside it.
            conn.executescript("BEGIN IMMEDIATE;" + _SCHEMA + "COMMIT;")
        except BaseException:
            conn.close()
            raise
        return conn

    def _write_loop(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            conn = self._open_writer()
            self._writer_lock = _open_writer_lock(self.path)
            self._generations = Generations(
                None if self._writer_lock is None else os.path.realpath(self.path) + "-gen"
            )
            if self._writer_lock is not None:
                self._published = _open_published(os.path.realpath(self.path) + "-pub", self._reactor)
            if self._cache_bytes:
                self.cache = ReadCache(self._generations, self._cache_bytes, self._published)
        except (sqlite3.Error, OSError) as e:
            self._startup_error = f"cannot open metadata database {self.path!r}: {e}"
            if conn is not None:
                conn.close()
                conn = None
        finally:
            self._ready.set()
        try:
            self._serve_writes(conn)
        finally:
            self._readers.stop()  # joins the reader threads once their queued reads are done
            for c in [*self._reader_conns, *([conn] if conn else [])]:
                c.close()
            if self._writer_lock is not None:
                os.close(self._writer_lock)
                self._writer_lock = None
            if self._generations is not None and self._closed:
                self._generations.close()  # no read uses it once closed (get)
                if self._published is not None:
                    self._published.close()
            self._reactor.callFromThread(self._closed_in_writer)

    def _serve_writes(self, conn: sqlite3.Connection | None) -> None:
        """Commit whatever is queued, batch by batch, until close() queues _STOP.

        With other processes' writers on the same file (``--workers``), the
        writer lock is taken *before* the batch is gathered: what arrives
        while another process commits (its fsync) joins this batch rather
        than the next, so each worker's commits gather as many transactions
        as one process's do.  Without waiting the order is the same as
        gathering first."""
        lock = self._writer_lock if conn is not None and self._generations is not None else None
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if lock is not None:
                fcntl.flock(lock, fcntl.LOCK_EX)  # queue behind other processes' writers
            try:
                batch: list[_PendingTxn] = [item]
                while len(batch) < self._batch_max:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is _STOP:
                        break
                    batch.append(item)
                outcomes, settled = self._commit_batch(conn, batch)
            finally:
                if lock is not None:
                    fcntl.flock(lock, fcntl.LOCK_UN)
            self._reactor.callFromThread(self._fire, batch, outcomes, settled)
            if item is _STOP:
                return

    def _commit_batch(
        self, conn: sqlite3.Connection | None, batch: list[_PendingTxn]
    ) -> tuple[list[TxnResult | BaseException], _Settled | None]:
        """Run ``batch`` in one write transaction, holding the writer lock
        (``_serve_writes`` took it); one outcome per txn, and the shared
        counters as this writer left them (readcache.py).

        A txn that raises is rolled back to its savepoint and fails alone; a
        failure of the transaction as a whole (BEGIN, COMMIT, SQLite having
        rolled everything back) fails every txn of the batch.
        """
        if conn is None or self._generations is None:
            return [MetadataUnavailable(self._startup_error or "no database") for _ in batch], None
        outcomes: list[TxnResult | BaseException] = []
        # The free-space reserve, once per batch, charged with what the batch
        # writes (an estimate of its growth); _apply_txn refuses what adds
        # object data.  A refresh (a statvfs) comes at most every 0.5 s.
        reserve = self.reserve
        self._shortfall = reserve.shortfall(_put_bytes(batch)) if reserve.enabled else None
        generations = self._generations
        keyed, slots, ranges = _slots_of(batch)
        if ranges:
            slots |= _range_slots(conn, ranges)
        # Odd before the COMMIT, even after it (or the rollback), under the
        # lock: what makes every process's cache exact (readcache.py).
        if generations.begin(slots):
            self._reactor.callFromThread(
                log.warn, "A metadata writer stopped during a commit; the read caches' counters it left are settled"
            )
        try:
            outcomes = self._run_batch(conn, batch, outcomes)
        finally:
            settled = generations.end(slots)
            everything = generations.counters[0]
        tags = {key: settled[slot] for key, slot in keyed.items()}
        entries = None
        if self.cache is not None or self._published is not None:
            entries = _committed(batch, outcomes, tags, everything)
        if entries and self._published is not None:
            self._publish(entries)
        return outcomes, _Settled(tags, everything, entries)

    def _publish(self, entries: list[Published]) -> None:
        """Offer the batch to the other processes' caches (published.py);
        under the writer lock.  Only an optimisation: a failure turns it off."""
        assert self._published is not None
        try:
            self._published.append(entries)
        except Exception as e:  # never lose the writer thread over it
            self._published = None
            self._reactor.callFromThread(log.warn, "Publishing committed writes stopped: {err}", err=e)

    def _run_batch(
        self, conn: sqlite3.Connection, batch: list[_PendingTxn], outcomes: list[TxnResult | BaseException]
    ) -> list[TxnResult | BaseException]:
        try:
            conn.execute("BEGIN IMMEDIATE")
            # Read under the write lock: another process may have committed.
            start = revision = _rows(conn, "SELECT value FROM meta WHERE name = 'revision'")[0][0]
            if self._shortfall is not None:
                self._reusable, self._page_bytes = _free_pages(conn)
            for pending in batch:
                conn.execute("SAVEPOINT txn")
                try:
                    result = self._apply_txn(conn, pending, revision)
                except Exception as e:
                    if not conn.in_transaction:
                        raise  # SQLite rolled the whole transaction back
                    conn.execute("ROLLBACK TO txn")
                    conn.execute("RELEASE txn")
                    failure = _unavailable("sqlite txn failed", e, self.reserve.path) if isinstance(e, sqlite3.Error) else e
                    if isinstance(failure, MetadataUnavailable):
                        # Rolled back to its savepoint: not applied, whatever
                        # the batch's COMMIT does, so the caller may delete
                        # the chunks it wrote (a refused PUT's stayed for the
                        # collector, a day, while the disk was nearly full).
                        failure.not_applied = True
                    outcomes.append(failure)
                else:
                    conn.execute("RELEASE txn")
                    revision = result.revision
                    outcomes.append(result)
            if revision != start:
                conn.execute("UPDATE meta SET value = ? WHERE name = 'revision'", (revision,))
            conn.execute("COMMIT")
            self.commit_count += 1
            return outcomes
        except Exception as e:  # whatever broke, every caller must hear back
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            return [_unavailable("sqlite commit failed", e, self.reserve.path) for _ in batch]

    def _apply_txn(self, conn: sqlite3.Connection, pending: _PendingTxn, revision: int) -> TxnResult:
        """Compare, then apply; the result carries the (possibly bumped) revision.

        While the free-space reserve is short (``_shortfall``, set for the
        batch), a transaction that would add object data is refused with
        MetadataBelowReserve, unless the database's free pages not yet
        promised to the batch's earlier transactions can hold it.
        """
        compares = pending.compares
        for i in range(0, len(compares), _GROUP):
            group = compares[i : i + _GROUP]
            # One row, a column per key: NULL for a key that does not exist.
            found = conn.execute(_COMPARES[len(group)], [c.key for c in group]).fetchone()
            for c, mod_revision in zip(group, found):
                if (mod_revision or 0) != c.mod_revision:
                    return TxnResult(False, revision)
        shortfall = self._shortfall
        if shortfall is not None and _adds_object_data(conn, pending.operations):
            cost = _reuse_cost(pending.operations, self._page_bytes)
            if cost > self._reusable:
                raise MetadataBelowReserve(f"sqlite: {shortfall}")
            self._reusable -= cost
        new = revision + 1
        changed = False
        puts: list[Any] = []  # consecutive puts not yet written: key, value, revision, ...
        for op in pending.operations:
            if isinstance(op, Put):
                puts += (op.key, op.value, new)
                if len(puts) == 3 * _GROUP:
                    conn.execute(_PUTS[_GROUP], puts)
                    puts = []
                changed = True
                continue
            if puts:
                # Written in order: a later operation on the same key must see them.
                conn.execute(_PUTS[len(puts) // 3], puts)
                puts = []
            if isinstance(op, Delete):
                changed |= conn.execute("DELETE FROM kv WHERE key = ?", (op.key,)).rowcount > 0
            else:
                where, params = _range_sql(op.start, op.end)
                changed |= conn.execute(f"DELETE FROM kv WHERE {where}", params).rowcount > 0
        if puts:
            conn.execute(_PUTS[len(puts) // 3], puts)
        return TxnResult(True, new if changed else revision)

    def _fire(
        self, batch: list[_PendingTxn], outcomes: list[TxnResult | BaseException], settled: _Settled | None
    ) -> None:
        """Reactor thread, after COMMIT returned: keep what was written in the
        cache (before anyone can read it back), then tell each caller its outcome."""
        cache = self.cache
        if cache is not None and settled is not None:
            _write_through(cache, batch, outcomes, settled)
        for pending, outcome in zip(batch, outcomes):
            if isinstance(outcome, BaseException):
                pending.deferred.errback(outcome)
            else:
                pending.deferred.callback(outcome)


@implementer(IPlugin, IMetadataStoreFactory)
class SqliteStoreFactory:
    """Makes the embedded store from the ``[metadata]`` section.

    Options: ``path`` (default ``<data_dir>/metadata.db``), ``synchronous``
    (``FULL``), ``batch_max`` (256), ``busy_timeout`` seconds (10),
    ``cache_bytes`` (32 MiB per process; 0 turns the read cache off).  The
    free-space reserve is the storage one (``[storage] min_free_bytes``, or
    ``[storage.local]``'s with the local backend): one figure for the
    operator, checked on whichever volume each plugin writes to.
    """

    name = "sqlite"
    description = "Embedded SQLite metadata (WAL, durable group commit); single host"

    def create(self, options: Mapping[str, Any], context: PluginContext) -> SqliteMetadataStore:
        own = options.get("sqlite")
        if isinstance(own, Mapping):
            # A misspelt key would silently keep its default (as the other
            # built-in plugins, refused).
            unknown = sorted(set(own) - _SQLITE_OPTIONS)
            if unknown:
                raise ConfigError(f"metadata.sqlite.{unknown[0]}: unknown option (known: {', '.join(sorted(_SQLITE_OPTIONS))})")
        path = database_path(options, context.data_dir)
        if os.path.isdir(path):
            # SQLite cannot open it, and every start-up step that reads the
            # store logged its own traceback before the server gave up.
            raise ConfigError(f"metadata.sqlite.path: {path} is a directory, not a database file")
        synchronous = str(options.get("synchronous", "FULL"))
        if synchronous.upper() not in SYNCHRONOUS_MODES:
            raise ConfigError(f"metadata.sqlite.synchronous must be one of {', '.join(SYNCHRONOUS_MODES)}")
        batch_max = _whole(options, "batch_max", 256, 1, 1 << 20)
        cache_bytes = _whole(options, "cache_bytes", DEFAULT_CACHE_BYTES, 0, 1 << 40)
        busy_timeout = options.get("busy_timeout", 10.0)
        if (
            isinstance(busy_timeout, bool)
            or not isinstance(busy_timeout, (int, float))
            or not 0 <= busy_timeout <= 3600  # also refuses nan; inf turned the wait off, as a negative one does
        ):
            raise ConfigError("metadata.sqlite.busy_timeout: a number of seconds from 0 to 3600")
        busy_timeout = float(busy_timeout)
        min_free_bytes = configured_min_free_bytes(context.settings)
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, mode=0o700, exist_ok=True)  # start-up, before the reactor serves anything
        return SqliteMetadataStore(
            path,
            context.reactor,
            synchronous=synchronous,
            batch_max=batch_max,
            busy_timeout=busy_timeout,
            min_free_bytes=min_free_bytes,
            cache_bytes=cache_bytes,
        )


_SQLITE_OPTIONS = frozenset({"path", "synchronous", "batch_max", "busy_timeout", "cache_bytes"})


def _whole(options: Mapping[str, Any], key: str, default: int, low: int, high: int) -> int:
    """An integer option within [low, high] (a bool or a float is refused,
    not rounded: ``batch_max = 2.9`` is a mistake, not 2)."""
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"metadata.sqlite.{key}: an integer from {low} to {high}")
    return value


def database_path(options: Mapping[str, Any], data_dir: str) -> str:
    """Where the store's database is: option ``path``, else
    ``<data_dir>/metadata.db`` (the admin CLI asks too, before opening it)."""
    return str(options.get("path") or os.path.join(data_dir, "metadata.db"))


def _create_private(path: str) -> None:
    """Create the database file readable by its owner only, if it is not
    there: SQLite would create it under the umask (0644 as a rule), and it
    holds small objects' bytes (stored inline), keys and names.  Its
    ``-wal`` and ``-shm`` files take its mode.  An existing file is left as
    it is (an operator may have granted a group on purpose)."""
    if path == ":memory:" or path.startswith("file:"):
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        return
    os.close(fd)


sqliteStoreFactory = SqliteStoreFactory()
