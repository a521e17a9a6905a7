"""A GET whose version loses its chunks before it sends a byte looks the
object up again, and again while each version it finds is replaced in turn,
up to ``READS_WHEN_REPLACED`` lookups (s3/handlers/objects.py
``read_again_if_replaced``; the gRPC GetObject).  Under a storm of
overwrites with no free delay, a single second lookup was not always enough:
the integration race tests (tests/integration/test_read_races.py) saw a
second loss answer 500.  These drive the one layer with fakes so the number
of losses is exact."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from twisted.internet.defer import Deferred, fail, succeed

from lightningstor import errors
from lightningstor.core.objects import READS_WHEN_REPLACED
from lightningstor.grpc.objects import ObjectServicer
from lightningstor.s3.handlers.objects import read_again_if_replaced


class _Headers:
    def __init__(self) -> None:
        self.raw: dict[bytes, list[bytes]] = {b"x-first": [b"1"]}

    def snapshot(self) -> dict[bytes, list[bytes]]:
        return {k: list(v) for k, v in self.raw.items()}

    def restore(self, snapshot: dict[bytes, list[bytes]]) -> None:
        self.raw = {k: list(v) for k, v in snapshot.items()}


def _call(method: str = "GET") -> Any:
    request = SimpleNamespace(s3_headers=_Headers(), startedWriting=False)
    return SimpleNamespace(method=method, op="GetObject" if method == "GET" else "HeadObject", request=request, target=SimpleNamespace(resource="/b/k"))


def _losing(call: Any, losses: int, error: Exception | None = None) -> tuple[Any, list[int]]:
    """An attempt that fails ``losses`` times (each leaving a header set,
    as a half-made answer does), then answers "whole"."""
    tries: list[int] = []

    def attempt() -> Deferred[Any]:
        tries.append(len(call.request.s3_headers.raw))
        call.request.s3_headers.raw[b"x-attempt-%d" % len(tries)] = [b"left over"]
        if len(tries) <= losses:
            return fail(error or errors.ChunkNotFound("freed"))
        return succeed("whole")

    return attempt, tries


def _outcome(d: Deferred[Any]) -> Any:
    got: list[Any] = []
    d.addBoth(got.append)
    assert got, "the attempts answer at once here"
    return got[0]


@pytest.mark.parametrize("losses", [1, 2, READS_WHEN_REPLACED - 1])
def test_s3_get_reads_again_while_each_version_found_is_replaced(losses: int) -> None:
    call = _call()
    attempt, tries = _losing(call, losses)
    assert _outcome(read_again_if_replaced(call, attempt)) == "whole"
    assert len(tries) == losses + 1
    # Every attempt started from the first one's headers.
    assert tries == [1] * (losses + 1)


def test_s3_get_gives_up_after_the_bound() -> None:
    call = _call()
    attempt, tries = _losing(call, READS_WHEN_REPLACED + 3)
    outcome = _outcome(read_again_if_replaced(call, attempt))
    assert outcome.check(errors.ChunkNotFound)
    assert len(tries) == READS_WHEN_REPLACED


def test_s3_get_does_not_read_again_for_other_failures_nor_heads() -> None:
    call = _call()
    attempt, tries = _losing(call, 1, errors.InternalError("something else"))
    assert _outcome(read_again_if_replaced(call, attempt)).check(errors.InternalError)
    assert len(tries) == 1
    head = _call("HEAD")
    attempt, tries = _losing(head, 1)
    assert _outcome(read_again_if_replaced(head, attempt)).check(errors.ChunkNotFound)
    assert len(tries) == 1


def test_s3_get_does_not_read_again_once_it_started_writing() -> None:
    call = _call()
    call.request.startedWriting = True
    attempt, tries = _losing(call, 1)
    assert _outcome(read_again_if_replaced(call, attempt)).check(errors.ChunkNotFound)
    assert len(tries) == 1


def _grpc_get(losses: int) -> tuple[list[Any], list[int]]:
    servicer = ObjectServicer.__new__(ObjectServicer)
    servicer.rpc = SimpleNamespace(
        gate=lambda principal: "gate",
        reactor=SimpleNamespace(callFromThread=lambda f, *a, **kw: None),
    )
    tries: list[int] = []

    def open_object(gate: Any, request: Any) -> tuple[str, None, None]:
        tries.append(1)
        if len(tries) <= losses:
            raise errors.ChunkNotFound("freed")
        return "metadata", None, None

    servicer._open_object = open_object  # type: ignore[method-assign]
    raw = ObjectServicer.GetObject.__wrapped__  # type: ignore[attr-defined]
    request = SimpleNamespace(bucket="b", key="k")
    return list(raw(servicer, "principal", request, None)), tries


@pytest.mark.parametrize("losses", [0, 1, READS_WHEN_REPLACED - 1])
def test_grpc_get_reads_again_while_each_version_found_is_replaced(losses: int) -> None:
    messages, tries = _grpc_get(losses)
    assert messages == ["metadata"]
    assert len(tries) == losses + 1


def test_grpc_get_gives_up_after_the_bound() -> None:
    with pytest.raises(errors.ChunkNotFound):
        _grpc_get(READS_WHEN_REPLACED)
