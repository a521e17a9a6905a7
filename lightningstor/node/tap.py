"""``twistd lightningstor-node``: a storage node (SPEC §5.2, port 9002).

A node keeps chunks on its local disk with the ``local`` backend and serves
them to the API servers' ``distributed`` backend over gRPC
(``lightningstor.node.v1.ChunkService``).  It holds no metadata: losing a
node's disk loses only replicas, which the API servers' repair restores.

With ``--tls-cert``, ``--tls-key`` and ``--tls-ca`` the chunk service speaks
TLS and *requires* a client certificate signed by ``--tls-ca`` (mutual TLS):
the API servers present theirs (``[storage.distributed] tls_cert_file``),
anyone else is refused during the handshake.  ``SIGHUP`` re-reads the three
files for new connections (the API server's mechanism,
:class:`lightningstor.tls.ReloadableServerTls`).  Without them the node
serves plaintext with no authentication at all and says so at start-up.
The node has no configuration file: these options are its whole setup.
"""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING, Any

from twisted.application.service import IService
from twisted.python import usage

from lightningstor import __version__

if TYPE_CHECKING:
    from lightningstor.config import TlsSettings

DEFAULT_LISTEN = "0.0.0.0:9002"
DEFAULT_DATA_DIR = "/var/lib/lightningstor-node"
TLS_OPTIONS = ("tls-cert", "tls-key", "tls-ca")
TLS_NAMES = {"cert_file": "--tls-cert", "key_file": "--tls-key", "ca_file": "--tls-ca"}
"""How TLS file errors name the files: by the node's own options."""


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "Run a LightningStor storage node: a gRPC chunk service (default "
        f"{DEFAULT_LISTEN}) keeping chunks under --data-dir."
    )
    optParameters = [
        ["listen", None, DEFAULT_LISTEN, "gRPC listen address host:port (port 0 picks one)."],
        ["data-dir", None, DEFAULT_DATA_DIR, "Where chunk files are kept."],
        ["zone", None, "", "Failure zone (rack, room, site) of this node, reported by Stat."],
        ["node-id", None, None, "Name reported by Stat (default: the host name)."],
        ["io-threads", None, "8", "Threads for disk I/O."],
        ["tls-cert", None, None,
         "PEM certificate (then intermediates) of this node; with --tls-key and --tls-ca turns on mutual TLS."],
        ["tls-key", None, None, "PEM private key (unencrypted) of --tls-cert."],
        ["tls-ca", None, None,
         "PEM CA certificate(s) that sign the API servers' client certificates; clients without one are refused."],
    ]
    optFlags = [
        ["no-fsync", None, "Skip fsync (faster; acknowledged chunks can be lost on power failure)."],
    ]

    def opt_version(self) -> None:
        """Print the version and exit."""
        print(f"lightningstor-node {__version__}")
        raise SystemExit(0)

    def postOptions(self) -> None:
        from lightningstor.config import format_address, parse_address
        from lightningstor.errors import ConfigError
        from lightningstor.tls import hold_reload_signals

        hold_reload_signals()  # a SIGHUP while starting must not kill the node

        try:
            host, port = parse_address(self["listen"], key="--listen")
        except ConfigError as e:
            raise usage.UsageError(str(e)) from None
        self["listen"] = format_address(host, port)
        if not self["data-dir"]:
            raise usage.UsageError("--data-dir must not be empty")
        self["data-dir"] = os.path.abspath(os.path.expanduser(self["data-dir"]))
        if self["node-id"] is None:
            self["node-id"] = socket.gethostname()
        try:
            threads = int(self["io-threads"])
        except ValueError:
            threads = 0
        if not 1 <= threads <= 256:
            raise usage.UsageError("--io-threads must be 1..256")
        self["io-threads"] = threads
        self["tls"] = tls_settings(self)


def tls_settings(options: Any) -> TlsSettings | None:
    """The node's TLS files from ``--tls-cert/--tls-key/--tls-ca``, or None.

    All three or none: TLS without ``--tls-ca`` would let any client in (the
    point of node TLS is that only the API servers get in), and a CA alone
    has no certificate to serve.  Paths are made absolute now, before twistd
    changes directory.  Raises ``UsageError``; the files themselves are read
    and checked in :func:`makeService`.
    """
    from lightningstor.config import TlsSettings

    given = {name: options[name] for name in TLS_OPTIONS if options[name] is not None}
    if not given:
        return None
    for name, value in given.items():
        if not value.strip():
            raise usage.UsageError(f"--{name} must not be empty")
    missing = [f"--{name}" for name in TLS_OPTIONS if name not in given]
    if missing:
        raise usage.UsageError(
            f"{' and '.join(missing)} required with {', '.join(f'--{n}' for n in given)}: "
            "TLS on a node is always mutual (--tls-cert, --tls-key and --tls-ca together)"
        )
    paths = {name: os.path.abspath(os.path.expanduser(value)) for name, value in given.items()}
    return TlsSettings(cert_file=paths["tls-cert"], key_file=paths["tls-key"], ca_file=paths["tls-ca"])


def _prepare_for_run_user(options: Any) -> None:
    """twistd ``--uid``/``--gid`` (see :mod:`lightningstor.run_user`): the
    data directory is created now, while twistd is still root, and given to
    the user the node will run as; one that user could not write, or TLS
    files it could not read again (SIGHUP), stop start-up here."""
    from lightningstor.errors import ConfigError
    from lightningstor.run_user import CreatedPaths, check_run_user, run_user

    user = run_user(getattr(options, "parent", None))
    if user is None:
        return
    data_dir = os.path.abspath(options["data-dir"])
    tls = options.get("tls")
    files = [] if tls is None else [("--tls-cert", tls.cert_file), ("--tls-key", tls.key_file), ("--tls-ca", tls.ca_file)]
    try:
        check_run_user(user, data_dir, files)
    except ConfigError as e:
        raise usage.UsageError(str(e)) from None
    created = CreatedPaths(user, [data_dir])
    os.makedirs(data_dir, exist_ok=True)
    created.hand_over()


def makeService(options: Any) -> IService:
    """The node's services; a start-up refusal (a TLS file, the run user)
    is one line naming the option, and exit status 1, as for the API
    server: twistd prints a traceback for anything makeService raises."""
    try:
        return _make_service(options)
    except usage.UsageError as e:
        raise SystemExit(f"twistd lightningstor-node: {e}") from None


def _make_service(options: Any) -> IService:
    from twisted.logger import Logger

    from lightningstor.tls import refuse_tls12_on_grpc

    # Before grpc is imported: its core reads the variable once, at import.
    if not refuse_tls12_on_grpc() and options.get("tls") is not None:
        Logger().warn("GRPC_SSL_CIPHER_SUITES is set in the environment: the node may accept TLS 1.2")

    from twisted.internet import reactor as _reactor

    from lightningstor.errors import ConfigError
    from lightningstor.node.service import NodeGrpcService
    from lightningstor.node.servicer import ChunkServicer, NodeIdentity
    from lightningstor.server import SequentialMultiService
    from lightningstor.storage.local import LocalFsBackend
    from lightningstor.threads import ThreadPools
    from lightningstor.tls import ReloadableServerTls, SignalReloadService, load_tls_material

    reactor: Any = _reactor
    # TLS files first, read and checked now (start-up, before the reactor
    # runs): a bad file stops twistd with the option and file named, before
    # anything else (thread pools, the data dir) is set up.
    settings = options.get("tls")
    material = None
    if settings is not None:
        try:
            material = load_tls_material(settings, names=TLS_NAMES)
        except ConfigError as e:
            raise usage.UsageError(str(e)) from None
    _prepare_for_run_user(options)
    # Stops the started thread pools if the listener cannot bind, so the
    # process exits instead of idling; and stops the gRPC server before them.
    root = SequentialMultiService()
    pools = ThreadPools(reactor, io_threads=options["io-threads"], cpu_threads=1)
    pools.setServiceParent(root)
    backend = LocalFsBackend(options["data-dir"], reactor, pools.io, fsync=not options["no-fsync"])
    identity = NodeIdentity(options["node-id"], options["zone"], options["data-dir"])
    servicer = ChunkServicer(backend, reactor, pools.io, identity)
    # SIGHUP reloads the certificate; without TLS it must still not kill the
    # node (its default action), so the handler is installed either way.
    reloader = SignalReloadService(reactor)
    reloader.setServiceParent(root)
    credentials = None
    if settings is not None and material is not None:
        # The API server's reload mechanism: SIGHUP re-reads the files in
        # the io pool; the grpc credentials pick up the new material at the
        # next handshake.  Client certificates are required (ca_file is
        # always set on a node) and the CA is re-read too.
        tls = ReloadableServerTls(settings, material, reactor=reactor, pool=pools.io, names=TLS_NAMES)
        Logger().info(
            "Mutual TLS: certificate {certificate}; client certificates required, verified against {ca}",
            certificate=material.describe(),
            ca=settings.ca_file,
        )
        reloader.add_hook(tls.reload)
        credentials = tls.grpc_server_credentials()
    NodeGrpcService(servicer, reactor, options["listen"], credentials=credentials).setServiceParent(root)
    # Temp files of chunk writes a crash interrupted: no live writer is that
    # old.  At start-up, then every hour (a node restarted at once after a
    # crash finds its files too young at start-up).
    from lightningstor.node.tmpsweep import TMP_MAX_AGE_SECONDS, TmpSweep

    reactor.callWhenRunning(backend.cleanup_tmp, TMP_MAX_AGE_SECONDS)
    TmpSweep(backend, reactor).setServiceParent(root)
    return root
