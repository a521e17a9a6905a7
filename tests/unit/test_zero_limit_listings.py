"""A listing asked for zero entries, in the core, for every listing family.

AWS answers max-keys=0 (ListObjects v1/v2, ListObjectVersions), and MinIO and
the ceph/s3-tests suite expect the same of max-uploads=0 and max-parts=0, with
an empty page that is NOT truncated: a truncated page must say where to
continue, and a page of nothing has nowhere to say.  The rule lives in
:func:`lightningstor.core.listing.asks_nothing`, so the S3 handlers and the
gRPC service (which call the core) all answer alike.  Also here: how the S3
handlers parse the page-size parameters
(:func:`lightningstor.s3.handlers.listing.page_limit`).
"""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted

from lightningstor import errors
from lightningstor.core import listing
from lightningstor.core.objects import PutAttrs
from lightningstor.core.types import Principal
from lightningstor.s3.handlers import listing as s3_listing
from tests.unit.core_helpers import put_object
from tests.unit.test_listing_fast_paths import DictStore, _store

ALICE = Principal("alice", "org-a", display_name="Alice")
NAMES = {"a": False, "b/1": False, "b/2": False, "c": True, "d": False}


@pytest.fixture
def core(make_core: Any) -> Any:
    c = make_core(fsync=False, chunk_size=4096, piece_size=1024, inline_threshold=1024)
    c.multipart.min_part_size = 1
    return c


@pytest.mark.parametrize("delimiter", [None, "/"])
@pytest.mark.parametrize("after", [None, "a", "b/"])
def test_list_objects_zero_is_an_empty_page_not_truncated(delimiter: str | None, after: str | None) -> None:
    """Zero keys asked of a non-empty bucket: nothing listed, not truncated,
    no marker, and not one scan of the store."""
    store = _store(NAMES)
    got = listing.list_objects(store, "b1", delimiter=delimiter, after=after, max_keys=0).result
    assert (got.entries, got.common_prefixes, got.is_truncated, got.next_marker) == ([], [], False, None)
    assert store.scans == 0


def test_list_objects_one_is_still_truncated() -> None:
    """The rule is about zero only: a one-key page of a larger bucket is
    truncated and says where to continue."""
    got = listing.list_objects(_store(NAMES), "b1", max_keys=1).result
    assert ([e.key for e in got.entries], got.is_truncated, got.next_marker) == (["a"], True, "a")


@pytest.mark.parametrize("delimiter", [None, "/"])
def test_list_object_versions_zero_is_an_empty_page_not_truncated(delimiter: str | None) -> None:
    store = _store(NAMES)
    got = listing.list_object_versions(store, "b1", delimiter=delimiter, max_keys=0).result
    assert (got.entries, got.common_prefixes, got.is_truncated) == ([], [], False)
    assert (got.next_marker, got.next_version_id_marker) == (None, None)
    assert store.scans == 0


def test_asks_nothing() -> None:
    assert listing.asks_nothing(0) and listing.asks_nothing(-1)
    assert not listing.asks_nothing(1)


@pytest_twisted.inlineCallbacks
def test_core_service_zero_for_objects_and_versions(core: Any) -> Any:
    """Through the Core service (what the S3 handlers and gRPC call); a bad
    version-id-marker is still refused at max-keys=0."""
    bucket = yield core.buckets.create(ALICE, "zero-objects")
    for key in ("a", "b", "c"):
        yield put_object(core, bucket, key, key.encode())
    page = yield core.list_objects(bucket, max_keys=0)
    assert (page.entries, page.is_truncated, page.next_marker) == ([], False, None)
    page = yield core.list_object_versions(bucket, max_keys=0)
    assert (page.entries, page.is_truncated, page.next_marker) == ([], False, None)
    with pytest.raises(errors.InvalidArgument):
        yield core.list_object_versions(bucket, max_keys=0, key_marker="a", version_id_marker="garbage")


@pytest_twisted.inlineCallbacks
def test_list_uploads_zero_is_an_empty_page_not_truncated(core: Any) -> Any:
    mp = core.multipart
    bucket = yield core.buckets.create(ALICE, "zero-uploads")
    for key in ("a", "b", "dir/c"):
        yield mp.create(bucket, key, PutAttrs(), initiator=ALICE)
    for kwargs in ({}, {"delimiter": "/"}, {"key_marker": "a"}):
        page = yield mp.list_uploads(bucket, max_uploads=0, **kwargs)
        assert (page.uploads, page.common_prefixes, page.is_truncated) == ([], [], False), kwargs
        assert (page.next_key_marker, page.next_upload_id_marker) == ("", "")
    page = yield mp.list_uploads(bucket, max_uploads=1)
    assert [u.key for u in page.uploads] == ["a"] and page.is_truncated and page.next_key_marker == "a"


@pytest_twisted.inlineCallbacks
def test_list_parts_zero_is_an_empty_page_not_truncated(core: Any) -> Any:
    """The upload is still looked up: its page describes it, and an unknown
    upload is NoSuchUpload whatever the page size."""
    mp = core.multipart
    bucket = yield core.buckets.create(ALICE, "zero-parts")
    upload = yield mp.create(bucket, "k", PutAttrs(), initiator=ALICE)
    for number in (1, 2, 3):
        writer = mp.new_part_writer(upload)
        writer.write(bytes([number]) * 10)
        result = yield writer.finish()
        yield mp.commit_part(upload, number, result, {})
    for marker in (0, 1):
        page = yield mp.list_parts(bucket, "k", upload.upload_id, marker=marker, max_parts=0)
        assert (page.parts, page.is_truncated, page.next_marker) == ([], False, 0)
        assert page.upload.upload_id == upload.upload_id
    page = yield mp.list_parts(bucket, "k", upload.upload_id, max_parts=1)
    assert [p.part_number for p in page.parts] == [1] and page.is_truncated and page.next_marker == 1
    with pytest.raises(errors.NoSuchUpload):
        yield mp.list_parts(bucket, "k", "no-such-upload", max_parts=0)


# -- the S3 page-size parameters --------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "value"),
    [(None, 1000), ("", 1000), ("0", 0), ("-0", 0), ("7", 7), ("007", 7), ("0" * 5000 + "5", 5),
     ("2000", 2000), ("2147483647", 2147483647)],
)  # fmt: skip
def test_page_limit_values(raw: str | None, value: int) -> None:
    """Digits are their value, uncapped (the caller caps: ListObjects echoes
    max-keys as sent, ListMultipartUploads/ListParts echo the cap)."""
    query = {} if raw is None else {"max-keys": raw}
    assert s3_listing.page_limit(query, "max-keys", 1000) == value


@pytest.mark.parametrize("name", ["max-keys", "max-uploads", "max-parts"])
@pytest.mark.parametrize(
    "raw", ["abc", "1.5", "+5", " 5", "5 ", "1_000", "\u0663", "--1", "-", "2147483648", "-2147483649", "9" * 5000]
)
def test_page_limit_refuses_what_is_not_an_int32(name: str, raw: str) -> None:
    with pytest.raises(errors.InvalidArgument) as refused:
        s3_listing.page_limit({name: raw}, name, 1000)
    assert f"Provided {name} not an integer or within integer range" in str(refused.value)


@pytest.mark.parametrize(("name", "label"), [("max-keys", "maxKeys"), ("max-uploads", None), ("max-parts", None)])
@pytest.mark.parametrize("raw", ["-1", "-2147483648"])
def test_page_limit_refuses_a_negative(name: str, label: str | None, raw: str) -> None:
    with pytest.raises(errors.InvalidArgument) as refused:
        s3_listing.page_limit({name: raw}, name, 1000, label=label)
    assert f"Argument {label or name} must be an integer between 0 and 2147483647" in str(refused.value)


def test_dict_store_counts_scans() -> None:
    """The scan counter the tests above rely on counts."""
    store = DictStore({})
    listing.list_objects(store, "b1", max_keys=5)
    assert store.scans >= 1
