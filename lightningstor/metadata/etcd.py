"""The distributed metadata store: :class:`IMetadataStore` on an etcd v3 cluster.

etcd has the very shape of the interface (byte keys in byte order, a store
revision, ranged reads with a limit, transactions comparing mod revisions),
so most of this module is translation.  The decisions worth knowing:

**The JSON gateway, through treq, not gRPC stubs.**  etcd serves its v3 API
as JSON on the client port (``POST /v3/kv/range``, ``/v3/kv/txn``, base64
keys and values).  treq is Twisted-native: calls are Deferreds on the
reactor, with per-attempt timeouts by cancellation and no thread hand-offs,
where grpcio would need its futures bridged into the reactor from grpc's own
threads (and its fork handling is a liability with several worker
processes).  It needs no generated code and no copy of etcd's protos, and
the wire is readable with curl.  The price is base64 (a third more bytes on
the wire) and one loopback hop inside etcd from the gateway to its gRPC
server; both are small beside raft's fsync per commit.
(:mod:`lightningstor.metadata.etcd_gateway` is that client, with failover.)

**Key layout.**  Every key lives under a ``namespace`` (default
``lightningstor/``) so deployments can share a cluster: the store's keys
are ``<ns>d/<key>``, and the plugin's own keys ``<ns>x/...`` sit outside
every scan.

**Writes are applied exactly once, even across failover.**  When a member
dies mid-request the answer is lost and the write may or may not have
happened; blindly repeating a compare-and-swap on another member could then
report a lost race for a write that in fact won (and the core would delete
the chunks of an object it just committed).  So every transaction that
puts a key also puts a *marker*: a key of this process's own (one per
in-flight transaction, a "slot", reused afterwards) holding a random
transaction id, guarded by the slot's expected mod revision; the failure
branch reads the marker back.  Repeating such a transaction is then safe:
if an earlier attempt won, the guard fails and the marker holds our id, so
we report the success it had; if it has not been applied yet it never can
be (its guard is stale), and if our retry loses a genuine race after such
an attempt we first *fence* the slot (move the marker) so the stale attempt
can never apply later.  Markers are attached to a lease of this process,
kept alive while it runs, so they vanish with it.  Transactions that only
delete carry no marker (a no-op delete must not bump the revision) and are
repeated only when etcd surely did not apply them; otherwise they fail with
:class:`~lightningstor.metadata.etcd_gateway.OutcomeUnknown`.

**Value size: refused, not split.**  etcd refuses a request larger than
``--max-request-bytes`` (1.5 MiB by default) or with more than
``--max-txn-ops`` operations (128).  The core keeps its transactions under
both at any object size: a commit carries a fixed handful of operations
(chunk-index entries are written before it, in batches of 100:
core/chunkindex.py), and long chunk lists are paged out of the record
(core/manifests.py).  Splitting one value over several keys here would
not help a single transaction, and pieces written in earlier transactions
would break atomicity.  Should a transaction still exceed etcd's limits
(lowered below the defaults), it fails with
:class:`~lightningstor.errors.EntityTooLarge` naming the limit.

**Out of space: 507, not 503.**  When etcd's database reaches
``--quota-backend-bytes`` it raises the NOSPACE alarm and refuses, until an
operator disarms it, every request that puts a key (a put, any transaction
with a put in either branch, a lease grant) with "mvcc: database space
exceeded" (gRPC RESOURCE_EXHAUSTED; HTTP 429 from the gateway).  Retrying
cannot help, so it is :class:`~lightningstor.errors.MetadataFull`, answered
507 InsufficientStorage like a full SQLite disk.  The one write that
crosses the quota is applied even though etcd answers it with that error;
its marker shows it, so it is reported as the success it was.  Reads and lease
keep-alives still work, and so do transactions that only delete (etcd 3.4,
checked by tests/integration/test_etcd_quota.py); the core's object deletes
also write (a record or the chunks' retirement), so most of them are refused.

**Operations are normalised.**  etcd refuses a transaction naming one key
twice (a put and a delete, or a put inside a deleted range) where the
interface applies operations in order; :func:`normalize` rewrites them into
an equivalent set without overlaps (the last operation on a key wins,
deleted ranges are split around keys put after them).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

from twisted.internet.defer import Deferred, DeferredLock, fail, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.plugin import IPlugin
from twisted.python.failure import Failure
from zope.interface import implementer

from lightningstor import errors
from lightningstor.deferreds import Running
from lightningstor.errors import ConfigError, MetadataUnavailable
from lightningstor.interfaces.metadata import (
    Compare,
    Delete,
    DeleteRange,
    IMetadataStore,
    IMetadataStoreFactory,
    IScanItems,
    IScanTogether,
    KeyValue,
    Operation,
    Put,
    TxnResult,
    prefix_end,
)
from lightningstor.interfaces.storage import PluginContext
from lightningstor.metadata.etcd_gateway import (
    CallFailed,
    ClientTLS,
    EtcdError,
    GatewayClient,
    OutcomeUnknown,
)

_T = TypeVar("_T")
_Row = TypeVar("_Row")
log = Logger()

DEFAULT_NAMESPACE = "lightningstor/"
_UNBOUNDED = b"\x00"  # an end key of b"\0" means "no upper bound" (etcd's convention)
_TXN = "/v3/kv/txn"
_RANGE = "/v3/kv/range"
_CHECK_TIMEOUT = 3.0


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str | None) -> bytes:
    return base64.b64decode(text) if text else b""  # the gateway omits empty values


def _bytes(value: Any, what: str = "key") -> bytes:
    """Keys and values must be bytes, as for every store (see sqlite's ``_key``)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"metadata {what} must be bytes, not {type(value).__name__}")


def _revision(answer: Mapping[str, Any]) -> int:
    return int(answer.get("header", {}).get("revision", 0))


# -- operation normalisation ----------------------------------------------------


@dataclass(frozen=True)
class Normalized:
    """Operations with no key named twice, equivalent to applying the
    originals in order.  ``ranges`` are ``(start, end)`` with ``end`` None for
    "no upper bound"; none contains a key of ``puts`` or ``deletes``."""

    puts: dict[bytes, bytes]
    deletes: list[bytes]
    ranges: list[tuple[bytes, bytes | None]]

    @property
    def writes(self) -> bool:
        return bool(self.puts or self.deletes or self.ranges)


def _in_range(key: bytes, start: bytes, end: bytes | None) -> bool:
    return start <= key and (end is None or key < end)


def normalize(operations: Iterable[Operation]) -> Normalized:
    """Rewrite ``operations`` so that etcd accepts them (see the module doc).

    For every key the final state is decided by the last operation naming
    it, so: a put keeps only its last value and cancels an earlier delete;
    a delete or a deleted range cancels earlier puts; keys put *after* a
    range deleted them are cut out of the range.
    """
    puts: dict[bytes, bytes] = {}
    deletes: set[bytes] = set()
    ranges: list[tuple[bytes, bytes | None]] = []
    for op in operations:
        if isinstance(op, Put):
            key = _bytes(op.key)
            puts.pop(key, None)  # re-insert: emission order follows the last put
            puts[key] = _bytes(op.value, "value")
            deletes.discard(key)
        elif isinstance(op, Delete):
            key = _bytes(op.key)
            puts.pop(key, None)
            deletes.add(key)
        elif isinstance(op, DeleteRange):
            start, end_key = _bytes(op.start), _bytes(op.end, "end")
            end = None if end_key == _UNBOUNDED else end_key
            if end is not None and end <= start:
                continue  # an empty range deletes nothing
            for key in [k for k in puts if _in_range(k, start, end)]:
                del puts[key]
            deletes = {k for k in deletes if not _in_range(k, start, end)}
            ranges.append((start, end))
        else:
            raise TypeError(f"unknown metadata operation {op!r}")
    return Normalized(puts, sorted(deletes), _cut(_merge(ranges), sorted(puts)))


def _merge(ranges: list[tuple[bytes, bytes | None]]) -> list[tuple[bytes, bytes | None]]:
    """Union of half-open ranges, sorted, overlapping and touching ones joined."""
    out: list[tuple[bytes, bytes | None]] = []
    for start, end in sorted(ranges, key=lambda r: r[0]):
        if out:
            last_start, last_end = out[-1]
            if last_end is None or start <= last_end:
                wider = None if last_end is None or end is None else max(last_end, end)
                out[-1] = (last_start, wider)
                continue
        out.append((start, end))
    return out


def _cut(ranges: list[tuple[bytes, bytes | None]], keys: list[bytes]) -> list[tuple[bytes, bytes | None]]:
    """Split ``ranges`` so that none contains any of the (sorted) ``keys``."""
    out: list[tuple[bytes, bytes | None]] = []
    for start, end in ranges:
        for key in keys:
            if _in_range(key, start, end):
                if start < key:
                    out.append((start, key))
                start = key + b"\x00"  # the smallest key after ``key``
        if end is None or start < end:
            out.append((start, end))
    return out


# -- markers: leases and slots -------------------------------------------------------


@dataclass
class _Slot:
    """One marker key and the mod revision we last saw it at (0: absent)."""

    key: bytes
    revision: int = 0


class _Lease:
    """A granted lease and the marker slots under it (named by the lease id,
    so a new lease starts with fresh, absent slots)."""

    def __init__(self, lease_id: int, prefix: bytes) -> None:
        self.id = lease_id
        self.alive = True
        self._prefix = prefix + b"%016x/" % lease_id
        self._free: list[_Slot] = []
        self._made = 0

    def take(self) -> _Slot:
        if self._free:
            return self._free.pop()
        self._made += 1
        return _Slot(self._prefix + b"%d" % self._made)

    def give_back(self, slot: _Slot) -> None:
        self._free.append(slot)


# -- the store -------------------------------------------------------------------------


class _Compacted(Exception):
    """The revision a scan pinned was compacted away: read it all again."""


@implementer(IMetadataStore, IScanItems, IScanTogether)
class EtcdMetadataStore:
    """Ordered, transactional metadata in an etcd cluster (see the module doc).

    ``scan_page`` bounds the keys one range request returns; longer scans
    (``scan`` and ``scan_items`` alike) are read in pages pinned to the first
    page's revision, so they still see one snapshot.
    """

    name = "etcd"

    def __init__(
        self,
        client: GatewayClient,
        reactor: Any,
        *,
        namespace: bytes = DEFAULT_NAMESPACE.encode(),
        lease_ttl: int = 60,
        scan_page: int = 500,
    ) -> None:
        if lease_ttl < 5 or scan_page < 1:
            raise ValueError("lease_ttl must be at least 5 seconds and scan_page at least 1")
        self.namespace = namespace
        self._client = client
        self._reactor = reactor
        self._data = namespace + b"d/"
        self._data_end = prefix_end(self._data)
        self._markers = namespace + b"x/txn/"
        self._lease_ttl = lease_ttl
        self._scan_page = scan_page
        self._lease: _Lease | None = None
        self._lease_lock = DeferredLock()
        self._keepalive: LoopingCall | None = None
        self._running = Running()
        self._closed = False
        self._close_waiters: list[Deferred[None]] | None = None

    # -- IMetadataStore ------------------------------------------------------

    def get(self, key: bytes) -> Deferred[KeyValue | None]:
        try:
            k = _bytes(key)
        except TypeError:
            return fail()
        return self._run(self._get(k))

    def scan(self, start: bytes, end: bytes, limit: int = 0) -> Deferred[list[KeyValue]]:
        try:
            s, e = _bytes(start), _bytes(end, "end")
        except TypeError:
            return fail()
        return self._run(self._range(s, e, limit, self._kvs))

    def scan_items(self, start: bytes, end: bytes, limit: int = 0) -> Deferred[list[tuple[bytes, bytes]]]:
        """``scan`` as ``(key, value)`` tuples (IScanItems), for listings.

        A range answer already holds each key and value; making a
        ``KeyValue`` (and parsing a mod revision) per row only for the
        listing to take them apart again is wasted work on every row of a
        walk.  Same paging and snapshot as ``scan``.
        """
        try:
            s, e = _bytes(start), _bytes(end, "end")
        except TypeError:
            return fail()
        return self._run(self._range(s, e, limit, self._items))

    def scan_items_together(
        self, ranges: Sequence[tuple[bytes, bytes, int]]
    ) -> Deferred[list[list[tuple[bytes, bytes]]]]:
        """``scan_items`` of each range, all at one revision (IScanTogether):
        the first range's, which the others name (etcd keeps it until a
        compaction; then all are read again)."""
        try:
            bounds = [(_bytes(start), _bytes(end, "end"), limit) for start, end, limit in ranges]
        except TypeError:
            return fail()
        return self._run(self._ranges(bounds, self._items))

    def txn(self, compares: Sequence[Compare], operations: Sequence[Operation]) -> Deferred[TxnResult]:
        try:
            guards = [Compare(_bytes(c.key), int(c.mod_revision)) for c in compares]
            ops = normalize(operations)
        except TypeError:
            return fail()
        return self._run(self._txn(guards, ops))

    def check(self) -> Deferred[None]:
        """A linearizable read: it needs a leader and a quorum, not just a live member."""
        return self._run(self._check())

    def close(self) -> Deferred[None]:
        """Let calls in flight finish, revoke the lease (its markers go with
        it), close the connections.  Idempotent."""
        d: Deferred[None] = Deferred()
        if self._close_waiters is None and self._closed:
            return succeed(None)
        if self._close_waiters is None:
            self._close_waiters = [d]
            self._closed = True
            Deferred.fromCoroutine(self._shutdown()).addBoth(self._closed_all)
        else:
            self._close_waiters.append(d)
        return d

    # -- plumbing ------------------------------------------------------------

    def _run(self, coro: Coroutine[Any, Any, _T]) -> Deferred[_T]:
        if self._closed:
            coro.close()
            return fail(MetadataUnavailable("metadata store is closed"))
        return self._running.track(Deferred.fromCoroutine(coro))

    def _closed_all(self, result: Any) -> None:
        if isinstance(result, Failure):
            log.failure("Closing the etcd metadata store failed", result)
        waiters, self._close_waiters = self._close_waiters or [], None
        for w in waiters:
            w.callback(None)

    async def _shutdown(self) -> None:
        if self._keepalive is not None and self._keepalive.running:
            self._keepalive.stop()
        if self._running:
            await self._running.settled()
        lease, self._lease = self._lease, None
        if lease is not None and lease.alive:
            try:
                await self._client.call("/v3/lease/revoke", {"ID": str(lease.id)}, timeout=2.0)
            except Exception as e:  # best effort: the lease expires on its own
                log.info("Could not revoke etcd lease {id:x}: {e}", id=lease.id, e=e)
        await self._client.close()

    async def _call(
        self, path: str, body: dict[str, Any], *, repeatable: bool = True, timeout: float | None = None
    ) -> dict[str, Any]:
        try:
            return await self._client.call(path, body, repeatable=repeatable, timeout=timeout)
        except EtcdError as e:
            raise _translate(e) from e

    def _kv(self, item: Mapping[str, Any]) -> KeyValue:
        return KeyValue(_unb64(item["key"])[len(self._data) :], _unb64(item.get("value")), int(item["mod_revision"]))

    def _kvs(self, items: list[Mapping[str, Any]]) -> list[KeyValue]:
        return [self._kv(item) for item in items]

    def _items(self, items: list[Mapping[str, Any]]) -> list[tuple[bytes, bytes]]:
        """One page of a range answer as ``(key, value)`` rows, in one loop
        with no call per row (``a2b_base64`` is what ``b64decode`` calls
        after its argument checks; the gateway omits empty values)."""
        skip = len(self._data)
        a2b = binascii.a2b_base64
        return [(a2b(item["key"])[skip:], a2b(item.get("value", ""))) for item in items]

    # -- reads ---------------------------------------------------------------

    async def _get(self, key: bytes) -> KeyValue | None:
        answer = await self._call(_RANGE, {"key": _b64(self._data + key)})
        kvs = answer.get("kvs") or []
        return self._kv(kvs[0]) if kvs else None

    async def _range(
        self, start: bytes, end: bytes, limit: int, rows: Callable[[list[Mapping[str, Any]]], list[_Row]]
    ) -> list[_Row]:
        """The keys in ``[start, end)``, each page's ``kvs`` made into rows by
        ``rows`` (``scan`` wants ``KeyValue``s, ``scan_items`` bare tuples)."""
        return (await self._ranges([(start, end, limit)], rows))[0]

    async def _range_at(
        self,
        start: bytes,
        end: bytes,
        limit: int,
        rows: Callable[[list[Mapping[str, Any]]], list[_Row]],
        revision: int,
    ) -> tuple[list[_Row], int]:
        """The rows of ``[start, end)`` at ``revision`` (0: the current one)
        and the revision read; :class:`_Compacted` when etcd no longer holds
        that revision."""
        if end != _UNBOUNDED and end <= start:
            return [], revision
        first = self._data + start
        range_end = _b64(self._data_end if end == _UNBOUNDED else self._data + end)
        out: list[_Row] = []
        pos = first
        while True:
            want = self._scan_page if limit <= 0 else min(self._scan_page, limit - len(out))
            body: dict[str, Any] = {"key": _b64(pos), "range_end": range_end, "limit": str(want)}
            if revision:
                body["revision"] = str(revision)  # later pages read the first page's snapshot
            try:
                answer = await self._client.call(_RANGE, body)
            except EtcdError as e:
                if e.compacted and revision:
                    raise _Compacted() from e
                raise _translate(e) from e
            revision = revision or _revision(answer)
            kvs = answer.get("kvs") or []
            out.extend(rows(kvs))
            if not answer.get("more") or not kvs or (limit > 0 and len(out) >= limit):
                return out, revision
            pos = _unb64(kvs[-1]["key"]) + b"\x00"  # the raw key: rows may be of any shape

    async def _ranges(
        self, ranges: Sequence[tuple[bytes, bytes, int]], rows: Callable[[list[Mapping[str, Any]]], list[_Row]]
    ) -> list[list[_Row]]:
        """Every range at the revision the first one read (one range: a
        scan; several: IScanTogether), all read again from the start when
        etcd compacts that revision under them."""
        for _restart in range(3):
            revision = 0
            out: list[list[_Row]] = []
            try:
                for start, end, limit in ranges:
                    found, revision = await self._range_at(start, end, limit, rows, revision)
                    out.append(found)
                return out
            except _Compacted:
                continue
        raise MetadataUnavailable("etcd compacted the revision of a scan three times in a row")

    async def _check(self) -> None:
        # Readiness probes call this: answer within a few seconds even when the
        # configured timeout is longer.
        body = {"key": _b64(self.namespace + b"x/check"), "count_only": True}
        await self._call(_RANGE, body, timeout=min(self._client.timeout, _CHECK_TIMEOUT))

    # -- writes ------------------------------------------------------------------

    def _compare(self, c: Compare) -> dict[str, Any]:
        key = self._data + c.key
        return {"key": _b64(key), "target": "MOD", "result": "EQUAL", "mod_revision": str(c.mod_revision)}

    def _operations(self, ops: Normalized) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for start, end in ops.ranges:
            stop = self._data_end if end is None else self._data + end
            out.append({"request_delete_range": {"key": _b64(self._data + start), "range_end": _b64(stop)}})
        out += [{"request_delete_range": {"key": _b64(self._data + k)}} for k in ops.deletes]
        out += [{"request_put": {"key": _b64(self._data + k), "value": _b64(v)}} for k, v in ops.puts.items()]
        return out

    async def _txn(self, guards: list[Compare], ops: Normalized) -> TxnResult:
        compares = [self._compare(c) for c in guards]
        requests = self._operations(ops)
        if ops.puts:
            return await self._marked_txn(compares, requests)
        # Deletes only (or nothing): no marker, so a no-op keeps the revision.
        # Repeating is safe only when nothing is written.
        body = {"compare": compares, "success": requests}
        answer = await self._call(_TXN, body, repeatable=not ops.writes)
        return TxnResult(bool(answer.get("succeeded")), _revision(answer))

    async def _marked_txn(self, compares: list[dict[str, Any]], requests: list[dict[str, Any]]) -> TxnResult:
        """Run a txn with a marker so it can be repeated safely (module doc)."""
        txn_id = os.urandom(16)
        for _lease_round in range(3):
            lease = await self._current_lease()
            slot = lease.take()
            try:
                result = await self._marked_attempts(lease, slot, txn_id, compares, requests)
            except EtcdError as e:
                if e.lease_not_found and not e.after_unknown:
                    self._lease_lost(lease)  # nothing was applied: go again under a new lease
                    continue
                if e.lease_not_found:
                    self._lease_lost(lease)
                    raise OutcomeUnknown(
                        "etcd write outcome unknown: its lease expired while it was being retried"
                    ) from e
                if e.no_space:
                    return await self._after_no_space(lease, slot, txn_id, e)
                lease.give_back(slot)  # refused as a whole: the slot is as it was
                raise _translate(e) from e
            except CallFailed as e:
                # The slot's state is unknown now; leave it (the lease will take it).
                if e.unknown_seen:
                    raise OutcomeUnknown(f"etcd write outcome unknown: {e}") from e
                lease.give_back(slot)
                raise
            except BaseException:
                raise  # OutcomeUnknown and bugs: leave the slot
            lease.give_back(slot)
            return result
        raise MetadataUnavailable("etcd keeps losing this server's lease")

    async def _marked_attempts(
        self,
        lease: _Lease,
        slot: _Slot,
        txn_id: bytes,
        compares: list[dict[str, Any]],
        requests: list[dict[str, Any]],
    ) -> TxnResult:
        marker = _b64(slot.key)
        # Whether any attempt so far may have been applied unanswered: kept
        # across the stale-guard retries, since a marker that vanished
        # meanwhile (this server's lease expired) can no longer tell.
        seen_unknown = False
        for _stale_guard in range(3):
            body = {
                "compare": [
                    *compares,
                    {"key": marker, "target": "MOD", "result": "EQUAL", "mod_revision": str(slot.revision)},
                ],
                "success": [
                    *requests,
                    {"request_put": {"key": marker, "value": _b64(txn_id), "lease": str(lease.id)}},
                ],
                "failure": [{"request_range": {"key": marker}}],
            }
            answer, unknown_seen = await self._client.call_traced(_TXN, body)
            seen_unknown = seen_unknown or unknown_seen
            revision = _revision(answer)
            if answer.get("succeeded"):
                slot.revision = revision
                return TxnResult(True, revision)
            value, marker_revision = _marker_of(answer)
            if value == txn_id:  # an earlier attempt of ours was applied
                slot.revision = marker_revision
                return TxnResult(True, marker_revision)
            if seen_unknown and value is None and slot.revision != 0:
                # The marker that would tell whether an unanswered attempt
                # landed is gone: neither "applied" nor "lost" can be said.
                raise OutcomeUnknown("etcd write outcome unknown: the write's marker vanished")
            if marker_revision != slot.revision:
                slot.revision = marker_revision  # our guard was stale, not the caller's: again
                continue
            if seen_unknown:
                try:
                    fenced = await self._fence(lease, slot, txn_id)
                except Exception as e:
                    raise OutcomeUnknown(f"etcd write outcome unknown: fencing failed: {e}") from e
                if not fenced:
                    return TxnResult(True, slot.revision)  # the earlier attempt landed meanwhile
            return TxnResult(False, revision)
        raise MetadataUnavailable("etcd marker key keeps changing under this server")

    async def _after_no_space(self, lease: _Lease, slot: _Slot, txn_id: bytes, e: EtcdError) -> TxnResult:
        """etcd answered NOSPACE.  The transaction that crosses the quota is
        applied all the same (etcd applies it, then raises the alarm and
        answers with the error); one that arrives while the alarm is raised
        is not.  The marker, still readable, tells which."""
        try:
            answer = await self._client.call(_RANGE, {"key": _b64(slot.key)})
        except Exception as read_error:
            raise OutcomeUnknown(
                f"etcd write outcome unknown: etcd is out of space and the write's marker "
                f"could not be read ({read_error})"
            ) from e
        value, revision = _marker_of({"responses": [{"response_range": answer}]})
        if value == txn_id:
            slot.revision = revision
            lease.give_back(slot)
            log.warn("etcd: this write filled etcd's space quota (it was applied); {message}",
                     message=NO_SPACE_MESSAGE)
            return TxnResult(True, revision)
        if e.after_unknown:
            # An earlier attempt whose answer was lost may still be applied
            # (once the alarm is disarmed); it cannot be fenced off, since
            # fencing is a put.  Leave the slot.
            raise OutcomeUnknown(
                "etcd write outcome unknown: an earlier attempt's answer was lost and etcd is out of space"
            ) from e
        lease.give_back(slot)  # refused as a whole: the slot is as it was
        raise errors.MetadataFull.refused(NO_SPACE_MESSAGE) from e

    async def _fence(self, lease: _Lease, slot: _Slot, txn_id: bytes) -> bool:
        """Move the marker so an earlier attempt still in flight can never
        apply; False if that attempt was applied first (``slot.revision`` is
        then its revision)."""
        marker = _b64(slot.key)
        body = {
            "compare": [{"key": marker, "target": "MOD", "result": "EQUAL", "mod_revision": str(slot.revision)}],
            "success": [{"request_put": {"key": marker, "value": "", "lease": str(lease.id)}}],
            "failure": [{"request_range": {"key": marker}}],
        }
        answer = await self._client.call(_TXN, body)
        if answer.get("succeeded"):
            slot.revision = _revision(answer)
            return True
        value, slot.revision = _marker_of(answer)
        return value != txn_id

    # -- the lease -------------------------------------------------------------------

    async def _current_lease(self) -> _Lease:
        lease = self._lease
        if lease is not None and lease.alive:
            return lease
        await self._lease_lock.acquire()
        try:
            if self._lease is None or not self._lease.alive:
                answer = await self._call("/v3/lease/grant", {"TTL": str(self._lease_ttl)})
                self._lease = _Lease(int(answer["ID"]), self._markers)
                if self._keepalive is None:
                    self._keepalive = LoopingCall(lambda: Deferred.fromCoroutine(self._refresh()))
                    self._keepalive.clock = self._reactor
                    self._keepalive.start(self._lease_ttl / 3, now=False).addErrback(
                        lambda f: log.failure("etcd lease keep-alive loop failed", f)
                    )
            return self._lease
        finally:
            self._lease_lock.release()

    def _lease_lost(self, lease: _Lease) -> None:
        lease.alive = False
        if self._lease is lease:
            self._lease = None

    async def _refresh(self) -> None:
        lease = self._lease
        if lease is None or not lease.alive or self._closed:
            return
        try:
            answer = await self._client.call(
                "/v3/lease/keepalive", {"ID": str(lease.id)}, timeout=self._lease_ttl / 3
            )
        except Exception as e:
            log.warn("etcd lease keep-alive failed (will retry): {e}", e=e)
            return
        if int(answer.get("result", {}).get("TTL", 0)) <= 0:
            log.warn("etcd lease {id:x} expired; markers move to a new lease", id=lease.id)
            self._lease_lost(lease)


def _marker_of(answer: Mapping[str, Any]) -> tuple[bytes | None, int]:
    """(value, mod_revision) of the marker read by a txn's failure branch;
    (None, 0) if it does not exist."""
    responses = answer.get("responses") or [{}]
    kvs = responses[0].get("response_range", {}).get("kvs") or []
    if not kvs:
        return None, 0
    return _unb64(kvs[0].get("value")), int(kvs[0]["mod_revision"])


NO_SPACE_MESSAGE = (
    "etcd's space quota (--quota-backend-bytes) is exhausted and its NOSPACE alarm is raised: "
    "etcd refuses every write that adds or changes a key until an operator compacts and "
    "defragments it (or raises the quota) and disarms the alarm (etcdctl alarm disarm; "
    "see docs/deployment.md)"
)


def _translate(e: EtcdError) -> Exception:
    """etcd's permanent refusals as the errors the core and S3 layer know."""
    if e.too_large:
        return errors.EntityTooLarge(
            "The object's metadata is larger than the etcd metadata store accepts in one "
            f"transaction ({e.message}); raise etcd's --max-txn-ops / --max-request-bytes "
            "(see docs/scaling.md)"
        )
    if e.no_space:
        return errors.MetadataFull(NO_SPACE_MESSAGE)
    return MetadataUnavailable(str(e))


# -- the factory --------------------------------------------------------------------------

_OPTIONS = {
    "endpoints",
    "namespace",
    "request_timeout",
    "timeout",
    "connect_timeout",
    "lease_ttl",
    "scan_page",
    "ca_file",
    "cert_file",
    "key_file",
}
_ENDPOINT = re.compile(r"^https?://[^/?#]+/?\Z")


def _endpoints(options: Mapping[str, Any]) -> list[str]:
    given = options.get("endpoints") or options.get("chainfire_endpoints") or ()
    if isinstance(given, str):
        given = [given]
    urls = [str(u) for u in given]
    if not urls:
        raise ConfigError(
            "metadata.chainfire_endpoints (or metadata.etcd.endpoints): the etcd store needs at "
            'least one endpoint, e.g. ["http://127.0.0.1:2379"]'
        )
    for url in urls:
        if not _ENDPOINT.match(url) or not urlsplit(url).hostname:
            raise ConfigError(f"metadata.etcd.endpoints: {url!r} is not an http(s)://host:port URL")
    return urls


def _number(options: Mapping[str, Any], name: str, default: float, low: float) -> float:
    try:
        value = float(options.get(name, default))
    except (TypeError, ValueError) as e:
        raise ConfigError(f"metadata.etcd.{name}: {e}") from e
    if value < low:
        raise ConfigError(f"metadata.etcd.{name} must be at least {low:g}")
    return value


def _read_file(options: Mapping[str, Any], name: str) -> bytes | None:
    path = options.get(name)
    if not path:
        return None
    try:
        with open(str(path), "rb") as f:  # start-up, before the reactor serves anything
            return f.read()
    except OSError as e:
        raise ConfigError(f"metadata.etcd.{name}: cannot read {path!r}: {e}") from e


@implementer(IPlugin, IMetadataStoreFactory)
class EtcdStoreFactory:
    """Makes the etcd store from the ``[metadata]`` section merged with ``[metadata.etcd]``.

    Options: ``endpoints`` (else ``chainfire_endpoints``), ``namespace``
    (``"lightningstor/"``), ``request_timeout`` seconds per attempt (5),
    ``timeout`` seconds per call including failover (10),
    ``connect_timeout`` (2), ``lease_ttl`` seconds (60), ``scan_page`` keys
    (500), and for TLS ``ca_file``, ``cert_file``, ``key_file``.
    """

    name = "etcd"
    description = "etcd v3 cluster (JSON gateway); shared by many API servers"

    def create(self, options: Mapping[str, Any], context: PluginContext) -> EtcdMetadataStore:
        own = options.get("etcd")
        if isinstance(own, Mapping):
            unknown = sorted(set(own) - _OPTIONS)
            if unknown:
                raise ConfigError(
                    f"metadata.etcd: unknown option(s) {', '.join(unknown)} (known: {', '.join(sorted(_OPTIONS))})"
                )
        endpoints = _endpoints(options)
        namespace = str(options.get("namespace", DEFAULT_NAMESPACE))
        if not namespace:
            raise ConfigError("metadata.etcd.namespace must not be empty")
        request_timeout = _number(options, "request_timeout", 5.0, 0.1)
        timeout = _number(options, "timeout", 10.0, 0.1)
        connect_timeout = _number(options, "connect_timeout", 2.0, 0.1)
        lease_ttl = int(_number(options, "lease_ttl", 60, 5))
        scan_page = int(_number(options, "scan_page", 500, 1))
        ca, cert, key = (_read_file(options, n) for n in ("ca_file", "cert_file", "key_file"))
        if bool(cert) != bool(key):
            raise ConfigError("metadata.etcd.cert_file and metadata.etcd.key_file go together")
        client = GatewayClient(
            context.reactor,
            endpoints,
            request_timeout=request_timeout,
            timeout=timeout,
            connect_timeout=connect_timeout,
            tls=ClientTLS(ca, cert, key),
        )
        return EtcdMetadataStore(
            client, context.reactor, namespace=namespace.encode("utf-8"), lease_ttl=lease_ttl, scan_page=scan_page
        )


etcdStoreFactory = EtcdStoreFactory()
