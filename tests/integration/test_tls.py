"""The S3 endpoint over TLS 1.3 on a real server process, with real clients."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from cryptography import x509

from tests.integration.certs import Pki, issue, make_pki, tls_handshake
from tests.integration.conftest import make_client
from tests.integration.raw import read_slowly
from tests.integration.server import ROOT_ACCESS_KEY, ROOT_SECRET_KEY, ServerProcess


def _start(tmp_path: Path, pki: Pki, extra: str = "", *, workers: int = 1) -> ServerProcess:
    config = tmp_path / "tls.toml"
    config.write_text(pki.config() + extra)
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    return ServerProcess(data, config=str(config), extra_args=["--workers", str(workers)]).start()


def _https(server: ServerProcess) -> str:
    return f"https://127.0.0.1:{server.port}"


def _peer_serial(server: ServerProcess, pki: Pki) -> int:
    """Serial of the certificate a fresh TLS connection is shown."""
    ctx = ssl.create_default_context(cafile=str(pki.ca_file))
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Pki]]:
    base = tmp_path_factory.mktemp("tls")
    pki = make_pki(base / "pki")
    server = _start(base, pki)
    yield server, pki
    server.stop()


def test_listening_line_keeps_its_shape_over_tls(tls_server: tuple[ServerProcess, Pki]) -> None:
    """The start-up line tools parse for the port still reads "S3 API listening on HOST:PORT", marked https."""
    server, _ = tls_server
    line = next(line for line in server.output if "S3 API listening on" in line)
    assert f"127.0.0.1:{server.port} (https)" in line


def test_boto3_over_https_round_trips_10_mib(tls_server: tuple[ServerProcess, Pki]) -> None:
    """boto3 over HTTPS (aws-chunked bodies with a CRC32 trailer) creates a bucket and
    puts and gets a 10 MiB object byte-identically, verifying the server against the CA."""
    server, pki = tls_server
    s3 = _client(server, pki)
    bucket = f"tls-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    data = os.urandom(10 * 1024 * 1024)
    put = s3.put_object(Bucket=bucket, Key="big.bin", Body=data)
    assert "ChecksumCRC32" in put  # the trailer was sent and checked
    got = s3.get_object(Bucket=bucket, Key="big.bin")["Body"].read()
    assert got == data


def _client(server: ServerProcess, pki: Pki) -> Any:
    """boto3 over HTTPS, verifying the server against the test CA, with its
    default checksum behaviour (aws-chunked uploads with a CRC32 trailer)."""
    return boto3.client(
        "s3",
        endpoint_url=_https(server),
        aws_access_key_id=ROOT_ACCESS_KEY,
        aws_secret_access_key=ROOT_SECRET_KEY,
        region_name="us-east-1",
        verify=str(pki.ca_file),
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                      retries={"max_attempts": 1, "mode": "standard"}),
    )


def test_aws_cli_with_ca_bundle_copies_up_and_down(
    tls_server: tuple[ServerProcess, Pki], tmp_path: Path
) -> None:
    """aws cli with --ca-bundle copies a file up and back down over HTTPS unchanged."""
    server, pki = tls_server
    local = Path(sys.executable).with_name("aws")
    aws = str(local) if local.exists() else shutil.which("aws")
    if aws is None:
        pytest.skip("aws cli not installed")
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    env.update({"AWS_ACCESS_KEY_ID": ROOT_ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": ROOT_SECRET_KEY,
                "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": str(tmp_path / "none"),
                "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")})
    common = ["--endpoint-url", _https(server), "--ca-bundle", str(pki.ca_file)]
    bucket = f"tlscli-{uuid.uuid4().hex[:8]}"
    src = tmp_path / "up.bin"
    src.write_bytes(os.urandom(3 * 1024 * 1024 + 7))
    for args in (["s3", "mb", f"s3://{bucket}"],
                 ["s3", "cp", str(src), f"s3://{bucket}/up.bin"],
                 ["s3", "cp", f"s3://{bucket}/up.bin", str(tmp_path / "down.bin")]):
        proc = subprocess.run([aws, *common, *args], env=env, capture_output=True, timeout=60)
        assert proc.returncode == 0, (args, proc.stdout[-2000:], proc.stderr[-2000:])
    assert (tmp_path / "down.bin").read_bytes() == src.read_bytes()


def test_tls_1_2_client_is_refused(tls_server: tuple[ServerProcess, Pki]) -> None:
    """A client limited to TLS 1.2 fails the handshake: the endpoint speaks TLS 1.3 only."""
    server, pki = tls_server
    ctx = ssl.create_default_context(cafile=str(pki.ca_file))
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
        with pytest.raises(ssl.SSLError):
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1"):
                pass


def _grpc_port(server: ServerProcess) -> int:
    return int(server.grpc_endpoint.rsplit(":", 1)[1])


def test_grpc_port_refuses_tls_1_2(tls_server: tuple[ServerProcess, Pki]) -> None:
    """The gRPC port is TLS 1.3 only too, although grpcio has no
    minimum-version setting (lightningstor.tls.refuse_tls12_on_grpc)."""
    server, pki = tls_server
    with pytest.raises(ssl.SSLError):
        tls_handshake(_grpc_port(server), pki, ssl.TLSVersion.TLSv1_2)
    assert tls_handshake(_grpc_port(server), pki, ssl.TLSVersion.TLSv1_3) == "TLSv1.3"


def test_worker_processes_refuse_tls_1_2_on_both_ports(tmp_path: Path) -> None:
    """Workers inherit the setting from the process that starts them: with
    two, several handshakes (landing on either worker) are all refused, and
    the gRPC API still answers a TLS 1.3 client."""
    pki = make_pki(tmp_path / "pki")
    server = _start(tmp_path, pki, workers=2)
    try:
        server.ready_workers(2)
        for _ in range(6):
            for port in (server.port, _grpc_port(server)):
                with pytest.raises(ssl.SSLError):
                    tls_handshake(port, pki, ssl.TLSVersion.TLSv1_2)
        with _grpc_client(server, pki, cert=pki.client_cert_file.read_bytes(),
                          key=pki.client_key_file.read_bytes()) as client:
            assert isinstance(client.list_buckets(), list)
    finally:
        server.stop()


def test_tls_1_3_client_is_served_with_or_without_client_certificate(
    tls_server: tuple[ServerProcess, Pki],
) -> None:
    """TLS 1.3 clients get /health whether or not they hold a client certificate:
    ca_file does not turn on mTLS for S3 (AWS clients cannot present one)."""
    server, pki = tls_server
    for with_cert in (False, True):
        ctx = ssl.create_default_context(cafile=str(pki.ca_file))
        if with_cert:
            ctx.load_cert_chain(str(pki.client_cert_file), str(pki.client_key_file))
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                assert tls.version() == "TLSv1.3"
                tls.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                reply = b""
                while chunk := tls.recv(4096):
                    reply += chunk
        assert reply.startswith(b"HTTP/1.1 200"), reply[:100]


def _wait_for_serial(server: ServerProcess, pki: Pki, serial: int, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    seen = _peer_serial(server, pki)
    while seen != serial and time.monotonic() < deadline:
        time.sleep(0.05)
        seen = _peer_serial(server, pki)
    return seen


def test_sighup_reloads_the_certificate_without_restart(tmp_path: Path) -> None:
    """After the cert and key files are replaced and SIGHUP is sent, new connections
    present the new certificate, a connection opened before keeps working, and the
    process is the same one throughout."""
    pki = make_pki(tmp_path / "pki")
    server = _start(tmp_path, pki)
    try:
        assert server.proc is not None
        pid = server.proc.pid
        old = pki.server.serial
        assert _peer_serial(server, pki) == old
        ctx = ssl.create_default_context(cafile=str(pki.ca_file))
        before = ctx.wrap_socket(socket.create_connection(("127.0.0.1", server.port), timeout=5),
                                 server_hostname="127.0.0.1")
        new = issue(pki.ca, "localhost", server=True)
        pki.install_server(new)
        os.kill(pid, signal.SIGHUP)
        assert _wait_for_serial(server, pki, new.serial) == new.serial
        assert server.proc.poll() is None and server.proc.pid == pid
        # The connection made before the reload still has the old certificate and still works.
        peer = before.getpeercert(binary_form=True)
        assert peer is not None and x509.load_der_x509_certificate(peer).serial_number == old
        before.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        assert before.recv(4096).startswith(b"HTTP/1.1 200")
        before.close()
        s3 = _client(server, pki)
        s3.create_bucket(Bucket="after-reload")
        assert any("TLS certificate reloaded" in line for line in server.output)
        # The gRPC listener serves the reloaded certificate too.
        assert _grpc_peer_serial(server, pki) == new.serial
        with _grpc_client(server, pki, cert=pki.client_cert_file.read_bytes(),
                          key=pki.client_key_file.read_bytes()) as client:
            assert "after-reload" in [b.name for b in client.list_buckets()]
    finally:
        server.stop()


def _grpc_peer_serial(server: ServerProcess, pki: Pki) -> int:
    """Serial of the certificate a fresh TLS connection to the gRPC port is shown."""
    ctx = ssl.create_default_context(cafile=str(pki.ca_file))
    ctx.load_cert_chain(str(pki.client_cert_file), str(pki.client_key_file))
    ctx.set_alpn_protocols(["h2"])
    host, port = server.grpc_endpoint.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def test_sighup_with_a_broken_certificate_keeps_the_old_one(tmp_path: Path) -> None:
    """A SIGHUP while the cert file is broken logs an error and keeps serving the
    previous certificate; the server stays up."""
    pki = make_pki(tmp_path / "pki")
    server = _start(tmp_path, pki)
    try:
        assert server.proc is not None
        old = pki.server.serial
        pki.cert_file.write_bytes(b"-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n")
        os.kill(server.proc.pid, signal.SIGHUP)
        deadline = time.monotonic() + 10
        while not any("TLS reload failed" in line for line in server.output):
            assert time.monotonic() < deadline, "".join(server.output[-20:])
            time.sleep(0.05)
        assert "server.tls.cert_file" in next(line for line in server.output if "TLS reload failed" in line)
        assert _peer_serial(server, pki) == old
        assert server.proc.poll() is None
    finally:
        server.stop()


def test_key_not_matching_the_certificate_stops_start_up(tmp_path: Path) -> None:
    """Start-up with a key that does not belong to the certificate fails, naming the key."""
    pki = make_pki(tmp_path / "pki")
    other = issue(pki.ca, "localhost", server=True)
    pki.key_file.write_bytes(other.key_pem())
    with pytest.raises(RuntimeError) as info:
        _start(tmp_path, pki)
    assert "server.tls.key_file" in str(info.value)
    assert "does not match" in str(info.value)


def test_sighup_without_tls_is_harmless(tmp_data: Path) -> None:
    """SIGHUP to a plain-HTTP server (systemctl reload) is logged (and reopens the
    audit log) instead of killing the process (SIGHUP's default action)."""
    server = ServerProcess(tmp_data).start()
    try:
        assert server.proc is not None
        os.kill(server.proc.pid, signal.SIGHUP)
        deadline = time.monotonic() + 10
        while not any("Received SIGHUP" in line for line in server.output):
            assert server.proc.poll() is None, "".join(server.output[-20:])
            assert time.monotonic() < deadline
            time.sleep(0.05)
        make_client(server.endpoint).create_bucket(Bucket="still-up")
    finally:
        server.stop()


def _grpc_client(server: ServerProcess, pki: Pki, *, cert: bytes | None, key: bytes | None) -> Any:
    from lightningstor.client import LightningStorClient

    return LightningStorClient.connect(
        f"grpcs://{server.grpc_endpoint}", access_key=ROOT_ACCESS_KEY, secret_key=ROOT_SECRET_KEY,
        root_certificates=pki.ca_file.read_bytes(), certificate_chain=cert, private_key=key, timeout=10,
    )


def test_grpc_mtls_accepts_a_client_certificate_from_the_ca(tls_server: tuple[ServerProcess, Pki]) -> None:
    """With ca_file set, the gRPC API serves TLS and a client certificate issued by that CA is accepted."""
    server, pki = tls_server
    with _grpc_client(server, pki, cert=pki.client_cert_file.read_bytes(),
                      key=pki.client_key_file.read_bytes()) as client:
        name = f"mtls-{uuid.uuid4().hex[:8]}"
        client.create_bucket(name)
        assert name in [b.name for b in client.list_buckets()]


@pytest.mark.parametrize("which", ["missing", "other-ca"])
def test_grpc_mtls_refuses_missing_or_foreign_client_certificate(
    tls_server: tuple[ServerProcess, Pki], tmp_path: Path, which: str
) -> None:
    """No client certificate, or one from another CA, never gets a gRPC call through."""
    from lightningstor.client.errors import LightningStorError

    server, pki = tls_server
    if which == "missing":
        cert = key = None
    else:
        other = make_pki(tmp_path / "other")
        cert, key = other.client_cert_file.read_bytes(), other.client_key_file.read_bytes()
    with _grpc_client(server, pki, cert=cert, key=key) as client:
        with pytest.raises(LightningStorError):
            client.list_buckets()


def test_cli_presents_a_client_certificate_to_an_mtls_grpc_port(tls_server: tuple[ServerProcess, Pki]) -> None:
    """The lightningstor command reaches a gRPC port that requires client
    certificates (ca_file set, as the deployment examples do) with
    --cert-file/--key-file; it had only --ca-file, and every command failed."""
    import io

    from lightningstor.client import cli

    server, pki = tls_server
    base = ["--endpoint", f"grpcs://{server.grpc_endpoint}", "--ca-file", str(pki.ca_file),
            "--access-key", ROOT_ACCESS_KEY, "--secret-key", ROOT_SECRET_KEY]
    mtls = [*base, "--cert-file", str(pki.client_cert_file), "--key-file", str(pki.client_key_file)]
    name = f"cli-mtls-{uuid.uuid4().hex[:8]}"
    out, err = io.StringIO(), io.StringIO()
    assert cli.main([*mtls, "mb", f"s3://{name}"], out=out, err=err) == cli.EXIT_OK, err.getvalue()
    assert cli.main([*mtls, "ls"], out=out, err=err) == cli.EXIT_OK, err.getvalue()
    assert name in out.getvalue()
    assert cli.main([*base, "-q", "ls"], out=io.StringIO(), err=io.StringIO()) != cli.EXIT_OK
    assert cli.main([*base, "--cert-file", str(pki.client_cert_file), "ls"],
                    out=io.StringIO(), err=io.StringIO()) == cli.EXIT_USAGE


def test_bucket_policies_see_tls_and_its_version(tls_server: tuple[ServerProcess, Pki]) -> None:
    """Over TLS, aws:SecureTransport is true and s3:TlsVersion is 1.3: the
    usual "TLS only" Deny lets the request through, a Deny below 1.3 too,
    and a Deny of TLS 1.3 itself refuses it (the keys are really there)."""
    import json

    server, pki = tls_server
    s3 = _client(server, pki)
    bucket = f"tls-policy-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="k", Body=b"secret")

    def deny(condition: dict[str, Any]) -> None:
        s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [{
            "Effect": "Deny", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/*",
            "Condition": condition}]}))  # fmt: skip

    deny({"Bool": {"aws:SecureTransport": "false"}})
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"secret"
    deny({"NumericLessThan": {"s3:TlsVersion": "1.3"}})
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"secret"
    deny({"NumericEquals": {"s3:TlsVersion": "1.3"}})
    with pytest.raises(ClientError) as denied:
        s3.get_object(Bucket=bucket, Key="k")
    assert denied.value.response["Error"]["Code"] == "AccessDenied"
    s3.delete_bucket_policy(Bucket=bucket)


def test_the_send_deadline_works_through_tls(tmp_path: Path) -> None:
    """Over TLS the send deadline reads the client's progress from the TCP
    connection under the TLS layer: a GET whose client reads nothing is
    aborted a few seconds after idle_timeout_seconds = 3, and one that reads
    64 KiB a second for 8 s keeps its connection and gets the whole object.
    The two connections run side by side (one after the other took the
    abort's seconds longer, and proved no more)."""
    pki = make_pki(tmp_path / "pki")
    server = _start(tmp_path, pki, "\n[limits]\nidle_timeout_seconds = 3\n")
    try:
        s3 = _client(server, pki)
        s3.create_bucket(Bucket="tlsslow")
        body = os.urandom(16 << 20)
        s3.put_object(Bucket="tlsslow", Key="big", Body=body)
        path = s3.generate_presigned_url(
            "get_object", Params={"Bucket": "tlsslow", "Key": "big"}, ExpiresIn=300
        ).split(str(server.port), 1)[1]
        ctx = ssl.create_default_context(cafile=str(pki.ca_file))
        request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode()

        def connect() -> ssl.SSLSocket:
            raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            return ctx.wrap_socket(raw, server_hostname="127.0.0.1")

        def slow_but_steady() -> None:
            with connect() as tls:
                tls.sendall(request)
                read_slowly(tls, body)

        with ThreadPoolExecutor(1) as pool:
            steady = pool.submit(slow_but_steady)
            with connect() as tls:
                tls.sendall(request)
                began = time.monotonic()
                while tls.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0] == 1:  # ESTABLISHED
                    assert time.monotonic() - began < 12, "the server waited for a client that never read"
                    time.sleep(0.1)
                assert time.monotonic() - began >= 2.5
            steady.result(timeout=60)
    finally:
        server.stop()


def test_an_upload_refused_before_its_body_never_runs_over_tls(tls_server: tuple[ServerProcess, Pki]) -> None:
    """``Expect: 100-continue`` refused at once (here a wrong signature), and
    the client sends its body anyway: over TLS the connection's close waits
    for the TLS shutdown, so the body can arrive whole before it.  The
    refused request must still not reach its handler (it did, and failed
    there, logged at critical level, once per request, for anyone without
    credentials); the client gets the 403 and nothing is stored."""
    server, pki = tls_server
    s3 = _client(server, pki)
    bucket = f"tls-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    liar = boto3.client(
        "s3", endpoint_url=_https(server), aws_access_key_id=ROOT_ACCESS_KEY, aws_secret_access_key="not-the-secret",
        region_name="us-east-1", verify=str(pki.ca_file), config=Config(signature_version="s3v4"),
    )
    first_line = len(server.output)
    ctx = ssl.create_default_context(cafile=str(pki.ca_file))
    for n in range(3):
        url = liar.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": f"refused-{n}"})
        path = url.split(f":{server.port}", 1)[1]
        body = os.urandom(200_000)
        head = (f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nContent-Length: {len(body)}\r\n"
                "Expect: 100-continue\r\n\r\n").encode()
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                tls.sendall(head)
                answer = tls.recv(65536)
                assert answer.startswith(b"HTTP/1.1 403"), answer[:80]
                try:
                    tls.sendall(body)
                    while tls.recv(65536):
                        pass
                except (ssl.SSLError, OSError):
                    pass  # the server may close first; either way it is refused
    time.sleep(1.0)
    faults = [line for line in server.output[first_line:] if "#critical" in line or "Traceback" in line]
    assert faults == [], faults[:3]
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)


def test_connections_above_the_cap_that_never_handshake_are_closed(tmp_path: Path) -> None:
    """Over TLS a connection refused above ``limits.max_connections`` (503
    SlowDown) closes only once its TLS layer has closed, which waits for a
    handshake the client may never start: the server aborts it within a few
    seconds.  It used to keep every such connection, and its descriptor, for
    ever (the cap's own purpose defeated).  Connections under the cap are
    unaffected."""
    pki = make_pki(tmp_path / "pki")
    server = _start(tmp_path, pki, "\n[limits]\nmax_connections = 2\n")
    ctx = ssl.create_default_context(cafile=str(pki.ca_file))
    held = [ctx.wrap_socket(socket.create_connection(("127.0.0.1", server.port), timeout=10),
                            server_hostname="127.0.0.1") for _ in range(2)]  # fmt: skip
    silent = [socket.create_connection(("127.0.0.1", server.port), timeout=1) for _ in range(4)]
    try:
        began = time.monotonic()
        for sock in silent:
            while True:
                try:
                    if sock.recv(4096) == b"":
                        break
                except TimeoutError:
                    pass
                except ConnectionResetError:
                    break
                assert time.monotonic() - began < 20, "a connection above the cap was never closed"
        assert time.monotonic() - began < 20
        held[0].sendall(f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode())
        assert held[0].recv(4096).startswith(b"HTTP/1.1 200")
    finally:
        for sock in (*held, *silent):
            sock.close()
        server.stop()


@pytest.mark.parametrize(("offered", "chosen"), [(["http/1.1"], "http/1.1"), (["http/1.0"], "http/1.0"),
                                                 (["h2", "http/1.1"], "http/1.1")])  # fmt: skip
def test_alpn_offers_of_http_1_are_served(tls_server: tuple[ServerProcess, Pki], offered: list[str], chosen: str) -> None:
    """A client offering ALPN ``http/1.0`` only (``curl --http1.0``) is
    served: its handshake used to fail with an internal_error alert, though
    the server speaks HTTP/1.0.  HTTP/2 is never chosen."""
    server, pki = tls_server
    ctx = ssl.create_default_context(cafile=str(pki.ca_file))
    ctx.set_alpn_protocols(offered)
    version = chosen.upper().encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            assert tls.selected_alpn_protocol() == chosen
            tls.sendall(b"GET /health " + version + b"\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            assert tls.recv(4096).startswith(b"HTTP/1.")


def test_a_request_refused_before_its_body_is_not_timed_afterwards(tmp_path: Path) -> None:
    """A PUT refused before its body (EntityTooLarge) over TLS, whose client
    keeps the connection: the close waits for the client's close_notify, and
    the body deadline, armed when the length was read, used to fire on the
    request already answered (a 'request body brought 0 bytes' line and a
    second, undeliverable 400).  It is stopped with the refusal."""
    pki = make_pki(tmp_path / "pki")
    server = _start(tmp_path, pki, "\n[limits]\nbody_timeout_seconds = 1\n")
    ctx = ssl.create_default_context(cafile=str(pki.ca_file))
    try:
        first_line = len(server.output)
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                tls.sendall(b"PUT /any-bucket/k HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 6000000000000\r\n\r\n")
                assert b"EntityTooLarge" in tls.recv(65536)
                time.sleep(3.5)  # three body deadlines, the connection kept open
        time.sleep(0.5)
        assert not any("request body brought" in line for line in server.output[first_line:]), server.output[first_line:]
    finally:
        server.stop()
