"""The chunk index: for each chunk, where the record that holds it can be found.

The orphan collector (core/collector.py) must tell a chunk some record still
needs from one a crash left behind.  Scanning every record for that would
cost a full pass over the metadata per collection, so each chunk has an
entry ``chunks/{chunk_id}`` naming where its holder lives:

* ``{"b": bucket_id, "k": key, "t": ms}`` for chunks written by a PUT or a
  copy: the object key, whose current record or one of whose noncurrent
  versions lists the chunk;
* the same plus ``"u": upload_id, "n": part_number`` for chunks of a
  multipart part: the part record while the upload is open, and the object
  key once it is completed.

**The entries are hints, never moved.**  An earlier design wrote exact
entries (naming the record key) in the commit's transaction, which made a
commit carry one operation per chunk and every version move (demote,
promote, multipart completion) rewrite them all: an object of more than
about 120 chunks then exceeded etcd's default limit of 128 operations per
transaction.  Now a short list (up to :data:`IN_COMMIT` chunks) rides in
its commit and a longer one goes in before it, in batches of
:data:`BATCH`; and since a hint names the object key rather than the
version's record key, versions move without touching them.

The price is that an entry no longer proves a reference: a hint may outlive
its holder (a crash between a commit and the unindexing that follows a
delete) or precede it (the commit has not happened yet).  So the collector
*resolves* a hint (:func:`still_referenced`): it reads the records the hint
names and checks that one of them lists the chunk, repeating the reads if
the object key changed meanwhile (a version promoted from the noncurrent key
space could otherwise slip between two reads).  A commit that has not
happened yet is protected by time measured on one clock: the collector
removes a chunk or an entry only after it has seen it unreferenced for its
grace period (24 h) on its own clock (core/collector.py), and a write that
has not stored all its chunks within ``limits.max_write_seconds`` (at most
half that) fails instead of committing (storage/chunks.py).  The ``t`` in
a hint is the writer's clock: informative only, never compared.

Entries written by releases before this format held the record key itself
(``lightningstor/...``); they are treated as references (the old meaning)
until the record's deletion removes them.

The entry is also how chunk repair finds what a chunk should hold
(:func:`recorded`): the record it leads to lists the chunk's length and
CRC32C, which decides between replicas that disagree
(storage/repair.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.logger import Logger

from lightningstor.core import keys, manifests, records, scans
from lightningstor.core.types import ChunkRef, Manifest
from lightningstor.interfaces.metadata import Delete, IMetadataStore, Operation, Put

log = Logger()

# Operations per index transaction: under etcd's default --max-txn-ops (128).
BATCH = 100
# Lists up to this long ride in their commit's own transaction (one durable
# write fewer per PUT or part); the commit then stays far under 128 operations.
IN_COMMIT = 64


def object_hint(bucket_id: str, key: str, now_ms: int) -> bytes:
    """The entry of a chunk written by a PUT or a copy of ``key``."""
    return records.dumps({"b": bucket_id, "k": key, "t": now_ms})


def part_hint(bucket_id: str, key: str, upload_id: str, part_number: int, now_ms: int) -> bytes:
    """The entry of a chunk of part ``part_number`` of a multipart upload."""
    return records.dumps({"b": bucket_id, "k": key, "u": upload_id, "n": part_number, "t": now_ms})




def is_legacy(value: bytes) -> bool:
    """An entry of the earlier format: the holder's record key itself."""
    return value.startswith(keys.ROOT)


def decode_hint(value: bytes) -> dict[str, Any] | None:
    """The hint of an entry; None for a legacy entry or one that cannot be read."""
    if is_legacy(value):
        return None
    try:
        hint = json.loads(value)
    except ValueError:
        return None
    if not isinstance(hint, dict) or not isinstance(hint.get("b"), str) or not isinstance(hint.get("k"), str):
        return None
    return hint


def hint_time_ms(value: bytes) -> int | None:
    """When the entry was written (ms), if it says."""
    hint = decode_hint(value)
    t = hint.get("t") if hint is not None else None
    return t if isinstance(t, int) else None


# -- writing and removing entries ---------------------------------------------------


@inlineCallbacks
def prepare(store: IMetadataStore, chunks: Sequence[ChunkRef], hint: bytes) -> Any:
    """Deferred[list[Operation]]: the entries of ``chunks`` for the commit's
    own transaction when the list is short (:data:`IN_COMMIT`), else ``[]``
    once they have been written ahead in batches (:func:`index`; the caller
    then takes them back with :func:`forget` if the commit surely failed)."""
    if len(chunks) <= IN_COMMIT:
        return [Put(keys.chunk_key(c.chunk_id), hint) for c in chunks]
    yield index(store, chunks, hint)
    return []


@inlineCallbacks
def index(store: IMetadataStore, chunks: Sequence[ChunkRef], hint: bytes) -> Any:
    """Deferred[None]: write the entries of ``chunks`` (before their commit).

    Plain puts in batches of :data:`BATCH`, no compares: chunk ids are never
    reused, so a repeated or concurrent batch writes the same thing.
    """
    ops: list[Operation] = [Put(keys.chunk_key(c.chunk_id), hint) for c in chunks]
    for start in range(0, len(ops), BATCH):
        yield store.txn([], ops[start : start + BATCH])


@inlineCallbacks
def unindex(store: IMetadataStore, chunk_ids: Iterable[str]) -> Any:
    """Deferred[None]: remove the entries of chunks that are about to be deleted."""
    ops: list[Operation] = [Delete(keys.chunk_key(chunk_id)) for chunk_id in chunk_ids]
    for start in range(0, len(ops), BATCH):
        yield store.txn([], ops[start : start + BATCH])


@inlineCallbacks
def release(
    store: IMetadataStore, chunks: Sequence[ChunkRef], delete: Callable[[list[ChunkRef]], Any]
) -> Any:
    """Deferred[None] once ``chunks`` whose holder is gone for good are
    unindexed; ``delete`` is then asked to remove their data.  Never fails.

    In this order a crash in between leaves chunks without entries, which
    the collector reclaims; the other order could leave entries naming
    chunks that no longer exist.  If unindexing fails (the metadata store
    is unavailable) the chunks stay too, for the collector to resolve.
    """
    if not chunks:
        return
    try:
        yield unindex(store, [c.chunk_id for c in chunks])
    except Exception:
        log.failure("Unindexing {n} released chunks failed; the collector will reclaim them", n=len(chunks))
        return
    # Deletion is not waited for (it may be delayed on purpose, so that
    # readers of the old record can finish); it logs its own failures.
    try:
        delete(list(chunks))
    except Exception:
        log.failure("Deleting {n} released chunks failed; the collector will reclaim them", n=len(chunks))


@inlineCallbacks
def forget(store: IMetadataStore, chunks: Sequence[ChunkRef]) -> Any:
    """Deferred[None]: best-effort removal of the entries of chunks that were
    indexed for a commit that did not happen (the writer deletes the data)."""
    try:
        yield unindex(store, [c.chunk_id for c in chunks])
    except Exception:
        log.failure("Unindexing {n} chunks of a failed commit failed", n=len(chunks))


# -- resolving a hint ---------------------------------------------------------------


@inlineCallbacks
def _lists(store: IMetadataStore, value: bytes, chunk_id: str, cache: dict[str, frozenset[str]] | None) -> Any:
    """Deferred[bool]: whether an object, version or part record lists ``chunk_id``.

    Those records share the ``chunks`` field's format (core/records.py,
    core/multipart.py), so it is read without decoding the rest; a record
    whose list is paged (``mf``, core/manifests.py) is looked up in its
    pages, read once per ``cache``."""
    try:
        d = records.record_fields(value)
    except ValueError:
        return True  # unreadable: assume it does, never delete on a guess
    mf = d.get("mf")
    if isinstance(mf, dict):
        ids = cache.get(mf.get("id", "")) if cache is not None else None
        if ids is None:
            try:
                chunks = yield manifests.load(store, Manifest(mf["id"], mf["s"], mf["n"]))
            except Exception:
                log.failure("Reading manifest {id} failed; its chunks are kept", id=mf.get("id"))
                return True
            ids = frozenset(c.chunk_id for c in chunks)
            if cache is not None:
                cache[mf["id"]] = ids
        return chunk_id in ids
    return any(c[0] == chunk_id for c in d.get("chunks", ()))


def still_referenced(
    store: IMetadataStore, chunk_id: str, value: bytes, cache: dict[str, frozenset[str]] | None = None
) -> Deferred[bool]:
    """Deferred[bool]: whether a record the entry ``value`` names lists the chunk:
    a version of its object key, or its part record (:func:`scans.any_version`,
    which also guards against versions moving while it reads).

    Legacy and unreadable entries count as references.  ``cache`` keeps the
    chunk ids of paged lists between calls (one collector pass).
    """
    hint = decode_hint(value)
    if hint is None:
        return succeed(True)
    upload_id, part_number = hint.get("u"), hint.get("n")
    also = []
    if isinstance(upload_id, str) and isinstance(part_number, int):
        also.append(keys.part_key(upload_id, part_number))

    def lists(record: bytes) -> Deferred[bool]:
        d: Deferred[bool] = _lists(store, record, chunk_id, cache)
        return d

    found: Deferred[bool] = scans.any_version(store, hint["b"], hint["k"], lists, also)
    return found


@inlineCallbacks
def _ref_in(store: IMetadataStore, value: bytes, chunk_id: str) -> Any:
    """Deferred[ChunkRef | None]: ``chunk_id``'s entry in the chunk list of
    the record ``value`` (its pages for a paged list), None if it has none."""
    try:
        d = records.record_fields(value)
    except ValueError:
        return None
    mf = d.get("mf")
    if isinstance(mf, dict):
        chunks = yield manifests.load(store, Manifest(mf["id"], mf["s"], mf["n"]))
    else:
        chunks = records.decode_chunks([c for c in d.get("chunks", ()) if c and c[0] == chunk_id])
    return next((c for c in chunks if c.chunk_id == chunk_id), None)


@inlineCallbacks
def recorded(store: IMetadataStore, chunk_id: str) -> Any:
    """Deferred[(length, CRC32C) | None]: what ``chunk_id`` holds according
    to a record that lists it, found through the chunk's index entry (one
    read of the entry, then the records its hint names); None when there is
    no entry or no record lists the chunk (an orphan, or an index entry
    lost: scrub re-creates those).

    Chunk repair asks this for a chunk whose replicas disagree, so that the
    copy matching the record wins (storage/repair.py).  Every record listing
    a chunk lists the same length and CRC32C (chunk ids are never reused),
    so the first one found is the answer.
    """
    entry = yield store.get(keys.chunk_key(chunk_id))
    if entry is None:
        return None
    found: list[ChunkRef] = []

    @inlineCallbacks
    def lists(record: bytes) -> Any:
        ref = yield _ref_in(store, record, chunk_id)
        if ref is not None:
            found.append(ref)
        return ref is not None

    hint = decode_hint(entry.value)
    if hint is not None:
        upload_id, part_number = hint.get("u"), hint.get("n")
        also = []
        if isinstance(upload_id, str) and isinstance(part_number, int):
            also.append(keys.part_key(upload_id, part_number))
        yield scans.any_version(store, hint["b"], hint["k"], lists, also)
    elif is_legacy(entry.value):
        holder = yield store.get(entry.value)
        if holder is not None:
            yield lists(holder.value)
    if not found:
        return None
    return found[0].size, found[0].checksum


def names_holder(value: bytes, holder: bytes) -> bool:
    """Whether the entry ``value`` leads to the record at ``holder`` (scrub's audit).

    A legacy entry must name the holder itself; a hint must name its object
    key (any version of it), or its part for a part record.
    """
    hint = decode_hint(value)
    if hint is None:
        return value == holder
    if holder.startswith(keys.MANIFESTS):
        return False  # pages are audited through their object key (core/scrub.py)
    if holder.startswith(keys.PARTS):
        upload_id, part_number = hint.get("u"), hint.get("n")
        return isinstance(upload_id, str) and isinstance(part_number, int) and (
            holder == keys.part_key(upload_id, part_number)
        )
    bucket_id, key = hint["b"], hint["k"]
    return holder == keys.object_key(bucket_id, key) or holder.startswith(
        keys.key_versions_prefix(bucket_id, key)
    )
