"""``[server] workers = N``: N reactor processes serving one S3 port.

CPython runs one thread of Python at a time, so one reactor process uses one
core.  With ``workers > 1`` the process twistd starts becomes a *supervisor*:

* it binds the listening sockets itself (S3, and the metrics listener when
  ``server.metrics_addr`` is set) and hands them to N child processes, which
  adopt them (``reactor.adoptStreamPort``) and accept from the one shared
  queue, TLS included, because each child wraps the adopted port in its own
  factory;
* grpcio cannot adopt a socket, so the gRPC port is *reserved* by the
  supervisor (bound with ``SO_REUSEPORT``, never listening: a foreign server
  still cannot take it, and port 0 is resolved once) and each child listens
  on it with ``SO_REUSEPORT``;
* it creates the master key before any child starts (two children racing to
  create it would encrypt credentials under different keys);
* once twistd has daemonized and the reactor runs, it replaces itself with
  the supervisor program (:mod:`lightningstor.supervisor`, no Twisted in
  it: it holds a fifth of the memory), which starts the *primary* worker
  (index 0: root-credential bootstrap and the background services - garbage
  collector, upload expiry, scrub, store gauges - which must run once, not
  N times) and, once it reports ready, the others; restarts workers that
  die; passes SIGHUP on (certificate reload); and on SIGTERM closes its
  copy of the sockets and stops every worker (each drains its requests as a
  single process does);
* each worker finds a table of open connections per worker in shared
  memory (:mod:`lightningstor.worker_balance`): a worker holding more than
  its fair share of the S3 connections leaves the next one to the others,
  so keep-alive connections spread evenly; the slot of a worker that dies
  is cleared;
* metrics go through prometheus-client's multiprocess mode: each child writes
  its samples to files in a directory the supervisor owns
  (``PROMETHEUS_MULTIPROC_DIR``), and whichever child answers ``/metrics``
  aggregates them all (``MultiProcessCollector``).

Children are ``twistd -n lightningstor`` with the same options;
the environment tells them which descriptors they inherit
(:data:`WORKER_ENV`, :data:`FDS_ENV`).  Every response of a worker carries
``x-lightningstor-worker: <pid>`` so the spreading can be observed.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from dataclasses import dataclass
from typing import Any

from twisted.application.service import Service
from twisted.logger import Logger

from lightningstor import supervisor as program
from lightningstor.config import Settings, format_address, parse_address
from lightningstor.errors import ConfigError
from lightningstor.supervisor import (
    FDS_ENV,
    MULTIPROC_ENV,
    READY,
    SPEC_ENV,
    SUPERVISOR_ENV,
    WORKER_ENV,
    LogTarget,
    SupervisorSpec,
)
from lightningstor.tcp import accept_one_at_a_time, prepare_s3_port
from lightningstor.worker_balance import AcceptBalancer, ConnectionTable

__all__ = [
    "FDS_ENV",
    "WORKER_ENV",
    "WORKER_HEADER",
    "WorkerRole",
    "WorkerSupervisor",
    "adopt_port",
    "bind_listener",
    "reserve_port",
    "supervisor_log",
    "worker_role_from_env",
]

log = Logger()

WORKER_HEADER = b"x-lightningstor-worker"
_S3_FD = 3  # the first descriptor after stdio, if the environment names none
# ``python -m twisted`` is ``twist``, not ``twistd``; the twistd script may
# not sit beside the interpreter, so run its entry point directly.
_TWISTD = "from twisted.scripts.twistd import run; run()"


@dataclass(frozen=True)
class WorkerRole:
    """What a worker child was told by its supervisor."""

    index: int
    s3_fd: int
    status_fd: int | None = None
    metrics_fd: int | None = None
    multiprocess_dir: str | None = None
    supervisor_pid: int | None = None
    balance_fd: int | None = None

    @property
    def primary(self) -> bool:
        """The one worker that bootstraps and runs the background services."""
        return self.index == 0

    def report_ready(self) -> None:
        """Tell the supervisor start-up is complete (one line on the status pipe)."""
        if self.status_fd is None:
            return
        try:
            os.write(self.status_fd, READY)
            os.close(self.status_fd)
        except OSError:
            log.warn("Could not report readiness to the supervisor")


def worker_role_from_env(env: dict[str, str] | os._Environ[str]) -> WorkerRole | None:
    """The role of this process if a supervisor started it, else None."""
    index = env.get(WORKER_ENV)
    if index is None:
        return None
    fds = dict(item.split("=", 1) for item in env.get(FDS_ENV, "").split(",") if "=" in item)
    return WorkerRole(
        index=int(index),
        s3_fd=int(fds.get("s3", _S3_FD)),
        status_fd=int(fds["status"]) if "status" in fds else None,
        metrics_fd=int(fds["metrics"]) if "metrics" in fds else None,
        multiprocess_dir=env.get(MULTIPROC_ENV) or None,
        supervisor_pid=int(env[SUPERVISOR_ENV]) if env.get(SUPERVISOR_ENV) else None,
        balance_fd=int(fds["balance"]) if "balance" in fds else None,
    )


def bind_listener(address: str, *, key: str, backlog: int = 1024) -> socket.socket:
    """A listening TCP socket on ``address`` (``host:port``), non-blocking,
    ``SO_REUSEADDR`` like Twisted's own ports; raises ``OSError`` if taken."""
    host, port = parse_address(address, key=key)
    family, _, _, _, sockaddr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def reserve_port(address: str, *, key: str) -> socket.socket:
    """A socket bound (not listening) to ``address`` with ``SO_REUSEPORT``:
    holds the port for children that listen on it with ``SO_REUSEPORT``
    (same user).  A server already listening there makes this fail, even
    one that listens with ``SO_REUSEPORT`` itself; once the workers listen,
    any other binder fails.  (Between the two, another
    ``SO_REUSEADDR`` binder could slip in; the workers then fail to start and
    the supervisor exits.)"""
    host, port = parse_address(address, key=key)
    family, _, _, _, sockaddr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    if port:
        # Another server of the same user listening there with SO_REUSEPORT
        # (a second multi-worker LightningStor) would let this bind share
        # its port, and the kernel split gRPC connections between the two.
        # A bind without SO_REUSEPORT fails while anything listens there.
        probe = socket.socket(family, socket.SOCK_STREAM)
        try:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(sockaddr)
        finally:
            probe.close()
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(sockaddr)
    except BaseException:
        sock.close()
        raise
    return sock


def adopt_port(reactor: Any, fd: int, factory: Any, *, s3: bool = False) -> Any:
    """Listen with ``factory`` on the inherited listening socket ``fd``.

    ``adoptStreamPort`` duplicates the descriptor, so the inherited one is
    closed here; the address family is read from the socket itself.  The
    port is shared with the other workers, so it accepts one connection per
    wake-up (:func:`lightningstor.tcp.accept_one_at_a_time`).  The ``s3``
    port (keep-alive connections carry the load) is also balanced: a worker
    above its fair share of open connections leaves pending ones to the
    other workers (:mod:`lightningstor.worker_balance`), and its connections
    send eagerly (:func:`lightningstor.tcp.prepare_s3_port`); the metrics
    port, scraped now and then, is neither.
    """
    probe = socket.socket(fileno=fd)
    family = probe.family
    probe.detach()
    port = reactor.adoptStreamPort(fd, family, factory)
    os.close(fd)
    if not s3:
        accept_one_at_a_time(port)
        return port
    balancer = None
    if _connections is not None:
        table, index = _connections
        balancer = AcceptBalancer(table, index, reactor)
    prepare_s3_port(port, one_accept=True, balancer=balancer)
    return port


def _set_parent_death_signal() -> None:
    """Linux: get SIGTERM if the supervisor dies (SIGKILL, crash), so no
    orphaned worker keeps serving a port nobody manages.  Best effort."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    except Exception:
        pass


# This worker's view of the supervisor's connection table, and its slot.
_connections: tuple[ConnectionTable, int] | None = None


def prepare_worker_process(role: WorkerRole) -> None:
    """Per-child set-up that must happen before its services start."""
    global _connections
    _set_parent_death_signal()
    if role.supervisor_pid is not None and os.getppid() != role.supervisor_pid:
        # The supervisor died before prctl took effect.
        raise SystemExit("lightningstor worker: supervisor is gone")
    if role.balance_fd is not None and _connections is None:
        try:
            _connections = (ConnectionTable.attach(role.balance_fd), role.index)
        except (OSError, ValueError):
            # Unbalanced accepts still serve every connection.
            log.failure("Could not map the connection table; connections are not balanced")


def stop_signals_once(reactor: Any) -> None:
    """Make a server process act on its first SIGTERM or SIGINT only
    (called once the reactor runs, over Twisted's handlers): a worker, or
    the one process of a one-worker server.  The supervisor's SIGTERM and
    one sent to the whole process group (Ctrl-C, a kill of the group) arrive
    together, and Twisted answered the second with a ReactorNotRunning
    traceback at critical level; a worker that hangs is the supervisor's to
    kill (SIGKILL after the shutdown timeout)."""
    received: list[int] = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        original = signal.getsignal(signum)
        if not callable(original):
            continue

        def first_only(sig: int, frame: Any, original: Any = original) -> None:
            if not received:
                received.append(sig)
                original(sig, frame)

        signal.signal(signum, first_only)


class WorkerSupervisor(Service):
    """What twistd runs when ``workers > 1``: binds the sockets, then becomes
    the supervisor program (:mod:`lightningstor.supervisor`).

    ``argv`` is the child's command line (``twistd -n ...
    lightningstor ...``); ``log`` is where and how the supervisor logs
    (twistd's destination, ``[logging]``'s format and level).
    """

    def __init__(
        self,
        settings: Settings,
        reactor: Any,
        argv: list[str],
        env: dict[str, str],
        log: LogTarget | None = None,
        pidfile: str | None = None,
    ) -> None:
        self.settings = settings
        self.reactor = reactor
        self.argv = argv
        self.env = env
        self.log_target = log or supervisor_log(settings, None)
        self.pidfile = pidfile
        self.s3_socket: socket.socket | None = None
        self.metrics_socket: socket.socket | None = None
        self.grpc_socket: socket.socket | None = None
        self.grpc_addr: str | None = None
        self.execve: Any = os.execve
        self._mask: set[int | signal.Signals] | None = None  # the signal mask before startService

    # -- start -----------------------------------------------------------

    def bind(self) -> None:
        """Bind every socket (called before twistd daemonizes, so start-up
        errors such as a port in use stop it with a message).  Raises
        ``ConfigError`` naming the data directory, or the setting and the
        address that could not be bound."""
        from lightningstor.core.credentials import open_master_key

        server = self.settings.server
        try:
            os.makedirs(self.settings.data_dir, mode=0o700, exist_ok=True)  # owner only, as server.build makes it
        except OSError as e:
            raise ConfigError(f"data_dir: cannot prepare {self.settings.data_dir}: {e.strerror or e}") from None
        open_master_key(self.settings.security.master_key_file, create=True)
        key, address = "server.s3_addr", server.s3_addr
        try:
            self.s3_socket = bind_listener(address, key=key)
            if server.metrics_addr is not None:
                key, address = "server.metrics_addr", server.metrics_addr
                self.metrics_socket = bind_listener(address, key=key)
            if server.grpc_enabled:
                key, address = "server.grpc_addr", server.grpc_addr
                self.grpc_socket = reserve_port(address, key=key)
                host = parse_address(address, key=key)[0]
                self.grpc_addr = format_address(host, self.grpc_socket.getsockname()[1])
        except OSError as e:
            self._close_sockets()
            raise ConfigError(f"{key}: cannot listen on {address}: {e.strerror or e}") from None

    def startService(self) -> None:
        super().startService()
        if self.s3_socket is None:
            self.bind()
        assert self.s3_socket is not None
        host, port = self.s3_socket.getsockname()[:2]
        log.info(
            "S3 API listening on {host}:{port} ({scheme}), {n} worker processes",
            host=host if ":" not in host else f"[{host}]",
            port=port,
            scheme="https" if self.settings.server.tls is not None else "http",
            n=self.settings.server.workers,
        )
        if self.grpc_addr is not None:
            log.info("gRPC API listening on {addr} (shared by the workers)", addr=self.grpc_addr)
        # The supervisor's signals wait from here until the program has
        # its handlers: twistd tells the shell it is up when this returns,
        # and a SIGHUP or SIGUSR1 before the exec (the reactor handles
        # neither) would end the process by its default action.
        self._mask = signal.pthread_sigmask(signal.SIG_BLOCK, program.SIGNALS)
        # Not before the reactor runs: twistd tells the shell that started
        # a daemon it is up only after startService returns, on a pipe the
        # exec would close.  One more turn lets the log observer write what
        # it gathered.
        self.reactor.callWhenRunning(self.reactor.callLater, 0, self.become_supervisor)

    def spec(self) -> SupervisorSpec:
        """What the supervisor program is told (the sockets by descriptor)."""
        assert self.s3_socket is not None
        argv = list(self.argv)
        if self.grpc_addr is not None:
            argv += ["--grpc-addr", self.grpc_addr]
        pidfile = os.path.abspath(self.pidfile) if self.pidfile else None
        return SupervisorSpec(
            workers=self.settings.server.workers,
            argv=argv,
            s3_fd=self.s3_socket.fileno(),
            metrics_fd=None if self.metrics_socket is None else self.metrics_socket.fileno(),
            grpc_fd=None if self.grpc_socket is None else self.grpc_socket.fileno(),
            shutdown_timeout=self.settings.server.shutdown_timeout_seconds,
            pidfile=pidfile,
            # Written by twistd before the service started.
            pidfile_id=None if pidfile is None else program.file_identity(pidfile),
            log=self.log_target,
        )

    def become_supervisor(self) -> None:
        """Replace this process with the supervisor program (same pid)."""
        spec = self.spec()
        for fd in spec.inherited_fds():
            os.set_inheritable(fd, True)
        env = dict(self.env)
        env[SPEC_ENV] = spec.to_json()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        # Held until the program has its handlers (SIGNALS).
        masked = signal.pthread_sigmask(signal.SIG_BLOCK, program.SIGNALS)
        if self._mask is not None:
            masked = self._mask  # as it was before startService blocked them
        try:
            # twistd's own arguments follow, ignored, so that ps and
            # pgrep -f still show what was started.
            self.execve(sys.executable, [sys.executable, "-c", program.ENTRY, *sys.argv], env)
        except OSError:
            signal.pthread_sigmask(signal.SIG_SETMASK, masked)
            log.failure("Could not start the worker supervisor")
            self.reactor.addSystemEventTrigger("after", "shutdown", os._exit, 1)
            self.reactor.stop()

    # -- stop (only if the exec never happened) ----------------------------

    def _close_sockets(self) -> None:
        for name in ("s3_socket", "metrics_socket", "grpc_socket"):
            sock = getattr(self, name)
            if sock is not None:
                sock.close()
                setattr(self, name, None)

    def stopService(self) -> Any:
        super().stopService()
        self._close_sockets()


def supervisor_log(settings: Settings, parent: Any) -> LogTarget:
    """Where and how the supervisor program logs: where twistd would
    (``parent`` is twistd's options, or None), in ``[logging]``'s format and
    level."""
    from lightningstor.logs import log_destination

    fmt, level = settings.logging.format, settings.logging.level
    if parent is None:
        return LogTarget(format=fmt, level=level)
    to, path = log_destination(parent)
    return LogTarget(
        to=to,
        path=os.path.abspath(path) if path else None,
        prefix=parent.get("prefix") or "twisted",
        format=fmt,
        level=level,
    )


def child_argv(options: Any, settings: Settings) -> list[str]:
    """The command line of a worker: twistd in the foreground with the same
    options and log destination as the supervisor."""
    argv = [sys.executable, "-c", _TWISTD, "-n", "--pidfile="]
    parent = getattr(options, "parent", None)
    if parent is not None:
        logfile = parent.get("logfile") or ""
        if parent.get("syslog"):
            argv += ["--syslog", "--prefix", parent.get("prefix") or "twisted"]
        elif logfile and logfile != "-":
            argv += ["--logfile", os.path.abspath(logfile)]
        elif not logfile and not (parent.get("nodaemon") or parent.get("debug")):
            argv += ["--logfile", os.path.abspath("twistd.log")]
    argv.append("lightningstor")
    if options["config"]:
        argv += ["--config", os.path.abspath(options["config"])]
    for name in ("log-level", "s3-addr"):
        if options[name]:
            argv += [f"--{name}", options[name]]
    argv += ["--data-dir", os.path.abspath(settings.data_dir)]
    return argv
