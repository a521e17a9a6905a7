"""Multipart uploads in the core, on real plugins (SQLite store, local backend) in-process.

Runs on the real reactor through pytest-twisted (``--reactor=default`` from
setup.cfg); the expiry service is driven by a ``twisted.internet.task.Clock``.
"""

from __future__ import annotations

import base64
import hashlib
import os
import time
import zlib
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList, inlineCallbacks
from twisted.internet.task import Clock

from lightningstor import errors
from lightningstor.checksums import compute
from lightningstor.core import chunkindex, keys, records
from lightningstor.core import multipart as multipart_module
from lightningstor.core.collector import collect_orphans
from lightningstor.core.expiry import UploadExpiryService
from lightningstor.core.multipart import (
    MultipartManager,
    PartRef,
    composite_checksum,
    full_object_crc,
    multipart_etag,
    parse_part_number,
    part_list_digest,
    part_range,
    resolve_checksum,
)
from lightningstor.core.objects import ObjectManager, PutAttrs
from lightningstor.core.service import Core
from lightningstor.core.types import ObjectRecord, Principal
from lightningstor.interfaces.metadata import Put
from tests.unit.core_helpers import drain, put_object

ALICE = Principal("alice", "org-a", display_name="Alice")
MIN_PART = 1000  # the manager's minimum part size in these tests (AWS: 5 MiB)


@pytest.fixture
def core(make_core):
    c = make_core(fsync=False, chunk_size=4096, piece_size=1024, inline_threshold=1024)
    c.multipart.min_part_size = MIN_PART
    return c


@inlineCallbacks
def _part(mp: MultipartManager, upload: Any, number: int, data: bytes) -> Any:
    writer = mp.new_part_writer(upload)
    writer.write(data)
    result = yield writer.finish()
    part = yield mp.commit_part(upload, number, result, {})
    return part


@inlineCallbacks
def _read(core: Core, record: ObjectRecord, offset: int = 0, length: int | None = None) -> Any:
    reader = core.chunks.read(record.chunks, record.inline, offset, record.size if length is None else length)
    data = yield drain(reader)
    return data


@inlineCallbacks
def _chunk_files(core: Core) -> Any:
    infos = yield core.backend.list_chunks()
    return {i.chunk_id for i in infos}


def _refs(*parts: Any) -> list[PartRef]:
    return [PartRef(p.part_number, p.etag) for p in parts]


# -- pure rules -----------------------------------------------------------------


def test_multipart_etag_is_md5_of_binary_part_md5s():
    """The ETag is hex(md5(md5(p1) || md5(p2) ...)) with a "-N" part count, as S3 computes it."""
    a, b = b"a" * 10, b"b" * 7
    want = hashlib.md5(hashlib.md5(a).digest() + hashlib.md5(b).digest()).hexdigest() + "-2"
    assert multipart_etag([hashlib.md5(a).hexdigest(), hashlib.md5(b).hexdigest()]) == want


def test_composite_checksum_is_checksum_of_raw_part_checksums():
    """COMPOSITE: the algorithm over the concatenated raw part checksums, base64, "-N"."""
    parts = [b"hello", b"world!"]
    raw = b"".join(zlib.crc32(p).to_bytes(4, "big") for p in parts)
    want = base64.b64encode(zlib.crc32(raw).to_bytes(4, "big")).decode() + "-2"
    assert composite_checksum("crc32", [compute("crc32", p) for p in parts]) == want
    raw256 = b"".join(hashlib.sha256(p).digest() for p in parts)
    assert composite_checksum("sha256", [compute("sha256", p) for p in parts]) == (
        base64.b64encode(hashlib.sha256(raw256).digest()).decode() + "-2")


@pytest.mark.parametrize("algorithm", ["crc32", "crc32c", "crc64nvme"])
def test_full_object_crc_equals_crc_of_whole_object(algorithm):
    """FULL_OBJECT: combining part CRCs gives exactly the CRC of the concatenated bytes."""
    parts = [os.urandom(5000), os.urandom(1), os.urandom(333)]
    combined = full_object_crc(algorithm, [(compute(algorithm, p), len(p)) for p in parts])
    assert combined == compute(algorithm, b"".join(parts))


def test_resolve_checksum_defaults_and_refusals():
    """Types default as in AWS (CRC64NVME full-object, the rest composite); impossible pairs are refused."""
    assert resolve_checksum(None, None) == (None, None)
    assert resolve_checksum("CRC32", None) == ("crc32", "COMPOSITE")
    assert resolve_checksum("crc64nvme", None) == ("crc64nvme", "FULL_OBJECT")
    assert resolve_checksum("CRC32C", "full_object") == ("crc32c", "FULL_OBJECT")
    for algorithm, kind in [("SHA256", "FULL_OBJECT"), ("CRC64NVME", "COMPOSITE"), ("MD5", None),
                            (None, "COMPOSITE"), ("CRC32", "BOGUS")]:
        with pytest.raises(errors.InvalidRequest):
            resolve_checksum(algorithm, kind)


def test_part_numbers_and_part_ranges():
    """partNumber is 1-10000 in ASCII digits; part_range maps a part to its inclusive byte span."""
    assert parse_part_number("10000") == 10000
    for bad in ["0", "10001", "-1", "x", "", "١", None]:
        with pytest.raises(errors.InvalidArgument):
            parse_part_number(bad)
    record = ObjectRecord("k", 25, "e-3", 0, part_sizes=[10, 10, 5])
    assert [part_range(record, n) for n in (1, 2, 3)] == [(0, 9), (10, 19), (20, 24)]
    with pytest.raises(errors.InvalidPartNumber):
        part_range(record, 4)
    single = ObjectRecord("k", 7, "e", 0)
    assert part_range(single, 1) == (0, 6)
    with pytest.raises(errors.InvalidPartNumber):
        part_range(single, 2)


# -- uploads in the store ---------------------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_complete_concatenates_parts_without_copying(core):
    """Completion commits the parts' own chunks (offsets recomputed), indexes them to the object,
    and removes the upload and part records in the same step."""
    mp = core.multipart
    bucket = yield core.buckets.create(ALICE, "mpu")
    attrs = PutAttrs(content_type="text/plain", metadata={"m": "1"}, tags={"t": "v"}, owner="alice")
    upload = yield mp.create(bucket, "obj", attrs, initiator=ALICE)
    data = [os.urandom(5000), os.urandom(9000), os.urandom(100)]
    parts = []
    for i, d in enumerate(data, 1):
        parts.append((yield _part(mp, upload, i, d)))
    part_chunks = {c.chunk_id for p in parts for c in p.chunks}
    done = yield mp.complete(bucket, "obj", upload.upload_id, _refs(*parts))
    record = done.record
    assert record.etag == multipart_etag([hashlib.md5(d).hexdigest() for d in data])
    assert record.size == 14100 and record.part_sizes == [5000, 9000, 100]
    assert {c.chunk_id for c in record.chunks} == part_chunks
    assert [c.offset for c in record.chunks] == [sum(c.size for c in record.chunks[:i])
                                                 for i in range(len(record.chunks))]
    assert (record.content_type, record.metadata, record.tags) == ("text/plain", {"m": "1"}, {"t": "v"})
    stored = yield core.objects.head(bucket, "obj")
    assert (yield _read(core, stored)) == b"".join(data)
    assert (yield _read(core, stored, 4990, 20)) == b"".join(data)[4990:5010]
    okey = keys.object_key(bucket.bucket_id, "obj")
    for chunk_id in part_chunks:
        # The parts' entries were not rewritten: their hints lead to the object.
        kv = yield core.store.get(keys.chunk_key(chunk_id))
        assert chunkindex.names_holder(kv.value, okey)
        assert (yield chunkindex.still_referenced(core.store, chunk_id, kv.value))
    left = yield core.store.scan(keys.PARTS, keys.PARTS + b"\xff")
    assert left == []
    with pytest.raises(errors.NoSuchUpload):
        yield mp.get(bucket, "obj", upload.upload_id)


@pytest_twisted.inlineCallbacks
def test_part_chunks_are_indexed_and_survive_the_collector(core):
    """A stored part's chunks are indexed to its part record, so orphan collection keeps them."""
    mp = core.multipart
    bucket = yield core.buckets.create(ALICE, "idx")
    upload = yield mp.create(bucket, "k", PutAttrs(), initiator=ALICE)
    part = yield _part(mp, upload, 7, os.urandom(10000))
    for c in part.chunks:
        kv = yield core.store.get(keys.chunk_key(c.chunk_id))
        assert chunkindex.names_holder(kv.value, keys.part_key(upload.upload_id, 7))
    removed = yield collect_orphans(core.store, core.backend, time.time() + 10, 0)
    assert removed == 0
    assert {c.chunk_id for c in part.chunks} <= (yield _chunk_files(core))


@pytest_twisted.inlineCallbacks
def test_reuploading_a_part_replaces_it_and_frees_the_old_chunks(core):
    """A second upload of a part number wins; the first one's chunks and index entries go."""
    mp = core.multipart
    bucket = yield core.buckets.create(ALICE, "reup")
    upload = yield mp.create(bucket, "k", PutAttrs(), initiator=ALICE)
    old = yield _part(mp, upload, 1, b"1" * 6000)
    new = yield _part(mp, upload, 1, b"2" * 3000)
    listing = yield mp.list_parts(bucket, "k", upload.upload_id)
    assert [(p.part_number, p.etag, p.size) for p in listing.parts] == [(1, new.etag, 3000)]
    yield _settle()
    files = yield _chunk_files(core)
    assert not {c.chunk_id for c in old.chunks} & files
    for c in old.chunks:
        assert (yield core.store.get(keys.chunk_key(c.chunk_id))) is None
    with pytest.raises(errors.InvalidPart):
        yield mp.complete(bucket, "k", upload.upload_id, _refs(old))
    done = yield mp.complete(bucket, "k", upload.upload_id, _refs(new))
    assert (yield _read(core, done.record)) == b"2" * 3000


@pytest_twisted.inlineCallbacks
def test_concurrent_part_uploads_all_land(core):
    """Parts committed at the same time (each rewrites the upload record) all succeed by retrying."""
    mp = core.multipart
    bucket = yield core.buckets.create(ALICE, "conc")
    upload = yield mp.create(bucket, "k", PutAttrs(), initiator=ALICE)
    blobs = {n: os.urandom(1500 + n) for n in range(1, 9)}
    yield DeferredList([_part(mp, upload, n, d) for n, d in blobs.items()], fireOnOneErrback=True)
    listing = yield mp.list_parts(bucket, "k", upload.upload_id)
    assert [p.part_number for p in listing.parts] == list(blobs)
    done = yield mp.complete(bucket, "k", upload.upload_id, _refs(*listing.parts))
    assert (yield _read(core, done.record)) == b"".join(blobs.values())


@pytest_twisted.inlineCallbacks
def test_complete_validates_the_part_list(core):
    """Order, existence, ETags, listed checksums and the minimum size are checked before anything changes."""
    mp = core.multipart
    bucket = yield core.buckets.create(ALICE, "val")
    upload = yield mp.create(bucket, "k", PutAttrs(), initiator=ALICE, checksum_algorithm="CRC32")
    p1 = yield _part(mp, upload, 1, b"a" * 2000)
    p2 = yield _part(mp, upload, 2, b"b" * 500)  # below the minimum
    p3 = yield _part(mp, upload, 3, b"c" * 100)
    uid = upload.upload_id
    with pytest.raises(errors.InvalidPartOrder):
        yield mp.complete(bucket, "k", uid, _refs(p2, p1))
    with pytest.raises(errors.InvalidPartOrder):
        yield mp.complete(bucket, "k", uid, _refs(p1, p1))
    with pytest.raises(errors.InvalidPart):  # part 2 with another part's ETag
        yield mp.complete(bucket, "k", uid, [PartRef(1, p1.etag), PartRef(2, p1.etag)])
    with pytest.raises(errors.InvalidPart):  # part 4 was never uploaded
        yield mp.complete(bucket, "k", uid, [*_refs(p1, p2, p3), PartRef(4, p1.etag)])
    with pytest.raises(errors.InvalidPart):
        yield mp.complete(bucket, "k", uid, [PartRef(1, "0" * 32)])
    with pytest.raises(errors.InvalidPart):
        yield mp.complete(bucket, "k", uid, [PartRef(1, p1.etag, {"crc32": compute("crc32", b"x")})])
    with pytest.raises(errors.EntityTooSmall):
        yield mp.complete(bucket, "k", uid, _refs(p1, p2, p3))
    # A checksummed upload's parts are 1..N: a gap is refused (AWS, CompletedPart).
    with pytest.raises(errors.InvalidPartOrder):
        yield mp.complete(bucket, "k", uid, _refs(p1, p3))
    p2 = yield _part(mp, upload, 2, b"b" * 1500)  # replaces the small part 2
    p4 = yield _part(mp, upload, 4, b"d" * 1000)  # never listed
    with pytest.raises(errors.BadDigest):
        yield mp.complete(bucket, "k", uid, _refs(p1, p2, p3), expected_checksums={"crc32": "AAAAAA=="})
    with pytest.raises(errors.BadDigest):  # another type than the upload's (AWS's ChecksumType)
        yield mp.complete(bucket, "k", uid, _refs(p1, p2, p3), checksum_type="FULL_OBJECT")
    with pytest.raises(errors.InvalidRequest):  # no type at all
        yield mp.complete(bucket, "k", uid, _refs(p1, p2, p3), checksum_type="PARTIAL")
    mp.max_object_size = 3599
    with pytest.raises(errors.EntityTooLarge):
        yield mp.complete(bucket, "k", uid, _refs(p1, p2, p3))
    mp.max_object_size = 1 << 40
    yield mp.get(bucket, "k", uid)  # still there after every refusal
    done = yield mp.complete(bucket, "k", uid, [PartRef(1, p1.etag, {"crc32": p1.checksums["crc32"]}),
                                                PartRef(2, p2.etag), PartRef(3, f'"{p3.etag}"')])
    assert done.record.size == 3600
    assert done.checksum_type == "COMPOSITE"
    assert done.record.checksums["crc32"] == composite_checksum("crc32", [p1.checksums["crc32"],
                                                                          p2.checksums["crc32"],
                                                                          p3.checksums["crc32"]])
    yield _settle()
    assert not {c.chunk_id for c in p4.chunks} & (yield _chunk_files(core))  # unlisted part freed
    for c in p4.chunks:
        assert (yield core.store.get(keys.chunk_key(c.chunk_id))) is None


@pytest_twisted.inlineCallbacks
def test_s3_completes_of_composite_uploads_name_every_part_checksum(core):
    """With ``part_checksums_required`` (the S3 layer's completes), a COMPOSITE
    upload's complete that leaves out a part's checksum of the upload's
    algorithm is InvalidRequest naming the first such part, with AWS's
    message, and changes nothing: the upload and its parts stay, and a
    complete that names them all then succeeds.  FULL_OBJECT uploads,
    uploads without an algorithm and completes without the flag (the gRPC
    API, whose part checksums are optional) may leave them out."""
    mp = core.multipart
    bucket = yield core.buckets.create(ALICE, "need")
    upload = yield mp.create(bucket, "k", PutAttrs(), initiator=ALICE, checksum_algorithm="SHA256")
    p1 = yield _part(mp, upload, 1, b"a" * 2000)
    p2 = yield _part(mp, upload, 2, b"b" * 100)
    uid = upload.upload_id
    named = [PartRef(1, p1.etag, {"sha256": p1.checksums["sha256"]}), PartRef(2, p2.etag, {"SHA256": p2.checksums["sha256"]})]
    for listed, missing in (
        (_refs(p1, p2), 1),
        ([named[0], PartRef(2, p2.etag)], 2),
        ([named[0], PartRef(2, p2.etag, {"crc32": compute("crc32", b"b" * 100)})], 2),  # another algorithm's
    ):
        with pytest.raises(errors.InvalidRequest) as info:
            yield mp.complete(bucket, "k", uid, listed, part_checksums_required=True)
        assert info.value.status == 400
        assert info.value.message == (
            "The upload was created using a sha256 checksum. The complete request must include the checksum "
            f"for each part. It was missing for part {missing} in the request."
        )
    listing = yield mp.list_parts(bucket, "k", uid)
    assert [p.part_number for p in listing.parts] == [1, 2]
    assert (yield core.objects.find(bucket, "k")) is None
    done = yield mp.complete(bucket, "k", uid, named, part_checksums_required=True)
    assert done.checksum_type == "COMPOSITE" and done.record.size == 2100

    composite = yield mp.create(bucket, "grpc", PutAttrs(), initiator=ALICE, checksum_algorithm="CRC32")
    full = yield mp.create(bucket, "full", PutAttrs(), initiator=ALICE, checksum_algorithm="CRC32",
                           checksum_type="FULL_OBJECT")
    plain = yield mp.create(bucket, "plain", PutAttrs(), initiator=ALICE)
    for made, required in ((composite, False), (full, True), (plain, True)):
        part = yield _part(mp, made, 1, b"z" * 10)
        done = yield mp.complete(bucket, made.key, made.upload_id, _refs(part), part_checksums_required=required)
        assert done.record.size == 10


@pytest_twisted.inlineCallbacks
def test_full_object_checksum_and_expected_value(core):
    """A FULL_OBJECT upload gets the CRC of the whole object and checks a client's expected value."""
    mp = core.multipart
    bucket = yield core.buckets.create(ALICE, "full")
    upload = yield mp.create(bucket, "k", PutAttrs(), initiator=ALICE,
                             checksum_algorithm="CRC64NVME")
    a, b = os.urandom(3000), os.urandom(1234)
    p1 = yield _part(mp, upload, 1, a)
    p2 = yield _part(mp, upload, 2, b)
    want = compute("crc64nvme", a + b)
    done = yield mp.complete(bucket, "k", upload.upload_id, _refs(p1, p2),
                             expected_checksums={"crc64nvme": want}, checksum_type="FULL_OBJECT")
    assert done.checksum_type == "FULL_OBJECT"
    assert done.record.checksums == {"crc64nvme": want}


@pytest_twisted.inlineCallbacks
def test_upload_without_checksum_reports_default_crc64nvme_it_does_not_keep(core):
    """An upload created without a checksum algorithm (AWS): each part gets
    its CRC64NVME as a default (not among the checksums ListParts shows,
    kept through the part record), and the completion reports the whole
    object's FULL_OBJECT CRC64NVME combined from them, while the object
    record keeps no checksum."""
    mp = core.multipart
    bucket = yield core.buckets.create(ALICE, "dflt")
    upload = yield mp.create(bucket, "k", PutAttrs(), initiator=ALICE)
    a, b = os.urandom(3000), os.urandom(1234)
    p1 = yield _part(mp, upload, 1, a)
    p2 = yield _part(mp, upload, 2, b)
    assert (p1.checksums, p1.default_checksum) == ({}, compute("crc64nvme", a))
    listing = yield mp.list_parts(bucket, "k", upload.upload_id)
    assert [(p.checksums, p.default_checksum) for p in listing.parts] == [
        ({}, compute("crc64nvme", a)), ({}, compute("crc64nvme", b))]
    done = yield mp.complete(bucket, "k", upload.upload_id, _refs(p1, p2))
    assert (done.reported_checksums, done.checksum_type) == ({"crc64nvme": compute("crc64nvme", a + b)}, "FULL_OBJECT")
    assert done.record.checksums == {} and done.record.part_checksums == {}
    again = yield mp.complete(bucket, "k", upload.upload_id, _refs(p1, p2))  # a retry: the same answer
    assert (again.reported_checksums, again.checksum_type) == (done.reported_checksums, "FULL_OBJECT")


@pytest_twisted.inlineCallbacks
def test_completion_with_a_part_stored_before_defaults_reports_none(core):
    """A part stored before parts got the default CRC64NVME (a record
    without it) leaves the completion without a reported checksum: the
    upload completes as before, never fails."""
    mp = core.multipart
    bucket = yield core.buckets.create(ALICE, "legacy")
    upload = yield mp.create(bucket, "k", PutAttrs(), initiator=ALICE)
    p1 = yield _part(mp, upload, 1, os.urandom(2000))
    p2 = yield _part(mp, upload, 2, os.urandom(10))
    old = multipart_module.Part(p1.part_number, p1.size, p1.etag, p1.created_at, p1.chunks, {})
    old_encoded = multipart_module.encode_part(old)
    assert b"dck" not in old_encoded and multipart_module.decode_part(old_encoded).default_checksum is None
    yield core.store.txn([], [Put(keys.part_key(upload.upload_id, 1), old_encoded)])
    done = yield mp.complete(bucket, "k", upload.upload_id, _refs(p1, p2))
    assert (done.reported_checksums, done.checksum_type, done.record.checksums) == ({}, None, {})


@pytest_twisted.inlineCallbacks
def test_a_repeated_complete_answers_the_first_while_the_key_holds_its_object(core):
    """A client that lost the answer and completes again with the same parts
    gets the same object (as from AWS); other parts, another object at the
    key since, or an upload that was aborted get NoSuchUpload."""
    mp = core.multipart
    bucket = yield core.buckets.create(ALICE, "again")
    upload = yield mp.create(bucket, "k", PutAttrs(), initiator=ALICE)
    p1 = yield _part(mp, upload, 1, os.urandom(2000))
    p2 = yield _part(mp, upload, 2, os.urandom(100))
    first = yield mp.complete(bucket, "k", upload.upload_id, _refs(p1, p2))
    again = yield mp.complete(bucket, "k", upload.upload_id, _refs(p1, p2))
    assert again.record.etag == first.record.etag and again.record.size == 2100
    assert again.checksum_type == first.checksum_type
    for refs in (_refs(p1), [PartRef(1, p1.etag), PartRef(2, "zz")]):
        with pytest.raises(errors.NoSuchUpload):
            yield mp.complete(bucket, "k", upload.upload_id, refs)
    yield put_object(core, bucket, "k", b"replaced")
    with pytest.raises(errors.NoSuchUpload):
        yield mp.complete(bucket, "k", upload.upload_id, _refs(p1, p2))
    aborted = yield mp.create(bucket, "k", PutAttrs(), initiator=ALICE)
    yield mp.abort(bucket, "k", aborted.upload_id)
    with pytest.raises(errors.NoSuchUpload):
        yield mp.complete(bucket, "k", aborted.upload_id, _refs(p1, p2))


@pytest_twisted.inlineCallbacks
def test_a_repeated_complete_must_name_the_same_part_numbers(core):
    """The completed part list is remembered by numbers and ETags
    (``completed_parts``), not by the multipart ETag alone: parts 1 and 3
    of the same bytes as parts 1 and 2 give the same ETag, yet are another
    request (NoSuchUpload).  An abort of the completed upload stays
    NoSuchUpload."""
    mp = core.multipart
    bucket = yield core.buckets.create(ALICE, "numbers")
    upload = yield mp.create(bucket, "k", PutAttrs(), initiator=ALICE)
    tail = os.urandom(100)
    p1 = yield _part(mp, upload, 1, os.urandom(2000))
    p2 = yield _part(mp, upload, 2, tail)
    p3 = yield _part(mp, upload, 3, tail)
    assert multipart_etag([p1.etag, p2.etag]) == multipart_etag([p1.etag, p3.etag])
    first = yield mp.complete(bucket, "k", upload.upload_id, _refs(p1, p2))
    assert first.record.upload_id == upload.upload_id
    assert first.record.completed_parts == part_list_digest([(1, p1.etag), (2, p2.etag)])
    with pytest.raises(errors.NoSuchUpload):
        yield mp.complete(bucket, "k", upload.upload_id, _refs(p1, p3))
    quoted = [PartRef(1, f' "{p1.etag}" '), PartRef(2, f'"{p2.etag}"')]  # as clients send them
    again = yield mp.complete(bucket, "k", upload.upload_id, quoted)
    assert again.record == first.record
    with pytest.raises(errors.NoSuchUpload):
        yield mp.abort(bucket, "k", upload.upload_id)


@pytest_twisted.inlineCallbacks
def test_a_repeated_complete_must_ask_what_the_object_has(core):
    """A repeated complete answers only if nothing in it would have failed
    the first: the same whole-object checksum (composite with or without
    "-N"), part checksums, checksum type and object size; write conditions
    are not checked again (the object is the complete's own).  The gRPC
    API's checksum algorithm lookup answers for the completed upload too."""
    mp = core.multipart
    bucket = yield core.buckets.create(ALICE, "sums")
    upload = yield mp.create(bucket, "k", PutAttrs(), initiator=ALICE, checksum_algorithm="CRC32")
    a, b = os.urandom(2000), os.urandom(300)
    p1 = yield _part(mp, upload, 1, a)
    p2 = yield _part(mp, upload, 2, b)
    uid = upload.upload_id
    refs = [PartRef(1, p1.etag, {"crc32": compute("crc32", a)}), PartRef(2, p2.etag, {"crc32": compute("crc32", b)})]
    first = yield mp.complete(bucket, "k", uid, refs, conditions=PutAttrs(if_none_match_any=True))
    whole = first.record.checksums["crc32"]
    assert first.checksum_type == "COMPOSITE" and whole.endswith("-2")
    same = [
        {},
        {"expected_checksums": {"crc32": whole}},
        {"expected_checksums": {"CRC32": whole.rsplit("-", 1)[0]}, "checksum_type": "composite"},
        {"object_size": 2300, "conditions": PutAttrs(if_none_match_any=True)},
    ]
    for kwargs in same:
        again = yield mp.complete(bucket, "k", uid, refs, **kwargs)
        assert (again.record, again.checksum_type) == (first.record, "COMPOSITE"), kwargs
    other = [
        {"expected_checksums": {"crc32": "AAAAAA==-2"}},
        {"expected_checksums": {"sha256": whole}},
        {"checksum_type": "FULL_OBJECT"},
        {"object_size": 2299},
    ]
    for kwargs in other:
        with pytest.raises(errors.NoSuchUpload):
            yield mp.complete(bucket, "k", uid, refs, **kwargs)
    wrong_part = [refs[0], PartRef(2, p2.etag, {"crc32": compute("crc32", a)})]
    with pytest.raises(errors.NoSuchUpload):
        yield mp.complete(bucket, "k", uid, wrong_part)
    assert (yield mp.checksum_algorithm(bucket, "k", uid)) == "crc32"
    with pytest.raises(errors.NoSuchUpload):
        yield mp.checksum_algorithm(bucket, "other", uid)


@pytest_twisted.inlineCallbacks
def test_a_repeated_complete_in_a_versioned_bucket_answers_the_uploads_version(core, monkeypatch):
    """With versioning, the upload's object outlives an overwrite or a delete
    marker as a noncurrent version; a repeated complete answers it (its
    version id) while it is among the newest RETRY_VERSIONS_SCANNED
    noncurrent versions, and NoSuchUpload once it is deleted for good or
    further back than that."""
    mp = core.multipart
    bucket = yield core.buckets.create(ALICE, "versioned")
    bucket = yield core.set_bucket_versioning(bucket, "Enabled")
    upload = yield mp.create(bucket, "k", PutAttrs(), initiator=ALICE)
    p1 = yield _part(mp, upload, 1, os.urandom(1500))
    uid = upload.upload_id
    first = yield mp.complete(bucket, "k", uid, _refs(p1))
    vid = first.record.version_id
    assert vid is not None
    yield put_object(core, bucket, "k", b"newer")
    again = yield mp.complete(bucket, "k", uid, _refs(p1))
    assert (again.record.version_id, again.record.etag) == (vid, first.record.etag)
    yield core.objects.delete(bucket, "k")  # a delete marker on top
    again = yield mp.complete(bucket, "k", uid, _refs(p1))
    assert again.record.version_id == vid
    monkeypatch.setattr(multipart_module, "RETRY_VERSIONS_SCANNED", 2)
    yield put_object(core, bucket, "k", b"newest")  # three noncurrent versions above it now
    with pytest.raises(errors.NoSuchUpload):
        yield mp.complete(bucket, "k", uid, _refs(p1))
    monkeypatch.undo()
    assert (yield mp.complete(bucket, "k", uid, _refs(p1))).record.version_id == vid
    yield core.objects.delete(bucket, "k", vid)
    with pytest.raises(errors.NoSuchUpload):
        yield mp.complete(bucket, "k", uid, _refs(p1))


@pytest_twisted.inlineCallbacks
def test_a_repeated_complete_of_a_record_without_a_part_list_digest(core):
    """Records completed before ``completed_parts`` existed (upload id only)
    are compared by their multipart ETag: the same ETags answer, others
    get NoSuchUpload."""
    mp = core.multipart
    bucket = yield core.buckets.create(ALICE, "legacy")
    upload = yield mp.create(bucket, "k", PutAttrs(), initiator=ALICE)
    p1 = yield _part(mp, upload, 1, os.urandom(1200))
    first = yield mp.complete(bucket, "k", upload.upload_id, _refs(p1))
    okey = keys.object_key(bucket.bucket_id, "k")
    kv = yield core.store.get(okey)
    old = records.decode_object(kv.value)
    old.completed_parts = None
    yield core.store.txn([], [Put(okey, records.encode_object(old))])
    again = yield mp.complete(bucket, "k", upload.upload_id, _refs(p1))
    assert again.record.etag == first.record.etag and again.record.completed_parts is None
    with pytest.raises(errors.NoSuchUpload):
        yield mp.complete(bucket, "k", upload.upload_id, [PartRef(1, "0" * 32)])


@pytest_twisted.inlineCallbacks
def test_concurrent_complete_and_abort_exactly_one_wins(core):
    """Of racing completes and aborts of one upload exactly one changes it: an
    abort, or a complete, and then the other complete of the same parts
    answers that complete's object (as a repeated complete does); the rest
    get NoSuchUpload."""
    mp = core.multipart
    bucket = yield core.buckets.create(ALICE, "race")
    for _round in range(3):
        upload = yield mp.create(bucket, "k", PutAttrs(), initiator=ALICE)
        p1 = yield _part(mp, upload, 1, os.urandom(2000))
        uid = upload.upload_id
        attempts = [mp.complete(bucket, "k", uid, _refs(p1)), mp.abort(bucket, "k", uid),
                    mp.complete(bucket, "k", uid, _refs(p1)), mp.abort(bucket, "k", uid)]
        results = yield DeferredList(attempts, consumeErrors=True)
        completed = [value.record for ok, value in (results[0], results[2]) if ok]
        aborted = [ok for ok, _ in (results[1], results[3]) if ok]
        assert (len(aborted), bool(completed)) in ((1, False), (0, True)), results
        assert all(r.upload_id == uid and r.etag == completed[0].etag for r in completed)
        if completed:
            assert (yield core.objects.head(bucket, "k")).upload_id == uid
        for ok, value in results:
            if not ok:
                assert value.check(errors.NoSuchUpload), value


class InterposingStore:
    """Runs ``hook`` (once) just before the first txn that deletes a range, i.e.
    between a complete's scan of the parts and its commit."""

    def __init__(self, inner: Any, hook: Any) -> None:
        self.inner = inner
        self.hook = hook

    @inlineCallbacks
    def txn(self, compares: Any, ops: Any) -> Any:
        from lightningstor.interfaces.metadata import DeleteRange

        if self.hook is not None and any(isinstance(op, DeleteRange) for op in ops):
            hook, self.hook = self.hook, None
            yield hook()
        result = yield self.inner.txn(compares, ops)
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest_twisted.inlineCallbacks
def test_part_stored_during_complete_is_not_leaked(core):
    """A part committed between a complete's scan and its commit makes the complete look again:
    the late part, unlisted, loses its chunks and index entries instead of leaking them."""
    bucket = yield core.buckets.create(ALICE, "late")
    late: list[Any] = []
    store = InterposingStore(core.store, lambda: _part(mp, upload, 2, os.urandom(3000)).addCallback(late.append))
    objects = ObjectManager(store, core.chunks.delete_chunks, time.time)  # type: ignore[arg-type]
    mp = MultipartManager(store, core.chunks, objects, time.time, min_part_size=MIN_PART)  # type: ignore[arg-type]
    upload = yield mp.create(bucket, "k", PutAttrs(), initiator=ALICE)
    p1 = yield _part(mp, upload, 1, os.urandom(2000))
    done = yield mp.complete(bucket, "k", upload.upload_id, _refs(p1))
    assert late and done.record.size == 2000
    yield _settle()
    assert not {c.chunk_id for c in late[0].chunks} & (yield _chunk_files(core))
    for c in late[0].chunks:
        assert (yield core.store.get(keys.chunk_key(c.chunk_id))) is None


@pytest_twisted.inlineCallbacks
def test_abort_frees_chunks_and_later_parts_are_refused(core):
    """Abort deletes the parts' chunks and index entries; a part finishing afterwards is NoSuchUpload."""
    mp = core.multipart
    bucket = yield core.buckets.create(ALICE, "abrt")
    upload = yield mp.create(bucket, "k", PutAttrs(), initiator=ALICE)
    before = yield _chunk_files(core)
    part = yield _part(mp, upload, 1, os.urandom(9000))
    late = mp.new_part_writer(upload)
    late.write(os.urandom(5000))
    late_result = yield late.finish()
    yield mp.abort(bucket, "k", upload.upload_id)
    with pytest.raises(errors.NoSuchUpload):
        yield mp.commit_part(upload, 2, late_result, {})
    yield late.abort()
    yield _settle()
    assert (yield _chunk_files(core)) == before
    for c in part.chunks:
        assert (yield core.store.get(keys.chunk_key(c.chunk_id))) is None
    with pytest.raises(errors.NoSuchUpload):
        yield mp.abort(bucket, "k", upload.upload_id)
    with pytest.raises(errors.NoSuchUpload):
        yield mp.complete(bucket, "k", upload.upload_id, _refs(part))
    with pytest.raises(errors.NoSuchUpload):
        yield mp.get(bucket, "other-key", upload.upload_id)


@pytest_twisted.inlineCallbacks
def test_list_uploads_orders_paginates_and_groups(core):
    """Uploads list by key then initiation; markers resume exactly; a delimiter groups prefixes."""
    mp = core.multipart
    bucket = yield core.buckets.create(ALICE, "lst")
    made = []
    for key in ["b", "a", "dir/x", "dir/y", "a", "c"]:
        made.append((yield mp.create(bucket, key, PutAttrs(), initiator=ALICE)))
        yield _sleep(0.002)  # distinct initiation milliseconds
    order = sorted(made, key=lambda u: (u.key.encode(), u.upload_id))
    assert [u.key for u in order] == ["a", "a", "b", "c", "dir/x", "dir/y"]
    seen: list[str] = []
    key_marker = upload_marker = ""
    while True:
        page = yield mp.list_uploads(bucket, key_marker=key_marker, upload_id_marker=upload_marker,
                                     max_uploads=2)
        seen += [u.upload_id for u in page.uploads]
        if not page.is_truncated:
            break
        key_marker, upload_marker = page.next_key_marker, page.next_upload_id_marker
    assert seen == [u.upload_id for u in order]
    first_a = [u for u in order if u.key == "a"][0]
    page = yield mp.list_uploads(bucket, key_marker="a", upload_id_marker=first_a.upload_id)
    assert [u.key for u in page.uploads] == ["a", "b", "c", "dir/x", "dir/y"]
    page = yield mp.list_uploads(bucket, key_marker="a")
    assert [u.key for u in page.uploads] == ["b", "c", "dir/x", "dir/y"]
    page = yield mp.list_uploads(bucket, delimiter="/")
    assert [u.key for u in page.uploads] == ["a", "a", "b", "c"] and page.common_prefixes == ["dir/"]
    page = yield mp.list_uploads(bucket, delimiter="/", max_uploads=4)
    assert page.is_truncated and page.next_key_marker == "c"
    page = yield mp.list_uploads(bucket, delimiter="/", key_marker="dir/")
    assert page.uploads == [] and page.common_prefixes == [] and not page.is_truncated
    page = yield mp.list_uploads(bucket, prefix="dir/")
    assert [u.key for u in page.uploads] == ["dir/x", "dir/y"]


@pytest_twisted.inlineCallbacks
def test_list_parts_paginates(core):
    """ListParts resumes after part-number-marker and reports truncation."""
    mp = core.multipart
    bucket = yield core.buckets.create(ALICE, "lparts")
    upload = yield mp.create(bucket, "k", PutAttrs(), initiator=ALICE)
    for n in (1, 2, 5, 9, 10):
        yield _part(mp, upload, n, bytes([n]) * 10)
    page = yield mp.list_parts(bucket, "k", upload.upload_id, max_parts=2)
    assert [p.part_number for p in page.parts] == [1, 2] and page.is_truncated and page.next_marker == 2
    page = yield mp.list_parts(bucket, "k", upload.upload_id, marker=2, max_parts=2)
    assert [p.part_number for p in page.parts] == [5, 9] and page.is_truncated
    page = yield mp.list_parts(bucket, "k", upload.upload_id, marker=9, max_parts=2)
    assert [p.part_number for p in page.parts] == [10] and not page.is_truncated


@pytest_twisted.inlineCallbacks
def test_copy_part_copies_a_range(core):
    """UploadPartCopy stores the requested byte range of the source as a part of its own."""
    mp = core.multipart
    bucket = yield core.buckets.create(ALICE, "cpy")
    src = yield mp.create(bucket, "src", PutAttrs(), initiator=ALICE)
    body = os.urandom(10000)
    p = yield _part(mp, src, 1, body)
    source = (yield mp.complete(bucket, "src", src.upload_id, _refs(p))).record
    upload = yield mp.create(bucket, "dst", PutAttrs(), initiator=ALICE, checksum_algorithm="SHA256")
    part = yield mp.copy_part(upload, 1, source, 4000, 5000)
    assert part.etag == hashlib.md5(body[4000:9000]).hexdigest()
    assert part.checksums["sha256"] == compute("sha256", body[4000:9000])
    done = yield mp.complete(bucket, "dst", upload.upload_id, _refs(part))
    assert (yield _read(core, done.record)) == body[4000:9000]


@pytest_twisted.inlineCallbacks
def test_deleting_a_bucket_aborts_its_uploads(core):
    """DeleteBucket succeeds with uploads in progress (as in AWS) and frees their parts."""
    mp = core.multipart
    bucket = yield core.buckets.create(ALICE, "gone")
    before = yield _chunk_files(core)
    upload = yield mp.create(bucket, "k", PutAttrs(), initiator=ALICE)
    yield _part(mp, upload, 1, os.urandom(8000))
    yield core.buckets.delete(ALICE, "gone")
    yield _settle()
    assert (yield _chunk_files(core)) == before
    assert (yield core.store.scan(keys.UPLOADS, keys.UPLOADS + b"\xff")) == []


@pytest_twisted.inlineCallbacks
def test_expiry_service_aborts_only_old_uploads(core):
    """The expiry service, on its interval, aborts uploads older than the timeout and keeps newer ones."""
    clock = Clock()
    clock.advance(1_000_000)
    mp = MultipartManager(core.store, core.chunks, core.objects, clock.seconds)
    bucket = yield core.buckets.create(ALICE, "exp")
    old = yield mp.create(bucket, "old", PutAttrs(), initiator=ALICE)
    old_part = yield _part(mp, old, 1, os.urandom(6000))
    clock.advance(3000)
    young = yield mp.create(bucket, "young", PutAttrs(), initiator=ALICE)
    runs: list[Any] = []
    service = UploadExpiryService(mp, clock, max_age_seconds=4500, interval_seconds=1000)
    original = service.run_once

    def spy() -> Any:
        outcome: Deferred[Any] = Deferred()  # the loop consumes run_once's own result
        runs.append(outcome)
        # Resume the test on a later turn: a pass can end synchronously (cached
        # reads), before the loop has scheduled the next one.
        return original().addBoth(lambda r: (reactor.callLater(0, outcome.callback, r), r)[1])

    service._loop.f = spy
    service.startService()
    try:
        clock.advance(999)
        assert runs == []  # first run one interval after start
        clock.advance(1)
        yield runs[-1]
        yield mp.get(bucket, "old", old.upload_id)  # 4000 s old: kept
        clock.advance(1000)
        aborted = yield runs[-1]
        assert aborted == 1
        with pytest.raises(errors.NoSuchUpload):
            yield mp.get(bucket, "old", old.upload_id)
        yield mp.get(bucket, "young", young.upload_id)
        yield _settle()
        assert not {c.chunk_id for c in old_part.chunks} & (yield _chunk_files(core))
    finally:
        service.stopService()


def _sleep(seconds: float) -> Any:
    from twisted.internet.task import deferLater

    return deferLater(reactor, seconds, lambda: None)


@inlineCallbacks
def _settle() -> Any:
    """Chunk deletion after a commit is fire-and-forget: give it a moment."""
    for _ in range(20):
        yield _sleep(0.01)


def _gated_scan(mp: Any, monkeypatch: pytest.MonkeyPatch, *, after_scan: bool) -> tuple[Deferred[Any], Deferred[Any]]:
    """Hold the next complete's part scan until ``release`` fires: before the
    scan (it then reads the parts after another change landed) or after it
    (it commits after the change).  Returns (reached, release)."""
    reached: Deferred[Any] = Deferred()
    release: Deferred[Any] = Deferred()
    original = mp._scan_parts
    calls = []

    @inlineCallbacks
    def scan(upload_id: str) -> Any:
        calls.append(upload_id)
        if len(calls) > 1:
            return (yield original(upload_id))
        if after_scan:
            stored = yield original(upload_id)
            reached.callback(None)
            yield release
            return stored
        reached.callback(None)
        yield release
        return (yield original(upload_id))

    monkeypatch.setattr(mp, "_scan_parts", scan)
    return reached, release


@pytest.mark.parametrize("after_scan", [False, True])
@pytest_twisted.inlineCallbacks
def test_a_complete_overtaken_by_the_same_complete_answers_its_result(core, monkeypatch, after_scan):
    """Two identical completes at once (an SDK retrying after a timeout): the
    one that loses, whether it read the parts after the winner committed or
    commits after it (with If-None-Match: *, which the winner's object now
    fails), answers the winner's result, not InvalidPart or 412."""
    mp = core.multipart
    bucket = yield core.buckets.create(ALICE, "race-same")
    upload = yield mp.create(bucket, "k", PutAttrs(), initiator=ALICE)
    p1 = yield _part(mp, upload, 1, b"a" * 2000)
    p2 = yield _part(mp, upload, 2, b"b" * 300)
    refs, conditions = _refs(p1, p2), PutAttrs(if_none_match_any=True)
    reached, release = _gated_scan(mp, monkeypatch, after_scan=after_scan)
    loser = mp.complete(bucket, "k", upload.upload_id, refs, conditions=conditions)
    yield reached
    winner = yield mp.complete(bucket, "k", upload.upload_id, refs, conditions=conditions)
    release.callback(None)
    answer = yield loser
    assert answer.record.etag == winner.record.etag and answer.record.size == 2300


@pytest_twisted.inlineCallbacks
def test_a_complete_overtaken_by_an_abort_is_no_such_upload(core, monkeypatch):
    """A complete that reads the parts after an abort removed them answers
    NoSuchUpload (the upload is gone), not InvalidPart; no object is made."""
    mp = core.multipart
    bucket = yield core.buckets.create(ALICE, "race-abort")
    upload = yield mp.create(bucket, "k", PutAttrs(), initiator=ALICE)
    p1 = yield _part(mp, upload, 1, b"a" * 2000)
    reached, release = _gated_scan(mp, monkeypatch, after_scan=False)
    loser = mp.complete(bucket, "k", upload.upload_id, _refs(p1))
    yield reached
    yield mp.abort(bucket, "k", upload.upload_id)
    release.callback(None)
    with pytest.raises(errors.NoSuchUpload):
        yield loser
    with pytest.raises(errors.NoSuchKey):
        yield core.objects.head(bucket, "k")


@pytest_twisted.inlineCallbacks
def test_copy_part_cut_off_before_its_commit_keeps_no_chunk(core, monkeypatch):
    """A client that goes away during UploadPartCopy cancels the copy (a
    CancelledError out of the copying): nothing was committed, so the
    chunks written so far go, as for CopyObject.  A CancelledError from the
    commit itself leaves them, since the commit may still land."""
    from twisted.internet.defer import CancelledError

    mp = core.multipart
    bucket = yield core.buckets.create(ALICE, "cut")
    src = yield mp.create(bucket, "src", PutAttrs(), initiator=ALICE)
    p = yield _part(mp, src, 1, os.urandom(3 * 1024 * 1024))
    source = (yield mp.complete(bucket, "src", src.upload_id, _refs(p))).record
    before = yield _chunk_files(core)
    real_pump = multipart_module.pump

    class CutOff:
        """The source's every piece, then the cancellation (the client gone)."""

        def __init__(self, reader: Any) -> None:
            self.reader = reader

        async def next_piece(self) -> Any:
            piece = await self.reader.next_piece()
            if piece is None:
                raise CancelledError()
            return piece

    async def cut_off(reader: Any, writer: Any) -> Any:
        return await real_pump(CutOff(reader), writer)  # every piece of the copy written

    monkeypatch.setattr(multipart_module, "pump", cut_off)
    upload = yield mp.create(bucket, "dst", PutAttrs(), initiator=ALICE)
    with pytest.raises(CancelledError):
        yield mp.copy_part(upload, 1, source, 0, source.size)
    assert (yield _chunk_files(core)) == before
    page = yield mp.list_parts(bucket, "dst", upload.upload_id)
    assert page.parts == []
