"""Running the real ``twistd -n lightningstor`` process for integration tests."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT_ACCESS_KEY = "LSTESTROOTACCESSKEY1"
ROOT_SECRET_KEY = "test/Secret+Key/For/LightningStor/123456"
_LISTENING = re.compile(r"S3 API listening on ([0-9.:a-f\[\]]+):(\d+)")
_GRPC_LISTENING = re.compile(r"gRPC API listening on ([0-9.:a-f\[\]]+):(\d+)")
_WORKER_READY = re.compile(r"Worker (\d+) ready \(pid (\d+)\)")


class ServerProcess:
    """One server process on a loopback port with its own data dir.

    The port is read from the server's own log line, so tests never race for
    a "free" port.  Output is kept for diagnosis (``self.output``).
    """

    def __init__(self, data_dir: Path, *, extra_args: list[str] | None = None,
                 env: dict[str, str] | None = None, config: str | None = None,
                 wrapper: list[str] | None = None, command: list[str] | None = None) -> None:
        self.data_dir = data_dir
        # The server command before its options (default: twistd in the foreground).
        self.command = command
        # A command that runs the server (its argv follows), e.g. in a mount namespace.
        self.wrapper = wrapper or []
        self.extra_args = extra_args or []
        self.env = env or {}
        self.config = config
        self.proc: subprocess.Popen[str] | None = None
        self.port: int | None = None
        self.grpc_port: int | None = None
        self.output: list[str] = []
        self._ready = threading.Event()
        self._grpc_ready = threading.Event()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def grpc_endpoint(self) -> str:
        """``127.0.0.1:PORT`` of the gRPC API (waits briefly for its log line,
        which follows the S3 one)."""
        if not self._grpc_ready.wait(10.0) or self.grpc_port is None:
            raise RuntimeError("the gRPC API did not start:\n" + "".join(self.output[-50:]))
        return f"127.0.0.1:{self.grpc_port}"

    def start(self, timeout: float = 30.0) -> ServerProcess:
        twistd = str(Path(sys.executable).with_name("twistd"))
        args = list(self.command or [twistd, "-n", "--pidfile=", "lightningstor"])
        args += ["--data-dir", str(self.data_dir), "--s3-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0"]
        if self.config:
            args += ["--config", self.config]
        args += self.extra_args
        if "--workers" not in self.extra_args:
            # One process unless a test asks for workers: tests signal, kill
            # and measure the process they started.
            args += ["--workers", "1"]
        env = dict(os.environ)
        env.update({
            "LIGHTNINGSTOR_ROOT_ACCESS_KEY": ROOT_ACCESS_KEY,
            "LIGHTNINGSTOR_ROOT_SECRET_KEY": ROOT_SECRET_KEY,
            "PYTHONUNBUFFERED": "1",
        })
        env.update(self.env)
        self._ready.clear()
        self._grpc_ready.clear()
        self.port = None
        self.grpc_port = None
        first_line = len(self.output)
        self.proc = subprocess.Popen(self.wrapper + args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, env=env, cwd=str(self.data_dir.parent))
        threading.Thread(target=self._pump, args=(self.proc,), daemon=True).start()
        if not self._ready.wait(timeout) or self.port is None:
            self.stop()
            raise RuntimeError("server did not start:\n" + "".join(self.output[-50:]))
        self._wait_root_credential(first_line)
        return self

    def _pump(self, proc: subprocess.Popen[str]) -> None:
        """Collect ``proc``'s output; announce its ports while it is the
        current process.  After a restart the previous process's reader may
        still be draining: it must not mark the new process ready."""
        assert proc.stdout is not None
        for line in proc.stdout:
            self.output.append(line)
            if proc is not self.proc:
                continue
            m = _LISTENING.search(line)
            if m and self.port is None:
                self.port = int(m.group(2))
                self._ready.set()
            g = _GRPC_LISTENING.search(line)
            if g and self.grpc_port is None:
                self.grpc_port = int(g.group(2))
                self._grpc_ready.set()
        if proc is self.proc:
            self._ready.set()
            self._grpc_ready.set()

    def _wait_root_credential(self, first_line: int = 0, timeout: float = 30.0) -> None:
        """Wait until this start's output (from ``first_line``) says the root
        credential is set up: as long as for the listening line, since with
        workers it comes from a worker process that still has to start (more
        than 10 s on a loaded machine)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any("Root access key" in line for line in self.output[first_line:]):
                return
            time.sleep(0.02)
        raise RuntimeError("root credential not configured:\n" + "".join(self.output[-50:]))

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode
        self.proc = None
        return code

    def ready_workers(self, count: int, timeout: float = 30.0) -> dict[int, int]:
        """``{index: pid}`` of the worker processes (``[server] workers``) once
        ``count`` distinct workers have logged that they are ready."""
        deadline = time.monotonic() + timeout
        while True:
            pids: dict[int, int] = {}
            for line in list(self.output):
                m = _WORKER_READY.search(line)
                if m:
                    pids[int(m.group(1))] = int(m.group(2))
            if len(pids) >= count:
                return pids
            if time.monotonic() > deadline:
                raise RuntimeError("workers did not start:\n" + "".join(self.output[-50:]))
            time.sleep(0.05)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self) -> ServerProcess:
        self.stop()
        return self.start()


def start_workers(root: Path, config_text: str, workers: int = 2) -> ServerProcess:
    """A server of ``workers`` worker processes on a new data directory
    under ``root``, configured with ``config_text``, once every worker is
    ready to answer."""
    data = root / "data"
    data.mkdir()
    config = root / "server.toml"
    config.write_text(config_text)
    proc = ServerProcess(data, extra_args=["--workers", str(workers)], config=str(config)).start()
    proc.ready_workers(workers)
    return proc


class Daemon:
    """``twistd`` without ``-n`` (a daemon: it forks, and the shell gets
    twistd's status once the server is up), with a pid file and a log file
    in ``root``; ``pid`` is what the pid file says."""

    def __init__(self, data_dir: Path, root: Path, workers: int, *,
                 wrapper: list[str] | None = None, twistd_args: list[str] | None = None) -> None:
        """``wrapper``: as for :class:`ServerProcess`; ``twistd_args``: twistd's
        own options (before ``lightningstor``)."""
        self.pidfile, self.log = root / "server.pid", root / "server.log"
        twistd = str(Path(sys.executable).with_name("twistd"))
        args = [*(wrapper or []), twistd, "--pidfile", str(self.pidfile), "--logfile", str(self.log),
                *(twistd_args or []), "lightningstor",
                "--data-dir", str(data_dir), "--s3-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0",
                "--workers", str(workers)]  # fmt: skip
        env = dict(os.environ, LIGHTNINGSTOR_ROOT_ACCESS_KEY=ROOT_ACCESS_KEY, LIGHTNINGSTOR_ROOT_SECRET_KEY=ROOT_SECRET_KEY)
        self.started = subprocess.run(args, env=env, cwd=str(root), capture_output=True, text=True, timeout=60)
        assert self.started.returncode == 0, self.started.stdout + self.started.stderr
        self.pid = int(self.pidfile.read_text())

    def text(self) -> str:
        return self.log.read_text()

    def wait_for(self, line: str, count: int = 1, timeout: float = 30.0) -> str:
        """The log once ``line`` is in it ``count`` times."""
        deadline = time.monotonic() + timeout
        while (text := self.text()).count(line) < count:
            assert time.monotonic() < deadline, text[-3000:]
            time.sleep(0.05)
        return text

    def running(self) -> bool:
        """Alive and not a zombie (a daemon's parent is init, which may reap it late)."""
        try:
            with open(f"/proc/{self.pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, and wait for the end; one still running after ``timeout``
        is killed (its workers follow it) and the test fails."""
        os.kill(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self.running():
            if time.monotonic() > deadline:
                os.kill(self.pid, signal.SIGKILL)
                raise AssertionError("the daemon did not stop:\n" + self.text()[-2000:])
            time.sleep(0.1)


def wait_until(condition: Any, what: str, *, timeout: float = 30.0, poll: float = 0.2) -> Any:
    """``condition()``'s first truthy value, polled every ``poll`` seconds;
    AssertionError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out waiting for {what}")
