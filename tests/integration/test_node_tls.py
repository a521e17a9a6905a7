"""Mutual TLS between the API server and the storage nodes, on real processes.

Three ``twistd lightningstor-node`` processes started with ``--tls-cert
--tls-key --tls-ca`` and an API server whose ``[storage.distributed]`` names
``https://`` nodes and a client certificate: objects round-trip through
boto3 with every chunk on all three nodes; a client of the node protocol in
plaintext, without a client certificate or with one from another CA gets no
call through (no list, get, put, delete); SIGHUP with a new node certificate
is served to new connections without a restart.  PKI from
:mod:`tests.integration.certs`: one CA signs the nodes' server certificates
(SAN 127.0.0.1) and the API server's client certificate.
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509

from lightningstor.node.gen import lightningstor_node_pb2 as pb
from lightningstor.node.gen import lightningstor_node_pb2_grpc as pb_grpc
from tests.integration.certs import Issued, Pki, issue, make_pki, tls_handshake
from tests.integration.cluster import NodeProcess, free_port
from tests.integration.conftest import make_client
from tests.integration.server import ServerProcess, wait_until

MiB = 1 << 20


class TlsNode:
    """A node process plus its own certificate files (replaced by the SIGHUP test)."""

    def __init__(self, base: Path, index: int, pki: Pki) -> None:
        self.pki = pki
        self.tls_dir = base / f"node-{index}-tls"
        self.tls_dir.mkdir()
        self.cert_file = self.tls_dir / "node.crt"
        self.key_file = self.tls_dir / "node.key"
        self.install(issue(pki.ca, "localhost", server=True))
        self.process = NodeProcess(
            base / f"node-{index}", free_port(), zone=f"zone-{index}", node_id=f"node-{index}",
            extra_args=["--tls-cert", str(self.cert_file), "--tls-key", str(self.key_file),
                        "--tls-ca", str(pki.ca_file)],
        )
        self.process.data_dir.mkdir()

    def install(self, cert: Issued) -> None:
        """Replace the key and certificate atomically (write, then rename), as deployment.md advises."""
        self.cert = cert
        for path, data in ((self.key_file, cert.key_pem()), (self.cert_file, cert.cert_pem())):
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(data)
            tmp.replace(path)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.process.port}"

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.process.port}"


class TlsCluster:
    def __init__(self, pki: Pki, nodes: list[TlsNode], server: ServerProcess) -> None:
        self.pki = pki
        self.nodes = nodes
        self.server = server
        self.s3: Any = make_client(server.endpoint)


def _good_credentials(pki: Pki) -> grpc.ChannelCredentials:
    """What the API server presents: the client certificate from the nodes' CA."""
    return grpc.ssl_channel_credentials(
        root_certificates=pki.ca_file.read_bytes(),
        private_key=pki.client_key_file.read_bytes(),
        certificate_chain=pki.client_cert_file.read_bytes(),
    )


def _stub(target: str, credentials: grpc.ChannelCredentials | None) -> tuple[grpc.Channel, Any]:
    if credentials is None:
        channel = grpc.insecure_channel(target)
    else:
        channel = grpc.secure_channel(target, credentials)
    return channel, pb_grpc.ChunkServiceStub(channel)


def _list_chunks(stub: Any) -> set[str]:
    found: set[str] = set()
    after = ""
    for _ in range(10_000):
        reply = stub.ListChunks(pb.ListChunksRequest(start_after=after), timeout=10)
        found.update(c.chunk_id for c in reply.chunks)
        if not reply.next_start_after:
            return found
        after = reply.next_start_after
    raise AssertionError("ListChunks did not end")


def _config(pki: Pki, nodes: list[TlsNode]) -> str:
    urls = ", ".join(f'"{n.url}"' for n in nodes)
    return (
        "[storage]\n"
        'backend = "distributed"\n'
        "chunk_size_bytes = 1048576\n"
        "inline_threshold_bytes = 0\n"
        "[storage.distributed]\n"
        f"nodes = [{urls}]\n"
        "replication_factor = 3\n"
        "repair_interval_seconds = 0\n"
        f'tls_cert_file = "{pki.client_cert_file}"\n'
        f'tls_key_file = "{pki.client_key_file}"\n'
        f'tls_ca_file = "{pki.ca_file}"\n'
    )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsCluster]:
    base = tmp_path_factory.mktemp("node-tls")
    pki = make_pki(base / "pki")
    nodes = [TlsNode(base, i, pki) for i in range(3)]
    started: list[Any] = []
    try:
        for node in nodes:
            started.append(node.process.start())
        config = base / "api.toml"
        config.write_text(_config(pki, nodes))
        data = base / "api"
        data.mkdir()
        server = ServerProcess(data, config=str(config))
        started.append(server.start())
        yield TlsCluster(pki, nodes, server)
    finally:
        for proc in reversed(started):
            proc.stop()


def test_nodes_announce_mutual_tls_and_no_plaintext_warning(cluster: TlsCluster) -> None:
    """Each node names the certificate it serves and the CA its clients need; no plaintext warning."""
    for node in cluster.nodes:
        listening = next(line for line in node.process.output if "Chunk service listening on" in line)
        assert "mTLS" in listening, listening
        tls = next(line for line in node.process.output if "Mutual TLS: certificate" in line)
        assert str(cluster.pki.ca_file) in tls
        assert not any("UNAUTHENTICATED" in line for line in node.process.output)


def test_multi_chunk_object_round_trips_with_chunks_on_all_three_nodes(cluster: TlsCluster) -> None:
    """PUT/GET of a 3.5 MiB object (4 chunks of 1 MiB) through the API server, whose chunk
    traffic goes over mTLS; each chunk is on every node, as an mTLS client lists them."""
    s3 = cluster.s3
    bucket = f"mtls-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    data = os.urandom(3 * MiB + MiB // 2)
    s3.put_object(Bucket=bucket, Key="big", Body=data)
    assert s3.get_object(Bucket=bucket, Key="big")["Body"].read() == data

    def listed() -> list[set[str]] | None:
        per_node = []
        for node in cluster.nodes:
            channel, stub = _stub(node.target, _good_credentials(cluster.pki))
            with channel:
                per_node.append(_list_chunks(stub))
        # The PUT is acknowledged at a write quorum of two: the third copy of
        # its last chunk may still be on its way.
        return per_node if len(per_node[0]) >= 4 and per_node[0] == per_node[1] == per_node[2] else None

    wait_until(listed, "each chunk on all three nodes", timeout=15)


def _refused_credentials(kind: str, pki: Pki, tmp_path: Path) -> grpc.ChannelCredentials | None:
    if kind == "plaintext":
        return None
    if kind == "no-client-cert":
        return grpc.ssl_channel_credentials(root_certificates=pki.ca_file.read_bytes())
    # A certificate from another CA: the client trusts the nodes' CA, but presents a
    # certificate the nodes' --tls-ca did not sign.
    foreign = make_pki(tmp_path / "foreign")
    return grpc.ssl_channel_credentials(
        root_certificates=pki.ca_file.read_bytes(),
        private_key=foreign.client_key_file.read_bytes(),
        certificate_chain=foreign.client_cert_file.read_bytes(),
    )


@pytest.mark.parametrize("kind", ["plaintext", "no-client-cert", "foreign-ca-cert"])
def test_clients_without_a_valid_client_certificate_are_refused(
    cluster: TlsCluster, tmp_path: Path, kind: str
) -> None:
    """Plaintext, TLS without a client certificate, or a client certificate from another CA:
    every call of the node protocol fails with UNAVAILABLE (the handshake is refused), so
    such a client can neither list, read, write nor delete chunks."""
    node = cluster.nodes[0]
    victim = "def0" + uuid.uuid4().hex
    planted = "abc0" + uuid.uuid4().hex
    good_channel, good = _stub(node.target, _good_credentials(cluster.pki))
    with good_channel:
        good.PutChunk(iter([pb.PutChunkRequest(chunk_id=victim, data=b"the real chunk")]), timeout=10)
        existing = sorted(_list_chunks(good))
    channel, stub = _stub(node.target, _refused_credentials(kind, cluster.pki, tmp_path))
    calls = {
        "ListChunks": lambda: stub.ListChunks(pb.ListChunksRequest(), timeout=5),
        "GetChunk": lambda: list(stub.GetChunk(pb.GetChunkRequest(chunk_id=victim), timeout=5)),
        "HasChunk": lambda: stub.HasChunk(pb.HasChunkRequest(chunk_id=victim), timeout=5),
        "PutChunk": lambda: stub.PutChunk(
            iter([pb.PutChunkRequest(chunk_id=planted, data=b"planted by an intruder")]), timeout=5
        ),
        "DeleteChunk": lambda: stub.DeleteChunk(pb.DeleteChunkRequest(chunk_id=victim), timeout=5),
        "Stat": lambda: stub.Stat(pb.StatRequest(), timeout=5),
    }
    with channel:
        for name, call in calls.items():
            with pytest.raises(grpc.RpcError) as info:
                call()
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE, (name, info.value)
    # Nothing changed on the node: the victim is still there, the planted chunk is not.
    good_channel, good = _stub(node.target, _good_credentials(cluster.pki))
    with good_channel:
        assert b"".join(m.data for m in good.GetChunk(pb.GetChunkRequest(chunk_id=victim), timeout=10)) == (
            b"the real chunk"
        )
        assert not good.HasChunk(pb.HasChunkRequest(chunk_id=planted), timeout=10).exists
        assert sorted(_list_chunks(good)) == existing


def test_nodes_refuse_tls_1_2(cluster: TlsCluster) -> None:
    """A node is TLS 1.3 only, like the API server's ports (grpcio has no
    minimum-version setting: lightningstor.tls.refuse_tls12_on_grpc)."""
    for node in cluster.nodes:
        with pytest.raises(ssl.SSLError):
            tls_handshake(node.process.port, cluster.pki, ssl.TLSVersion.TLSv1_2)
        assert tls_handshake(node.process.port, cluster.pki, ssl.TLSVersion.TLSv1_3) == "TLSv1.3"


def _peer_serial(node: TlsNode, pki: Pki) -> int:
    """Serial of the certificate a fresh TLS connection to the node is shown
    (TLS 1.3 with the good client certificate, ALPN h2 as gRPC requires)."""
    ctx = ssl.create_default_context(cafile=str(pki.ca_file))
    ctx.load_cert_chain(str(pki.client_cert_file), str(pki.client_key_file))
    ctx.set_alpn_protocols(["h2"])
    with socket.create_connection(("127.0.0.1", node.process.port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            assert tls.version() == "TLSv1.3"
            der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def test_sighup_serves_a_new_node_certificate_to_new_connections(cluster: TlsCluster) -> None:
    """New key and certificate files plus SIGHUP: new connections see the new serial, the
    node process is the same, and the API server still reads and writes through it."""
    node = cluster.nodes[0]
    proc = node.process.proc
    assert proc is not None
    pid = proc.pid
    old = node.cert.serial
    assert _peer_serial(node, cluster.pki) == old
    new = issue(cluster.pki.ca, "localhost", server=True)
    node.install(new)
    os.kill(pid, signal.SIGHUP)
    deadline = time.monotonic() + 15
    seen = _peer_serial(node, cluster.pki)
    while seen != new.serial and time.monotonic() < deadline:
        time.sleep(0.1)
        seen = _peer_serial(node, cluster.pki)
    assert seen == new.serial, "".join(node.process.output[-20:])
    assert proc.poll() is None and node.process.proc is proc
    assert any("TLS certificate reloaded" in line and f"{new.serial:x}" in line for line in node.process.output)
    # A new mTLS channel works against the new certificate; so does the API server.
    channel, stub = _stub(node.target, _good_credentials(cluster.pki))
    with channel:
        assert stub.Health(pb.HealthRequest(), timeout=10).serving
    s3 = cluster.s3
    bucket = f"reload-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    data = os.urandom(MiB + 5)
    s3.put_object(Bucket=bucket, Key="after", Body=data)
    assert s3.get_object(Bucket=bucket, Key="after")["Body"].read() == data


def test_sighup_with_a_broken_certificate_keeps_the_old_one(cluster: TlsCluster) -> None:
    """A SIGHUP while the key does not match the certificate is refused, naming --tls-key;
    the node keeps serving its current certificate."""
    node = cluster.nodes[1]
    assert node.process.proc is not None
    current = node.cert.serial
    mismatched = issue(cluster.pki.ca, "localhost", server=True)
    node.key_file.write_bytes(mismatched.key_pem())  # the certificate file stays the old one
    try:
        os.kill(node.process.proc.pid, signal.SIGHUP)
        deadline = time.monotonic() + 15
        while not any("TLS reload failed" in line for line in node.process.output):
            assert time.monotonic() < deadline, "".join(node.process.output[-20:])
            time.sleep(0.05)
        failure = next(line for line in node.process.output if "TLS reload failed" in line)
        assert "--tls-key" in failure and "does not match" in failure
        assert _peer_serial(node, cluster.pki) == current
        assert node.process.proc.poll() is None
    finally:
        node.install(node.cert)


def test_node_refuses_to_start_with_a_key_not_matching_its_certificate(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    node = TlsNode(tmp_path, 0, pki)
    node.key_file.write_bytes(issue(pki.ca, "localhost", server=True).key_pem())
    with pytest.raises(RuntimeError) as info:
        node.process.start()
    assert "--tls-key" in str(info.value) and "does not match" in str(info.value)
    assert "Traceback" not in str(info.value)


def test_plaintext_node_warns_and_survives_sighup(tmp_path: Path) -> None:
    """Without TLS options the node still serves (plaintext) but warns that it is
    unauthenticated; SIGHUP (systemctl reload) does not kill it."""
    data = tmp_path / "plain"
    data.mkdir()
    node = NodeProcess(data, free_port(), node_id="plain").start()
    try:
        assert node.proc is not None
        assert any("UNAUTHENTICATED plaintext" in line for line in node.output), "".join(node.output)
        assert "plaintext" in next(line for line in node.output if "Chunk service listening on" in line)
        os.kill(node.proc.pid, signal.SIGHUP)
        deadline = time.monotonic() + 10
        while not any("Received SIGHUP" in line for line in node.output):
            assert node.proc.poll() is None, "".join(node.output[-20:])
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert node.stat().node_id == "plain"
    finally:
        node.stop()


def test_api_server_refuses_https_nodes_without_client_tls(tmp_path: Path) -> None:
    """An https:// node URL without the TLS files is a configuration error at start-up."""
    config = tmp_path / "api.toml"
    config.write_text(
        '[storage]\nbackend = "distributed"\n[storage.distributed]\n'
        'nodes = ["https://127.0.0.1:1"]\nreplication_factor = 1\n'
    )
    data = tmp_path / "api"
    data.mkdir()
    with pytest.raises(RuntimeError) as info:
        ServerProcess(data, config=str(config)).start()
    assert "storage.distributed.tls_ca_file: required when a node URL is https://" in str(info.value)
