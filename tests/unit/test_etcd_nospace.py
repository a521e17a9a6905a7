"""The etcd store when etcd answers NOSPACE ("mvcc: database space
exceeded"), against a scripted gateway: the write that crosses the quota
is applied by etcd although it answers with the error (its marker holds the
write's id: a success), a write refused while the alarm is raised is
MetadataFull (507), and one whose earlier attempt's answer was lost is
OutcomeUnknown.  Real etcd: tests/integration/test_etcd_quota.py.
"""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList, succeed

from lightningstor.errors import InsufficientStorage, MetadataFull, below_core
from lightningstor.interfaces.metadata import Put
from lightningstor.metadata.etcd import NO_SPACE_MESSAGE, EtcdMetadataStore
from lightningstor.metadata.etcd_gateway import EtcdError, OutcomeUnknown


class NoSpaceGateway:
    """Answers every txn with NOSPACE, after applying its marker put when
    ``applied`` (what etcd does with the write that crosses the quota)."""

    def __init__(self, *, applied: bool, after_unknown: bool = False) -> None:
        self.applied = applied
        self.after_unknown = after_unknown
        self.markers: dict[str, str] = {}
        self.timeout = 10.0

    async def call(self, path: str, body: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        if path == "/v3/lease/grant":
            return {"ID": "7", "TTL": "60"}
        if path == "/v3/kv/range":
            key = body["key"]
            if key in self.markers:
                return {"kvs": [{"key": key, "value": self.markers[key], "mod_revision": "42"}]}
            return {}
        return {}

    async def call_traced(self, path: str, body: dict[str, Any], **kwargs: Any) -> tuple[dict[str, Any], bool]:
        if self.applied:
            marker = body["success"][-1]["request_put"]
            self.markers[marker["key"]] = marker["value"]
        error = EtcdError(8, "etcdserver: mvcc: database space exceeded", 429)
        error.after_unknown = self.after_unknown
        raise error

    def close(self) -> Deferred[None]:
        return succeed(None)


async def outcome(gateway: NoSpaceGateway) -> tuple[bool, Any]:
    store = EtcdMetadataStore(gateway, reactor)  # type: ignore[arg-type]
    try:
        [(ok, value)] = await DeferredList([store.txn([], [Put(b"k", b"v")])], consumeErrors=True)
        return ok, value
    finally:
        await store.close()


@pytest_twisted.ensureDeferred
async def test_the_write_that_crosses_the_quota_was_applied() -> None:
    ok, result = await outcome(NoSpaceGateway(applied=True))
    assert ok and result.succeeded and result.revision == 42


@pytest_twisted.ensureDeferred
async def test_a_write_refused_under_the_alarm_is_metadata_full() -> None:
    ok, failure = await outcome(NoSpaceGateway(applied=False))
    assert not ok and failure.check(MetadataFull), failure
    assert str(failure.value) == NO_SPACE_MESSAGE
    answer = below_core(failure.value)
    assert isinstance(answer, InsufficientStorage) and answer.status == 507


@pytest.mark.parametrize("applied", [False, True])
@pytest_twisted.ensureDeferred
async def test_after_a_lost_answer_the_outcome_is_unknown_unless_the_marker_says(applied: bool) -> None:
    ok, value = await outcome(NoSpaceGateway(applied=applied, after_unknown=True))
    if applied:
        assert ok and value.succeeded
    else:
        assert not ok and value.check(OutcomeUnknown) and not value.check(MetadataFull), value
