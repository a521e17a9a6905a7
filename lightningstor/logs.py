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
import signal
import sys
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
from twisted.python.components import Componentized

from lightningstor.config import LoggingSettings

__all__ = [
    "LEVELS",
    "TEXT_KEY",
    "LoggingRoot",
    "format_json_event",
    "format_text_event",
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


def format_text_event(event: LogEvent) -> str | None:
    """One event as twistd's text line (``formatEventAsClassicLogText``):
    ``{time} [{namespace}#{level}] {message}``, continuation lines indented."""
    text = event.get(TEXT_KEY)
    if not isinstance(text, str) or "log_failure" in event or "log_system" in event:
        return formatEventAsClassicLogText(event, formatTime=_text_time)
    if not text:
        return None
    level = event.get("log_level")
    system = f"{event.get('log_namespace', '-')}#{getattr(level, 'name', '-')}"
    line = f"{_text_time(event.get('log_time'))} [{system}] {text}"
    return line.replace("\n", "\n\t") + "\n"


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


def make_observer(settings: LoggingSettings, out: IO[Any]) -> ILogObserver:
    """Level-filtered observer writing ``settings.format`` lines to ``out``."""
    base: ILogObserver
    if settings.format == "json":
        base = FileLogObserver(out, format_json_event)
    else:
        base = FileLogObserver(out, format_text_event)
    return _filtered(base, settings)


def _filtered(base: ILogObserver, settings: LoggingSettings) -> ILogObserver:
    predicate = LogLevelFilterPredicate(defaultLogLevel=log_level(settings.level))
    return FilteringLogObserver(base, [predicate])


def _rotate_on_sigusr1(log_file: logfile.LogFile, reactor: Any) -> None:
    """What twistd does for its own log file: SIGUSR1 rotates it, unless
    something else already handles that signal."""
    if signal.getsignal(signal.SIGUSR1) in (None, signal.SIG_DFL):

        def rotate(signum: int, frame: Any) -> None:
            reactor.callFromThread(log_file.rotate)

        signal.signal(signal.SIGUSR1, rotate)


def twistd_observer_factory(
    settings: LoggingSettings, server_options: Any, reactor: Any
) -> Callable[[], ILogObserver]:
    """A factory for the observer twistd should use, given twistd's own
    options (``--logfile``, ``--syslog``, ``--prefix``, ``-n``): the same
    destination twistd would pick, our format and level.

    Raises ``UsageError`` for ``--logfile=-`` without ``-n`` (twistd's rule:
    a daemon has no standard output).
    """
    logfile_name = server_options.get("logfile") or ""
    nodaemon = bool(server_options.get("nodaemon") or server_options.get("debug"))
    if logfile_name == "-" and not nodaemon:
        raise usage.UsageError("Daemons cannot log to stdout (use -n or --logfile)")

    def factory() -> ILogObserver:
        if server_options.get("syslog"):
            from twisted.python import syslog

            # syslog formats lines itself; [logging] format does not apply.
            emit = syslog.SyslogObserver(server_options.get("prefix") or "twisted").emit
            return _filtered(LegacyLogObserverWrapper(emit), settings)  # type: ignore[arg-type]
        out: IO[Any]
        if logfile_name == "-" or (nodaemon and not logfile_name):
            out = sys.stdout
        else:
            log_file = logfile.LogFile.fromFullPath(logfile_name or "twistd.log")
            _rotate_on_sigusr1(log_file, reactor)
            out = log_file
        return make_observer(settings, out)

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

