"""The etcd store's logic that needs no etcd: operation normalisation, error
classification, failover of the gateway client (against small in-process
HTTP servers on loopback), and the factory's options.

The store against real etcd processes (the shared contract, failover on a
cluster) is tests/integration/test_etcd_store.py.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import pytest_twisted
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList
from twisted.plugin import IPlugin
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site
from zope.interface.verify import verifyObject

from lightningstor import plugins
from lightningstor.errors import ConfigError, MetadataUnavailable
from lightningstor.interfaces.metadata import Delete, DeleteRange, IMetadataStoreFactory, Operation, Put
from lightningstor.interfaces.storage import PluginContext
from lightningstor.metadata.etcd import etcdStoreFactory, normalize
from lightningstor.metadata.etcd_gateway import (
    Attempt,
    CallFailed,
    EtcdError,
    GatewayClient,
    OutcomeUnknown,
    classify,
)
from tests.etcd_cluster import free_ports

DETERMINISTIC = settings(derandomize=True, max_examples=300, deadline=None, database=None)

# -- normalisation ---------------------------------------------------------------

KEYS = [b"", b"a", b"a\x00", b"ab", b"b", b"b/c", b"\xff"]
keys = st.sampled_from(KEYS)
operations = st.lists(
    st.one_of(
        st.builds(Put, keys, st.sampled_from([b"1", b"2", b""])),
        st.builds(Delete, keys),
        st.builds(DeleteRange, keys, st.sampled_from([*KEYS, b"\x00"])),
    ),
    max_size=8,
)


def in_order(state: dict[bytes, bytes], ops: list[Operation]) -> dict[bytes, bytes]:
    """The interface's semantics: apply the operations one after another."""
    out = dict(state)
    for op in ops:
        if isinstance(op, Put):
            out[op.key] = op.value
        elif isinstance(op, Delete):
            out.pop(op.key, None)
        else:
            for k in list(out):
                if k >= op.start and (op.end == b"\x00" or k < op.end):
                    del out[k]
    return out


def as_etcd(state: dict[bytes, bytes], ops: list[Operation]) -> dict[bytes, bytes]:
    """What etcd does with a normalised txn, checking etcd's rule on the way:
    no key is put twice or put inside a deleted key or range."""
    n = normalize(ops)
    deleted = [(k, k + b"\x00") for k in n.deletes] + list(n.ranges)
    for key in n.puts:
        assert not any(s <= key and (e is None or key < e) for s, e in deleted), (key, n)
    out = {k: v for k, v in state.items() if not any(s <= k and (e is None or k < e) for s, e in deleted)}
    out.update(n.puts)
    return out


@DETERMINISTIC
@given(st.dictionaries(keys, st.just(b"old")), operations)
def test_normalized_operations_are_equivalent(state: dict[bytes, bytes], ops: list[Operation]) -> None:
    """Normalised operations name no key twice and leave every state exactly
    as applying the originals in order does."""
    assert as_etcd(state, ops) == in_order(state, ops)


def test_normalize_examples() -> None:
    """The rewrites themselves: last put wins, a delete cancels a put, a
    range is split around a key put after it, empty ranges vanish, touching
    ranges merge."""
    n = normalize([Put(b"k", b"1"), Put(b"k", b"2")])
    assert n.puts == {b"k": b"2"} and not n.deletes and not n.ranges
    n = normalize([Put(b"k", b"1"), Delete(b"k")])
    assert n.puts == {} and n.deletes == [b"k"]
    n = normalize([DeleteRange(b"a", b"z"), Put(b"m", b"v")])
    assert n.ranges == [(b"a", b"m"), (b"m\x00", b"z")] and n.puts == {b"m": b"v"}
    n = normalize([DeleteRange(b"a", b"\x00"), Put(b"a", b"v")])
    assert n.ranges == [(b"a\x00", None)]
    n = normalize([DeleteRange(b"b", b"a"), DeleteRange(b"a", b"c"), DeleteRange(b"c", b"d")])
    assert n.ranges == [(b"a", b"d")]
    assert not normalize([]).writes


def test_normalize_rejects_text() -> None:
    """str keys are a TypeError, as in every store."""
    with pytest.raises(TypeError):
        normalize([Put("k", b"v")])  # type: ignore[arg-type]


# -- error classification --------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "message", "status", "kind"),
    [
        (14, "etcdserver: no leader", 503, Attempt.NOT_APPLIED),
        (8, "etcdserver: too many requests", 429, Attempt.NOT_APPLIED),
        (14, "etcdserver: request timed out, possibly due to previous leader failure", 503, Attempt.UNKNOWN),
        (14, "etcdserver: request timed out", 503, Attempt.UNKNOWN),
        (2, "etcdserver: server stopped", 500, Attempt.UNKNOWN),
        (3, "etcdserver: request is too large", 400, Attempt.PERMANENT),
        (3, "etcdserver: too many operations in txn request", 400, Attempt.PERMANENT),
        (8, "grpc: received message larger than max (3072010 vs. 2097152)", 429, Attempt.PERMANENT),
        (8, "etcdserver: mvcc: database space exceeded", 429, Attempt.PERMANENT),
        (5, "etcdserver: requested lease not found", 404, Attempt.PERMANENT),
        (0, "404 page not found", 404, Attempt.PERMANENT),
    ],
)
def test_etcd_errors_are_classified(code: int, message: str, status: int, kind: Attempt) -> None:
    """Refusals before proposal may go to another member, lost outcomes are
    unknown, and what can never succeed is permanent."""
    assert classify(EtcdError(code, message, status)) is kind


def test_transport_errors_are_classified() -> None:
    """A refused connection never reached etcd; a lost answer is unknown."""
    from twisted.internet.error import ConnectionRefusedError
    from twisted.web.client import ResponseNeverReceived

    assert classify(ConnectionRefusedError()) is Attempt.NOT_APPLIED
    assert classify(ResponseNeverReceived([])) is Attempt.UNKNOWN


# -- the gateway client against fake members -------------------------------------------------


class FakeMember(Resource):
    """Answers every POST with the next scripted (status, body) pair, or with
    ``default``; records the paths and bodies it received."""

    isLeaf = True

    def __init__(self, *script: tuple[int, dict[str, Any]], default: tuple[int, dict[str, Any]] | None = None) -> None:
        super().__init__()
        self.script = list(script)
        self.default = default or (200, {"header": {"revision": "1"}})
        self.seen: list[tuple[str, dict[str, Any]]] = []
        self.hang = False

    def render_POST(self, request: Any) -> Any:
        self.seen.append((request.path.decode(), json.loads(request.content.read())))
        if self.hang:
            return NOT_DONE_YET
        status, body = self.script.pop(0) if self.script else self.default
        request.setResponseCode(status)
        return json.dumps(body).encode()


def serve(member: FakeMember, cleanup: list[Any]) -> str:
    port = reactor.listenTCP(0, Site(member), interface="127.0.0.1")  # type: ignore[attr-defined]
    cleanup.append(port)
    return f"http://127.0.0.1:{port.getHost().port}"


@pytest.fixture
def listening() -> Iterator[list[Any]]:
    ports: list[Any] = []
    yield ports
    for port in ports:
        pytest_twisted.blockon(port.stopListening())


def dead_url() -> str:
    return f"http://127.0.0.1:{free_ports(1)[0]}"


async def failure_of(d: Deferred[Any]) -> Any:
    [(ok, value)] = await DeferredList([d], consumeErrors=True)
    assert not ok, f"expected a failure, got {value!r}"
    return value


def client(endpoints: list[str], **kwargs: Any) -> GatewayClient:
    kwargs.setdefault("timeout", 2.0)
    kwargs.setdefault("request_timeout", 0.5)
    return GatewayClient(reactor, endpoints, spread=False, backoff=(0.01, 0.05), **kwargs)


@pytest_twisted.ensureDeferred
async def test_fails_over_past_a_dead_member_and_stays(listening: list[Any]) -> None:
    """A refused connection moves the call to the next member; later calls
    start with the member that answered."""
    live = FakeMember()
    c = client([dead_url(), serve(live, listening)])
    try:
        assert (await c.call("/v3/kv/range", {"key": "aw=="}))["header"]["revision"] == "1"
        assert c.failed_attempts == 1
        await c.call("/v3/kv/range", {"key": "aw=="})
        assert c.failed_attempts == 1 and len(live.seen) == 2
    finally:
        await c.close()


@pytest_twisted.ensureDeferred
async def test_no_leader_is_retried_elsewhere_even_for_writes(listening: list[Any]) -> None:
    """'no leader' is refused before proposal, so even a non-repeatable write
    goes on to the next member."""
    lost = FakeMember(default=(503, {"error": "etcdserver: no leader", "message": "etcdserver: no leader", "code": 14}))
    good = FakeMember()
    c = client([serve(lost, listening), serve(good, listening)])
    try:
        await c.call("/v3/kv/txn", {}, repeatable=False)
        assert len(lost.seen) == 1 and len(good.seen) == 1
    finally:
        await c.close()


@pytest_twisted.ensureDeferred
async def test_unknown_outcome_ends_a_non_repeatable_write(listening: list[Any]) -> None:
    """A timed-out proposal may have been applied: a non-repeatable call
    stops with OutcomeUnknown (a MetadataUnavailable); a repeatable one
    goes on to the next member."""
    body = {"error": "etcdserver: request timed out", "message": "etcdserver: request timed out", "code": 14}
    slow = FakeMember(default=(503, body))
    good = FakeMember()
    c = client([serve(slow, listening), serve(good, listening)])
    try:
        failure = await failure_of(Deferred.fromCoroutine(c.call("/v3/kv/txn", {}, repeatable=False)))
        assert failure.check(OutcomeUnknown) and failure.check(MetadataUnavailable)
        assert len(good.seen) == 0
        answer, unknown = await c.call_traced("/v3/kv/txn", {})
        assert unknown and len(good.seen) == 1
    finally:
        await c.close()


@pytest_twisted.ensureDeferred
async def test_permanent_errors_are_not_retried(listening: list[Any]) -> None:
    """A request over etcd's limits is refused once, not sent round the cluster."""
    body = {"error": "etcdserver: request is too large", "message": "etcdserver: request is too large", "code": 3}
    a, b = FakeMember(default=(400, body)), FakeMember()
    c = client([serve(a, listening), serve(b, listening)])
    try:
        failure = await failure_of(Deferred.fromCoroutine(c.call("/v3/kv/txn", {})))
        assert failure.check(EtcdError) and failure.value.too_large
        assert len(a.seen) == 1 and len(b.seen) == 0
    finally:
        await c.close()


@pytest_twisted.ensureDeferred
async def test_hung_members_fail_within_the_deadline(listening: list[Any]) -> None:
    """Members that never answer are abandoned after request_timeout each,
    and the call fails with CallFailed (MetadataUnavailable) by its deadline."""
    a, b = FakeMember(), FakeMember()
    a.hang = b.hang = True
    c = client([serve(a, listening), serve(b, listening)], timeout=0.6, request_timeout=0.2)
    started = time.monotonic()
    try:
        failure = await failure_of(Deferred.fromCoroutine(c.call("/v3/kv/range", {})))
        assert failure.check(CallFailed) and failure.value.unknown_seen
        assert "timed out" in str(failure.value) or "no answer" in str(failure.value)
        assert time.monotonic() - started < 1.5
        assert len(a.seen) >= 2 and len(b.seen) >= 1  # it went round more than once
    finally:
        await c.close()


# -- the factory ---------------------------------------------------------------------------------


def context() -> PluginContext:
    return PluginContext(reactor=reactor, io_pool=None, data_dir="/nonexistent")


def test_factory_is_a_plugin_found_by_both_names() -> None:
    """The etcd factory is an IPlugin named 'etcd', found also as 'chainfire'."""
    assert verifyObject(IMetadataStoreFactory, etcdStoreFactory)
    assert IPlugin.providedBy(etcdStoreFactory)
    assert plugins.find_metadata_factory("etcd") is plugins.find_metadata_factory("chainfire")
    assert plugins.find_metadata_factory("etcd").name == "etcd"


@pytest_twisted.ensureDeferred
async def test_factory_endpoints_and_namespace() -> None:
    """[metadata.etcd] endpoints win over chainfire_endpoints; the namespace
    defaults to 'lightningstor/'."""
    store = etcdStoreFactory.create(
        {"chainfire_endpoints": ("http://a:2379",), "endpoints": ("http://b:2379", "https://c:2379/")}, context()
    )
    try:
        assert store._client.endpoints == ["http://b:2379", "https://c:2379"]
        assert store.namespace == b"lightningstor/"
    finally:
        await store.close()
    store = etcdStoreFactory.create({"chainfire_endpoints": ("http://a:2379",), "namespace": "x/"}, context())
    try:
        assert store._client.endpoints == ["http://a:2379"] and store.namespace == b"x/"
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "needs at least one endpoint"),
        ({"endpoints": ("etcd-1:2379",)}, "is not an http(s)://host:port URL"),
        ({"endpoints": ("http://a:2379/v3",)}, "is not an http(s)://host:port URL"),
        ({"endpoints": ("http://a:2379",), "etcd": {"endpionts": 1}}, "unknown option(s) endpionts"),
        ({"endpoints": ("http://a:2379",), "timeout": "soon"}, "metadata.etcd.timeout"),
        ({"endpoints": ("http://a:2379",), "lease_ttl": 1}, "lease_ttl must be at least 5"),
        ({"endpoints": ("http://a:2379",), "namespace": ""}, "namespace must not be empty"),
        ({"endpoints": ("https://a:2379",), "ca_file": "/nonexistent/ca.pem"}, "metadata.etcd.ca_file"),
    ],
)
def test_factory_rejects_bad_options(options: dict[str, Any], message: str) -> None:
    """Bad options are ConfigErrors that name the key."""
    with pytest.raises(ConfigError) as info:
        etcdStoreFactory.create(options, context())
    assert message in str(info.value)


class _ScriptedClient:
    """call_traced answers, in order, as (answer, unknown_seen)."""

    def __init__(self, answers: list[tuple[dict[str, Any], bool]]) -> None:
        self.answers = list(answers)

    async def call_traced(self, path: str, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        return self.answers.pop(0)


@pytest_twisted.ensureDeferred
async def test_a_marker_gone_after_an_unanswered_attempt_is_an_unknown_outcome() -> None:
    """An attempt applied without an answer, then the marker gone (this
    server's lease expired in between): the write may have landed, so the
    answer is OutcomeUnknown, never "lost the race" (which would make the
    caller commit the same record again, two versions sharing chunks)."""
    from types import SimpleNamespace

    from lightningstor.metadata import etcd as etcd_module
    from lightningstor.metadata.etcd_gateway import OutcomeUnknown

    gone = {"succeeded": False, "header": {"revision": "9"}, "responses": [{"response_range": {"kvs": []}}]}
    store = object.__new__(etcd_module.EtcdMetadataStore)
    store._client = _ScriptedClient([(gone, True), (gone, False), (gone, False)])  # type: ignore[attr-defined]
    slot = etcd_module._Slot(b"marker", revision=7)
    with pytest.raises(OutcomeUnknown):
        await store._marked_attempts(SimpleNamespace(id=1), slot, b"txn", [], [])  # type: ignore[arg-type]
