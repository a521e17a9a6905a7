"""Running ``twistd lightningstor`` with ``[storage] backend = "rados"`` for the end-to-end tests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.integration.conftest import make_client
from tests.integration.server import ServerProcess

from conftest import CephCluster


def server_config(ceph: CephCluster, pool: str, namespace: str, op_timeout: float = 30.0, extra: str = "") -> str:
    """The TOML a deployment would write: generic [storage] plus the plugin's own table
    (``extra``: more tables, such as ``[server]``)."""
    table = ceph.rados_table(pool, namespace, op_timeout_seconds=op_timeout, connect_timeout_seconds=10)
    lines = [extra, '[storage]', 'backend = "rados"', "", "[storage.rados]"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in table.items()]
    return "\n".join(lines) + "\n"


@contextmanager
def rados_server(tmp_path: Path, ceph: CephCluster, pool: str, namespace: str,
                 op_timeout: float = 30.0, extra: str = "") -> Iterator[tuple[ServerProcess, Any]]:
    """A started server over RADOS and a boto3 client for it; stopped on exit."""
    cfg = tmp_path / "server.toml"
    cfg.write_text(server_config(ceph, pool, namespace, op_timeout, extra))
    data = tmp_path / "data"
    data.mkdir()
    server = ServerProcess(data, config=str(cfg)).start(timeout=60)
    try:
        yield server, make_client(server.endpoint, read_timeout=120)
    finally:
        server.stop()
