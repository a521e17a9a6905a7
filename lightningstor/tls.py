"""TLS for the listeners: loading ``[server.tls]``, TLS 1.3-only server
contexts, and certificate reload on SIGHUP.

Three pieces, kept apart so the gRPC server can reuse the first and third:

* :func:`load_tls_material` reads and checks the PEM files once (key matches
  certificate, chain and CA files parse) and returns :class:`TlsMaterial`,
  which holds exactly what both consumers need: pyOpenSSL objects for Twisted
  and the ``(private_key, certificate_chain)`` / ``root_certificates`` bytes
  of ``grpc.ssl_server_credentials`` (:meth:`TlsMaterial.grpc_server_credentials`).
* :class:`ReloadableServerTls` is the connection creator a
  ``TLSMemoryBIOFactory`` asks for every new connection; :meth:`reload`
  swaps its context, so handshakes after a reload present the new
  certificate while connections already open keep theirs.
* :class:`SignalReloadService` calls reload hooks on SIGHUP.

TLS 1.3 is the floor *and* the only version (``raiseMinimumTo`` with no
maximum): the ``ssl:`` endpoint string has no minimum-version option, which
is why the context is built in code.  grpcio has no minimum-version setting
at all; :func:`refuse_tls12_on_grpc` gets the same floor on the gRPC ports.

``ca_file`` is **not** used to request client certificates on the S3
listener: AWS SDKs and S3 tools authenticate with request signatures and
most cannot present a client certificate, so mTLS there would lock them out.
It is the CA that signs gRPC clients' certificates (mTLS on the internal
API), carried in :attr:`TlsMaterial.root_certificates`.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from types import FrameType, MappingProxyType
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL, crypto
from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, inlineCallbacks, maybeDeferred
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from twisted.internet.ssl import CertificateOptions, TLSVersion
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from zope.interface import implementer

from lightningstor.config import TlsSettings
from lightningstor.errors import ConfigError

__all__ = [
    "SERVER_TLS_NAMES",
    "ReloadableServerTls",
    "SignalReloadService",
    "TlsMaterial",
    "attach_tls",
    "load_tls_material",
    "refuse_tls12_on_grpc",
    "server_options",
]

log = Logger()


@dataclass(frozen=True)
class TlsMaterial:
    """Checked TLS files, in PEM and parsed form.

    ``certificate_chain`` is the server certificate followed by any
    intermediates, as ``cert_file`` lists them (a "fullchain" file);
    ``root_certificates`` is ``ca_file``: the CAs trusted for *client*
    certificates, or None.
    """

    private_key: bytes
    certificate_chain: bytes
    root_certificates: bytes | None
    certificates: tuple[x509.Certificate, ...] = field(repr=False)
    key: Any = field(repr=False)  # a cryptography private key

    @property
    def leaf(self) -> x509.Certificate:
        return self.certificates[0]

    def describe(self) -> str:
        """Subject, serial and expiry of the served certificate, for logs
        (nothing secret)."""
        leaf = self.leaf
        return (
            f"subject {leaf.subject.rfc4514_string()!r}, serial {leaf.serial_number:x}, "
            f"expires {leaf.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}"
        )

    def grpc_server_credentials(self) -> Any:
        """``grpc.ServerCredentials`` for the same files: TLS with the chain,
        and mTLS (client certificates required and verified against
        ``ca_file``) when a CA is configured."""
        import grpc

        return grpc.ssl_server_credentials(
            [(self.private_key, self.certificate_chain)],
            root_certificates=self.root_certificates,
            require_client_auth=self.root_certificates is not None,
        )


GRPC_CIPHER_SUITES_VARIABLE = "GRPC_SSL_CIPHER_SUITES"
GRPC_TLS12_SUITES = "PSK-AES128-CBC-SHA"
"""The only TLS 1.2 suite grpcio's servers are given: a pre-shared-key
suite, which a server without a PSK configured never selects, so a TLS 1.2
handshake ends in ``NO_SHARED_CIPHER`` whatever the certificate's key type.
TLS 1.3 suites are not configurable in grpc's BoringSSL and stay on."""


def refuse_tls12_on_grpc(environ: MutableMapping[str, str] = os.environ) -> bool:
    """Make this process's gRPC TLS 1.2 handshakes fail, so the gRPC ports
    are TLS 1.3 only like the S3 port (SPEC: TLS 1.3 for all transport).

    grpcio takes no minimum TLS version, and a cipher list of TLS 1.3 suites
    alone is refused (the port fails to bind); :data:`GRPC_TLS12_SUITES` is a
    list TLS 1.2 can never use.  grpc reads the variable once, when it is
    imported, so this runs at the top of ``makeService``, before any import
    of grpc (worker processes inherit it).  Client channels of the process (to storage
    nodes) then offer TLS 1.3 only as well; every LightningStor server
    speaks it.  An operator's own ``GRPC_SSL_CIPHER_SUITES`` is kept:
    returns False then, True when the variable was set here.
    """
    if GRPC_CIPHER_SUITES_VARIABLE in environ:
        return environ[GRPC_CIPHER_SUITES_VARIABLE] == GRPC_TLS12_SUITES
    environ[GRPC_CIPHER_SUITES_VARIABLE] = GRPC_TLS12_SUITES
    return True


SERVER_TLS_NAMES: Mapping[str, str] = MappingProxyType(
    {key: f"server.tls.{key}" for key in ("cert_file", "key_file", "ca_file")}
)
"""How errors name the three files by default: the ``[server.tls]`` keys.
Other users of :func:`load_tls_material` (the storage node's ``--tls-*``
options, ``[storage.distributed]``'s client certificate) pass their own
names, so an operator is pointed at the option they actually set."""


def _read(path: str, name: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read {path}: {exc.strerror or exc}") from None


def _certificates(data: bytes, path: str, name: str) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise ConfigError(f"{name}: {path} holds no valid PEM certificate ({exc})") from None
    return certs


def load_tls_material(tls: TlsSettings, *, names: Mapping[str, str] = SERVER_TLS_NAMES) -> TlsMaterial:
    """Read and check the files ``tls`` names.  Blocking: call it before the
    reactor runs or in a thread pool.

    Raises :class:`ConfigError` naming the key and file at fault: unreadable
    file, no certificate, an encrypted or unparseable key, or a key that
    does not belong to the (first) certificate.  ``names`` maps
    ``cert_file``/``key_file``/``ca_file`` to what the messages call them.
    """
    chain_pem = _read(tls.cert_file, names["cert_file"])
    certificates = _certificates(chain_pem, tls.cert_file, names["cert_file"])
    key_pem = _read(tls.key_file, names["key_file"])
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:
        raise ConfigError(
            f"{names['key_file']}: {tls.key_file} is encrypted; give an unencrypted key "
            "(protect it with file permissions)"
        ) from None
    except (ValueError, crypto.Error) as exc:
        raise ConfigError(f"{names['key_file']}: {tls.key_file} is not a PEM private key ({exc})") from None
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    encoding = serialization.Encoding.DER
    if key.public_key().public_bytes(encoding, public) != certificates[0].public_key().public_bytes(
        encoding, public
    ):
        raise ConfigError(
            f"{names['key_file']}: {tls.key_file} does not match the certificate in {tls.cert_file}"
        )
    roots: bytes | None = None
    if tls.ca_file is not None:
        roots = _read(tls.ca_file, names["ca_file"])
        _certificates(roots, tls.ca_file, names["ca_file"])
    return TlsMaterial(
        private_key=key_pem,
        certificate_chain=chain_pem,
        root_certificates=roots,
        certificates=tuple(certificates),
        key=key,
    )


def server_options(material: TlsMaterial) -> CertificateOptions:
    """Twisted's server-side options for ``material``: TLS 1.3 only, the full
    chain served, no client certificate requested (see the module notes)."""
    # cryptography objects go straight through to pyOpenSSL's Context, which
    # takes them natively and deprecates its own X509/PKey wrappers (Twisted's
    # annotations still name the wrappers).
    return CertificateOptions(
        privateKey=material.key,
        certificate=material.leaf,  # type: ignore[arg-type]
        extraCertChain=list(material.certificates[1:]),  # type: ignore[arg-type]
        raiseMinimumTo=TLSVersion.TLSv1_3,
    )


@implementer(IOpenSSLServerConnectionCreator)
class ReloadableServerTls:
    """Hands every new TLS connection the current context; :meth:`reload`
    replaces it.

    Give it to ``TLSMemoryBIOFactory(tls, False, factory)``.  The factory
    asks for a connection per accepted socket, so a reload takes effect at
    the next handshake without closing the listener.
    """

    def __init__(
        self,
        settings: TlsSettings,
        material: TlsMaterial,
        *,
        reactor: Any,
        pool: Any,
        names: Mapping[str, str] = SERVER_TLS_NAMES,
    ) -> None:
        self.settings = settings
        self.reactor = reactor
        self.pool = pool
        self.names = names  # how reload errors name the files (see load_tls_material)
        self.material = material
        self._context: SSL.Context = server_options(material).getContext()

    @classmethod
    def load(
        cls, settings: TlsSettings, *, reactor: Any, pool: Any, names: Mapping[str, str] = SERVER_TLS_NAMES
    ) -> ReloadableServerTls:
        """Load the files synchronously: for start-up, before the reactor runs,
        so a bad file stops the server with the key and file named."""
        return cls(settings, load_tls_material(settings, names=names), reactor=reactor, pool=pool, names=names)

    def serverConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        return SSL.Connection(self._context, None)

    def grpc_server_credentials(self) -> Any:
        """``grpc.ServerCredentials`` that follow :meth:`reload`.

        grpcio asks the fetcher for a new configuration at each handshake
        (from its own threads); it gets one only when the material object
        changed, so a SIGHUP reaches the gRPC listener too.  Whether client
        certificates are required (``ca_file`` set) is fixed at start-up.
        """
        import grpc

        def configuration(material: TlsMaterial) -> Any:
            return grpc.ssl_server_certificate_configuration(
                [(material.private_key, material.certificate_chain)],
                root_certificates=material.root_certificates,
            )

        served = [self.material]

        def fetch() -> Any:
            current = self.material  # one reference read: atomic across threads
            if current is served[0]:
                return None
            served[0] = current
            return configuration(current)

        return grpc.dynamic_ssl_server_credentials(
            configuration(self.material),
            fetch,
            require_client_authentication=self.material.root_certificates is not None,
        )

    @inlineCallbacks
    def reload(self) -> Any:
        """Deferred[bool]: re-read the files (in the thread pool) and use them
        for new connections.  A bad file is logged and the old certificate
        stays in use (True only when the new material was installed)."""
        try:
            material = yield deferToThreadPool(
                self.reactor, self.pool, lambda: load_tls_material(self.settings, names=self.names)
            )
            context = server_options(material).getContext()
        except ConfigError as exc:
            log.error("TLS reload failed, keeping the current certificate: {error}", error=str(exc))
            return False
        except Exception:
            log.failure("TLS reload failed, keeping the current certificate")
            return False
        self.material, self._context = material, context
        log.info("TLS certificate reloaded: {certificate}", certificate=material.describe())
        return True


_EARLY_SIGNALS: list[int] = []
"""Reload signals that came before a :class:`SignalReloadService` took
over from :func:`hold_reload_signals`; it runs its hooks once for them."""


def _note_early(signum: int, frame: FrameType | None) -> None:
    _EARLY_SIGNALS.append(signum)


def hold_reload_signals(signum: int = signal.SIGHUP) -> None:
    """From now on, a ``signum`` (SIGHUP) that comes before the reload
    handler is installed is noted instead of killing the process (its
    default action): start-up takes a while (imports, opening the stores)
    before the reactor runs, and ``systemctl reload`` right after a
    (re)start must never stop the server.  For the server commands only
    (their option parsing calls it), never at import: another program
    using this package keeps its own SIGHUP.  What comes earlier still,
    while the interpreter imports Twisted, cannot be caught."""
    if signal.getsignal(signum) in (signal.SIG_DFL, None):
        signal.signal(signum, _note_early)


class SignalReloadService(Service):
    """Runs reload hooks when the process receives ``signum`` (SIGHUP).

    The handler is installed once the reactor runs (``callWhenRunning``:
    the reactor installs its own handlers at start-up and twistd may still
    fork before that), chains to any handler that was there before, and is
    removed again at stop.  Python runs signal handlers on the main thread
    between bytecodes, so the hooks are scheduled with ``callFromThread``
    rather than run inside the handler.
    """

    def __init__(self, reactor: Any, signum: int = signal.SIGHUP) -> None:
        self.reactor = reactor
        self.signum = signum
        self.hooks: list[Callable[[], Any]] = []
        self._previous: Any = None
        self._restore: Any = None
        self._installed = False

    def add_hook(self, hook: Callable[[], Any]) -> None:
        self.hooks.append(hook)

    def startService(self) -> None:
        super().startService()
        self.reactor.callWhenRunning(self._install)

    def _install(self) -> None:
        if not self.running or self._installed:
            return
        previous = signal.signal(self.signum, self._on_signal)
        self._installed = True
        # After hold_reload_signals: the hold comes back at stop (the rest
        # of a stop, the stores' close, still runs, and a reload then must
        # not end the process), is not chained to (a signal is handled
        # here), and the hooks run once for a signal that came while starting.
        self._restore = previous
        self._previous = None if previous is _note_early else previous
        if self.signum in _EARLY_SIGNALS:
            _EARLY_SIGNALS.clear()
            self.reactor.callLater(0, self.run_hooks)
        # A worker process starts with the signal blocked (its supervisor's
        # doing, lightningstor.supervisor): one that came during start-up
        # is delivered now, to this handler.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {self.signum})

    def stopService(self) -> None:
        super().stopService()
        if self._installed:
            signal.signal(self.signum, self._restore if self._restore is not None else signal.SIG_DFL)
            self._installed = False

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.reactor.callFromThread(self.run_hooks)
        previous = self._previous
        if callable(previous):
            previous(signum, frame)

    def run_hooks(self) -> Deferred[list[Any]]:
        """Run every hook; one failing does not stop the others."""
        name = signal.Signals(self.signum).name
        if not self.hooks:
            log.info("Received {signal}: nothing to reload", signal=name)
        else:
            log.info("Received {signal}: reloading", signal=name)
        results = []
        for hook in self.hooks:
            d = maybeDeferred(hook)
            d.addErrback(lambda f: log.failure("A reload hook failed", f))
            results.append(d)
        return DeferredList(results).addCallback(lambda rs: [value for _ok, value in rs])


def attach_tls(parent: Any, settings: TlsSettings | None, reactor: Any, pool: Any) -> ReloadableServerTls | None:
    """Load ``[server.tls]`` for a listener and reload it on SIGHUP.

    Returns None when TLS is not configured.  Loads synchronously (start-up:
    a bad file fails ``build`` with a :class:`ConfigError`).  Adds a
    :class:`SignalReloadService` to ``parent`` either way: SIGHUP's default
    action kills the process, and ``systemctl reload`` must never do that,
    TLS or not.
    """
    reloader = SignalReloadService(reactor)
    reloader.setServiceParent(parent)
    if settings is None:
        return None
    tls = ReloadableServerTls.load(settings, reactor=reactor, pool=pool)
    log.info("TLS 1.3 certificate: {certificate}", certificate=tls.material.describe())
    reloader.add_hook(tls.reload)
    return tls
