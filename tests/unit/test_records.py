"""Record encoding (core/records.py): the listing's partial decode must agree
with the full one for every kind of record a bucket holds."""

from __future__ import annotations

import pytest

from lightningstor.core import records
from lightningstor.core.types import ChunkRef, Manifest, ObjectRecord

RECORDS = [
    ObjectRecord(key="inline", size=3, etag="e1", created_at=1, inline=b"abc"),
    ObjectRecord(key="chunked", size=10, etag="e2-2", created_at=2, chunks=[ChunkRef("c1", 0, 10, 7)],
                 owner="alice", storage_class="REDUCED_REDUNDANCY"),  # fmt: skip
    ObjectRecord(key="versioned", size=0, etag="e3", created_at=3, version_id="V" * 32, sequence=4,
                 null_sequence=2, metadata={"m": "1"}, tags={"t": "v"}),  # fmt: skip
    ObjectRecord(key="paged", size=99, etag="e4", created_at=4, manifest=Manifest("m1", [0, 50], 4)),
    ObjectRecord(key="ünï", size=1, etag="e5", created_at=5, inline=b"x", content_type="text/plain"),
]


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: r.key)
def test_listing_entry_agrees_with_the_full_decode(record: ObjectRecord) -> None:
    value = records.encode_object(record)
    full = records.decode_object(value)
    entry = records.listing_entry(record.key, value)
    assert entry is not None
    assert (entry.key, entry.size, entry.etag, entry.last_modified, entry.storage_class, entry.owner,
            entry.version_id) == (full.key, full.size, full.etag, full.created_at, full.storage_class,
                                  full.owner, full.version_id)  # fmt: skip


def test_delete_markers_are_not_listed() -> None:
    marker = ObjectRecord(key="gone", size=0, etag="", created_at=6, delete_marker=True, version_id="V" * 32)
    assert records.listing_entry("gone", records.encode_object(marker)) is None


def test_paged_records_round_trip() -> None:
    record = RECORDS[3]
    back = records.decode_object(records.encode_object(record))
    assert back.manifest == record.manifest and back.chunks == []
