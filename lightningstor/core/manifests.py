"""Chunk lists of huge objects, paged over several metadata keys.

An object record lists its chunks (about 75 bytes each in JSON), so a 5 TiB
object of 8 MiB chunks would need a 50 MB record: etcd refuses values over
``--max-request-bytes`` (1.5 MiB by default), and even SQLite would decode
that much on every HEAD.  A record with more than ``chunks_per_record``
chunks therefore keeps its list in *manifest pages* instead:

* ``manifests/{manifest_id}/{page:06d}`` holds up to ``chunks_per_record``
  chunk refs in the records' own ``chunks`` format, plus the bucket id and
  key of the object (``b``, ``k``) and when it was written (``t``, ms), so
  the collector and the scrub can find the record a page belongs to;
* the record holds ``mf``: the manifest id, the object offset at which each
  page starts (a few bytes per page: a range read loads only the pages it
  needs), and the number of chunks.

Pages are written before the commit, one page per transaction (each stays
far below etcd's request limit), and never change: a version that moves
between key spaces keeps them.  The transaction that removes the version for
good removes its pages too (one range delete).  A commit that surely failed
deletes them again; a crash before the commit leaves them to the collector,
which drops pages no record has named for its grace period, measured on its
own clock (:func:`orphaned`; the ``t`` of a page is only informative).
"""

from __future__ import annotations

import json
import uuid
from bisect import bisect_right
from collections.abc import Sequence
from typing import Any

from twisted.internet.defer import Deferred, fail, inlineCallbacks, succeed
from twisted.logger import Logger

from lightningstor.core import keys, records, scans
from lightningstor.core.types import ChunkRef, Manifest, ObjectRecord
from lightningstor.interfaces.metadata import DeleteRange, IMetadataStore, Operation, Put, prefix_end

log = Logger()

#: Default ``[metadata] chunks_per_record``: ~150 KB per page or record.
DEFAULT_CHUNKS_PER_RECORD = 2000





class PagesMissing(RuntimeError):
    """A manifest's pages are not (all) there: the record that named it was
    removed or replaced meanwhile (a writer that read the record must read
    it again), or the store lost them."""

def _page(bucket_id: str, key: str, now_ms: int, batch: Sequence[ChunkRef]) -> bytes:
    return records.dumps({
        "b": bucket_id, "k": key, "t": now_ms,
        "chunks": records.encode_chunks(batch),
    })  # fmt: skip


@inlineCallbacks
def write(
    store: IMetadataStore, bucket_id: str, record: ObjectRecord, per_page: int, now_ms: int
) -> Any:
    """Deferred[Manifest]: page ``record.chunks`` out (before the commit) and
    set ``record.manifest``; the record then encodes without its chunk list
    (``record.chunks`` stays filled in memory).

    One page is encoded and written at a time, so a list of hundreds of
    thousands of chunks never holds the reactor for more than a page's
    encoding (a few ms).
    """
    chunks = record.chunks
    starts: list[int] = []
    offset = 0
    for first in range(0, len(chunks), per_page):
        starts.append(offset)
        offset += sum(c.size for c in chunks[first : first + per_page])
    # Set first, so that a failure part-way has the caller drop what was written.
    manifest = record.manifest = Manifest(uuid.uuid4().hex, starts, len(chunks))
    for page, first in enumerate(range(0, len(chunks), per_page)):
        value = _page(bucket_id, record.key, now_ms, chunks[first : first + per_page])
        yield store.txn([], [Put(keys.manifest_page_key(manifest.manifest_id, page), value)])
    return manifest


def drop_op(manifest: Manifest) -> Operation:
    """The operation that removes every page of ``manifest`` (joins the
    transaction that removes its version for good)."""
    prefix = keys.manifest_prefix(manifest.manifest_id)
    return DeleteRange(prefix, prefix_end(prefix))


@inlineCallbacks
def drop(store: IMetadataStore, manifest: Manifest) -> Any:
    """Deferred[None]: best-effort removal of the pages of a commit that failed."""
    try:
        yield store.txn([], [drop_op(manifest)])
    except Exception:
        log.failure("Removing manifest {id} of a failed commit failed", id=manifest.manifest_id)


@inlineCallbacks
def load(store: IMetadataStore, manifest: Manifest, first_page: int = 0, last_page: int | None = None) -> Any:
    """Deferred[list[ChunkRef]] of pages ``first_page..last_page`` (all by default)."""
    last = len(manifest.starts) - 1 if last_page is None else last_page
    out: list[ChunkRef] = []
    page = first_page
    while page <= last:
        batch = min(8, last - page + 1)  # a few pages (~150 KB each) per read
        rows = yield store.scan(
            keys.manifest_page_key(manifest.manifest_id, page),
            keys.manifest_page_key(manifest.manifest_id, page + batch),
            batch,
        )
        if len(rows) != batch:
            raise PagesMissing(f"manifest {manifest.manifest_id} is missing pages {page}..{page + batch - 1}")
        for kv in rows:
            out.extend(records.decode_chunks(json.loads(kv.value)["chunks"]))
        page += batch
    return out


@inlineCallbacks
def chunks_of(store: IMetadataStore, record: ObjectRecord) -> Any:
    """Deferred[list[ChunkRef]]: every chunk of ``record``, paged or not."""
    if record.manifest is None:
        return record.chunks
    chunks = yield load(store, record.manifest)
    return chunks


@inlineCallbacks
def chunks_for_range(store: IMetadataStore, record: ObjectRecord, start: int, length: int) -> Any:
    """Deferred[(chunks, base)]: chunks covering ``[start, start + length)``,
    the first of which begins at object offset ``base``.  Only the pages the
    range touches are read."""
    manifest = record.manifest
    if manifest is None or length <= 0:
        return record.chunks, 0
    starts = manifest.starts
    first = max(0, bisect_right(starts, start) - 1)
    last = max(first, bisect_right(starts, start + length - 1) - 1)
    chunks = yield load(store, manifest, first, last)
    return chunks, starts[first]


def open_reader(
    store: IMetadataStore, chunk_manager: Any, record: ObjectRecord, start: int, length: int, cipher: Any = None
) -> Deferred[Any]:
    """Deferred[ObjectReader] of bytes ``[start, start + length)`` of ``record``
    (decrypted with ``cipher``, core/sse.py, when the record is encrypted).

    Fired at once when the chunk list is in the record (every object but the
    largest): no generator for the common GET.
    """
    if record.encryption is not None and cipher is None:
        return fail(ValueError("an encrypted object needs its cipher to be read"))
    if record.manifest is None:
        try:
            return succeed(chunk_manager.read(record.chunks, record.inline, start, length, cipher))
        except Exception:
            return fail()
    return _open_paged_reader(store, chunk_manager, record, start, length, cipher)


@inlineCallbacks
def _open_paged_reader(
    store: IMetadataStore, chunk_manager: Any, record: ObjectRecord, start: int, length: int, cipher: Any
) -> Any:
    chunks, base = yield chunks_for_range(store, record, start, length)
    return chunk_manager.read(chunks, None, start - base, length, cipher)


# -- the collector's side --------------------------------------------------------


def record_names(value: bytes, manifest_id: str) -> bool:
    """Whether the record ``value`` keeps its chunk list in ``manifest_id``."""
    try:
        d = records.record_fields(value)  # an inline object's data follows its JSON
    except ValueError:
        return True  # unreadable: never drop on a guess
    mf = d.get("mf")
    return isinstance(mf, dict) and mf.get("id") == manifest_id


@inlineCallbacks
def orphaned(store: IMetadataStore, manifest_id: str, first_page: bytes) -> Any:
    """Deferred[bool]: no version of the page's object names this manifest
    (:func:`scans.any_version`, which guards against versions moving while
    it reads)."""
    try:
        head = json.loads(first_page)
        bucket_id, key = head["b"], head["k"]
    except (ValueError, KeyError, TypeError):
        return False

    def names(value: bytes) -> bool:
        return record_names(value, manifest_id)

    kept = yield scans.any_version(store, bucket_id, key, names)
    return not kept
