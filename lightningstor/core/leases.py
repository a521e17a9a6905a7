"""Deployment-wide leases: one API server at a time runs each background job.

Several API servers may share one metadata store (etcd) and one storage
cluster.  Without coordination each runs every background job (collector,
usage fold, upload expiry, lifecycle, scrub, repair): the work is multiplied
by the number of servers.  A :class:`Lease` is a record ``leases/{job}``
(:func:`lightningstor.core.keys.lease_key`) naming its holder and an expiry;
a server runs a pass of the job only while it holds the job's lease.

**Safety comes from the store's compare-and-put, not from clocks.**  Every
write of the record (take, renew, release) is a transaction guarded by the
``mod_revision`` the writer read, so of two servers that read the same
revision exactly one can write: two servers never both *take* the lease from
one state of the record.  The jobs themselves are written to be safe when
they race (that is how they ran before leases: every server ran them), so
the lease only has to make double runs rare, never impossible.

**Expiry and clocks.**  A server's lease lasts :data:`HEARTBEAT_TTL_SECONDS`
whatever its job's interval, and the holder renews it every third of that,
between runs too (the lease's heartbeat, given a reactor), so one late or
failed renewal (a slow store) does not hand the job over, while a holder
that died loses it within a minute: the job then moves at its next interval
on another server, not after days (a daily scrub).  Without a reactor (some
unit tests) a lease is renewed at every run and every ``ttl / 3`` while a
run goes on (:func:`run_leased`), and its ``ttl`` must then outlast the
interval (:func:`lease_ttl`).  Another server takes the lease when either

* the expiry written in the record, read on *its own* wall clock, has
  passed; or
* it has watched the record keep the same revision for ``ttl`` seconds of
  its own monotonic clock (the holder stopped renewing).

Clock skew between servers can therefore cause only this: a server whose
wall clock runs ahead of the holder's by more than ``ttl`` minus one
interval thinks a live lease expired and takes it; the old holder then sees
another holder on its next run and stops, so for at most one pass both run:
exactly the behaviour without leases, which the jobs tolerate.  Skew can
never leave a job without a server for longer than about ``ttl`` plus one
interval after its holder died: the second rule uses no wall clock at all.

A holder that stops cleanly deletes the record (:meth:`Lease.release`), so
the successor takes over at its next run.  A holder that died on this host
(same host name, its pid no longer alive) is taken over at once: a server
killed and restarted does not wait for its own expiry.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks, maybeDeferred, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from lightningstor.core import keys
from lightningstor.interfaces.metadata import Compare, Delete, IMetadataStore, KeyValue, Put

log = Logger()

HEARTBEAT_TTL_SECONDS = 60.0
"""How long a server's lease lasts without a renewal; its holder renews every
third of it (two renewals may be missed), between runs too."""

TTL_INTERVALS = 3.0
"""Without a heartbeat, a lease lasts this many job intervals: two renewals may be missed."""

MIN_TTL_SECONDS = 30.0
"""Floor of a lease's lifetime, so that jobs with very short intervals
(tests, tuning) do not hand over on one slow store round-trip."""


def lease_ttl(interval_seconds: float) -> float:
    """The lifetime of a job's lease: :data:`TTL_INTERVALS` intervals, at
    least :data:`MIN_TTL_SECONDS` (see the module docstring for why)."""
    return max(TTL_INTERVALS * interval_seconds, MIN_TTL_SECONDS)


@dataclass(frozen=True)
class Holder:
    """Who holds a lease: one server process, for the life of that process.

    ``name`` is unique per start (host, S3 address, pid and a random token):
    a restarted server never mistakes its predecessor's lease for its own.
    ``host`` and ``pid`` let a server on the same host see that a holder
    died (:meth:`dead_here`)."""

    name: str
    host: str
    pid: int

    def dead_here(self, me: Holder, alive: Callable[[int], bool]) -> bool:
        """True if this holder (not ``me``) ran on ``me``'s host and its
        process is gone, or had ``me``'s pid there: a predecessor of this
        process (a container restarted keeps its host name and pid 1).

        Only meaningful on the same host (pids are per host); a pid reused
        by another process reads as alive, which only delays a takeover
        until the expiry.  Two containers sharing a host name would take
        the lease from each other: both then run the job, as without
        leases."""
        return self.host == me.host and (self.pid == me.pid or not alive(self.pid))


def server_holder(s3_addr: str) -> Holder:
    """The holder identity of this server process."""
    host = socket.gethostname()
    pid = os.getpid()
    return Holder(f"{host} {s3_addr} pid={pid} {secrets.token_hex(6)}", host, pid)


def pid_alive(pid: int) -> bool:
    """Whether a process with ``pid`` exists on this host (signal 0 sends nothing)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def encode_record(holder: Holder, expires: float) -> bytes:
    """The value of ``leases/{job}``: JSON, readable with ``etcdctl get``."""
    return json.dumps({"holder": holder.name, "host": holder.host, "pid": holder.pid, "expires": expires}).encode()


def decode_record(value: bytes) -> tuple[Holder, float] | None:
    """``(holder, expiry)`` of a record; None if it is not one of ours
    (such a record is treated as expired and overwritten)."""
    try:
        d = json.loads(value)
        return Holder(str(d["holder"]), str(d["host"]), int(d["pid"])), float(d["expires"])
    except (ValueError, KeyError, TypeError):
        return None


class Lease:
    """The lease of one background job, as seen by one server process.

    :meth:`acquire` takes or renews it (Deferred[bool]: held now);
    :meth:`release` gives it up.  ``clock`` is wall time (written as the
    expiry, compared with other servers' expiries); ``monotonic`` measures
    how long a record stayed unchanged.  Both are injected for tests.
    """

    def __init__(
        self,
        store: IMetadataStore,
        job: str,
        holder: Holder,
        *,
        ttl_seconds: float,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        alive: Callable[[int], bool] = pid_alive,
        reactor: Any = None,
    ) -> None:
        self.store = store
        self.job = job
        self.key = keys.lease_key(job)
        self.holder = holder
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._monotonic = monotonic
        self._alive = alive
        self.held = False
        # Set by release(): this process is stopping and takes the lease no more.
        self.released = False
        # Another holder's record as last read: (its revision, monotonic time first seen).
        self._watched: tuple[int, float] | None = None
        # Called with (job, held) whenever ``held`` changes (metrics).
        self.on_change: Callable[[str, bool], None] | None = None
        # With a reactor, the holder renews every ttl/3 while it holds the
        # lease, between runs too (module docstring, "Expiry and clocks").
        self._heartbeat: LoopingCall | None = None
        if reactor is not None:
            self._heartbeat = LoopingCall(self._beat)
            self._heartbeat.clock = reactor

    @property
    def beating(self) -> bool:
        """Whether this lease renews itself between runs (it has a heartbeat)."""
        return self._heartbeat is not None

    def _beat(self) -> Deferred[Any]:
        d: Deferred[Any] = self.acquire()
        return d.addErrback(lambda f: log.failure("Renewing lease {job} failed", f, job=self.job))

    def _set_held(self, held: bool) -> None:
        if held != self.held:
            self.held = held
            log.info(
                "Background job {job}: {what} its lease", job=self.job, what="took" if held else "gave up"
            )
            if self.on_change is not None:
                self.on_change(self.job, held)
        beat = self._heartbeat
        if beat is not None and held != beat.running:
            if held:
                beat.start(self.ttl_seconds / 3, now=False)
            else:
                beat.stop()

    @inlineCallbacks
    def acquire(self) -> Any:
        """Deferred[bool]: take the lease if it is free, expired or ours, and
        push its expiry ``ttl`` ahead; False if another holder has it (or
        won the race for it).  Store failures propagate: the caller skips
        the run, which could not work without the store anyway."""
        if self.released:
            return False  # stopping: a renewal still scheduled must not take it back
        kv: KeyValue | None = yield self.store.get(self.key)
        if kv is not None and not self._may_take(kv):
            self._set_held(False)
            return False
        result = yield self.store.txn(
            [Compare(self.key, 0 if kv is None else kv.mod_revision)],
            [Put(self.key, encode_record(self.holder, self._clock() + self.ttl_seconds))],
        )
        self._watched = None
        self._set_held(bool(result.succeeded))
        return self.held

    def _may_take(self, kv: KeyValue) -> bool:
        """Whether the record ``kv`` may be overwritten by this holder: it is
        ours, not a lease record, expired by our wall clock, unchanged for
        ``ttl`` by our monotonic clock, or its holder died on this host."""
        record = decode_record(kv.value)
        if record is None:
            return True
        holder, expires = record
        if holder.name == self.holder.name:
            return True
        if self._clock() >= expires or holder.dead_here(self.holder, self._alive):
            return True
        now = self._monotonic()
        if self._watched is None or self._watched[0] != kv.mod_revision:
            self._watched = (kv.mod_revision, now)
            return False
        return now - self._watched[1] >= self.ttl_seconds

    @inlineCallbacks
    def release(self) -> Any:
        """Deferred[None]: delete the record if it is still ours (a clean stop:
        the next holder need not wait for the expiry).  Compared on the
        revision read, so a successor's record is never deleted.  Final:
        :meth:`acquire` then answers False (a pass still running, whose
        renewals are still scheduled, must not take the lease again)."""
        self.released = True
        if not self.held:
            return
        self._set_held(False)  # stops the heartbeat too
        kv = yield self.store.get(self.key)
        if kv is None:
            return
        record = decode_record(kv.value)
        if record is not None and record[0].name == self.holder.name:
            yield self.store.txn([Compare(self.key, kv.mod_revision)], [Delete(self.key)])


def run_leased(lease: Lease | None, reactor: Any, run: Callable[[], Any], what: str) -> Deferred[Any]:
    """Deferred: ``run()`` if this server holds (or takes) ``lease``, else
    nothing (logged at debug: another server runs it; not a failure).

    While ``run`` goes on the lease is renewed every ``ttl / 3``, so a pass
    longer than the lease (a scrub of a large cluster) is not taken over
    half-way.  A failure to take the lease (the store is down) is the
    caller's to log, like a failed run.  ``lease`` None: just ``run()``."""
    if lease is None:
        return maybeDeferred(run)
    d: Deferred[Any] = lease.acquire()

    def held(ok: bool) -> Any:
        if not ok:
            log.debug("{what}: skipped, another server holds the lease {job}", what=what, job=lease.job)
            return None
        if lease.beating:
            return maybeDeferred(run)  # its heartbeat renews it meanwhile
        return _with_renewals(lease, reactor, run)

    return d.addCallback(held)


def _with_renewals(lease: Lease, reactor: Any, run: Callable[[], Any]) -> Deferred[Any]:
    """``run()`` with the lease renewed in the background until it ends."""
    def renew_once() -> Deferred[Any]:
        d: Deferred[Any] = lease.acquire()
        return d.addErrback(lambda f: log.failure("Renewing lease {job} failed", f, job=lease.job))

    renew = LoopingCall(renew_once)
    renew.clock = reactor
    renew.start(lease.ttl_seconds / 3, now=False)

    def done(result: Any) -> Any:
        if renew.running:
            renew.stop()
        return result

    return maybeDeferred(run).addBoth(done)


def release_quietly(lease: Lease | None) -> Deferred[Any]:
    """Deferred[None]: :meth:`Lease.release`, a failure logged (shutdown goes
    on: the lease then expires by itself)."""
    if lease is None:
        return succeed(None)
    d: Deferred[Any] = lease.release()
    return d.addErrback(lambda f: log.failure("Releasing lease {job} failed", f, job=lease.job))
