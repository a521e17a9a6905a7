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
from typing import Any, Callable, Mapping, Sequence, Union

from twisted.internet.defer import inlineCallbacks
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
    # The store revision after the transaction (or current, on failure).  Every
    # key a successful transaction put has exactly this mod_revision: the core
    # compares it later without reading the key back (a bucket's revision).
    revision: int


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
    """Ordered, transactional key-value metadata (SQLite, etcd, ...).

    A store may also provide the optional :class:`IScanItems` (a cheaper
    ``scan`` for listings); the core works the same without it.
    """

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


class IScanItems(Interface):
    """Optional, for stores that can hand back scanned rows without ``KeyValue``.

    A listing walk reads every row of a bucket once and needs only each
    row's key and value; building a ``KeyValue`` per row (for etcd also
    decoding a mod revision that is thrown away) cost ~8% of a SQLite walk's
    CPU (docs/performance.md, "Listing at 10k/100k/1M keys") and about a
    sixth of an etcd walk's CPU in the server process.  A store
    that declares this interface on its class, as in
    ``@implementer(IMetadataStore, IScanItems)``, is listed through
    ``scan_items``; any other store through ``scan``, with the same result.

    It is a separate interface, not a method of :class:`IMetadataStore`, so
    that stores written before it keep working unchanged (zope offers no
    optional methods, and a new required one would break every such plugin
    at the first listing).  Read it with :func:`item_scanner`, which asks the
    store's *class*: see there why not the instance.
    """

    def scan_items(start: bytes, end: bytes, limit: int = 0) -> Any:
        """Deferred[list[tuple[bytes, bytes]]]: exactly the ``(kv.key,
        kv.value)`` of ``scan(start, end, limit)``: keys in ``[start, end)``
        ascending by unsigned bytes, at most ``limit`` rows when
        ``limit > 0``, ``end == b"\\x00"`` for no upper bound, an empty list
        for an empty range (``start >= end`` included), and the failures of
        ``scan`` (``MetadataUnavailable``, also after ``close``).  Rows are tuples, as
        :func:`item_scanner`'s fallback makes them, so results compare equal
        whichever way they were read."""


class IPointReadCache(Interface):
    """Optional, for stores whose ``get`` answers from memory, at once and
    exactly (never older than a write any process acknowledged), when the
    key is cached: the SQLite store (lightningstor/metadata/readcache.py).

    The bucket read cache (core/buckets.py) then checks a cached bucket
    against its record on every use instead of trusting a clock, a write
    reads the key it replaces first when the cache holds it (and may
    otherwise assume a new key: core/newkeys.py), and the metrics count the
    cache's reads.  Asked of the store's *class*, once,
    for the reason :func:`item_scanner` gives.
    """

    cache = Attribute(
        "The cache (``hits``, ``misses``, ``bypassed``, ``bytes``, optionally ``unchanged``: reads "
        "the cache could not answer although the database answered what it held, and optionally ``holds(key)``: "
        "whether ``get(key)`` would answer from memory now; without it every write reads its key "
        "first), or None while the store "
        "is not open yet or its cache is turned off: then ``get`` reads the store."
    )


def has_point_read_cache(store: IMetadataStore) -> bool:
    """Whether ``store``'s class declares :class:`IPointReadCache`."""
    return IPointReadCache.implementedBy(type(store))


class IQueueDepths(Interface):
    """Optional, for stores whose own threads take their work from queues
    (the SQLite store): the metrics sample them every few seconds
    (``lightningstor_metadata_queued_*``, lightningstor/metrics.py).  Asked
    of the store's *class*, for the reason :func:`item_scanner` gives."""

    commit_count = Attribute("Transactions committed so far: the gauges appear once it is above 0.")

    def queue_depths() -> dict[str, int]:
        """Work waiting now: ``transactions`` for the writer, ``read_batches``
        for the readers.  Any thread; cheap (no lock, no I/O); approximate."""


class IScanTogether(Interface):
    """Optional, for stores that can read several ranges at one point of
    their history: a transaction that committed is in every range or in
    none.

    ListObjectVersions merges two key spaces (current versions, noncurrent
    versions) that one transaction changes together: an overwrite moves the
    current version into the noncurrent space, a deletion of the current
    version moves one back.  Read at two moments, the two ranges can show a
    version in both places or in neither (core/listing.py).  A store
    without it is read range by range, as before: consistent while nothing
    changes the listed keys.  Asked of the store's *class*, for the reason
    :func:`item_scanner` gives.
    """

    def scan_items_together(ranges: Sequence[tuple[bytes, bytes, int]]) -> Any:
        """Deferred[list[list[tuple[bytes, bytes]]]]: for each ``(start,
        end, limit)``, what ``scan_items(start, end, limit)`` answers, all
        read from one snapshot of the store."""


ItemScan = Callable[[bytes, bytes, int], Any]  # (start, end, limit) -> Deferred[list[(key, value)]]
TogetherScan = Callable[[Sequence[tuple[bytes, bytes, int]]], Any]  # -> Deferred[list[list[(key, value)]]]


def together_scanner(store: IMetadataStore) -> TogetherScan:
    """How to read several ranges of ``store`` at once: its
    ``scan_items_together`` when its class provides :class:`IScanTogether`,
    else one range after another through :func:`item_scanner`."""
    if IScanTogether.implementedBy(type(store)):
        together: TogetherScan = store.scan_items_together  # type: ignore[attr-defined]
        return together
    scan = item_scanner(store)

    @inlineCallbacks
    def one_by_one(ranges: Sequence[tuple[bytes, bytes, int]]) -> Any:
        out = []
        for start, end, limit in ranges:
            out.append((yield scan(start, end, limit)))
        return out

    return one_by_one


def item_scanner(store: IMetadataStore) -> ItemScan:
    """How to read ``(key, value)`` rows from ``store``: its ``scan_items``
    when its class provides :class:`IScanItems`, else ``scan`` with each
    ``KeyValue`` reduced to its key and value.

    Decided once per caller (a listing asks once, then scans many batches).
    The class is asked, not the instance, because a wrapper that overrides
    ``scan`` and forwards every other attribute to an inner store (``__getattr__``:
    the tests' counting stores; a third party's metrics or key-namespace
    layer) seems, to ``providedBy``, to provide whatever the inner store
    does; listings would then call the inner ``scan_items`` and silently
    bypass the wrapper's ``scan``.  (Only until something calls
    ``implementedBy`` on the wrapper's class, which makes zope store a
    declaration on it: ``providedBy`` would even depend on history.)  A
    wrapper wanting the fast path declares :class:`IScanItems` itself.
    """
    if IScanItems.implementedBy(type(store)):
        scan_items: ItemScan = store.scan_items  # type: ignore[attr-defined]
        return scan_items
    scan = store.scan

    def from_scan(start: bytes, end: bytes, limit: int) -> Any:
        return scan(start, end, limit).addCallback(lambda rows: [(kv.key, kv.value) for kv in rows])

    return from_scan


class IMetadataStoreFactory(Interface):
    """A plugin that makes metadata stores; found with ``getPlugins``."""

    name = Attribute("The name the config's ``[metadata] backend`` selects (str).")
    description = Attribute("One line for humans (str).")

    def create(options: Mapping[str, Any], context: PluginContext) -> IMetadataStore:
        """Build a store from the ``[metadata]`` section (a dict)."""
