"""gRPC keepalive between the client library and a real server process.

A server whose host vanishes without a reset (a partition, a power cut)
sends nothing more: without HTTP/2 pings the client waits for it forever.
The client pings while a call runs; the server must accept those pings, or
grpc ends the connection ("too_many_pings") and with it every upload
longer than three ping intervals.  Both run here with intervals of about a
second (``[limits] grpc_min_ping_interval_seconds = 1`` and the client's
``options``) so the tests take seconds, not minutes; the silent host is a
loopback proxy that stops relaying without closing anything.
"""

from __future__ import annotations

import select
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from lightningstor.client import LightningStorClient, errors, retry
from lightningstor.client.client import KEEPALIVE_OPTIONS
from tests.integration.conftest import make_client
from tests.integration.server import ROOT_ACCESS_KEY, ROOT_SECRET_KEY, ServerProcess

MiB = 1 << 20
PING_MS = 1500  # the clients' ping interval here: above the server's 1 s minimum


class SilentProxy:
    """Relays TCP between clients and ``target`` until :meth:`go_silent`;
    from then on it moves no byte either way and closes nothing, as a host
    that dropped off the network would."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.silent = threading.Event()
        self.stopped = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = [self.listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                down, _ = self.listener.accept()
            except OSError:
                return
            up = socket.create_connection(self.target)
            self.sockets += [down, up]
            threading.Thread(target=self._relay, args=(down, up), daemon=True).start()

    def _relay(self, a: socket.socket, b: socket.socket) -> None:
        peer = {a: b, b: a}
        while not self.stopped.is_set():
            if self.silent.is_set():
                time.sleep(0.05)
                continue
            ready, _, _ = select.select([a, b], [], [], 0.05)
            for s in ready:
                if self.silent.is_set():
                    break
                try:
                    data = s.recv(65536)
                    if not data:
                        return
                    peer[s].sendall(data)
                except OSError:
                    return

    def go_silent(self) -> None:
        self.silent.set()

    def close(self) -> None:
        self.stopped.set()
        for s in self.sockets:
            s.close()


@pytest.fixture(scope="module")
def pinged_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = Path(tmp_path_factory.mktemp("keepalive"))
    config = root / "server.toml"
    config.write_text("[storage]\nmin_free_bytes = 0\n[limits]\ngrpc_min_ping_interval_seconds = 1\n")
    server = ServerProcess(root / "data", config=str(config)).start()
    yield server
    server.stop()


@pytest.fixture
def bucket(pinged_server: ServerProcess) -> str:
    name = f"ka-{uuid.uuid4().hex[:12]}"
    make_client(pinged_server.endpoint).create_bucket(Bucket=name)
    return name


def _client(endpoint: str, **options: int) -> LightningStorClient:
    return LightningStorClient.connect(
        f"grpc://{endpoint}", access_key=ROOT_ACCESS_KEY, secret_key=ROOT_SECRET_KEY,
        retry=retry.NO_RETRY, options=list(options.items()),
    )  # fmt: skip


def _scaled(milliseconds: int) -> dict[str, int]:
    """The client's own keepalive options, with the ping interval brought
    down to ``milliseconds`` and the others in proportion."""
    defaults = dict(KEEPALIVE_OPTIONS)
    factor = milliseconds / defaults["grpc.keepalive_time_ms"]
    return {name: round(value * factor) if name.endswith("_ms") else value for name, value in defaults.items()}


def test_the_client_pings_after_30_s_and_gives_up_after_20_more() -> None:
    options = dict(KEEPALIVE_OPTIONS)
    assert options["grpc.keepalive_time_ms"] == 30_000
    assert options["grpc.http2.ping_timeout_ms"] == options["grpc.keepalive_timeout_ms"] == 20_000


def test_a_slow_upload_that_pings_is_not_ended_by_the_server(pinged_server: ServerProcess, bucket: str) -> None:
    """Pings every 1.5 s through an upload of about 7 s, from a client that
    pings however long it has sent no data (as grpc-go's and grpc-java's
    keepalive do; grpc core's needs ``max_pings_without_data = 0``):
    grpc's default server policy (pings at most every five minutes while
    the server sends nothing) ends the connection at the fourth ping, and
    with it the upload; this server allows them."""
    client = _client(pinged_server.grpc_endpoint, **_scaled(PING_MS), **{"grpc.http2.max_pings_without_data": 0})
    upload = client.create_multipart_upload(bucket, "slow")

    def trickle() -> Iterator[bytes]:
        for _ in range(14):
            yield b"p" * 1024
            time.sleep(0.5)

    part = client.upload_part(bucket, "slow", upload.upload_id, 1, trickle())
    client.complete_multipart_upload(bucket, "slow", upload.upload_id, [(1, part.etag)])
    assert client.head_object(bucket, "slow").size == 14 * 1024
    client.close()


def test_a_server_gone_silent_mid_download_is_given_up(pinged_server: ServerProcess, bucket: str) -> None:
    """A download whose reader stops for four ping intervals (the server
    alive: its window fills, pings are answered, the client sends nothing),
    then the server's host goes silent and the reader goes on: once the
    bytes already received are read, the next unanswered ping ends the call
    with UNAVAILABLE within seconds (here 1.5 s without a byte, then 1 s
    for the answer).  With grpc's defaults the client waits far past this
    test's bound: an unanswered ping is given 60 s."""
    s3 = make_client(pinged_server.endpoint)
    s3.put_object(Bucket=bucket, Key="big", Body=b"d" * (48 * MiB))
    host, port = pinged_server.grpc_endpoint.split(":")
    proxy = SilentProxy((host, int(port)))
    client = _client(f"127.0.0.1:{proxy.port}", **_scaled(PING_MS))
    outcome: list[BaseException | int] = []

    def download() -> None:
        try:
            received = 0
            for n, piece in enumerate(client.get_object(bucket, "big")):
                received += len(piece)
                if n == 0:
                    time.sleep(4 * PING_MS / 1000)  # the reader is busy; the server is not gone
                    proxy.go_silent()
            outcome.append(received)
        except BaseException as e:  # noqa: BLE001 - the test inspects it
            outcome.append(e)

    started = time.monotonic()
    worker = threading.Thread(target=download, daemon=True)
    worker.start()
    worker.join(30.0)
    try:
        assert outcome, "the download still waits on a silent server after 30 s"
        assert isinstance(outcome[0], errors.UnavailableError), outcome[0]
        assert time.monotonic() - started < 20.0
    finally:
        client.close()
        proxy.close()
