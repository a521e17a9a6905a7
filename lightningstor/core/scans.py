"""Walking a key range of the metadata store a page at a time.

Background passes (scrub, the orphan collector, the metrics gauges) and
lookups over all versions of a key read ranges that may not fit in memory:
they go through :func:`scan_all` rather than each keeping its own loop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet.defer import inlineCallbacks

from lightningstor.core import keys
from lightningstor.interfaces.metadata import IMetadataStore, KeyValue, prefix_end


@inlineCallbacks
def scan_all(
    store: IMetadataStore,
    start: bytes,
    end: bytes,
    page: int,
    visit: Callable[[KeyValue], Any],
    *,
    between_pages: Callable[[], Any] | None = None,
) -> Any:
    """Deferred[bool]: call ``visit(kv)`` for every row in ``[start, end)``,
    ``page`` rows per read; ``visit`` may return a Deferred.

    Stops at the first row for which ``visit`` returns (or fires with)
    ``True`` and answers True; False once the range is exhausted.  Rows
    ``visit`` deletes do not disturb the walk (it resumes after the last
    key read).  ``between_pages`` (a Deferred, or None) runs after each
    full page: a pause that lets the reactor serve requests between reads.
    """
    while True:
        rows = yield store.scan(start, end, page)
        for kv in rows:
            stop = yield visit(kv)
            if stop is True:
                return True
        if len(rows) < page:
            return False
        start = rows[-1].key + b"\0"
        if between_pages is not None:
            yield between_pages()


def scan_prefix(
    store: IMetadataStore,
    prefix: bytes,
    page: int,
    visit: Callable[[KeyValue], Any],
    *,
    between_pages: Callable[[], Any] | None = None,
) -> Any:
    """:func:`scan_all` over every key that starts with ``prefix``."""
    return scan_all(store, prefix, prefix_end(prefix), page, visit, between_pages=between_pages)


# Attempts at a stable answer in any_version before giving the safe one.
_STABLE_ATTEMPTS = 5
_VERSIONS_PAGE = 200


@inlineCallbacks
def any_version(
    store: IMetadataStore,
    bucket_id: str,
    key: str,
    matches: Callable[[bytes], Any],
    also: Sequence[bytes] = (),
) -> Any:
    """Deferred[bool]: whether the current record of ``key``, one of its
    noncurrent versions, or the record at one of the ``also`` keys satisfies
    ``matches(value)`` (a bool, or a Deferred of one).

    The collector asks this before deleting what no record needs, so a
    record must not slip through while it moves between key spaces (a
    version promoted, demoted, a multipart upload completed).  Every such
    move rewrites the object key, so it is read before and after the other
    reads, and the question is asked again if its revision moved.  Without a
    stable answer after a few tries, the answer is True: keep.
    """
    okey = keys.object_key(bucket_id, key)
    for _attempt in range(_STABLE_ATTEMPTS):
        first = yield store.get(okey)
        if first is not None and (yield matches(first.value)):
            return True
        for other in also:
            kv = yield store.get(other)
            if kv is not None and (yield matches(kv.value)):
                return True

        def visit(kv: KeyValue) -> Any:
            return matches(kv.value)

        found = yield scan_prefix(store, keys.key_versions_prefix(bucket_id, key), _VERSIONS_PAGE, visit)
        if found:
            return True
        again = yield store.get(okey)
        if (again.mod_revision if again else 0) == (first.mod_revision if first else 0):
            return False
    return True
