"""The ``[storage.rados]`` config table, checked by the plugin itself.

LightningStor's config loader passes a plugin's sub-table through unchecked,
so every key is validated here and unknown keys are rejected: a typo such as
``keyrnig`` would otherwise silently fall back to a default.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lightningstor.errors import ConfigError

PREFIX = "storage.rados"
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,128}")
# A RADOS namespace is any string, but keep it to something a shell and a
# `rados --namespace` invocation handle without quoting.
_NAMESPACE = re.compile(r"[A-Za-z0-9_.-]{0,128}")


@dataclass(frozen=True)
class RadosOptions:
    """Validated ``[storage.rados]`` settings (defaults in the field list)."""

    conf_file: str = "/etc/ceph/ceph.conf"
    user: str = "admin"
    keyring: str | None = None
    pool: str = "lightningstor"
    create_pool: bool = False
    namespace: str = ""
    op_timeout_seconds: float = 30.0
    connect_timeout_seconds: float = 10.0
    threads: int = 16
    verify_crc: bool = True


_KEYS = {
    "conf_file", "user", "keyring", "pool", "create_pool", "namespace",
    "op_timeout_seconds", "connect_timeout_seconds", "threads", "verify_crc",
}


def _str(table: Mapping[str, Any], key: str, default: str, pattern: re.Pattern[str] | None = None) -> str:
    value = table.get(key, default)
    if not isinstance(value, str) or (pattern is None and not value):
        raise ConfigError(f"{PREFIX}.{key}: must be a non-empty string")
    if pattern is not None and not pattern.fullmatch(value):
        raise ConfigError(f"{PREFIX}.{key}: {value!r} must match {pattern.pattern}")
    return value


def _bool(table: Mapping[str, Any], key: str, default: bool) -> bool:
    value = table.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{PREFIX}.{key}: must be true or false")
    return value


def _seconds(table: Mapping[str, Any], key: str, default: float) -> float:
    """Whole seconds: librados refuses a fraction in its timeouts (its
    ``conf_set`` fails, which start-up reported as a bad ``conf_file``)."""
    value = table.get(key, default)
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not float(value).is_integer()
        or not 1 <= value <= 3600
    ):
        raise ConfigError(f"{PREFIX}.{key}: must be a whole number of seconds in [1, 3600]")
    return float(value)


def parse_options(options: Mapping[str, Any]) -> RadosOptions:
    """Build RadosOptions from the ``options`` LightningStor hands ``create()``.

    Only the ``rados`` sub-table is read (``options['rados']``): the merged
    top-level keys also hold the generic ``[storage]`` keys, which are not ours.
    """
    table = options.get("rados", {})
    if not isinstance(table, Mapping):
        raise ConfigError(f"{PREFIX}: must be a table")
    unknown = sorted(set(table) - _KEYS)
    if unknown:
        raise ConfigError(f"{PREFIX}.{unknown[0]}: unknown key (known: {', '.join(sorted(_KEYS))})")
    keyring = table.get("keyring")
    if keyring is not None and (not isinstance(keyring, str) or not keyring):
        raise ConfigError(f"{PREFIX}.keyring: must be a path to a keyring file")
    threads = table.get("threads", RadosOptions.threads)
    if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= 256:
        raise ConfigError(f"{PREFIX}.threads: must be an integer in [1, 256]")
    return RadosOptions(
        conf_file=_str(table, "conf_file", RadosOptions.conf_file),
        user=_str(table, "user", RadosOptions.user, _NAME),
        keyring=keyring,
        pool=_str(table, "pool", RadosOptions.pool, _NAME),
        create_pool=_bool(table, "create_pool", RadosOptions.create_pool),
        namespace=_str(table, "namespace", RadosOptions.namespace, _NAMESPACE),
        op_timeout_seconds=_seconds(table, "op_timeout_seconds", RadosOptions.op_timeout_seconds),
        connect_timeout_seconds=_seconds(table, "connect_timeout_seconds", RadosOptions.connect_timeout_seconds),
        threads=threads,
        verify_crc=_bool(table, "verify_crc", RadosOptions.verify_crc),
    )
