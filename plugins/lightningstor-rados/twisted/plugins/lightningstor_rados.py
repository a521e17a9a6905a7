"""Registers the ``rados`` storage backend with LightningStor's plugin loader.

Twisted imports this module whenever it rebuilds its plugin cache, so it
imports nothing heavy: librados and the backend are loaded in ``create()``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lightningstor.interfaces import IStorageBackend, IStorageBackendFactory, PluginContext
from twisted.plugin import IPlugin
from zope.interface import implementer


@implementer(IPlugin, IStorageBackendFactory)
class RadosStorageFactory:
    """Builds a RadosBackend from ``[storage.rados]``; see docs/rados.md."""

    name = "rados"
    description = "Chunks as objects in a Ceph RADOS pool (lightningstor-rados)"

    def create(self, options: Mapping[str, Any], context: PluginContext) -> IStorageBackend:
        """Connect to the cluster and open the pool, failing with ConfigError if that cannot work.

        Blocks for at most about ``connect_timeout_seconds`` (plus two monitor
        round trips): it runs once, at start-up, before the reactor runs.
        """
        from twisted.logger import Logger

        from lightningstor_rados.backend import RadosBackend, new_pool
        from lightningstor_rados.binding import import_rados
        from lightningstor_rados.cluster import check_access, connect, open_pool, pool_durability
        from lightningstor_rados.options import parse_options

        opts = parse_options(options)
        rados = import_rados()
        cluster = connect(rados, opts)
        try:
            ioctx = open_pool(rados, cluster, opts)
            durability = pool_durability(rados, cluster, opts.pool)
            unchecked = check_access(ioctx, opts)
        except BaseException:
            cluster.shutdown()
            raise
        if unchecked is not None:
            Logger().warn(
                "rados: could not check that client.{user} may read and write pool {pool!r} at start-up "
                "({why}); /ready reports the cluster's state",
                user=opts.user.removeprefix("client."), pool=opts.pool, why=unchecked,
            )
        pool = new_pool(opts.threads)
        pool.start()
        return RadosBackend(
            rados, cluster, ioctx, durability, context.reactor, pool,
            verify_crc=opts.verify_crc, op_timeout_seconds=opts.op_timeout_seconds,
        )


radosStorageFactory = RadosStorageFactory()
