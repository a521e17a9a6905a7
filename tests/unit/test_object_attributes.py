"""GetObjectAttributes below the wire: per-part checksums kept in the object
record, the parts page, the header parsing and the XML document."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
import pytest_twisted

from lightningstor import errors
from lightningstor.core import records
from lightningstor.core.multipart import PartRef, object_parts
from lightningstor.core.objects import PutAttrs
from lightningstor.core.types import ObjectRecord, Principal
from lightningstor.s3 import xmlio
from lightningstor.s3.handlers.attributes import parts_paging, requested_attributes
from tests.unit.test_multipart_core import MIN_PART, _part

ALICE = Principal("alice", "org-a", display_name="Alice")


@pytest.fixture
def core(make_core: Any) -> Any:
    c = make_core(fsync=False, chunk_size=4096, piece_size=1024, inline_threshold=1024)
    c.multipart.min_part_size = MIN_PART
    return c


# -- the record keeps each part's checksum ------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_completion_keeps_the_part_checksums_in_the_stored_record(core: Any) -> Any:
    mp = core.multipart
    bucket = yield core.buckets.create(ALICE, "pck")
    upload = yield mp.create(bucket, "k", PutAttrs(), initiator=ALICE, checksum_algorithm="SHA256")
    p1 = yield _part(mp, upload, 1, os.urandom(2000))
    p2 = yield _part(mp, upload, 2, os.urandom(300))
    yield mp.complete(bucket, "k", upload.upload_id, [PartRef(1, p1.etag), PartRef(2, p2.etag)])
    stored = yield core.objects.head(bucket, "k")
    assert stored.part_checksums == {"sha256": [p1.checksums["sha256"], p2.checksums["sha256"]]}
    assert stored.part_sizes == [2000, 300]


@pytest_twisted.inlineCallbacks
def test_an_upload_without_an_algorithm_keeps_no_part_checksums(core: Any) -> Any:
    mp = core.multipart
    bucket = yield core.buckets.create(ALICE, "nock")
    upload = yield mp.create(bucket, "k", PutAttrs(), initiator=ALICE)
    p1 = yield _part(mp, upload, 1, os.urandom(1500))
    yield mp.complete(bucket, "k", upload.upload_id, [PartRef(1, p1.etag)])
    stored = yield core.objects.head(bucket, "k")
    assert stored.part_checksums == {} and stored.part_sizes == [1500]
    assert "pck" not in records.record_fields(records.encode_object(stored))


def test_part_checksums_round_trip_and_old_records_still_read() -> None:
    record = ObjectRecord("k", 15, "e-2", 1, part_sizes=[10, 5], checksums={"crc32": "AAAAAA==-2"},
                          part_checksums={"crc32": ["AAAAAQ==", "AAAAAg=="]})  # fmt: skip
    value = records.encode_object(record)
    assert json.loads(value)["pck"] == {"crc32": ["AAAAAQ==", "AAAAAg=="]}
    assert records.decode_object(value) == record
    # Written before the field existed: no "pck", read as no part checksums.
    old = b'{"v":1,"key":"k","size":15,"etag":"e-2","ts":1,"ct":"binary/octet-stream","parts":[10,5]}'
    back = records.decode_object(old)
    assert back.part_checksums == {} and back.part_sizes == [10, 5]
    assert b"pck" not in records.encode_object(ObjectRecord("k", 1, "e", 1))


# -- the parts page -------------------------------------------------------------------------


def test_object_parts_pages_like_list_parts() -> None:
    record = ObjectRecord("k", 26, "e-4", 0, part_sizes=[8, 8, 8, 2],
                          part_checksums={"sha256": ["a", "b", "c", "d"]})  # fmt: skip
    page = object_parts(record, 0, 1000)
    assert page is not None
    assert (page.parts_count, page.is_truncated, page.next_marker) == (4, False, 4)
    assert [(p.part_number, p.size, p.checksums) for p in page.parts] == [
        (1, 8, {"sha256": "a"}), (2, 8, {"sha256": "b"}), (3, 8, {"sha256": "c"}), (4, 2, {"sha256": "d"})]
    page = object_parts(record, 2, 1)
    assert page is not None
    assert ([p.part_number for p in page.parts], page.is_truncated, page.next_marker) == ([3], True, 3)
    page = object_parts(record, 3, 10)
    assert page is not None and [p.part_number for p in page.parts] == [4] and not page.is_truncated
    page = object_parts(record, 4, 10)  # past the last part: empty, not truncated
    assert page is not None and (page.parts, page.is_truncated, page.next_marker) == ([], False, 4)
    page = object_parts(record, 0, 0)  # max-parts 0: empty, not truncated
    assert page is not None and (page.parts, page.is_truncated) == ([], False)
    assert object_parts(ObjectRecord("k", 3, "e", 0), 0, 1000) is None  # not multipart
    no_sums = object_parts(ObjectRecord("k", 3, "e-1", 0, part_sizes=[3]), 0, 1000)
    assert no_sums is not None and no_sums.parts[0].checksums == {}


# -- the request headers ----------------------------------------------------------------------


def test_requested_attributes() -> None:
    assert requested_attributes("ETag,Checksum, ObjectParts ,StorageClass,ObjectSize") == {
        "ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize"}
    assert requested_attributes("ObjectSize") == {"ObjectSize"}
    for bad in [None, "", "  "]:
        with pytest.raises(errors.InvalidArgument, match="missing or empty"):
            requested_attributes(bad)
    for bad in ["etag", "ETag,Size", "ETag,", "ContentType"]:
        with pytest.raises(errors.InvalidArgument, match="Invalid attribute name"):
            requested_attributes(bad)


def test_parts_paging_parses_like_list_parts() -> None:
    assert parts_paging({}) == (0, 1000)
    assert parts_paging({"x-amz-max-parts": "5000", "x-amz-part-number-marker": "3"}) == (3, 1000)
    for name in ("x-amz-max-parts", "x-amz-part-number-marker"):
        for bad in ["-1", "x", "+5", "99999999999"]:
            with pytest.raises(errors.InvalidArgument):
                parts_paging({name: bad})


# -- the document ------------------------------------------------------------------------------


def test_document_holds_what_was_asked_in_aws_order() -> None:
    parts = xmlio.AttributesParts(3, 1, 2, 1, True, [xmlio.AttributesPart(2, 8, {"sha256": "b", "crc32": "x"})])
    body = xmlio.object_attributes_xml(
        etag="abc-3", checksums={"sha256": "s-3"}, checksum_type="COMPOSITE", object_parts=parts,
        storage_class="STANDARD", object_size=26,
    ).decode()
    assert body.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<GetObjectAttributesResponse xmlns=')
    assert body.endswith(
        "<ETag>abc-3</ETag>"
        "<Checksum><ChecksumSHA256>s-3</ChecksumSHA256><ChecksumType>COMPOSITE</ChecksumType></Checksum>"
        "<ObjectParts><PartsCount>3</PartsCount><PartNumberMarker>1</PartNumberMarker>"
        "<NextPartNumberMarker>2</NextPartNumberMarker><MaxParts>1</MaxParts><IsTruncated>true</IsTruncated>"
        "<Part><ChecksumCRC32>x</ChecksumCRC32><ChecksumSHA256>b</ChecksumSHA256>"
        "<PartNumber>2</PartNumber><Size>8</Size></Part></ObjectParts>"
        "<StorageClass>STANDARD</StorageClass><ObjectSize>26</ObjectSize></GetObjectAttributesResponse>"
    )
    only_size = xmlio.object_attributes_xml(object_size=0).decode()
    assert only_size.endswith('"><ObjectSize>0</ObjectSize></GetObjectAttributesResponse>')
    assert "<ETag>abc</ETag>" in xmlio.object_attributes_xml(etag='"abc"').decode()
