"""Deployment-wide leases of background jobs (lightningstor.core.leases).

:class:`LeaseContract` runs the lease logic on a real store with injected
clocks: two holders racing, renewal, expiry takeover (by the record's
expiry and by a record left unchanged), release.  Here on SQLite; on a real
etcd member in tests/integration/test_leases.py.  Then the services that
use a lease (PeriodicService, ScrubService, the repairer) on a Clock, and
the server's choice of leasing only on a shared store.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import gatherResults, succeed
from twisted.internet.task import Clock

from lightningstor.core import keys
from lightningstor.core.leases import (
    HEARTBEAT_TTL_SECONDS,
    MIN_TTL_SECONDS,
    Holder,
    Lease,
    decode_record,
    lease_ttl,
    pid_alive,
    run_leased,
    server_holder,
)
from lightningstor.core.scrub import ScrubReport, ScrubService
from lightningstor.interfaces.metadata import Put
from lightningstor.metadata.sqlite import SqliteMetadataStore
from lightningstor.periodic import PeriodicService
from lightningstor.storage.repair import Repairer, RepairReport

TTL = 90.0


class Clocks:
    """A wall clock and a monotonic clock that tests move by hand."""

    def __init__(self, wall: float = 1_000_000.0) -> None:
        self.wall = wall
        self.mono = 0.0

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds


def holder(name: str, host: str | None = None, pid: int = 100) -> Holder:
    """A holder on a host of its own unless ``host`` is given."""
    return Holder(name, host or f"host-{name}", pid)


def make_lease(store: Any, who: Holder, clocks: Clocks, *, job: str = "job", alive: Any = None) -> Lease:
    return Lease(
        store,
        job,
        who,
        ttl_seconds=TTL,
        clock=lambda: clocks.wall,
        monotonic=lambda: clocks.mono,
        alive=alive or (lambda pid: True),
    )


class LeaseContract:
    """Lease tests against any store; subclasses provide the ``store`` fixture."""

    @pytest_twisted.ensureDeferred
    async def test_two_holders_racing_exactly_one_wins(self, store: Any) -> None:
        """Both read the empty record and write with a compare on it: one succeeds."""
        clocks = Clocks()
        a, b = make_lease(store, holder("a"), clocks), make_lease(store, holder("b"), clocks)
        results = await gatherResults([a.acquire(), b.acquire()])
        assert sorted(results) == [False, True]
        assert a.held != b.held
        kv = await store.get(keys.lease_key("job"))
        record = decode_record(kv.value)
        assert record is not None and record[0].name == ("a" if a.held else "b")

    @pytest_twisted.ensureDeferred
    async def test_holder_renews_and_the_other_keeps_off(self, store: Any) -> None:
        """A held lease is renewed at each run (its expiry moves on); the
        other server is refused as long as renewals come."""
        clocks = Clocks()
        a, b = make_lease(store, holder("a"), clocks), make_lease(store, holder("b"), clocks)
        assert await a.acquire()
        for _ in range(5):
            clocks.advance(TTL / 2)
            assert await a.acquire()
            assert not await b.acquire()
        kv = await store.get(keys.lease_key("job"))
        assert decode_record(kv.value) == (holder("a"), clocks.wall + TTL)

    @pytest_twisted.ensureDeferred
    async def test_expired_lease_is_taken_and_the_old_holder_stops(self, store: Any) -> None:
        """Its holder died (no renewals): once the expiry passed, another takes
        it; the old holder, back, sees the new holder and does not run."""
        clocks = Clocks()
        a, b = make_lease(store, holder("a"), clocks), make_lease(store, holder("b"), clocks)
        assert await a.acquire()
        clocks.advance(TTL - 1)
        assert not await b.acquire()
        clocks.advance(1)
        assert await b.acquire()
        assert not await a.acquire()
        assert not a.held and b.held

    @pytest_twisted.ensureDeferred
    async def test_unchanged_record_is_taken_after_ttl_on_own_clock(self, store: Any) -> None:
        """A server whose wall clock lags the dead holder's (skew: the expiry
        seems far away) still takes over once it saw the record unchanged
        for a whole ttl of its own monotonic clock."""
        a_clocks, b_clocks = Clocks(wall=2_000_000.0), Clocks(wall=1_000_000.0)  # b lags by 1e6 s
        a, b = make_lease(store, holder("a"), a_clocks), make_lease(store, holder("b"), b_clocks)
        assert await a.acquire()
        assert not await b.acquire()  # first sight of this revision
        b_clocks.advance(TTL - 1)
        assert not await b.acquire()
        b_clocks.advance(1)
        assert await b.acquire()

    @pytest_twisted.ensureDeferred
    async def test_renewals_reset_the_watch(self, store: Any) -> None:
        """A live holder (whose renewals change the revision) is never taken
        over by the unchanged-record rule, whatever the wall clocks say."""
        a_clocks, b_clocks = Clocks(wall=2_000_000.0), Clocks(wall=1_000_000.0)
        a, b = make_lease(store, holder("a"), a_clocks), make_lease(store, holder("b"), b_clocks)
        assert await a.acquire()
        for _ in range(6):
            b_clocks.advance(TTL / 2)
            assert not await b.acquire()
            assert await a.acquire()

    @pytest_twisted.ensureDeferred
    async def test_release_lets_the_successor_in_at_once(self, store: Any) -> None:
        """A clean stop deletes the record; another server takes it at its next run."""
        clocks = Clocks()
        a, b = make_lease(store, holder("a"), clocks), make_lease(store, holder("b"), clocks)
        assert await a.acquire()
        assert not await b.acquire()
        await a.release()
        assert not a.held
        assert await store.get(keys.lease_key("job")) is None
        assert await b.acquire()

    @pytest_twisted.ensureDeferred
    async def test_release_never_deletes_a_successors_record(self, store: Any) -> None:
        """A holder that lost its lease (expired, taken) and then stops leaves
        the new holder's record alone."""
        clocks = Clocks()
        a, b = make_lease(store, holder("a"), clocks), make_lease(store, holder("b"), clocks)
        assert await a.acquire()
        clocks.advance(TTL)
        assert await b.acquire()
        await a.release()  # a still believes it holds it
        kv = await store.get(keys.lease_key("job"))
        assert kv is not None and decode_record(kv.value)[0].name == "b"  # type: ignore[index]
        assert not await a.acquire()

    @pytest_twisted.ensureDeferred
    async def test_dead_holder_on_this_host_is_taken_at_once(self, store: Any) -> None:
        """A server killed and restarted on the same host does not wait for
        the lease of its dead predecessor; one on another host waits."""
        clocks = Clocks()
        old = make_lease(store, holder("old", "host-a", pid=100), clocks)
        assert await old.acquire()
        elsewhere = make_lease(store, holder("x", host="host-b", pid=300), clocks, alive=lambda pid: False)
        assert not await elsewhere.acquire()
        alive_here = make_lease(store, holder("y", "host-a", pid=200), clocks, alive=lambda pid: True)
        assert not await alive_here.acquire()
        restarted = make_lease(store, holder("new", "host-a", pid=200), clocks, alive=lambda pid: pid != 100)
        assert await restarted.acquire()
        same_pid = make_lease(store, holder("newer", "host-a", pid=200), clocks)  # container restart: same pid 1
        assert await same_pid.acquire()

    @pytest_twisted.ensureDeferred
    async def test_foreign_record_is_overwritten_and_jobs_are_separate(self, store: Any) -> None:
        """A value that is not a lease record does not block the job forever;
        each job has its own record."""
        clocks = Clocks()
        await store.txn([], [Put(keys.lease_key("job"), b"not json")])
        a = make_lease(store, holder("a"), clocks)
        assert await a.acquire()
        b_other = make_lease(store, holder("b"), clocks, job="other")
        assert await b_other.acquire()
        assert json.loads((await store.get(keys.lease_key("other"))).value)["holder"] == "b"


class TestSqliteLeases(LeaseContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Any:
        s = SqliteMetadataStore(str(tmp_path / "meta.db"), reactor)
        yield s
        pytest_twisted.blockon(s.close())


# -- the pieces ----------------------------------------------------------------


def test_ttl_is_three_intervals_with_a_floor() -> None:
    assert lease_ttl(60.0) == 180.0
    assert lease_ttl(3600.0) == 3 * 3600.0
    assert lease_ttl(1.0) == MIN_TTL_SECONDS


def test_server_holder_is_unique_per_start() -> None:
    """Two starts of the same process (same host, address, pid) differ."""
    a, b = server_holder("127.0.0.1:9000"), server_holder("127.0.0.1:9000")
    assert a.name != b.name and a.host == b.host and a.pid == b.pid
    assert "127.0.0.1:9000" in a.name


def test_pid_alive() -> None:
    import os

    assert pid_alive(os.getpid())
    assert not pid_alive(2**22 + 12345)  # above pid_max


# -- the services on a Clock ---------------------------------------------------


class FakeStore:
    """An in-memory store enough for a lease (get/txn with compares)."""

    def __init__(self) -> None:
        from lightningstor.interfaces.metadata import KeyValue

        self._kv = KeyValue
        self.data: dict[bytes, Any] = {}
        self.revision = 0
        self.gets = 0

    def get(self, key: bytes) -> Any:
        self.gets += 1
        return succeed(self.data.get(key))

    def txn(self, compares: Any, operations: Any) -> Any:
        from lightningstor.interfaces.metadata import Delete, TxnResult

        for c in compares:
            kv = self.data.get(c.key)
            if (kv.mod_revision if kv else 0) != c.mod_revision:
                return succeed(TxnResult(False, self.revision))
        self.revision += 1
        for op in operations:
            if isinstance(op, Put):
                self.data[op.key] = self._kv(op.key, op.value, self.revision)
            elif isinstance(op, Delete):
                self.data.pop(op.key, None)
        return succeed(TxnResult(True, self.revision))


class Counting(PeriodicService):
    description = "counting job"

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock, 10.0)
        self.calls = 0

    def run_once(self) -> Any:
        self.calls += 1
        return succeed(None)


def leased_pair(clock: Clock, store: FakeStore) -> tuple[Counting, Counting]:
    clocks = Clocks()
    services = []
    for name in ("a", "b"):
        svc = Counting(clock)
        svc.lease = Lease(
            store, "count", holder(name), ttl_seconds=lease_ttl(10.0),
            clock=lambda: clocks.wall + clock.seconds(), monotonic=clock.seconds,
        )  # fmt: skip
        services.append(svc)
    return services[0], services[1]


def test_periodic_service_runs_on_the_holder_only_and_hands_over_on_stop() -> None:
    """Two servers' services on one store: one runs each interval; after the
    holder stops (and releases), the other runs from its next interval."""
    clock, store = Clock(), FakeStore()
    a, b = leased_pair(clock, store)
    a.startService()
    clock.advance(1.0)
    b.startService()
    for _ in range(5):
        clock.advance(10.0)
    assert (a.calls, b.calls) == (5, 0)
    a.stopService()
    assert keys.lease_key("count") not in store.data
    clock.advance(10.0)
    assert (a.calls, b.calls) == (5, 1)
    b.stopService()


def test_periodic_service_takes_over_from_a_dead_holder_after_the_ttl() -> None:
    """The holder dies without releasing: the other runs again once the ttl passed."""
    clock, store = Clock(), FakeStore()
    a, b = leased_pair(clock, store)
    a.startService()
    clock.advance(1.0)
    b.startService()
    clock.advance(10.0)
    a._loop.stop()  # dies: no more renewals, no release
    assert a.lease is not None
    waited = 0.0
    while b.calls == 0:
        clock.advance(10.0)
        waited += 10.0
        assert waited <= a.lease.ttl_seconds + 20.0
    assert waited >= a.lease.ttl_seconds - 10.0
    b.stopService()


def test_heartbeat_keeps_the_lease_between_runs_and_a_dead_holder_loses_it_within_the_ttl() -> None:
    """A server's lease (with a reactor) lasts HEARTBEAT_TTL_SECONDS whatever
    the job's interval: its holder renews it every third of that between
    runs, so a daily job is not taken over while its holder lives, and is
    taken within the ttl once the holder stops beating (a frozen or dead
    process: its reactor no longer turns)."""
    store, wall = FakeStore(), Clock()
    alive_reactor = Clock()  # the holder's reactor: advanced while it lives
    a = Lease(store, "daily", holder("a"), ttl_seconds=HEARTBEAT_TTL_SECONDS, clock=wall.seconds,
              monotonic=wall.seconds, reactor=alive_reactor)  # fmt: skip
    b = Lease(store, "daily", holder("b"), ttl_seconds=HEARTBEAT_TTL_SECONDS, clock=wall.seconds,
              monotonic=wall.seconds)  # fmt: skip
    assert a.acquire().result and a.beating
    for _ in range(60):  # ten minutes of a live holder, no run of the daily job
        wall.advance(10.0)
        alive_reactor.advance(10.0)
        assert not b.acquire().result
    for _ in range(int(HEARTBEAT_TTL_SECONDS / 10) - 1):  # a dies: its reactor stops
        wall.advance(10.0)
        assert not b.acquire().result
    wall.advance(20.0)
    assert b.acquire().result
    # The old holder, should it come back, sees the new one and stops beating.
    alive_reactor.advance(HEARTBEAT_TTL_SECONDS)
    record = decode_record(store.data[keys.lease_key("daily")].value)
    assert not a.held and record is not None and record[0] == b.holder
    gets = store.gets
    alive_reactor.advance(HEARTBEAT_TTL_SECONDS * 3)  # and its heartbeat stopped
    assert store.gets == gets


def test_release_stops_the_heartbeat() -> None:
    store, clock = FakeStore(), Clock()
    lease = Lease(store, "j", holder("a"), ttl_seconds=HEARTBEAT_TTL_SECONDS, clock=clock.seconds,
                  monotonic=clock.seconds, reactor=clock)  # fmt: skip
    assert lease.acquire().result
    lease.release()
    assert keys.lease_key("j") not in store.data
    gets = store.gets
    clock.advance(HEARTBEAT_TTL_SECONDS * 3)  # no beat reads, none takes it back
    assert keys.lease_key("j") not in store.data and not lease.held and store.gets == gets


def test_periodic_service_without_lease_runs_every_interval() -> None:
    """No lease (a SQLite server): every interval, as before."""
    clock = Clock()
    svc = Counting(clock)
    svc.startService()
    for _ in range(3):
        clock.advance(10.0)
    assert svc.calls == 3
    svc.stopService()


def test_long_run_renews_its_lease() -> None:
    """A pass longer than the ttl keeps the lease: renewed every ttl/3."""
    from twisted.internet.defer import Deferred

    clock, store = Clock(), FakeStore()
    lease = Lease(store, "long", holder("a"), ttl_seconds=30.0, clock=clock.seconds, monotonic=clock.seconds)
    other = Lease(store, "long", holder("b"), ttl_seconds=30.0, clock=clock.seconds, monotonic=clock.seconds)
    running: Deferred[None] = Deferred()
    done = run_leased(lease, clock, lambda: running, "long job")
    for _ in range(10):
        clock.advance(10.0)
        assert not other.acquire().result
    running.callback(None)
    assert done.called
    clock.advance(40.0)  # no renewal after the run: the lease expires
    assert other.acquire().result


def test_renewal_after_release_does_not_take_the_lease_back() -> None:
    """A service stopped during a long pass releases at once; the pass's
    renewals, still scheduled until it ends, must not take the lease again
    (the process would exit holding it)."""
    from twisted.internet.defer import Deferred

    clock, store = Clock(), FakeStore()
    lease = Lease(store, "long", holder("a"), ttl_seconds=30.0, clock=clock.seconds, monotonic=clock.seconds)
    running: Deferred[None] = Deferred()
    run_leased(lease, clock, lambda: running, "long job")
    lease.release()
    assert keys.lease_key("long") not in store.data
    clock.advance(20.0)  # two renewal ticks
    assert keys.lease_key("long") not in store.data and not lease.held
    running.callback(None)


def test_skip_is_not_a_failure(caplog: Any) -> None:
    """A run skipped for another holder's lease fires with None, no error."""
    clock, store = Clock(), FakeStore()
    Lease(store, "j", holder("a"), ttl_seconds=30.0, clock=clock.seconds).acquire()
    lease = Lease(store, "j", holder("b"), ttl_seconds=30.0, clock=clock.seconds)
    calls: list[int] = []
    d = run_leased(lease, clock, lambda: calls.append(1), "job")
    assert d.called and d.result is None and calls == []


class FakeScrubStore(FakeStore):
    def scan(self, start: bytes, end: bytes, limit: int = 0) -> Any:
        return succeed([])


def test_scrub_service_scrubs_on_the_holder_only() -> None:
    clock, store = Clock(), FakeScrubStore()
    reports: dict[str, list[ScrubReport]] = {"a": [], "b": []}
    services = []
    for name in ("a", "b"):
        lease = Lease(store, "scrub", holder(name), ttl_seconds=30.0, clock=clock.seconds, monotonic=clock.seconds)
        svc = ScrubService(
            store, object(), clock, interval_seconds=10.0, on_report=reports[name].append, lease=lease  # type: ignore[arg-type]
        )
        svc.startService()
        services.append(svc)
    for _ in range(4):
        clock.advance(10.0)
    assert sorted([len(reports["a"]), len(reports["b"])]) == [0, 4]
    holder_svc = services[0] if reports["a"] else services[1]
    holder_svc.stopService()
    assert keys.lease_key("scrub") not in store.data
    clock.advance(10.0)
    assert len(reports["a"]) + len(reports["b"]) == 5
    for svc in services:
        if svc.running:
            svc.stopService()


def test_repairer_repairs_on_the_holder_only() -> None:
    """Two servers' repairers over one store: one runs; stop() releases."""
    clock, store = Clock(), FakeStore()
    runs: dict[str, int] = {"a": 0, "b": 0}
    repairers = []
    for name in ("a", "b"):
        repairer = Repairer(object(), clock, interval=10.0)

        def run_once(name: str = name) -> Any:
            runs[name] += 1
            return succeed(RepairReport())

        repairer.run_once = run_once  # type: ignore[method-assign]
        repairer.lease = Lease(store, "repair", holder(name), ttl_seconds=30.0, clock=clock.seconds)
        repairer.start()
        repairers.append(repairer)
    for _ in range(3):
        clock.advance(10.0)
    assert (runs["a"], runs["b"]) == (3, 0)
    repairers[0].stop()
    assert keys.lease_key("repair") not in store.data
    clock.advance(10.0)
    assert (runs["a"], runs["b"]) == (3, 1)
    repairers[1].stop()


def test_repairer_forgets_extra_copies_while_another_server_repairs() -> None:
    """Trimming needs two consecutive runs that saw a copy extra: a run
    skipped for another holder breaks the sequence."""
    clock, store = Clock(), FakeStore()
    Lease(store, "repair", holder("b"), ttl_seconds=30.0, clock=clock.seconds).acquire()
    repairer = Repairer(object(), clock, interval=10.0)
    repairer.lease = Lease(store, "repair", holder("a"), ttl_seconds=30.0, clock=clock.seconds)
    repairer._extra_seen = {("chunk", object())}  # type: ignore[arg-type]
    repairer.start()
    clock.advance(10.0)
    assert repairer._extra_seen == set()
    repairer.stop()


# -- the server's choice -------------------------------------------------------


def test_server_leases_only_on_a_shared_store() -> None:
    """SQLite (one server): no lease, jobs run as before; any other store: leased."""
    from lightningstor.server import JobLeases

    class Named:
        def __init__(self, name: str) -> None:
            self.name = name

    assert JobLeases(Named("sqlite"), "127.0.0.1:9000", Clock()).lease("collector", 3600.0) is None
    lease = JobLeases(Named("etcd"), "127.0.0.1:9000", Clock()).lease("collector", 3600.0)
    assert lease is not None and lease.key == keys.lease_key("collector")
    # A heartbeat renews it between runs: a minute, not three hours, whatever the interval.
    assert lease.beating and lease.ttl_seconds == HEARTBEAT_TTL_SECONDS
    svc = JobLeases(Named("etcd"), "127.0.0.1:9000", Clock()).periodic(Counting(Clock()), "count")
    assert svc.lease is not None and svc.lease.beating


def test_a_forked_server_holds_its_leases_under_its_own_pid() -> None:
    """twistd daemonizes (forks) after the server is built: the holder named
    the parent's pid, which exits at once, so another server on this host
    found the lease's holder dead and took it at every look (both ran every
    job).  In the forked child the holder, and every lease made before the
    fork, name the child."""
    import os

    from lightningstor.server import JobLeases

    class Named:
        name = "etcd"

    leases = JobLeases(Named(), "127.0.0.1:9000", Clock())
    lease = leases.lease("collector", 3600.0)
    assert lease is not None and leases.holder is not None and leases.holder.pid == os.getpid()
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the child reports and leaves at once, running nothing of the parent's
        try:
            now = leases.holder
            ok = now is not None and now.pid == os.getpid() and lease.holder is now and f"pid={os.getpid()} " in now.name
            os.write(write, b"ok" if ok else b"stale")
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        answer = pipe.read()
    os.waitpid(child, 0)
    assert answer == b"ok"
    assert leases.holder.pid == os.getpid()  # the parent keeps its own


def test_lease_changes_reach_the_metrics() -> None:
    """lightningstor_background_job_lease{job} follows taking and giving up."""
    from lightningstor.metrics import S3Metrics

    metrics = S3Metrics()
    clock, store = Clock(), FakeStore()
    lease = Lease(store, "collector", holder("a"), ttl_seconds=30.0, clock=clock.seconds)
    lease.on_change = metrics.lease_changed
    lease.acquire()
    value = metrics.registry.get_sample_value
    assert value("lightningstor_background_job_lease", {"job": "collector"}) == 1.0
    lease.release()
    assert value("lightningstor_background_job_lease", {"job": "collector"}) == 0.0
