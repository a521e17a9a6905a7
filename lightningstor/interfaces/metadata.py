"""The metadata-store plugin contract: an ordered key-value store.

This is deliberately the shape of etcd (and Chainfire): byte-string keys in
byte order, values with a modification revision, ranged scans with a limit,
and transactions that compare revisions before writing.  The core builds
buckets, objects, versions and uploads on top of it, so a new engine needs
only these few methods.

Every method returns a ``Deferred`` and must not block the reactor thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence, Union

from zope.interface import Attribute, Interface

from lightningstor.interfaces.storage import PluginContext


@dataclass(frozen=True)
class KeyValue:
    key: bytes
    value: bytes
    mod_revision: int


@dataclass(frozen=True)
class Compare:
    """Transaction guard: ``key``'s mod revision must equal ``mod_revision``.

    ``mod_revision == 0`` means "the key must not exist".
    """

    key: bytes
    mod_revision: int


@dataclass(frozen=True)
class Put:
    key: bytes
    value: bytes


@dataclass(frozen=True)
class Delete:
    key: bytes


@dataclass(frozen=True)
class DeleteRange:
    """Delete every key in ``[start, end)``."""

    start: bytes
    end: bytes


Operation = Union[Put, Delete, DeleteRange]


@dataclass(frozen=True)
class TxnResult:
    succeeded: bool
    revision: int  # the store revision after the transaction (or current, on failure)


def prefix_end(prefix: bytes) -> bytes:
    """The smallest key greater than every key starting with ``prefix``.

    ``scan(prefix, prefix_end(prefix))`` lists exactly the keys under
    ``prefix`` (etcd's ``range_end`` convention).
    """
    b = bytearray(prefix)
    while b:
        if b[-1] < 0xFF:
            b[-1] += 1
            return bytes(b)
        b.pop()
    return b"\x00"  # whole keyspace, etcd convention


class IMetadataStore(Interface):
    """Ordered, transactional key-value metadata (SQLite, etcd, ...)."""

    name = Attribute("The plugin name this store was created from (str).")

    def get(key: bytes) -> Any:
        """Deferred[KeyValue | None]."""

    def scan(start: bytes, end: bytes, limit: int = 0) -> Any:
        """Deferred[list[KeyValue]]: keys in ``[start, end)``, ascending by
        bytes; at most ``limit`` items when ``limit > 0``."""

    def txn(compares: Sequence[Compare], operations: Sequence[Operation]) -> Any:
        """Deferred[TxnResult].

        Atomically: if every compare holds, apply all operations in order and
        return ``succeeded=True``; otherwise change nothing and return
        ``succeeded=False``.  The result is durable when the Deferred fires.
        """

    def check() -> Any:
        """Deferred[None] if the store is reachable; fails otherwise."""

    def close() -> Any:
        """Deferred[None]: flush and release resources at shutdown."""


class IMetadataStoreFactory(Interface):
    """A plugin that makes metadata stores; found with ``getPlugins``."""

    name = Attribute("The name the config's ``[metadata] backend`` selects (str).")
    description = Attribute("One line for humans (str).")

    def create(options: Mapping[str, Any], context: PluginContext) -> IMetadataStore:
        """Build a store from the ``[metadata]`` section (a dict)."""
