"""Point reads of the SQLite store served from memory, exact across processes.

Why: a small GET or HEAD reads one record.  Through the reader pool that read
is a hand-over to a thread and back (two thread wake-ups and a reactor
wake-up); at concurrency 1 that measured as about a quarter of the server's
CPU per request (docs/performance.md, "Thirteenth round").  SPEC appendix E
asks for hot object metadata to be cached.  A cached read answers on the
reactor thread at once, with no thread and no SQLite call.

Why a cached value is never older than an acknowledged write, whichever
worker process (or admin command) wrote it:

* Every process using the database maps one small shared file,
  ``<database>-gen``: generation counters, one per slot of key hashes
  (CRC-32 of the key), slot 0 for range deletes (:class:`Generations`).
* Only a writer holding ``<database>-writer.lock`` changes counters.  Before
  its COMMIT it makes the slots of every key its batch writes odd
  ("changing"); after the COMMIT (or the rollback) even again, each time to a
  higher value.  So counters only go up, and two processes never write one at
  the same time.
* A read (reactor thread) first reads its key's slot and slot 0.  If either
  is odd, a write is under way: the read goes to SQLite and is not kept.
  Otherwise a cached entry answers only if it was filled at exactly those
  two values.  A miss reads SQLite and keeps the answer tagged with the
  values read *before* that read: a commit the read may have missed made a
  counter odd before committing, and counters never come back, so such an
  entry never answers.
* A writer acknowledges only after it made its slots even again.  A
  process that dies in between leaves them odd (those keys are not cached:
  the safe direction) and leaves the "batch under way" word set; the next
  writer to take the lock finds it set and moves every odd counter on to
  even (:meth:`Generations.repair`).  That is safe because the dead
  writer's transaction is settled by then (committed or not), entries kept
  before its mark are tagged with older values, and nothing was kept while
  the slots were odd.
* The writer's own process keeps what it wrote (write-through), tagged with
  the even values it set under the lock, and offers the same entries to the
  other processes through a shared ring (published.py), which they take
  on a miss: the tags travel with the values, so the rule above decides
  for them too.  Only keys the transaction compared are kept and offered
  (sqlite.py ``_committed``).

The counters are plain shared memory.  Reads are aligned 8-byte loads, and
only the lock holder stores, so there is no lost update.  The file's blocks
are allocated when it is created (a store into a hole of a sparse mapping
on a full volume would kill the process with SIGBUS), and it is named
after the database's real path, so that every process finds the same one
whatever symlink it opened the database through.  It must not be deleted
or truncated while the server runs (like SQLite's own ``-shm``).  A program that
writes the database without this protocol (the ``sqlite3`` shell) must do so
with the server stopped, as the backup instructions already require.  The
cache holds at most ``cache_bytes`` per process (least recently used out).

Keys share the slots (65,534 of them), so a write also moves the counter
of every key whose slot it shares (and a transaction whose compare failed
moves its keys' counters all the same), and their entries stop answering:
the safe direction, at the cost of one read each.  A PUT writes two keys, so
any one entry held is lost that way once in about 30,000 PUTs.
Such a read is counted as ``unchanged``, not as a miss, when the database
answers what the entry held (the same revision, or still no such key) and
only the key's own slot counter moved: ``misses`` are then the reads of
keys the cache did not hold or that did change, and ``unchanged`` shows
what the sharing of slots costs.
"""

from __future__ import annotations

import mmap
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from twisted.internet.defer import Deferred, succeed

from lightningstor.interfaces.metadata import KeyValue
from lightningstor.metadata.published import PublishedWrites
from lightningstor.metadata.sharedfile import map_shared

SLOTS = 1 << 16  # 512 KiB of counters; slot 0 is for range deletes
_GLOBAL = 0
_UNDER_WAY = SLOTS - 1  # not a counter: 1 while a writer is between its marks
# Bytes an entry costs beyond its key's and value's bytes: the ordered
# dict's slot and link, two tuples and their ints (~235 on CPython 3.11,
# measured with tracemalloc), and the two bytes objects' headers; rounded up.
_ENTRY_OVERHEAD = 400


def _revision(found: tuple[bytes, int] | None) -> int | None:
    """The mod revision of a cached answer (None: no such key)."""
    return None if found is None else found[1]


def slot_of(key: bytes) -> int:
    """The counter slot of ``key``: the same in every process (not ``hash``)."""
    return 1 + zlib.crc32(key) % (SLOTS - 2)


class Generations:
    """The shared counters: ``<path>-gen`` mapped by every process, or
    process-local memory for an in-memory database (one process only)."""

    def __init__(self, path: str | None) -> None:
        size = SLOTS * 8
        if path is None:
            self._map: Any = bytearray(size)
        else:
            self._map = map_shared(path, size)  # ENOSPC fails the store's start
        self.counters = memoryview(self._map).cast("Q")

    def tags(self, key: bytes) -> tuple[int, int]:
        """The key's slot counter and the range-delete counter, read now."""
        c = self.counters
        return c[slot_of(key)], c[_GLOBAL]

    # -- the writer, holding the writer lock ---------------------------------

    def begin(self, slots: Iterable[int]) -> int:
        """Mark ``slots`` as changing (odd, and higher than ever), after
        settling what a writer that died between its marks left (the count
        of counters it moved on: normally 0)."""
        c = self.counters
        repaired = self.repair() if c[_UNDER_WAY] else 0
        c[_UNDER_WAY] = 1
        for s in slots:
            v = c[s]
            c[s] = v + (2 if v & 1 else 1)
        return repaired

    def end(self, slots: Iterable[int]) -> dict[int, int]:
        """Mark ``slots`` settled (even, higher); their new values."""
        c = self.counters
        settled = {}
        for s in slots:
            c[s] = settled[s] = c[s] + 1
        c[_UNDER_WAY] = 0
        return settled

    def repair(self) -> int:
        """Move every odd counter on to the next even value (module
        docstring: only with the writer lock held, no batch under way)."""
        c = self.counters
        odd = [s for s in range(_UNDER_WAY) if c[s] & 1]
        for s in odd:
            c[s] += 1
        return len(odd)

    def close(self) -> None:
        self.counters.release()
        if isinstance(self._map, mmap.mmap):
            self._map.close()


class ReadCache:
    """Least recently used point reads (reactor thread only), checked against
    :class:`Generations` on every use (module docstring)."""

    def __init__(self, generations: Generations, max_bytes: int, published: PublishedWrites | None = None) -> None:
        self.generations = generations
        self.max_bytes = max_bytes
        # Other processes' committed writes (published.py), taken on a miss.
        self.published = published
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        # Reads of a held entry whose slot's counter moved for another key
        # (module docstring): the database answered what the entry held.
        self.unchanged = 0
        self.bypassed = 0  # reads while a write of their slot was under way
        # key -> (value and mod revision, or None for "no such key"; slot tag,
        # range tag, size).  Only bytes and ints: the cyclic garbage collector
        # stops tracking such tuples, so a full cache adds nothing to its passes
        # (a KeyValue per entry did: PUTs, which replace entries, measured
        # ~15% more CPU).
        self._entries: OrderedDict[bytes, tuple[tuple[bytes, int] | None, int, int, int]] = OrderedDict()

    def get(self, key: bytes, read: Callable[[bytes], Deferred[KeyValue | None]]) -> Deferred[KeyValue | None]:
        """The cached answer for ``key`` if it is current, else ``read(key)``
        (kept for next time unless a write was under way)."""
        c = self.generations.counters
        tag = c[slot_of(key)]
        everything = c[_GLOBAL]
        if (tag | everything) & 1:
            self.bypassed += 1
            return read(key)  # a write is under way: neither use nor keep
        entry = self._current(key, tag, everything)
        if entry is not None:
            self._entries.move_to_end(key)
            self.hits += 1
            found = entry[0]
            return succeed(None if found is None else KeyValue(key, *found))
        # What this process holds for the key, filled at counters that have
        # moved since (or None): counted as a miss or as unchanged once the
        # database has answered.
        held = self._entries.get(key)
        d = read(key)
        d.addCallbacks(self._filled, self._failed, callbackArgs=(key, tag, everything, held))
        return d

    def holds(self, key: bytes) -> bool:
        """Whether :meth:`get` would answer ``key`` from memory now (counted
        neither as a hit nor as a miss).  A writer that would otherwise
        assume a key it cannot read cheaply is new asks this first
        (core/newkeys.py)."""
        c = self.generations.counters
        tag = c[slot_of(key)]
        everything = c[_GLOBAL]
        return not (tag | everything) & 1 and self._current(key, tag, everything) is not None

    def _current(self, key: bytes, tag: int, everything: int) -> tuple[Any, int, int, int] | None:
        """The entry of ``key`` filled at these counter values, after taking
        what other processes published if this process has none."""
        entry = self._entries.get(key)
        if entry is None or entry[1] != tag or entry[2] != everything:
            published = self.published
            if published is not None and published.behind():
                published.drain(self)  # another process may have just written it
                entry = self._entries.get(key)
        if entry is not None and entry[1] == tag and entry[2] == everything:
            return entry
        return None

    def _filled(
        self, kv: KeyValue | None, key: bytes, tag: int, everything: int, held: tuple[Any, int, int, int] | None
    ) -> KeyValue | None:
        now = None if kv is None else kv.mod_revision
        if held is not None and held[2] == everything and _revision(held[0]) == now:
            self.unchanged += 1  # its slot's counter moved, not for a change of the key
        else:
            self.misses += 1
        self.keep(key, kv, tag, everything)
        return kv

    def _failed(self, failure: Any) -> Any:
        self.misses += 1
        return failure

    def keep(self, key: bytes, kv: KeyValue | None, tag: int, everything: int) -> None:
        """Remember ``kv`` (None: no such key) as read or written at these
        counter values; an entry kept at newer values stays."""
        self.offer(key, None if kv is None else (kv.value, kv.mod_revision), tag, everything)

    def offer(self, key: bytes, found: tuple[bytes, int] | None, tag: int, everything: int) -> None:
        """:meth:`keep` of ``(value, mod revision)`` or None: also how another
        process's committed write of ``key`` is kept (published.py), so that
        the caches of all workers hold what any of them wrote or read last."""
        old = self._entries.get(key)
        if old is not None:
            if old[1] > tag or old[2] > everything:
                return
            self.bytes -= old[3]
        size = _ENTRY_OVERHEAD + len(key) + (len(found[0]) if found is not None else 0)
        if size > self.max_bytes:
            if old is not None:
                del self._entries[key]
            return
        self._entries[key] = (found, tag, everything, size)
        self._entries.move_to_end(key)
        self.bytes += size
        while self.bytes > self.max_bytes:
            _, dropped = self._entries.popitem(last=False)
            self.bytes -= dropped[3]

    def forget(self, key: bytes) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self.bytes -= old[3]

    def __len__(self) -> int:
        return len(self._entries)
