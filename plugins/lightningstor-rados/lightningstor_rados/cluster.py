"""Start-up work against the cluster: connect, find or create the pool, read its durability.

All of this runs once, inside ``IStorageBackendFactory.create()``, before the
reactor starts, and is bounded by ``connect_timeout_seconds``.  Doing it then
(rather than lazily) means a wrong ``conf_file``, key or pool name stops the
server at start-up with a message naming the key, and ``capabilities()`` can
report the pool's real replication without I/O.
"""

from __future__ import annotations

import errno
import json
import time
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from lightningstor.errors import ConfigError
from lightningstor.interfaces import DurabilityLevel

from lightningstor_rados.options import PREFIX, RadosOptions

APPLICATION = "lightningstor"
"""The pool application tag; Ceph warns about pools in use without one."""

CHECK_OBJECT = "lightningstor.check"
"""The probe object start-up and ``check()`` write; not a valid chunk id, so
``list_chunks`` never reports it."""

ACCESS_WAIT_SECONDS = 5.0
"""How long start-up waits for the access probe before going on without it."""

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
    timeout = str(int(opts.op_timeout_seconds))
    conf = {
        "rados_osd_op_timeout": timeout,
        "rados_mon_op_timeout": timeout,
        "client_mount_timeout": str(int(opts.connect_timeout_seconds)),
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


def check_access(ioctx: Any, opts: RadosOptions, *, wait: float = ACCESS_WAIT_SECONDS) -> str | None:
    """Write and read back the probe object, so that a key whose caps do not
    let it read and write the pool (and namespace) stops start-up with a
    ConfigError naming the user, rather than a server that starts and then
    answers every write with 503.  Monitor caps are checked by connecting;
    the OSD caps only by doing I/O.

    An answer that takes longer than ``wait`` (OSDs down, PGs peering) does
    not stop start-up: the outcome then says nothing about the caps, and
    ``/ready`` reports the cluster's state.  Returns why the probe could not
    finish (for a warning), or None when it did.
    """
    probe = f"{time.time():.6f}".encode()
    outcome = _finish(ioctx.aio_write_full(CHECK_OBJECT, probe), wait)
    if outcome is None:
        outcome = _finish(ioctx.aio_read(CHECK_OBJECT, len(probe), 0, lambda *_: None), wait)
    if isinstance(outcome, int) and outcome in (errno.EPERM, errno.EACCES):
        where = f"pool {opts.pool!r}" + (f", namespace {opts.namespace!r}" if opts.namespace else "")
        raise ConfigError(
            f"{PREFIX}.user: client.{opts.user.removeprefix('client.')} may not read and write {where} "
            f"({errno.errorcode[outcome]}); give its key osd 'allow rw pool={opts.pool}"
            + (f" namespace={opts.namespace}'" if opts.namespace else "'")
            + " (docs/rados.md)"
        )
    if outcome is None:
        return None
    return f"not answered within {wait:g}s" if outcome == "late" else f"errno {outcome}"


def _finish(completion: Any, wait: float) -> int | str | None:
    """None when ``completion`` succeeds within ``wait`` seconds, else its
    positive errno, or ``"late"``."""
    deadline = time.monotonic() + wait
    while not completion.is_complete():
        if time.monotonic() >= deadline:
            return "late"
        time.sleep(0.02)
    ret = completion.get_return_value()
    return -ret if ret < 0 else None
