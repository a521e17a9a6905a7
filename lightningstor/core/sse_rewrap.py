"""Re-wrapping stored SSE-S3 data keys under the master key file's first line.

Every SSE-S3 object version and multipart upload keeps its data key wrapped
under the KEK of one line of ``[security] master_key_file`` (core/sse.py).
A rotation puts a new line first; new keys are wrapped under it, old ones
keep opening with their own line.  :func:`rewrap_all` (``lightningstor-admin
sse rewrap``) wraps every stored key that the first line does not open again
under the first line, so the older lines can then leave the file.

What it walks: the three key spaces that hold an ``sse`` field, for every
bucket of every org and project at once (core/keys.py): current object
records (``objects/``), noncurrent versions (``versions/``) and multipart
uploads in progress (``uploads/``; their parts hold no key of their own).
Delete markers and unencrypted records have no ``sse`` field; SSE-C records
(``Encryption.customer`` set) have nothing wrapped by the server: both are
counted and left alone.

What it changes: only the ``k`` field of a record's ``sse`` field.  The
record's JSON is read and written again with the same encoder, every other
field as it was, an object record's inline data (after the NUL) byte for
byte.  The data key itself does not change, so no chunk and no inline byte
is touched.  Each write is a compare-and-swap on the revision read: a
record that a server changed meanwhile is read again and retried, one that
was deleted is skipped.  That makes it safe while servers run; a server
that still holds the old record has a wrapped key that its old line opens,
and that line stays in the file until the walk is done.

Records move between key spaces while servers run (a version becomes
noncurrent, a noncurrent one current again, an upload completes into an
object), copying the wrapped key they had when they were read, so one walk
may miss a record that moved from a range not yet read into one already
read.  A walk that rewrapped anything is therefore followed by another,
until one finds nothing left to rewrap (``settled``), at most
``max_passes`` walks.  Servers that still wrap new keys under an older line
(not restarted with the new file) keep the walks from settling: the report
says so rather than claiming the old line can go.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.defer import inlineCallbacks

from lightningstor.core import keys, records, scans
from lightningstor.core.sse import KeyManager, KeyUnavailable
from lightningstor.interfaces.metadata import Compare, IMetadataStore, KeyValue, Put, prefix_end

#: The key spaces whose records may carry a wrapped data key: uploads
#: first (a completion copies its key into an object record), then
#: current objects, then noncurrent versions.
KEY_HOLDERS = (keys.UPLOADS, keys.OBJECTS, keys.VERSIONS)

# Compare-and-swap attempts on one record before it is left for another run.
_ATTEMPTS = 50
# Unreadable records listed in a report (all of them are counted).
_LISTED = 100

PLAIN = "plain"
CUSTOMER = "customer"
CURRENT = "current"
UNREADABLE = "unreadable"
REWRAP = "rewrap"


@dataclass(frozen=True)
class UnreadableKey:
    """A stored data key no line of the master key file opens."""

    record_key: bytes  # where the record is stored
    object_key: str  # the associated data the key was wrapped with
    reason: str


@dataclass
class RewrapReport:
    """What :func:`rewrap_all` saw and did, over all its walks.

    ``checked`` counts SSE-S3 wrapped keys looked at (once each: a later
    walk adds only those it rewrapped); it is ``rewrapped + current +
    unreadable + busy``.  ``rewrapped`` counts the ones written back
    under the first line, ``current`` the ones the first line already
    opened, ``unreadable`` the ones no line opens, ``conflicts`` the
    compare-and-swaps lost to a concurrent write (each re-read and retried).
    ``customer`` (SSE-C) and ``plain`` (unencrypted, delete markers) count
    records without a server-wrapped key; ``gone`` the records deleted
    between their read and their write; ``busy`` the records that kept
    changing for every attempt (left as they were: run again).
    """

    records: int = 0
    checked: int = 0
    rewrapped: int = 0
    current: int = 0
    unreadable: int = 0
    conflicts: int = 0
    customer: int = 0
    plain: int = 0
    gone: int = 0
    busy: int = 0
    passes: int = 0
    settled: bool = False
    unreadable_keys: list[UnreadableKey] = field(default_factory=list)
    # The records counted unreadable so far: a later walk counts one it
    # finds (a version promoted into the first walk's finished range) once.
    unreadable_seen: set[bytes] = field(default_factory=set, repr=False)

    @property
    def ok(self) -> bool:
        """Whether every stored key now opens with the first line: only then
        may the older lines leave the master key file."""
        return self.settled and not self.unreadable and not self.busy

    def as_dict(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "checked": self.checked,
            "rewrapped": self.rewrapped,
            "current": self.current,
            "unreadable": self.unreadable,
            "conflicts": self.conflicts,
            "customer": self.customer,
            "plain": self.plain,
            "gone": self.gone,
            "busy": self.busy,
            "passes": self.passes,
            "settled": self.settled,
            "ok": self.ok,
            "unreadable_keys": [
                {"record": u.record_key.decode("utf-8", "replace"), "key": u.object_key, "reason": u.reason}
                for u in self.unreadable_keys
            ],
        }




def plan(key_manager: KeyManager, value: bytes) -> tuple[str, bytes | str | None]:
    """What one stored object, version or upload record needs:
    ``(PLAIN | CUSTOMER | CURRENT, None)``, ``(UNREADABLE, reason)`` or
    ``(REWRAP, new value)``, the new value being ``value`` with only the
    ``sse`` field's wrapped key replaced."""
    end = value.find(records.INLINE_SEPARATOR)
    head, tail = (value, b"") if end < 0 else (value[:end], value[end:])
    try:
        fields = records.record_fields(head)
        sse = fields.get("sse")
        if sse is None:
            return PLAIN, None
        encryption = records.decode_encryption(sse)
        object_key = fields["key"]
        if not isinstance(object_key, str):
            raise TypeError("its key is not a string")
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        return UNREADABLE, f"record does not decode: {e}"
    if encryption.customer is not None:
        return CUSTOMER, None
    try:
        wrapped = key_manager.rewrap(encryption, object_key)
    except KeyUnavailable as e:
        return UNREADABLE, str(e)
    if wrapped is None:
        return CURRENT, None
    fields["sse"] = {**sse, "k": base64.b64encode(wrapped).decode("ascii")}
    return REWRAP, records.dumps(fields) + tail


def _object_key(value: bytes) -> str:
    """The ``key`` field of a record, for a report ('' if it has none)."""
    try:
        key = records.record_fields(value).get("key", "")
    except (ValueError, AttributeError):
        return ""
    return key if isinstance(key, str) else ""


@inlineCallbacks
def _rewrap_row(
    store: IMetadataStore, key_manager: KeyManager, kv: KeyValue, report: RewrapReport, first: bool
) -> Any:
    """Deferred[None]: bring one record's wrapped key to the first line.
    ``first``: this is the first walk, which counts every record; a later
    one counts only what it rewrites (so no key is counted twice)."""
    if first:
        report.records += 1
    for _attempt in range(_ATTEMPTS):
        verdict, detail = plan(key_manager, kv.value)
        if verdict == REWRAP:
            assert isinstance(detail, bytes)
            result = yield store.txn([Compare(kv.key, kv.mod_revision)], [Put(kv.key, detail)])
            if result.succeeded:
                report.checked += 1
                report.rewrapped += 1
                return None
            # A server wrote the record meanwhile: read it again.
            report.conflicts += 1
            again = yield store.get(kv.key)
            if again is None:
                report.gone += 1
                return None
            kv = again
            continue
        if first or (verdict == UNREADABLE and kv.key not in report.unreadable_seen):
            # A later walk counts only what it rewrites, and an unreadable
            # record the first walk did not see: one moved (a version
            # promoted, a demoted current version) into a range the first
            # walk had passed.  Left uncounted, the tool would say every key
            # opens with the first line while one opens with none.
            _tally(report, verdict, kv, detail)
        return None
    report.checked += 1
    report.busy += 1
    return None


def _tally(report: RewrapReport, verdict: str, kv: KeyValue, detail: bytes | str | None) -> None:
    """Count a record that needs no write."""
    if verdict == PLAIN:
        report.plain += 1
    elif verdict == CUSTOMER:
        report.customer += 1
    elif verdict == CURRENT:
        report.checked += 1
        report.current += 1
    else:
        report.checked += 1
        report.unreadable += 1
        report.unreadable_seen.add(kv.key)
        if len(report.unreadable_keys) < _LISTED:
            report.unreadable_keys.append(UnreadableKey(kv.key, _object_key(kv.value), str(detail)))


@inlineCallbacks
def rewrap_pass(
    store: IMetadataStore,
    key_manager: KeyManager,
    report: RewrapReport,
    *,
    page: int = 500,
    between_pages: Callable[[], Any] | None = None,
) -> Any:
    """Deferred[int]: one walk over :data:`KEY_HOLDERS`, adding to
    ``report``; the number of keys it rewrapped."""
    first = report.passes == 0
    before = report.rewrapped

    def visit(kv: KeyValue) -> Any:
        return _rewrap_row(store, key_manager, kv, report, first)

    for space in KEY_HOLDERS:
        yield scans.scan_all(store, space, prefix_end(space), page, visit, between_pages=between_pages)
    report.passes += 1
    return report.rewrapped - before


@inlineCallbacks
def rewrap_all(
    store: IMetadataStore,
    master_key: bytes,
    *,
    page: int = 500,
    max_passes: int = 5,
    between_pages: Callable[[], Any] | None = None,
) -> Any:
    """Deferred[RewrapReport]: wrap every stored SSE-S3 data key that the
    first line of ``master_key`` (the master key file's content) does not
    open again under it.  Walks until one walk rewraps nothing (``settled``)
    or ``max_passes`` walks were made.  A key no line opens is counted and
    listed, and the walk goes on."""
    key_manager = KeyManager(master_key)
    report = RewrapReport()
    while report.passes < max_passes:
        rewrapped = yield rewrap_pass(store, key_manager, report, page=page, between_pages=between_pages)
        if rewrapped == 0:
            report.settled = True
            break
    return report
