"""TLS material loading, TLS 1.3-only contexts, reload and the SIGHUP hook, in-process."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL
from twisted.internet.task import Clock

from lightningstor.config import TlsSettings
from lightningstor.errors import ConfigError
from lightningstor.tls import (
    ReloadableServerTls,
    SignalReloadService,
    load_tls_material,
    server_options,
)
from tests.integration.certs import Pki, issue, make_pki


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


def _settings(pki: Pki, ca: bool = True) -> TlsSettings:
    return TlsSettings(str(pki.cert_file), str(pki.key_file), str(pki.ca_file) if ca else None)


def test_material_has_what_twisted_and_grpc_need(pki: Pki) -> None:
    """Loading gives the PEM key and chain, the CA as root certificates, the parsed
    leaf, and gRPC server credentials built from the same files."""
    material = load_tls_material(_settings(pki))
    assert material.private_key == pki.key_file.read_bytes()
    assert material.certificate_chain == pki.cert_file.read_bytes()
    assert material.root_certificates == pki.ca_file.read_bytes()
    assert material.leaf.serial_number == pki.server.serial
    assert f"{pki.server.serial:x}" in material.describe()
    assert isinstance(material.grpc_server_credentials(), grpc.ServerCredentials)
    assert load_tls_material(_settings(pki, ca=False)).root_certificates is None


def test_chain_file_intermediates_are_kept(pki: Pki) -> None:
    """A cert_file with the leaf followed by an intermediate ("fullchain") loads both,
    leaf first, so the served chain includes the intermediate."""
    pki.cert_file.write_bytes(pki.server.cert_pem() + pki.ca.cert_pem())
    material = load_tls_material(_settings(pki))
    assert [c.serial_number for c in material.certificates] == [pki.server.serial, pki.ca.serial]
    server_options(material).getContext()  # builds with the extra chain


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("missing_cert", "server.tls.cert_file: cannot read"),
        ("garbage_cert", "server.tls.cert_file"),
        ("other_key", "server.tls.key_file: "),
        ("encrypted_key", "is encrypted"),
        ("garbage_key", "is not a PEM private key"),
        ("garbage_ca", "server.tls.ca_file"),
    ],
)
def test_bad_files_are_config_errors_naming_the_key(pki: Pki, damage: str, message: str) -> None:
    """Each kind of broken TLS file fails loading with a ConfigError naming its key."""
    if damage == "missing_cert":
        pki.cert_file.unlink()
    elif damage == "garbage_cert":
        pki.cert_file.write_bytes(b"not a certificate")
    elif damage == "other_key":
        pki.key_file.write_bytes(issue(pki.ca, "x", server=True).key_pem())
    elif damage == "encrypted_key":
        pki.key_file.write_bytes(pki.server.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"pw")))
    elif damage == "garbage_key":
        pki.key_file.write_bytes(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    elif damage == "garbage_ca":
        pki.ca_file.write_bytes(b"nope")
    with pytest.raises(ConfigError) as info:
        load_tls_material(_settings(pki))
    assert message in str(info.value)


def _handshake(server: SSL.Connection, client: SSL.Connection) -> None:
    """Drive a TLS handshake between two memory-BIO connections."""
    server.set_accept_state()
    client.set_connect_state()
    for _ in range(20):
        done = 0
        for conn, peer in ((client, server), (server, client)):
            try:
                conn.do_handshake()
                done += 1
            except SSL.WantReadError:
                pass
            try:
                data = conn.bio_read(65536)
            except SSL.WantReadError:
                data = b""
            if data:
                peer.bio_write(data)
        if done == 2:
            return
    raise AssertionError("handshake did not finish")


def _client(pki: Pki, max_version: int | None = None) -> SSL.Connection:
    ctx = SSL.Context(SSL.TLS_METHOD)
    ctx.load_verify_locations(str(pki.ca_file))
    ctx.set_verify(SSL.VERIFY_PEER, lambda *args: bool(args[-1]))
    if max_version is not None:
        ctx.set_max_proto_version(max_version)
    return SSL.Connection(ctx, None)


class _Reactor(Clock):
    def callFromThread(self, f: Any, *args: Any, **kwargs: Any) -> None:
        f(*args, **kwargs)


class _InlinePool:
    def callInThreadWithCallback(self, onResult: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        try:
            onResult(True, f(*args, **kwargs))
        except Exception:
            from twisted.python.failure import Failure

            onResult(False, Failure())


def test_connections_are_tls_1_3_only(pki: Pki) -> None:
    """A new connection negotiates TLS 1.3; a client capped at TLS 1.2 is refused."""
    tls = ReloadableServerTls.load(_settings(pki), reactor=_Reactor(), pool=_InlinePool())
    client = _client(pki)
    server = tls.serverConnectionForTLS(None)
    _handshake(server, client)
    assert client.get_protocol_version_name() == "TLSv1.3"
    with pytest.raises(SSL.Error):
        _handshake(tls.serverConnectionForTLS(None), _client(pki, SSL.TLS1_2_VERSION))


def test_reload_switches_new_connections_and_keeps_old_on_bad_files(pki: Pki) -> None:
    """reload() makes the next handshakes present the replaced certificate; a reload of a
    broken file fails softly and the current certificate stays."""
    tls = ReloadableServerTls.load(_settings(pki), reactor=_Reactor(), pool=_InlinePool())

    def served_serial() -> int:
        client = _client(pki)
        _handshake(tls.serverConnectionForTLS(None), client)
        cert = client.get_peer_certificate()
        assert cert is not None
        return int(cert.get_serial_number())

    assert served_serial() == pki.server.serial
    new = issue(pki.ca, "localhost", server=True)
    pki.install_server(new)
    results: list[bool] = []
    tls.reload().addCallback(results.append)
    assert results == [True]
    assert served_serial() == new.serial
    pki.key_file.write_bytes(issue(pki.ca, "other", server=True).key_pem())
    tls.reload().addCallback(results.append)
    assert results == [True, False]
    assert served_serial() == new.serial


class _SignalReactor(_Reactor):
    def __init__(self) -> None:
        super().__init__()
        self.scheduled: list[Any] = []

    def callWhenRunning(self, f: Any, *args: Any) -> None:
        f(*args)

    def callFromThread(self, f: Any, *args: Any, **kwargs: Any) -> None:
        self.scheduled.append(f)


def test_sighup_service_schedules_hooks_chains_and_restores_the_previous_handler() -> None:
    """SIGHUP schedules the reload hooks on the reactor and also calls the handler that was
    installed before; stopping the service puts that handler back."""
    previous_calls: list[int] = []

    def previous(signum: int, frame: Any) -> None:
        previous_calls.append(signum)

    original = signal.signal(signal.SIGHUP, previous)
    try:
        reactor = _SignalReactor()
        service = SignalReloadService(reactor)
        ran: list[str] = []
        service.add_hook(lambda: ran.append("a"))
        service.add_hook(lambda: 1 / 0)  # one failing hook does not stop the others
        service.add_hook(lambda: ran.append("b"))
        service.startService()
        os.kill(os.getpid(), signal.SIGHUP)
        assert previous_calls == [signal.SIGHUP]
        assert len(reactor.scheduled) == 1
        reactor.scheduled[0]()
        assert ran == ["a", "b"]
        service.stopService()
        assert signal.getsignal(signal.SIGHUP) is previous
    finally:
        signal.signal(signal.SIGHUP, original)


_EARLY_SIGHUP = """
import os, signal, sys, time
from twisted.internet import reactor
from lightningstor.{module} import Options
from lightningstor.tls import SignalReloadService
options = Options()
options.parseOptions({argv!r})  # what twistd does before makeService
os.kill(os.getpid(), signal.SIGHUP)  # a reload while the server is still starting
time.sleep(0.2)
print("alive", flush=True)
service = SignalReloadService(reactor)
service.add_hook(lambda: (print("reloaded", flush=True), reactor.stop()))
service.startService()
reactor.callLater(10, reactor.stop)
reactor.run()
"""


@pytest.mark.parametrize("module", ["tap", "node.tap"])
def test_a_sighup_while_starting_is_kept_for_the_reload_handler(tmp_path: Path, module: str) -> None:
    """Once the server's (or node's) options are parsed, a SIGHUP before the
    reload handler is installed does not kill the process (its default
    action: a ``systemctl reload`` right after a start stopped a one-process
    server, and systemd counts that as a clean exit); the handler runs the
    reload once when it takes over.  In a separate interpreter: the signal
    must not reach the test runner."""
    import subprocess
    import sys

    argv = ["--data-dir", str(tmp_path / "data")]
    if module == "node.tap":
        argv += ["--node-id", "n1"]
    done = subprocess.run(
        [sys.executable, "-c", _EARLY_SIGHUP.format(module=module, argv=argv)],
        capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert done.stdout.split() == ["alive", "reloaded"], done.stdout


_SIGHUP_AFTER_STOP = """
import os, signal, time
from twisted.internet import reactor
from lightningstor.tap import Options
from lightningstor.tls import SignalReloadService
Options().parseOptions({argv!r})
service = SignalReloadService(reactor)
service.startService()

def stop():
    service.stopService()  # the rest of the server's stop (stores, pools) still runs
    os.kill(os.getpid(), signal.SIGHUP)  # systemctl reload meanwhile
    time.sleep(0.2)
    print("alive", flush=True)
    reactor.stop()

reactor.callLater(0.1, stop)
reactor.run()
"""


def test_a_sighup_after_the_reload_service_stopped_does_not_end_the_server(tmp_path: Path) -> None:
    """The reload service stops before the stores close and the thread pools
    end; a SIGHUP then (a reload during a stop) met the default action and
    ended the process, cutting that work short.  The hold of start-up comes
    back instead."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _SIGHUP_AFTER_STOP.format(argv=["--data-dir", str(tmp_path / "data")])],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert done.stdout.split() == ["alive"], done.stdout
