"""Log formats, level filtering and how the observer reaches twistd, in-process."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path
from typing import Any

import pytest
from twisted.application.service import Application, MultiService
from twisted.logger import ILogObserver, Logger, LogLevel, formatEvent, globalLogPublisher
from twisted.python import usage
from twisted.python.failure import Failure

from lightningstor.config import LoggingSettings
from lightningstor.logs import (
    LEVELS,
    LoggingRoot,
    format_json_event,
    make_observer,
    twistd_observer_factory,
)
from lightningstor.s3.accesslog import ACCESS_FORMAT, AccessLog
from lightningstor.s3.summary import RequestSummary


def _emit(observer: Any, level: LogLevel, text: str = "hello {who}", **fields: Any) -> None:
    Logger(namespace="test.ns", observer=observer).emit(level, text, **fields)


def test_json_lines_carry_time_level_namespace_message_and_fields() -> None:
    """format = "json": one JSON object per line with time, level, namespace, the formatted
    message and the event's own fields; non-JSON values become strings."""
    out = io.StringIO()
    observer = make_observer(LoggingSettings(level="info", format="json"), out)
    _emit(observer, LogLevel.warn, who="world", count=3, thing=object(), namespace="mine")
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["level"] == "warn" and record["namespace"] == "test.ns"
    assert record["message"] == "hello world"
    assert record["who"] == "world" and record["count"] == 3
    assert record["thing"].startswith("<object object")
    assert record["time"].endswith("+00:00")
    assert record["field_namespace"] == "mine"  # an event field may not overwrite the envelope


def test_json_failure_events_include_the_traceback() -> None:
    """A logged failure's JSON line has the traceback as a field, still on one line."""
    failure = Failure(ZeroDivisionError("division by zero"))
    line = format_json_event({"log_format": "boom", "log_level": LogLevel.critical,
                              "log_namespace": "x", "log_time": 0.0, "log_failure": failure})
    assert line.count("\n") == 1
    assert "ZeroDivisionError" in json.loads(line)["traceback"]


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_level_filter_drops_events_below_the_configured_level(fmt: str) -> None:
    """level = "warn" keeps warn, error and critical events and drops debug and info,
    in both formats; trace means debug (twisted.logger's lowest level)."""
    out = io.StringIO()
    observer = make_observer(LoggingSettings(level="warn", format=fmt), out)
    for level in (LogLevel.debug, LogLevel.info, LogLevel.warn, LogLevel.error, LogLevel.critical):
        _emit(observer, level, f"at-{level.name}")
    text = out.getvalue()
    assert "at-debug" not in text and "at-info" not in text
    assert all(f"at-{name}" in text for name in ("warn", "error", "critical"))
    assert LEVELS["trace"] is LogLevel.debug


def test_text_format_is_twistds_line_format() -> None:
    """format = "text" writes twistd's usual "time [namespace#level] message" lines."""
    out = io.StringIO()
    _emit(make_observer(LoggingSettings(level="debug", format="text"), out), LogLevel.debug, who="x")
    assert "[test.ns#debug] hello x" in out.getvalue()


def test_access_event_text_and_fields() -> None:
    """The access event's text line reads like a combined log line with the request id and
    operation (ACCESS_FORMAT), braces in a key are printed as sent, and the event's fields
    are the summary's."""
    events: list[dict[str, Any]] = []
    summary = RequestSummary(
        request_id="R", principal="AK", operation="PutObject", method="PUT", uri="/b/{k}",
        bucket="b", key="{k}", status=200, completed=True, error_code=None, bytes_in=5,
        bytes_out=0, duration=0.25, remote="127.0.0.1", object_size=5,
    )  # fmt: skip
    AccessLog(Logger(namespace="lightningstor.access", observer=events.append)).emit(summary)
    assert formatEvent(events[0]) == '127.0.0.1 AK "PUT /b/{k}" 200 5 0 0.250s R PutObject'
    assert formatEvent(events[0]) == ACCESS_FORMAT.format(**dataclasses.asdict(summary))
    assert (events[0]["bucket"], events[0]["key"], events[0]["status"]) == ("b", "{k}", 200)


def test_access_line_escapes_control_characters_quotes_and_backslashes() -> None:
    """Query parameter names reach the access line decoded: CR, LF, ESC, NUL,
    DEL and C1 controls are written as \\xNN and ``"`` / ``\\`` with a backslash,
    so the text line stays one line with one quoted request; the event's
    ``uri`` field keeps the text (the JSON log escapes it itself), and the
    text log writes one line."""
    events: list[dict[str, Any]] = []
    uri = '/b?\nFORGED\r&\x1b[31m&\x00&\x7f&\x85&"q"&back\\slash&caf\u00e9'
    summary = RequestSummary(
        request_id="R", principal="AK", operation="ListObjects", method="GET", uri=uri,
        bucket="b", key=None, status=403, completed=True, error_code="AccessDenied", bytes_in=0,
        bytes_out=0, duration=0.0, remote="127.0.0.1", object_size=None,
    )  # fmt: skip
    AccessLog(Logger(namespace="lightningstor.access", observer=events.append)).emit(summary)
    expected = '/b?\\x0aFORGED\\x0d&\\x1b[31m&\\x00&\\x7f&\\x85&\\"q\\"&back\\\\slash&caf\u00e9'
    assert formatEvent(events[0]) == f'127.0.0.1 AK "GET {expected}" 403 0 0 0.000s R ListObjects'
    assert events[0]["uri"] == uri
    out = io.StringIO()
    make_observer(LoggingSettings(level="info", format="text"), out)(events[0])
    assert out.getvalue().count("\n") == 1 and expected in out.getvalue()


def test_text_lines_keep_control_characters_from_requests_out() -> None:
    """Other log lines name object keys, which may hold any character: a CR,
    ESC or NUL is written as \\xNN in the text log (a line feed starts an
    indented continuation line, as before), in plain and failure events."""
    out = io.StringIO()
    observer = make_observer(LoggingSettings(level="info", format="text"), out)
    log = Logger(namespace="lightningstor.test", observer=observer)
    log.info("GET {res}: read again", res="/b/k\rFORGED\x1b[2J\x00end")
    try:
        raise ValueError("key /b/k\rX\x1b[31m")
    except ValueError:
        log.failure("failed on {res}", res="/b/k\r\x1b")
    text = out.getvalue()
    assert "\r" not in text and "\x1b" not in text and "\x00" not in text
    assert "/b/k\\x0dFORGED\\x1b[2J\\x00end" in text
    assert "failed on /b/k\\x0d\\x1b" in text and "ValueError" in text


def test_logging_root_gives_twistd_its_observer_once() -> None:
    """Added to twistd's Application, LoggingRoot sets the Application's ILogObserver
    component (what twistd uses when no --logger is given), keeps one already set, and
    holds the server service as its child."""
    made: list[Any] = []

    def factory() -> Any:
        made.append(lambda event: None)
        return made[-1]

    server = MultiService()
    app = Application("test")
    LoggingRoot(server, factory).setServiceParent(app)
    assert app.getComponent(ILogObserver) is made[0]
    assert server.parent is not None
    other = Application("other")
    preset = lambda event: None  # noqa: E731
    other.setComponent(ILogObserver, preset)
    LoggingRoot(MultiService(), factory).setServiceParent(other)
    assert other.getComponent(ILogObserver) is preset and len(made) == 1


def test_observer_writes_where_twistd_would(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """-n without --logfile logs to stdout; --logfile=PATH to that file; --logfile=- without
    -n is refused as twistd refuses it."""
    settings = LoggingSettings(level="info", format="json")
    observer = twistd_observer_factory(settings, {"nodaemon": True, "logfile": None}, None)()
    _emit(observer, LogLevel.info, "to-stdout")
    assert json.loads(capsys.readouterr().out)["message"] == "to-stdout"
    path = tmp_path / "server.log"
    observer = twistd_observer_factory(settings, {"nodaemon": True, "logfile": str(path)}, None)()
    _emit(observer, LogLevel.info, "to-file")
    assert json.loads(path.read_text())["message"] == "to-file"
    with pytest.raises(usage.UsageError):
        twistd_observer_factory(settings, {"nodaemon": False, "logfile": "-"}, None)


def test_global_publisher_untouched() -> None:
    """Building observers does not register them anywhere: only twistd installs them."""
    before = list(globalLogPublisher._observers)
    make_observer(LoggingSettings(), io.StringIO())
    assert list(globalLogPublisher._observers) == before


class _TurnReactor:
    """Just what BatchingFileLogObserver asks of a reactor: ``running``,
    ``callLater(0, f)`` (run by :meth:`end_turn`) and a shutdown trigger."""

    def __init__(self) -> None:
        from twisted.python import threadable

        threadable.registerAsIOThread()  # this thread runs the "reactor", as a real one would register
        self.running = True
        self.calls: list[Any] = []
        self.triggers: list[tuple[str, str, Any]] = []

    def callLater(self, delay: float, f: Any) -> None:
        assert delay == 0
        self.calls.append(f)

    def addSystemEventTrigger(self, phase: str, event: str, f: Any) -> None:
        self.triggers.append((phase, event, f))

    def end_turn(self) -> None:
        calls, self.calls = self.calls, []
        for f in calls:
            f()


class _CountingOut(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def _batching(reactor: _TurnReactor, out: _CountingOut, **kw: Any) -> Any:
    from lightningstor.logs import BatchingFileLogObserver, format_text_event

    return BatchingFileLogObserver(out, format_text_event, reactor, **kw)


def test_info_lines_of_one_reactor_turn_are_written_together() -> None:
    """The access log's info lines wait for the end of the reactor turn and
    go out in one write, in order; nothing is written before the turn ends."""
    reactor, out = _TurnReactor(), _CountingOut()
    observer = _batching(reactor, out)
    for i in range(5):
        _emit(observer, LogLevel.info, "line {i}", i=i)
    assert out.getvalue() == "" and len(reactor.calls) == 1  # one flush scheduled, not five
    reactor.end_turn()
    assert out.writes == 1
    assert [line.rsplit(" ", 1)[-1] for line in out.getvalue().splitlines()] == ["0", "1", "2", "3", "4"]


def test_warnings_and_lines_outside_the_running_reactor_are_written_at_once() -> None:
    """A warning goes out at once, after the info lines gathered before it
    (order kept); so does any line while the reactor is not running, or
    from another thread; and whatever is pending is written at shutdown."""
    import threading

    reactor, out = _TurnReactor(), _CountingOut()
    observer = _batching(reactor, out)
    _emit(observer, LogLevel.info, "first")
    _emit(observer, LogLevel.warn, "second")
    assert out.getvalue().count("\n") == 2 and out.getvalue().index("first") < out.getvalue().index("second")
    thread = threading.Thread(target=_emit, args=(observer, LogLevel.info, "from a thread"))
    thread.start()
    thread.join()
    assert "from a thread" in out.getvalue()
    reactor.running = False
    _emit(observer, LogLevel.info, "stopped")
    assert "stopped" in out.getvalue()
    reactor.running = True
    _emit(observer, LogLevel.info, "last")
    assert "last" not in out.getvalue()
    [(phase, event, flush)] = reactor.triggers
    assert (phase, event) == ("after", "shutdown")
    flush()
    assert out.getvalue().endswith("last\n")


def test_a_full_batch_is_written_without_waiting_for_the_turn() -> None:
    """Lines reaching ``max_pending`` characters are written at once (a burst
    cannot pile up unbounded text within one turn)."""
    reactor, out = _TurnReactor(), _CountingOut()
    observer = _batching(reactor, out, max_pending=200)
    for i in range(10):
        _emit(observer, LogLevel.info, "x" * 40 + " {i}", i=i)
    assert out.writes >= 2
    reactor.end_turn()
    assert out.getvalue().count("\n") == 10


def test_a_signal_handler_logging_during_a_write_neither_hangs_nor_interleaves() -> None:
    """Twisted's SIGTERM handler logs, and runs on the reactor thread, which
    may be inside the observer writing gathered lines (it once deadlocked a
    worker on its own lock).  The handler's line is written after the lines
    being written, and the call returns."""
    import threading

    reactor = _TurnReactor()
    events: list[str] = []

    class _Interrupted(_CountingOut):
        def write(self, text: str) -> int:
            if not events:
                events.append("interrupted")
                _emit(observer, LogLevel.info, "Received SIGTERM, shutting down.")
            return super().write(text)

    out = _Interrupted()
    observer = _batching(reactor, out)
    _emit(observer, LogLevel.info, "gathered")
    done = threading.Event()

    def turn() -> None:
        reactor.end_turn()
        done.set()

    worker = threading.Thread(target=turn, daemon=True)
    worker.start()
    assert done.wait(10), "the observer deadlocked on its own lock"
    lines = out.getvalue().splitlines()
    assert [line.split("] ", 1)[1] for line in lines] == ["gathered", "Received SIGTERM, shutting down."]


def test_processes_sharing_a_log_file_append_without_overwriting(tmp_path: Path) -> None:
    """Workers write one log file: each write lands at the end, whatever the
    others wrote since this one opened it (twistd's LogFile wrote at its own
    offset, over the other processes' lines)."""
    from lightningstor.logs import SharedLogFile

    path = tmp_path / "server.log"
    path.write_bytes(b"before\n")
    a, b = SharedLogFile.fromFullPath(str(path)), SharedLogFile.fromFullPath(str(path))
    for i in range(3):
        a.write(f"a{i}\n")
        b.write(f"b{i}\n")
    a.close()
    b.close()
    assert path.read_text().split() == ["before", "a0", "b0", "a1", "b1", "a2", "b2"]


def test_a_shared_log_file_follows_a_rotation_within_a_second(tmp_path: Path) -> None:
    """The supervisor (or logrotate) renames the file: the worker keeps
    writing to the renamed one until it looks again, a second or more after
    its last look, and then writes to a new file at the path.  It never
    rotates by itself, however long the file."""
    from lightningstor.logs import SharedLogFile

    now = [0.0]
    path = tmp_path / "server.log"
    log = SharedLogFile("server.log", str(tmp_path), clock=lambda: now[0])
    log.write("one\n" * 300_000)  # 1.2 MB, past twistd's rotation length
    assert not (tmp_path / "server.log.1").exists()
    path.rename(tmp_path / "server.log.1")
    now[0] = 0.5
    log.write("two\n")
    now[0] = 1.5
    log.write("three\n")
    log.close()
    assert (tmp_path / "server.log.1").read_text().endswith("one\ntwo\n")
    assert path.read_text() == "three\n"


def test_workers_observers_write_one_file_without_losing_a_line(tmp_path: Path) -> None:
    """What a worker's twistd gets (shared=True): two of them on one
    --logfile, writing in turn, keep every line whole."""
    path = tmp_path / "server.log"
    options = {"nodaemon": True, "logfile": str(path)}
    settings = LoggingSettings(level="info", format="json")
    first, second = (twistd_observer_factory(settings, options, None, shared=True)() for _ in range(2))
    for i in range(5):
        _emit(first, LogLevel.info, f"first {i}")
        _emit(second, LogLevel.info, f"second {i}")
    messages = [json.loads(line)["message"] for line in path.read_text().splitlines()]
    assert messages == [f"{who} {i}" for i in range(5) for who in ("first", "second")]
