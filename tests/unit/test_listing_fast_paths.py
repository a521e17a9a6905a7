"""The listing fast paths agree with the straightforward code they replaced.

A full ListObjectsV2 walk decodes one record and writes one ``<Contents>``
per key, so those two steps have fast paths (docs/performance.md, "Listing
at 10k/100k/1M keys"): the record's JSON goes to json's C scanner directly
(``records._load_record``), the per-entry XML texts are memoized per page
(``xmlio._EntryTexts``), keys made only of URL-safe characters skip
``quote``, and a listing without a delimiter walks each batch of rows in one
loop (``listing._list_flat``).  The references below are the code as it was
before those changes; every test compares against them (or against a plain
model of the listing) on random input: keys with XML-special, control,
non-BMP and unpaired-surrogate characters, every encoding-type, v1 and v2,
fetch-owner, versions and delete markers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import pytest_twisted
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks, succeed
from zope.interface import implementer
from zope.interface.verify import verifyObject

from lightningstor.core import keys, listing, records
from lightningstor.core.types import ChunkRef, ListEntry, ListResult, Manifest, ObjectRecord
from lightningstor.interfaces.metadata import IMetadataStore, IScanItems, KeyValue, Put, prefix_end
from lightningstor.metadata.sqlite import SqliteMetadataStore
from lightningstor.s3 import xmlio
from lightningstor.s3.dates import object_time

DETERMINISTIC = settings(derandomize=True, max_examples=300, deadline=None, database=None)

# -- references: the code before the fast paths --------------------------------------


def ref_url_escape(text: str) -> str:
    return quote(text, safe="/", errors="surrogatepass")


def ref_quoted_etag(etag: str) -> str:
    return "&quot;" + xmlio.escape(etag.strip('"')) + "&quot;"


def ref_list_objects_xml(
    result: ListResult,
    *,
    version: int,
    bucket: str,
    prefix: str,
    delimiter: str | None,
    max_keys: int,
    encoding_type: str | None,
    marker: str = "",
    continuation_token: str | None = None,
    next_continuation_token: str | None = None,
    start_after: str | None = None,
    fetch_owner: bool = False,
) -> bytes:
    url = encoding_type is not None and encoding_type.lower() == "url"
    enc = ref_url_escape if url else xmlio.escape
    doc = xmlio._Doc("ListBucketResult")
    parts = doc.parts
    doc.text("Name", bucket)
    doc.raw("Prefix", enc(prefix))
    if version == 1:
        doc.raw("Marker", enc(marker))
        if delimiter and result.is_truncated and result.next_marker is not None:
            doc.raw("NextMarker", enc(result.next_marker))
    else:
        if start_after:
            doc.raw("StartAfter", enc(start_after))
        if continuation_token:
            doc.text("ContinuationToken", continuation_token)
        if result.is_truncated and next_continuation_token:
            doc.text("NextContinuationToken", next_continuation_token)
        doc.raw("KeyCount", str(len(result.entries) + len(result.common_prefixes)))
    doc.raw("MaxKeys", str(max_keys))
    if delimiter:
        doc.raw("Delimiter", enc(delimiter))
    if url:
        doc.raw("EncodingType", "url")
    doc.raw("IsTruncated", "true" if result.is_truncated else "false")
    show_owner = version == 1 or fetch_owner
    for entry in result.entries:
        parts.append(
            f"<Contents><Key>{enc(entry.key)}</Key>"
            f"<LastModified>{object_time(entry.last_modified)}</LastModified>"
            f"<ETag>{ref_quoted_etag(entry.etag)}</ETag>"
            f"<Size>{entry.size}</Size>"
        )
        if show_owner and entry.owner:
            doc.owner("Owner", entry.owner, entry.owner)
        parts.append(f"<StorageClass>{xmlio.escape(entry.storage_class)}</StorageClass></Contents>")
    for common in result.common_prefixes:
        parts.append(f"<CommonPrefixes><Prefix>{enc(common)}</Prefix></CommonPrefixes>")
    return doc.finish("ListBucketResult")


def ref_list_object_versions_xml(
    result: ListResult,
    *,
    bucket: str,
    prefix: str,
    delimiter: str | None,
    max_keys: int,
    encoding_type: str | None,
    key_marker: str = "",
    version_id_marker: str = "",
    next_key_marker: str | None = None,
    next_version_id_marker: str | None = None,
) -> bytes:
    url = encoding_type is not None and encoding_type.lower() == "url"
    enc = ref_url_escape if url else xmlio.escape
    doc = xmlio._Doc("ListVersionsResult")
    parts = doc.parts
    doc.text("Name", bucket)
    doc.raw("Prefix", enc(prefix))
    doc.raw("KeyMarker", enc(key_marker))
    doc.text("VersionIdMarker", version_id_marker)
    if result.is_truncated:
        next_key = next_key_marker if next_key_marker is not None else result.next_marker
        if next_key is not None:
            doc.raw("NextKeyMarker", enc(next_key))
        if next_version_id_marker is not None:
            doc.text("NextVersionIdMarker", next_version_id_marker)
    doc.raw("MaxKeys", str(max_keys))
    if delimiter:
        doc.raw("Delimiter", enc(delimiter))
    if url:
        doc.raw("EncodingType", "url")
    doc.raw("IsTruncated", "true" if result.is_truncated else "false")
    for entry in result.entries:
        version_id = xmlio.escape(entry.version_id) if entry.version_id is not None else "null"
        latest = "true" if entry.is_latest else "false"
        if entry.delete_marker:
            parts.append("<DeleteMarker>")
            if entry.owner:
                doc.owner("Owner", entry.owner, entry.owner)
            parts.append(
                f"<Key>{enc(entry.key)}</Key><VersionId>{version_id}</VersionId>"
                f"<IsLatest>{latest}</IsLatest>"
                f"<LastModified>{object_time(entry.last_modified)}</LastModified></DeleteMarker>"
            )
        else:
            parts.append(
                f"<Version><Key>{enc(entry.key)}</Key><VersionId>{version_id}</VersionId>"
                f"<IsLatest>{latest}</IsLatest>"
                f"<LastModified>{object_time(entry.last_modified)}</LastModified>"
                f"<ETag>{ref_quoted_etag(entry.etag)}</ETag><Size>{entry.size}</Size>"
                f"<StorageClass>{xmlio.escape(entry.storage_class)}</StorageClass>"
            )
            if entry.owner:
                doc.owner("Owner", entry.owner, entry.owner)
            parts.append("</Version>")
    for common in result.common_prefixes:
        parts.append(f"<CommonPrefixes><Prefix>{enc(common)}</Prefix></CommonPrefixes>")
    return doc.finish("ListVersionsResult")


def ref_listing_entry(key: str, value: bytes) -> ListEntry | None:
    d = json.loads(value.partition(b"\x00")[0])  # inline data follows a NUL
    if d.get("dm", False):
        return None
    return ListEntry(key=key, size=d["size"], etag=d["etag"], last_modified=d["ts"],
                     storage_class=d.get("class", "STANDARD"), owner=d.get("owner", ""),
                     version_id=d.get("vid"))  # fmt: skip


# -- strategies -----------------------------------------------------------------------

# Everything a key can hold: XML specials, URL specials, C0 controls (CR, TAB,
# LF, U+0001...), non-ASCII, non-BMP, and unpaired surrogates (never in a
# valid key, but a listing must not crash on one).
SPECIAL = st.sampled_from(list("&<>\"'%+ /=?#~._-\\") + ["\r", "\t", "\n", "\x01", "\x1f", "\x7f", "é", "\u2028",
                                                         "\U0001f600", "\ud800", "\udfff", "\ufffe"])  # fmt: skip
TEXT = st.lists(st.one_of(SPECIAL, st.characters(), st.sampled_from("abcXYZ019")), max_size=12).map("".join)
SAFE_TEXT = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCZ0129_.~/-", max_size=20)
KEY = st.one_of(TEXT, SAFE_TEXT)
ETAG = st.one_of(st.from_regex(r"[0-9a-f]{32}(-[0-9]{1,5})?", fullmatch=True), TEXT, TEXT.map(lambda t: f'"{t}"'))
MS = st.one_of(st.integers(min_value=-(10**12), max_value=253402300799999),
               st.integers(min_value=1795675550000, max_value=1795675553000))  # fmt: skip
CLASS = st.one_of(st.sampled_from(["STANDARD", "REDUCED_REDUNDANCY", "GLACIER"]), TEXT)
OWNER = st.one_of(st.sampled_from(["", "admin", "alice"]), TEXT)
VERSION_ID = st.one_of(st.none(), st.text(alphabet="abcdefABCDEF0123456789._-", min_size=1, max_size=32), TEXT)

ENTRY = st.builds(ListEntry, key=KEY, size=st.integers(min_value=0, max_value=5 << 40), etag=ETAG,
                  last_modified=MS, storage_class=CLASS, owner=OWNER, version_id=VERSION_ID,
                  is_latest=st.booleans(), delete_marker=st.booleans())  # fmt: skip
RESULT = st.builds(ListResult, entries=st.lists(ENTRY, max_size=12), common_prefixes=st.lists(KEY, max_size=4),
                   is_truncated=st.booleans(), next_marker=st.one_of(st.none(), KEY))  # fmt: skip
ENCODING = st.sampled_from([None, "url", "URL"])


@DETERMINISTIC
@given(KEY)
def test_url_escape_is_quote(text: str) -> None:
    assert xmlio._url_escape(text) == ref_url_escape(text)


@DETERMINISTIC
@given(RESULT, st.sampled_from([1, 2]), KEY, st.one_of(st.none(), KEY), ENCODING, KEY, st.one_of(st.none(), KEY),
       st.booleans(), st.integers(min_value=0, max_value=1000))  # fmt: skip
def test_list_objects_xml_is_byte_identical(
    result: ListResult, version: int, prefix: str, delimiter: str | None, encoding: str | None, marker: str,
    start_after: str | None, fetch_owner: bool, max_keys: int,
) -> None:  # fmt: skip
    kwargs: dict[str, Any] = dict(version=version, bucket="bucket-1", prefix=prefix, delimiter=delimiter,
                                  max_keys=max_keys, encoding_type=encoding, marker=marker,
                                  continuation_token="dG9rZW4=", next_continuation_token="bmV4dA==",
                                  start_after=start_after, fetch_owner=fetch_owner)  # fmt: skip
    assert xmlio.list_objects_xml(result, **kwargs) == ref_list_objects_xml(result, **kwargs)


@DETERMINISTIC
@given(RESULT, KEY, st.one_of(st.none(), KEY), ENCODING, KEY, st.one_of(st.none(), KEY))
def test_list_object_versions_xml_is_byte_identical(
    result: ListResult, prefix: str, delimiter: str | None, encoding: str | None, key_marker: str,
    next_version_id_marker: str | None,
) -> None:  # fmt: skip
    kwargs: dict[str, Any] = dict(bucket="bucket-1", prefix=prefix, delimiter=delimiter, max_keys=7,
                                  encoding_type=encoding, key_marker=key_marker, version_id_marker="v1",
                                  next_version_id_marker=next_version_id_marker)  # fmt: skip
    assert xmlio.list_object_versions_xml(result, **kwargs) == ref_list_object_versions_xml(result, **kwargs)


def test_entry_texts_memo_tells_seconds_and_values_apart() -> None:
    """Entries sharing a second but not a millisecond, and the same owner or
    class again, come out as if formatted one by one."""
    entries = [ListEntry(key=f"k{i}", size=i, etag="e", last_modified=1795675550000 + ms, owner=owner,
                         storage_class=cls)  # fmt: skip
               for i, (ms, owner, cls) in enumerate([(0, "a", "STANDARD"), (999, "a", "GLACIER"), (1000, "b", "GLACIER"),
                                                      (1, "", "STANDARD"), (86400000, "a<", "X&Y")])]  # fmt: skip
    result = ListResult(entries, [], False)
    for version in (1, 2):
        kwargs: dict[str, Any] = dict(version=version, bucket="b", prefix="", delimiter=None, max_keys=1000,
                                      encoding_type=None, fetch_owner=True)  # fmt: skip
        body = xmlio.list_objects_xml(result, **kwargs)
        assert body == ref_list_objects_xml(result, **kwargs)
    # Whole seconds, as AWS and the Last-Modified header give them.
    assert b"<LastModified>2026-11-26T06:45:50.000Z</LastModified>" in body
    assert b"<LastModified>2026-11-26T06:45:51.000Z</LastModified>" in body
    assert b".999Z" not in body
    assert b"<Owner><ID>a&lt;</ID><DisplayName>a&lt;</DisplayName></Owner>" in body
    assert b"<StorageClass>X&amp;Y</StorageClass>" in body


# -- record decoding --------------------------------------------------------------------

def _no_surrogates(text: str) -> str:
    """``text`` with unpaired surrogates replaced: a stored record is UTF-8."""
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


STORED_TEXT = TEXT.map(_no_surrogates)
RECORD = st.builds(
    ObjectRecord, key=STORED_TEXT, size=st.integers(min_value=0, max_value=5 << 40), etag=ETAG.map(_no_surrogates),
    created_at=MS, version_id=st.one_of(st.none(), st.text(alphabet="abcdef0123456789", min_size=32, max_size=32)),
    content_type=st.one_of(st.just("binary/octet-stream"), STORED_TEXT),
    # Field names of the record itself as metadata and tag names.
    metadata=st.dictionaries(st.sampled_from(["owner", "class", "dm", "size", "m"]), STORED_TEXT, max_size=3),
    tags=st.dictionaries(st.sampled_from(["owner", "dm", "t"]), STORED_TEXT, max_size=2),
    storage_class=st.sampled_from(["STANDARD", "GLACIER"]), delete_marker=st.booleans(),
    chunks=st.lists(st.builds(ChunkRef, st.text(alphabet="abc012", min_size=1, max_size=8),
                              st.integers(0, 1 << 40), st.integers(0, 1 << 23), st.integers(0, (1 << 32) - 1)),
                    max_size=3),
    inline=st.one_of(st.none(), st.binary(max_size=40)),
    owner=st.one_of(st.just(""), STORED_TEXT), part_sizes=st.lists(st.integers(0, 1 << 30), max_size=3),
    sequence=st.integers(0, 1 << 40), null_sequence=st.one_of(st.none(), st.integers(0, 1 << 40)),
)  # fmt: skip


@DETERMINISTIC
@given(RECORD)
def test_listing_entry_matches_json_loads(record: ObjectRecord) -> None:
    value = records.encode_object(record)
    assert records.record_fields(value) == json.loads(value.partition(b"\x00")[0])
    assert records.listing_entry(record.key, value) == ref_listing_entry(record.key, value)


def test_listing_entry_reads_paged_records() -> None:
    record = ObjectRecord(key="p", size=9, etag="e", created_at=1, manifest=Manifest("m", [0, 4], 2), owner="o")
    value = records.encode_object(record)
    assert records.listing_entry("p", value) == ref_listing_entry("p", value)


@pytest.mark.parametrize("value", [b' {"a": 1} ', b'{"a":1}\n', b"\t[1, 2]", b'"x"', b"1", b"null "])
def test_load_record_takes_what_json_loads_takes(value: bytes) -> None:
    """Whitespace around a value (never written, but legal JSON) still decodes."""
    assert records._load_record(value) == json.loads(value)


@pytest.mark.parametrize("value", [b"", b"{", b'{"a":1}x', b'{"a":1}{"b":2}', b"nul", b'{"a":}', b"\xff", b'{"a":1,}'])
def test_load_record_refuses_what_json_loads_refuses(value: bytes) -> None:
    with pytest.raises(ValueError) as expected:
        json.loads(value.decode("utf-8"))
    with pytest.raises(type(expected.value)):
        records._load_record(value)


# -- the listing itself, against a model ------------------------------------------------------


class DictStore:
    """Just enough IMetadataStore for listings: a dict scanned in byte order,
    counting the scans."""

    def __init__(self, rows: dict[bytes, bytes]) -> None:
        self.rows = dict(sorted(rows.items()))
        self.scans = 0

    def scan(self, start: bytes, end: bytes, limit: int = 0) -> Any:
        self.scans += 1
        found = [KeyValue(k, v, 1) for k, v in self.rows.items() if start <= k < end]
        return succeed(found[:limit] if limit > 0 else found)


def _store(names: dict[str, bool], bucket_id: str = "b1") -> DictStore:
    rows = {}
    for i, (name, dm) in enumerate(names.items()):
        record = ObjectRecord(key=name, size=i, etag=f"e{i}", created_at=1795675550000 + i, delete_marker=dm,
                              owner="admin")  # fmt: skip
        rows[keys.object_key(bucket_id, name)] = records.encode_object(record)
    return DictStore(rows)


def model_list(names: dict[str, bool], prefix: str, delimiter: str | None, after: str | None,
               max_keys: int) -> tuple[list[str], list[str], bool, str | None]:  # fmt: skip
    """S3's ListObjects over ``names`` (name -> is a delete marker), row by row.

    A page of zero keys is empty and not truncated whatever the bucket holds
    (AWS's max-keys=0; :func:`lightningstor.core.listing.asks_nothing`).
    """
    if max_keys == 0:
        return [], [], False, None
    b = lambda s: s.encode("utf-8")  # noqa: E731
    ordered = sorted((n for n in names if n.startswith(prefix)), key=b)
    start = b(prefix)
    skip_prefix: str | None = None
    if after is not None and b(after) >= b(prefix):
        start = b(after) + b"\x00"
        if delimiter and after.find(delimiter, len(prefix)) == len(after) - len(delimiter):
            skip_prefix = after
    entries: list[str] = []
    prefixes: list[str] = []
    last: str | None = None
    for name in ordered:
        if b(name) < start or (skip_prefix is not None and name.startswith(skip_prefix)):
            continue
        if names[name]:
            continue
        cp = None
        if delimiter:
            i = name.find(delimiter, len(prefix))
            cp = name[: i + len(delimiter)] if i >= 0 else None
        if cp is not None and prefixes and prefixes[-1] == cp:
            continue
        if len(entries) + len(prefixes) >= max_keys:
            return entries, prefixes, True, last
        if cp is not None:
            prefixes.append(cp)
            last = cp
        else:
            entries.append(name)
            last = name
    return entries, prefixes, False, None


NAME = st.lists(st.sampled_from(["a", "b", "/", "é", "\U0001f600", "\x01", "&"]), min_size=1, max_size=5).map("".join)


@DETERMINISTIC
@given(st.dictionaries(NAME, st.booleans(), max_size=40), st.sampled_from(["", "a", "a/", "b"]),
       st.sampled_from([None, "/", "a"]), st.one_of(st.none(), NAME), st.integers(min_value=0, max_value=12))  # fmt: skip
def test_list_objects_matches_the_model(names: dict[str, bool], prefix: str, delimiter: str | None,
                                        after: str | None, max_keys: int) -> None:  # fmt: skip
    store = _store(names)
    d = listing.list_objects(store, "b1", prefix=prefix, delimiter=delimiter, after=after, max_keys=max_keys)
    assert d.called  # the store answers at once
    got = d.result
    expected = model_list(names, prefix, delimiter, after, max_keys)
    assert ([e.key for e in got.entries], got.common_prefixes, got.is_truncated, got.next_marker) == expected
    for e in got.entries:
        i = list(names).index(e.key)
        assert (e.size, e.etag, e.last_modified, e.owner, e.storage_class) == (i, f"e{i}", 1795675550000 + i,
                                                                                "admin", "STANDARD")  # fmt: skip


@pytest.mark.parametrize("markers", [False, True])
def test_flat_listing_walk(markers: bool) -> None:
    """A walk pages through every listed key once; without delete markers a
    1,000-key page learns it is truncated from its one scan (max_keys + 1 rows)."""
    names = {f"k{i:05d}": markers and i % 7 == 3 for i in range(2600)}
    store = _store(names)
    seen: list[str] = []
    after = None
    pages = 0
    while True:
        store.scans = 0
        d = listing.list_objects(store, "b1", after=after, max_keys=1000)
        page = d.result
        pages += 1
        assert store.scans == 1 or markers
        seen += [e.key for e in page.entries]
        if not page.is_truncated:
            break
        assert page.next_marker == seen[-1]
        after = page.next_marker
    assert seen == [n for n, dm in names.items() if not dm]
    assert pages == 3


@pytest_twisted.inlineCallbacks
def test_sqlite_scan_items_are_the_scanned_rows(tmp_path: Path) -> Any:
    """``scan_items`` (what a flat listing reads from SQLite) gives the rows
    ``scan`` gives, and a listing over it equals one over a plain store."""
    names = {n: i % 5 == 2 for i, n in enumerate(["a", "a/b", "a\x01", "b", "é", "\U0001f600", "z/" * 3] +
                                                 [f"k{i:04d}" for i in range(1500)])}  # fmt: skip
    plain = _store(names)
    store = SqliteMetadataStore(str(tmp_path / "meta.db"), reactor)
    try:
        result = yield store.txn([], [Put(k, v) for k, v in plain.rows.items()])
        assert result.succeeded
        base = keys.objects_prefix("b1")
        for start, end, limit in [(base, prefix_end(base), 0), (base, prefix_end(base), 7),
                                  (base + b"k0100", base + b"k0200", 1001), (base + b"zz", prefix_end(base), 5)]:  # fmt: skip
            rows = yield store.scan(start, end, limit)
            items = yield store.scan_items(start, end, limit)
            assert items == [(kv.key, kv.value) for kv in rows]
        for after, max_keys in [(None, 1000), (None, 3), ("k0999", 1000), ("k1499", 10)]:
            got = yield listing.list_objects(store, "b1", after=after, max_keys=max_keys)
            want = listing.list_objects(plain, "b1", after=after, max_keys=max_keys).result
            assert got == want
    finally:
        yield store.close()


# -- the optional IScanItems: used when declared, not needed otherwise -----------------------


@implementer(IMetadataStore)
class ScanOnlyStore:
    """A plugin written before IScanItems: every IMetadataStore method
    (passed on to a real store) and no ``scan_items``.  Counts scans."""

    name = "scan-only"

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.scans = 0

    def get(self, key: bytes) -> Any:
        return self._inner.get(key)

    def scan(self, start: bytes, end: bytes, limit: int = 0) -> Any:
        self.scans += 1
        return self._inner.scan(start, end, limit)

    def txn(self, compares: Any, operations: Any) -> Any:
        return self._inner.txn(compares, operations)

    def check(self) -> Any:
        return self._inner.check()

    def close(self) -> Any:
        return self._inner.close()


def forwarding_store(inner: Any) -> Any:
    """A layer that overrides ``scan`` and forwards every other attribute,
    ``scan_items`` included (a third party's metrics or namespace layer).
    Its scans must not be bypassed.

    The class is made afresh per call: the first ``implementedBy`` of a
    class stores a declaration on it, after which ``providedBy`` of its
    instances no longer looks through ``__getattr__``; a shared class would
    make what this test sees depend on which tests ran before it.
    """

    class ForwardingStore:
        def __init__(self, inner: Any) -> None:
            self.inner = inner
            self.scans = 0

        def scan(self, start: bytes, end: bytes, limit: int = 0) -> Any:
            self.scans += 1
            return self.inner.scan(start, end, limit)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

    return ForwardingStore(inner)


@implementer(IMetadataStore, IScanItems)
class ItemsDictStore(DictStore):
    """A DictStore declaring IScanItems; its ``scan`` fails, so a listing
    must read through ``scan_items``."""

    def __init__(self, rows: dict[bytes, bytes]) -> None:
        super().__init__(rows)
        self.item_scans = 0

    def scan(self, start: bytes, end: bytes, limit: int = 0) -> Any:
        raise AssertionError("listed through scan, though the store declares IScanItems")

    def scan_items(self, start: bytes, end: bytes, limit: int = 0) -> Any:
        self.item_scans += 1
        found = [(k, v) for k, v in self.rows.items() if start <= k < end]
        return succeed(found[:limit] if limit > 0 else found)


_LISTINGS: list[dict[str, Any]] = [
    {}, {"max_keys": 3}, {"prefix": "d1/"}, {"delimiter": "/"}, {"delimiter": "/", "max_keys": 2},
    {"after": "d2/k0500", "max_keys": 1000}, {"prefix": "d", "delimiter": "/", "after": "d1/"},
]  # fmt: skip
_NAMES = {n: i % 7 == 3 for i, n in enumerate([f"d{i % 4}/k{i:04d}" for i in range(1500)] + ["a", "é", "z/"])}


@inlineCallbacks
def _walk(store: Any, **kw: Any) -> Any:
    """Every page of a ListObjects walk, and every ListObjectVersions page of ``kw``."""
    pages, after = [], None
    while True:
        page = yield listing.list_objects(store, "b1", after=after, max_keys=1000)
        pages.append(page)
        if not page.is_truncated:
            break
        after = page.next_marker
    for case in _LISTINGS:
        page = yield listing.list_objects(store, "b1", **case)
        pages.append(page)
        vcase = {("key_marker" if k == "after" else k): v for k, v in case.items()}
        page = yield listing.list_object_versions(store, "b1", **vcase)
        pages.append(page)
    return pages


@pytest.mark.parametrize("wrapper", [ScanOnlyStore, forwarding_store])
@pytest_twisted.inlineCallbacks
def test_store_without_scan_items_lists_through_scan(tmp_path: Path, wrapper: Any) -> Any:
    """A store that does not declare IScanItems (a plugin without it, or a
    layer that forwards ``scan_items`` by ``__getattr__``) is listed through
    its own ``scan``, page for page as the SQLite store under it lists
    through ``scan_items``."""
    store = SqliteMetadataStore(str(tmp_path / "meta.db"), reactor)
    try:
        result = yield store.txn([], [Put(k, v) for k, v in _store(_NAMES).rows.items()])
        assert result.succeeded
        wrapped = wrapper(store)
        if wrapper is ScanOnlyStore:
            assert verifyObject(IMetadataStore, wrapped) and not IScanItems.providedBy(wrapped)
        else:  # providedBy sees the inner store's interfaces: why item_scanner asks the class
            assert IScanItems.providedBy(wrapped)
        got = yield _walk(wrapped)
        assert wrapped.scans >= len(got)
        want = yield _walk(store)
        assert got == want
        assert len(got[0].entries) == 1000 and got[0].is_truncated
    finally:
        yield store.close()


def test_declared_scan_items_is_what_listings_read() -> None:
    """A store declaring IScanItems is listed through ``scan_items`` only
    (its ``scan`` fails here), with the same pages as a scan-only store."""
    plain = _store(_NAMES)
    items = ItemsDictStore(plain.rows)
    got, want = _walk(items), _walk(plain)
    assert got.called and want.called
    assert got.result == want.result
    assert items.item_scans >= len(got.result)
