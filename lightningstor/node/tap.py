"""``twistd lightningstor-node``: a storage node (SPEC §5.2, port 9002).

A node keeps chunks on its local disk with the ``local`` backend and serves
them to the API servers' ``distributed`` backend over gRPC
(``lightningstor.node.v1.ChunkService``).  It holds no metadata: losing a
node's disk loses only replicas, which the API servers' repair restores.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from twisted.application.service import IService
from twisted.python import usage

from lightningstor import __version__

DEFAULT_LISTEN = "0.0.0.0:9002"
DEFAULT_DATA_DIR = "/var/lib/lightningstor-node"


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


def makeService(options: Any) -> IService:
    from twisted.internet import reactor as _reactor

    from lightningstor.node.service import NodeGrpcService
    from lightningstor.node.servicer import ChunkServicer, NodeIdentity
    from lightningstor.server import SequentialMultiService
    from lightningstor.storage.local import LocalFsBackend
    from lightningstor.threads import ThreadPools

    reactor: Any = _reactor
    # Stops the started thread pools if the listener cannot bind, so the
    # process exits instead of idling; and stops the gRPC server before them.
    root = SequentialMultiService()
    pools = ThreadPools(reactor, io_threads=options["io-threads"], cpu_threads=1)
    pools.setServiceParent(root)
    backend = LocalFsBackend(options["data-dir"], reactor, pools.io, fsync=not options["no-fsync"])
    identity = NodeIdentity(options["node-id"], options["zone"], options["data-dir"])
    servicer = ChunkServicer(backend, reactor, pools.io, identity)
    NodeGrpcService(servicer, reactor, options["listen"]).setServiceParent(root)
    # Temp files of chunk writes a crash interrupted: no live writer is that old.
    reactor.callWhenRunning(backend.cleanup_tmp, 3600.0)
    return root
