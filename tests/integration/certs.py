"""Test PKI made with ``cryptography``: a CA, server and client certificates.

Keys are EC P-256 (fast to generate); the server certificate names
``127.0.0.1`` and ``localhost``, so clients verify it against the CA file
with hostname checking on.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass
class Issued:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def serial(self) -> int:
        return self.cert.serial_number

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_ca(common_name: str = "LightningStor Test CA") -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(cert, key)


def issue(ca: Issued, common_name: str, *, server: bool) -> Issued:
    """A leaf certificate signed by ``ca``: a server one (SANs 127.0.0.1 and
    localhost) or a client one."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
        )
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    else:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
    return Issued(builder.sign(ca.key, hashes.SHA256()), key)


@dataclass
class Pki:
    """Files in ``directory``: ca.crt, server.crt/server.key, client.crt/client.key."""

    directory: Path
    ca: Issued
    server: Issued
    client: Issued

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def cert_file(self) -> Path:
        return self.directory / "server.crt"

    @property
    def key_file(self) -> Path:
        return self.directory / "server.key"

    @property
    def client_cert_file(self) -> Path:
        return self.directory / "client.crt"

    @property
    def client_key_file(self) -> Path:
        return self.directory / "client.key"

    def install_server(self, server: Issued) -> None:
        """Replace the server certificate and key files (as certbot would)."""
        self.server = server
        self.key_file.write_bytes(server.key_pem())
        self.cert_file.write_bytes(server.cert_pem())

    def config(self, *, ca: bool = True) -> str:
        """A ``[server.tls]`` TOML table for these files."""
        lines = ["[server.tls]", f'cert_file = "{self.cert_file}"', f'key_file = "{self.key_file}"']
        if ca:
            lines.append(f'ca_file = "{self.ca_file}"')
        return "\n".join(lines) + "\n"


def make_pki(directory: Path) -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    ca = make_ca()
    pki = Pki(directory, ca, issue(ca, "localhost", server=True), issue(ca, "client", server=False))
    pki.ca_file.write_bytes(ca.cert_pem())
    pki.install_server(pki.server)
    pki.client_cert_file.write_bytes(pki.client.cert_pem())
    pki.client_key_file.write_bytes(pki.client.key_pem())
    return pki


def tls_handshake(port: int, pki: Pki, version: ssl.TLSVersion) -> str:
    """The TLS version a handshake limited to ``version`` gets from a port on
    loopback, presenting the client certificate and offering ALPN h2 as gRPC
    clients do; raises ``ssl.SSLError`` when refused."""
    ctx = ssl.create_default_context(cafile=str(pki.ca_file))
    ctx.load_cert_chain(str(pki.client_cert_file), str(pki.client_key_file))
    ctx.set_alpn_protocols(["h2"])
    ctx.minimum_version = ctx.maximum_version = version
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            return str(tls.version())
