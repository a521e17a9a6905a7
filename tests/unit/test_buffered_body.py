"""Buffered request bodies (XML documents) in the in-flight budget.

:class:`BufferedBody` counts the bytes it keeps in the same
:class:`InflightBudget` as upload bodies, pauses its transport while the
budget is full, gives every byte back however its request ends, and keeps
nothing once its request is known to be refused (:meth:`BufferedBody.discard`).
"""

from __future__ import annotations

import gc
import weakref
from types import SimpleNamespace
from typing import Any

import pytest

from lightningstor import errors
from lightningstor.s3.app import S3Api, S3Options
from lightningstor.s3.body import BufferedBody
from lightningstor.s3.inflight import InflightBudget
from tests.unit.test_inflight_limit import FakeTransport as Transport

KiB = 1 << 10
MiB = 1 << 20


def too_large() -> errors.S3Error:
    return errors.S3Error(code="MaxMessageLengthExceeded")


def body(budget: InflightBudget, limit: int = 8 * MiB) -> tuple[BufferedBody, Transport]:
    transport = Transport()
    return BufferedBody(limit, too_large, transport=transport, budget=budget), transport


def test_kept_bytes_count_until_released() -> None:
    """Every kept byte is in the budget from its arrival until the request
    ends (release), past the end of the body (the handler still holds it)."""
    budget = InflightBudget(4 * MiB)
    sink, _ = body(budget)
    assert budget.accounts == 0  # no byte yet: no account (most requests have no body)
    sink.receive(b"a" * 100 * KiB)
    sink.receive(b"b" * 50 * KiB)
    assert (budget.total, budget.accounts) == (150 * KiB, 1)
    sink.body_ended()
    assert budget.total == 150 * KiB  # still held while the handler runs
    assert sink.content() == b"a" * 100 * KiB + b"b" * 50 * KiB
    sink.release()
    sink.release()  # idempotent
    assert (budget.total, budget.accounts) == (0, 0)


def test_a_body_without_bytes_never_opens_an_account() -> None:
    """A request without a body (nearly every one) costs the budget nothing."""
    budget = InflightBudget(4 * MiB)
    sink, _ = body(budget)
    sink.body_ended()
    assert sink.content() == b""
    sink.release()
    assert (budget.total, budget.accounts, budget.peak) == (0, 0, 0)


def test_a_full_budget_pauses_reading_and_a_finished_request_resumes_it() -> None:
    """While the budget is full a body that receives more has its transport
    paused; it resumes when the body allowed to read on ends, and every byte
    is back once both requests end."""
    budget = InflightBudget(1 * MiB)
    first, first_transport = body(budget)
    first.receive(b"x" * MiB)  # over the limit, nothing drains: it reads on
    assert not first_transport.paused
    second, second_transport = body(budget)
    second.receive(b"y" * 64 * KiB)
    assert second_transport.paused  # the memory would only grow
    assert budget.total == MiB + 64 * KiB
    first.body_ended()  # the turn passes to the waiter...
    assert not second_transport.paused
    second.receive(b"y" * 64 * KiB)
    assert not second_transport.paused
    first.release()  # ...and the first request's end frees its bytes
    second.body_ended()
    second.release()
    assert (budget.total, budget.accounts, budget.waiting) == (0, 0, 0)


def test_a_waiting_body_whose_client_goes_away_gives_everything_back() -> None:
    """A disconnect returns the body's bytes, takes it off the waiting list
    and undoes its pause (balanced pause/resume calls)."""
    budget = InflightBudget(1 * MiB)
    first, _ = body(budget)
    first.receive(b"x" * MiB)
    second, second_transport = body(budget)
    second.receive(b"y" * 64 * KiB)
    assert second_transport.paused and budget.waiting == 1
    second.connection_lost()
    assert not second_transport.paused  # balanced: the pause is ours to undo
    assert (budget.total, budget.waiting, budget.accounts) == (MiB, 0, 1)
    first.connection_lost()
    assert (budget.total, budget.accounts) == (0, 0)


def test_discard_keeps_nothing_more_and_reports_its_error() -> None:
    """A discarded body gives its bytes back, keeps none of the rest (never
    paused for it either) and reports the first reason it was discarded."""
    budget = InflightBudget(4 * MiB)
    sink, transport = body(budget)
    sink.receive(b"x" * 300 * KiB)
    denied = errors.AccessDenied(resource="/b")
    sink.discard(denied)
    assert (budget.total, budget.accounts) == (0, 0)
    for _ in range(100):  # the rest of the body is read and dropped
        sink.receive(b"x" * 64 * KiB)
    assert sink.size == 300 * KiB + 100 * 64 * KiB
    assert (budget.total, budget.accounts, transport.pauses) == (0, 0, 0)
    with pytest.raises(errors.AccessDenied):
        sink.content()
    sink.discard(errors.InternalError())  # the first reason stays
    with pytest.raises(errors.AccessDenied):
        sink.content()


def test_a_body_over_its_limit_gives_its_bytes_back() -> None:
    """Over its limit, a body keeps nothing and answers MaxMessageLengthExceeded."""
    budget = InflightBudget(4 * MiB)
    sink, _ = body(budget, limit=100 * KiB)
    sink.receive(b"x" * 64 * KiB)
    assert budget.total == 64 * KiB
    sink.receive(b"x" * 64 * KiB)
    assert (budget.total, budget.accounts) == (0, 0)
    with pytest.raises(errors.S3Error) as info:
        sink.content()
    assert info.value.code == "MaxMessageLengthExceeded"


def test_a_discarded_paused_body_is_resumed() -> None:
    """A body refused while the budget holds it back reads on (and drops),
    so its error is answered instead of the connection waiting forever."""
    budget = InflightBudget(1 * MiB)
    first, _ = body(budget)
    first.receive(b"x" * MiB)
    second, second_transport = body(budget)
    second.receive(b"y" * 64 * KiB)
    assert second_transport.paused
    second.discard(errors.InvalidAccessKeyId())
    assert not second_transport.paused
    assert budget.total == MiB
    first.release()
    assert budget.total == 0


def test_a_released_body_is_freed_by_reference_counting() -> None:
    """The account holds the sink's bound methods; release cuts the cycle."""
    budget = InflightBudget(4 * MiB)
    sink, _ = body(budget)
    sink.receive(b"x" * KiB)
    sink.release()
    gone = weakref.ref(sink)
    gc.disable()
    try:
        del sink
        assert gone() is None
    finally:
        gc.enable()


class _Request:
    """What S3Api's finish hooks read from a finished twisted.web request."""

    code = 200
    startedWriting = True
    sentLength = 0
    method = b"POST"
    uri = b"/b?delete"

    def __init__(self) -> None:
        self.s3call: Any = None
        self.body_sink: Any = None

    def getClientAddress(self) -> Any:
        return SimpleNamespace(host="127.0.0.1")


def test_the_end_of_a_request_gives_its_buffered_bytes_back() -> None:
    """``S3Api._finished`` (the request was answered, or its connection
    lost) releases the request's buffered body."""
    api = S3Api(core=None, options=S3Options(max_inflight_upload_bytes=4 * MiB))  # type: ignore[arg-type]
    request = _Request()
    sink = BufferedBody(8 * MiB, too_large, transport=Transport(), budget=api.upload_budget)
    sink.receive(b"<Delete>" + b" " * 500 * KiB)
    sink.body_ended()
    request.body_sink = sink
    assert api.upload_budget.total > 500 * KiB
    api._finished(None, request, None)
    assert (api.upload_budget.total, api.upload_budget.accounts) == (0, 0)


def test_a_signed_payload_hash_must_hash_the_body() -> None:
    """Once the signature is verified (expect_payload), a signed
    x-amz-content-sha256 is checked against the body on the first read:
    another body is XAmzContentSHA256Mismatch, on that read and every later
    one; UNSIGNED-PAYLOAD checks nothing."""
    import hashlib

    def verified(payload: str, sha: str | None) -> tuple[Any, Any]:
        return None, SimpleNamespace(payload=payload, payload_sha256=sha)

    signed_for = hashlib.sha256(b"<a/>").hexdigest().upper()  # the hex is compared case-insensitively
    good = BufferedBody(8 * KiB, too_large)
    good.receive(b"<a/>")
    good.expect_payload(verified("SIGNED", signed_for))
    assert good.content() == b"<a/>" and good.content() == b"<a/>"
    swapped = BufferedBody(8 * KiB, too_large)
    swapped.receive(b"<b/>")
    swapped.expect_payload(verified("SIGNED", signed_for))
    for _ in range(2):
        with pytest.raises(errors.XAmzContentSHA256Mismatch):
            swapped.content()
    unsigned = BufferedBody(8 * KiB, too_large)
    unsigned.receive(b"<b/>")
    unsigned.expect_payload(verified("UNSIGNED", None))
    assert unsigned.content() == b"<b/>"
