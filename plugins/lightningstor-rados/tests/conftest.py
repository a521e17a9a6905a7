"""Fixtures for the rados plugin's tests: a real one-host Ceph cluster on loopback.

The cluster is started once per test session by ``ceph_cluster.sh`` (mon +
bluestore OSD on a sparse file, about 10 s) in a fresh directory under /tmp
with monitor ports picked at run time, and stopped (by PID) at the end.

Tests that need it use the ``ceph`` fixture.  Where Ceph or the ``rados``
binding is missing they are skipped, unless ``LIGHTNINGSTOR_REQUIRE_TOOLS=1``
(as in CI), which turns the skip into a failure.

LightningStor's own test helpers (the storage contract suite, the
``twistd`` process runner) live in its source tree, not in the installed
package; the checkout this plugin sits in is put on ``sys.path`` for them.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "ceph_cluster.sh"
SOURCE = Path(os.environ.get("LIGHTNINGSTOR_SOURCE", HERE.parents[2]))
if (SOURCE / "tests" / "contract").is_dir() and str(SOURCE) not in sys.path:
    sys.path.insert(0, str(SOURCE))

REQUIRE_TOOLS = os.environ.get("LIGHTNINGSTOR_REQUIRE_TOOLS") == "1"
BINARIES = ("ceph-mon", "ceph-osd", "ceph", "ceph-authtool", "monmaptool", "uuidgen")


def missing_ceph() -> str | None:
    """Why a Ceph test cannot run here, or None if it can."""
    absent = [b for b in BINARIES if shutil.which(b) is None]
    if absent:
        return f"Ceph binaries not installed: {', '.join(absent)}"
    try:
        import rados  # type: ignore[import-not-found,import-untyped,unused-ignore]  # noqa: F401
    except ImportError as exc:
        return f"the rados Python binding is not importable ({exc}); see scripts/link-system-rados.sh"
    return None


def _free_port_pair() -> int:
    """A port p with p and p+1 both free on 127.0.0.1 (the mon's v2 and v1 ports)."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port >= 65535:
            continue
        with socket.socket() as s2:
            try:
                s2.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair on 127.0.0.1")


@dataclass
class CephCluster:
    """A running test cluster: where its config and admin key are, and OSD control."""

    work: Path
    env: dict[str, str]

    @property
    def conf_file(self) -> str:
        return str(self.work / "ceph.conf")

    @property
    def keyring(self) -> str:
        return str(self.work / "keyring")

    def run(self, action: str, timeout: float = 180.0) -> None:
        proc = subprocess.run(
            [str(SCRIPT), action], env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if proc.returncode != 0:
            raise RuntimeError(f"ceph_cluster.sh {action} failed:\n{proc.stdout}\n{proc.stderr}")

    def stop_osd(self) -> None:
        self.run("stop-osd")

    def start_osd(self) -> None:
        self.run("start-osd")

    def rados_table(self, pool: str, namespace: str = "", **extra: object) -> dict[str, object]:
        """A ``[storage.rados]`` table for this cluster (create_pool on)."""
        table: dict[str, object] = {
            "conf_file": self.conf_file, "keyring": self.keyring, "user": "admin",
            "pool": pool, "create_pool": True, "namespace": namespace,
        }
        table.update(extra)
        return table


@pytest.fixture(scope="session")
def ceph() -> Iterator[CephCluster]:
    reason = missing_ceph()
    if reason is not None:
        if REQUIRE_TOOLS:
            pytest.fail(f"LIGHTNINGSTOR_REQUIRE_TOOLS=1 but {reason}")
        pytest.skip(reason)
    # Short path on purpose: admin sockets live under it (unix paths < 108 bytes).
    work = Path(tempfile.mkdtemp(prefix="lsr-", dir="/tmp"))
    env = dict(os.environ, CEPH_WORK=str(work), MON_PORT=str(_free_port_pair()))
    cluster = CephCluster(work, env)
    try:
        cluster.run("start")
        yield cluster
    finally:
        try:
            cluster.run("stop")
        finally:
            shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def namespace() -> str:
    """A fresh RADOS namespace: an empty backend on the shared test pool."""
    return f"t-{uuid.uuid4().hex[:12]}"
