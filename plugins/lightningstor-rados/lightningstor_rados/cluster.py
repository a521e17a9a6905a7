"""Start-up work against the cluster: connect, find or create the pool, read its durability.

All of this runs once, inside ``IStorageBackendFactory.create()``, before the
reactor starts, and is bounded by ``connect_timeout_seconds``.  Doing it then
(rather than lazily) means a wrong ``conf_file``, key or pool name stops the
server at start-up with a message naming the key, and ``capabilities()`` can
report the pool's real replication without I/O.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from lightningstor.errors import ConfigError
from lightningstor.interfaces import DurabilityLevel

from lightningstor_rados.options import PREFIX, RadosOptions

APPLICATION = "lightningstor"
"""The pool application tag; Ceph warns about pools in use without one."""

_REPLICATED = 1
_ERASURE = 3


@dataclass(frozen=True)
class PoolDurability:
    """How the pool keeps data: replicated N-way, or erasure coded over ``size`` shards."""

    durability: DurabilityLevel
    replicas: int


def client_conf(opts: RadosOptions) -> dict[str, str]:
    """librados settings that bound every call, so an outage becomes an error, not a hang.

    Without ``rados_osd_op_timeout`` an operation on a PG with no OSD up waits
    forever (librados's default is 0 = no timeout), pinning a pool thread and
    the S3 request behind it.
    """
    timeout = f"{opts.op_timeout_seconds:g}"
    conf = {
        "rados_osd_op_timeout": timeout,
        "rados_mon_op_timeout": timeout,
        "client_mount_timeout": f"{opts.connect_timeout_seconds:g}",
    }
    if opts.keyring:
        conf["keyring"] = opts.keyring
    return conf


def connect(rados: ModuleType, opts: RadosOptions) -> Any:
    """A connected ``rados.Rados``; ConfigError (naming the settings used) if that fails."""
    user = opts.user.removeprefix("client.")
    where = f"conf_file={opts.conf_file!r}, user='client.{user}'"
    try:
        cluster = rados.Rados(conffile=opts.conf_file, rados_id=user, conf=client_conf(opts))
    except rados.Error as exc:
        raise ConfigError(f"{PREFIX}.conf_file: cannot load the Ceph configuration ({where}): {exc}") from None
    try:
        cluster.connect(timeout=max(1, round(opts.connect_timeout_seconds)))
    except rados.Error as exc:
        cluster.shutdown()
        raise ConfigError(
            f"{PREFIX}: cannot connect to the Ceph cluster within {opts.connect_timeout_seconds:g}s "
            f"({where}, keyring={opts.keyring!r}): {exc}"
        ) from None
    return cluster


def open_pool(rados: ModuleType, cluster: Any, opts: RadosOptions) -> Any:
    """An Ioctx on the configured pool and namespace, creating the pool if allowed."""
    try:
        if not cluster.pool_exists(opts.pool):
            if not opts.create_pool:
                raise ConfigError(
                    f"{PREFIX}.pool: pool {opts.pool!r} does not exist; create it "
                    f"(ceph osd pool create {opts.pool}) or set {PREFIX}.create_pool = true"
                )
            cluster.create_pool(opts.pool)
        ioctx = cluster.open_ioctx(opts.pool)
        if APPLICATION not in ioctx.application_list():
            # force: a pool another application already uses is the operator's choice.
            ioctx.application_enable(APPLICATION, True)
    except rados.Error as exc:
        raise ConfigError(f"{PREFIX}.pool: cannot open pool {opts.pool!r}: {exc}") from None
    ioctx.set_namespace(opts.namespace)
    return ioctx


def pool_durability(rados: ModuleType, cluster: Any, pool: str) -> PoolDurability:
    """Replication of ``pool`` from the monitors' OSD map.

    A replicated pool of size 1 is reported as LOCAL: one copy on one disk is
    no more durable than the ``local`` backend.  An erasure-coded pool reports
    ``replicas`` = its total shard count (k + m).
    """
    cmd = json.dumps({"prefix": "osd pool ls", "detail": "detail", "format": "json"})
    try:
        ret, out, err = cluster.mon_command(cmd, b"")
    except rados.Error as exc:
        raise ConfigError(f"{PREFIX}.pool: cannot read the pool list: {exc}") from None
    if ret != 0:
        raise ConfigError(f"{PREFIX}.pool: cannot read the pool list: {err or ret}")
    for entry in json.loads(out):
        if entry.get("pool_name") != pool:
            continue
        size = max(1, int(entry.get("size", 1)))
        if entry.get("type") == _ERASURE:
            return PoolDurability(DurabilityLevel.ERASURE_CODED, size)
        if size == 1:
            return PoolDurability(DurabilityLevel.LOCAL, 1)
        return PoolDurability(DurabilityLevel.REPLICATED, size)
    raise ConfigError(f"{PREFIX}.pool: pool {pool!r} is not in the OSD map")
