"""Object listing over the ordered key-value store (SPEC §6.2).

Keys are scanned in UTF-8 byte order.  With a delimiter, each common prefix
is reported once and the scan *seeks* past it (``prefix_end``), so a
"directory" with a million keys costs one small read, not a million.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import inlineCallbacks

from lightningstor.core import keys, records
from lightningstor.core.types import ListEntry, ListResult
from lightningstor.interfaces.metadata import IMetadataStore, prefix_end

_MAX_BATCH = 1000
_MIN_DELIMITED_BATCH = 32


def _common_prefix(key: str, prefix: str, delimiter: str | None) -> str | None:
    if not delimiter:
        return None
    i = key.find(delimiter, len(prefix))
    if i < 0:
        return None
    return key[: i + len(delimiter)]


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
    one).
    """
    base = keys.objects_prefix(bucket_id)
    end = prefix_end(base + prefix.encode("utf-8"))
    pos = base + prefix.encode("utf-8")
    if after is not None and after.encode("utf-8") >= prefix.encode("utf-8"):
        marker_cp = _common_prefix(after, prefix, delimiter)
        if marker_cp is not None and marker_cp == after:
            pos = prefix_end(base + after.encode("utf-8"))
        else:
            pos = base + after.encode("utf-8") + b"\x00"
    entries: list[ListEntry] = []
    prefixes: list[str] = []
    last: str | None = None
    batch = _MIN_DELIMITED_BATCH if delimiter else _MAX_BATCH
    while len(entries) + len(prefixes) < max_keys:
        want = min(max_keys - len(entries) - len(prefixes) + 1, batch)
        rows = yield store.scan(pos, end, want)
        if not rows:
            return ListResult(entries, prefixes, False, None)
        seeked = False
        for kv in rows:
            key = kv.key[len(base):].decode("utf-8")
            cp = _common_prefix(key, prefix, delimiter)
            if len(entries) + len(prefixes) >= max_keys:
                return ListResult(entries, prefixes, True, last)
            if cp is not None:
                prefixes.append(cp)
                last = cp
                pos = prefix_end(base + cp.encode("utf-8"))
                seeked = True
                break
            rec = records.decode_object(kv.value)
            entries.append(
                ListEntry(
                    key=key,
                    size=rec.size,
                    etag=rec.etag,
                    last_modified=rec.created_at,
                    storage_class=rec.storage_class,
                    owner=rec.owner,
                )
            )
            last = key
            pos = kv.key + b"\x00"
        if seeked:
            batch = _MIN_DELIMITED_BATCH
        else:
            if len(rows) < want:
                return ListResult(entries, prefixes, False, None)
            batch = min(batch * 2, _MAX_BATCH)
    more = yield store.scan(pos, end, 1)
    return ListResult(entries, prefixes, bool(more), last if more else None)
