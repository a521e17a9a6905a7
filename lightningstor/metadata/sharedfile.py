"""A file every process of a database maps into memory (the read cache's
counters, readcache.py; the ring of published writes, published.py).

Why one function: both must be created the same way.  The file's blocks are
allocated, not left as a hole: the first store into a page of a sparse
mapping on a full volume kills the process with SIGBUS, while allocating
fails the open with ENOSPC, which the caller can report.  The file only
ever grows (other processes may have it mapped), it is private to the
server's user, and closing the descriptor leaves the mapping in place.
"""

from __future__ import annotations

import mmap
import os


def map_shared(path: str, size: int) -> mmap.mmap:
    """``path`` (created if missing, 0600) with at least ``size`` allocated
    bytes, mapped shared for reading and writing; OSError if it cannot be."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        os.posix_fallocate(fd, 0, size)
        return mmap.mmap(fd, size)
    finally:
        os.close(fd)  # the mapping keeps the file
