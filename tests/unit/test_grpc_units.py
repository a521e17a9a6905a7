"""The gRPC layer's pure parts: the error table, bearer tokens, the generated
code, and the client's helpers (no server needed)."""

from __future__ import annotations

import io
import re
from pathlib import Path

import grpc
import pytest

from lightningstor import errors
from lightningstor.client import errors as client_errors
from lightningstor.client.cli import Remote, _size, parse_remote
from lightningstor.client.client import _pieces, parse_target
from lightningstor.client.localpaths import safe_relative
from lightningstor.client.progress import ProgressBar, human
from lightningstor.client.transfer import MAX_PARTS, MIN_PART_SIZE, plan_parts
from lightningstor.grpc import token
from lightningstor.grpc.errors import (
    CODE_KEY,
    DETAIL_KEY,
    GRPC_STATUS,
    as_s3_error,
    status_for,
    trailing_metadata,
)

ROOT = Path(__file__).resolve().parents[2]
MiB = 1 << 20


# -- the error table --------------------------------------------------------------------


def test_every_s3_code_has_a_grpc_status_and_a_row_in_the_docs() -> None:
    """GRPC_STATUS covers exactly the shared error table, and docs/grpc.md's table
    shows each code with the status the server really sends."""
    assert set(GRPC_STATUS) == set(errors.ERROR_TABLE)
    doc = (ROOT / "docs" / "grpc.md").read_text()
    rows = dict(re.findall(r"^\| `(\w+)` \| \d+ \| `(\w+)` \|", doc, re.MULTILINE))
    assert rows == {code: status.name for code, status in GRPC_STATUS.items()}


def test_statuses_of_the_errors_users_meet_most() -> None:
    """The mapping's key decisions (see lightningstor.grpc.errors)."""
    assert status_for("NoSuchKey") == grpc.StatusCode.NOT_FOUND
    assert status_for("AccessDenied") == grpc.StatusCode.PERMISSION_DENIED
    assert status_for("SignatureDoesNotMatch") == grpc.StatusCode.UNAUTHENTICATED
    assert status_for("EntityTooLarge") == grpc.StatusCode.INVALID_ARGUMENT
    assert status_for("QuotaExceeded") == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert status_for("SlowDown") == grpc.StatusCode.UNAVAILABLE


def test_a_code_without_a_row_falls_back_to_its_http_class(monkeypatch: pytest.MonkeyPatch) -> None:
    """A code added to the shared table later still maps by its HTTP status."""
    monkeypatch.setitem(errors.ERROR_TABLE, "BrandNewThing", (404, "gone"))
    assert status_for("BrandNewThing") == grpc.StatusCode.NOT_FOUND


def test_failures_below_the_core_map_like_the_s3_layer() -> None:
    """Corrupt data is DATA_LOSS, an unavailable backend UNAVAILABLE, anything
    unexpected INTERNAL with S3's InternalError (no details leak)."""
    assert as_s3_error(errors.ChunkCorrupted("x"))[1] == grpc.StatusCode.DATA_LOSS
    err, status = as_s3_error(errors.StorageError("disk"))
    assert (err.code, status) == ("ServiceUnavailable", grpc.StatusCode.UNAVAILABLE)
    err, status = as_s3_error(ValueError("secret detail"))
    assert (err.code, status, "secret" in err.message) == ("InternalError", grpc.StatusCode.INTERNAL, False)


class _FakeRpcError(grpc.RpcError):
    def __init__(self, status: grpc.StatusCode, details: str, trailing: tuple[tuple[str, object], ...]) -> None:
        self._status, self._details, self._trailing = status, details, trailing

    def code(self) -> grpc.StatusCode:
        return self._status

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> tuple[tuple[str, object], ...]:
        return self._trailing


def test_client_exceptions_carry_the_code_and_both_class_levels() -> None:
    """The client turns status + trailing metadata into the code's class, which is
    also the status class; without a code it uses the status class."""
    err = errors.NoSuchKey(resource="k", Key="k")
    typed = client_errors.from_rpc_error(_FakeRpcError(grpc.StatusCode.NOT_FOUND, err.message, trailing_metadata(err)))
    assert isinstance(typed, client_errors.NoSuchKey) and isinstance(typed, client_errors.NotFoundError)
    assert (typed.code, typed.resource, typed.fields) == ("NoSuchKey", "k", {"Key": "k"})
    bare = client_errors.from_rpc_error(_FakeRpcError(grpc.StatusCode.UNAVAILABLE, "connect failed", ()))
    assert type(bare) is client_errors.UnavailableError and bare.code == "ServiceUnavailable"
    only_code = client_errors.from_rpc_error(
        _FakeRpcError(grpc.StatusCode.FAILED_PRECONDITION, "m", ((CODE_KEY, "BucketNotEmpty"),))
    )
    assert isinstance(only_code, client_errors.BucketNotEmpty)
    assert DETAIL_KEY.endswith("-bin")  # binary metadata must be named so


# -- tokens ----------------------------------------------------------------------------------


def test_token_round_trip_and_tampering() -> None:
    """A token verifies with its secret until it expires; any change to the key,
    expiry or signature, or another secret, fails."""
    value = token.make_token("AK.with.dots", "s3cret", lifetime=600, now=1000)
    parsed = token.parse_token(value)
    assert (parsed.access_key_id, parsed.expires_at) == ("AK.with.dots", 1600)
    token.verify_token(parsed, "s3cret", now=1500)
    with pytest.raises(errors.SignatureDoesNotMatch):
        token.verify_token(parsed, "other", now=1500)
    for forged in (value.replace("1600", "9600"), value.replace("AK.with", "AK.wxth"), value[:-2] + "AA"):
        with pytest.raises(errors.SignatureDoesNotMatch):
            token.verify_token(token.parse_token(forged), "s3cret", now=1500)
    with pytest.raises(errors.S3Error) as expired:
        token.verify_token(parsed, "s3cret", now=1600)
    assert expired.value.code == "ExpiredToken"


def test_token_lifetime_is_bounded() -> None:
    """Tokens live at most 7 days: longer ones cannot be made and are refused."""
    with pytest.raises(ValueError):
        token.make_token("AK", "s", lifetime=token.MAX_LIFETIME_SECONDS + 1)
    message = f"lst1.AK.{10**10}"
    forged = f"{message}.{token._sign('s', message)}"
    with pytest.raises(errors.S3Error) as too_long:
        token.verify_token(token.parse_token(forged), "s", now=1000)
    assert too_long.value.code == "ExpiredToken"


@pytest.mark.parametrize("value", ["", "Bearer", "lst2.AK.1.sig", "lst1.AK.notanumber.sig", "lst1..1.sig", "lst1.AK.1.",
                                   "lst1.AK." + "9" * 5000 + ".sig"])
def test_malformed_tokens(value: str) -> None:
    """Anything that is not lst1.<key>.<expiry>.<sig> is AuthorizationHeaderMalformed."""
    with pytest.raises(errors.AuthorizationHeaderMalformed):
        token.parse_token(value)


def test_bearer_metadata() -> None:
    """The token comes from ``authorization: Bearer ...`` (scheme case-insensitive);
    no entry is MissingSecurityHeader, another scheme is malformed."""
    assert token.bearer_from_metadata([("x", "y"), ("authorization", "bearer  abc ")]) == "abc"
    with pytest.raises(errors.S3Error) as missing:
        token.bearer_from_metadata([("x", "y")])
    assert missing.value.code == "MissingSecurityHeader"
    with pytest.raises(errors.AuthorizationHeaderMalformed):
        token.bearer_from_metadata([("authorization", "Basic abc")])


# -- generated code ------------------------------------------------------------------------------


def test_generated_code_matches_the_proto(tmp_path: Path) -> None:
    """Regenerating from proto/lightningstor.proto reproduces the committed files
    exactly, so the proto and the code never drift (run `tox -e proto`)."""
    pytest.importorskip("grpc_tools")
    import importlib.util

    spec = importlib.util.spec_from_file_location("generate", ROOT / "proto" / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for path in module.generate(tmp_path):
        committed = ROOT / "lightningstor" / "grpc" / "gen" / path.name
        assert path.read_bytes() == committed.read_bytes(), f"{committed} is stale: run tox -e proto"


# -- client helpers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("grpc://127.0.0.1:9001", ("127.0.0.1:9001", False)),
        ("grpcs://store.example:443", ("store.example:443", True)),
        ("https://store.example", ("store.example:9001", True)),
        ("localhost:1234", ("localhost:1234", False)),
        ("grpc://[::1]:9001", ("[::1]:9001", False)),
    ],
)
def test_parse_target(url: str, target: tuple[str, bool]) -> None:
    """Endpoint URLs: scheme decides TLS, the port defaults to 9001 (SPEC App. B)."""
    assert parse_target(url) == target


def test_parse_target_refuses_other_schemes() -> None:
    """An S3-style URL is a mistake worth reporting, not guessing."""
    with pytest.raises(ValueError):
        parse_target("ftp://host")


def test_pieces_split_big_and_gather_small_chunks() -> None:
    """UploadPart messages are full 1 MiB pieces whatever the caller's chunking."""
    assert [len(p) for p in _pieces(b"x" * (2 * MiB + 5))] == [MiB, MiB, 5]
    assert [len(p) for p in _pieces(b"y" * 1000 for _ in range(3000))] == [MiB, MiB, 3000 * 1000 - 2 * MiB]
    assert b"".join(_pieces([b"ab", b"", b"cd"], size=3)) == b"abcd"


def test_plan_parts_respects_s3_limits() -> None:
    """Parts are at least 5 MiB (but the last), at most 10000, covering the file."""
    parts = plan_parts(100 * MiB, part_size=1)
    assert all(length == MIN_PART_SIZE for _, length in parts[:-1]) and sum(n for _, n in parts) == 100 * MiB
    huge = plan_parts(MAX_PARTS * 6 * MiB)
    assert len(huge) <= MAX_PARTS and sum(n for _, n in huge) == MAX_PARTS * 6 * MiB
    assert plan_parts(0) == [(0, 0)]


def test_progress_bar_text() -> None:
    """The bar shows percentage, bytes and rate on stderr, ending with a newline."""
    out = io.StringIO()
    bar = ProgressBar("upload: f", 4 * MiB, stream=out, interval=0)
    bar(MiB)
    bar(3 * MiB)
    bar.close()
    text = out.getvalue()
    assert "\r" in text and text.endswith("\n") and "100%" in text and "4.0 MiB/4.0 MiB" in text
    silent = io.StringIO()
    quiet = ProgressBar("x", 10, enabled=False, stream=silent)
    quiet(10)
    quiet.close()
    assert silent.getvalue() == ""
    assert human(1536) == "1.5 KiB" and human(10) == "10 B"


def test_cli_locations_sizes_and_safe_paths() -> None:
    """s3:// and ls:// locations parse; local paths are not remote; keys that
    would escape a download directory are refused."""
    assert parse_remote("s3://b/k/x") == Remote("b", "k/x")
    assert parse_remote("ls://b") == Remote("b", "")
    assert parse_remote("./file") is None
    assert _size("8MiB") == 8 * MiB and _size("512k") == 512 * 1024 and _size("100") == 100
    assert safe_relative("p/a/b.txt", "p/") == str(Path("a") / "b.txt")
    assert safe_relative("p/../../etc/passwd", "p/") is None
    assert safe_relative("p/dir/", "p/") is None
