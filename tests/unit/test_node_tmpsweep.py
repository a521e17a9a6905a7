"""lightningstor.node.tmpsweep: a storage node removes, every hour, the temp
files of chunk writes interrupted over an hour ago (a node killed in the
middle of a PutChunk and restarted at once kept its partial file until a
later restart), and leaves younger ones alone."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.task import Clock
from twisted.python.threadpool import ThreadPool

from lightningstor.node.tap import Options, _make_service
from lightningstor.node.tmpsweep import TmpSweep
from lightningstor.storage.local import LocalFsBackend


@pytest_twisted.inlineCallbacks
def test_the_sweep_removes_old_temp_files_every_hour(tmp_path: Path) -> Any:
    pool = ThreadPool(1, 2, "test-sweep")
    pool.start()
    try:
        backend = LocalFsBackend(str(tmp_path / "data"), reactor, pool)
        old, young = tmp_path / "data" / "tmp" / "old.part", tmp_path / "data" / "tmp" / "young.part"
        old.parent.mkdir(parents=True, exist_ok=True)
        for path in (old, young):
            path.write_bytes(b"partial chunk")
        stale = time.time() - 2 * 3600
        os.utime(old, (stale, stale))
        clock = Clock()
        sweep = TmpSweep(backend, clock)
        sweep.startService()
        assert old.exists()  # nothing at start (the node's start-up pass is its own)
        clock.advance(3600)
        for _ in range(100):
            if not old.exists():
                break
            yield _later(0.02)
        assert not old.exists() and young.exists()
        yield sweep.stopService()
    finally:
        pool.stop()


def _later(seconds: float) -> Any:
    from twisted.internet.task import deferLater

    return deferLater(reactor, seconds, lambda: None)


def test_a_node_runs_the_sweep(tmp_path: Path) -> None:
    options = Options()
    options.parseOptions(["--data-dir", str(tmp_path / "node"), "--node-id", "n1", "--listen", "127.0.0.1:0"])
    root = _make_service(options)
    assert any(isinstance(service, TmpSweep) for service in root)
