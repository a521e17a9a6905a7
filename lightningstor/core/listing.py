"""Object listing over the ordered key-value store (SPEC §6.2).

Keys are scanned in UTF-8 byte order.  With a delimiter, each common prefix
is reported once and the scan *seeks* past it (``prefix_end``), so a
"directory" with a million keys costs one small read, not a million.

ListObjects reads only the current versions (``objects/``): old versions
live in their own key space and never slow it down.  A key whose current
version is a delete marker is skipped, and so is a common prefix holding
nothing but delete markers (S3 shows neither).  ListObjectVersions merges
the two key spaces: per key, the current version, then the noncurrent ones
newest first.

A listing asked for no entries (``max_keys`` 0: S3's max-keys=0, a gRPC
page size set to 0) is an empty page that is *not* truncated, for every
listing here and for the multipart ones (:func:`asks_nothing`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import inlineCallbacks

from lightningstor import errors
from lightningstor.core import keys, records
from lightningstor.core.types import ListEntry, ListResult
from lightningstor.core.versions import parse_version_id, wire_version_id
from lightningstor.interfaces.metadata import (
    IMetadataStore,
    ItemScan,
    TogetherScan,
    item_scanner,
    prefix_end,
    together_scanner,
)

_Row = tuple[bytes, bytes]  # (key, value): a scanned row (see item_scanner)

_MAX_BATCH = 1000
_MIN_DELIMITED_BATCH = 32


def asks_nothing(limit: int) -> bool:
    """True when a listing is asked for no entries (a limit of 0 or less).

    The page is then empty and not truncated, with nothing to continue
    from, and costs no read.  AWS answers max-keys=0 so (ceph/s3-tests
    test_bucket_list_maxkeys_zero, test_bucket_listv2_maxkeys_zero), and
    MinIO answers max-uploads=0 and max-parts=0 the same way.  A scan would
    instead stop at the first row and call the page truncated with no
    marker to continue from, which a client that follows IsTruncated cannot
    page through.  This is the one place the rule lives: the object
    listings below and :mod:`lightningstor.core.multipart` ask it.
    """
    return limit <= 0


def _common_prefix(key: str, prefix: str, delimiter: str | None) -> str | None:
    if not delimiter:
        return None
    i = key.find(delimiter, len(prefix))
    if i < 0:
        return None
    return key[: i + len(delimiter)]


class _Cursor:
    """A forward scan of ``[start, end)`` in growing batches that can seek.

    Batches start small when the caller expects to seek often (delimiter
    listings) and double while rows are consumed one by one, so reading a
    large flat range costs few round trips and a seek wastes little.
    ``scan`` is the store's :func:`item_scanner`, looked up once per listing.
    """

    def __init__(self, scan: ItemScan, start: bytes, end: bytes, batch: int) -> None:
        self._scan = scan
        self._next = start  # where the next scan starts
        self._end = end
        self._first_batch = batch
        self._batch = batch
        self._rows: list[_Row] = []
        self._index = 0
        self._exhausted = False

    def current(self) -> _Row | None:
        """The next buffered row, or None if the buffer is used up.

        Synchronous: a listing walks a buffered batch without a Deferred (and
        an ``inlineCallbacks`` generator) per row, which measured as a fifth
        of a full walk's CPU (docs/performance.md, "Listing at 10k/100k/1M
        keys").  Only when this returns None is :meth:`fetch` needed.
        """
        if self._index < len(self._rows):
            return self._rows[self._index]
        return None

    @property
    def done(self) -> bool:
        """True once the buffer is used up and nothing is left to scan."""
        return self._index >= len(self._rows) and (self._exhausted or self._next >= self._end)

    @inlineCallbacks
    def fetch(self) -> Any:
        """Deferred[None]: read the next batch into the (used-up) buffer."""
        rows = yield self._scan(self._next, self._end, self._batch)
        self._rows, self._index = rows, 0
        if len(rows) < self._batch:
            self._exhausted = True
        if rows:
            self._next = rows[-1][0] + b"\x00"
        self._batch = min(self._batch * 2, _MAX_BATCH)

    @inlineCallbacks
    def peek(self) -> Any:
        """Deferred[_Row | None]: the next row, without consuming it."""
        kv = self.current()
        while kv is None and not self.done:
            yield self.fetch()
            kv = self.current()
        return kv

    def advance(self) -> None:
        self._index += 1

    def pending(self) -> tuple[bytes, bytes, int]:
        """The range :func:`_refill_together` reads next: from the first row
        not consumed yet (buffered rows are read again), one batch."""
        start = self._rows[self._index][0] if self._index < len(self._rows) else self._next
        return start, self._end, self._batch

    def load(self, start: bytes, rows: list[_Row]) -> None:
        """Take ``rows``, read from ``start`` (see :meth:`pending`)."""
        self._rows, self._index = rows, 0
        self._exhausted = len(rows) < self._batch
        self._next = rows[-1][0] + b"\x00" if rows else start
        self._batch = min(self._batch * 2, _MAX_BATCH)

    def seek(self, position: bytes) -> None:
        """Skip every row below ``position`` (forward only)."""
        while self._index < len(self._rows) and self._rows[self._index][0] < position:
            self._index += 1
        if self._index >= len(self._rows) and position > self._next:
            self._next = position
        self._batch = self._first_batch


@inlineCallbacks
def _refill_together(scan: TogetherScan, *cursors: _Cursor) -> Any:
    """Deferred[None]: every cursor's next batch, read from one snapshot of
    the store, each again from its first unconsumed row.

    ListObjectVersions reads current and noncurrent versions with two
    cursors, and one transaction moves a version from one key space to the
    other (an overwrite demotes the current version; deleting it promotes
    the newest noncurrent one).  Refilled at different moments, the two
    would show such a version twice (latest and not) or not at all; read
    together, every key both buffers cover is listed as of one moment.
    """
    ranges = [cursor.pending() for cursor in cursors]
    batches = yield scan(ranges)
    for cursor, (start, _end, _batch), rows in zip(cursors, ranges, batches, strict=True):
        cursor.load(start, rows)


def _entry(key: str, record: Any, *, is_latest: bool = True) -> ListEntry:
    return ListEntry(
        key=key,
        size=record.size,
        etag=record.etag,
        last_modified=record.created_at,
        storage_class=record.storage_class,
        owner=record.owner,
        version_id=record.version_id,
        is_latest=is_latest,
        delete_marker=record.delete_marker,
        checksums=record.checksums,
    )


@inlineCallbacks
def list_objects(
    store: IMetadataStore,
    bucket_id: str,
    *,
    prefix: str = "",
    delimiter: str | None = None,
    after: str | None = None,
    max_keys: int = 1000,
) -> Any:
    """Deferred[ListResult]: keys under ``prefix`` strictly after ``after``.

    ``after`` is the v1 marker / v2 start-after or continuation key; when it is
    itself a common prefix the whole prefix is skipped (v1 NextMarker may be
    one).  ``max_keys`` 0 is an empty page, not truncated (:func:`asks_nothing`).
    """
    if asks_nothing(max_keys):
        return ListResult([], [], False, None)
    base = keys.objects_prefix(bucket_id)
    end = prefix_end(base + prefix.encode("utf-8"))
    pos = base + prefix.encode("utf-8")
    if after is not None and after.encode("utf-8") >= prefix.encode("utf-8"):
        marker_cp = _common_prefix(after, prefix, delimiter)
        if marker_cp is not None and marker_cp == after:
            pos = prefix_end(base + after.encode("utf-8"))
        else:
            pos = base + after.encode("utf-8") + b"\x00"
    # One row more than a page, so a full page learns it is truncated
    # without a second scan (which would read another 1,000 rows).
    batch = _MIN_DELIMITED_BATCH if delimiter else min(max_keys + 1, _MAX_BATCH + 1)
    scan = item_scanner(store)
    if not delimiter:
        result = yield _list_flat(scan, pos, end, batch, len(base), max_keys)
        return result
    cursor = _Cursor(scan, pos, end, batch)
    entries: list[ListEntry] = []
    prefixes: list[str] = []
    last: str | None = None
    skip = len(base)
    while True:
        kv = cursor.current()
        if kv is None:
            if cursor.done:
                return ListResult(entries, prefixes, False, None)
            yield cursor.fetch()
            continue
        key = kv[0][skip:].decode("utf-8")
        entry = records.listing_entry(key, kv[1])
        if entry is None:  # a delete marker: S3 does not show the key
            cursor.advance()
            continue
        if len(entries) + len(prefixes) >= max_keys:
            return ListResult(entries, prefixes, True, last)
        cp = _common_prefix(key, prefix, delimiter) if delimiter else None
        if cp is not None:
            prefixes.append(cp)
            last = cp
            cursor.seek(prefix_end(base + cp.encode("utf-8")))
        else:
            entries.append(entry)
            last = key
            cursor.advance()


@inlineCallbacks
def _list_flat(scan: ItemScan, start: bytes, end: bytes, batch: int, skip: int, max_keys: int) -> Any:
    """Deferred[ListResult]: :func:`list_objects` without a delimiter.

    Every row read is listed (or skipped as a delete marker), so there is no
    seeking: each batch is walked in one tight loop, not row by row through
    a :class:`_Cursor` (same scans, same batch sizes, same result).
    """
    entries: list[ListEntry] = []
    append = entries.append
    entry_of = records.listing_entry
    while start < end:
        rows = yield scan(start, end, batch)
        for key, value in rows:
            entry = entry_of(key[skip:].decode("utf-8"), value)
            if entry is None:  # a delete marker: S3 does not show the key
                continue
            if len(entries) >= max_keys:
                return ListResult(entries, [], True, entries[-1].key if entries else None)
            append(entry)
        if len(rows) < batch:
            break
        start = rows[-1][0] + b"\x00"
        batch = min(batch * 2, _MAX_BATCH)
    return ListResult(entries, [], False, None)


@dataclass
class VersionListResult(ListResult):
    """A ListObjectVersions page; ``next_marker`` is the NextKeyMarker."""

    next_version_id_marker: str | None = None


@inlineCallbacks
def _marker_sequence(store: IMetadataStore, bucket_id: str, key: str, version_id: str) -> Any:
    """Deferred[int | None]: where a version-id-marker resumes in ``key``.

    The versions of ``key`` still to list are those with a sequence below
    the one returned (None: all of them).  The marker need not exist any
    more: the version a client paged up to may have been deleted since, and
    if it was the current one an older version has been promoted in its
    place.  The listing then resumes where the marker would sort (versions
    are newest first), never after the whole key, which would silently drop
    the key's remaining versions from a paging client's view.

    A real id carries its sequence.  ``null`` is looked up; once the null
    version is gone its place is unknown, so the key is listed again from
    its newest version: the page may repeat versions, but skips none.
    """
    ref = parse_version_id(version_id)
    if not ref.is_null:
        return ref.sequence
    kv = yield store.get(keys.object_key(bucket_id, key))
    if kv is None:
        return None
    current = records.decode_object(kv.value)
    return current.sequence if current.version_id is None else current.null_sequence


def check_version_id_marker(key_marker: str | None, version_id_marker: str | None) -> None:
    """ListObjectVersions paging input: a version-id marker only with a key
    marker, and only a well-formed id (InvalidArgument otherwise, as AWS)."""
    if not version_id_marker:
        return
    if not key_marker:
        raise errors.InvalidArgument(
            "A version-id marker cannot be specified without a key marker.",
            ArgumentName="version-id-marker", ArgumentValue=version_id_marker,
        )  # fmt: skip
    try:
        parse_version_id(version_id_marker)
    except errors.S3Error:
        raise errors.InvalidArgument(
            "Invalid version id specified", ArgumentName="version-id-marker", ArgumentValue=version_id_marker
        ) from None


@inlineCallbacks
def list_object_versions(
    store: IMetadataStore,
    bucket_id: str,
    *,
    prefix: str = "",
    delimiter: str | None = None,
    key_marker: str | None = None,
    version_id_marker: str | None = None,
    max_keys: int = 1000,
) -> Any:
    """Deferred[VersionListResult]: every version and delete marker under ``prefix``.

    Order is S3's: keys in UTF-8 byte order, each key's versions newest
    first (the current one, marked latest, then the noncurrent ones).
    Paging resumes after ``key_marker`` (all of its versions) or, with
    ``version_id_marker``, after that version of ``key_marker`` (or where it
    would sort if it has been deleted since: :func:`_marker_sequence`).
    ``max_keys`` 0 is an empty page, not truncated (:func:`asks_nothing`).
    """
    if asks_nothing(max_keys):
        return VersionListResult([], [], False, None)
    obase = keys.objects_prefix(bucket_id)
    vbase = keys.versions_prefix(bucket_id)
    pb = prefix.encode("utf-8")
    ostart, vstart = obase + pb, vbase + pb
    resume_key: bytes | None = None  # the key_marker whose current version may be newer than the marker
    sequence: int | None = None
    if key_marker and key_marker.encode("utf-8") >= pb:
        kb = key_marker.encode("utf-8")
        marker_cp = _common_prefix(key_marker, prefix, delimiter)
        if version_id_marker is None and marker_cp is not None and marker_cp == key_marker:
            ostart, vstart = prefix_end(obase + kb), prefix_end(vbase + kb)
        else:
            ostart = obase + kb + b"\x00"
            vstart = prefix_end(keys.key_versions_prefix(bucket_id, key_marker))
            if version_id_marker is not None:
                # The key's current version may be older than the marker
                # (the marker's version was deleted and an older one
                # promoted): scan it too, and let the loop decide.
                ostart = obase + kb
                resume_key = kb
                sequence = yield _marker_sequence(store, bucket_id, key_marker, version_id_marker)
                if sequence is None:
                    vstart = keys.key_versions_prefix(bucket_id, key_marker)
                else:
                    vstart = keys.version_key(bucket_id, key_marker, sequence) + b"\x00"
    batch = _MIN_DELIMITED_BATCH if delimiter else min(max_keys + 1, _MAX_BATCH)
    scan = item_scanner(store)
    current = _Cursor(scan, ostart, prefix_end(obase + pb), batch)
    noncurrent = _Cursor(scan, vstart, prefix_end(vbase + pb), batch)
    together = together_scanner(store)
    entries: list[ListEntry] = []
    prefixes: list[str] = []
    last: tuple[str, str | None] | None = None
    # The key whose current version was listed last, and that version's
    # sequence: a key whose versions straddle two refills may have been
    # overwritten in between, and its demoted version (as new as the one
    # listed as current, or newer) must not be listed again.
    listed_current: tuple[bytes, int] | None = None
    truncated = False
    while True:
        okv, vkv = current.current(), noncurrent.current()
        if (okv is None and not current.done) or (vkv is None and not noncurrent.done):
            yield _refill_together(together, current, noncurrent)
            continue
        if okv is None and vkv is None:
            break
        oname = okv[0][len(obase):] if okv is not None else None
        vname = vkv[0][len(vbase):].partition(b"\x00")[0] if vkv is not None else None
        # For one key the current version is the newest, so it comes first.
        take_current = vname is None or (oname is not None and oname <= vname)
        name = oname if take_current else vname
        assert name is not None
        if take_current and name == resume_key:
            resume_key = None
            assert okv is not None
            if sequence is not None and records.decode_object(okv[1]).sequence >= sequence:
                current.advance()  # as new as the marker: listed on an earlier page
                continue
        record = None
        if not take_current and listed_current is not None and listed_current[0] == name:
            assert vkv is not None
            record = records.decode_object(vkv[1])
            if record.sequence >= listed_current[1]:
                noncurrent.advance()  # demoted after its key's current version was read
                continue
        key = name.decode("utf-8")
        if len(entries) + len(prefixes) >= max_keys:
            truncated = True
            break
        cp = _common_prefix(key, prefix, delimiter)
        if cp is not None:
            prefixes.append(cp)
            last = (cp, None)
            cpb = cp.encode("utf-8")
            current.seek(prefix_end(obase + cpb))
            noncurrent.seek(prefix_end(vbase + cpb))
            continue
        kv = okv if take_current else vkv
        assert kv is not None
        if record is None:
            record = records.decode_object(kv[1])
        if take_current:
            listed_current = (name, record.sequence)
        entries.append(_entry(key, record, is_latest=take_current))
        last = (key, wire_version_id(record.version_id))
        (current if take_current else noncurrent).advance()
    if not truncated or last is None:
        return VersionListResult(entries, prefixes, truncated, None)
    return VersionListResult(entries, prefixes, True, last[0], last[1])
