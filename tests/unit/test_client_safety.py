"""Client-side rules with no server involved: which keys may become local
file names (on Windows too), how a bare RESOURCE_EXHAUSTED is labelled, and
which failures the retry helper repeats."""

from __future__ import annotations

import io
import ntpath
from typing import Any

import grpc
import pytest

from lightningstor.client import cli, errors, localpaths, retry


@pytest.mark.parametrize(
    "key",
    [
        "x\\..\\..\\evil.txt",  # a separator on Windows
        "C:/Users/Public/evil.txt",  # a drive letter
        "C:evil.txt",  # drive-relative
        "\\\\server\\share\\evil.txt",  # UNC
        "sub/CON",  # a device name
        "sub/nul.txt",
        "sub/trailing.",
        "a/../b",
        "a/./b",
        "/abs",
        "a//b",
        "dir/",
    ],
)
def test_unsafe_keys_on_windows(key: str) -> None:
    assert localpaths.safe_relative(key, "", windows=True) is None


@pytest.mark.parametrize("key", ["a/../b", "a/./b", "/abs", "..", ".", "a//b", "dir/", ""])
def test_unsafe_keys_on_posix(key: str) -> None:
    assert localpaths.safe_relative(key, "", windows=False) is None


def test_safe_keys_keep_their_components() -> None:
    assert localpaths.safe_relative("p/a/b.txt", "p/", windows=True) == ntpath.join("a", "b.txt")
    assert localpaths.safe_relative("p/a\\b:c", "p/", windows=False) == "a\\b:c"  # plain names on POSIX
    assert localpaths.safe_relative("p/console.txt", "p/", windows=True) == "console.txt"


class _Error(grpc.RpcError):
    def __init__(self, status: grpc.StatusCode, details: str) -> None:
        self._status, self._details = status, details

    def code(self) -> grpc.StatusCode:
        return self._status

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> Any:
        return ()


def test_bare_resource_exhausted_is_slowdown_unless_the_message_was_too_large() -> None:
    overload = errors.from_rpc_error(_Error(grpc.StatusCode.RESOURCE_EXHAUSTED, "Concurrent RPC limit exceeded!"))
    assert overload.code == "SlowDown" and isinstance(overload, errors.CODE_CLASSES["SlowDown"])
    assert overload.status == grpc.StatusCode.RESOURCE_EXHAUSTED
    big = errors.from_rpc_error(
        _Error(grpc.StatusCode.RESOURCE_EXHAUSTED, "Received message larger than max (9000000 vs. 8388608)")
    )
    assert big.code == "EntityTooLarge" and isinstance(big, errors.CODE_CLASSES["EntityTooLarge"])
    assert big.status == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_cli_exit_status_for_a_bare_overload(monkeypatch: pytest.MonkeyPatch) -> None:
    """The server's whole-server refusal exits 6 (retry later), not 1."""

    def refuse(*_: object) -> Any:
        raise errors.from_rpc_error(_Error(grpc.StatusCode.RESOURCE_EXHAUSTED, "Concurrent RPC limit exceeded!"))

    monkeypatch.setitem(cli.COMMANDS, "ls", refuse)
    monkeypatch.setenv("LIGHTNINGSTOR_TOKEN", "lst1.x")
    err = io.StringIO()
    assert cli.main(["ls"], out=io.StringIO(), err=err) == cli.EXIT_UNAVAILABLE
    assert "SlowDown" in err.getvalue()


def _failing(codes: list[str]) -> tuple[list[str], Any]:
    calls: list[str] = []

    def fn() -> str:
        calls.append("call")
        if len(calls) <= len(codes):
            raise errors.LightningStorError("no", code=codes[len(calls) - 1])
        return "ok"

    return calls, fn


def test_refused_calls_are_retried_whatever_the_call() -> None:
    calls, fn = _failing(["SlowDown", "SlowDown"])
    assert retry.call(fn, retry.RetryPolicy(), idempotent=False, sleep=lambda _: None) == "ok"
    assert len(calls) == 3


def test_transient_failures_are_retried_only_for_idempotent_calls() -> None:
    calls, fn = _failing(["ServiceUnavailable"])
    with pytest.raises(errors.LightningStorError):
        retry.call(fn, retry.RetryPolicy(), idempotent=False, sleep=lambda _: None)
    calls, fn = _failing(["ServiceUnavailable", "RequestTimeout"])
    assert retry.call(fn, retry.RetryPolicy(), idempotent=True, sleep=lambda _: None) == "ok"
    calls, fn = _failing(["NoSuchKey"])
    with pytest.raises(errors.LightningStorError):
        retry.call(fn, retry.RetryPolicy(), idempotent=True, sleep=lambda _: None)
    assert len(calls) == 1


def test_retries_are_bounded_and_jittered() -> None:
    calls, fn = _failing(["ServiceUnavailable"] * 10)
    waits: list[float] = []
    policy = retry.RetryPolicy(attempts=4, base=0.5, cap=1.0)
    with pytest.raises(errors.LightningStorError):
        retry.call(fn, policy, idempotent=True, sleep=waits.append)
    assert len(calls) == 4 and len(waits) == 3
    assert all(0 <= w <= 1.0 for w in waits)


def test_refused_calls_are_retried_for_refused_seconds_not_only_attempts() -> None:
    """A principal over its call cap waits for its other calls to end: a
    refusal is tried again until ``refused_seconds`` have passed (it gave
    up after ``attempts`` tries, about 3 s, and 9 of 20 concurrent
    downloads through one client failed)."""
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    policy = retry.RetryPolicy(attempts=3, base=0.5, cap=1.0, refused_seconds=30.0)
    calls, fn = _failing(["SlowDown"] * 20)
    assert retry.call(fn, policy, idempotent=False, sleep=sleep, clock=lambda: now[0]) == "ok"
    assert len(calls) == 21
    calls, fn = _failing(["SlowDown"] * 1000)
    began = now[0]
    with pytest.raises(errors.LightningStorError):
        retry.call(fn, policy, idempotent=False, sleep=sleep, clock=lambda: now[0])
    assert 30 <= now[0] - began <= 31 and len(calls) > 30  # the budget, and at most one wait (cap) past it
    calls, fn = _failing(["SlowDown"] * 5)
    with pytest.raises(errors.LightningStorError):
        retry.call(fn, retry.NO_RETRY, idempotent=False, sleep=sleep, clock=lambda: now[0])
    assert len(calls) == 1


def test_certificates_for_a_plaintext_endpoint_are_refused(tmp_path: Any) -> None:
    """``--ca-file`` (or a client certificate) with a ``grpc://`` endpoint is
    a usage error (exit 2): it was set aside and the token went in clear."""
    from lightningstor.client import LightningStorClient

    with pytest.raises(ValueError, match="grpcs://"):
        LightningStorClient.connect("grpc://127.0.0.1:1", token="t", root_certificates=b"pem")
    ca = tmp_path / "ca.pem"
    ca.write_bytes(b"not really a certificate")
    err = io.StringIO()
    status = cli.main(
        ["--endpoint", "grpc://127.0.0.1:1", "--ca-file", str(ca), "--access-key", "a", "--secret-key", "b", "ls"],
        err=err,
    )
    assert status == cli.EXIT_USAGE and "grpcs://" in err.getvalue()
