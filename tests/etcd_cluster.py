"""Real etcd processes for tests: one member, or a cluster on loopback.

Members listen on 127.0.0.1 only, on ports chosen free at start, keep their
data in a temporary directory and are stopped by PID.  Elections are tuned
fast (50 ms heartbeats, 500 ms election timeout) so failover tests stay
short.  Where ``/usr/bin/etcd`` (Debian's ``etcd-server``) is missing,
:func:`etcd_binary` skips the test, unless LIGHTNINGSTOR_REQUIRE_TOOLS=1
(CI sets it after installing the package): then it fails.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from lightningstor.interfaces.metadata import prefix_end

ETCD = "/usr/bin/etcd"


def etcd_binary() -> str:
    path = ETCD if os.path.exists(ETCD) else shutil.which("etcd")
    if path is None:
        if os.environ.get("LIGHTNINGSTOR_REQUIRE_TOOLS") == "1":
            pytest.fail("etcd is required (LIGHTNINGSTOR_REQUIRE_TOOLS=1) but /usr/bin/etcd is missing")
        pytest.skip("etcd not installed (Debian package etcd-server)")
    return path


def free_ports(n: int) -> list[int]:
    """Ports the kernel hands out now; held open together so they differ."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def post(
    url: str, body: dict[str, object], timeout: float = 2.0, context: ssl.SSLContext | None = None
) -> dict[str, object]:
    """A blocking JSON call to the gateway, for test set-up and checks."""
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(req, timeout=timeout, context=context) as r:
        answer: dict[str, object] = json.loads(r.read())
        return answer


def raw_keys(endpoint: str, prefix: bytes) -> list[bytes]:
    """Every etcd key under ``prefix``, read past the store."""
    answer = post(
        endpoint + "/v3/kv/range",
        {"key": base64.b64encode(prefix).decode(), "range_end": base64.b64encode(prefix_end(prefix)).decode(),
         "keys_only": True},
    )
    return [base64.b64decode(kv["key"]) for kv in answer.get("kvs", [])]  # type: ignore[attr-defined]


@dataclass
class ClientTls:
    """Serve the client port over TLS and require client certificates."""

    ca_file: Path
    cert_file: Path
    key_file: Path
    client_cert_file: Path
    client_key_file: Path

    def args(self) -> list[str]:
        return [f"--cert-file={self.cert_file}", f"--key-file={self.key_file}",
                f"--trusted-ca-file={self.ca_file}", "--client-cert-auth"]

    def context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        ctx.load_cert_chain(str(self.client_cert_file), str(self.client_key_file))
        return ctx


def make_tls(directory: Path) -> ClientTls:
    """A CA, an etcd server certificate and a client certificate on disk.

    etcd's gateway dials its own gRPC port presenting the *server*
    certificate, so with ``--client-cert-auth`` that certificate must also
    allow client authentication (tests/integration/certs.py issues
    server-only ones).
    """
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    from tests.integration.certs import Issued, issue, make_ca

    directory.mkdir(parents=True, exist_ok=True)
    ca = make_ca("etcd test CA")
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "etcd")]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), False
        )
        .sign(ca.key, hashes.SHA256())
    )
    server = Issued(cert, key)
    client = issue(ca, "lightningstor", server=False)
    tls = ClientTls(*(directory / n for n in ("ca.crt", "etcd.crt", "etcd.key", "client.crt", "client.key")))
    tls.ca_file.write_bytes(ca.cert_pem())
    tls.cert_file.write_bytes(server.cert_pem())
    tls.key_file.write_bytes(server.key_pem())
    tls.client_cert_file.write_bytes(client.cert_pem())
    tls.client_key_file.write_bytes(client.key_pem())
    return tls


class EtcdMember:
    def __init__(
        self, name: str, data_dir: Path, client_port: int, peer_port: int, tls: ClientTls | None = None
    ) -> None:
        self.name = name
        self.data_dir = data_dir
        self.tls = tls
        self.client_url = f"{'https' if tls else 'http'}://127.0.0.1:{client_port}"
        self.peer_url = f"http://127.0.0.1:{peer_port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, initial_cluster: str, extra_args: list[str], *, state: str = "new") -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            etcd_binary(),
            f"--name={self.name}",
            f"--data-dir={self.data_dir / 'data'}",
            f"--listen-client-urls={self.client_url}",
            f"--advertise-client-urls={self.client_url}",
            f"--listen-peer-urls={self.peer_url}",
            f"--initial-advertise-peer-urls={self.peer_url}",
            f"--initial-cluster={initial_cluster}",
            f"--initial-cluster-state={state}",
            "--initial-cluster-token=lightningstor-test",
            "--heartbeat-interval=50",
            "--election-timeout=500",
            "--logger=zap",
            "--log-level=warn",
            *(self.tls.args() if self.tls else []),
            *extra_args,
        ]
        log = open(self.data_dir / "etcd.log", "ab")  # noqa: SIM115 - the child keeps it
        try:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        finally:
            log.close()

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal our own child by PID and reap it."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def status(self) -> dict[str, object] | None:
        try:
            context = self.tls.context() if self.tls else None
            return post(self.client_url + "/v3/maintenance/status", {}, timeout=1.0, context=context)
        except (OSError, ValueError):
            return None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join((self.data_dir / "etcd.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class EtcdCluster:
    """``size`` etcd members on loopback; ``endpoints`` are their client URLs."""

    def __init__(
        self, base_dir: Path, size: int = 1, extra_args: list[str] | None = None, tls: ClientTls | None = None
    ) -> None:
        ports = free_ports(2 * size)
        self.members = [
            EtcdMember(f"m{i}", base_dir / f"m{i}", ports[2 * i], ports[2 * i + 1], tls) for i in range(size)
        ]
        self.extra_args = extra_args or []
        self.initial_cluster = ",".join(f"{m.name}={m.peer_url}" for m in self.members)

    @property
    def endpoints(self) -> list[str]:
        return [m.client_url for m in self.members]

    def start(self, timeout: float = 20.0) -> EtcdCluster:
        for m in self.members:
            m.start(self.initial_cluster, self.extra_args)
        try:
            self.wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_healthy(self, timeout: float = 20.0) -> None:
        """Until every running member answers and they agree on a leader."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            running = [m for m in self.members if m.alive]
            statuses = [m.status() for m in running]
            leaders = {s.get("leader") for s in statuses if s}
            if running and all(statuses) and len(leaders) == 1 and "0" not in leaders and None not in leaders:
                return
            for m in self.members:
                if m.proc is not None and m.proc.poll() is not None:
                    raise RuntimeError(f"etcd member {m.name} exited:\n{m.log_tail()}")
            time.sleep(0.05)
        raise RuntimeError("etcd cluster not healthy:\n" + "\n".join(m.log_tail(5) for m in self.members))

    def leader(self) -> EtcdMember:
        for m in self.members:
            s = m.status() if m.alive else None
            if s and s.get("leader") == s.get("header", {}).get("member_id"):  # type: ignore[union-attr]
                return m
        raise RuntimeError("no leader")

    def restart(self, member: EtcdMember) -> None:
        """Start a killed member again on its old data (it rejoins)."""
        member.start(self.initial_cluster, self.extra_args, state="existing")

    def stop(self) -> None:
        for m in self.members:
            m.kill(signal.SIGTERM)
