"""Bounded, named thread pools as a Twisted service.

Disk I/O (chunk files, fsync) and CPU work (hashing large buffers, which
releases the GIL) each get their own pool so a burst of one cannot starve the
other; sizes are explicit, and both stop with the process.
"""

from __future__ import annotations

from typing import Any, Callable, ParamSpec, TypeVar

from twisted.application.service import Service
from twisted.python.threadpool import ThreadPool

_P = ParamSpec("_P")
_R = TypeVar("_R")


class CountingThreadPool(ThreadPool):
    """A ThreadPool that counts the jobs handed to it, in a plain integer
    that the metrics copy every few seconds (``S3Metrics.watch_thread_pools``):
    a metric update per job would cost more than the count is worth."""

    jobs = 0

    def callInThreadWithCallback(
        self, onResult: Callable[[bool, _R], object] | None, func: Callable[_P, _R], *args: _P.args, **kw: _P.kwargs
    ) -> None:
        self.jobs += 1  # callInThread comes here too
        super().callInThreadWithCallback(onResult, func, *args, **kw)


class ThreadPools(Service):
    """``io`` and ``cpu`` pools.  Work handed to them before they start
    waits and runs once they do, so plugins built with the service can
    already use them.  They start with the service (``startService``):
    after twistd forks into a daemon, whose child would not have threads
    started before, and after the listeners are bound (a port that cannot
    be bound then stops start-up with no thread to wait for); stopped on
    ``stopService``.  Outside a service (a command-line tool): :meth:`start`.
    """

    def __init__(self, reactor: Any, *, io_threads: int = 8, cpu_threads: int = 2) -> None:
        self.reactor = reactor
        self.io = CountingThreadPool(minthreads=1, maxthreads=io_threads, name="lightningstor-io")
        self.cpu = CountingThreadPool(minthreads=1, maxthreads=cpu_threads, name="lightningstor-cpu")

    def start(self) -> None:
        """Start both pools (once)."""
        for pool in (self.io, self.cpu):
            if not pool.started:
                pool.start()

    def startService(self) -> None:
        super().startService()
        self.start()

    def stopService(self) -> None:
        super().stopService()
        self.io.stop()
        self.cpu.stop()
