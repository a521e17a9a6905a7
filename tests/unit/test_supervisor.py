"""lightningstor.supervisor: the workers' supervisor program, driven without
processes (a fake ``Popen`` and clock), and its log lines.  The real program
is exercised end to end by tests/integration/test_workers.py."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lightningstor.supervisor import (
    READY,
    LogTarget,
    Supervisor,
    SupervisorLog,
    SupervisorSpec,
    file_identity,
)


class FakeProcess:
    """What the supervisor uses of ``subprocess.Popen``."""

    pids = iter(range(4000, 5000))

    def __init__(self, argv: list[str], *, env: dict[str, str], pass_fds: tuple[int, ...], stdin: Any) -> None:
        self.argv = argv
        self.env = env
        self.pass_fds = pass_fds
        self.pid = next(self.pids)
        self.returncode: int | None = None
        # The status pipe's write end is closed by the supervisor after the
        # spawn: keep our own copy, as the child would.
        fds = dict(item.split("=") for item in env["LIGHTNINGSTOR_WORKER_FDS"].split(","))
        self.status = os.dup(int(fds["status"]))
        # What a real child inherits at the fork: the signal mask.
        self.blocked = signal.pthread_sigmask(signal.SIG_BLOCK, [])

    def poll(self) -> int | None:
        return self.returncode

    def say_ready(self) -> None:
        os.write(self.status, READY)

    def end(self, code: int) -> None:
        self.returncode = code
        if self.status >= 0:
            os.close(self.status)
            self.status = -1


class Harness:
    def __init__(self, tmp_path: Path, workers: int = 2, pidfile: str | None = None) -> None:
        self.now = 0.0
        self.processes: list[FakeProcess] = []
        self.signals: list[tuple[int, int]] = []
        self.out = io.StringIO()
        self.s3 = os.open(os.devnull, os.O_RDONLY)
        spec = SupervisorSpec(workers=workers, argv=["worker"], s3_fd=self.s3, shutdown_timeout=5.0, pidfile=pidfile,
                              pidfile_id=None if pidfile is None else file_identity(pidfile))  # fmt: skip
        self.supervisor = Supervisor(
            spec,
            SupervisorLog(LogTarget(), out=self.out),
            {"HOME": "/", "LIGHTNINGSTOR_SUPERVISOR_SPEC": "{}"},
            spawn=self._spawn,
            clock=lambda: self.now,
            kill=lambda pid, sig: self.signals.append((pid, sig)),
        )
        self.supervisor.prepare()

    def _spawn(self, argv: list[str], **kw: Any) -> FakeProcess:
        p = FakeProcess(argv, **kw)
        self.processes.append(p)
        return p

    def turn(self) -> None:
        """What one pass of the loop does, without waiting."""
        for key, _ in self.supervisor.selector.select(0):
            self.supervisor.status_readable(key.data)
        self.supervisor.reap()
        self.supervisor.run_due_timers()

    def close(self) -> None:
        for p in self.processes:
            if p.status >= 0:
                os.close(p.status)
        for child in list(self.supervisor.children.values()):
            self.supervisor._close_status(child)
        self.supervisor.finish()
        try:
            os.close(self.s3)
        except OSError:
            pass


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    h = Harness(tmp_path)
    yield h
    h.close()


def test_the_primary_starts_first_and_the_others_once_it_is_ready(harness: Harness) -> None:
    """Worker 0 alone until it reports ready; then worker 1.  Each is told its
    index, the descriptors it inherits (by number) and the supervisor's pid;
    the supervisor's own description is not passed on."""
    sup = harness.supervisor
    sup.spawn(0)
    harness.turn()
    assert len(harness.processes) == 1
    primary = harness.processes[0]
    env = primary.env
    assert env["LIGHTNINGSTOR_WORKER"] == "0"
    assert env["LIGHTNINGSTOR_SUPERVISOR_PID"] == str(os.getpid())
    assert "LIGHTNINGSTOR_SUPERVISOR_SPEC" not in env
    fds = dict(item.split("=") for item in env["LIGHTNINGSTOR_WORKER_FDS"].split(","))
    assert set(fds) == {"s3", "status", "balance"}
    assert int(fds["s3"]) == harness.s3 and int(fds["s3"]) in primary.pass_fds
    primary.say_ready()
    harness.turn()
    assert [p.env["LIGHTNINGSTOR_WORKER"] for p in harness.processes] == ["0", "1"]
    assert f"Worker 0 ready (pid {primary.pid})" in harness.out.getvalue()
    # Each starts with SIGHUP blocked (it unblocks it once it handles it);
    # the supervisor's own mask is as it was.
    assert all(signal.SIGHUP in p.blocked for p in harness.processes)
    assert signal.SIGHUP not in signal.pthread_sigmask(signal.SIG_BLOCK, [])


def test_a_dead_workers_slot_is_freed_and_it_is_restarted(harness: Harness) -> None:
    """A worker that dies after start-up takes its connections with it: its
    slot in the connection table is cleared at once (the survivors then
    count one worker fewer) and it is started again a second later."""
    sup = harness.supervisor
    sup.spawn(0)
    harness.processes[0].say_ready()
    harness.turn()
    worker = harness.processes[1]
    worker.say_ready()
    harness.turn()
    table = sup.connections
    assert table is not None
    table.write(1, worker.pid, 7, 30)
    table.write(0, harness.processes[0].pid, 9, 31)
    worker.end(-signal.SIGKILL)
    harness.turn()
    assert table.read() == [(harness.processes[0].pid, 9, 31), (0, 0, 0)]
    assert f"Worker 1 (pid {worker.pid}) exited with status 137; restarting it" in harness.out.getvalue()
    assert len(harness.processes) == 2
    harness.now = 0.99
    harness.turn()
    assert len(harness.processes) == 2
    harness.now = 1.0
    harness.turn()
    assert [p.env["LIGHTNINGSTOR_WORKER"] for p in harness.processes] == ["0", "1", "1"]


def test_a_worker_dying_in_start_up_stops_the_server_with_status_1(harness: Harness) -> None:
    """Instead of serving nothing: not restarted, and exit status 1."""
    sup = harness.supervisor
    sup.spawn(0)
    harness.turn()
    harness.processes[0].end(1)
    harness.turn()
    assert "exited with status 1 during start-up; stopping" in harness.out.getvalue()
    assert sup.stopping is not None and not sup.children
    assert len(harness.processes) == 1  # not restarted
    assert sup.finish() == 1


def test_a_restarted_worker_dying_in_start_up_is_tried_again_later_and_later(harness: Harness) -> None:
    """A worker that was up once and whose restart fails during start-up
    (a disk or a store that is back later) does not stop the server: it is
    tried again after 2, 4, 8... seconds, at most 30, while the others
    serve; once up, the next death waits one second again."""
    sup = harness.supervisor
    sup.spawn(0)
    harness.processes[0].say_ready()
    harness.turn()
    harness.processes[1].say_ready()
    harness.turn()
    harness.processes[1].end(-signal.SIGKILL)
    harness.turn()
    harness.now = 1.0
    harness.turn()
    assert len(harness.processes) == 3
    starts = []
    for _ in range(6):
        harness.processes[-1].end(1)
        harness.turn()
        before = len(harness.processes)
        while len(harness.processes) == before:
            harness.now += 0.5
            harness.turn()
        starts.append(harness.now)
    gaps = [b - a for a, b in zip([1.0, *starts], starts, strict=False)]
    assert gaps == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert "exited with status 1 during start-up; trying again in 30 s" in harness.out.getvalue()
    assert sup.stopping is None and 0 in sup.children
    harness.processes[-1].say_ready()
    harness.turn()
    harness.processes[-1].end(-signal.SIGKILL)
    harness.turn()
    at = harness.now
    while len(harness.processes) == 9:
        harness.now += 0.5
        harness.turn()
    assert harness.now - at == 1.0
    assert [p.env["LIGHTNINGSTOR_WORKER"] for p in harness.processes] == ["0"] + ["1"] * 9


def test_sigterm_closes_the_sockets_and_stops_every_worker(harness: Harness) -> None:
    """SIGTERM: the supervisor's copy of the S3 socket is closed, every worker
    gets SIGTERM, and those still running after the shutdown timeout plus
    ten seconds get SIGKILL (and the exit status is then 1)."""
    sup = harness.supervisor
    sup.spawn(0)
    harness.processes[0].say_ready()
    harness.turn()
    pids = [p.pid for p in harness.processes]
    sup.handle_signal(signal.SIGTERM)
    assert harness.signals == [(pid, signal.SIGTERM) for pid in pids]
    with pytest.raises(OSError):
        os.fstat(harness.s3)
    harness.processes[0].end(-signal.SIGTERM)
    harness.turn()
    harness.now = 14.9
    harness.turn()
    assert len(harness.signals) == 2
    harness.now = 15.0
    harness.turn()
    assert harness.signals[2:] == [(pids[1], signal.SIGKILL)]
    harness.processes[1].end(-signal.SIGKILL)
    harness.turn()
    assert not sup.children and sup.failed
    # Nothing is started while stopping, not even a pending restart.
    sup.spawn(1)
    assert len(harness.processes) == 2


def test_a_clean_stop_exits_0_and_removes_what_it_made(tmp_path: Path) -> None:
    """SIGINT (as SIGTERM): once every worker has ended, the metrics
    directory and twistd's pid file (which holds this pid: the exec kept it)
    are removed, and the status is 0 (main() then ends by the signal)."""
    pidfile = tmp_path / "twistd.pid"
    pidfile.write_text(str(os.getpid()))
    harness = Harness(tmp_path, pidfile=str(pidfile))
    sup = harness.supervisor
    sup.spawn(0)
    harness.turn()
    sup.handle_signal(signal.SIGINT)
    harness.processes[0].end(-signal.SIGINT)
    harness.turn()
    metrics = sup.multiprocess_dir
    assert metrics is not None and os.path.isdir(metrics)
    assert sup.finish() == 0
    assert not os.path.exists(metrics) and not pidfile.exists()
    assert "All workers stopped" in harness.out.getvalue()
    harness.close()


def test_a_pid_file_it_cannot_read_is_removed_and_another_servers_is_kept(tmp_path: Path) -> None:
    """After twistd --uid, the program runs as a user that may not read the
    pid file twistd wrote as root (mode 0600): it is still removed, being
    the same file.  A pid file written anew since (another server's) stays."""
    for replaced in (False, True):
        pidfile = tmp_path / f"twistd-{replaced}.pid"
        pidfile.write_text(str(os.getpid()))
        pidfile.chmod(0o000)
        harness = Harness(tmp_path, pidfile=str(pidfile))
        if replaced:
            # Written next to it and renamed over it: a new inode for sure.
            other = tmp_path / "other.pid"
            other.write_text("4242")
            other.replace(pidfile)
        assert harness.supervisor.finish() == 0
        assert pidfile.exists() == replaced
        harness.close()


def test_sighup_is_passed_on_to_every_worker(harness: Harness) -> None:
    """SIGHUP reloads certificates: every worker gets it."""
    sup = harness.supervisor
    sup.spawn(0)
    harness.processes[0].say_ready()
    harness.turn()
    sup.handle_signal(signal.SIGHUP)
    assert harness.signals == [(p.pid, signal.SIGHUP) for p in harness.processes]


def test_log_lines_in_the_text_and_json_formats_and_by_level(tmp_path: Path) -> None:
    """The supervisor's lines look like the workers' (twistd's text line, or
    [logging] format = json), filtered by [logging] level."""
    out = io.StringIO()
    SupervisorLog(LogTarget(level="warn"), out=out)("info", "not shown")
    assert out.getvalue() == ""
    SupervisorLog(LogTarget(), out=out)("warn", "Worker 1 (pid 7) exited", index=1)
    line = out.getvalue()
    assert line.endswith(" [lightningstor.supervisor#warn] Worker 1 (pid 7) exited\n")
    assert line[:4].isdigit() and line[10] == "T"
    out = io.StringIO()
    SupervisorLog(LogTarget(format="json"), out=out)("info", "Worker 0 ready (pid 9)", index=0, pid=9)
    record = json.loads(out.getvalue())
    assert record["level"] == "info" and record["namespace"] == "lightningstor.supervisor"
    assert record["message"] == "Worker 0 ready (pid 9)" and record["pid"] == 9
    assert record["time"].endswith("+00:00")


def test_sigusr1_rotates_the_log_file_as_twistd_did(tmp_path: Path) -> None:
    """file -> file.1, file.1 -> file.2; the next line starts a new file."""
    path = tmp_path / "server.log"
    log = SupervisorLog(LogTarget(to="file", path=str(path)))
    log("info", "first")
    (tmp_path / "server.log.1").write_text("older\n")
    log.rotate()
    assert path.read_text() == ""  # a log file at every moment
    log("info", "second")
    assert "first" in (tmp_path / "server.log.1").read_text()
    assert (tmp_path / "server.log.2").read_text() == "older\n"
    assert "second" in path.read_text() and "first" not in path.read_text()


def test_the_spec_survives_its_json() -> None:
    """What twistd's process hands over in the environment, read back."""
    spec = SupervisorSpec(
        workers=3, argv=["a", "b"], s3_fd=5, grpc_fd=7, pidfile="/run/x.pid", log=LogTarget(to="syslog", prefix="ls")
    )
    assert SupervisorSpec.from_json(spec.to_json()) == spec
    assert spec.inherited_fds() == [5, 7]


def test_the_supervisor_program_loads_no_twisted() -> None:
    """The point of the program: none of Twisted's reactor (about 25 MiB of a
    process) is imported by it, nor typing and dataclasses (a megabyte each
    of the 6.6 MiB it holds)."""
    heavy = ("twisted", "OpenSSL", "cryptography", "grpc", "asyncio", "typing", "dataclasses")
    script = f"import sys, lightningstor.supervisor; print(sorted(m for m in sys.modules if m.split('.')[0] in {heavy!r}))"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_shared_log_file_is_rotated_at_twistds_length(tmp_path: Path) -> None:
    """The workers never rotate the file they share; the supervisor does, at
    the length twistd's LogFile rotated at, and leaves a shorter one alone."""
    from lightningstor.supervisor import ROTATE_LENGTH

    path = tmp_path / "server.log"
    log = SupervisorLog(LogTarget(to="file", path=str(path)))
    path.write_bytes(b"x" * (ROTATE_LENGTH - 1))
    log.rotate_if_long()
    assert not (tmp_path / "server.log.1").exists()
    with path.open("ab") as f:
        f.write(b"x")
    log.rotate_if_long()
    assert (tmp_path / "server.log.1").stat().st_size == ROTATE_LENGTH and path.stat().st_size == 0


def test_two_workers_of_one_index_never_run(harness: Harness) -> None:
    """The primary and then worker 1 die close together: the primary's
    replacement, once ready, starts the missing worker 1, and worker 1's own
    restart, due a moment later, does not start a second one."""
    sup = harness.supervisor
    sup.spawn(0)
    harness.processes[0].say_ready()
    harness.turn()
    first, second = harness.processes
    second.say_ready()
    harness.turn()
    first.end(-signal.SIGKILL)
    harness.turn()
    harness.now = 0.5
    second.end(-signal.SIGKILL)
    harness.turn()  # worker 1's restart is due at 1.5
    harness.now = 1.0
    harness.turn()  # the primary's replacement
    harness.processes[2].say_ready()
    harness.turn()  # ... starts worker 1 as it is missing
    harness.now = 1.5
    harness.turn()
    indexes = [p.env["LIGHTNINGSTOR_WORKER"] for p in harness.processes]
    assert indexes == ["0", "1", "0", "1"]
    assert sorted(sup.children) == [0, 1]


def test_a_dead_workers_live_gauges_go_as_prometheus_client_removes_them(tmp_path: Path) -> None:
    """remove_live_gauges is prometheus_client's mark_process_dead without the
    import: the same files go for every pid, the same stay."""
    from prometheus_client import multiprocess

    from lightningstor.supervisor import remove_live_gauges

    names = [
        f"{kind}_{pid}.db"
        for pid in (12, 112, 1200)
        for kind in ("counter", "histogram", "gauge_all", "gauge_liveall", "gauge_livesum", "gauge_livemax",
                     "gauge_livemin", "gauge_livemostrecent", "gauge_max", "gauge_mostrecent")
    ]  # fmt: skip
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    for d in (ours, theirs):
        d.mkdir()
        for name in names:
            (d / name).write_bytes(b"")
    for pid in (12, 1200):
        remove_live_gauges(str(ours), pid)
        multiprocess.mark_process_dead(pid, str(theirs))
    assert sorted(p.name for p in ours.iterdir()) == sorted(p.name for p in theirs.iterdir())
    assert len(list(ours.iterdir())) < len(names)
