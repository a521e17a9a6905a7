"""ListObjectVersions while the listed keys are overwritten.

The listing reads two key spaces (current and noncurrent versions) that one
transaction changes together: an overwrite demotes the current version into
the noncurrent space.  Read at different moments, the two once showed a
version twice (as latest and as not) or lost one that existed throughout.
A deletion of the current version promotes the newest noncurrent one the
other way.  Here a store wrapper overwrites keys and deletes current
versions between every two reads the listing makes, deterministically, and
the listing must still show every version that existed throughout, once,
with one latest version per key on a page.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred, inlineCallbacks
from zope.interface import implementer

from lightningstor.core import listing
from lightningstor.core.types import Principal
from lightningstor.interfaces.metadata import IMetadataStore, IScanItems, IScanTogether
from tests.unit.core_helpers import put_object

ALICE = Principal("alice", "acme", None, "AKALICE", "Alice", ("admin",))


@implementer(IMetadataStore, IScanItems, IScanTogether)
class _WritesBetweenReads:
    """The store, with ``write()`` run to completion before every scan but
    the first: the listing's reads always straddle a commit."""

    def __init__(self, inner: Any, write: Any) -> None:
        self._inner, self._write, self.reads = inner, write, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def _after_write(self, read: Any, *args: Any) -> Deferred[Any]:
        self.reads += 1
        if self.reads == 1:
            return read(*args)
        d: Deferred[Any] = self._write()
        return d.addCallback(lambda _: read(*args))

    def scan(self, *args: Any) -> Deferred[Any]:
        return self._after_write(self._inner.scan, *args)

    def scan_items(self, *args: Any) -> Deferred[Any]:
        return self._after_write(self._inner.scan_items, *args)

    def scan_items_together(self, *args: Any) -> Deferred[Any]:
        return self._after_write(self._inner.scan_items_together, *args)


@pytest.mark.parametrize("delimiter", [None, "|"])
@pytest_twisted.inlineCallbacks
def test_versions_listed_while_overwritten_are_listed_once(make_core: Any, delimiter: str | None) -> Any:
    core = make_core()
    bucket = yield core.buckets.create(ALICE, "racing")
    bucket = yield core.set_bucket_versioning(bucket, "Enabled")
    names = [f"k{i:03d}" for i in range(120)]
    for i, name in enumerate(names):
        for _ in range(1 + (i % 3)):
            yield put_object(core, bucket, name, name.encode())
    before = yield listing.list_object_versions(core.store, bucket.bucket_id)
    existed = {(e.key, e.version_id) for e in before.entries}
    assert len(existed) == sum(1 + (i % 3) for i in range(len(names))) and not before.is_truncated
    overwritten = iter(names[5::7] * 4)
    promoted = iter([n for i, n in enumerate(names) if i % 3 == 2][::2])  # keys with three versions
    deleted: set[tuple[str, str | None]] = set()

    @inlineCallbacks
    def change() -> Any:
        # Keys ahead of the listing and keys in its buffers alike: an
        # overwrite demotes the current version; deleting the current
        # version for good promotes the newest noncurrent one.
        for _ in range(2):
            name = next(overwritten, names[0])
            yield put_object(core, bucket, name, b"new " + name.encode())
        name = next(promoted, None)
        if name is not None:
            current = yield core.objects.head(bucket, name)
            yield core.objects.delete(bucket, name, current.version_id)
            deleted.add((name, current.version_id))

    racing = _WritesBetweenReads(core.store, change)
    seen: list[Any] = []
    marker: tuple[str | None, str | None] = (None, None)
    while True:
        page = yield listing.list_object_versions(
            racing, bucket.bucket_id, delimiter=delimiter, key_marker=marker[0], version_id_marker=marker[1],
            max_keys=50,
        )  # fmt: skip
        latest = Counter(e.key for e in page.entries if e.is_latest)
        assert all(n == 1 for n in latest.values()), latest  # one latest version per key on a page
        seen += page.entries
        if not page.is_truncated:
            break
        marker = (page.next_marker, page.next_version_id_marker)
    assert racing.reads > 3  # the writes really came between the reads
    listed = Counter((e.key, e.version_id) for e in seen)
    assert [v for v, n in listed.items() if n > 1] == []
    assert deleted and existed - deleted - set(listed) == set()
