"""The free-space reserve (``[storage] min_free_bytes``): stop adding object
data while a volume is nearly full, so that deleting still works.

Why: when the volume under the data directory fills, chunk writes fail with
ENOSPC (507 InsufficientStorage), but small objects live inline in the SQLite
metadata records, so they keep being accepted until SQLite itself cannot
commit.  From then on every metadata commit fails, deletes included: the
server can no longer be emptied by its users.  With a reserve, writes that
add object data are refused *before* the disk is full, and the space left
over is there for what frees space (deletes, bucket deletion, aborting
uploads) and for metadata changes that add no object data.  MinIO's
minimum-free-drive threshold is the same idea.

Who enforces it: the plugins that own the disks, each for the volume it
writes to.  The ``local`` storage backend refuses chunk writes
(:class:`~lightningstor.errors.StorageBelowReserve`), the SQLite metadata
store refuses transactions that add inline object data
(:class:`~lightningstor.errors.MetadataBelowReserve`); both are answered
like a full disk (507, gRPC RESOURCE_EXHAUSTED).  The core is unchanged.

Cost: ``statvfs`` is a system call on the filesystem, so it never runs on
the reactor thread (both callers are already in the thread doing the
write) and its result is cached for :data:`CACHE_SECONDS` per volume
(shared by the plugins writing to it), debited with the bytes written
meanwhile (see :class:`_Volume`).  Between refreshes a check is an
uncontended lock, a clock read and two comparisons.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from twisted.logger import Logger

from lightningstor.errors import ConfigError

_log = Logger()

MiB = 1 << 20

DEFAULT_MIN_FREE_BYTES = 64 * MiB
"""The default reserve; docs/configuration.md ([storage]) explains the figure."""

MAX_MIN_FREE_BYTES = 1 << 40
"""1 TiB: more is surely a unit mistake (a byte count, not a percentage)."""

CACHE_SECONDS = 0.5
"""How long one ``statvfs`` answer is reused."""

INLINE_DATA_SEPARATOR = b"\x00"
"""What ends the JSON of an object record whose inline data follows it
(``lightningstor.core.records.INLINE_SEPARATOR``; a unit test keeps the two
equal).  The metadata store finds object data in a value by it: no other
record the core writes holds a NUL byte (they are JSON, whose encoder
escapes every control character)."""


def check_min_free_bytes(where: str, value: Any) -> int:
    """``value`` as a reserve in bytes, else ConfigError naming ``where``
    (for plugin sub-tables, which config.py hands over unvalidated)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_MIN_FREE_BYTES:
        raise ConfigError(f"{where}: must be an integer 0..{MAX_MIN_FREE_BYTES} (bytes; 0 turns the reserve off)")
    return value


def configured_min_free_bytes(settings: Mapping[str, Any]) -> int:
    """The reserve of the whole configuration (``PluginContext.settings``),
    for the metadata store: ``[storage.local] min_free_bytes`` when the
    local backend is in use and sets it (it wins there, as for the backend
    itself), else ``[storage] min_free_bytes``, else the default."""
    storage = settings.get("storage")
    if not isinstance(storage, Mapping):
        return DEFAULT_MIN_FREE_BYTES
    options = storage.get("options")
    local = options.get("local") if isinstance(options, Mapping) else None
    if storage.get("backend", "local") == "local" and isinstance(local, Mapping) and "min_free_bytes" in local:
        return check_min_free_bytes("storage.local.min_free_bytes", local["min_free_bytes"])
    return check_min_free_bytes("storage.min_free_bytes", storage.get("min_free_bytes", DEFAULT_MIN_FREE_BYTES))


def inline_data(value: bytes) -> bytes | None:
    """The object data carried in a metadata value (after
    :data:`INLINE_DATA_SEPARATOR`), or None when it carries none.  A
    zero-length object carries none: storing it adds no data."""
    end = value.find(INLINE_DATA_SEPARATOR)
    if end < 0 or end == len(value) - 1:
        return None
    return value[end + 1 :]  # bytes: they compare with memcmp, memoryviews item by item


class _Volume:
    """The cached free space of one filesystem, shared by every reserve on it
    (the local backend's and the SQLite store's, when both are on one disk):
    each sees what the other writes.

    The cached answer is also debited with the bytes each write announces: a
    fast disk (or tmpfs) takes far more than a reserve in half a second, so
    time alone would let writes run past it.  Once the estimate no longer
    clears the reserve the answer is refreshed at once, so writers overshoot
    by at most the writes in flight, not by what the disk takes in
    ``cache_seconds``.  Space freed (deletes) shows at the next timed refresh.
    """

    def __init__(self, statvfs: Callable[[str], Any], clock: Callable[[], float], cache_seconds: float) -> None:
        self._statvfs = statvfs
        self._clock = clock
        self._cache_seconds = cache_seconds
        self.lock = threading.Lock()
        self._until = float("-inf")  # the cached answer is good until then
        self._free: int | None = None  # free bytes at the last statvfs; None: unknown
        self._spent = 0  # bytes announced by writes since then
        self._warned = False

    def free_bytes(self, path: str) -> int | None:
        with self.lock:
            if self._clock() >= self._until:
                self._refresh(path)
            return self._free

    def _refresh(self, path: str) -> None:
        """Under the lock: read the free space now, through ``path`` (the
        asker's own: any path on the volume will do, and it knows its own
        still exists)."""
        try:
            st = self._statvfs(path)
            self._free = int(st.f_bavail) * int(st.f_frsize)
        except OSError as e:
            # Refuse nothing: the write itself reports a volume really gone.
            self._free = None
            if not self._warned:
                self._warned = True
                _log.warn("Cannot read the free space of {path}: {error}; the free-space reserve "
                          "is not enforced there until it can", path=path, error=str(e))
        self._spent = 0
        self._until = self._clock() + self._cache_seconds

    def below(self, path: str, minimum: int, adding: int) -> int | None:
        """The free bytes when they are below ``minimum``, else None (the
        write of ``adding`` bytes is let through and charged)."""
        with self.lock:
            free = self._free
            if self._clock() < self._until and free is not None:
                if free < minimum:
                    return free  # known short: no statvfs per refusal
                if free - self._spent - adding >= minimum:
                    self._spent += adding
                    return None
            self._refresh(path)
            free = self._free
            if free is None or free >= minimum:
                self._spent = adding
                return None
            return free


_volumes: dict[int, _Volume] = {}
_volumes_lock = threading.Lock()


def _volume_of(path: str) -> _Volume:
    """The shared :class:`_Volume` of the filesystem holding ``path`` (OSError
    if ``path`` does not exist)."""
    device = os.stat(path).st_dev
    with _volumes_lock:
        volume = _volumes.get(device)
        if volume is None:
            volume = _volumes[device] = _Volume(os.statvfs, time.monotonic, CACHE_SECONDS)
        return volume


class FreeSpaceReserve:
    """Whether the volume holding ``path`` has less than ``min_free_bytes``
    free (``f_bavail * f_frsize``: what an unprivileged writer may use).

    Call :meth:`shortfall` from the thread that does the write, never the
    reactor's: it may ``statvfs`` (and, the first time, ``stat`` ``path`` to
    find its volume).  Thread-safe.  Reserves on one volume share its cached
    answer (:class:`_Volume`), unless ``statvfs`` is given (unit tests: a
    private fake volume, with ``clock`` and ``cache_seconds``).
    """

    def __init__(
        self,
        path: str,
        min_free_bytes: int,
        *,
        statvfs: Callable[[str], Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
        cache_seconds: float = CACHE_SECONDS,
    ) -> None:
        if not 0 <= min_free_bytes <= MAX_MIN_FREE_BYTES:
            raise ValueError(f"min_free_bytes must be 0..{MAX_MIN_FREE_BYTES}")
        self.path = path
        self.min_free_bytes = min_free_bytes
        self._volume = None if statvfs is None else _Volume(statvfs, clock, cache_seconds)

    @property
    def enabled(self) -> bool:
        return self.min_free_bytes > 0

    def volume(self) -> _Volume | None:
        """The volume's shared state; None while ``path`` cannot be found."""
        volume = self._volume
        if volume is None:
            try:
                volume = self._volume = _volume_of(self.path)
            except OSError:
                return None  # not created yet, or gone: the write will tell
        return volume

    def free_bytes(self) -> int | None:
        """Free bytes on the volume, from a ``statvfs`` at most
        ``cache_seconds`` old; None when unknown."""
        volume = self.volume()
        return None if volume is None else volume.free_bytes(self.path)

    def shortfall(self, adding: int = 0) -> str | None:
        """None while the free space is at least the reserve (or the reserve
        is off, or the free space unknown); else why not, for the log and the
        error.  ``adding`` is what the caller is about to write, charged to
        the cached answer when the write is let through.
        """
        minimum = self.min_free_bytes
        if minimum <= 0:
            return None
        volume = self.volume()
        free = None if volume is None else volume.below(self.path, minimum, adding)
        if free is None:
            return None
        return (
            f"free space on the volume of {self.path} ({free} bytes) is below the configured reserve "
            f"(min_free_bytes = {minimum}); only deletes and changes that add no object "
            "data are accepted until space is freed"
        )
