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
    ObjectRecord(key="summed", size=8, etag="e6-2", created_at=6, checksums={"crc32c": "yZRlqg==-2"},
                 part_sizes=[5, 3], part_checksums={"crc32c": ["AAAAAA==", "AAAAAB=="]}),  # fmt: skip
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
    assert (entry.is_latest, entry.delete_marker) == (True, False)
    assert (entry.checksums or {}) == full.checksums  # what the listing shows ChecksumAlgorithm/Type from


def test_delete_markers_are_not_listed() -> None:
    marker = ObjectRecord(key="gone", size=0, etag="", created_at=6, delete_marker=True, version_id="V" * 32)
    assert records.listing_entry("gone", records.encode_object(marker)) is None


def test_paged_records_round_trip() -> None:
    record = RECORDS[3]
    back = records.decode_object(records.encode_object(record))
    assert back.manifest == record.manifest and back.chunks == []


@pytest.mark.parametrize("data", [b"", b"\x00", b"abc\x00\x00def", bytes(range(256)) * 20, "ünï".encode()])
def test_inline_data_round_trips_byte_for_byte(data: bytes) -> None:
    """Inline data follows the JSON as it is: NULs, non-UTF-8 bytes and an
    empty body included (empty is not the same as no inline data)."""
    record = ObjectRecord(key="k", size=len(data), etag="e", created_at=1, inline=data, metadata={"a": "\x00"})
    value = records.encode_object(record)
    assert value.endswith(records.INLINE_SEPARATOR + data)
    back = records.decode_object(value)
    assert back.inline == data and back.metadata == {"a": "\x00"}
    assert records.decode_object(records.encode_object(RECORDS[1])).inline is None


def test_records_with_base64_inline_data_still_decode() -> None:
    """Records written before the data followed the JSON (a base64 field)."""
    value = b'{"v":1,"key":"old","size":5,"etag":"e","ts":1,"ct":"text/plain","inline":"aGVsbG8="}'
    back = records.decode_object(value)
    assert back.inline == b"hello" and back.key == "old" and back.content_type == "text/plain"
    assert records.listing_entry("old", value) is not None


def test_record_fields_stop_at_the_inline_data() -> None:
    value = records.encode_object(ObjectRecord(key="k", size=2, etag="e", created_at=1, inline=b"{}"))
    fields = records.record_fields(value)
    assert fields["key"] == "k" and "inline" not in fields
    assert records.record_fields(records.encode_object(RECORDS[1]))["chunks"] == [["c1", 0, 10, 7]]


def test_completed_multipart_records_round_trip_their_upload_and_part_list() -> None:
    """The upload id ("up") and part-list digest ("upl") of a completed
    multipart object survive encoding: a repeated CompleteMultipartUpload
    is recognised from them, after a restart too."""
    record = ObjectRecord(key="mp", size=10, etag="e-2", created_at=7, part_sizes=[6, 4],
                          upload_id="0123456789abUPLOADIDUPLOADID", completed_parts="DIGESTDIGESTDIGESTDIGE")  # fmt: skip
    value = records.encode_object(record)
    assert records.record_fields(value)["upl"] == "DIGESTDIGESTDIGESTDIGE"
    back = records.decode_object(value)
    assert (back.upload_id, back.completed_parts) == (record.upload_id, record.completed_parts)
    assert back == record


def test_records_without_the_upload_fields_decode_and_do_not_gain_them() -> None:
    """Objects not made by a multipart upload carry neither field, and
    records written before them (or before "upl") still decode."""
    for record in RECORDS:
        fields = records.record_fields(records.encode_object(record))
        assert "up" not in fields and "upl" not in fields
    old = b'{"v":1,"key":"old","size":5,"etag":"e-1","ts":1,"ct":"text/plain","parts":[5],"up":"U1"}'
    back = records.decode_object(old)
    assert (back.upload_id, back.completed_parts) == ("U1", None)
    older = records.decode_object(b'{"v":1,"key":"old","size":5,"etag":"e-1","ts":1,"parts":[5]}')
    assert (older.upload_id, older.completed_parts) == (None, None)
