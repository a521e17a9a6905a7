"""Storage-node processes (``twistd -n lightningstor-node``) for integration tests."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc

from lightningstor.node.gen import lightningstor_node_pb2 as pb
from lightningstor.node.gen import lightningstor_node_pb2_grpc as pb_grpc
from tests.integration.server import ServerProcess

_LISTENING = re.compile(r"Chunk service listening on [0-9.:a-f\[\]]+:(\d+)")


def free_port() -> int:
    """A loopback port free right now (nodes need fixed ports: the API
    servers' config names them, and a restarted node must come back there)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class NodeProcess:
    """One storage node on a fixed loopback port with its own data dir."""

    def __init__(self, data_dir: Path, port: int, zone: str = "", node_id: str = "node",
                 extra_args: list[str] | None = None, wrapper: list[str] | None = None,
                 twistd_args: list[str] | None = None) -> None:
        self.data_dir = data_dir
        self.extra_args = extra_args or []  # e.g. --tls-cert/--tls-key/--tls-ca
        self.twistd_args = twistd_args or []  # twistd's own options, e.g. --uid
        # A command that runs the node (its argv follows), e.g. in a mount namespace.
        self.wrapper = wrapper or []
        self.port = port
        self.zone = zone
        self.node_id = node_id
        self.proc: subprocess.Popen[str] | None = None
        self.output: list[str] = []
        self._ready = threading.Event()
        self._listening = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> NodeProcess:
        twistd = str(Path(sys.executable).with_name("twistd"))
        args = [twistd, "-n", "--pidfile=", *self.twistd_args, "lightningstor-node", "--listen", f"127.0.0.1:{self.port}",
                "--data-dir", str(self.data_dir), "--zone", self.zone, "--node-id", self.node_id, "--no-fsync",
                *self.extra_args]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self._ready.clear()
        self._listening = False
        self.proc = subprocess.Popen(self.wrapper + args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env=env, cwd=str(self.data_dir.parent))
        threading.Thread(target=self._pump, args=(self.proc,), daemon=True).start()
        # Ready only when the node said it listens: a node that exited
        # also wakes the wait (its output ended), perhaps before poll() sees it.
        if not self._ready.wait(timeout) or not self._listening or self.proc.poll() is not None:
            self.stop()
            raise RuntimeError("node did not start:\n" + "".join(self.output[-50:]))
        return self

    def _pump(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.output.append(line)
            if _LISTENING.search(line) and proc is self.proc:
                self._listening = True
                self._ready.set()
        if proc is self.proc:
            self._ready.set()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL: no shutdown at all."""
        self.stop(signal.SIGKILL)

    def stub(self) -> tuple[grpc.Channel, pb_grpc.ChunkServiceStub]:
        channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        return channel, pb_grpc.ChunkServiceStub(channel)

    def stat(self) -> pb.StatResponse:
        channel, stub = self.stub()
        with channel:
            return stub.Stat(pb.StatRequest(), timeout=10)

    def chunk_ids(self, timeout: float = 30) -> set[str]:
        """Every chunk id this node lists (ListChunks, page after page)."""
        found: set[str] = set()
        channel, stub = self.stub()
        with channel:
            after = ""
            while True:
                reply = stub.ListChunks(pb.ListChunksRequest(start_after=after), timeout=timeout)
                found.update(c.chunk_id for c in reply.chunks)
                if not reply.next_start_after:
                    return found
                after = reply.next_start_after

    def has(self, chunk_ids: list[str]) -> set[str]:
        channel, stub = self.stub()
        with channel:
            return {c for c in chunk_ids if stub.HasChunk(pb.HasChunkRequest(chunk_id=c), timeout=10).exists}


def distributed_config(nodes: list[NodeProcess], *, repair_interval_seconds: float, write_quorum: int | None = None,
                       replication_factor: int = 3, placement_strategy: str = "zone_aware") -> str:
    """The API server's config for ``nodes``: the distributed backend with 1 MiB
    chunks, nothing inline (every byte goes to the nodes), three zone-aware
    copies (unless ``replication_factor``/``placement_strategy`` say
    otherwise; ``write_quorum`` of them required, default a majority), and
    repair every ``repair_interval_seconds`` (0: off)."""
    config = (
        "[storage]\n"
        'backend = "distributed"\n'
        "chunk_size_bytes = 1048576\n"
        "inline_threshold_bytes = 0\n"
        "[storage.distributed]\n"
        "nodes = [" + ", ".join(f'"{n.url}"' for n in nodes) + "]\n"
        "zones = [" + ", ".join(f'"{n.zone}"' for n in nodes) + "]\n"
        f"replication_factor = {replication_factor}\n"
        f'placement_strategy = "{placement_strategy}"\n'
        f"repair_interval_seconds = {repair_interval_seconds}\n"
    )
    if write_quorum is not None:
        config += f"write_quorum = {write_quorum}\n"
    return config


def make_nodes(root: Path, count: int) -> list[NodeProcess]:
    """``count`` storage nodes under ``root`` (not started), each on a free
    port, in a zone of its own, with an empty data directory."""
    nodes = [NodeProcess(root / f"node-{i}", free_port(), zone=f"zone-{i}", node_id=f"node-{i}")
             for i in range(count)]
    for node in nodes:
        node.data_dir.mkdir()
    return nodes


def api_server(root: Path, config: str) -> ServerProcess:
    """An API server (not started) with ``config`` (e.g. :func:`distributed_config`)
    written to ``root/api.toml`` and its data in ``root/api``."""
    path = root / "api.toml"
    path.write_text(config)
    data = root / "api"
    data.mkdir()
    return ServerProcess(data, config=str(path))


@contextmanager
def three_nodes_and_api_server(root: Path) -> Iterator[tuple[list[NodeProcess], ServerProcess]]:
    """Three nodes (three copies of every chunk, placement by consistent
    hash, repair off) and an API server, all stopped at the end; a node left
    stopped (SIGSTOP) by a test is resumed first."""
    nodes = make_nodes(root, 3)
    started: list[Any] = []
    try:
        for node in nodes:
            started.append(node.start())
        server = api_server(root, distributed_config(nodes, repair_interval_seconds=0, replication_factor=3,
                                                     placement_strategy="consistent_hash"))
        started.append(server.start())
        yield nodes, server
    finally:
        for node in nodes:
            if node.proc is not None and node.proc.poll() is None:
                os.kill(node.proc.pid, signal.SIGCONT)
        for proc in reversed(started):
            proc.stop()
