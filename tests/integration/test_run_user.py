"""``twistd --uid/--gid lightningstor`` started by root, as an operator runs
it: the server binds and builds as root, then runs as the other user, and
everything it keeps (data directory, master key, database, chunks, audit log,
the log file its workers share) belongs to that user.

The workers are started with this process's interpreter as that user, so
the tests need an interpreter and modules "nobody" can read.  The test
interpreter may live where only root can go (a Python under root's home):
then the tests use a virtual environment of the same Python version from
the system's, with this environment's packages on its path.
"""

from __future__ import annotations

import os
import pwd
import shutil
import site
import socket
import subprocess
import sys
import sysconfig
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

import lightningstor
from lightningstor.client import LightningStorClient
from lightningstor.run_user import RunUser, acting_as, run_user

from .certs import make_pki
from .cluster import NodeProcess, api_server, distributed_config, free_port
from .server import ROOT_ACCESS_KEY, ROOT_SECRET_KEY, Daemon

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="twistd switches user only when started by root")


def _nobody() -> RunUser:
    user = run_user({"uid": pwd.getpwnam("nobody").pw_uid, "gid": None})
    assert user is not None
    return user


def _usable_by(user: RunUser, *paths: str) -> bool:
    with acting_as(user):
        return all(os.access(p, os.R_OK | os.X_OK, effective_ids=True) for p in paths)


@pytest.fixture(scope="module")
def root_dir() -> Iterator[Path]:
    """A directory root owns and nobody can reach (the pid file's, as under /run)."""
    path = Path(tempfile.mkdtemp(prefix="lightningstor-uid-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def python_for_nobody(root_dir: Path) -> str:
    """An interpreter ``nobody`` can run that imports this environment's
    packages (the project's included)."""
    user = _nobody()
    packages = [p for p in site.getsitepackages() if os.path.isdir(p)]
    project = os.path.dirname(os.path.dirname(os.path.abspath(lightningstor.__file__)))
    if not _usable_by(user, project, *packages):
        pytest.skip(f"nobody cannot read the project ({project}) or its packages ({packages})")
    if _usable_by(user, sys.executable, os.path.dirname(os.__file__)):
        return sys.executable
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    system = next((p for p in (f"/usr/bin/python{version}", f"/usr/local/bin/python{version}")
                   if os.path.exists(p) and _usable_by(user, p)), None)  # fmt: skip
    if system is None:
        pytest.skip(f"no Python {version} that nobody can run")
    venv = root_dir / "venv"
    subprocess.run([system, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()  # fmt: skip
    # addsitedir also reads the .pth files there (the project's editable path).
    lines = "".join(f"import site; site.addsitedir({p!r})\n" for p in packages)
    Path(purelib, "lightningstor-test-packages.pth").write_text(lines)
    assert sysconfig.get_paths()["purelib"] != purelib
    return python


def _owner(path: Path) -> tuple[int, int]:
    st = path.lstat()
    return st.st_uid, st.st_gid


def _uid_of(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        line = next(line for line in f if line.startswith("Uid:"))
    return int(line.split()[1])


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting for init."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except OSError:
                continue
    return found


@pytest.mark.parametrize("workers", [1, 2])
def test_a_daemon_started_by_root_runs_as_nobody_and_keeps_its_files(
    python_for_nobody: str, root_dir: Path, workers: int
) -> None:
    user = _nobody()
    # The pid file's and log's directory belongs to the user, as /run/lightningstor
    # would: the server, no longer root, removes its pid file there at the end.
    home = root_dir / f"home-{workers}"
    home.mkdir()
    os.chown(home, user.uid, user.gid)
    data = home / "data"  # does not exist yet: the server creates it
    daemon = Daemon(data, home, workers, wrapper=[python_for_nobody],
                    twistd_args=["--uid", "nobody", "--gid", str(user.gid)])  # fmt: skip
    try:
        text = daemon.wait_for("ready (pid", count=workers) if workers > 1 else daemon.wait_for("Root access key")
        port = int(text.split("S3 API listening on 127.0.0.1:", 1)[1].split()[0])
        processes = [daemon.pid, *_children(daemon.pid)]
        assert len(processes) == 1 + (workers if workers > 1 else 0), processes
        assert {_uid_of(pid) for pid in processes} == {user.uid}
        s3 = boto3.client(
            "s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
            aws_access_key_id=ROOT_ACCESS_KEY, aws_secret_access_key=ROOT_SECRET_KEY,
            config=Config(retries={"max_attempts": 1}),
        )  # fmt: skip
        s3.create_bucket(Bucket="owned-by-nobody")
        small, large = b"inline", os.urandom(9 * 1024 * 1024)  # the large one goes to chunk files
        s3.put_object(Bucket="owned-by-nobody", Key="small", Body=small)
        s3.put_object(Bucket="owned-by-nobody", Key="large", Body=large)
        assert s3.get_object(Bucket="owned-by-nobody", Key="small")["Body"].read() == small
        assert s3.get_object(Bucket="owned-by-nobody", Key="large")["Body"].read() == large
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=10) as r:
            assert r.status == 200
    finally:
        daemon.stop()
    # The supervisor, no longer root, still stopped its workers.
    assert [pid for pid in processes if _alive(pid)] == []
    assert not daemon.pidfile.exists()
    text = daemon.text()
    assert "Traceback" not in text, text[-3000:]
    kept = [data, *data.rglob("*"), daemon.log]
    assert {p.name for p in kept} >= {"master.key", "metadata.db", "audit.log", "chunks", "server.log"}
    assert {p: _owner(p) for p in kept if _owner(p) != (user.uid, user.gid)} == {}
    # Started again, it reads what it wrote as nobody.
    daemon = Daemon(data, home, workers, wrapper=[python_for_nobody], twistd_args=["--uid", "nobody"])
    try:
        text = daemon.wait_for("Root access key", count=2)
        port = int(text.rsplit("S3 API listening on 127.0.0.1:", 1)[1].split()[0])
        s3 = boto3.client(
            "s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
            aws_access_key_id=ROOT_ACCESS_KEY, aws_secret_access_key=ROOT_SECRET_KEY,
        )  # fmt: skip
        assert s3.get_object(Bucket="owned-by-nobody", Key="large")["Body"].read() == large
    finally:
        daemon.stop()


def _refused(python: str, home: Path, data: Path, *args: str, s3_addr: str = "127.0.0.1:0") -> str:
    """twistd as a daemon with --uid nobody: it must stop at once, with
    status 1 and one line on standard error (returned), no pid file left."""
    twistd = str(Path(sys.executable).with_name("twistd"))
    done = subprocess.run(
        [python, twistd, "--pidfile", str(home / "server.pid"), "--logfile", str(home / "server.log"),
         "--uid", "nobody", "lightningstor", "--data-dir", str(data),
         "--s3-addr", s3_addr, "--grpc-addr", "127.0.0.1:0", "--workers", "2", *args],
        env=dict(os.environ, LIGHTNINGSTOR_ROOT_ACCESS_KEY=ROOT_ACCESS_KEY, LIGHTNINGSTOR_ROOT_SECRET_KEY=ROOT_SECRET_KEY),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert not (home / "server.pid").exists()
    return lines[0]


def test_a_data_directory_nobody_cannot_write_is_refused_before_anything_starts(
    python_for_nobody: str, root_dir: Path
) -> None:
    """A data directory root made (say, by an earlier start without --uid):
    one line and status 1 from twistd itself, nothing created in it, no
    daemon left behind."""
    home = root_dir / "home-refused"
    data = home / "data"
    data.mkdir(parents=True)
    assert _refused(python_for_nobody, home, data) == (
        f"twistd lightningstor: --uid/--gid: {_nobody()} cannot write the data directory {data}; chown it to that user"
    )
    assert list(data.iterdir()) == []


def test_what_a_failed_start_created_is_the_users_for_the_next_start(python_for_nobody: str, root_dir: Path) -> None:
    """A start that fails after the data directory and the master key were
    made (the S3 port in use) still gives them to nobody: the next start
    must not find a root-owned data directory it refuses."""
    home = root_dir / "home-busy"
    home.mkdir()
    data = home / "data"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        address = f"127.0.0.1:{busy.getsockname()[1]}"
        line = _refused(python_for_nobody, home, data, s3_addr=address)
    assert line == f"twistd lightningstor: server.s3_addr: cannot listen on {address}: Address already in use"
    user = _nobody()
    assert {p.name: _owner(p) for p in (data, data / "master.key")} == {
        "data": (user.uid, user.gid), "master.key": (user.uid, user.gid)}


def test_a_tls_key_only_root_reads_is_refused_before_anything_starts(python_for_nobody: str, root_dir: Path) -> None:
    """The workers load the TLS key as nobody (and SIGHUP reloads it): a key
    of mode 0600 owned by root is refused at once, not by each worker."""
    home = root_dir / "home-tls"
    pki = make_pki(home / "pki")
    pki.key_file.chmod(0o600)
    config = home / "server.toml"
    config.write_text(pki.config(ca=False))
    config.chmod(0o644)
    line = _refused(python_for_nobody, home, home / "data", "--config", str(config))
    assert line == f"twistd lightningstor: --uid/--gid: {_nobody()} cannot read the TLS key {pki.key_file}; make it readable by that user"


def test_a_storage_node_started_by_root_keeps_its_chunks_as_nobody(python_for_nobody: str, root_dir: Path) -> None:
    """``twistd --uid nobody lightningstor-node``: the node creates its data
    directory before the switch and gives it to nobody, so the chunks an API
    server writes through it land, owned by nobody, and read back."""
    home = root_dir / "home-node"
    home.mkdir()
    node = NodeProcess(home / "node-data", free_port(), zone="z", node_id="n", wrapper=[python_for_nobody],
                       twistd_args=["--uid", "nobody"])  # fmt: skip
    node.start()
    api = api_server(home, distributed_config([node], repair_interval_seconds=0, replication_factor=1,
                                              write_quorum=1)).start()  # fmt: skip
    try:
        s3 = boto3.client(
            "s3", endpoint_url=api.endpoint, region_name="us-east-1",
            aws_access_key_id=ROOT_ACCESS_KEY, aws_secret_access_key=ROOT_SECRET_KEY,
        )  # fmt: skip
        s3.create_bucket(Bucket="on-the-node")
        body = os.urandom(3 * 1024 * 1024 + 5)
        s3.put_object(Bucket="on-the-node", Key="k", Body=body)
        assert s3.get_object(Bucket="on-the-node", Key="k")["Body"].read() == body
    finally:
        api.stop()
        node.stop()
    user = _nobody()
    kept = [node.data_dir, *node.data_dir.rglob("*")]
    assert len([p for p in kept if p.is_file()]) >= 4  # the 1 MiB chunks
    assert {p: _owner(p) for p in kept if _owner(p) != (user.uid, user.gid)} == {}


def _free_privileged_ports(count: int) -> list[int]:
    """Loopback ports under 1024 that nothing listens on (bound as root to check)."""
    found: list[int] = []
    for port in range(700, 1000):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        found.append(port)
        if len(found) == count:
            return found
    pytest.skip("no free loopback ports under 1024")


def test_one_process_binds_ports_under_1024_before_the_switch(python_for_nobody: str, root_dir: Path) -> None:
    """The reason to start as root: the S3 and gRPC ports are bound before
    twistd switches to nobody (they were bound after, and refused), and
    both answer."""
    home = root_dir / "home-ports"
    home.mkdir()
    s3_port, grpc_port = _free_privileged_ports(2)
    twistd = str(Path(sys.executable).with_name("twistd"))
    proc = subprocess.Popen(
        [python_for_nobody, twistd, "-n", "--pidfile=", "--uid", "nobody", "lightningstor",
         "--data-dir", str(home / "data"), "--s3-addr", f"127.0.0.1:{s3_port}",
         "--grpc-addr", f"127.0.0.1:{grpc_port}", "--workers", "1"],
        env=dict(os.environ, LIGHTNINGSTOR_ROOT_ACCESS_KEY=ROOT_ACCESS_KEY, LIGHTNINGSTOR_ROOT_SECRET_KEY=ROOT_SECRET_KEY),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "Root access key" in line:
                break
        assert _uid_of(proc.pid) == _nobody().uid, "".join(lines)
        s3 = boto3.client(
            "s3", endpoint_url=f"http://127.0.0.1:{s3_port}", region_name="us-east-1",
            aws_access_key_id=ROOT_ACCESS_KEY, aws_secret_access_key=ROOT_SECRET_KEY,
        )  # fmt: skip
        s3.create_bucket(Bucket="low-ports")
        client = LightningStorClient.connect(f"grpc://127.0.0.1:{grpc_port}", access_key=ROOT_ACCESS_KEY,
                                             secret_key=ROOT_SECRET_KEY, timeout=10)  # fmt: skip
        try:
            assert "low-ports" in [b.name for b in client.list_buckets()]
        finally:
            client.close()
    finally:
        proc.terminate()
        proc.wait(30)


def test_workers_refuse_a_grpc_port_under_1024(python_for_nobody: str, root_dir: Path) -> None:
    """With several workers each binds the gRPC port itself, after the
    switch: refused at once, with the way out named."""
    home = root_dir / "home-grpc-port"
    home.mkdir()
    (grpc_port,) = _free_privileged_ports(1)
    line = _refused(python_for_nobody, home, home / "data", "--grpc-addr", f"127.0.0.1:{grpc_port}")
    assert line == (
        f"twistd lightningstor: --uid/--gid: each worker binds the gRPC port {grpc_port} as {_nobody()}, who may not"
        " bind ports under 1024; choose a gRPC port from 1024, or one worker (--workers 1)"
    )
