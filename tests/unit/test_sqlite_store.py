"""The SQLite metadata store: the shared contract plus what is SQLite-specific
(durability across restarts, group commit, thread discipline, error mapping).

Run with ``.venv/bin/python -m pytest tests/unit/test_sqlite_store.py`` (pytest-twisted
loads itself as a plugin and runs the default reactor).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList, gatherResults
from twisted.internet.task import deferLater
from twisted.plugin import IPlugin
from zope.interface.verify import verifyObject

from lightningstor.errors import ConfigError, MetadataFull, MetadataUnavailable
from lightningstor.interfaces.metadata import Compare, Delete, IMetadataStoreFactory, KeyValue, Put, TxnResult
from lightningstor.interfaces.storage import PluginContext
from lightningstor.metadata.sqlite import SqliteMetadataStore, sqliteStoreFactory
from tests.contract.metadata_contract import MetadataStoreContract


class TestSqlite(MetadataStoreContract):
    """Runs the IMetadataStore contract against SQLite."""

    scan_items_expected = True  # listings rely on its IScanItems
    scan_together_expected = True  # and version listings on its IScanTogether

    def make_store(self, tmp_path: Path) -> SqliteMetadataStore:
        return SqliteMetadataStore(str(tmp_path / "meta.db"), reactor)


def open_store(stores: list[SqliteMetadataStore], path: Path, **kwargs: Any) -> SqliteMetadataStore:
    store = SqliteMetadataStore(str(path), reactor, **kwargs)
    stores.append(store)
    return store


async def stall_writer(store: SqliteMetadataStore) -> tuple[sqlite3.Connection, Deferred[TxnResult]]:
    """Hold the database write lock from another connection and park the writer
    on it with a plug txn, so the txns queued next are committed as one batch
    once the returned connection COMMITs."""
    await store.check()  # schema and WAL in place before we grab the lock
    blocker = sqlite3.connect(store.path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    plug = store.txn([], [Put(b"plug", b"")])
    while not store._queue.empty():  # the writer has taken the plug and waits for the lock
        await deferLater(reactor, 0.001)
    return blocker, plug


async def value_of(store: SqliteMetadataStore, key: bytes) -> bytes:
    kv = await store.get(key)
    assert kv is not None, f"{key!r} is missing"
    return kv.value


async def failure_of(d: Deferred[Any]) -> Any:
    """The Failure ``d`` fires with (asserting that it does fail)."""
    [(ok, value)] = await DeferredList([d], consumeErrors=True)
    assert not ok, f"expected a failure, got {value!r}"
    return value


# -- durability and files -------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_restart_keeps_data_and_revision(tmp_path: Path, stores: list[SqliteMetadataStore]) -> None:
    """Data and the revision counter survive close + reopen; revisions keep counting up."""
    path = tmp_path / "meta.db"
    first = open_store(stores, path)
    await first.txn([], [Put(b"a", b"1")])
    last = await first.txn([], [Put(b"b", b"2")])
    await first.close()
    second = open_store(stores, path)
    assert await second.get(b"b") == KeyValue(b"b", b"2", last.revision)
    assert await value_of(second, b"a") == b"1"
    again = await second.txn([], [Put(b"c", b"3")])
    assert again.revision == last.revision + 1


@pytest_twisted.ensureDeferred
async def test_file_is_wal_with_without_rowid_tables(tmp_path: Path, stores: list[SqliteMetadataStore]) -> None:
    """The file is in WAL mode and keeps keys in a BLOB-keyed WITHOUT ROWID table."""
    store = open_store(stores, tmp_path / "meta.db")
    await store.check()
    conn = sqlite3.connect(store.path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        sql = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'kv'").fetchone()[0]
        assert "WITHOUT ROWID" in sql and "key BLOB PRIMARY KEY" in sql
    finally:
        conn.close()


@pytest_twisted.ensureDeferred
async def test_close_drains_queued_writes(tmp_path: Path, stores: list[SqliteMetadataStore]) -> None:
    """close() right after queuing txns commits all of them before it fires."""
    store = open_store(stores, tmp_path / "meta.db")
    pending = [store.txn([], [Put(b"k%02d" % i, b"v")]) for i in range(50)]
    await store.close()
    assert all(r.succeeded for r in await gatherResults(pending))
    reopened = open_store(stores, tmp_path / "meta.db")
    assert len(await reopened.scan(b"k", b"l")) == 50


# -- group commit -------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_concurrent_txns_share_commits(tmp_path: Path, stores: list[SqliteMetadataStore]) -> None:
    """200 concurrent txns need far fewer than 200 COMMITs, yet each gets its own revision."""
    store = open_store(stores, tmp_path / "meta.db")
    await store.check()
    before = store.commit_count
    results = await gatherResults([store.txn([], [Put(b"k%03d" % i, b"v")]) for i in range(200)])
    assert store.commit_count - before <= 20
    assert sorted(r.revision for r in results) == list(range(results[0].revision, results[0].revision + 200))


@pytest_twisted.ensureDeferred
async def test_batch_size_is_bounded(tmp_path: Path, stores: list[SqliteMetadataStore]) -> None:
    """Queued txns are committed together, at most ``batch_max`` per COMMIT."""
    store = open_store(stores, tmp_path / "meta.db", batch_max=10)
    blocker, plug = await stall_writer(store)
    before = store.commit_count
    pending = [store.txn([], [Put(b"k%02d" % i, b"v")]) for i in range(50)]
    blocker.execute("COMMIT")
    blocker.close()
    await plug
    await gatherResults(pending)
    assert store.commit_count - before == 1 + 5  # the plug, then 50 txns in batches of 10


@pytest_twisted.ensureDeferred
async def test_txns_queued_while_another_process_commits_join_the_batch(
    tmp_path: Path, stores: list[SqliteMetadataStore]
) -> None:
    """Another process's writer holds the writer lock (its COMMIT and
    fsync): a txn arriving meanwhile joins the batch this writer is waiting
    with, rather than the next one, so two workers' commits gather as many
    transactions as one process's do (it took two COMMITs here before)."""
    import fcntl
    import os

    store = open_store(stores, tmp_path / "meta.db")
    await store.check()
    lock = os.open(os.path.realpath(store.path) + "-writer.lock", os.O_RDWR)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)  # as another worker's writer
        before = store.commit_count
        first = store.txn([], [Put(b"first", b"1")])
        while not store._queue.empty():  # the writer has taken it and waits for the lock
            await deferLater(reactor, 0.001)
        await deferLater(reactor, 0.05)
        later = [store.txn([], [Put(b"k%d" % i, b"v")]) for i in range(4)]
        fcntl.flock(lock, fcntl.LOCK_UN)
        results = await gatherResults([first, *later])
    finally:
        os.close(lock)
    assert store.commit_count - before == 1
    assert [r.revision for r in results] == list(range(results[0].revision, results[0].revision + 5))


@pytest_twisted.ensureDeferred
async def test_compares_see_earlier_txns_of_the_batch(tmp_path: Path, stores: list[SqliteMetadataStore]) -> None:
    """Inside one batch, a later txn's compare sees what an earlier txn wrote."""
    store = open_store(stores, tmp_path / "meta.db")
    blocker, plug = await stall_writer(store)
    before = store.commit_count
    first = store.txn([Compare(b"k", 0)], [Put(b"k", b"1")])
    second = store.txn([Compare(b"k", 0)], [Put(b"k", b"2")])
    blocker.execute("COMMIT")
    blocker.close()
    await plug
    one, two = await gatherResults([first, second])
    assert store.commit_count - before == 2  # the plug, then both txns together
    assert one.succeeded and two == TxnResult(False, one.revision)
    assert await value_of(store, b"k") == b"1"


@pytest_twisted.ensureDeferred
async def test_compares_and_puts_of_many_keys_in_one_txn(tmp_path: Path, stores: list[SqliteMetadataStore]) -> None:
    """A txn's compares and runs of puts go to SQLite a group of keys at a
    time: every compare counts, whichever group it falls in (a missing key
    is revision 0), and puts and deletes apply in their order (a later put
    of a key wins, a delete sees the puts before it)."""
    store = open_store(stores, tmp_path / "meta.db")
    keys = [b"k%02d" % i for i in range(20)]
    first = await store.txn([Compare(k, 0) for k in keys], [Put(k, b"1") for k in keys])
    assert first.succeeded
    current = [Compare(k, first.revision) for k in keys]
    for stale in (0, 8, 9, 19):  # the first, the first and second of a group, the last
        compares = [*current[:stale], Compare(keys[stale], 0), *current[stale + 1 :]]
        refused = await store.txn(compares, [Put(b"new", b"x")])
        assert refused == TxnResult(False, first.revision)
    assert await store.get(b"new") is None
    ops = [
        *(Put(k, b"2") for k in keys[:10]),
        Delete(keys[3]),
        Put(keys[4], b"3"),
        *(Put(k, b"4") for k in keys[10:]),
        Put(keys[12], b"5"),
        Delete(b"absent"),
    ]
    second = await store.txn([*current, Compare(b"absent", 0)], ops)
    assert second == TxnResult(True, first.revision + 1)
    assert await store.get(keys[3]) is None
    assert await value_of(store, keys[0]) == b"2"
    assert await value_of(store, keys[4]) == b"3"
    assert await value_of(store, keys[11]) == b"4"
    assert await value_of(store, keys[12]) == b"5"
    kv = await store.get(keys[19])
    assert kv is not None and kv.mod_revision == second.revision


@pytest_twisted.ensureDeferred
async def test_raising_txn_fails_alone(
    tmp_path: Path, stores: list[SqliteMetadataStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A txn that raises mid-batch is rolled back alone; its neighbours commit with
    consecutive revisions."""
    store = open_store(stores, tmp_path / "meta.db")
    original = store._apply_txn

    def apply_then_explode(conn: sqlite3.Connection, pending: Any, revision: int) -> TxnResult:
        result = original(conn, pending, revision)  # writes first, so there is something to undo
        if any(getattr(op, "key", None) == b"boom" for op in pending.operations):
            raise RuntimeError("boom")
        return result

    monkeypatch.setattr(store, "_apply_txn", apply_then_explode)
    blocker, plug = await stall_writer(store)
    before = store.commit_count
    ok1 = store.txn([], [Put(b"one", b"1")])
    boom = store.txn([], [Put(b"boom", b"x"), Put(b"two", b"x")])
    ok2 = store.txn([], [Put(b"three", b"3")])
    blocker.execute("COMMIT")
    blocker.close()
    await plug
    failure = await failure_of(boom)
    assert failure.check(RuntimeError)
    first, second = await gatherResults([ok1, ok2])
    assert second.revision == first.revision + 1
    assert store.commit_count - before == 2  # the plug, then all three together
    assert await store.get(b"boom") is None and await store.get(b"two") is None
    assert await store.get(b"three") == KeyValue(b"three", b"3", second.revision)


# -- threads ---------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_sql_never_runs_on_reactor_thread(
    tmp_path: Path, stores: list[SqliteMetadataStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every SQLite connect and statement of a whole store life runs off the
    reactor thread, and the writer runs with synchronous=FULL."""
    seen: list[tuple[int, str]] = []
    real_connect = sqlite3.connect

    def traced_connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        seen.append((threading.get_ident(), "connect"))
        conn = real_connect(*args, **kwargs)
        conn.set_trace_callback(lambda sql: seen.append((threading.get_ident(), sql)))
        return conn

    monkeypatch.setattr(sqlite3, "connect", traced_connect)
    store = open_store(stores, tmp_path / "meta.db")
    await store.txn([Compare(b"k", 0)], [Put(b"k", b"v")])
    await store.txn([Compare(b"k", 0)], [Put(b"k", b"w")])
    await store.get(b"k")
    await store.scan(b"", b"z")
    await store.check()
    await store.close()
    statements = [sql for _, sql in seen]
    assert any("INSERT INTO kv" in s for s in statements)
    assert any("SELECT value, mod_revision FROM kv" in s for s in statements)
    assert "PRAGMA synchronous = FULL" in statements
    assert threading.get_ident() not in {ident for ident, _ in seen}


@pytest_twisted.ensureDeferred
async def test_reads_do_not_wait_for_writes(tmp_path: Path, stores: list[SqliteMetadataStore]) -> None:
    """While the writer waits for the lock, reads still answer with committed data only."""
    store = open_store(stores, tmp_path / "meta.db")
    await store.txn([], [Put(b"k", b"old")])
    blocker, plug = await stall_writer(store)
    write = store.txn([], [Put(b"k", b"new")])
    assert await value_of(store, b"k") == b"old"
    assert not write.called
    blocker.execute("COMMIT")
    blocker.close()
    await gatherResults([plug, write])
    assert await value_of(store, b"k") == b"new"


# -- several processes, errors ---------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_two_stores_on_one_file_share_revisions(tmp_path: Path, stores: list[SqliteMetadataStore]) -> None:
    """Two stores (as two processes would) on one file keep one revision sequence."""
    a = open_store(stores, tmp_path / "meta.db")
    b = open_store(stores, tmp_path / "meta.db")
    r1 = await a.txn([], [Put(b"x", b"1")])
    r2 = await b.txn([Compare(b"x", r1.revision)], [Put(b"x", b"2")])
    r3 = await a.txn([], [Put(b"y", b"3")])
    assert [r1.succeeded, r2.succeeded, r3.succeeded] == [True, True, True]
    assert (r2.revision, r3.revision) == (r1.revision + 1, r1.revision + 2)
    assert await value_of(a, b"x") == b"2"


@pytest_twisted.ensureDeferred
async def test_lock_timeout_is_unavailable_not_a_hang(tmp_path: Path, stores: list[SqliteMetadataStore]) -> None:
    """A write lock held past busy_timeout fails the txn with MetadataUnavailable;
    the store works again once the lock is gone."""
    store = open_store(stores, tmp_path / "meta.db", busy_timeout=0.05)
    await store.check()
    blocker = sqlite3.connect(store.path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    failure = await failure_of(store.txn([], [Put(b"k", b"v")]))
    assert failure.check(MetadataUnavailable)
    blocker.execute("COMMIT")
    blocker.close()
    assert (await store.txn([], [Put(b"k", b"v")])).succeeded


def _sqlite_error(message: str, code: int) -> sqlite3.OperationalError:
    e = sqlite3.OperationalError(message)
    e.sqlite_errorcode = code  # type: ignore[attr-defined]
    return e


@pytest.mark.parametrize(
    ("code", "free", "full"),
    [
        (sqlite3.SQLITE_FULL, 1 << 30, True),
        (sqlite3.SQLITE_IOERR | (19 << 8), 1 << 30, True),  # SQLITE_IOERR_SHMSIZE: growing -shm hit ENOSPC
        (sqlite3.SQLITE_IOERR | (3 << 8), 4096, True),  # SQLITE_IOERR_WRITE on a volume with 4 KiB left
        (sqlite3.SQLITE_IOERR | (3 << 8), 1 << 30, False),  # the same error with room: not full
        (sqlite3.SQLITE_BUSY, 4096, False),
    ],
)
@pytest_twisted.ensureDeferred
async def test_a_full_disk_is_metadata_full_whatever_sqlite_calls_it(
    tmp_path: Path, stores: list[SqliteMetadataStore], monkeypatch: pytest.MonkeyPatch, code: int, free: int, full: bool
) -> None:
    """A commit failing because the volume is full is MetadataFull (507, not
    retried), also when SQLite reports it as an I/O error: growing the WAL
    index fails with SQLITE_IOERR_SHMSIZE, which used to answer a 503 that
    clients retried in vain.  Other failures stay MetadataUnavailable."""
    store = open_store(stores, tmp_path / "meta.db")
    await store.check()

    def failing(*args: Any) -> Any:
        raise _sqlite_error("disk I/O error", code)

    real_statvfs = os.statvfs

    def statvfs(path: Any) -> Any:
        st = real_statvfs(path)
        return os.statvfs_result((st.f_bsize, 1, st.f_blocks, free, free, *tuple(st)[5:]))

    monkeypatch.setattr(store, "_apply_txn", failing)
    monkeypatch.setattr(os, "statvfs", statvfs)
    failure = await failure_of(store.txn([], [Put(b"k", b"v")]))
    assert failure.check(MetadataUnavailable)
    assert bool(failure.check(MetadataFull)) == full, failure


@pytest_twisted.ensureDeferred
async def test_unopenable_database_is_unavailable(tmp_path: Path, stores: list[SqliteMetadataStore]) -> None:
    """A database that cannot be opened fails every call with MetadataUnavailable."""
    store = open_store(stores, tmp_path / "missing-dir" / "meta.db")
    for d in (store.txn([], [Put(b"k", b"v")]), store.get(b"k"), store.scan(b"", b"z"), store.check()):
        assert (await failure_of(d)).check(MetadataUnavailable)


@pytest_twisted.ensureDeferred
async def test_text_keys_are_rejected(tmp_path: Path, stores: list[SqliteMetadataStore]) -> None:
    """str keys and values fail with TypeError: stored as TEXT they would sort apart from BLOBs."""
    store = open_store(stores, tmp_path / "meta.db")
    assert (await failure_of(store.get("k"))).check(TypeError)  # type: ignore[arg-type]
    assert (await failure_of(store.txn([], [Put("k", b"v")]))).check(TypeError)  # type: ignore[arg-type]
    assert (await failure_of(store.txn([], [Put(b"k", "v")]))).check(TypeError)  # type: ignore[arg-type]
    assert (await failure_of(store.txn([Compare("k", 0)], []))).check(TypeError)  # type: ignore[arg-type]


# -- factory ----------------------------------------------------------------------


def test_factory_is_a_plugin() -> None:
    """The module-level factory provides IPlugin and IMetadataStoreFactory, named 'sqlite'."""
    assert verifyObject(IMetadataStoreFactory, sqliteStoreFactory)
    assert IPlugin.providedBy(sqliteStoreFactory)
    assert sqliteStoreFactory.name == "sqlite"


@pytest_twisted.ensureDeferred
async def test_factory_paths(tmp_path: Path, stores: list[SqliteMetadataStore]) -> None:
    """Without ``path`` the db goes in <data_dir>/metadata.db; missing directories are created."""
    context = PluginContext(reactor=reactor, io_pool=None, data_dir=str(tmp_path / "data"))
    store = sqliteStoreFactory.create({}, context)
    stores.append(store)
    assert store.path == str(tmp_path / "data" / "metadata.db")
    await store.check()
    explicit = sqliteStoreFactory.create({"path": str(tmp_path / "x" / "y.db")}, context)
    stores.append(explicit)
    await explicit.check()
    assert (tmp_path / "x" / "y.db").exists()


def test_factory_rejects_bad_options(tmp_path: Path) -> None:
    """Bad ``synchronous`` / ``batch_max`` values are ConfigErrors naming the key."""
    context = PluginContext(reactor=reactor, io_pool=None, data_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="metadata.sqlite.synchronous"):
        sqliteStoreFactory.create({"synchronous": "sometimes"}, context)
    with pytest.raises(ConfigError, match="metadata.sqlite.batch_max"):
        sqliteStoreFactory.create({"batch_max": 0}, context)
    # Quietly coerced or ignored before: a fraction, a bool, a timeout that
    # turned the lock wait off (inf, nan, negative), a misspelt key.
    for options, key in (
        ({"batch_max": 2.9}, "metadata.sqlite.batch_max"),
        ({"cache_bytes": True}, "metadata.sqlite.cache_bytes"),
        ({"busy_timeout": float("inf")}, "metadata.sqlite.busy_timeout"),
        ({"busy_timeout": float("nan")}, "metadata.sqlite.busy_timeout"),
        ({"busy_timeout": -5}, "metadata.sqlite.busy_timeout"),
        ({"sqlite": {"synchronus": "OFF"}}, "metadata.sqlite.synchronus: unknown option"),
        ({"path": str(tmp_path)}, "metadata.sqlite.path: .* is a directory"),  # three tracebacks before
    ):
        with pytest.raises(ConfigError, match=key):
            sqliteStoreFactory.create(options, context)


@pytest_twisted.ensureDeferred
async def test_write_transactions_queue_on_the_writer_lock_file(
    tmp_path: Path, stores: list[SqliteMetadataStore]
) -> None:
    """Every write transaction runs under an ``flock`` of ``<db>-writer.lock``:
    how the writers of several worker processes take turns, woken by the
    kernel instead of SQLite's sleep-and-retry busy handler.  While another
    holder has the lock nothing commits; once it lets go, the queued
    transaction does."""
    import fcntl
    import os

    store = open_store(stores, tmp_path / "meta.db")
    await store.check()
    other = os.open(str(tmp_path / "meta.db-writer.lock"), os.O_RDWR)  # as another process's writer
    try:
        fcntl.flock(other, fcntl.LOCK_EX)
        d = store.txn([], [Put(b"k", b"v")])
        await deferLater(reactor, 0.3, lambda: None)
        assert not d.called, "the writer committed while another writer held the lock"
        fcntl.flock(other, fcntl.LOCK_UN)
        result = await d
        assert result.succeeded
        assert (await store.get(b"k")).value == b"v"  # type: ignore[union-attr]
        # Released after the commit: another writer can take it at once.
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(other)


@pytest_twisted.ensureDeferred
async def test_a_store_starts_no_thread_until_it_is_used(tmp_path: Path, stores: list[SqliteMetadataStore]) -> None:
    """twistd builds the service (and so the store) before it forks into a
    daemon, and threads do not survive a fork: the daemon's reads and writes
    waited forever.  The store's threads start at its first use."""
    before = {t.name for t in threading.enumerate()}
    store = open_store(stores, tmp_path / "lazy.db")
    assert not {t.name for t in threading.enumerate()} - before
    await store.txn([], [Put(b"k", b"v")])
    assert await value_of(store, b"k") == b"v"
    assert {"lightningstor-sqlite-write", "lightningstor-sqlite-read"} <= {t.name for t in threading.enumerate()}


@pytest_twisted.ensureDeferred
async def test_a_store_never_used_closes(tmp_path: Path) -> None:
    """Closing a store that never started its threads still ends cleanly."""
    store = SqliteMetadataStore(str(tmp_path / "unused.db"), reactor)
    await store.close()


@pytest_twisted.ensureDeferred
async def test_scan_items_together_reads_one_snapshot(
    stores: list[SqliteMetadataStore], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ranges of scan_items_together are read in one transaction: a
    commit (from another connection, as another worker's) that lands between
    the first range and the second is in neither."""
    store = open_store(stores, tmp_path / "meta.db")
    await store.txn([], [Put(b"a/1", b"x"), Put(b"b/1", b"y")])
    original = SqliteMetadataStore._scan_items
    ranges_read: list[bytes] = []

    def scan_then_commit(conn: sqlite3.Connection, start: bytes, end: bytes, limit: int) -> Any:
        rows = original(conn, start, end, limit)
        if not ranges_read:
            other = sqlite3.connect(store.path, isolation_level=None)
            other.execute("INSERT INTO kv (key, value, mod_revision) VALUES (?, ?, 1000)", (b"b/2", b"z"))
            other.close()
        ranges_read.append(start)
        return rows

    monkeypatch.setattr(SqliteMetadataStore, "_scan_items", staticmethod(scan_then_commit))
    together = await store.scan_items_together([(b"a/", b"a0", 0), (b"b/", b"b0", 0)])
    assert ranges_read == [b"a/", b"b/"]
    assert together == [[(b"a/1", b"x")], [(b"b/1", b"y")]]
    assert await store.scan_items(b"b/", b"b0") == [(b"b/1", b"y"), (b"b/2", b"z")]  # committed all along
