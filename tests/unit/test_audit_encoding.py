"""Per-request logging written the cheap way is written byte for byte as before.

The audit record's usual shape is encoded by ``audit._request_line`` rather than
the generic ``json.JSONEncoder``; the access log builds its event without going
through ``Logger.info``; the access log's URI is redacted without re-encoding
the target or a loop over the query.  Each of these is compared here with the
code it replaced, kept in this file as the reference, over a wide range of
inputs (control characters, non-ASCII, lone surrogates, quotes, braces, None,
odd types, NaN and infinities).
"""

from __future__ import annotations

import enum
import json
import math
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, unquote

from hypothesis import example, given
from hypothesis import strategies as st
from twisted.logger import Logger

from lightningstor import audit
from lightningstor.audit import encode_record, grpc_record, s3_record
from lightningstor.core.access import Decision
from lightningstor.core.types import Principal
from lightningstor.logs import escape_log_text
from lightningstor.s3 import summary as summary_module
from lightningstor.s3.accesslog import AccessLog
from lightningstor.s3.addressing import Target
from lightningstor.s3.summary import RequestSummary, redacted_uri

# -- the references: the code the fast paths replaced ----------------------------------


def reference_encode(record: dict[str, Any]) -> bytes:
    """encode_record as it was: one generic encoder, ``time`` made ISO first."""
    out = dict(record)
    t = out.get("time")
    if isinstance(t, (int, float)):
        t = float(t)
        second = int(t)
        out["time"] = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S") + (
            f".{int((t - second) * 1000):03d}Z"
        )
    return json.JSONEncoder(separators=(",", ":"), default=str).encode(out).encode("ascii") + b"\n"


def reference_query_names(query: str) -> list[str]:
    return [unquote(s.partition("=")[0].replace("+", " ")) for s in query.split("&") if s]


def reference_redacted_uri(uri: bytes) -> str:
    path, _, query = uri.partition(b"?")
    text = path.decode("latin-1")
    if query:
        text += "?" + "&".join(reference_query_names(query.decode("latin-1")))
    return text


def reference_access_event(summary: RequestSummary) -> dict[str, Any]:
    """What AccessLog.emit logged through Logger.info (the URI escaped for
    the text line: its query names are decoded request text)."""
    events: list[dict[str, Any]] = []
    s = summary
    line = (
        f'{s.remote} {s.principal} "{s.method} {escape_log_text(s.uri)}" {s.status} {s.bytes_in} {s.bytes_out} '
        f"{s.duration:.3f}s {s.request_id} {s.operation}"
    )
    Logger(namespace="lightningstor.access", observer=events.append).info(
        line.replace("{", "{{").replace("}", "}}"),
        log_text=line,
        protocol="s3",
        request_id=s.request_id,
        principal=s.principal,
        operation=s.operation,
        method=s.method,
        uri=s.uri,
        bucket=s.bucket,
        key=s.key,
        status=s.status,
        completed=s.completed,
        error_code=s.error_code,
        bytes_in=s.bytes_in,
        bytes_out=s.bytes_out,
        duration=round(s.duration, 6),
        remote=s.remote,
    )
    return events[0]


# -- strategies -----------------------------------------------------------------------------

# Every code point class that JSON escapes differently: controls, quote and
# backslash, DEL, Latin-1, the BMP, astral planes (surrogate pairs), lone surrogates.
ODD_TEXT = st.text(
    alphabet=st.one_of(
        st.characters(min_codepoint=0, max_codepoint=0x7F),
        st.sampled_from('"\\/\x00\x1f\x7f\u2028\u2029\ud800\udfff\ufeff\U0001f600é{}'),
        st.characters(),
    ),
    max_size=40,
)


class Status(enum.IntEnum):
    OK = 200


class Text(str):
    pass


def _unserializable() -> object:
    return object.__new__(type("Thing", (), {"__str__": lambda self: "a thing"}))


FLOATS = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([0.0, -0.0, 1e-7, 0.0123456, 1e300])
INTS = st.integers(min_value=-(2**70), max_value=2**70)
# What a field may hold: the usual (str, None) and everything else the generic
# encoder accepts, so the fast path's refusals are exercised too.
ANY_VALUE = st.one_of(
    ODD_TEXT,
    st.none(),
    INTS,
    FLOATS,
    st.booleans(),
    ODD_TEXT.map(Text),
    st.just(Status.OK),
    st.builds(_unserializable),
    st.lists(ODD_TEXT, max_size=2),
    st.dictionaries(ODD_TEXT, ODD_TEXT, max_size=2),
)
TEXT_OR_NONE = st.one_of(ODD_TEXT, st.none())
# (st.fixed_dictionaries does not keep the order of the keys.)
DECISION = st.builds(
    lambda action, resource, allowed: {"action": action, "resource": resource, "allowed": allowed},
    ODD_TEXT,
    ODD_TEXT,
    st.booleans(),
)
# Mostly well-formed decisions, sometimes not (other types, missing or extra keys).
DECISIONS = st.one_of(
    st.lists(DECISION, max_size=4),
    st.lists(st.one_of(DECISION, st.dictionaries(ODD_TEXT, ANY_VALUE, max_size=3), ANY_VALUE), max_size=3),
    ANY_VALUE,
)
# Times from 1970 to about 2100, as floats and ints (and bools: isinstance(True, int)).
TIMES = st.one_of(
    st.floats(min_value=0, max_value=4.1e9),
    st.integers(min_value=0, max_value=4_100_000_000),
    st.booleans(),
    st.none(),
    ODD_TEXT,
)


@st.composite
def request_records(draw: st.DrawFn, odd: bool) -> dict[str, Any]:
    """A record with the fields _record writes, in its order; with ``odd``,
    any field may hold anything."""
    record: dict[str, Any] = {}
    for name in audit._REQUEST_FIELDS:
        if odd and draw(st.integers(0, 5)) == 0:
            record[name] = draw(ANY_VALUE)
        elif name == "time":
            record[name] = draw(TIMES if odd else st.floats(min_value=0, max_value=4.1e9))
        elif name == "decisions":
            record[name] = draw(DECISIONS if odd else st.lists(DECISION, max_size=4))
        elif name in ("http_status", "pid"):
            record[name] = draw(st.one_of(st.none(), INTS))
        elif name == "duration":
            record[name] = draw(FLOATS if odd else st.floats(min_value=0, max_value=1e6))
        else:
            record[name] = draw(TEXT_OR_NONE)
    return record


# -- the audit line -------------------------------------------------------------------------


@given(request_records(odd=False))
def test_usual_records_take_the_fast_path_and_encode_as_before(record: dict[str, Any]) -> None:
    """Records of the usual types, whatever their strings hold: written by the fast
    path, identical to the generic encoder's line."""
    line = audit._request_line(record)
    assert line is not None
    assert line == reference_encode(record)
    assert encode_record(record) == line


@given(request_records(odd=True))
@example({**dict.fromkeys(audit._REQUEST_FIELDS), "time": 1.5, "decisions": [], "duration": math.nan})
@example({**dict.fromkeys(audit._REQUEST_FIELDS), "time": 1.5, "decisions": [], "duration": -math.inf})
@example({**dict.fromkeys(audit._REQUEST_FIELDS), "time": True, "decisions": [], "duration": 0.5})
@example({**dict.fromkeys(audit._REQUEST_FIELDS), "time": 1.5, "decisions": [], "duration": 5})
@example({**dict.fromkeys(audit._REQUEST_FIELDS), "time": 1, "decisions": [], "duration": 0.5, "pid": True})
@example(
    {**dict.fromkeys(audit._REQUEST_FIELDS), "time": 1, "decisions": [], "duration": 0.5, "http_status": 2.0}
)
@example(
    {
        **dict.fromkeys(audit._REQUEST_FIELDS),
        "time": 1,
        "decisions": [{"action": "a", "allowed": True, "resource": "r"}],
        "duration": 0.5,
    }
)
def test_any_record_of_the_usual_fields_encodes_as_before(record: dict[str, Any]) -> None:
    """Whatever the fields hold (str and int subclasses, NaN, bools for ints,
    unserializable objects, malformed decisions): the same line, or the same error."""
    try:
        expected: bytes | BaseException = reference_encode(record)
    except Exception as exc:  # noqa: BLE001 - the error is what must match
        expected = exc
    try:
        got: bytes | BaseException = encode_record(record)
    except Exception as exc:  # noqa: BLE001
        got = exc
    if isinstance(expected, BaseException):
        assert type(got) is type(expected) and str(got) == str(expected)
    else:
        assert got == expected


@given(st.dictionaries(ODD_TEXT, ANY_VALUE, max_size=6), TIMES)
def test_other_records_encode_as_before(record: dict[str, Any], t: Any) -> None:
    """Gap records, fallbacks, anything else: the generic encoder, as before."""
    record["time"] = t
    assert encode_record(record) == reference_encode(record)


def test_records_in_another_order_or_of_a_dict_subclass_are_not_taken_for_usual_ones() -> None:
    """The fast path reads the values in the order of _REQUEST_FIELDS, of a plain dict only."""
    record = {name: name for name in audit._REQUEST_FIELDS}
    record.update(time=1.5, decisions=[], duration=0.5, http_status=200, pid=7)
    assert audit._request_line(record) is not None
    swapped = {
        (("key" if k == "bucket" else "bucket") if k in ("bucket", "key") else k): v
        for k, v in record.items()
    }
    assert list(swapped) != list(record)
    assert encode_record(swapped) == reference_encode(swapped)

    class Odd(dict):  # type: ignore[type-arg]
        def values(self) -> Any:  # dict(record), the generic encoder's copy, does not call it
            return [v.upper() if isinstance(v, str) else v for v in super().values()]

    odd = Odd(record)
    assert encode_record(odd) == reference_encode(odd) == reference_encode(record)


ALICE = Principal("p-alice", "acme", "web", "AKALICE", "Alice")


@given(
    key=st.one_of(st.none(), ODD_TEXT),
    bucket=st.one_of(st.none(), ODD_TEXT),
    remote=ODD_TEXT,
    error_code=st.one_of(st.none(), ODD_TEXT),
    status=st.integers(100, 599),
    duration=st.floats(min_value=0, max_value=1e5),
    now=st.floats(min_value=0, max_value=4.1e9),
    decisions=st.lists(st.builds(Decision, ODD_TEXT, ODD_TEXT, st.booleans()), max_size=3),
    principal=st.sampled_from([None, ALICE, Principal("p", "o")]),
)
def test_s3_records_are_written_by_the_fast_path_as_before(
    key: str | None,
    bucket: str | None,
    remote: str,
    error_code: str | None,
    status: int,
    duration: float,
    now: float,
    decisions: list[Decision],
    principal: Principal | None,
) -> None:
    """What the server writes for every S3 request."""
    summary = RequestSummary(
        request_id="7C1A0E2B93D8F4A1", principal="AK", operation="GetObject", method="GET", uri="/b/k",
        bucket=bucket, key=key, status=status, completed=True, error_code=error_code, bytes_in=0,
        bytes_out=4096, duration=duration, remote=remote, object_size=None,
    )  # fmt: skip

    class Call:
        pass

    call = Call()
    call.principal = principal  # type: ignore[attr-defined]
    call.decisions = decisions  # type: ignore[attr-defined]
    call.access_key_id = "AKX"  # type: ignore[attr-defined]
    record = s3_record(summary, call, now=now)
    assert record is not None
    assert audit._request_line(record) is not None
    assert encode_record(record) == reference_encode(record)
    assert json.loads(encode_record(record))["pid"] == record["pid"]


@given(code=st.sampled_from(["OK", "PERMISSION_DENIED", "CANCELLED"]), peer=st.one_of(st.none(), ODD_TEXT))
def test_grpc_records_are_written_by_the_fast_path_as_before(code: str, peer: str | None) -> None:
    record = grpc_record(
        method="PutObject", request_id="R", principal=ALICE, access_key_id=None,
        decisions=[Decision("lightningstor:objects:put", "org/acme/bucket/b/object/k", code == "OK")],
        code=code, error_code=None, peer=peer, bucket="b", key="k\n", duration=0.25, now=1_700_000_000.25,
    )  # fmt: skip
    assert audit._request_line(record) is not None
    assert encode_record(record) == reference_encode(record)


def test_the_pid_follows_a_fork() -> None:
    """The record's pid is cached (os.getpid() is a system call) and refreshed in a
    forked child."""
    import os

    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child
        try:
            os.write(write, str(grpc_record(
                method="m", request_id="r", principal=None, access_key_id=None, decisions=[], code="OK",
                error_code=None, peer=None, bucket=None, key=None, duration=0.0,
            )["pid"]).encode())  # fmt: skip
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        reported = int(f.read())
    os.waitpid(child, 0)
    assert reported == child != os.getpid()


# -- the access log -------------------------------------------------------------------------

NAMES = st.text(alphabet="aZ-_.~%+=&;?/2{}é \x00", max_size=12)
QUERIES = st.lists(
    st.one_of(NAMES, st.tuples(NAMES, st.text(max_size=20)).map("=".join), st.just("")), max_size=8
).map("&".join) | st.text(max_size=30)


@given(QUERIES)
@example("X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AK%2F2026&X-Amz-Signature=ab12")
@example("=v&a")
@example("a&&b")
@example("&a")
@example("a&")
@example("a+b=1")
@example("a%20b")
@example("&")
@example("=")
def test_query_names_are_redacted_as_before(query: str) -> None:
    assert summary_module._query_text(query) == "&".join(reference_query_names(query))
    assert summary_module._query_names(query) == [
        name for name, _ in parse_qsl(query, keep_blank_values=True)
    ]


@given(
    path=st.text(alphabet="/abé?%+ \x00", max_size=12) | st.text(max_size=8),
    query=QUERIES,
)
def test_the_access_uri_is_the_redacted_target_as_before(path: str, query: str) -> None:
    """From the call's target (latin-1 text of the wire, usually ASCII): what
    redacting the re-encoded target gave, or the same error for text that is not
    latin-1."""

    class Call:
        op = "GetObject"
        target = Target("b", "k", path, query)

    raw = path + ("?" + query if query else "")
    try:
        expected: str | type[BaseException] = reference_redacted_uri(raw.encode("latin-1"))
    except UnicodeEncodeError:
        expected = UnicodeEncodeError
    try:
        got: str | type[BaseException] = summary_module._uri(None, Call())
    except UnicodeEncodeError:
        got = UnicodeEncodeError
    assert got == expected
    if isinstance(expected, str):
        assert redacted_uri(raw.encode("latin-1")) == expected


SUMMARIES = st.builds(
    RequestSummary,
    request_id=ODD_TEXT,
    principal=ODD_TEXT,
    operation=ODD_TEXT,
    method=ODD_TEXT,
    uri=ODD_TEXT,
    bucket=TEXT_OR_NONE,
    key=TEXT_OR_NONE,
    status=st.integers(100, 599),
    completed=st.booleans(),
    error_code=TEXT_OR_NONE,
    bytes_in=st.integers(0, 2**40),
    bytes_out=st.integers(0, 2**40),
    duration=st.floats(min_value=0, max_value=1e6),
    remote=ODD_TEXT,
    object_size=st.one_of(st.none(), st.integers(0, 2**40)),
)


@given(SUMMARIES)
@example(
    RequestSummary(
        request_id="R",
        principal="AK",
        operation="PutObject",
        method="PUT",
        uri="/b/{k}}",
        bucket="b",
        key="{k}}",
        status=200,
        completed=True,
        error_code=None,
        bytes_in=5,
        bytes_out=0,
        duration=0.25,
        remote="127.0.0.1",
        object_size=5,
    )  # fmt: skip
)
def test_the_access_event_is_what_logger_info_made(summary: RequestSummary) -> None:
    """Same keys in the same order, same values (the time aside), same observer."""
    events: list[dict[str, Any]] = []
    logger = Logger(namespace="lightningstor.access", observer=events.append)
    AccessLog(logger).emit(summary)
    expected = reference_access_event(summary)
    (got,) = events
    assert list(got) == list(expected)
    assert got["log_logger"] is logger
    assert abs(got.pop("log_time") - expected.pop("log_time")) < 60
    expected["log_logger"] = logger
    assert got == expected


def test_a_logger_subclass_still_gets_info_called() -> None:
    calls: list[tuple[str, dict[str, Any]]] = []

    class Mine(Logger):
        def info(self, format: str | None = None, **kwargs: object) -> None:
            calls.append((format or "", kwargs))

    summary = RequestSummary(
        request_id="R", principal="AK", operation="PutObject", method="PUT", uri="/b/{k}",
        bucket="b", key="{k}", status=200, completed=True, error_code=None, bytes_in=5,
        bytes_out=0, duration=0.25, remote="127.0.0.1", object_size=5,
    )  # fmt: skip
    AccessLog(Mine()).emit(summary)
    ((fmt, fields),) = calls
    expected = reference_access_event(summary)
    assert fmt == expected["log_format"]
    assert fields == {k: v for k, v in expected.items() if not k.startswith("log_") or k == "log_text"}
