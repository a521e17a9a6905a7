"""A finished request is freed by reference counting, not left to the cyclic
garbage collector (whose passes over every request's objects cost about a
tenth of the server's CPU under load; docs/performance.md)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred, succeed

from lightningstor.s3.app import S3Api, S3Options
from lightningstor.s3.body import ObjectBody
from lightningstor.s3.inflight import InflightBudget


@pytest.fixture
def no_cyclic_gc() -> Iterator[None]:
    """Only reference counting frees objects while the test runs."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class _Transport:
    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass


class _Writer:
    """Keeps its progress listener, as the ChunkManager's writer does."""

    should_pause = False
    buffered_bytes = 0
    queued_bytes = 0

    def __init__(self) -> None:
        self.listener: Any = None

    def set_progress_listener(self, listener: Any) -> None:
        self.listener = listener

    def write(self, data: bytes) -> None:
        if self.listener is not None:
            self.listener()

    def when_drained(self) -> Deferred[None]:
        return succeed(None)

    def finish(self) -> Deferred[str]:
        return succeed("stored")

    def abort(self) -> Deferred[None]:
        return succeed(None)


@pytest_twisted.ensureDeferred
async def test_an_upload_body_is_freed_once_finished(no_cyclic_gc: None) -> None:
    """The body sink, its in-flight budget account and the writer point at
    each other while the body streams in; finishing lets go of both links."""
    writer = _Writer()
    body = ObjectBody(_Transport(), lambda: succeed(SimpleNamespace(writer=writer, decoder=None)), InflightBudget())
    body.receive(b"x" * 1000)
    _context, result = await body.finish()
    assert result.write == "stored"
    gone = weakref.ref(body)
    del body, _context, result
    assert gone() is None
    assert writer.listener is None


class _Call:
    """Holds its body sink, as S3Call does."""

    sink: Any = None


def _refusal_of(call: Any) -> Any:
    """The S3 layer's early refusal (S3Api.begin): a callback holding its call."""
    return lambda error: setattr(call, "refused", error)


@pytest_twisted.ensureDeferred
async def test_an_upload_body_lets_go_of_its_early_refusal_once_finished(no_cyclic_gc: None) -> None:
    """The call holds its body sink and the sink holds the S3 layer's early
    refusal, which holds the call: once the body is stored nothing can be
    refused early, and the sink lets go of it, so the request's objects are
    freed by reference counting (about 60 of them a PUT were left to the
    cyclic collector)."""
    writer = _Writer()
    call = _Call()
    body = ObjectBody(
        _Transport(), lambda: succeed(SimpleNamespace(writer=writer, decoder=None)), InflightBudget(),
        _refusal_of(call),
    )
    call.sink = body
    body.receive(b"x" * 1000)
    _context, result = await body.finish()
    assert result.write == "stored"
    assert not hasattr(call, "refused")
    gone = weakref.ref(call)
    del body, call, _context, result
    assert gone() is None


class _Request:
    """What S3Api's finish hooks read from a finished twisted.web request."""

    code = 200
    startedWriting = True
    sentLength = 0
    method = b"GET"
    uri = b"/b/k"

    def __init__(self) -> None:
        self.s3call: Any = None
        self.body_sink: Any = None

    def getClientAddress(self) -> Any:
        return SimpleNamespace(host="127.0.0.1")


def test_a_finished_request_lets_go_of_its_call() -> None:
    """``request.s3call`` and ``call.request`` form a cycle holding the whole
    request; it is cut once the finish hooks ran, even if one of them failed."""
    api = S3Api(core=None, options=S3Options())  # type: ignore[arg-type]
    seen: list[Any] = []

    def failing_hook(summary: Any, call: Any) -> None:
        seen.append(call)
        raise RuntimeError("a hook that fails")

    api.call_hooks.append(failing_hook)
    request = _Request()
    call = SimpleNamespace(
        request=request, op="GetObject", method="GET", request_id="R", started=0.0,
        target=SimpleNamespace(raw_path="/b/k", raw_query="", bucket="b", key="k"), headers={},
    )
    request.s3call, request.body_sink = call, object()
    api._finished(None, request, None)
    assert seen == [call]
    assert request.s3call is None and request.body_sink is None
