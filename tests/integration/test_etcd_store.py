"""The etcd metadata store against real etcd processes.

* The shared IMetadataStore contract on one etcd member (each test gets its
  own namespace, so one etcd process serves them all).
* What is etcd-specific: the key layout, etcd's limits, operation
  normalisation checked against SQLite, exactly-once writes when answers
  are lost (through a proxy that drops them).
* Failover on a 3-member cluster: SIGKILL of the leader during a stream of
  transactions, then of a quorum, then recovery.

Skipped where /usr/bin/etcd is missing, unless LIGHTNINGSTOR_REQUIRE_TOOLS=1.
Run with ``.venv/bin/python -m pytest tests/integration/test_etcd_store.py``.
"""

from __future__ import annotations

import random
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import protocol, reactor
from twisted.internet.defer import Deferred, DeferredList, gatherResults
from twisted.internet.task import deferLater

from lightningstor import errors
from lightningstor.core import listing, records
from lightningstor.core.keys import object_key
from lightningstor.core.types import ObjectRecord
from lightningstor.errors import MetadataUnavailable
from lightningstor.interfaces.metadata import (
    Compare,
    Delete,
    DeleteRange,
    KeyValue,
    Put,
    TxnResult,
    prefix_end,
)
from lightningstor.interfaces.storage import PluginContext
from lightningstor.metadata.etcd import EtcdMetadataStore, etcdStoreFactory
from lightningstor.metadata.etcd_gateway import GatewayClient, OutcomeUnknown
from lightningstor.metadata.sqlite import SqliteMetadataStore
from tests.contract.metadata_contract import MetadataStoreContract
from tests.etcd_cluster import EtcdCluster, etcd_binary, free_ports, make_tls, post, raw_keys


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    """One etcd member for the whole module, with etcd's default limits."""
    etcd_binary()
    cluster = EtcdCluster(tmp_path_factory.mktemp("etcd")).start()
    yield cluster
    cluster.stop()


def make_store(endpoints: list[str], **options: Any) -> EtcdMetadataStore:
    """A store in a fresh namespace of its own."""
    options.setdefault("namespace", f"t-{uuid.uuid4().hex[:12]}/")
    context = PluginContext(reactor=reactor, io_pool=None, data_dir="/nonexistent")
    return etcdStoreFactory.create({"chainfire_endpoints": tuple(endpoints), "etcd": options, **options}, context)


@pytest.fixture
def stores() -> Iterator[list[Any]]:
    opened: list[Any] = []
    yield opened
    for store in opened:
        pytest_twisted.blockon(store.close())


async def failure_of(d: Any) -> Any:
    [(ok, value)] = await DeferredList([d], consumeErrors=True)
    assert not ok, f"expected a failure, got {value!r}"
    return value


class TestEtcdContract(MetadataStoreContract):
    """Runs the IMetadataStore contract against a real etcd member."""

    scan_items_expected = True  # listings rely on its IScanItems
    scan_together_expected = True  # and version listings on its IScanTogether

    @pytest.fixture(autouse=True)
    def _etcd(self, etcd: EtcdCluster) -> None:
        self.endpoints = etcd.endpoints

    def make_store(self, tmp_path: Path) -> EtcdMetadataStore:
        return make_store(self.endpoints)


# -- layout and limits ------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_namespaces_isolate_and_markers_stay_hidden(etcd: EtcdCluster, stores: list[Any]) -> None:
    """Keys live at <namespace>d/<key>; the write markers live outside every
    scan; two namespaces on one cluster never see each other's keys."""
    a = make_store(etcd.endpoints, namespace="ns-a/")
    b = make_store(etcd.endpoints, namespace="ns-b/")
    stores += [a, b]
    await a.txn([], [Put(b"k", b"1"), Put(b"\xff", b"2")])
    await b.txn([], [Put(b"k", b"other")])
    assert [kv.key for kv in await a.scan(b"", prefix_end(b""))] == [b"k", b"\xff"]
    assert [kv.value for kv in await b.scan(b"", prefix_end(b""))] == [b"other"]
    keys = raw_keys(etcd.endpoints[0], b"ns-a/")
    assert b"ns-a/d/k" in keys and b"ns-a/d/\xff" in keys
    markers = [k for k in keys if k.startswith(b"ns-a/x/txn/")]
    assert len(markers) == 1  # one slot, reused by both txns
    await a.close()
    assert raw_keys(etcd.endpoints[0], b"ns-a/x/") == []  # revoking the lease removed it


@pytest_twisted.ensureDeferred
async def test_lost_lease_is_replaced(etcd: EtcdCluster, stores: list[Any]) -> None:
    """If the store's lease disappears (expired while etcd was unreachable, or
    revoked), the next write is refused before it applies, and the store
    takes a new lease and writes once; the keep-alive notices a lost lease too."""
    store = make_store(etcd.endpoints)
    stores.append(store)
    await store.txn([], [Put(b"a", b"1")])
    first = store._lease
    post(etcd.endpoints[0] + "/v3/lease/revoke", {"ID": str(first.id)})
    result = await store.txn([Compare(b"b", 0)], [Put(b"b", b"2")])
    assert result.succeeded and (await store.get(b"b")).mod_revision == result.revision
    second = store._lease
    assert second is not None and second.id != first.id and not first.alive
    post(etcd.endpoints[0] + "/v3/lease/revoke", {"ID": str(second.id)})
    await store._refresh()
    assert not second.alive and store._lease is None
    assert (await store.txn([], [Put(b"c", b"3")])).succeeded


@pytest_twisted.ensureDeferred
async def test_transactions_over_etcd_limits_are_refused_clearly(etcd: EtcdCluster, stores: list[Any]) -> None:
    """More operations than --max-txn-ops (128) or more bytes than
    --max-request-bytes (1.5 MiB) fail with EntityTooLarge naming the etcd
    flags, not with a retried 503, and apply nothing."""
    store = make_store(etcd.endpoints)
    stores.append(store)
    many = await failure_of(store.txn([], [Put(b"k%03d" % i, b"v") for i in range(200)]))
    assert many.check(errors.EntityTooLarge) and "--max-txn-ops" in many.value.message
    big = await failure_of(store.txn([], [Put(b"big", b"x" * (1600 * 1024))]))
    assert big.check(errors.EntityTooLarge) and "too large" in big.value.message
    assert await store.scan(b"", prefix_end(b"")) == []
    fits = b"y" * (1400 * 1024)
    assert (await store.txn([], [Put(b"big", fits)])).succeeded
    assert (await store.get(b"big")).value == fits


@pytest.mark.parametrize("method", ["scan", "scan_items"])
@pytest_twisted.ensureDeferred
async def test_long_scans_are_paged_on_one_snapshot(
    etcd: EtcdCluster, stores: list[Any], monkeypatch: pytest.MonkeyPatch, method: str
) -> None:
    """A scan (or scan_items) longer than scan_page reads several pages
    pinned to the first page's revision: keys written between its pages do
    not appear in it.  A limit spanning pages is honoured exactly (scan_items
    builds its rows per page, so the next page's start comes from the raw
    answer)."""
    store = make_store(etcd.endpoints, scan_page=7)
    writer = make_store(etcd.endpoints, namespace=store.namespace.decode())
    stores += [store, writer]
    await store.txn([], [Put(b"k%03d" % i, b"v%d" % i) for i in range(0, 100, 2)])
    real_call = store._client.call
    pages: list[dict[str, Any]] = []

    async def call_then_write(path: str, body: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        answer = await real_call(path, body, **kwargs)
        if path == "/v3/kv/range" and not pages:  # between the first and second page
            await writer.txn([], [Put(b"k%03d" % i, b"late") for i in range(1, 100, 2)])
        pages.append(body)
        return answer

    async def rows(start: bytes, end: bytes, limit: int = 0) -> list[tuple[bytes, bytes]]:
        found = await getattr(store, method)(start, end, limit)
        return found if method == "scan_items" else [(kv.key, kv.value) for kv in found]

    monkeypatch.setattr(store._client, "call", call_then_write)
    assert await rows(b"", prefix_end(b"")) == [(b"k%03d" % i, b"v%d" % i) for i in range(0, 100, 2)]
    assert len(pages) == 8 and all("revision" in body for body in pages[1:])
    everything = [(b"k%03d" % i, b"v%d" % i if i % 2 == 0 else b"late") for i in range(100)]
    for start, end, limit in [(b"k", b"l", 23), (b"k013", b"k090", 0), (b"k013", b"k090", 15), (b"k1", b"l", 0)]:
        wanted = [(k, v) for k, v in everything if start <= k < end]
        assert await rows(start, end, limit) == (wanted[:limit] if limit else wanted)
    assert await rows(b"", prefix_end(b"")) == everything


@pytest_twisted.ensureDeferred
async def test_listings_over_etcd_read_scan_items(
    etcd: EtcdCluster, stores: list[Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ListObjects and ListObjectVersions over etcd read only ``scan_items``
    (its ``scan`` is made to fail) and page to exactly what SQLite lists,
    with range pages (scan_page=7) far smaller than the listing batches."""
    store = make_store(etcd.endpoints, scan_page=7)
    ref = SqliteMetadataStore(str(tmp_path / "ref.db"), reactor)
    stores += [store, ref]
    names = [f"d{i % 4}/k{i:03d}" for i in range(120)] + ["a", "é", "\U0001f600", "z/"]
    ops = []
    for i, name in enumerate(names):
        record = ObjectRecord(key=name, size=i, etag=f"e{i}", created_at=1795675550000 + i,
                              delete_marker=i % 9 == 4, owner="admin")  # fmt: skip
        ops.append(Put(object_key("b1", name), records.encode_object(record)))
    for i in range(0, len(ops), 50):
        await gatherResults([store.txn([], ops[i : i + 50]), ref.txn([], ops[i : i + 50])])

    def no_scan(*args: Any) -> Any:
        raise AssertionError("a listing over etcd called scan, not scan_items")

    monkeypatch.setattr(store, "scan", no_scan)
    cases: list[dict[str, Any]] = [
        {}, {"max_keys": 10}, {"prefix": "d1/"}, {"delimiter": "/"}, {"delimiter": "/", "max_keys": 2},
        {"after": "d2/k050", "max_keys": 7}, {"prefix": "d", "delimiter": "/", "after": "d1/"},
    ]  # fmt: skip
    for kw in cases:
        assert await listing.list_objects(store, "b1", **kw) == await listing.list_objects(ref, "b1", **kw), kw
        vkw = {("key_marker" if k == "after" else k): v for k, v in kw.items()}
        got = await listing.list_object_versions(store, "b1", **vkw)
        assert got == await listing.list_object_versions(ref, "b1", **vkw), vkw


@pytest_twisted.ensureDeferred
async def test_overlapping_operations_match_sqlite(etcd: EtcdCluster, stores: list[Any], tmp_path: Path) -> None:
    """Random transactions naming keys more than once (puts, deletes, ranges
    over them) leave etcd, which refuses duplicate keys, in exactly the state
    SQLite reaches applying them in order."""
    etcd_store = make_store(etcd.endpoints)
    sqlite_store = SqliteMetadataStore(str(tmp_path / "ref.db"), reactor)
    stores += [etcd_store, sqlite_store]
    rng = random.Random(11)
    keys = [b"a", b"a\x00", b"ab", b"b", b"b/c", b"c", b"\xff"]
    for _ in range(25):
        ops: list[Any] = []
        for _ in range(rng.randint(1, 6)):
            pick = rng.random()
            if pick < 0.5:
                ops.append(Put(rng.choice(keys), b"%d" % rng.randint(0, 99)))
            elif pick < 0.75:
                ops.append(Delete(rng.choice(keys)))
            else:
                start = rng.choice(keys)
                ops.append(DeleteRange(start, rng.choice([*keys, b"\x00"])))
        await gatherResults([etcd_store.txn([], ops), sqlite_store.txn([], ops)])
        got = [(kv.key, kv.value) for kv in await etcd_store.scan(b"", prefix_end(b""))]
        want = [(kv.key, kv.value) for kv in await sqlite_store.scan(b"", prefix_end(b""))]
        assert got == want, ops


# -- exactly once, when answers are lost ---------------------------------------------------


class _Upstream(protocol.Protocol):
    """etcd's side: its answers reach the client unless the proxy drops them."""

    def __init__(self, client: _Downstream) -> None:
        self.client = client

    def connectionMade(self) -> None:
        self.client.upstream = self
        self.client.transport.resumeProducing()  # type: ignore[union-attr]
        self.client.flush()

    def dataReceived(self, data: bytes) -> None:
        proxy = self.client.proxy
        if self.client.held:
            self.transport.loseConnection()  # type: ignore[union-attr] # the client is long gone
            return
        if proxy.drop_answers > 0:
            proxy.drop_answers -= 1
            proxy.dropped += 1
            self.client.transport.abortConnection()  # type: ignore[union-attr]
            self.transport.loseConnection()  # type: ignore[union-attr]
            return
        self.client.transport.write(data)  # type: ignore[union-attr]

    def connectionLost(self, reason: Any = None) -> None:
        self.client.transport.loseConnection()  # type: ignore[union-attr]


class _Downstream(protocol.Protocol):
    """The client's side; a *held* connection keeps its requests until
    :meth:`LossyProxy.release`, long after the client gave up on it."""

    def __init__(self, proxy: LossyProxy) -> None:
        self.proxy = proxy
        self.upstream: _Upstream | None = None
        self.pending: list[bytes] = []
        self.held = False

    def connectionMade(self) -> None:
        self.transport.pauseProducing()  # type: ignore[union-attr]
        host, port = self.proxy.target
        protocol.ClientCreator(reactor, _Upstream, self).connectTCP(host, port)

    def dataReceived(self, data: bytes) -> None:
        if not self.held and self.proxy.hold_next > 0:
            self.proxy.hold_next -= 1
            self.held = True
            self.proxy.held.append(self)
        self.pending.append(data)
        self.flush()

    def flush(self) -> None:
        if self.upstream is not None and not self.held:
            for data in self.pending:
                self.upstream.transport.write(data)  # type: ignore[union-attr]
            self.pending.clear()

    def release(self) -> None:
        self.held = False
        self.flush()
        self.held = True  # the answer goes nowhere

    def connectionLost(self, reason: Any = None) -> None:
        if self.upstream is not None and not self.held:
            self.upstream.transport.loseConnection()  # type: ignore[union-attr]


class LossyProxy(protocol.Factory):
    """A TCP proxy in front of etcd that can drop the next ``drop_answers``
    answers (after etcd applied the request) or hold the next ``hold_next``
    requests (and their connections) until :meth:`release` (so they are applied
    after the client gave up and retried)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.drop_answers = 0
        self.dropped = 0
        self.hold_next = 0
        self.held: list[_Downstream] = []
        self.port: Any = reactor.listenTCP(0, self, interface="127.0.0.1")  # type: ignore[attr-defined]

    def buildProtocol(self, addr: Any) -> _Downstream:
        return _Downstream(self)

    def release(self) -> None:
        held, self.held = self.held, []
        for conn in held:
            conn.release()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port.getHost().port}"


@pytest.fixture
def proxy(etcd: EtcdCluster) -> Iterator[LossyProxy]:
    host, port = etcd.endpoints[0].removeprefix("http://").split(":")
    p = LossyProxy((host, int(port)))
    yield p
    pytest_twisted.blockon(p.port.stopListening())


@pytest_twisted.ensureDeferred
async def test_lost_answers_do_not_turn_wins_into_losses(proxy: LossyProxy, stores: list[Any]) -> None:
    """A create-if-absent whose answer is lost (after etcd applied it) is
    retried and reported as the success it was, once, at its real revision;
    an unconditional put likewise; an ambiguous delete fails with OutcomeUnknown
    (a MetadataUnavailable) instead of being repeated."""
    store = make_store([proxy.url])
    stores.append(store)
    await store.txn([], [Put(b"warm", b"")])  # the lease exists; only txns go through the drop below
    proxy.drop_answers = 1
    created = await store.txn([Compare(b"k", 0)], [Put(b"k", b"mine")])
    assert proxy.dropped == 1
    assert created.succeeded
    assert await store.get(b"k") == KeyValue(b"k", b"mine", created.revision)
    again = await store.txn([Compare(b"k", 0)], [Put(b"k", b"theirs")])
    assert again == TxnResult(False, created.revision)  # nothing was applied twice
    proxy.drop_answers = 1
    plain = await store.txn([], [Put(b"p", b"1")])
    assert plain.succeeded and (await store.get(b"p")).mod_revision == plain.revision
    proxy.drop_answers = 1
    failure = await failure_of(store.txn([], [Delete(b"p")]))
    assert failure.check(OutcomeUnknown) and failure.check(MetadataUnavailable)
    assert await store.get(b"p") is None  # it was applied; the store just could not know


@pytest_twisted.ensureDeferred
async def test_lost_answer_then_genuine_conflict_is_a_loss(proxy: LossyProxy, stores: list[Any]) -> None:
    """If the retried CAS really lost (another writer moved the key), the
    result is a failure and the first attempt can never apply later."""
    store = make_store([proxy.url])
    other = make_store([proxy.url], namespace=store.namespace.decode())
    stores += [store, other]
    base = await store.txn([], [Put(b"k", b"0")])
    moved = await other.txn([Compare(b"k", base.revision)], [Put(b"k", b"other")])
    assert moved.succeeded
    proxy.drop_answers = 1  # the attempt reaches etcd, fails its compare, and the answer is lost
    result = await store.txn([Compare(b"k", base.revision)], [Put(b"k", b"stale")])
    assert not result.succeeded
    assert (await store.get(b"k")).value == b"other"


@pytest_twisted.ensureDeferred
async def test_stale_attempt_cannot_apply_after_a_reported_loss(
    etcd: EtcdCluster, proxy: LossyProxy, stores: list[Any]
) -> None:
    """An attempt that is held up (the client times out and retries) must
    never apply after the retry reported a lost race: the store fences it.
    Here the held create-if-absent is released after the key was created and
    deleted again by another writer, when its own compare would hold."""
    store = make_store([proxy.url], request_timeout=0.3)
    other = make_store(etcd.endpoints, namespace=store.namespace.decode())
    stores += [store, other]
    await store.txn([], [Put(b"warm", b"")])
    proxy.hold_next = 1
    ours = store.txn([Compare(b"k", 0)], [Put(b"k", b"stale")])
    created = await other.txn([Compare(b"k", 0)], [Put(b"k", b"theirs")])
    assert created.succeeded
    result = await ours
    assert not result.succeeded
    await other.txn([], [Delete(b"k")])
    proxy.release()
    await deferLater(reactor, 0.3)  # time for the released request to reach etcd
    assert await store.get(b"k") is None


@pytest_twisted.ensureDeferred
async def test_unreachable_cluster_is_unavailable_quickly(stores: list[Any]) -> None:
    """With nothing listening at any endpoint, every call fails with
    MetadataUnavailable within the configured timeout."""
    ports = free_ports(2)
    store = make_store([f"http://127.0.0.1:{p}" for p in ports], timeout=0.5, request_timeout=0.2)
    stores.append(store)
    started = time.monotonic()
    for d in (store.get(b"k"), store.scan(b"", b"z"), store.txn([], [Put(b"k", b"v")]), store.check()):
        assert (await failure_of(d)).check(MetadataUnavailable)
    assert time.monotonic() - started < 4 * 1.5


@pytest_twisted.ensureDeferred
async def test_tls_with_client_certificates(tmp_path: Path, stores: list[Any]) -> None:
    """Over https, the store verifies etcd against ca_file and presents
    cert_file/key_file; without the client certificate etcd refuses it.
    The certificate reaches pyOpenSSL as cryptography objects: its own
    X509/PKey wrappers are deprecated, and a warning here fails the test."""
    etcd_binary()
    tls = make_tls(tmp_path / "pki")
    cluster = EtcdCluster(tmp_path / "etcd", tls=tls).start()
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="Passing pyOpenSSL", category=DeprecationWarning)
        try:
            store = make_store(cluster.endpoints, ca_file=str(tls.ca_file), cert_file=str(tls.client_cert_file),
                               key_file=str(tls.client_key_file))
            anonymous = make_store(cluster.endpoints, ca_file=str(tls.ca_file), timeout=0.5, request_timeout=0.25)
            stores += [store, anonymous]
            assert cluster.endpoints[0].startswith("https://")
            assert (await store.txn([], [Put(b"k", b"v")])).succeeded
            assert (await store.get(b"k")).value == b"v"
            assert (await failure_of(anonymous.get(b"k"))).check(MetadataUnavailable)
        finally:
            for s in stores:
                await s.close()
            stores.clear()
            cluster.stop()


# -- a three-member cluster ------------------------------------------------------------------


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[EtcdCluster]:
    etcd_binary()
    c = EtcdCluster(tmp_path / "cluster", size=3).start()
    yield c
    c.stop()


@pytest_twisted.ensureDeferred
async def test_leader_kill_then_quorum_loss_then_recovery(cluster: EtcdCluster, stores: list[Any]) -> None:
    """SIGKILL of the leader during a stream of txns: the stream goes on and
    every acknowledged txn is readable afterwards.  With two of three members
    gone, calls fail with MetadataUnavailable within the configured timeout;
    once a member is back, the store works again with nothing lost."""
    # The store talks to the leader first, so killing it cuts requests in flight.
    leader = cluster.leader()
    endpoints = [leader.client_url, *(e for e in cluster.endpoints if e != leader.client_url)]
    client = GatewayClient(reactor, endpoints, timeout=3.0, request_timeout=1.0, spread=False)
    store = EtcdMetadataStore(client, reactor, namespace=b"failover/")
    stores.append(store)
    acknowledged: dict[bytes, int] = {}
    failed = 0

    async def writer(name: bytes) -> None:
        nonlocal failed
        for i in range(40):
            key = b"%s/%03d" % (name, i)
            try:
                result = await store.txn([Compare(key, 0)], [Put(key, b"v")])
            except MetadataUnavailable:
                failed += 1
                continue
            assert result.succeeded, key  # a lost answer must never read as a lost race
            acknowledged[key] = result.revision
            await deferLater(reactor, 0.005)

    stream = gatherResults([Deferred.fromCoroutine(writer(b"w%d" % n)) for n in range(4)])
    while len(acknowledged) < 20:
        await deferLater(reactor, 0.01)
    leader.kill()
    await stream
    assert client.failed_attempts > 0  # it did fail over
    assert len(acknowledged) >= 120, (len(acknowledged), failed)  # and kept going
    rows = {kv.key: kv.mod_revision for kv in await store.scan(b"w", b"x")}
    for key, revision in acknowledged.items():
        assert rows.get(key) == revision, key

    # Quorum lost: a second member dies.
    second = next(m for m in cluster.members if m.alive)
    second.kill()
    started = time.monotonic()
    outcomes = await DeferredList(
        [store.txn([], [Put(b"during", b"x")]), store.get(b"w0/000"), store.check()], consumeErrors=True
    )
    assert all(not ok and f.check(MetadataUnavailable) for ok, f in outcomes), outcomes
    assert time.monotonic() - started < 3.0 + 1.5

    # Recovery: with a quorum again, reads and writes work and nothing acknowledged is lost.
    cluster.restart(second)
    deadline = time.monotonic() + 15
    while True:
        try:
            await store.check()
            break
        except MetadataUnavailable:
            assert time.monotonic() < deadline, "no recovery"
            await deferLater(reactor, 0.1)
    assert (await store.txn([], [Put(b"after", b"x")])).succeeded
    rows = {kv.key: kv.mod_revision for kv in await store.scan(b"w", b"x")}
    assert all(rows.get(k) == r for k, r in acknowledged.items())


@pytest_twisted.ensureDeferred
async def test_bucket_name_index_on_etcd(etcd: EtcdCluster, stores: list[Any]) -> None:
    """The bucket name index on etcd as on SQLite: creates (a lost race
    included) and deletes keep one entry per bucket in their own
    transactions; the start-up pass completes a store stripped of its
    index, drops a stale entry and sets the marker; lookups by name answer
    before and after."""
    from lightningstor.core import keys as k
    from lightningstor.core.buckets import BucketManager
    from lightningstor.core.types import Principal

    store = make_store(etcd.endpoints)
    stores.append(store)
    manager = BucketManager(store, time.time, "us-east-1")
    other = BucketManager(store, time.time, "us-east-1")
    acme, globex = Principal("a", "acme"), Principal("g", "globex")
    outcomes = await DeferredList([manager.create(acme, "race"), other.create(acme, "race")], consumeErrors=True)
    assert sorted(ok for ok, _ in outcomes) == [False, True]
    await manager.create(globex, "race")
    await manager.create(globex, "solo")
    await manager.create(acme, "gone")
    await manager.delete(acme, "gone")

    async def entries() -> dict[bytes, bytes]:
        return {kv.key: kv.value for kv in await store.scan(k.BUCKET_NAMES, prefix_end(k.BUCKET_NAMES))}

    expected = {k.bucket_name_key(o, None, n): k.bucket_key(o, None, n)
                for o, n in (("acme", "race"), ("globex", "race"), ("globex", "solo"))}
    assert await entries() == expected

    # A store written by a version without the index, plus a stale entry.
    await store.txn([], [DeleteRange(k.BUCKET_NAMES, prefix_end(k.BUCKET_NAMES))])
    await store.txn([], [Put(k.bucket_name_key("initech", None, "solo"), k.bucket_key("initech", None, "solo"))])
    found = await manager.find_unique("solo")  # no marker: the walk answers
    assert found is not None and found.org_id == "globex"
    report = await manager.index_names()
    assert (report.added, report.removed, report.complete) == (3, 1, True)
    assert await entries() == expected
    assert await store.get(k.BUCKET_NAMES_INDEXED) is not None
    found = await other.find_unique("solo")
    assert found is not None and found.org_id == "globex"
    assert await other.find_unique("race") is None  # two tenants
    assert await other.find_unique("gone") is None


@pytest_twisted.ensureDeferred
async def test_scan_items_together_reads_one_revision(
    etcd: EtcdCluster, stores: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ranges of scan_items_together are read at the first range's
    revision: a transaction that commits between the first range and the
    second is in neither."""
    store = make_store(etcd.endpoints, namespace=f"together-{uuid.uuid4().hex[:8]}/")
    stores.append(store)
    await store.txn([], [Put(b"a/1", b"x"), Put(b"b/1", b"y")])
    original = store._range_at
    ranges_read: list[bytes] = []

    async def range_then_commit(start: bytes, *args: Any) -> Any:
        result = await original(start, *args)
        if not ranges_read:
            await store.txn([], [Put(b"b/2", b"z")])
        ranges_read.append(start)
        return result

    monkeypatch.setattr(store, "_range_at", range_then_commit)
    together = await store.scan_items_together([(b"a/", b"a0", 0), (b"b/", b"b0", 0)])
    assert ranges_read == [b"a/", b"b/"]
    assert together == [[(b"a/1", b"x")], [(b"b/1", b"y")]]
    assert await store.scan_items(b"b/", b"b0") == [(b"b/1", b"y"), (b"b/2", b"z")]
