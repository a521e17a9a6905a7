"""Server configuration: TOML file, environment and command line (SPEC §8).

Three layers are merged, highest first: command-line options, the
``LIGHTNINGSTOR_*`` environment variables of SPEC §8.2, the TOML file of
SPEC §8.1, then built-in defaults.  The result is one immutable
:class:`Settings` tree that the rest of the server reads; nothing else looks
at the environment or the file.

Validation happens here, once, before anything starts, and reports *every*
problem it finds (not just the first) with the dotted key it is about, so an
operator fixing a config file does not need one restart per typo.  Unknown
keys are errors, because a misspelt key silently falling back to a default is
the worst kind of configuration bug.  The one exception is plugin
sub-tables: ``[storage.<name>]`` and ``[metadata.<name>]`` belong to the
backend plugin of that name (possibly third-party) and are handed to its
factory untouched in ``options``; the factory validates them itself
(``IStorageBackendFactory.create`` raises :class:`ConfigError`).
Sub-tables of built-in plugins whose keys SPEC §8.1 defines (today
``[storage.distributed]``) are validated here.

Reading the file is the only I/O this module does: it never looks at the
data directory, TLS files or plugins, so ``lightningstor-admin check-config``
can run anywhere.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from types import MappingProxyType
from typing import Any, TypeVar
from urllib.parse import urlsplit

from lightningstor.diskspace import DEFAULT_MIN_FREE_BYTES, MAX_MIN_FREE_BYTES
from lightningstor.errors import ConfigError

__all__ = [
    "AuditSettings",
    "ConfigProblems",
    "IamSettings",
    "LimitsSettings",
    "LoggingSettings",
    "MetadataSettings",
    "S3Settings",
    "SecuritySettings",
    "ServerSettings",
    "Settings",
    "StorageSettings",
    "TlsSettings",
    "endpoint_description",
    "format_address",
    "load_settings",
    "parse_address",
]

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
TiB = 1024 * GiB
# Handler threads of the gRPC server (lightningstor.grpc.base.GrpcOptions):
# the per-principal call cap must stay below it.
GRPC_HANDLER_THREADS = 16
# The most ``limits.max_write_seconds`` may be: half the orphan collector's
# default grace period (lightningstor.core.collector.GRACE_SECONDS, 24 h),
# leaving the other half for the commit that follows the last chunk.  With
# ``[collector] grace_seconds`` set, half of that is the bound instead.
MAX_WRITE_SECONDS_LIMIT = 12 * 3600

DEFAULT_DATA_DIR = "/var/lib/lightningstor"
ENV_CONFIG = "LIGHTNINGSTOR_CONFIG"

LOG_LEVELS = ("trace", "debug", "info", "warn", "warning", "error", "critical")
LOG_FORMATS = ("text", "json")
SIGNATURE_VERSIONS = ("v4", "v2", "both")
# [s3] default_object_ownership: core/acl.py's OWNERSHIPS (not imported, so
# reading the configuration loads no core module; a unit test keeps them equal).
OBJECT_OWNERSHIPS = ("BucketOwnerEnforced", "BucketOwnerPreferred", "ObjectWriter")
PLACEMENT_STRATEGIES = ("random", "consistent_hash", "zone_aware")
AUDIT_FSYNC = ("never", "interval", "batch")  # lightningstor.audit.FSYNC_POLICIES
AUDIT_WHEN_FULL = ("drop", "refuse")
# With [audit] when_full = "refuse", max_queued_records must leave room for
# the records of gRPC calls in flight and for some S3 requests.
AUDIT_REFUSE_MIN_QUEUE = 64


@dataclass(frozen=True)
class _Override:
    """One setting that the environment and the command line may override."""

    cli_key: str
    env_var: str
    path: tuple[str, ...]
    flag: str


# SPEC §8.2 / §8.3.  ``--data-dir`` has no flag in the spec but the
# environment variable exists, and the twistd plugin wants the same knob.
_OVERRIDES = (
    _Override("grpc_addr", "LIGHTNINGSTOR_GRPC_ADDR", ("server", "grpc_addr"), "--grpc-addr"),
    _Override("s3_addr", "LIGHTNINGSTOR_S3_ADDR", ("server", "s3_addr"), "--s3-addr"),
    _Override("log_level", "LIGHTNINGSTOR_LOG_LEVEL", ("logging", "level"), "--log-level"),
    _Override("data_dir", "LIGHTNINGSTOR_DATA_DIR", ("data_dir",), "--data-dir"),
    _Override("workers", "LIGHTNINGSTOR_WORKERS", ("server", "workers"), "--workers"),
)
# Overrides arrive as text; these settings are integers in the file.
_INTEGER_OVERRIDES = frozenset({("server", "workers")})
_CLI_KEYS = frozenset({"config"} | {o.cli_key for o in _OVERRIDES})


class ConfigProblems(ConfigError):
    """Several configuration problems at once.

    ``str()`` is the problems joined by newlines (just the one message when
    there is only one), so callers that only catch :class:`ConfigError` still
    show everything; ``problems`` lets a CLI print them one per line.
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems: tuple[str, ...] = tuple(problems)
        super().__init__("\n".join(self.problems))


# --------------------------------------------------------------------------
# The settings tree
# --------------------------------------------------------------------------


def _empty_options() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclass(frozen=True)
class TlsSettings:
    """``[server.tls]``: present means the S3 and gRPC listeners speak TLS 1.3.

    ``ca_file`` set means client certificates are requested and verified
    against it (mTLS for service-to-service gRPC, SPEC §9.1).
    """

    cert_file: str
    key_file: str
    ca_file: str | None = None


def default_workers() -> int:
    """``[server] workers = 0`` (the default): one reactor process per CPU
    this process may run on, so Python uses every core."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class ServerSettings:
    """``[server]``: listeners and process shape.  Addresses are canonical
    ``host:port`` strings (IPv6 in brackets); use :func:`parse_address`."""

    s3_addr: str = "0.0.0.0:9000"
    grpc_addr: str = "0.0.0.0:9001"
    metrics_addr: str | None = None
    # Reactor processes; the file's default 0 means one per CPU, resolved
    # when the settings are loaded (so this always holds the real count).
    workers: int = field(default_factory=lambda: default_workers())
    shutdown_timeout_seconds: float = 30.0
    tls: TlsSettings | None = None
    grpc_enabled: bool = True


@dataclass(frozen=True)
class MetadataSettings:
    """``[metadata]``.  ``options`` is the whole table (plugin sub-tables such
    as ``[metadata.sqlite]`` included, read-only) with the validated values of
    the keys above filled in, for the metadata-store plugin's factory."""

    backend: str = "sqlite"
    chainfire_endpoints: tuple[str, ...] = ()
    # Longer chunk lists are paged out of the object record (core/manifests.py).
    chunks_per_record: int = 2000
    options: Mapping[str, Any] = field(default_factory=_empty_options, hash=False)


@dataclass(frozen=True)
class StorageSettings:
    """``[storage]``.  ``options`` as for :class:`MetadataSettings`, including
    the normalised ``distributed`` sub-table when one is given."""

    backend: str = "local"
    data_dir: str = f"{DEFAULT_DATA_DIR}/data"
    chunk_size_bytes: int = 8 * MiB
    shard_depth: int = 2
    fsync: bool = True
    inline_threshold_bytes: int = 64 * KiB
    # 0: no background scrub (``lightningstor-admin scrub`` still works).
    scrub_interval_seconds: int = 0
    # The free-space reserve (lightningstor/diskspace.py): below it, writes
    # that add object data are refused so deletes keep working.  0: off.
    min_free_bytes: int = DEFAULT_MIN_FREE_BYTES
    # How long chunks of versions gone for good (overwritten, deleted) are
    # kept before deletion, so GETs that read the old record can finish
    # (lightningstor/storage/retired.py).  0: deleted at once.
    free_delay_seconds: float = 300.0
    options: Mapping[str, Any] = field(default_factory=_empty_options, hash=False)


@dataclass(frozen=True)
class IamSettings:
    """``[iam]``: which ``IAuthorizer`` plugin decides access, and how to
    reach the aegis IAM service when that is the one."""

    authorizer: str = "local"
    endpoint: str | None = None
    service_account: str | None = None
    token_path: str | None = None
    # How long authorization data (local grants, aegis decisions) and
    # credential lookups may be served from a server's cache.
    cache_seconds: float = 5.0
    # aegis: how long one authorization call may take before it fails (closed).
    timeout_seconds: float = 5.0


@dataclass(frozen=True)
class S3Settings:
    """``[s3]``: S3 protocol behaviour.  ``domain`` enables virtual-hosted
    style (``bucket.<domain>``) next to path style; ``website_domain``
    serves static websites (``Host: bucket.<website_domain>``) on the same
    port."""

    region: str = "us-east-1"
    # Which signatures authenticate: "both" (SigV4 and SigV2), "v4" or "v2".
    signature_version: str = "both"
    # The longest lifetime a presigned URL may have (AWS's SigV4 limit by default).
    presigned_url_ttl_seconds: int = 604800
    domain: str | None = None
    max_clock_skew_seconds: int = 900
    website_domain: str | None = None
    # Every bucket blocks public access, whatever its own settings: no public
    # bucket policy can be put, and none lets outsiders in (core/access.py).
    block_public_access: bool = False
    # The Object Ownership of a bucket created without x-amz-object-ownership
    # (core/acl.py): ACLs disabled, as AWS's default since April 2023.
    default_object_ownership: str = "BucketOwnerEnforced"


@dataclass(frozen=True)
class LimitsSettings:
    """``[limits]``: sizes and counts enforced by the core and the S3 layer."""

    max_object_size_bytes: int = 5 * TiB
    max_multipart_parts: int = 10000
    multipart_upload_timeout_hours: int = 168
    max_keys_per_list: int = 1000
    max_xml_body_bytes: int = 2 * MiB
    max_metadata_bytes: int = 2048
    max_header_bytes: int = 16384
    max_delete_keys: int = 1000
    idle_timeout_seconds: int = 60
    # A request's line and headers must arrive within this many seconds of
    # its first byte, however steadily they trickle (slowloris).
    header_timeout_seconds: int = 30
    # While a body is read, each this-many seconds must bring 1 KiB (slow POST).
    body_timeout_seconds: int = 60
    # A write (PUT or part body, copy) whose first chunk was stored longer
    # ago than this fails with RequestTimeout instead of committing.  At most
    # half the orphan collector's 24 h grace: nothing a write stored may be
    # unreferenced for longer than the collector waits (core/collector.py).
    max_write_seconds: int = 6 * 3600
    # Open S3 connections above this get 503 SlowDown and are closed.
    max_connections: int = 1024
    # gRPC PutObject carries the whole object in one message; larger objects
    # go through multipart upload (UploadPart streams).
    max_grpc_put_object_bytes: int = 5 * MiB
    # gRPC calls of one principal running at once (each holds one of the
    # server's GRPC_HANDLER_THREADS); kept below it so no principal takes them all.
    max_grpc_calls_per_principal: int = 8
    # A gRPC stream that moves no message (UploadPart's client sends none,
    # GetObject's client takes none) for this long is ended.
    grpc_stream_idle_timeout_seconds: int = 60
    # How often a gRPC client may send keepalive pings while its calls run
    # (LightningStor's client pings every 30 s); more often is refused
    # with GOAWAY "too_many_pings", which ends the connection's calls.
    grpc_min_ping_interval_seconds: int = 10
    # Object data received from S3 clients and not yet written to the storage
    # backend, and other request bodies (XML) kept until answered, all
    # requests of one process together; above it they are paused
    # (backpressure), never refused.
    max_inflight_upload_bytes: int = 256 * MiB


@dataclass(frozen=True)
class LoggingSettings:
    """``[logging]``.  ``level`` is lower-cased on load."""

    level: str = "info"
    format: str = "text"
    access_log: bool = True


@dataclass(frozen=True)
class SecuritySettings:
    """``[security]``: the key that encrypts stored secrets (credentials)."""

    master_key_file: str = f"{DEFAULT_DATA_DIR}/master.key"


@dataclass(frozen=True)
class AuditSettings:
    """``[audit]``: the JSON-lines audit log of every operation (SPEC §9.4,
    :mod:`lightningstor.audit`).  ``path`` defaults to ``<data_dir>/audit.log``;
    ``fsync`` is ``never``, ``interval`` (at most once a second) or ``batch``
    (after every write); ``max_queued_records`` bounds the records waiting
    for the writer thread.  ``when_full``: ``drop`` (S3 records that find
    the queue full are dropped and counted) or ``refuse`` (S3 requests are
    refused with 503 SlowDown before they do anything while no room is left
    for their record: nothing served goes unrecorded)."""

    enabled: bool = True
    path: str = f"{DEFAULT_DATA_DIR}/audit.log"
    fsync: str = "interval"
    max_queued_records: int = 65536
    when_full: str = "drop"


@dataclass(frozen=True)
class LifecycleSettings:
    """``[lifecycle]``: the service that applies buckets' lifecycle rules
    (lightningstor.core.lifecycle_service).  ``interval_seconds`` 0 turns it
    off (configurations are still stored and served).  ``day_seconds`` is
    the length of a rule's "day": only for tests and debugging (like Ceph
    RGW's ``rgw_lc_debug_interval``); with the default, due times are
    rounded to midnight UTC as AWS does."""

    interval_seconds: float = 3600.0
    day_seconds: float = 86400.0
    # Deletions and aborts one run may make; the rest waits for the next run.
    max_actions_per_run: int = 10000


@dataclass(frozen=True)
class CollectorSettings:
    """``[collector]``: the orphan collector (lightningstor.core.collector).
    A chunk no record references is deleted once the collector has seen it
    unreferenced for ``grace_seconds`` of its own observed time, across at
    least two passes ``interval_seconds`` apart.  ``limits.max_write_seconds``
    must be at most half the grace, or a write in flight could lose its
    chunks, and ``interval_seconds`` at most half of what remains of the
    grace after it (``_check_interval_bound``); short values are for tests."""

    interval_seconds: float = 3600.0
    grace_seconds: float = 86400.0


@dataclass(frozen=True)
class Settings:
    """The validated, merged configuration.  Build it with :func:`load_settings`."""

    data_dir: str = DEFAULT_DATA_DIR
    config_file: str | None = None
    server: ServerSettings = field(default_factory=ServerSettings)
    metadata: MetadataSettings = field(default_factory=MetadataSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    iam: IamSettings = field(default_factory=IamSettings)
    s3: S3Settings = field(default_factory=S3Settings)
    limits: LimitsSettings = field(default_factory=LimitsSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    security: SecuritySettings = field(default_factory=SecuritySettings)
    audit: AuditSettings = field(default_factory=AuditSettings)
    lifecycle: LifecycleSettings = field(default_factory=LifecycleSettings)
    collector: CollectorSettings = field(default_factory=CollectorSettings)

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON-friendly copy (dicts, lists, scalars) for plugins
        (``PluginContext.settings``) and diagnostics.  Holds no secrets: the
        config only names files that contain them."""
        result = _thaw(self)
        assert isinstance(result, dict)
        return result


def _thaw(value: Any) -> Any:
    """Dataclasses and read-only mappings to dicts, tuples to lists."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _thaw(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _thaw(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_thaw(v) for v in value]
    return value


def _freeze(value: Any) -> Any:
    """Dicts to read-only mappings, lists to tuples, recursively: ``options``
    is shared with plugins, which must not be able to change the settings
    every other component sees."""
    if isinstance(value, Mapping):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


# --------------------------------------------------------------------------
# Addresses
# --------------------------------------------------------------------------

_HOST_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"{_HOST_LABEL}(?:\.{_HOST_LABEL})*\.?")
_PORT = re.compile(r"[0-9]{1,5}")
_WILDCARDS = frozenset({"0.0.0.0", "::"})


class _Invalid(Exception):
    """A value failed a check; the message does not include the key (the
    caller adds it, with where the value came from)."""


def _split_address(value: object) -> tuple[str, int]:
    if not isinstance(value, str):
        raise _Invalid(f"expected a string 'host:port', got {_describe(value)}")
    text = value.strip()
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise _Invalid(f"invalid address {value!r}: missing ']' after the IPv6 address")
        host, rest = text[1:close], text[close + 1 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise _Invalid(f"invalid address {value!r}: {host!r} is not an IPv6 address") from None
        if not rest.startswith(":"):
            raise _Invalid(f"invalid address {value!r}: expected '[ipv6]:port'")
        port_text = rest[1:]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise _Invalid(f"invalid address {value!r}: expected 'host:port', e.g. '0.0.0.0:9000'")
        if ":" in host:
            raise _Invalid(
                f"invalid address {value!r}: write IPv6 addresses in brackets, e.g. '[::1]:9000'"
            )
        if not host:
            host = "0.0.0.0"
        elif re.fullmatch(r"[0-9.]+", host):
            try:
                ipaddress.IPv4Address(host)
            except ValueError:
                raise _Invalid(f"invalid address {value!r}: {host!r} is not an IPv4 address") from None
        elif len(host) > 253 or not _HOSTNAME.fullmatch(host):
            raise _Invalid(f"invalid address {value!r}: {host!r} is not a valid host name")
    if not _PORT.fullmatch(port_text) or int(port_text) > 65535:
        raise _Invalid(f"invalid address {value!r}: port must be a number from 0 to 65535")
    return host, int(port_text)


def parse_address(value: str, *, key: str) -> tuple[str, int]:
    """Split a listen address into ``(host, port)``.

    Accepts ``'0.0.0.0:9000'``, ``'127.0.0.1:0'`` (any free port),
    ``'[::1]:9000'``, ``'localhost:9000'`` and ``':9000'`` (all IPv4
    interfaces, returned as ``'0.0.0.0'``).  Unbracketed IPv6 is refused
    because ``::1:9000`` is ambiguous.  Raises :class:`ConfigError` whose
    message starts with ``key``.
    """
    try:
        return _split_address(value)
    except _Invalid as exc:
        raise ConfigError(f"{key}: {exc}") from None


def format_address(host: str, port: int) -> str:
    """The inverse of :func:`parse_address`: ``'[::1]:9000'`` for IPv6."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _escape_endpoint(text: str) -> str:
    return text.replace("\\", "\\\\").replace(":", "\\:").replace("=", "\\=")


def endpoint_description(host: str, port: int) -> str:
    """A Twisted server endpoint string for ``serverFromString``.

    ``tcp:port=9000:interface=0.0.0.0``; colons in IPv6 interfaces are
    escaped (``interface=\\:\\:1``) because ``:`` separates endpoint
    arguments.  Twisted's TCP port notices an IPv6 interface by itself.
    """
    if not host:
        return f"tcp:port={port}"
    return f"tcp:port={port}:interface={_escape_endpoint(host)}"


def _same_listener(a: tuple[str, int], b: tuple[str, int]) -> bool:
    """Would binding both collide?  Port 0 never does; a wildcard host
    collides with every host on the same port."""
    (host_a, port_a), (host_b, port_b) = a, b
    if port_a != port_b or port_a == 0:
        return False
    return host_a == host_b or host_a in _WILDCARDS or host_b in _WILDCARDS


# --------------------------------------------------------------------------
# Value checks (each returns the normalised value or raises _Invalid)
# --------------------------------------------------------------------------

T = TypeVar("T")
Check = Callable[[Any], T]


def _describe(value: object) -> str:
    """How a wrong value is shown in an error: its TOML type and the value."""
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int):
        return f"an integer ({value})"
    if isinstance(value, float):
        return f"a float ({value})"
    if isinstance(value, str):
        return f"a string ({value!r})"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return f"a {type(value).__name__} ({value})"


def _range_text(lo: float | None, hi: float | None) -> str:
    if lo is not None and hi is not None:
        return f"must be between {lo} and {hi}"
    if lo is not None:
        return f"must be at least {lo}"
    return f"must be at most {hi}"


def _int(lo: int | None = None, hi: int | None = None) -> Check[int]:
    def check(value: Any) -> int:
        # bool is a subclass of int in Python; ``workers = true`` is a mistake.
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Invalid(f"expected an integer, got {_describe(value)}")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise _Invalid(f"{_range_text(lo, hi)}, got {value}")
        return value

    return check


def _float(lo: float | None = None, hi: float | None = None) -> Check[float]:
    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Invalid(f"expected a number, got {_describe(value)}")
        if math.isnan(value) or (lo is not None and value < lo) or (hi is not None and value > hi):
            raise _Invalid(f"{_range_text(lo, hi)}, got {value}")
        return float(value)

    return check


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Invalid(f"expected a boolean (true or false), got {_describe(value)}")
    return value


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise _Invalid(f"expected a string, got {_describe(value)}")
    if not value.strip():
        raise _Invalid("must not be empty")
    return value


def _choice(choices: tuple[str, ...]) -> Check[str]:
    def check(value: Any) -> str:
        text = _str(value).strip().lower()
        if text not in choices:
            options = ", ".join(repr(c) for c in choices)
            raise _Invalid(f"must be one of {options}, got {value!r}")
        return text

    return check


def _ownership(value: Any) -> str:
    """An Object Ownership, spelt as S3 spells it (case matters there)."""
    text = _str(value).strip()
    if text not in OBJECT_OWNERSHIPS:
        raise _Invalid(f"must be one of {', '.join(repr(c) for c in OBJECT_OWNERSHIPS)}, got {value!r}")
    return text


_PLUGIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def _plugin_name(value: Any) -> str:
    """A plugin name: whether it is installed is checked at start-up, where
    the installed names can be listed; here only its shape."""
    text = _str(value)
    if not _PLUGIN_NAME.fullmatch(text):
        raise _Invalid(f"invalid plugin name {value!r} (letters, digits, '_', '-', '.')")
    return text


def _path(value: Any) -> str:
    """A filesystem path, made absolute against the current directory now,
    so a later ``chdir`` (twistd ``--rundir``, daemonising) cannot change
    what it means."""
    text = _str(value)
    if "\0" in text:
        raise _Invalid("must not contain a NUL character")
    return os.path.abspath(os.path.expanduser(text))


def _address(value: Any) -> str:
    return format_address(*_split_address(value))


def _url(value: Any) -> str:
    text = _str(value).strip()
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise _Invalid(f"invalid URL {value!r}: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _Invalid(f"expected an http:// or https:// URL like 'http://host:port', got {value!r}")
    return text


def _list_of(item: Check[T], *, unique: bool = False) -> Check[tuple[T, ...]]:
    def check(value: Any) -> tuple[T, ...]:
        if not isinstance(value, list):
            raise _Invalid(f"expected an array, got {_describe(value)}")
        result: list[T] = []
        for index, element in enumerate(value):
            try:
                result.append(item(element))
            except _Invalid as exc:
                raise _Invalid(f"item {index}: {exc}") from None
        if unique and len(set(result)) != len(result):
            duplicates = sorted({str(x) for x in result if result.count(x) > 1})
            raise _Invalid(f"duplicate entries: {', '.join(duplicates)}")
        return tuple(result)

    return check


_REGION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def _region(value: Any) -> str:
    """Regions appear in SigV4 credential scopes (``.../us-east-1/s3/...``),
    so they cannot contain '/' or spaces."""
    text = _str(value)
    if not _REGION.fullmatch(text):
        raise _Invalid(f"must be a region name like 'us-east-1' (letters, digits, '-', '_'), got {value!r}")
    return text


def _domain(value: Any) -> str:
    text = _str(value).strip().lower().rstrip(".")
    if "://" in text or "/" in text or ":" in text or not _HOSTNAME.fullmatch(text):
        raise _Invalid(f"expected a bare DNS name like 's3.example.com', got {value!r}")
    return text


# --------------------------------------------------------------------------
# Reading tables
# --------------------------------------------------------------------------

_MISSING: Any = object()


class _Table:
    """One TOML table being validated.

    Every key read is remembered, so whatever is left over afterwards is an
    unknown key, and the keys read are the candidates for "did you mean".
    Problems are collected, not raised, so all of them are reported together;
    a bad value is replaced by its default to let validation carry on.
    """

    def __init__(
        self, path: str, raw: Mapping[str, Any], problems: list[str], sources: Mapping[str, str]
    ) -> None:
        self.path = path
        self.raw = raw
        self.problems = problems
        self.sources = sources
        self.known: list[str] = []
        self.failed: set[str] = set()

    def key_path(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def label(self, key: str) -> str:
        """The key as errors show it, with the override that set it, if any."""
        full = self.key_path(key)
        source = self.sources.get(full)
        return f"{full} (from {source})" if source else full

    def problem(self, key: str, message: str) -> None:
        self.problems.append(f"{self.label(key)}: {message}")

    def given(self, key: str) -> bool:
        return key in self.raw

    def valid(self, *keys: str) -> bool:
        """True if none of ``keys`` failed its check: cross-key checks must
        not complain about the default that stands in for a rejected value."""
        return not self.failed.intersection(keys)

    def get(self, key: str, default: T, check: Check[T]) -> T:
        self.known.append(key)
        if key not in self.raw:
            return default
        try:
            return check(self.raw[key])
        except _Invalid as exc:
            self.problem(key, str(exc))
            self.failed.add(key)
            return default

    def optional(self, key: str, check: Check[T]) -> T | None:
        return self.get(key, None, check)

    def required(self, key: str, check: Check[T], why: str) -> T | None:
        if key not in self.raw:
            self.known.append(key)
            self.problem(key, f"required {why}")
            return None
        return self.optional(key, check)

    def table(self, key: str) -> _Table | None:
        """The sub-table ``key``, or None when absent (or not a table)."""
        self.known.append(key)
        value = self.raw.get(key, _MISSING)
        if value is _MISSING:
            return None
        if not isinstance(value, dict):
            self.problem(key, f"expected a table, got {_describe(value)}")
            return None
        return _Table(self.key_path(key), value, self.problems, self.sources)

    def section(self, key: str) -> _Table:
        """Like :meth:`table` but an absent table reads as empty (all defaults)."""
        return self.table(key) or _Table(self.key_path(key), {}, self.problems, self.sources)

    def finish(self, *, plugin_tables: bool = False) -> None:
        """Report keys nobody read.  With ``plugin_tables``, unknown keys whose
        value is a table are plugin sub-tables and are let through."""
        for key, value in self.raw.items():
            if key in self.known or (plugin_tables and isinstance(value, dict)):
                continue
            self.problems.append(_unknown_key(self.key_path(key), key, self.known))


def _unknown_key(full: str, key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return f"unknown key '{full}' (did you mean '{close[0]}'?)"
    return f"unknown key '{full}' (known keys: {', '.join(sorted(set(known)))})"


# --------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------


def _read_tls(server: _Table) -> TlsSettings | None:
    table = server.table("tls")
    if table is None:
        return None
    why = "when [server.tls] is present"
    cert = table.required("cert_file", _path, why)
    key = table.required("key_file", _path, why)
    ca = table.optional("ca_file", _path)
    table.finish()
    if cert is None or key is None:
        return None
    return TlsSettings(cert_file=cert, key_file=key, ca_file=ca)


def _read_server(t: _Table) -> ServerSettings:
    d = ServerSettings()
    s3_addr = t.get("s3_addr", d.s3_addr, _address)
    grpc_addr = t.get("grpc_addr", d.grpc_addr, _address)
    metrics_addr = t.optional("metrics_addr", _address)
    grpc_enabled = t.get("grpc_enabled", d.grpc_enabled, _bool)
    settings = ServerSettings(
        s3_addr=s3_addr,
        grpc_addr=grpc_addr,
        metrics_addr=metrics_addr,
        workers=t.get("workers", 0, _int(0, 1024)) or default_workers(),
        shutdown_timeout_seconds=t.get(
            "shutdown_timeout_seconds", d.shutdown_timeout_seconds, _float(0, 3600)
        ),
        tls=_read_tls(t),
        grpc_enabled=grpc_enabled,
    )
    listeners = [("s3_addr", s3_addr)]
    if grpc_enabled:
        listeners.append(("grpc_addr", grpc_addr))
    if metrics_addr is not None:
        listeners.append(("metrics_addr", metrics_addr))
    for index, (key, addr) in enumerate(listeners):
        for other_key, other in listeners[:index]:
            if t.valid(key, other_key) and _same_listener(_split_address(addr), _split_address(other)):
                t.problem(key, f"{addr} collides with server.{other_key} ({other})")
    t.finish()
    return settings


def _read_metadata(t: _Table) -> MetadataSettings:
    d = MetadataSettings()
    backend = t.get("backend", d.backend, _plugin_name)
    endpoints = t.get("chainfire_endpoints", d.chainfire_endpoints, _list_of(_url, unique=True))
    per_record = t.get("chunks_per_record", d.chunks_per_record, _int(1, 20000))
    t.finish(plugin_tables=True)
    # The plugin's options: the table minus what the core itself uses.
    raw = {k: v for k, v in t.raw.items() if k != "chunks_per_record"}
    options = {**raw, "backend": backend, "chainfire_endpoints": endpoints}
    return MetadataSettings(
        backend=backend, chainfire_endpoints=endpoints, chunks_per_record=per_record, options=_freeze(options)
    )


def _read_distributed(storage: _Table, backend: str) -> dict[str, Any] | None:
    """``[storage.distributed]`` (SPEC §8.1): the only built-in plugin
    sub-table whose keys the spec fixes, so the only one validated here."""
    table = storage.table("distributed")
    if table is None:
        if backend == "distributed":
            storage.problem("distributed.nodes", "required when storage.backend is 'distributed'")
        return None
    if backend == "distributed":
        nodes = table.required("nodes", _list_of(_url, unique=True), "when storage.backend is 'distributed'")
    else:
        nodes = table.optional("nodes", _list_of(_url, unique=True))
    nodes = nodes or ()
    replication = table.get("replication_factor", 3, _int(1))
    strategy = table.get("placement_strategy", "consistent_hash", _choice(PLACEMENT_STRATEGIES))
    if nodes and table.valid("replication_factor") and replication > len(nodes):
        table.problem(
            "replication_factor", f"{replication} is more than the number of nodes ({len(nodes)})"
        )
    if backend == "distributed" and table.given("nodes") and not nodes:
        table.problem("nodes", "must list at least one node when storage.backend is 'distributed'")
    # Beyond the spec's keys: node zones (parallel to ``nodes``), the write
    # quorum (default: a majority of replication_factor), the repair
    # interval, whether repair trims extra copies and how long a read waits
    # for one replica while others are left.  They appear in the
    # result only when given, so the backend owns their defaults.
    extra: dict[str, Any] = {}
    zones = table.optional("zones", _list_of(_str))
    if zones is not None:
        if nodes and len(zones) != len(nodes):
            table.problem("zones", f"must name one zone per node ({len(nodes)}), got {len(zones)}")
        extra["zones"] = zones
    quorum = table.optional("write_quorum", _int(1))
    if quorum is not None:
        if table.valid("replication_factor") and quorum > replication:
            table.problem("write_quorum", f"{quorum} is more than replication_factor ({replication})")
        extra["write_quorum"] = quorum
    repair = table.optional("repair_interval_seconds", _float(0, 86400))
    if repair is not None:
        extra["repair_interval_seconds"] = repair
    trim = table.optional("trim_extra_copies", _bool)
    if trim is not None:
        extra["trim_extra_copies"] = trim
    read_timeout = table.optional("read_timeout_seconds", _float(0.1, 30))
    if read_timeout is not None:
        extra["read_timeout_seconds"] = read_timeout
    extra.update(_read_distributed_tls(table, nodes))
    table.finish()
    return {"nodes": nodes, "replication_factor": replication, "placement_strategy": strategy, **extra}


def _read_distributed_tls(table: _Table, nodes: tuple[str, ...]) -> dict[str, str]:
    """``tls_cert_file``/``tls_key_file``/``tls_ca_file``: the API server's
    client certificate for the nodes' mutual TLS and the CA that signed the
    nodes' certificates, used for ``https://`` node URLs.

    Nodes with TLS always require a client certificate, so an ``https://``
    node needs all three; and TLS files with only ``http://`` nodes would
    look protected while sending chunks in plaintext, so that is refused
    too.  Whether the files parse and match is checked when the backend
    starts (``lightningstor.storage.nodeclient.load_node_tls``).
    """
    files = {key: table.optional(key, _path) for key in ("tls_cert_file", "tls_key_file", "tls_ca_file")}
    given = {key: value for key, value in files.items() if value is not None}
    secure = [url for url in nodes if urlsplit(url).scheme == "https"]
    if secure:
        for key in files:
            if key not in given and table.valid(key):
                table.problem(
                    key, f"required when a node URL is https:// ({secure[0]}): nodes require a client "
                    "certificate (tls_cert_file, tls_key_file) and are verified against tls_ca_file"
                )
    elif given and nodes:
        table.problem(
            next(iter(given)), "set, but no node URL is https://: chunks would travel in plaintext; "
            "use https:// node URLs"
        )
    elif "tls_cert_file" in given and "tls_key_file" not in given:
        table.problem("tls_key_file", "required with tls_cert_file")
    elif "tls_key_file" in given and "tls_cert_file" not in given:
        table.problem("tls_cert_file", "required with tls_key_file")
    return given


def _read_storage(t: _Table, data_dir: str) -> StorageSettings:
    d = StorageSettings()
    backend = t.get("backend", d.backend, _plugin_name)
    values: dict[str, Any] = {
        "backend": backend,
        "data_dir": t.get("data_dir", os.path.join(data_dir, "data"), _path),
        "chunk_size_bytes": t.get("chunk_size_bytes", d.chunk_size_bytes, _int(1 * MiB, 64 * MiB)),
        "shard_depth": t.get("shard_depth", d.shard_depth, _int(0, 4)),
        "fsync": t.get("fsync", d.fsync, _bool),
        "inline_threshold_bytes": t.get(
            "inline_threshold_bytes", d.inline_threshold_bytes, _int(0, 1 * MiB)
        ),
        "scrub_interval_seconds": t.get(
            "scrub_interval_seconds", d.scrub_interval_seconds, _int(0, 366 * 86400)
        ),
        "min_free_bytes": t.get("min_free_bytes", d.min_free_bytes, _int(0, MAX_MIN_FREE_BYTES)),
        # At most an hour, and at most half the collector's grace (24 h;
        # _check_free_delay): freed chunks are orphans to the collector.
        "free_delay_seconds": t.get("free_delay_seconds", d.free_delay_seconds, _float(0, 3600)),
    }
    distributed = _read_distributed(t, backend)
    t.finish(plugin_tables=True)
    options = {**t.raw, **values}
    if distributed is not None:
        options["distributed"] = distributed
    return StorageSettings(**values, options=_freeze(options))


def _read_iam(t: _Table) -> IamSettings:
    d = IamSettings()
    # An IAM endpoint without an authorizer named is SPEC's own [iam] table
    # ("all operations authorized via aegis"): it means aegis.  It used to
    # be accepted and ignored, the local authorizer deciding without a word.
    implied = "aegis" if "endpoint" in t.raw and "authorizer" not in t.raw else d.authorizer
    authorizer = t.get("authorizer", implied, _plugin_name)
    if authorizer == "aegis":
        endpoint = t.required("endpoint", _url, "when iam.authorizer is 'aegis'")
    else:
        endpoint = t.optional("endpoint", _url)
    settings = IamSettings(
        authorizer=authorizer,
        endpoint=endpoint,
        service_account=t.optional("service_account", _str),
        token_path=t.optional("token_path", _path),
        cache_seconds=t.get("cache_seconds", d.cache_seconds, _float(0, 3600)),
        timeout_seconds=t.get("timeout_seconds", d.timeout_seconds, _float(0.1, 300)),
    )
    t.finish()
    return settings


def _read_s3(t: _Table) -> S3Settings:
    d = S3Settings()
    settings = S3Settings(
        region=t.get("region", d.region, _region),
        signature_version=t.get("signature_version", d.signature_version, _choice(SIGNATURE_VERSIONS)),
        presigned_url_ttl_seconds=t.get(
            "presigned_url_ttl_seconds", d.presigned_url_ttl_seconds, _int(1, 604800)
        ),
        domain=t.optional("domain", _domain),
        max_clock_skew_seconds=t.get("max_clock_skew_seconds", d.max_clock_skew_seconds, _int(1, 86400)),
        block_public_access=t.get("block_public_access", d.block_public_access, _bool),
        default_object_ownership=t.get("default_object_ownership", d.default_object_ownership, _ownership),
        website_domain=t.optional("website_domain", _domain),
    )
    website, api = settings.website_domain, settings.domain
    if website is not None and api is not None and (website == api or api.endswith("." + website)):
        # The website endpoint would take every virtual-hosted S3 request
        # (and, above s3.domain, the path-style ones on its host too).
        t.problem(
            "website_domain",
            "must differ from s3.domain and not contain it (website requests are told apart by their host)",
        )
    t.finish()
    return settings


def _read_limits(t: _Table) -> LimitsSettings:
    d = LimitsSettings()
    settings = LimitsSettings(
        max_object_size_bytes=t.get("max_object_size_bytes", d.max_object_size_bytes, _int(1)),
        # S3 part numbers are 1..10000; clients cannot send more.
        max_multipart_parts=t.get("max_multipart_parts", d.max_multipart_parts, _int(1, 10000)),
        multipart_upload_timeout_hours=t.get(
            "multipart_upload_timeout_hours", d.multipart_upload_timeout_hours, _int(1, 1_000_000)
        ),
        max_keys_per_list=t.get("max_keys_per_list", d.max_keys_per_list, _int(1, 100000)),
        max_xml_body_bytes=t.get("max_xml_body_bytes", d.max_xml_body_bytes, _int(1 * KiB, 64 * MiB)),
        max_metadata_bytes=t.get("max_metadata_bytes", d.max_metadata_bytes, _int(0, 1 * MiB)),
        max_header_bytes=t.get("max_header_bytes", d.max_header_bytes, _int(1 * KiB, 1 * MiB)),
        max_delete_keys=t.get("max_delete_keys", d.max_delete_keys, _int(1, 100000)),
        idle_timeout_seconds=t.get("idle_timeout_seconds", d.idle_timeout_seconds, _int(1, 86400)),
        header_timeout_seconds=t.get("header_timeout_seconds", d.header_timeout_seconds, _int(1, 3600)),
        body_timeout_seconds=t.get("body_timeout_seconds", d.body_timeout_seconds, _int(0, 3600)),
        max_write_seconds=t.get("max_write_seconds", d.max_write_seconds, _int(1, MAX_WRITE_SECONDS_LIMIT)),
        max_connections=t.get("max_connections", d.max_connections, _int(1, 1_000_000)),
        max_grpc_put_object_bytes=t.get(
            "max_grpc_put_object_bytes", d.max_grpc_put_object_bytes, _int(1 * KiB, 64 * MiB)
        ),
        max_inflight_upload_bytes=t.get(
            "max_inflight_upload_bytes", d.max_inflight_upload_bytes, _int(1 * MiB, 1024 * GiB)
        ),
        max_grpc_calls_per_principal=t.get(
            "max_grpc_calls_per_principal", d.max_grpc_calls_per_principal, _int(1, GRPC_HANDLER_THREADS - 1)
        ),
        grpc_stream_idle_timeout_seconds=t.get(
            "grpc_stream_idle_timeout_seconds", d.grpc_stream_idle_timeout_seconds, _int(1, 3600)
        ),
        grpc_min_ping_interval_seconds=t.get(
            "grpc_min_ping_interval_seconds", d.grpc_min_ping_interval_seconds, _int(1, 3600)
        ),
    )
    t.finish()
    return settings


def _read_logging(t: _Table) -> LoggingSettings:
    d = LoggingSettings()
    settings = LoggingSettings(
        level=t.get("level", d.level, _choice(LOG_LEVELS)),
        format=t.get("format", d.format, _choice(LOG_FORMATS)),
        access_log=t.get("access_log", d.access_log, _bool),
    )
    t.finish()
    return settings


def _read_security(t: _Table, data_dir: str) -> SecuritySettings:
    settings = SecuritySettings(
        master_key_file=t.get("master_key_file", os.path.join(data_dir, "master.key"), _path)
    )
    t.finish()
    return settings


def _read_audit(t: _Table, data_dir: str) -> AuditSettings:
    d = AuditSettings()
    settings = AuditSettings(
        enabled=t.get("enabled", d.enabled, _bool),
        path=t.get("path", os.path.join(data_dir, "audit.log"), _path),
        fsync=t.get("fsync", d.fsync, _choice(AUDIT_FSYNC)),
        max_queued_records=t.get("max_queued_records", d.max_queued_records, _int(1, 10_000_000)),
        when_full=t.get("when_full", d.when_full, _choice(AUDIT_WHEN_FULL)),
    )
    if (
        t.valid("when_full", "max_queued_records")
        and settings.when_full == "refuse"
        and settings.max_queued_records < AUDIT_REFUSE_MIN_QUEUE
    ):
        t.problem(
            "max_queued_records",
            f"{settings.max_queued_records} is below {AUDIT_REFUSE_MIN_QUEUE}, the least audit.when_full = "
            '"refuse" needs (room for the records of gRPC calls in flight)',
        )
    t.finish()
    return settings


def _read_lifecycle(t: _Table) -> LifecycleSettings:
    d = LifecycleSettings()
    settings = LifecycleSettings(
        interval_seconds=t.get("interval_seconds", d.interval_seconds, _float(0, 366 * 86400)),
        day_seconds=t.get("day_seconds", d.day_seconds, _float(0.001, 366 * 86400)),
        max_actions_per_run=t.get("max_actions_per_run", d.max_actions_per_run, _int(1, 10_000_000)),
    )
    t.finish()
    return settings


def _read_collector(t: _Table) -> CollectorSettings:
    d = CollectorSettings()
    settings = CollectorSettings(
        interval_seconds=t.get("interval_seconds", d.interval_seconds, _float(1, 86400)),
        grace_seconds=t.get("grace_seconds", d.grace_seconds, _float(2, 366 * 86400)),
    )
    t.finish()
    return settings


def _at_most_half_the_grace(table: _Table, key: str, value: float, collector: _Table, settings: Settings,
                            harm: str) -> None:
    """``value`` (``table``'s ``key``) at most half ``collector.grace_seconds``,
    else a problem naming ``harm``: chunks nothing references wait that long
    before the collector deletes them, and the half is the margin for a pass
    that saw them just after they became unreferenced."""
    if not (table.valid(key) and collector.valid("grace_seconds")):
        return
    grace = settings.collector.grace_seconds
    if value > grace / 2:
        table.problem(key, f"{value:g} is more than half of collector.grace_seconds ({grace:g}): {harm}")


def _check_write_bound(limits: _Table, collector: _Table, settings: Settings) -> None:
    """``limits.max_write_seconds``: a write's chunks are unreferenced until
    its commit."""
    _at_most_half_the_grace(limits, "max_write_seconds", settings.limits.max_write_seconds, collector, settings,
                            "the collector could delete the chunks of a write in flight")


def _check_free_delay(storage: _Table, collector: _Table, settings: Settings) -> None:
    """``storage.free_delay_seconds``: a freed chunk waiting out the delay
    (storage/retired.py) has no index entry any more, so to the collector it
    is an orphan like any other, and a shorter grace would delete it under
    the reads the delay is there for."""
    _at_most_half_the_grace(storage, "free_delay_seconds", settings.storage.free_delay_seconds, collector,
                            settings, "the collector could delete freed chunks that reads in flight still stream")


def _check_interval_bound(limits: _Table, collector: _Table, settings: Settings) -> None:
    """``collector.interval_seconds`` at most half of what the grace leaves
    once a write's time is taken off: ``(grace_seconds - max_write_seconds)
    / 2``.  A pass dates what it sees at its own start (core/sightings.py),
    up to a whole pass earlier than it saw it, and a pass gap is what any
    error in measuring observed time comes in: keeping two gaps between a
    write's deadline and the grace means such an error can never make the
    collector take the chunks of a write in flight (docs/configuration.md)."""
    if not (limits.valid("max_write_seconds") and collector.valid("grace_seconds", "interval_seconds")):
        return
    grace, write = settings.collector.grace_seconds, settings.limits.max_write_seconds
    if write > grace / 2:
        return  # reported by _check_write_bound
    bound = (grace - write) / 2
    interval = settings.collector.interval_seconds
    if interval > bound:
        collector.problem(
            "interval_seconds",
            f"{interval:g} is more than (collector.grace_seconds - limits.max_write_seconds) / 2 "
            f"(({grace:g} - {write}) / 2 = {bound:g}): a pass gap would come too close to the grace",
        )


def _build(raw: Mapping[str, Any], sources: Mapping[str, str], config_file: str | None) -> Settings:
    problems: list[str] = []
    root = _Table("", raw, problems, sources)
    data_dir = root.get("data_dir", DEFAULT_DATA_DIR, _path)
    limits, collector, storage = root.section("limits"), root.section("collector"), root.section("storage")
    settings = Settings(
        data_dir=data_dir,
        config_file=config_file,
        server=_read_server(root.section("server")),
        metadata=_read_metadata(root.section("metadata")),
        storage=_read_storage(storage, data_dir),
        iam=_read_iam(root.section("iam")),
        s3=_read_s3(root.section("s3")),
        limits=_read_limits(limits),
        logging=_read_logging(root.section("logging")),
        security=_read_security(root.section("security"), data_dir),
        audit=_read_audit(root.section("audit"), data_dir),
        lifecycle=_read_lifecycle(root.section("lifecycle")),
        collector=_read_collector(collector),
    )
    _check_write_bound(limits, collector, settings)
    _check_free_delay(storage, collector, settings)
    _check_interval_bound(limits, collector, settings)
    root.finish()
    if problems:
        raise ConfigProblems(problems)
    return settings


# --------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------


def _read_toml(path: str, label: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"{label}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{label}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        # The message ends with "(at line N, column M)".
        raise ConfigError(f"{label}: invalid TOML: {exc}") from None


def _set_path(raw: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    """Put an override into the raw tree; if the file has a non-table where a
    table belongs, leave it: validation reports that anyway."""
    node = raw
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            return
        node = child
    node[path[-1]] = value


def load_settings(
    config_file: str | None = None,
    env: Mapping[str, str] | None = None,
    cli: Mapping[str, Any] | None = None,
) -> Settings:
    """Merge command line > environment > config file > defaults and validate.

    ``env`` defaults to ``os.environ``; an empty environment variable counts
    as unset (as container runtimes often pass them).  ``cli`` keys are
    ``config``, ``grpc_addr``, ``s3_addr``, ``log_level``, ``data_dir`` and
    ``workers``;
    None means "not given".  The config file is ``cli['config']``, else
    ``config_file``, else ``$LIGHTNINGSTOR_CONFIG``; with none of them, only
    defaults and overrides apply.

    Raises :class:`ConfigError` (:class:`ConfigProblems` when validation
    found problems, one message per problem, each naming its dotted key and,
    for overrides, the variable or flag that set it).
    """
    environ: Mapping[str, str] = os.environ if env is None else env
    given = {k: v for k, v in (cli or {}).items() if v is not None}
    unknown = sorted(set(given) - _CLI_KEYS)
    if unknown:
        raise ConfigError(f"unknown command-line setting(s): {', '.join(unknown)}")

    path: str | None = None
    label = ""
    if "config" in given:
        path = str(given["config"])
        label = f"config file {path}"
    elif config_file is not None:
        path = config_file
        label = f"config file {path}"
    elif environ.get(ENV_CONFIG):
        path = environ[ENV_CONFIG]
        label = f"config file {path} (from {ENV_CONFIG})"

    raw: dict[str, Any] = _read_toml(path, label) if path is not None else {}
    sources: dict[str, str] = {}
    for override in _OVERRIDES:
        value: Any = None
        source = ""
        if environ.get(override.env_var):
            value, source = environ[override.env_var], override.env_var
        if override.cli_key in given:
            value, source = given[override.cli_key], override.flag
        if source:
            # ASCII digits only (with a sign, so that "-1" is reported out of
            # range rather than as "a string"): str.isdigit() also takes "²",
            # which int() refuses (a traceback).
            if override.path in _INTEGER_OVERRIDES and isinstance(value, str) and re.fullmatch(r"[-+]?[0-9]+", value.strip()):
                value = int(value)
            _set_path(raw, override.path, value)
            sources[".".join(override.path)] = source

    return _build(raw, sources, os.path.abspath(path) if path is not None else None)
