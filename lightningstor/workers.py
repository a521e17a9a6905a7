"""``[server] workers = N``: N reactor processes serving one S3 port.

CPython runs one thread of Python at a time, so one reactor process uses one
core.  With ``workers > 1`` the process twistd starts becomes a *supervisor*:

* it binds the listening sockets itself (S3, and the metrics listener when
  ``server.metrics_addr`` is set) and hands them to N child processes, which
  adopt them (``reactor.adoptStreamPort``) and accept from the one shared
  queue, TLS included, because each child wraps the adopted port in its own
  factory;
* it creates a table of open connections per worker in shared memory
  (:mod:`lightningstor.worker_balance`), inherited by every child: a worker
  holding more than its fair share of the S3 connections leaves the next
  one to the others, so keep-alive connections spread evenly; the slot of a
  worker that dies is cleared;
* grpcio cannot adopt a socket, so the gRPC port is *reserved* by the
  supervisor (bound with ``SO_REUSEPORT``, never listening: a foreign server
  still cannot take it, and port 0 is resolved once) and each child listens
  on it with ``SO_REUSEPORT``;
* it creates the master key before any child starts (two children racing to
  create it would encrypt credentials under different keys), starts the
  *primary* worker (index 0: root-credential bootstrap and the background
  services - garbage collector, upload expiry, scrub, store gauges - which
  must run once, not N times) and, once it reports ready, the others;
* metrics go through prometheus-client's multiprocess mode: each child writes
  its samples to files in a directory the supervisor owns
  (``PROMETHEUS_MULTIPROC_DIR``), and whichever child answers ``/metrics``
  aggregates them all (``MultiProcessCollector``);
* SIGTERM stops it gracefully: it closes its copy of the sockets, sends
  SIGTERM to every child (each drains its requests as a single process
  does), waits, and exits non-zero if a child failed.  SIGHUP is passed on
  (certificate reload).  A worker that dies after start-up is restarted; one
  that dies before reporting ready stops the whole server (exit status 1).

Children are ``twistd -n lightningstor`` with the same options;
the environment tells them which descriptors they inherit
(:data:`WORKER_ENV`, :data:`FDS_ENV`).  Every response of a worker carries
``x-lightningstor-worker: <pid>`` so the spreading can be observed.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from lightningstor.config import Settings, format_address, parse_address
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
    "worker_role_from_env",
]

log = Logger()

WORKER_ENV = "LIGHTNINGSTOR_WORKER"
FDS_ENV = "LIGHTNINGSTOR_WORKER_FDS"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
SUPERVISOR_ENV = "LIGHTNINGSTOR_SUPERVISOR_PID"
WORKER_HEADER = b"x-lightningstor-worker"

# Descriptor numbers in the child (fixed: 0-2 are stdio).
_S3_FD = 3
_STATUS_FD = 4
_METRICS_FD = 5
_BALANCE_FD = 6
_READY = b"ready\n"
_RESPAWN_DELAY = 1.0
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
            os.write(self.status_fd, _READY)
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
    (same user).  A server already listening there makes this fail; once the
    workers listen, any other binder fails.  (Between the two, another
    ``SO_REUSEADDR`` binder could slip in; the workers then fail to start and
    the supervisor exits.)"""
    host, port = parse_address(address, key=key)
    family, _, _, _, sockaddr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
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


@dataclass
class _Child:
    index: int
    protocol: _WorkerProtocol
    started_at: float
    ready: bool = False
    pid: int | None = None
    ended: Deferred[int] = field(default_factory=Deferred)


class _WorkerProtocol(ProcessProtocol):
    def __init__(self, supervisor: WorkerSupervisor, index: int) -> None:
        self.supervisor = supervisor
        self.index = index
        self.child: _Child | None = None
        self._status = b""

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        if childFD != _STATUS_FD:
            return
        self._status += data
        if _READY in self._status and self.child is not None and not self.child.ready:
            self.child.ready = True
            self.supervisor._worker_ready(self.child)

    def processEnded(self, reason: Failure) -> None:
        code = getattr(reason.value, "exitCode", None)
        signalled = getattr(reason.value, "signal", None)
        status = 1 if code is None else int(code)
        if signalled is not None:
            status = 128 + int(signalled)
        if self.child is not None:
            self.supervisor._worker_ended(self.child, status)


class WorkerSupervisor(Service):
    """The process twistd runs when ``workers > 1``: binds, spawns, supervises.

    ``argv`` is the child's command line (``twistd -n ...
    lightningstor ...``), without the descriptors, which this service adds.
    """

    def __init__(self, settings: Settings, reactor: Any, argv: list[str], env: dict[str, str]) -> None:
        self.settings = settings
        self.reactor = reactor
        self.argv = argv
        self.env = env
        self.workers = settings.server.workers
        self.children: dict[int, _Child] = {}
        self.s3_socket: socket.socket | None = None
        self.metrics_socket: socket.socket | None = None
        self.grpc_socket: socket.socket | None = None
        self.grpc_addr: str | None = None
        self.multiprocess_dir: str | None = None
        self.connections: ConnectionTable | None = None
        self.failed = False
        self._stopping = False
        self._previous_sighup: Any = None

    # -- start -----------------------------------------------------------

    def bind(self) -> None:
        """Bind every socket (called before twistd daemonizes, so start-up
        errors such as a port in use stop it with a message)."""
        from lightningstor.core.credentials import load_or_create_master_key

        server = self.settings.server
        os.makedirs(self.settings.data_dir, exist_ok=True)
        load_or_create_master_key(self.settings.security.master_key_file)
        try:
            self.s3_socket = bind_listener(server.s3_addr, key="server.s3_addr")
            if server.metrics_addr is not None:
                self.metrics_socket = bind_listener(server.metrics_addr, key="server.metrics_addr")
            if server.grpc_enabled:
                self.grpc_socket = reserve_port(server.grpc_addr, key="server.grpc_addr")
                host = parse_address(server.grpc_addr, key="server.grpc_addr")[0]
                self.grpc_addr = format_address(host, self.grpc_socket.getsockname()[1])
        except OSError:
            self._close_sockets()
            raise

    def startService(self) -> None:
        super().startService()
        if self.s3_socket is None:
            self.bind()
        self.multiprocess_dir = tempfile.mkdtemp(prefix="lightningstor-metrics-")
        self.connections = ConnectionTable.create(self.workers)
        assert self.s3_socket is not None
        host, port = self.s3_socket.getsockname()[:2]
        log.info(
            "S3 API listening on {host}:{port} ({scheme}), {n} worker processes",
            host=host if ":" not in host else f"[{host}]",
            port=port,
            scheme="https" if self.settings.server.tls is not None else "http",
            n=self.workers,
        )
        if self.grpc_addr is not None:
            log.info("gRPC API listening on {addr} (shared by the workers)", addr=self.grpc_addr)
        self.reactor.callWhenRunning(self._start_running)

    def _start_running(self) -> None:
        self._previous_sighup = signal.signal(signal.SIGHUP, self._forward_sighup)
        self._spawn(0)

    def _forward_sighup(self, signum: int, frame: Any) -> None:
        for child in list(self.children.values()):
            if child.pid is not None:
                try:
                    os.kill(child.pid, signal.SIGHUP)
                except ProcessLookupError:
                    pass

    def _spawn(self, index: int) -> None:
        if self._stopping:
            return
        assert self.s3_socket is not None and self.multiprocess_dir is not None
        child_fds: dict[int, Any] = {0: "w", 1: 1, 2: 2, _S3_FD: self.s3_socket.fileno(), _STATUS_FD: "r"}
        fds = f"s3={_S3_FD},status={_STATUS_FD}"
        if self.metrics_socket is not None:
            child_fds[_METRICS_FD] = self.metrics_socket.fileno()
            fds += f",metrics={_METRICS_FD}"
        if self.connections is not None:
            child_fds[_BALANCE_FD] = self.connections.fd
            fds += f",balance={_BALANCE_FD}"
        env = dict(self.env)
        env.update(
            {
                WORKER_ENV: str(index),
                FDS_ENV: fds,
                MULTIPROC_ENV: self.multiprocess_dir,
                SUPERVISOR_ENV: str(os.getpid()),
            }
        )
        argv = list(self.argv)
        if self.grpc_addr is not None:
            argv += ["--grpc-addr", self.grpc_addr]
        protocol = _WorkerProtocol(self, index)
        child = _Child(index=index, protocol=protocol, started_at=time.monotonic())
        protocol.child = child
        self.children[index] = child
        transport = self.reactor.spawnProcess(protocol, argv[0], argv, env=env, childFDs=child_fds)
        child.pid = transport.pid
        log.info("Worker {index} started (pid {pid})", index=index, pid=child.pid)

    def _worker_ready(self, child: _Child) -> None:
        log.info("Worker {index} ready (pid {pid})", index=child.index, pid=child.pid)
        if child.index == 0:
            for index in range(1, self.workers):
                if index not in self.children:
                    self._spawn(index)

    def _worker_ended(self, child: _Child, status: int) -> None:
        if self.children.get(child.index) is child:
            del self.children[child.index]
        if self.connections is not None and child.pid is not None:
            # Its connections died with it; the others stop leaving new
            # ones to it until its replacement claims the slot.
            self.connections.clear(child.index, child.pid)
        if self.multiprocess_dir is not None and child.pid is not None:
            try:
                from prometheus_client import multiprocess

                multiprocess.mark_process_dead(child.pid, self.multiprocess_dir)
            except Exception:
                log.failure("Cleaning up metrics of worker {pid} failed", pid=child.pid)
        child.ended.callback(status)
        if self._stopping:
            # twistd ends by re-raising the signal it was stopped with
            # (SIGINT too: Ctrl-C reaches the whole process group).
            if status not in (0, 128 + signal.SIGTERM, 128 + signal.SIGINT):
                log.warn("Worker {index} (pid {pid}) exited with status {s}", index=child.index, pid=child.pid, s=status)
                self.failed = True
            return
        if not child.ready:
            log.error(
                "Worker {index} (pid {pid}) exited with status {s} during start-up; stopping",
                index=child.index,
                pid=child.pid,
                s=status,
            )
            self._fail()
            return
        log.warn(
            "Worker {index} (pid {pid}) exited with status {s}; restarting it",
            index=child.index,
            pid=child.pid,
            s=status,
        )
        self.reactor.callLater(_RESPAWN_DELAY, self._spawn, child.index)

    def _fail(self) -> None:
        """Stop the server with exit status 1 (twistd has no exit-status API)."""
        if self.failed:
            return
        self.failed = True
        self.reactor.addSystemEventTrigger("after", "shutdown", os._exit, 1)
        if self.reactor.running:
            self.reactor.stop()

    # -- stop ------------------------------------------------------------

    def _close_sockets(self) -> None:
        for name in ("s3_socket", "metrics_socket", "grpc_socket"):
            sock = getattr(self, name)
            if sock is not None:
                sock.close()
                setattr(self, name, None)

    def stopService(self) -> Any:
        super().stopService()
        self._stopping = True
        # No new connections reach the shared queue once every child has
        # stopped listening too; ours is closed first.
        self._close_sockets()
        if self._previous_sighup is not None:
            signal.signal(signal.SIGHUP, self._previous_sighup)
        waits = []
        for child in list(self.children.values()):
            waits.append(child.ended)
            if child.pid is not None:
                try:
                    os.kill(child.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = self.settings.server.shutdown_timeout_seconds + 10.0
        kill_call = self.reactor.callLater(deadline, self._kill_all)
        done: Deferred[Any] = DeferredList(waits)

        def finished(_: Any) -> None:
            if kill_call.active():
                kill_call.cancel()
            if self.multiprocess_dir is not None:
                shutil.rmtree(self.multiprocess_dir, ignore_errors=True)
            if self.connections is not None:
                self.connections.close()
                self.connections = None
            if self.failed and not getattr(self, "_exit_registered", False):
                self._exit_registered = True
                self.reactor.addSystemEventTrigger("after", "shutdown", os._exit, 1)
            log.info("All workers stopped")

        done.addCallback(finished)
        return done

    def _kill_all(self) -> None:
        for child in list(self.children.values()):
            if child.pid is not None:
                log.warn("Worker {index} (pid {pid}) did not stop; killing it", index=child.index, pid=child.pid)
                try:
                    os.kill(child.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.failed = True


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
