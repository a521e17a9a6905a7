"""Graceful shutdown and virtual-hosted-style addressing on dedicated server processes."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.integration.conftest import make_client
from tests.integration.server import ROOT_ACCESS_KEY, ROOT_SECRET_KEY, Daemon, ServerProcess

CREDS = Credentials(ROOT_ACCESS_KEY, ROOT_SECRET_KEY)


def test_sigterm_finishes_inflight_upload(tmp_data: Path) -> None:
    """SIGTERM stops accepting connections but lets an upload in flight complete and persist."""
    server = ServerProcess(tmp_data).start()
    try:
        s3 = make_client(server.endpoint)
        s3.create_bucket(Bucket="drain")
        data = os.urandom(4 * 1024 * 1024)
        url = f"{server.endpoint}/drain/inflight"
        req = AWSRequest("PUT", url, data=data, headers={"Content-Length": str(len(data))})
        S3SigV4Auth(CREDS, "s3", "us-east-1").add_auth(req)
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        head = [f"PUT {urlsplit(url).path} HTTP/1.1", f"Host: 127.0.0.1:{server.port}"]
        head += [f"{k}: {v}" for k, v in req.headers.items() if k.lower() != "host"]
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + data[: len(data) // 2])
        time.sleep(0.3)
        assert server.proc is not None
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        # New connections are refused while the old one is still being served.
        try:
            socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
            refused = False
        except OSError:
            refused = True
        assert refused
        sock.sendall(data[len(data) // 2:])
        reply = sock.recv(4096)
        sock.close()
        assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
        # twistd re-raises the terminating signal on itself after a clean stop.
        assert server.proc.wait(30) in (0, -signal.SIGTERM)
        server.proc = None
        assert any("Server Shut Down" in line for line in server.output)
        server.start()
        s3 = make_client(server.endpoint)
        assert s3.get_object(Bucket="drain", Key="inflight")["Body"].read() == data
    finally:
        server.stop()


def test_sigterm_lets_a_slow_reader_receive_a_whole_get(tmp_data: Path) -> None:
    """A GET is done, for the server, once its last bytes are in the
    connection's send buffer: SIGTERM must still let a slow reader receive
    them all (the reactor's stop once dropped the last few hundred KiB),
    then close the connection, and the idle ones, without waiting out the
    drain's bound."""
    server = ServerProcess(tmp_data).start()
    try:
        s3 = make_client(server.endpoint)
        s3.create_bucket(Bucket="drain")
        data = os.urandom(8 * 1024 * 1024)
        s3.put_object(Bucket="drain", Key="big", Body=data)
        url = s3.generate_presigned_url("get_object", Params={"Bucket": "drain", "Key": "big"}, ExpiresIn=300)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
        sock.settimeout(30)
        sock.connect(("127.0.0.1", server.port))
        target = urlsplit(url)
        sock.sendall(f"GET {target.path}?{target.query} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode())
        received = b""
        while b"\r\n\r\n" not in received:
            received += sock.recv(65536)
        head, body = received.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 200"), head
        assert server.proc is not None
        server.proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        while len(body) < len(data) and time.monotonic() - started < 30:
            piece = sock.recv(256 * 1024)
            if not piece:
                break
            body += piece
            time.sleep(0.01)  # a reader slower than the server
        assert len(body) == len(data) and body == data
        assert sock.recv(1) == b""  # then closed
        sock.close()
        assert server.proc.wait(30) in (0, -signal.SIGTERM)
        # Not held until the drain's bound (30 s): the idle keep-alive
        # connection of the client that wrote the object closes at once too.
        assert time.monotonic() - started < 15
        server.proc = None
    finally:
        server.stop()


def test_virtual_hosted_style(tmp_path: Path) -> None:
    """With [s3] domain set, Host: bucket.domain addresses the bucket (SigV4-signed request)."""
    data = tmp_path / "data"
    data.mkdir()
    cfg = tmp_path / "vhost.toml"
    cfg.write_text('[s3]\ndomain = "s3.test"\n')
    server = ServerProcess(data, config=str(cfg)).start()
    try:
        s3 = make_client(server.endpoint)
        s3.create_bucket(Bucket="vbucket")
        for auth_cls, key in ((S3SigV4Auth, "via-v4"),):
            url = f"http://vbucket.s3.test:{server.port}/{key}"
            req = AWSRequest("PUT", url, data=b"virtual", headers={})
            auth_cls(CREDS, "s3", "us-east-1").add_auth(req)
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
            conn.putrequest("PUT", f"/{key}", skip_host=True, skip_accept_encoding=True)
            conn.putheader("Host", f"vbucket.s3.test:{server.port}")
            for k, v in req.headers.items():
                if k.lower() != "host":
                    conn.putheader(k, v)
            conn.putheader("Content-Length", "7")
            conn.endheaders(b"virtual")
            resp = conn.getresponse()
            assert resp.status == 200, resp.read()
            conn.close()
            assert s3.get_object(Bucket="vbucket", Key=key)["Body"].read() == b"virtual"
        # A path-style request keeps working beside virtual-hosted ones.
        assert [o["Key"] for o in s3.list_objects_v2(Bucket="vbucket")["Contents"]] == ["via-v4"]
    finally:
        server.stop()


def test_a_daemonized_single_process_server_answers_and_stops(tmp_data: Path, tmp_path: Path) -> None:
    """twistd without -n and one worker (the default on a one-CPU host): the
    daemon answers S3 requests and SIGTERM stops it, removing its pid file.
    twistd forks after building the service, and the metadata store had
    started its threads before the fork: requests and the stop hung.  So had
    the io and cpu pools: the first object large enough for chunk files
    waited on a thread the daemon did not have (60 s, until a timer woke it)."""
    daemon = Daemon(tmp_data, tmp_path, workers=1)
    try:
        text = daemon.wait_for("Root access key")  # after the listening line
        port = int(text.split("S3 API listening on 127.0.0.1:", 1)[1].split()[0])
        s3 = make_client(f"http://127.0.0.1:{port}", connect_timeout=5, read_timeout=10)
        s3.create_bucket(Bucket="daemon")  # type: ignore[attr-defined]
        s3.put_object(Bucket="daemon", Key="k", Body=b"v")  # type: ignore[attr-defined]
        assert s3.get_object(Bucket="daemon", Key="k")["Body"].read() == b"v"  # type: ignore[attr-defined]
        large = os.urandom(9 * 1024 * 1024)  # beyond the inline threshold: chunk files, pool threads
        s3.put_object(Bucket="daemon", Key="large", Body=large)  # type: ignore[attr-defined]
        assert s3.get_object(Bucket="daemon", Key="large")["Body"].read() == large  # type: ignore[attr-defined]
    finally:
        daemon.stop()
    assert not daemon.pidfile.exists()


def test_the_lightningstor_server_command_runs_the_server(tmp_data: Path) -> None:
    """``lightningstor-server [OPTIONS]``, the command SPEC §8.3 names (it
    did not exist: the server was only ``twistd lightningstor``), runs the
    same server in the foreground, worker processes included, and stops on
    SIGTERM as under twistd (the supervisor ends by the signal it was
    stopped with, once every worker has stopped); ``-V`` prints the version."""
    import subprocess
    import sys

    command = str(Path(sys.executable).with_name("lightningstor-server"))
    version = subprocess.run([command, "-V"], capture_output=True, text=True, timeout=60)
    assert (version.returncode, version.stdout.split()[0]) == (0, "lightningstor")
    server = ServerProcess(tmp_data, extra_args=["--workers", "2"], command=[command]).start()
    try:
        server.ready_workers(2)
        s3 = make_client(server.endpoint)
        s3.create_bucket(Bucket="spec-command")  # type: ignore[attr-defined]
        s3.put_object(Bucket="spec-command", Key="k", Body=b"v")  # type: ignore[attr-defined]
        assert s3.get_object(Bucket="spec-command", Key="k")["Body"].read() == b"v"  # type: ignore[attr-defined]
    finally:
        status = server.stop()
    assert status == -signal.SIGTERM, "".join(server.output[-30:])
    assert "All workers stopped" in "".join(server.output)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_new_data_directory_and_metadata_database_are_private(tmp_path: Path, workers: int) -> None:
    """A server started on a data directory that does not exist yet creates
    it, and its SQLite database (with the -wal and -shm files), readable by
    its own user only, as the chunk files and keys are: small objects are
    stored in the database, so a 0644 file under a 0755 directory (the umask's
    modes, as before) let any local user read their bytes."""
    data = tmp_path / "data"
    umask = os.umask(0o022)  # the usual umask for the server, whatever the test runner's
    try:
        server = ServerProcess(data, extra_args=["--workers", str(workers)]).start()
    finally:
        os.umask(umask)
    try:
        s3 = make_client(server.endpoint)
        s3.create_bucket(Bucket="private")
        s3.put_object(Bucket="private", Key="small", Body=b"a small secret, stored inline")
        assert data.stat().st_mode & 0o777 == 0o700
        for name in ("metadata.db", "metadata.db-wal", "metadata.db-shm"):
            assert (data / name).stat().st_mode & 0o077 == 0, name
    finally:
        server.stop()


def _half_sent_put(server: ServerProcess, bucket: str, key: str, size: int) -> socket.socket:
    """A signed PUT of ``size`` bytes of which only the head and half the
    body are sent: a request in flight until the rest comes."""
    data = b"x" * size
    url = f"{server.endpoint}/{bucket}/{key}"
    req = AWSRequest("PUT", url, data=data, headers={"Content-Length": str(size)})
    S3SigV4Auth(CREDS, "s3", "us-east-1").add_auth(req)
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    head = [f"PUT {urlsplit(url).path} HTTP/1.1", f"Host: 127.0.0.1:{server.port}"]
    head += [f"{k}: {v}" for k, v in req.headers.items() if k.lower() != "host"]
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + data[: size // 2])
    return sock


def _refuses_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        return True
    return False


def test_a_stop_closes_the_s3_port_at_once_and_drains_both_apis_within_the_timeout(tmp_path: Path) -> None:
    """With an S3 upload and a gRPC upload in flight, SIGTERM closes the S3
    port at once and the whole drain fits in shutdown_timeout_seconds.  The
    gRPC API drained first (half the timeout, plus a second) while the S3
    port still took new connections, then the S3 listener waited a whole
    timeout of its own: 1.5 times the bound, past a systemd unit's stop
    timeout, and past the supervisor's kill deadline with several workers."""
    import threading

    from lightningstor.client import LightningStorClient, retry

    timeout = 4.0
    config = tmp_path / "server.toml"
    config.write_text(f"[storage]\nmin_free_bytes = 0\n[server]\nshutdown_timeout_seconds = {timeout}\n")
    server = ServerProcess(tmp_path / "data", config=str(config)).start()
    try:
        make_client(server.endpoint).create_bucket(Bucket="both")
        client = LightningStorClient.connect(
            f"grpc://{server.grpc_endpoint}", access_key=ROOT_ACCESS_KEY, secret_key=ROOT_SECRET_KEY,
            retry=retry.NO_RETRY,
        )  # fmt: skip
        upload = client.create_multipart_upload("both", "grpc")
        release = threading.Event()

        def stalled() -> Any:
            yield b"g" * 1024
            release.wait(60)  # the client has more to send, later

        grpc_call = threading.Thread(
            target=lambda: _quietly(client.upload_part, "both", "grpc", upload.upload_id, 1, stalled()), daemon=True
        )
        grpc_call.start()
        sock = _half_sent_put(server, "both", "s3", 1 << 20)
        time.sleep(0.5)
        assert server.proc is not None
        signalled = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert _refuses_connections(server.port), "the S3 port still takes connections during the drain"
        assert server.proc.wait(timeout + 10) in (0, -signal.SIGTERM)
        took = time.monotonic() - signalled
        server.proc = None
        assert took < timeout + 2.5, f"the stop took {took:.1f} s with shutdown_timeout_seconds = {timeout}"
        release.set()
        sock.close()
        client.close()
    finally:
        server.stop()


def _quietly(call: Any, *args: Any) -> None:
    try:
        call(*args)
    except Exception:  # noqa: BLE001 - the call is cut by the stop, as expected
        pass


def test_a_second_sigterm_or_a_sigint_during_the_drain_is_ignored(tmp_path: Path) -> None:
    """A one-process server acts on its first stop signal: a second SIGTERM,
    or a SIGINT (Ctrl-C on the group), during the drain made Twisted log a
    ReactorNotRunning traceback at critical level and ended the process by
    the later signal; the request in flight still completes."""
    config = tmp_path / "server.toml"
    config.write_text("[storage]\nmin_free_bytes = 0\n[server]\nshutdown_timeout_seconds = 10\n")
    server = ServerProcess(tmp_path / "data", config=str(config)).start()
    try:
        make_client(server.endpoint).create_bucket(Bucket="twice")
        size = 1 << 20
        sock = _half_sent_put(server, "twice", "k", size)
        time.sleep(0.3)
        assert server.proc is not None
        for signum in (signal.SIGTERM, signal.SIGTERM, signal.SIGINT):
            server.proc.send_signal(signum)
            time.sleep(0.3)
        sock.sendall(b"x" * (size - size // 2))
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        sock.close()
        assert server.proc.wait(30) == -signal.SIGTERM
        server.proc = None
        text = "".join(server.output)
        assert "ReactorNotRunning" not in text and "Traceback" not in text, text[-3000:]
    finally:
        server.stop()


def _closed_by_server(sock: socket.socket, within: float) -> bool:
    """Whether the server closes ``sock`` (EOF) within ``within`` seconds."""
    sock.settimeout(within)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


@pytest.mark.parametrize("workers", [1, 2])
def test_a_stop_ends_keep_alive_idle_connections_at_once_busy_ones_after_their_answer(
    tmp_path: Path, workers: int
) -> None:
    """SIGTERM closes the S3 port and ends keep-alive on the connections
    already open: an idle one is closed at once, one with an upload in
    flight gets its answer with ``Connection: close`` and is closed after
    it, and the stop then ends without waiting out its timeout.  Before,
    an idle keep-alive connection stayed open through the drain and was
    served new requests: a client with steady traffic kept the drain busy
    until its timeout cut whatever was in flight then."""
    timeout = 20.0
    config = tmp_path / "server.toml"
    config.write_text(f"[storage]\nmin_free_bytes = 0\n[server]\nshutdown_timeout_seconds = {timeout}\n")
    server = ServerProcess(tmp_path / "data", config=str(config), extra_args=["--workers", str(workers)]).start()
    if workers > 1:
        server.ready_workers(workers)
    assert server.port is not None
    keep_alive = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    busy: socket.socket | None = None
    try:
        make_client(server.endpoint).create_bucket(Bucket="alive")
        keep_alive.request("GET", "/health")
        answer = keep_alive.getresponse()
        assert (answer.status, answer.getheader("connection")) == (200, None)
        answer.read()
        idle = keep_alive.sock
        assert idle is not None
        size = 1 << 20
        busy = _half_sent_put(server, "alive", "k", size)
        time.sleep(0.3)
        assert server.proc is not None
        signalled = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        assert _closed_by_server(idle, 5.0), "an idle keep-alive connection stayed open through the drain"
        assert server.proc.poll() is None  # still draining: the upload is in flight
        busy.sendall(b"x" * (size - size // 2))
        answer = http.client.HTTPResponse(busy)
        answer.begin()
        answer.read()
        assert (answer.status, answer.getheader("connection")) == (200, "close")
        assert _closed_by_server(busy, 5.0)
        assert server.proc.wait(timeout) in (0, -signal.SIGTERM)
        took = time.monotonic() - signalled
        server.proc = None
        assert took < timeout / 2, f"the stop took {took:.1f} s once nothing was in flight"
        server.start()
        assert make_client(server.endpoint).get_object(Bucket="alive", Key="k")["Body"].read() == b"x" * size
    finally:
        keep_alive.close()
        if busy is not None:
            busy.close()
        server.stop()


def test_a_request_whose_head_is_arriving_at_the_stop_is_answered(tmp_path: Path) -> None:
    """Half of a PUT's head has come when SIGTERM arrives, and nothing else
    is in flight: the drain waits for the rest (the S3 layer counts a
    request only once its head is in), answers 200 with ``Connection:
    close`` and stores the object.  Before, the drain saw nothing in
    flight and closed the connection at once."""
    config = tmp_path / "server.toml"
    config.write_text("[storage]\nmin_free_bytes = 0\n[server]\nshutdown_timeout_seconds = 20\n")
    server = ServerProcess(tmp_path / "data", config=str(config)).start()
    sock: socket.socket | None = None
    try:
        make_client(server.endpoint).create_bucket(Bucket="arriving")
        data = os.urandom(100_000)
        url = f"{server.endpoint}/arriving/k"
        req = AWSRequest("PUT", url, data=data, headers={"Content-Length": str(len(data))})
        S3SigV4Auth(CREDS, "s3", "us-east-1").add_auth(req)
        head = [f"PUT {urlsplit(url).path} HTTP/1.1", f"Host: 127.0.0.1:{server.port}"]
        head += [f"{k}: {v}" for k, v in req.headers.items() if k.lower() != "host"]
        raw = ("\r\n".join(head) + "\r\n\r\n").encode()
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        sock.sendall(raw[: len(raw) // 2])
        time.sleep(0.3)
        assert server.proc is not None
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        sock.sendall(raw[len(raw) // 2 :] + data)
        answer = http.client.HTTPResponse(sock)
        answer.begin()
        answer.read()
        assert (answer.status, answer.getheader("connection")) == (200, "close")
        assert server.proc.wait(20) in (0, -signal.SIGTERM)
        server.proc = None
        server.start()
        assert make_client(server.endpoint).get_object(Bucket="arriving", Key="k")["Body"].read() == data
    finally:
        if sock is not None:
            sock.close()
        server.stop()
