"""What one process committed, offered to the read caches of the others.

Why: each worker process has its own read cache (readcache.py).  A record
one worker wrote is cached only there, so a read of it through another
worker (a new connection lands on either) misses, and a miss costs a
hand-over to a reader thread.  With two workers, reading keys right after
writing them missed half the time, and the misses cost more than when the
cache was off: the hits no longer waited, so the misses of a reactor turn
went to the reader threads in smaller batches (docs/performance.md,
"Fourteenth round").  Here every writer also appends what it committed to a
shared ring, ``<database>-pub``, and a cache that misses first takes what
other processes appended since it last looked.

Why that cannot make a read stale: an entry carries the counter values
(readcache.py) its writer set for the key, under the writer lock, right
after its COMMIT.  A cache answers with an entry only while the key's
counter still has that value, and every later write of the key moves the
counter first.  So an entry that reaches a cache late, or twice, or after
the key changed, simply never answers.  What the ring must guarantee is only
that an entry is read whole: the writer appends under the writer lock (one
writer at a time, whatever the process), moves the ring's position after
writing the bytes, and a reader checks each entry's CRC-32 and that the
writer has not come round to the entry's bytes since (a reader that fell
that far behind skips to the present).  The CRC covers the lengths, and
the entry's size must follow from them.  A batch publishes one entry per
key, its final state (sqlite.py ``_committed``): two entries of one key at
one counter value would let a reader that took only the first answer it.
Nothing orders the reader's loads against the writer's stores beyond what
x86-64 does; elsewhere a reader may see the new position before the bytes,
and the CRC then makes it skip them.  The file starts with a format word
and the ring's size, so that a process laying entries out differently
refuses the file (and runs without a ring) instead of misreading it.

What it costs: the writer packs and copies each committed value of at most
:data:`MAX_VALUE` bytes (microseconds, in its own thread, and only for keys
its transaction compared: sqlite.py ``_committed``); a cache takes at most
:data:`DRAIN_MAX` entries per miss and keeps them as it keeps its own
writes (least recently used out).  The file's blocks are allocated when it
is created (as the counters file's, and for the same reason); like the
counters file it must not be deleted or truncated while the server runs.
"""

from __future__ import annotations

import errno
import struct
import zlib
from collections.abc import Iterable
from typing import TYPE_CHECKING

from lightningstor.metadata.sharedfile import map_shared

if TYPE_CHECKING:
    from lightningstor.metadata.readcache import ReadCache

RING_BYTES = 4 << 20
"""The ring's data area: about a thousand 4 KiB objects' records."""

MAX_VALUE = 64 << 10
"""Larger values are not published (readers read them from the database)."""

DRAIN_MAX = 256
"""Entries a cache takes per miss at most (it takes the rest at later misses):
about a millisecond of the reactor thread for 4 KiB records."""

_POSITION = struct.Struct("<Q")  # bytes ever appended; the file's first 8 bytes
_FORMAT = struct.Struct("<4sI")  # at byte 8: what every process must agree on
_MAGIC = b"LSP1"
_DATA = 64  # where the ring starts in the file
# size, crc, writer, key length, value length (-1: no such key), mod revision,
# key counter, range counter.  The CRC covers everything after itself.
_ENTRY = struct.Struct("<IIIIiqQQ")
_PREFIX = struct.Struct("<IIII")  # size, crc, writer, key length: enough to skip an entry
_PAD = 0xFFFFFFFF  # a key length that marks the rest of the ring as unused
_ALIGN = 8
MAX_ENTRY = _ENTRY.size + 4096 + MAX_VALUE
"""An entry's bytes at most (a longer key's entry is not published either)."""

Published = tuple[bytes, bytes | None, int, int, int]
"""(key, value or None for "no such key", mod revision, key counter, range counter)."""


def _aligned(n: int) -> int:
    return -(-n // _ALIGN) * _ALIGN


def _entry_size(key: bytes, value: bytes | None) -> int:
    return _aligned(_ENTRY.size + len(key) + (len(value) if value is not None else 0))


def _recent(entries: Iterable[Published]) -> list[Published]:
    """The entries worth appending: values of at most MAX_VALUE bytes (keys
    of at most 4 KiB), and of a batch larger than the ring only its last ones
    (a reader would have been lapped by the rest before it could take them)."""
    fitting = [
        e for e in entries if (e[1] is None or len(e[1]) <= MAX_VALUE) and _entry_size(e[0], e[1]) <= MAX_ENTRY
    ]
    total = 0
    for i in range(len(fitting) - 1, -1, -1):
        total += _entry_size(fitting[i][0], fitting[i][1])
        if total > RING_BYTES - 2 * MAX_ENTRY:  # what a reader up to date can still take
            return fitting[i + 1 :]
    return fitting


class PublishedWrites:
    """The ring (module docstring), mapped by every process of the database."""

    def __init__(self, path: str, writer_id: int) -> None:
        self._map = map_shared(path, _DATA + RING_BYTES)
        self._view = memoryview(self._map)
        found = _FORMAT.unpack_from(self._view, 8)
        if found == (b"\0" * 4, 0):  # new (every opener writes the same)
            _FORMAT.pack_into(self._view, 8, _MAGIC, RING_BYTES)
        elif found != (_MAGIC, RING_BYTES):
            self.close_map()
            raise OSError(errno.EINVAL, f"{path} is a ring of another format or size {found!r}")
        self._position = self._view[:8].cast("Q")
        self.writer_id = writer_id & 0xFFFFFFFF
        self.read_position = self._position[0]  # what this process has taken (reactor thread)

    # -- the writer, holding the writer lock ----------------------------------

    def append(self, entries: Iterable[Published]) -> None:
        """Add the batch's committed keys (values too large are left out)."""
        view, position = self._view, self._position
        at = position[0]
        for key, value, revision, tag, everything in _recent(entries):
            value_len = -1 if value is None else len(value)
            size = _entry_size(key, value)
            offset = at % RING_BYTES
            room = RING_BYTES - offset
            if size > room:  # never split: the rest of the ring is skipped
                if room >= _ENTRY.size:
                    _ENTRY.pack_into(view, _DATA + offset, room, 0, 0, _PAD, 0, 0, 0, 0)
                at += room
                position[0] = at
                offset = 0
            fields = (self.writer_id, len(key), value_len, revision, tag, everything)
            crc = zlib.crc32(key, zlib.crc32(_ENTRY.pack(size, 0, *fields)[8:]))
            key_at = _DATA + offset + _ENTRY.size
            view[key_at : key_at + len(key)] = key
            if value:
                view[key_at + len(key) : key_at + len(key) + value_len] = value
                crc = zlib.crc32(value, crc)
            _ENTRY.pack_into(view, _DATA + offset, size, crc, *fields)
            at += size
            position[0] = at

    # -- a reader (reactor thread) ----------------------------------------------

    def behind(self) -> bool:
        """Whether others appended since this process last took entries."""
        return self._position[0] != self.read_position

    def drain(self, cache: ReadCache) -> int:
        """Offer ``cache`` what other processes appended since it last
        looked (at most :data:`DRAIN_MAX` entries); the count offered."""
        view, position = self._view, self._position
        at = self.read_position
        end = position[0]
        if end - at > RING_BYTES - MAX_ENTRY:
            at = end  # lapped: what was there may be overwritten; start afresh
        offered = 0
        taken = 0
        while at < end and taken < DRAIN_MAX:
            offset = at % RING_BYTES
            room = RING_BYTES - offset
            if room < _ENTRY.size:
                at += room
                continue
            start = _DATA + offset
            size, _, writer, key_len = _PREFIX.unpack_from(view, start)
            if key_len == _PAD:
                at += room
                continue
            if not _ENTRY.size <= size <= min(room, MAX_ENTRY):
                at = position[0]  # overwritten under us: start afresh
                break
            at += size
            taken += 1
            if writer == self.writer_id:
                continue  # this process's own writes were kept when they committed
            raw = bytes(view[start : start + size])  # one copy, checked below
            if position[0] - (at - size) > RING_BYTES - MAX_ENTRY:
                at = position[0]  # the writer came round meanwhile: start afresh
                break
            _, crc, _, key_len, value_len, revision, tag, everything = _ENTRY.unpack_from(raw)
            value_at = _ENTRY.size + key_len
            value_end = value_at + max(value_len, 0)
            # The CRC covers the lengths, and the size must follow from them.
            if _aligned(value_end) != size or zlib.crc32(memoryview(raw)[8:value_end]) != crc:
                at = position[0]  # torn: start afresh
                break
            found = None if value_len < 0 else (raw[value_at:value_end], revision)
            cache.offer(raw[_ENTRY.size : value_at], found, tag, everything)
            offered += 1
        self.read_position = at
        return offered

    def close(self) -> None:
        self._position.release()
        self.close_map()

    def close_map(self) -> None:
        self._view.release()
        self._map.close()
