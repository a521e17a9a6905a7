"""The supervisor of ``[server] workers > 1``: a small program with no Twisted.

Why a program of its own: the supervisor only starts the workers, restarts
those that die, passes signals on and cleans up.  As a twistd process it
held about 31 MiB of its own memory, nearly all of it Twisted's reactor and
what that imports (pyOpenSSL, cryptography, asyncio), for a loop that waits
on a few pipes.  That was a fifth of an idle two-worker server, and it kept
issue 8's 5 GiB upload target (the whole server under 150 MiB) out of reach.
Written against the standard library only, it holds about 6 MiB.

How it starts: ``twistd lightningstor`` with ``workers > 1`` binds the
sockets (:class:`lightningstor.workers.WorkerSupervisor`, so a port in use
stops start-up with a message), creates the master key, then lets twistd
daemonize, write its pid file, drop privileges and report success to the
shell.  Once the reactor runs, the process replaces itself with this
program (``os.execve``): the pid stays the same, so the pid file, systemd
and anyone who signals the server see no change.  The listening sockets are
inherited; what to run is described in JSON in :data:`SPEC_ENV`.

What it does (the contract with the workers is in
:mod:`lightningstor.workers`):

* creates the table of open connections per worker
  (:mod:`lightningstor.worker_balance`) and the directory the workers write
  their metrics to (prometheus-client's multiprocess mode);
* starts the *primary* worker (index 0: root-credential bootstrap and the
  background services, which must run once) and, once it reports ready on
  its status pipe, the others; each worker gets the descriptors it inherits
  and their numbers in :data:`FDS_ENV`;
* restarts a worker that dies after start-up (after
  :data:`RESPAWN_DELAY`); one that dies before reporting ready the first
  time stops the whole server, with exit status 1 (a configuration or
  storage it cannot use); a restarted one that dies before reporting ready
  is tried again, each time after twice the delay (up to
  :data:`MAX_RESPAWN_DELAY`), while the others serve;
* rotates the log file the workers share, as twistd did for one process
  (at :data:`ROTATE_LENGTH`, and on SIGUSR1); the workers follow
  (:class:`lightningstor.logs.SharedLogFile`);
* SIGTERM or SIGINT: closes its copies of the sockets, sends SIGTERM to
  every worker (each drains its requests), kills those still running after
  ``shutdown_timeout_seconds`` + :data:`KILL_GRACE`, removes the pid file
  and exits as twistd would (by the same signal; status 1 if a worker
  failed).  SIGHUP is passed on (certificate reload).

Its own few log lines go where twistd would have written them, in the
``[logging] format`` (:class:`SupervisorLog`).
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

from lightningstor.worker_balance import ConnectionTable

# Neither typing nor dataclasses (which imports inspect) at run time: each
# is about a megabyte of a program that holds five.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "FDS_ENV",
    "MULTIPROC_ENV",
    "READY",
    "SPEC_ENV",
    "SUPERVISOR_ENV",
    "WORKER_ENV",
    "LogTarget",
    "Supervisor",
    "SupervisorLog",
    "SupervisorSpec",
    "main",
    "remove_live_gauges",
]

SPEC_ENV = "LIGHTNINGSTOR_SUPERVISOR_SPEC"
WORKER_ENV = "LIGHTNINGSTOR_WORKER"
FDS_ENV = "LIGHTNINGSTOR_WORKER_FDS"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
SUPERVISOR_ENV = "LIGHTNINGSTOR_SUPERVISOR_PID"
READY = b"ready\n"
RESPAWN_DELAY = 1.0
# A restarted worker that fails again during its start-up is tried again
# after twice the last delay, up to this.
MAX_RESPAWN_DELAY = 30.0
KILL_GRACE = 10.0
# A log file shared with the workers is rotated here, at twistd's size
# (``LogFile``'s default), looked at every second (a file may grow past it
# by what the workers write in a second).
ROTATE_LENGTH = 1_000_000
LOG_LOOK_INTERVAL = 1.0
NAMESPACE = "lightningstor.supervisor"
# What runs the program (``python -m`` would name it __main__ in tracebacks).
ENTRY = "from lightningstor.supervisor import main; main()"

# The signals the supervisor handles.  twistd's process blocks them before
# the exec and the program unblocks them once its handlers are in place: one
# sent in between (the new interpreter starts in about 25 ms) waits instead
# of killing the supervisor by its default action.
SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGCHLD})

_LEVELS = {"debug": 0, "trace": 0, "info": 1, "warn": 2, "warning": 2, "error": 3, "critical": 4}


class _Record:
    """Equality and a repr from ``__slots__`` (a dataclass without the import)."""

    __slots__: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.as_dict() == other.as_dict()  # type: ignore[attr-defined]

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.as_dict().items())
        return f"{type(self).__name__}({fields})"


class LogTarget(_Record):
    """Where twistd would have written: ``stdout``, a ``file`` or ``syslog``."""

    __slots__ = ("to", "path", "prefix", "format", "level")

    def __init__(
        self,
        to: str = "stdout",
        path: str | None = None,
        prefix: str = "twisted",
        format: str = "text",
        level: str = "info",
    ) -> None:
        self.to = to
        self.path = path
        self.prefix = prefix
        self.format = format
        self.level = level


class SupervisorSpec(_Record):
    """What twistd's process hands to this program (JSON in :data:`SPEC_ENV`)."""

    __slots__ = ("workers", "argv", "s3_fd", "metrics_fd", "grpc_fd", "shutdown_timeout", "pidfile", "pidfile_id", "log")

    def __init__(
        self,
        workers: int,
        argv: list[str],
        s3_fd: int,
        metrics_fd: int | None = None,
        grpc_fd: int | None = None,
        shutdown_timeout: float = 30.0,
        pidfile: str | None = None,
        pidfile_id: str | None = None,
        log: LogTarget | None = None,
    ) -> None:
        self.workers = workers
        self.argv = argv
        self.s3_fd = s3_fd
        self.metrics_fd = metrics_fd
        self.grpc_fd = grpc_fd
        self.shutdown_timeout = shutdown_timeout
        self.pidfile = pidfile
        # The file twistd wrote (file_identity): removed at the end if still
        # that file.  By identity, not content: after --uid the program may
        # not read what twistd wrote as root (mode 0600).
        self.pidfile_id = pidfile_id
        self.log = LogTarget() if log is None else log

    def to_json(self) -> str:
        data = self.as_dict()
        data["log"] = self.log.as_dict()
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> SupervisorSpec:
        data = json.loads(text)
        data["log"] = LogTarget(**data.get("log") or {})
        return cls(**data)

    def inherited_fds(self) -> list[int]:
        """The descriptors that must survive the ``execve``."""
        return [fd for fd in (self.s3_fd, self.metrics_fd, self.grpc_fd) if fd is not None]


class SupervisorLog:
    """The supervisor's log lines, as twistd's process wrote them: the text
    format of :func:`lightningstor.logs.format_text_event` or one JSON
    object per line, filtered by ``[logging] level``.  A log file is opened
    for each line (there are a handful), so a rotation by a worker or by
    SIGUSR1 needs nothing more."""

    def __init__(self, target: LogTarget, out: Any = None) -> None:
        self.target = target
        self.threshold = _LEVELS.get(target.level, 1)
        self.out = sys.stdout if out is None else out
        if target.to == "syslog":
            import syslog

            syslog.openlog(target.prefix, 0, syslog.LOG_USER)

    def __call__(self, level: str, message: str, **fields: Any) -> None:
        if _LEVELS[level] < self.threshold:
            return
        if self.target.to == "syslog":
            import syslog

            priority = syslog.LOG_ALERT if _LEVELS[level] >= _LEVELS["error"] else syslog.LOG_INFO
            syslog.syslog(priority, f"[-] {message}")
            return
        now = time.time()
        if self.target.format == "json":
            from datetime import UTC, datetime

            stamp = datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds")
            record = {"time": stamp, "level": level, "namespace": NAMESPACE, "message": message, **fields}
            line = json.dumps(record) + "\n"
        else:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(now))
            line = f"{stamp} [{NAMESPACE}#{level}] {message}\n"
        try:
            if self.target.to == "file" and self.target.path:
                with open(self.target.path, "a", encoding="utf-8") as f:
                    f.write(line)
            else:
                self.out.write(line)
                self.out.flush()
        except OSError:
            pass  # a full disk must not stop the supervisor

    def rotate_if_long(self) -> None:
        """Rotate a log file that has reached :data:`ROTATE_LENGTH`."""
        path = self.target.path
        if self.target.to != "file" or not path:
            return
        try:
            size = os.path.getsize(path)
        except OSError:
            return
        if size >= ROTATE_LENGTH:
            self.rotate()

    def rotate(self) -> None:
        """What twistd's ``LogFile.rotate`` does: ``path.N`` becomes
        ``path.N+1``, the file becomes ``path.1``, and a new empty file
        takes its place."""
        path = self.target.path
        if self.target.to != "file" or not path or not os.path.exists(path):
            return
        n = 1
        while os.path.exists(f"{path}.{n}"):
            n += 1
        try:
            for i in range(n - 1, 0, -1):
                os.rename(f"{path}.{i}", f"{path}.{i + 1}")
            os.rename(path, f"{path}.1")
            with open(path, "a"):
                pass  # the path names a log file at every moment, as after twistd's rotation
        except OSError:
            pass


def file_identity(path: str) -> str | None:
    """``device:inode`` of ``path``, or None if it is not there."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return f"{st.st_dev}:{st.st_ino}"


def remove_live_gauges(directory: str, pid: int) -> None:
    """What ``prometheus_client.multiprocess.mark_process_dead`` does, without
    importing prometheus-client (it doubled this program's memory at the
    first restart): the dead process's files of "live" gauges
    (``gauge_live<mode>_<pid>.db``) go, so their values stop counting.  A
    unit test checks it against the library's."""
    suffix = f"_{pid}.db"
    for name in os.listdir(directory):
        if name.startswith("gauge_live") and name.endswith(suffix) and name[6 : -len(suffix)].isalpha():
            os.remove(os.path.join(directory, name))


class _Child:
    """A worker process and what its status pipe said so far."""

    __slots__ = ("index", "process", "ready", "status", "status_fd")

    def __init__(self, index: int, process: Any, status_fd: int | None) -> None:
        self.index = index
        self.process = process  # subprocess.Popen
        self.status_fd = status_fd
        self.ready = False
        self.status = b""


class Supervisor:
    """The loop: status pipes, signals and timers, on one ``selectors`` loop.

    ``spawn`` (``subprocess.Popen``) and ``clock`` are parameters so that a
    unit test can drive it without processes.
    """

    def __init__(
        self,
        spec: SupervisorSpec,
        log: SupervisorLog,
        env: dict[str, str],
        *,
        spawn: Callable[..., Any] = subprocess.Popen,
        clock: Callable[[], float] = time.monotonic,
        kill: Callable[[int, int], None] = os.kill,
    ) -> None:
        self.spec = spec
        self.log = log
        self.env = {k: v for k, v in env.items() if k != SPEC_ENV}
        self.spawn_process = spawn
        self.clock = clock
        self.kill = kill
        self.children: dict[int, _Child] = {}
        self.selector = selectors.DefaultSelector()
        self.timers: list[tuple[float, Callable[[], None]]] = []
        self.connections: ConnectionTable | None = None
        self.multiprocess_dir: str | None = None
        self.open_fds = spec.inherited_fds()
        self.stopping: int | None = None  # the signal that stops the server (0: a failure)
        self.failed = False
        self._signals: list[int] = []
        # Indices that have been ready once, and the delay before each one's
        # next restart (doubled by every restart that fails in start-up).
        self.started_once: set[int] = set()
        self.respawn_delay: dict[int, float] = {}

    # -- start -----------------------------------------------------------

    def prepare(self) -> None:
        """What every worker inherits: the connection table and the metrics directory."""
        self.multiprocess_dir = tempfile.mkdtemp(prefix="lightningstor-metrics-")
        self.connections = ConnectionTable.create(self.spec.workers)

    def spawn(self, index: int) -> None:
        if self.stopping is not None or index in self.children:
            # A restart scheduled for a worker whose index another path
            # (the primary's readiness) has already started again.
            return
        assert self.multiprocess_dir is not None
        read_end, write_end = os.pipe()
        fds = {"s3": self.spec.s3_fd, "status": write_end}
        if self.spec.metrics_fd is not None:
            fds["metrics"] = self.spec.metrics_fd
        if self.connections is not None:
            fds["balance"] = self.connections.fd
        env = dict(self.env)
        env.update(
            {
                WORKER_ENV: str(index),
                FDS_ENV: ",".join(f"{name}={fd}" for name, fd in fds.items()),
                MULTIPROC_ENV: self.multiprocess_dir,
                SUPERVISOR_ENV: str(os.getpid()),
            }
        )
        # A worker starts with SIGHUP blocked, and unblocks it once its
        # handler is installed (lightningstor.tls.SignalReloadService): a
        # SIGHUP passed on while it starts waits for that, where its default
        # action killed the worker, which stopped the whole server.
        masked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
        try:
            process = self.spawn_process(
                self.spec.argv, env=env, pass_fds=tuple(fds.values()), stdin=subprocess.DEVNULL
            )
        except OSError as e:
            os.close(read_end)
            self.log("error", f"Worker {index} could not be started: {e}", index=index)
            self.fail()
            return
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, masked)
            os.close(write_end)
        os.set_blocking(read_end, False)
        child = _Child(index=index, process=process, status_fd=read_end)
        self.children[index] = child
        self.selector.register(read_end, selectors.EVENT_READ, child)
        self.log("info", f"Worker {index} started (pid {process.pid})", index=index, pid=process.pid)

    def status_readable(self, child: _Child) -> None:
        assert child.status_fd is not None
        try:
            data = os.read(child.status_fd, 64)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._close_status(child)
            return
        child.status += data
        if READY in child.status and not child.ready:
            child.ready = True
            self.worker_ready(child)

    def _close_status(self, child: _Child) -> None:
        if child.status_fd is not None:
            self.selector.unregister(child.status_fd)
            os.close(child.status_fd)
            child.status_fd = None

    def worker_ready(self, child: _Child) -> None:
        pid = child.process.pid
        self.log("info", f"Worker {child.index} ready (pid {pid})", index=child.index, pid=pid)
        self.started_once.add(child.index)
        self.respawn_delay.pop(child.index, None)
        if child.index == 0:
            for index in range(1, self.spec.workers):
                if index not in self.children:
                    self.spawn(index)

    # -- children ending -------------------------------------------------

    def reap(self) -> None:
        """Collect every child that has ended (after SIGCHLD)."""
        for child in list(self.children.values()):
            code = child.process.poll()
            if code is not None:
                self.worker_ended(child, 128 - code if code < 0 else code)

    def worker_ended(self, child: _Child, status: int) -> None:
        pid = child.process.pid
        if self.children.get(child.index) is child:
            del self.children[child.index]
        if child.status_fd is not None:
            # A last "ready" may still sit in the pipe.
            self.status_readable(child)
            self._close_status(child)
        if self.connections is not None:
            # Its connections died with it; the others stop leaving new
            # ones to it until its replacement claims the slot.
            self.connections.clear(child.index, pid)
        if self.multiprocess_dir is not None:
            try:
                remove_live_gauges(self.multiprocess_dir, pid)
            except OSError as e:
                self.log("error", f"Cleaning up metrics of worker {pid} failed: {e!r}", pid=pid)
        if self.stopping is not None:
            # twistd ends by re-raising the signal it was stopped with
            # (SIGINT too: Ctrl-C reaches the whole process group).
            if status not in (0, 128 + signal.SIGTERM, 128 + signal.SIGINT):
                msg = f"Worker {child.index} (pid {pid}) exited with status {status}"
                self.log("warn", msg, index=child.index, pid=pid, s=status)
                self.failed = True
            return
        index = child.index
        if not child.ready and index not in self.started_once:
            msg = f"Worker {index} (pid {pid}) exited with status {status} during start-up; stopping"
            self.log("error", msg, index=index, pid=pid, s=status)
            self.fail()
            return
        if child.ready:
            delay = RESPAWN_DELAY
            msg = f"Worker {index} (pid {pid}) exited with status {status}; restarting it"
            self.log("warn", msg, index=index, pid=pid, s=status)
        else:
            # Up before: what stops it now may pass (a disk, a store).
            delay = min(2 * self.respawn_delay.get(index, RESPAWN_DELAY), MAX_RESPAWN_DELAY)
            msg = f"Worker {index} (pid {pid}) exited with status {status} during start-up; trying again in {delay:g} s"
            self.log("error", msg, index=index, pid=pid, s=status)
        self.respawn_delay[index] = delay
        self.call_later(delay, lambda: self.spawn(index))

    # -- stop ------------------------------------------------------------

    def fail(self) -> None:
        """Stop the server with exit status 1."""
        self.failed = True
        self.stop(0)

    def stop(self, signum: int) -> None:
        if self.stopping is not None:
            return
        self.stopping = signum
        # No new connections reach the shared queue once every child has
        # stopped listening too; ours is closed first.
        for fd in self.open_fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self.open_fds = []
        for child in list(self.children.values()):
            self._signal(child, signal.SIGTERM)
        self.call_later(self.spec.shutdown_timeout + KILL_GRACE, self.kill_all)

    def kill_all(self) -> None:
        for child in list(self.children.values()):
            pid = child.process.pid
            self.log("warn", f"Worker {child.index} (pid {pid}) did not stop; killing it", index=child.index, pid=pid)
            self._signal(child, signal.SIGKILL)
        self.failed = True

    def _signal(self, child: _Child, signum: int) -> None:
        if child.process.returncode is None:
            try:
                self.kill(child.process.pid, signum)
            except ProcessLookupError:
                pass

    def finish(self) -> int:
        """Clean up once every worker has ended; the exit status."""
        if self.multiprocess_dir is not None:
            shutil.rmtree(self.multiprocess_dir, ignore_errors=True)
        if self.connections is not None:
            self.connections.close()
            self.connections = None
        pidfile = self.spec.pidfile
        if pidfile and self.spec.pidfile_id is not None and file_identity(pidfile) == self.spec.pidfile_id:
            try:
                os.remove(pidfile)
            except OSError:
                pass
        self.log("info", "All workers stopped")
        return 1 if self.failed else 0

    # -- the loop --------------------------------------------------------

    def call_later(self, delay: float, call: Callable[[], None]) -> None:
        self.timers.append((self.clock() + delay, call))
        self.timers.sort(key=lambda t: t[0])

    def run_due_timers(self) -> None:
        now = self.clock()
        while self.timers and self.timers[0][0] <= now:
            _, call = self.timers.pop(0)
            call()

    def look_at_log(self) -> None:
        self.log.rotate_if_long()
        if self.stopping is None:
            self.call_later(LOG_LOOK_INTERVAL, self.look_at_log)

    def handle_signal(self, signum: int) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT):
            self.stop(signum)
        elif signum == signal.SIGHUP:
            for child in list(self.children.values()):
                self._signal(child, signal.SIGHUP)
        elif signum == signal.SIGUSR1:
            self.log.rotate()
        elif signum == signal.SIGCHLD:
            self.reap()

    def run(self) -> int:
        """Serve until stopped; the exit status (twistd's, for a signal)."""
        wake_read, wake_write = os.pipe()
        os.set_blocking(wake_read, False)
        os.set_blocking(wake_write, False)
        self.selector.register(wake_read, selectors.EVENT_READ, None)
        signal.set_wakeup_fd(wake_write)
        for signum in SIGNALS:
            signal.signal(signum, lambda n, frame: self._signals.append(n))
        signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)  # blocked since before the exec
        self.prepare()
        self.spawn(0)
        if self.log.target.to == "file":
            self.look_at_log()
        while self.stopping is None or self.children:
            timeout = None if not self.timers else max(0.0, self.timers[0][0] - self.clock())
            for key, _ in self.selector.select(timeout):
                if key.data is None:
                    try:
                        while os.read(wake_read, 256):
                            pass
                    except BlockingIOError:
                        pass
                else:
                    self.status_readable(key.data)
            while self._signals:
                self.handle_signal(self._signals.pop(0))
            self.reap()
            self.run_due_timers()
        return self.finish()


def main() -> None:
    """The program ``twistd lightningstor`` becomes (module docstring)."""
    spec = SupervisorSpec.from_json(os.environ[SPEC_ENV])
    log = SupervisorLog(spec.log)
    supervisor = Supervisor(spec, log, dict(os.environ))
    status = supervisor.run()
    if status == 0 and supervisor.stopping:
        # As twistd does: end by the signal that stopped the server.
        signal.signal(supervisor.stopping, signal.SIG_DFL)
        os.kill(os.getpid(), supervisor.stopping)
    sys.exit(status)
