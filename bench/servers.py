"""The servers a bench run talks to, and their memory.

``Target`` is an S3 endpoint plus boto3 client plus, when the bench started
the server itself, the pids whose resident set is sampled (``RssSampler``):
LightningStor (the real ``twistd`` process, and its workers with
``--workers``), moto's server, or any endpoint given on the command line.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

REGION = "us-east-1"


def s3_client(endpoint: str, access: str, secret: str, pool: int = 32) -> Any:
    """boto3 for set-up, listing and presigning (SigV4, path style)."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=access,
        aws_secret_access_key=secret,
        region_name=REGION,
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            retries={"max_attempts": 1},
            max_pool_connections=pool,
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )


def cpu_seconds(pid: int, tid: int | None = None) -> float:
    """User plus system CPU seconds a process (all its threads) or one of its
    threads has used so far.  On a shared box the wall time of a run depends
    on what else runs; the server's own CPU time per request much less so."""
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    with open(path) as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_bytes(path: str, field: str) -> int:
    """The ``field:`` line of a /proc file giving kB, in bytes (0 if the
    process is gone)."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def rss_bytes(pid: int) -> int:
    """Current VmRSS of ``pid`` (0 if it is gone)."""
    return proc_bytes(f"/proc/{pid}/status", "VmRSS:")


def pss_bytes(pid: int) -> int:
    """Proportional set size of ``pid`` (0 if it is gone): its private pages
    plus its share of the pages it shares with other processes."""
    return proc_bytes(f"/proc/{pid}/smaps_rollup", "Pss:")


def server_set_bytes(pids: list[int]) -> int:
    """The resident pages of a group of processes, each page counted once:
    what the server holds as a whole, whatever else runs on the box.

    RSS added up counts a page that several of the processes map (the
    interpreter, the shared libraries, the shared-memory files) once per
    process; PSS divides it between every process on the box that maps it,
    so it falls when unrelated processes map the same libraries.  Here a
    page only one process maps counts once, in that process: its anonymous
    pages (the workers are started with exec, so they share none) and the
    private pages of its file mappings (``Private_Clean``/``Private_Dirty``:
    copy-on-write pages of a library's data, or pages of a file no other
    process has resident); a page of a file several processes map counts
    once for the group: the largest ``Shared_*`` count any of them has for
    that range of that file (the processes map the same ranges)."""
    private = 0
    shared: dict[tuple[str, str, str, int], int] = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps") as f:
                lines = f.readlines()
        except OSError:
            continue
        key: tuple[str, str, str, int] | None = None
        mine: dict[tuple[str, str, str, int], int] = {}
        for line in lines:
            head = line.split(None, 6)
            if "-" in head[0] and len(head) >= 5 and ":" in head[3]:
                # start-end perms offset dev inode [path]: one mapping
                start, end = (int(x, 16) for x in head[0].split("-"))
                key = None if head[4] == "0" else (head[3], head[4], head[2], end - start)
            elif key is None and head[0] == "Rss:":
                private += int(head[1])
            elif key is not None and head[0] in ("Private_Clean:", "Private_Dirty:"):
                private += int(head[1])
            elif key is not None and head[0] in ("Shared_Clean:", "Shared_Dirty:"):
                mine[key] = mine.get(key, 0) + int(head[1])
        for k, kib in mine.items():
            shared[k] = max(shared.get(k, 0), kib)
    return (private + sum(shared.values())) * 1024


class RssSampler:
    """Samples the summed RSS of some pids every 50 ms in a thread; ``peak()``
    returns and resets the peak since the last call (one figure per phase)."""

    def __init__(self, pids: Callable[[], list[int]]) -> None:
        self.pids = pids
        self._peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(0.05):
            self._peak = max(self._peak, sum(rss_bytes(p) for p in self.pids()))

    def peak(self) -> int:
        value = max(self._peak, sum(rss_bytes(p) for p in self.pids()))
        self._peak = 0
        return value

    def stop(self) -> None:
        self._stop.set()


@dataclass
class Target:
    name: str
    endpoint: str
    client: Any
    pids: Callable[[], list[int]] = lambda: []
    stop: Callable[[], None] = lambda: None
    sampler: RssSampler | None = field(default=None)

    def peak_rss(self) -> int | None:
        return None if self.sampler is None else self.sampler.peak()


def compile_bytecode() -> None:
    """Compile the server's modules, as pip does when it installs them.

    The bench runs the repository's source tree, and a machine may set
    ``PYTHONDONTWRITEBYTECODE``: every process would then compile the
    server's modules from source at each start, which leaves each about 2
    MiB larger than an installed server.  The bytecode goes where Python
    looks for it (``__pycache__``, ignored by git); Python still reads it
    with that variable set."""
    root = Path(__file__).resolve().parent.parent
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(root / "lightningstor")], check=True)


def start_lightningstor(scratch: Path, workers: int, extra_args: list[str] | None = None) -> Target:
    """The real server (integration-test harness: ``twistd -n lightningstor``)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.integration.server import ROOT_ACCESS_KEY, ROOT_SECRET_KEY, ServerProcess

    data = scratch / "lightningstor"
    data.mkdir()
    args = list(extra_args or []) + ["--workers", str(workers)]
    compile_bytecode()
    server = ServerProcess(data, extra_args=args).start()
    worker_pids: list[int] = []
    if workers > 1:
        worker_pids = list(server.ready_workers(workers).values())
    assert server.proc is not None
    pids = [server.proc.pid] + worker_pids
    target = Target(
        name="LightningStor" + (f" ({workers} workers)" if workers > 1 else ""),
        endpoint=server.endpoint,
        client=s3_client(server.endpoint, ROOT_ACCESS_KEY, ROOT_SECRET_KEY),
        pids=lambda: pids,
        stop=lambda: (server.stop(), None)[1],
    )
    target.sampler = RssSampler(target.pids)
    return target


def start_moto(scratch: Path) -> Target:
    """moto's standalone server (``pip install 'moto[server]'``), in-memory."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=str(scratch),
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    port = None
    deadline = time.monotonic() + 30
    while port is None and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        m = re.search(r"Running on http://127\.0\.0\.1:(\d+)", line)
        if m:
            port = int(m.group(1))
    if port is None:
        proc.kill()
        raise RuntimeError("moto server did not start (pip install 'moto[server]')")
    threading.Thread(target=lambda: [None for _ in proc.stdout or []], daemon=True).start()
    endpoint = f"http://127.0.0.1:{port}"

    def stop() -> None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()

    target = Target("moto", endpoint, s3_client(endpoint, "testing", "testing"), lambda: [proc.pid], stop)
    target.sampler = RssSampler(target.pids)
    return target


def start_trivial() -> tuple[str, Callable[[], None]]:
    """The trivial twisted.web server (bench.trivial): (base URL, stop)."""
    target = trivial_target()
    return target.endpoint, target.stop


def trivial_target() -> Target:
    """The trivial twisted.web server as a :class:`Target` (no S3 client:
    it is driven with plain URLs), with its process id for CPU accounting."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.trivial"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=str(Path(__file__).resolve().parent.parent),
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    port = int(line.split()[1])

    def stop() -> None:
        proc.terminate()
        proc.wait(10)

    return Target("trivial twisted.web", f"http://127.0.0.1:{port}", None, pids=lambda: [proc.pid], stop=stop)


def external(endpoint: str, access: str, secret: str) -> Target:
    """Any S3 endpoint (no memory figures)."""
    return Target("endpoint", endpoint, s3_client(endpoint, access, secret))
