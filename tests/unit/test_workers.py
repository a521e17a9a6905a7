"""lightningstor.workers: what a worker learns from its environment and the
command line a supervisor gives its workers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lightningstor.config import load_settings
from lightningstor.tap import Options
from lightningstor.workers import bind_listener, child_argv, reserve_port, worker_role_from_env


def test_no_worker_environment_means_a_plain_server() -> None:
    """Without LIGHTNINGSTOR_WORKER the process is not a worker (it serves or supervises)."""
    assert worker_role_from_env({"LIGHTNINGSTOR_WORKER_FDS": "s3=3"}) is None


def test_worker_role_reads_index_descriptors_and_metrics_dir() -> None:
    """The descriptors, the metrics directory and the supervisor pid come from
    the environment; only index 0 is the primary."""
    role = worker_role_from_env(
        {
            "LIGHTNINGSTOR_WORKER": "1",
            "LIGHTNINGSTOR_WORKER_FDS": "s3=3,status=4,metrics=5",
            "PROMETHEUS_MULTIPROC_DIR": "/tmp/m",
            "LIGHTNINGSTOR_SUPERVISOR_PID": "42",
        }
    )
    assert role is not None
    assert (role.index, role.s3_fd, role.status_fd, role.metrics_fd) == (1, 3, 4, 5)
    assert role.multiprocess_dir == "/tmp/m" and role.supervisor_pid == 42
    assert not role.primary
    primary = worker_role_from_env({"LIGHTNINGSTOR_WORKER": "0", "LIGHTNINGSTOR_WORKER_FDS": "s3=3"})
    assert primary is not None and primary.primary and primary.metrics_fd is None


def test_workers_option_and_environment_set_server_workers(tmp_path: Path) -> None:
    """--workers and LIGHTNINGSTOR_WORKERS (text) become the integer server.workers."""
    options = Options()
    options.parseOptions(["--data-dir", str(tmp_path), "--workers", "3"])
    assert options["settings"].server.workers == 3
    assert load_settings(env={"LIGHTNINGSTOR_WORKERS": "2"}).server.workers == 2


def test_child_command_line_repeats_the_options_with_absolute_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers run twistd in the foreground with the supervisor's config file
    (absolute: a daemon may change directory), S3 address and data dir; the
    worker count itself is not passed on."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.toml").write_text("")
    options = Options()
    options.parseOptions(["--config", "s.toml", "--s3-addr", "127.0.0.1:0", "--data-dir", "d", "--workers", "2"])
    argv = child_argv(options, options["settings"])
    assert argv[:2] == [sys.executable, "-c"]
    assert "-n" in argv and "lightningstor" in argv
    tail = argv[argv.index("lightningstor") + 1 :]
    assert tail[tail.index("--config") + 1] == str(tmp_path / "s.toml")
    assert tail[tail.index("--data-dir") + 1] == str(tmp_path / "d")
    assert tail[tail.index("--s3-addr") + 1] == "127.0.0.1:0"
    assert "--workers" not in tail


def test_reserved_grpc_port_is_shared_by_workers_only() -> None:
    """The supervisor's reservation of the gRPC port lets SO_REUSEPORT
    listeners (its workers) share it; once they listen, a plain bind fails."""
    held = reserve_port("127.0.0.1:0", key="server.grpc_addr")
    workers = []
    try:
        port = held.getsockname()[1]
        for _ in range(2):
            worker = socket.socket()
            workers.append(worker)
            worker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            worker.bind(("127.0.0.1", port))
            worker.listen()
        with pytest.raises(OSError):
            bind_listener(f"127.0.0.1:{port}", key="server.grpc_addr")
        # Nor can a second server's supervisor reserve it, though its own
        # workers would listen with SO_REUSEPORT as these do.
        with pytest.raises(OSError):
            reserve_port(f"127.0.0.1:{port}", key="server.grpc_addr").close()
    finally:
        for worker in workers:
            worker.close()
        held.close()
    # Free again: it can be reserved (a restart on a fixed port).
    reserve_port(f"127.0.0.1:{port}", key="server.grpc_addr").close()


def test_bound_s3_socket_is_listening_and_non_blocking() -> None:
    """The socket the workers adopt is already listening (connections queue
    before any worker is up) and non-blocking (the reactors require it)."""
    sock = bind_listener("127.0.0.1:0", key="server.s3_addr")
    try:
        assert not sock.getblocking()
        client = socket.create_connection(sock.getsockname()[:2], timeout=2)
        client.close()
    finally:
        sock.close()
    assert os.name == "posix"


def test_the_supervisor_does_not_load_the_server(tmp_path: Any) -> None:
    """With ``workers > 1`` the process twistd starts only binds and
    supervises: it must not import the server's modules (about a third of a
    worker's memory; the supervisor stayed 15 MiB bigger when it did)."""
    script = (
        "import sys\n"
        "from lightningstor import tap\n"
        "options = tap.Options()\n"
        f"options.parseOptions(['--workers', '2', '--data-dir', {str(tmp_path)!r},"
        " '--s3-addr', '127.0.0.1:0', '--grpc-addr', '127.0.0.1:0'])\n"
        "service = tap.makeService(options)\n"
        "print(type(service).__name__, 'lightningstor.server' in sys.modules, 'grpc' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["WorkerSupervisor", "False", "False"]


def test_the_twistd_process_hands_its_sockets_to_the_supervisor_program(tmp_path: Path) -> None:
    """become_supervisor: the bound sockets survive the exec (inheritable) and
    are named by number in the spec, with the workers' command line (the
    reserved gRPC address resolved), the pid file made absolute and the log
    target; the program is run by the same interpreter."""
    from twisted.internet.task import Clock

    from lightningstor.supervisor import SPEC_ENV, SupervisorSpec
    from lightningstor.workers import WorkerSupervisor

    options = Options()
    options.parseOptions(["--data-dir", str(tmp_path), "--s3-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0",
                          "--workers", "2"])  # fmt: skip
    settings = options["settings"]
    supervisor = WorkerSupervisor(settings, Clock(), ["worker", "argv"], {"KEEP": "1"}, pidfile="run.pid")
    calls: list[tuple[str, list[str], dict[str, str]]] = []
    supervisor.execve = lambda path, argv, env: calls.append((path, argv, env))
    supervisor.bind()
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    try:
        assert supervisor.s3_socket is not None and supervisor.grpc_socket is not None
        assert not os.get_inheritable(supervisor.s3_socket.fileno())
        supervisor.become_supervisor()
        ((path, argv, env),) = calls
        assert path == sys.executable and argv[:3] == [sys.executable, "-c", "from lightningstor.supervisor import main; main()"]
        spec = SupervisorSpec.from_json(env[SPEC_ENV])
        assert env["KEEP"] == "1"
        assert spec.s3_fd == supervisor.s3_socket.fileno() and os.get_inheritable(spec.s3_fd)
        assert spec.grpc_fd == supervisor.grpc_socket.fileno() and os.get_inheritable(spec.grpc_fd)
        assert spec.argv == ["worker", "argv", "--grpc-addr", supervisor.grpc_addr]
        assert spec.workers == 2 and spec.pidfile == os.path.abspath("run.pid")
        assert spec.log.format == settings.logging.format
        # The supervisor's signals are held across the exec (the program
        # unblocks them once it handles them).
        assert signal.SIGHUP in signal.pthread_sigmask(signal.SIG_BLOCK, [])
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        supervisor.stopService()
