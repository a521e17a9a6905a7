"""Bounded, named thread pools as a Twisted service.

Disk I/O (chunk files, fsync) and CPU work (hashing large buffers, which
releases the GIL) each get their own pool so a burst of one cannot starve the
other; sizes are explicit, and both stop with the process.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.python.threadpool import ThreadPool


class ThreadPools(Service):
    """``io`` and ``cpu`` pools, started at construction so plugins created
    before the service starts can already use them; stopped on stopService."""

    def __init__(self, reactor: Any, *, io_threads: int = 8, cpu_threads: int = 2) -> None:
        self.reactor = reactor
        self.io = ThreadPool(minthreads=1, maxthreads=io_threads, name="lightningstor-io")
        self.cpu = ThreadPool(minthreads=1, maxthreads=cpu_threads, name="lightningstor-cpu")
        self.io.start()
        self.cpu.start()

    def stopService(self) -> None:
        super().stopService()
        self.io.stop()
        self.cpu.stop()
