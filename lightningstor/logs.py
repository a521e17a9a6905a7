"""Server logging: ``[logging] level`` and ``format`` under twistd.

Everything logs through ``twisted.logger``.  twistd chooses its log observer
*after* the plugin's ``makeService`` has run (``AppLogger.start``): it takes
the ``--logger`` option if given, else the Application's ``ILogObserver``
component, else its own text observer for ``--logfile``/``--syslog``/``-n``.
The Application is created by twistd, not by the plugin, so the plugin
cannot set that component directly; ``makeService`` wraps the service it
returns in :class:`LoggingRoot`, which sets the
component when twistd adds it to the Application.  twistd then installs our
observer exactly as it would its own (with standard-output redirection and
its "starting up" lines), and an explicit ``--logger`` still wins.

The observer writes where twistd would have written (stdout under ``-n``,
else ``--logfile`` or ``twistd.log``, rotated on SIGUSR1; syslog with
``--syslog``), filters by level (``FilteringLogObserver`` +
``LogLevelFilterPredicate``), and formats as:

* ``text``: twistd's usual lines (:func:`format_text_event`, the same text
  as ``textFileLogObserver``);
* ``json``: one JSON object per line, ``{"time", "level", "namespace",
  "message", ...fields}`` (:func:`format_json_event`).

Both formatters sit on the request path (one access event per S3 request),
so they avoid twisted's per-event costs that buy nothing here: the
timestamp text is computed once per second (twisted's ``formatTime`` builds
a time zone object and a ``datetime`` per event), and an event that carries
its own finished text in :data:`TEXT_KEY` (the access log does) is not run
through ``string.Formatter`` again.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import IO, Any

from twisted.application.service import IService, MultiService
from twisted.logger import (
    FileLogObserver,
    FilteringLogObserver,
    ILogObserver,
    LegacyLogObserverWrapper,
    LogEvent,
    LogLevel,
    LogLevelFilterPredicate,
    formatEvent,
    formatEventAsClassicLogText,
    formatTime,
)
from twisted.python import logfile, usage
from twisted.python.compat import ioType
from twisted.python.components import Componentized
from twisted.python.threadable import isInIOThread
from zope.interface import implementer

from lightningstor.config import LoggingSettings
from lightningstor.run_user import CreatedPaths, run_user

__all__ = [
    "LEVELS",
    "TEXT_KEY",
    "BatchingFileLogObserver",
    "LoggingRoot",
    "SharedLogFile",
    "escape_log_text",
    "format_json_event",
    "format_text_event",
    "log_destination",
    "log_level",
    "make_observer",
    "twistd_observer_factory",
]

LEVELS: dict[str, LogLevel] = {
    "trace": LogLevel.debug,  # twisted.logger has no level below debug
    "debug": LogLevel.debug,
    "info": LogLevel.info,
    "warn": LogLevel.warn,
    "warning": LogLevel.warn,
    "error": LogLevel.error,
    "critical": LogLevel.critical,
}

# Keys of legacy ``twisted.python.log`` events that duplicate what the JSON
# line already says (``message`` is a tuple there) or hold objects.
_SKIP_KEYS = frozenset({"message", "isError", "system", "time", "format", "why", "failure", "printed"})
_RESERVED = ("time", "level", "namespace", "message")


def log_level(name: str) -> LogLevel:
    """The ``twisted.logger`` level for a ``[logging] level`` value."""
    return LEVELS[name.lower()]


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)


# An event key holding the event's message, already formatted: the same text
# ``formatEvent`` would produce from its ``log_format``.  A ``log_`` key, so
# the JSON line does not repeat it as a field.  Observers that do not know it
# (twisted's own, tests' capture) still format ``log_format`` as usual.
TEXT_KEY = "log_text"


# What a text log line must not carry raw: the C0 and C1 control characters
# and DEL (a CR or LF would start a forged line, an ESC drive the terminal
# that shows the log, a NUL make tools take the file for binary), and the
# backslash and double quote that escape them and delimit the access line's
# quoted request.
_LOG_UNSAFE = re.compile(r'[\x00-\x1f\x7f-\x9f"\\]')


def _log_escape(match: re.Match[str]) -> str:
    char = match.group()
    return "\\" + char if char in '"\\' else f"\\x{ord(char):02x}"


def escape_log_text(text: str) -> str:
    """``text`` (from a request: a path, a query parameter name) made safe
    for one log line, as Apache's and nginx's access logs and CPython's
    ``http.server`` escape theirs: each control character as ``\\xNN``,
    ``\\`` and ``"`` with a backslash.  The usual text has none of them
    and is returned as it is, after one regular-expression search."""
    if _LOG_UNSAFE.search(text) is None:
        return text
    return _LOG_UNSAFE.sub(_log_escape, text)


class _SecondCache:
    """One text per whole second of a timestamp: both log formats print
    timestamps whose text changes once a second at most (the JSON one adds
    the milliseconds itself)."""

    __slots__ = ("_cached", "_format")

    def __init__(self, format_second: Callable[[int], str]) -> None:
        self._format = format_second
        # One tuple, replaced whole: observers may run on any thread.
        self._cached: tuple[int | None, str] = (None, "")

    def __call__(self, second: int) -> str:
        cached = self._cached
        if cached[0] != second:
            cached = (second, self._format(second))
            self._cached = cached
        return cached[1]


# twisted's formatTime (RFC 3339, local time zone, whole seconds) of a second.
_text_second = _SecondCache(lambda second: formatTime(float(second)))
_json_second = _SecondCache(
    lambda second: datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
)


def _text_time(when: float | None) -> str:
    """``formatTime(when)``, cached per second (it ignores fractions of a second)."""
    if when is None:
        return "-"
    return _text_second(int(when // 1))


def _message(event: LogEvent) -> str:
    text = event.get(TEXT_KEY)
    if isinstance(text, str):
        return text
    return formatEvent(event)


# Control characters a text log line keeps out, but for the line feed (its
# continuation lines are indented) and the tab: a CR, an ESC or a NUL from a
# request (an object key is any UTF-8) would hide or forge text in a
# terminal, or make tools take the file for binary.
_TEXT_UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _text_safe(text: str) -> str:
    if _TEXT_UNSAFE.search(text) is None:
        return text
    return _TEXT_UNSAFE.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def format_text_event(event: LogEvent) -> str | None:
    """One event as twistd's text line (``formatEventAsClassicLogText``):
    ``{time} [{namespace}#{level}] {message}``, continuation lines indented,
    control characters but the line feed and tab as ``\\xNN``."""
    text = event.get(TEXT_KEY)
    if not isinstance(text, str) or "log_failure" in event or "log_system" in event:
        classic = formatEventAsClassicLogText(event, formatTime=_text_time)
        return None if classic is None else _text_safe(classic)
    if not text:
        return None
    level = event.get("log_level")
    system = f"{event.get('log_namespace', '-')}#{getattr(level, 'name', '-')}"
    line = f"{_text_time(event.get('log_time'))} [{system}] {text}"
    return _text_safe(line).replace("\n", "\n\t") + "\n"


def _json_time(when: float) -> str:
    """``datetime.fromtimestamp(when, UTC).isoformat(timespec="milliseconds")``,
    with the part up to the second cached."""
    second = int(when // 1)
    # datetime.fromtimestamp's own rounding: the fraction (exact in a
    # double) to microseconds, half to even, carried into the second.
    micros = round((when - second) * 1e6)
    if micros >= 1_000_000:
        second, micros = second + 1, micros - 1_000_000
    return f"{_json_second(second)}.{micros // 1000:03d}+00:00"


def format_json_event(event: LogEvent) -> str:
    """One event as one line of JSON.

    ``message`` is the event's text as the text log would show it; the
    event's own fields follow (an access event's ``status``, ``bucket``...),
    with non-JSON values as their ``str``; a failure adds ``traceback``.
    """
    level = event.get("log_level")
    record: dict[str, Any] = {
        "time": _json_time(event.get("log_time", 0.0)),
        "level": getattr(level, "name", "info"),  # LogLevel constants are not LogLevel instances
        "namespace": event.get("log_namespace", "-"),
        "message": _message(event),
    }
    for name, value in event.items():
        if name.startswith("log_") or name in _SKIP_KEYS:
            continue
        record[f"field_{name}" if name in _RESERVED else name] = _jsonable(value)
    failure = event.get("log_failure")
    if failure is not None:
        try:
            record["traceback"] = failure.getTraceback()
        except Exception:
            record["traceback"] = repr(failure)
    return json.dumps(record) + "\n"


# Lines that may wait for the end of the reactor's turn (see BatchingFileLogObserver).
_BATCHED_LEVELS = frozenset({LogLevel.debug, LogLevel.info})


@implementer(ILogObserver)
class BatchingFileLogObserver:
    """``FileLogObserver`` (format, write, flush), except that info and debug
    lines logged by the running reactor's thread are gathered and written
    together at the end of the reactor's turn.

    Why: the access log is one info line per S3 request, and writing and
    flushing each line is a system call on the reactor thread.  The call
    releases the GIL, a pool thread waiting for it runs, and the reactor
    then waits to get it back: about a tenth of a small GET's time went
    there (docs/performance.md).  One write per turn serves every request
    that turn handled.

    Nothing is reordered and nothing waits long: a warning or worse is
    written at once, after the lines gathered before it; so is a line from
    another thread, or from before the reactor runs or after it stopped;
    the lines are written whenever they reach ``max_pending`` characters,
    and at shutdown.  A process killed outright loses at most one turn's
    info lines.
    """

    def __init__(
        self,
        out: IO[Any],
        format_event: Callable[[LogEvent], str | None],
        reactor: Any,
        *,
        max_pending: int = 64 * 1024,
    ) -> None:
        self._out = out
        self._encoding = "utf-8" if ioType(out) is not str else None
        self._format = format_event
        self._reactor = reactor
        self._max_pending = max_pending
        # Other threads log too.  Re-entrant: a signal handler that logs
        # (twisted's SIGTERM handler does) runs on the thread that may be
        # inside this observer already, holding the lock.
        self._lock = threading.RLock()
        self._pending: list[str] = []
        self._pending_chars = 0
        self._scheduled = False
        self._writing = False
        reactor.addSystemEventTrigger("after", "shutdown", self.flush)

    def __call__(self, event: LogEvent) -> None:
        text = self._format(event)
        if not text:
            return
        with self._lock:
            self._pending.append(text)
            self._pending_chars += len(text)
            if (
                self._pending_chars < self._max_pending
                and event.get("log_level") in _BATCHED_LEVELS
                and self._reactor.running
                and isInIOThread()
            ):
                if self._scheduled:
                    return
                self._scheduled = True
            else:
                self._write_pending()
                return
        self._reactor.callLater(0, self.flush)

    def flush(self) -> None:
        """Write every gathered line now."""
        with self._lock:
            self._scheduled = False
            self._write_pending()

    def _write_pending(self) -> None:
        """Write the gathered lines (the lock is held).  A line logged while
        they are being written can only come from a signal handler on this
        thread; it is left for the loop to write next (writing to the file
        from inside its own write would fail, or interleave)."""
        if self._writing:
            return
        self._writing = True
        try:
            while self._pending:
                pending, self._pending = self._pending, []
                self._pending_chars = 0
                text = "".join(pending)
                self._out.write(text if self._encoding is None else text.encode(self._encoding))
                self._out.flush()
        finally:
            self._writing = False


def make_observer(settings: LoggingSettings, out: IO[Any], reactor: Any = None) -> ILogObserver:
    """Level-filtered observer writing ``settings.format`` lines to ``out``;
    with a ``reactor``, info lines are written once per reactor turn
    (:class:`BatchingFileLogObserver`)."""
    fmt = format_json_event if settings.format == "json" else format_text_event
    base: ILogObserver
    if reactor is None:
        base = FileLogObserver(out, fmt)
    else:
        base = BatchingFileLogObserver(out, fmt, reactor)
    return _filtered(base, settings)


def _filtered(base: ILogObserver, settings: LoggingSettings) -> ILogObserver:
    predicate = LogLevelFilterPredicate(defaultLogLevel=log_level(settings.level))
    return FilteringLogObserver(base, [predicate])


class SharedLogFile(logfile.LogFile):
    """The log file of a worker process, which the other workers and the
    supervisor write to as well.

    twistd's ``LogFile`` opens an existing file for update and seeks to its
    end: each process then writes at its own offset, over what the others
    wrote since (with two workers and ``--logfile``, a torn JSON line and
    lost lines within seconds of start-up).  This one opens the file with
    ``O_APPEND``, so every write lands at the end.  It never rotates by
    itself (each process would rotate the same file on its own count): the
    supervisor rotates it (:mod:`lightningstor.supervisor`), and a worker
    follows, reopening the path, at its first write a second or more after
    the last look, when the path no longer names the file it has open (a
    rename by the supervisor or by an external tool such as logrotate).
    """

    def __init__(self, name: str, directory: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._looked = clock()
        self._identity: tuple[int, int] = (0, 0)
        super().__init__(name, directory, rotateLength=None)

    def _openFile(self) -> None:
        self.closed = False
        self._file = open(self.path, "ab", 0)  # noqa: SIM115 - held open, closed by close()
        st = os.fstat(self._file.fileno())
        self._identity = (st.st_dev, st.st_ino)
        self.size = st.st_size

    def moved(self) -> bool:
        """True if the path no longer names the file this one writes to."""
        try:
            st = os.stat(self.path)
        except OSError:
            return True
        return (st.st_dev, st.st_ino) != self._identity

    def write(self, data: Any) -> None:
        now = self._clock()
        if now - self._looked >= 1.0:
            self._looked = now
            if self.moved():
                self.reopen()
        super().write(data)


def _on_sigusr1(action: Callable[[], Any], reactor: Any) -> None:
    """What twistd does for its own log file: SIGUSR1 rotates it (the
    ``action``), unless something else already handles that signal."""
    if signal.getsignal(signal.SIGUSR1) in (None, signal.SIG_DFL):

        def on_signal(signum: int, frame: Any) -> None:
            reactor.callFromThread(action)

        signal.signal(signal.SIGUSR1, on_signal)


def log_destination(server_options: Any) -> tuple[str, str]:
    """Where twistd writes its log, given its options: ``("syslog", "")``,
    ``("stdout", "")`` or ``("file", path)`` (``--logfile``, else
    ``twistd.log`` for a daemon).  Raises ``UsageError`` for
    ``--logfile=-`` without ``-n`` (twistd's rule: a daemon has no standard
    output)."""
    logfile_name = server_options.get("logfile") or ""
    nodaemon = bool(server_options.get("nodaemon") or server_options.get("debug"))
    if logfile_name == "-" and not nodaemon:
        raise usage.UsageError("Daemons cannot log to stdout (use -n or --logfile)")
    if server_options.get("syslog"):
        return "syslog", ""
    if logfile_name == "-" or (nodaemon and not logfile_name):
        return "stdout", ""
    return "file", logfile_name or "twistd.log"


def twistd_observer_factory(
    settings: LoggingSettings, server_options: Any, reactor: Any, *, shared: bool = False
) -> Callable[[], ILogObserver]:
    """A factory for the observer twistd should use, given twistd's own
    options (``--logfile``, ``--syslog``, ``--prefix``, ``-n``): the same
    destination twistd would pick, our format and level.  ``shared``: the
    process is one of several workers writing the same file
    (:class:`SharedLogFile`).

    Raises ``UsageError`` for ``--logfile=-`` without ``-n`` (twistd's rule:
    a daemon has no standard output).
    """
    to, path = log_destination(server_options)
    # twistd opens the log before it switches user (--uid/--gid): the file
    # it creates goes to that user, whose workers append to it.
    user = run_user(server_options)

    def factory() -> ILogObserver:
        if to == "syslog":
            from twisted.python import syslog

            # syslog formats lines itself; [logging] format does not apply.
            emit = syslog.SyslogObserver(server_options.get("prefix") or "twisted").emit
            return _filtered(LegacyLogObserverWrapper(emit), settings)  # type: ignore[arg-type]
        out: IO[Any]
        if to == "stdout":
            out = sys.stdout
        else:
            created = None if user is None else CreatedPaths(user, [path])
            if shared:
                # SIGUSR1 is the supervisor's to act on; a worker that gets
                # it too (sent to the process group) only looks again.
                shared_file = SharedLogFile.fromFullPath(path)
                _on_sigusr1(lambda: shared_file.moved() and shared_file.reopen(), reactor)
                out = shared_file
            else:
                log_file = logfile.LogFile.fromFullPath(path)
                _on_sigusr1(log_file.rotate, reactor)
                out = log_file
            if created is not None:
                created.hand_over()
        return make_observer(settings, out, reactor)

    return factory


class LoggingRoot(MultiService):
    """The service handed to twistd: holds the server and, when twistd adds
    it to its Application, gives the Application our log observer (unless
    one is already set).  Starting and stopping pass through to the server.
    """

    def __init__(self, service: IService, observer_factory: Callable[[], ILogObserver]) -> None:
        super().__init__()
        self.observer_factory = observer_factory
        service.setServiceParent(self)

    def setServiceParent(self, parent: Any) -> None:
        if isinstance(parent, Componentized) and parent.getComponent(ILogObserver, None) is None:
            parent.setComponent(ILogObserver, self.observer_factory())
        super().setServiceParent(parent)

