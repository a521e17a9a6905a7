"""etcd's space quota, for real: a member started with a small
``--quota-backend-bytes`` is filled until it raises its NOSPACE alarm.

What etcd 3.4 does then (checked here against the real process): every
request that would put a key is refused with "etcdserver: mvcc: database
space exceeded" (gRPC RESOURCE_EXHAUSTED, HTTP 429 from the JSON gateway)
until an operator disarms the alarm, even after compaction and
defragmentation; reads and transactions that only delete keep working.

What LightningStor must make of it: a full etcd is ``MetadataFull``,
answered 507 InsufficientStorage (gRPC RESOURCE_EXHAUSTED), which SDKs do
not retry, instead of a 503 they would retry in vain; every acknowledged
object still reads back; and after the maintenance docs/deployment.md
describes (compact, defragment, disarm) writes work again.

Skipped where /usr/bin/etcd is missing, unless LIGHTNINGSTOR_REQUIRE_TOOLS=1.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import pytest_twisted
from botocore.exceptions import ClientError
from twisted.internet import reactor
from twisted.internet.defer import DeferredList
from twisted.logger import ILogObserver, globalLogPublisher
from zope.interface import provider

from lightningstor.errors import InsufficientStorage, MetadataFull, below_core
from lightningstor.interfaces.metadata import Delete, DeleteRange, Put, prefix_end
from lightningstor.interfaces.storage import PluginContext
from lightningstor.metadata.etcd import NO_SPACE_MESSAGE, EtcdMetadataStore, etcdStoreFactory
from tests.etcd_cluster import EtcdCluster, etcd_binary, post
from tests.integration.conftest import make_client
from tests.integration.full import assert_grpc_put_refused, assert_insufficient_storage, fill_until_refused
from tests.integration.server import ServerProcess
from tests.integration.test_etcd_server import config

MiB = 1 << 20
QUOTA = 16 * MiB  # etcd 3.4 enforces no minimum; its default is 2 GiB
VALUE = 512 * 1024  # per write: well under --max-request-bytes (1.5 MiB) after base64
HISTORY = 6  # overwrites of one object before the fill: what compaction frees (3 MiB)
IN_FLIGHT = 8


def small_etcd(directory: Path, *extra: str) -> EtcdCluster:
    etcd_binary()
    return EtcdCluster(directory, extra_args=[f"--quota-backend-bytes={QUOTA}", *extra]).start()


def alarms(endpoint: str) -> list[dict[str, str]]:
    answer = post(endpoint + "/v3/maintenance/alarm", {"action": "GET"})
    return list(answer.get("alarms") or [])  # type: ignore[call-overload]


def maintain(endpoint: str) -> None:
    """What docs/deployment.md tells the operator to do: compact to the
    current revision, defragment, disarm the NOSPACE alarm."""
    status = post(endpoint + "/v3/maintenance/status", {})
    revision = status["header"]["revision"]  # type: ignore[index]
    post(endpoint + "/v3/kv/compaction", {"revision": revision, "physical": True}, timeout=30)
    post(endpoint + "/v3/maintenance/defragment", {}, timeout=30)
    for alarm in alarms(endpoint):
        post(endpoint + "/v3/maintenance/alarm",
             {"action": "DEACTIVATE", "memberID": alarm["memberID"], "alarm": "NOSPACE"})
    assert alarms(endpoint) == []


def raw_put_error(endpoint: str, key: bytes) -> str | None:
    """A put straight to etcd's gateway, past the store: its error, if any."""
    import urllib.error

    try:
        post(endpoint + "/v3/kv/put", {"key": base64.b64encode(key).decode(), "value": "eA=="})
    except urllib.error.HTTPError as e:
        return f"{e.code} {e.read().decode()}"
    return None


# -- the store ---------------------------------------------------------------------


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[EtcdCluster]:
    cluster = small_etcd(tmp_path / "etcd", "--backend-batch-limit=1")
    yield cluster
    cluster.stop()


def make_store(endpoints: list[str]) -> EtcdMetadataStore:
    context = PluginContext(reactor=reactor, io_pool=None, data_dir="/nonexistent")
    options = {"namespace": f"q-{uuid.uuid4().hex[:8]}/"}
    return etcdStoreFactory.create({"chainfire_endpoints": tuple(endpoints), "etcd": options, **options}, context)


async def failure_of(d: Any) -> Any:
    [(ok, value)] = await DeferredList([d], consumeErrors=True)
    assert not ok, f"expected a failure, got {value!r}"
    return value


async def fill(store: EtcdMetadataStore, prefix: bytes) -> tuple[list[bytes], Any]:
    """Write ``VALUE``-byte keys, ``IN_FLIGHT`` at a time, until etcd refuses:
    the keys acknowledged and the (last) refusal.  Every refusal must be
    MetadataFull."""
    written: list[bytes] = []
    full: Any = None
    for first in range(0, 2 * QUOTA // VALUE, IN_FLIGHT):
        keys = [prefix + b"%03d" % i for i in range(first, first + IN_FLIGHT)]
        results = await DeferredList([store.txn([], [Put(key, key[-1:] * VALUE)]) for key in keys],
                                     consumeErrors=True)
        for key, (ok, value) in zip(keys, results, strict=True):
            value = cast(Any, value)
            if ok:
                assert value.succeeded
                written.append(key)
            else:
                assert value.check(MetadataFull), value
                full = value
        if full is not None:
            return written, full
    pytest.fail("etcd never refused a write")


@pytest_twisted.ensureDeferred
async def test_a_full_etcd_is_metadata_full_and_keeps_what_it_holds(etcd: EtcdCluster) -> None:
    """Writes until the quota: those refused fail with MetadataFull (507,
    not retried) naming the quota and the way out; what was acknowledged
    reads back and what was refused is not there; a put is refused, a
    delete-only transaction still commits; the documented maintenance makes
    writes work again.

    Several writes are in flight at once, as under real load: etcd checks
    the quota before proposing a write and again when applying it, and a
    write that passed the first check but crosses the quota by the time it
    is applied is applied *and* answered "database space exceeded"
    (``--backend-batch-limit=1`` makes that likely: every applied write grows
    the file at once).  The store must report it as the success it was.  It
    happens in most fills, not all, so the test fills (and empties) etcd up
    to four times, until the store has logged such a write."""
    [endpoint] = etcd.endpoints
    store = make_store(etcd.endpoints)
    crossed: list[dict[str, Any]] = []

    @provider(ILogObserver)
    def observe(event: dict[str, Any]) -> None:
        if "filled etcd's space quota" in str(event.get("log_format", "")):
            crossed.append(event)

    globalLogPublisher.addObserver(observe)
    try:
        for cycle in range(4):
            written, full = await fill(store, b"c%d/" % cycle)
            assert str(full.value) == NO_SPACE_MESSAGE
            assert "--quota-backend-bytes" in NO_SPACE_MESSAGE and "alarm disarm" in NO_SPACE_MESSAGE
            answer = below_core(full.value)
            assert isinstance(answer, InsufficientStorage) and answer.status == 507
            assert len(written) >= QUOTA // VALUE // 2  # the quota, not something else, was the limit
            assert [a["alarm"] for a in alarms(endpoint)] == ["NOSPACE"]
            # Everything acknowledged reads back, by key and by scan; nothing refused is there.
            for key in written:
                kv = await store.get(key)
                assert kv is not None and kv.value == key[-1:] * VALUE
            assert [kv.key for kv in await store.scan(b"", prefix_end(b""))] == written
            if crossed:
                break
            # Empty etcd (deletes pass under NOSPACE) and let it take writes again.
            assert (await store.txn([], [DeleteRange(b"", prefix_end(b""))])).succeeded
            maintain(endpoint)

        # Any put is refused now, however small: the alarm, not the size, decides.
        small = await failure_of(store.txn([], [Put(b"small", b"s")]))
        assert small.check(MetadataFull)
        assert "database space exceeded" in (raw_put_error(endpoint, b"raw") or "")
        # etcd lets deletes through under NOSPACE: a delete-only txn commits.
        assert (await store.txn([], [Delete(written[0])])).succeeded
        assert await store.get(written[0]) is None
        # ... but deleting frees nothing until an operator steps in.
        assert (await failure_of(store.txn([], [Put(b"small", b"s")]))).check(MetadataFull)

        maintain(endpoint)
        assert (await store.txn([], [Put(b"small", b"s")])).succeeded
        assert (await store.get(b"small")).value == b"s"  # type: ignore[union-attr]
    finally:
        globalLogPublisher.removeObserver(observe)
        await store.close()


# -- the server ----------------------------------------------------------------------


@pytest.fixture
def full_etcd_server(tmp_path: Path) -> Iterator[tuple[ServerProcess, EtcdCluster]]:
    """An API server whose metadata lives on the small etcd.  Objects up to
    1 MiB are stored inline in their metadata record, so PUTs fill etcd
    (chunks would go to the server's local disk)."""
    etcd = small_etcd(tmp_path / "etcd")
    try:
        cfg = config(tmp_path / "server.toml", etcd.endpoints, "quota/",
                     storage="[storage]\ninline_threshold_bytes = 1048576")
        data = tmp_path / "api" / "data"
        data.mkdir(parents=True)
        server = ServerProcess(data, config=cfg).start()
        try:
            yield server, etcd
        finally:
            server.stop()
    finally:
        etcd.stop()


def test_a_full_etcd_answers_507_through_s3_and_grpc(full_etcd_server: tuple[ServerProcess, EtcdCluster]) -> None:
    server, etcd = full_etcd_server
    [endpoint] = etcd.endpoints
    s3: Any = make_client(server.endpoint)
    s3.create_bucket(Bucket="quota")
    # History first, as a real etcd has it: superseded revisions that the
    # documented maintenance (compaction) reclaims.  Without any, the file is
    # all live data and compaction frees nothing: docs/deployment.md's other
    # case (raise the quota), in which a delete may still cross the quota.
    for _ in range(HISTORY):
        s3.put_object(Bucket="quota", Key="history", Body=b"h" * VALUE)
    s3.delete_object(Bucket="quota", Key="history")
    objects = ((f"obj/{i:03d}", bytes([i % 251]) * VALUE) for i in range(2 * QUOTA // VALUE))
    stored, refused = fill_until_refused(s3, "quota", objects)
    assert_insufficient_storage(refused)
    assert len(stored) >= QUOTA // VALUE // 2
    assert [a["alarm"] for a in alarms(endpoint)] == ["NOSPACE"]
    assert any("etcd's space quota" in line for line in server.output)  # the operator's log says why

    # Acknowledged objects read back whole; the refused one does not exist.
    for key, body in stored.items():
        assert s3.get_object(Bucket="quota", Key=key)["Body"].read() == body
    with pytest.raises(ClientError) as missing:
        s3.head_object(Bucket="quota", Key=f"obj/{len(stored):03d}")
    assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    listed = s3.list_objects_v2(Bucket="quota")["Contents"]
    assert [o["Key"] for o in listed] == sorted(stored)

    # Small writes too: any put is refused while the alarm is raised.
    with pytest.raises(ClientError) as small:
        s3.put_object(Bucket="quota", Key="small", Body=b"s")
    assert small.value.response["ResponseMetadata"]["HTTPStatusCode"] == 507

    # A larger object's chunks are written before its commit is refused:
    # etcd's refusal is certain (the write's marker says it was not
    # applied), so they are deleted at once, not left to the orphan
    # collector for a day (each retry of a refused upload left a copy).
    # "At once" is as the 507 is sent, not before it: the deletion runs on
    # the io threads beside the answer, so a loaded box may see the last
    # one's chunk for a moment after its 507.
    chunk_files = server.data_dir / "data" / "chunks"

    def chunks_on_disk() -> int:
        return sum(1 for path in chunk_files.rglob("*") if path.is_file())

    before = chunks_on_disk()
    for attempt in range(3):
        with pytest.raises(ClientError) as large:
            s3.put_object(Bucket="quota", Key=f"large{attempt}", Body=b"L" * (2 * MiB))
        assert large.value.response["ResponseMetadata"]["HTTPStatusCode"] == 507
    deadline = time.monotonic() + 10
    while chunks_on_disk() != before:
        assert time.monotonic() < deadline, f"{chunks_on_disk() - before} chunk files of refused uploads left"
        time.sleep(0.1)

    # The gRPC API answers RESOURCE_EXHAUSTED.
    assert_grpc_put_refused(server.grpc_endpoint, "quota", "grpc", b"g")

    # An S3 delete writes too (the core records the deleted object's chunks
    # or the bucket's state in the same transaction), so under NOSPACE it is
    # refused with the same 507, and the object stays readable.
    first = next(iter(stored))
    with pytest.raises(ClientError) as delete:
        s3.delete_object(Bucket="quota", Key=first)
    assert delete.value.response["ResponseMetadata"]["HTTPStatusCode"] == 507
    assert s3.get_object(Bucket="quota", Key=first)["Body"].read() == stored[first]

    # The documented way out: compact, defragment, disarm.  Then deletes
    # and writes work again.
    maintain(endpoint)
    s3.delete_object(Bucket="quota", Key=first)
    s3.put_object(Bucket="quota", Key="after", Body=b"a")
    assert s3.get_object(Bucket="quota", Key="after")["Body"].read() == b"a"
