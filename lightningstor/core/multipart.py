"""Multipart uploads (SPEC §3.4): create, parts, complete, abort, listings.

Records live in their own key spaces (:mod:`lightningstor.core.keys`):

* ``uploads/{bucket_id}/{key}\\x00{upload_id}``: one per in-progress upload,
  ordered by object key, then by upload id (whose prefix is the initiation
  time, so a key's uploads list oldest first, as AWS lists them);
* ``parts/{upload_id}/{part_number:05d}``: one per stored part.

Consistency rests on one rule: *every* change to an upload's parts rewrites
the upload record in the same transaction, guarded by the revision it read.
The upload record's revision is therefore a version number for the whole
upload, and completion/abort, which guard on it, can never miss a part that
was stored (or replaced) after they scanned the parts.  Concurrent part
uploads of one upload retry their (small, metadata-only) commit when another
part wins the race.

Data is never copied at completion: a part's bytes are written as chunks of
their own (inlining disabled) and indexed in the part's transaction (chunk
index owner = the part record key), so the orphan collector leaves them
alone.  Completion commits an object record whose chunk list is the
concatenation of the listed parts' chunks, through
:meth:`ObjectManager.commit`, which re-points their index entries at the
object; the same transaction deletes the upload, its part records and the
index entries of parts that were uploaded but not listed.  A crash therefore
leaves either the upload (complete can be retried, or the upload aborted) or
the whole object, never a mix.  Chunks of unlisted parts are deleted after
the commit (or by the collector, if the process dies first).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from awscrt import checksums as _crt
from twisted.internet.defer import Deferred, fail, inlineCallbacks
from twisted.logger import Logger

from lightningstor import errors
from lightningstor.checksums import ALGORITHMS, b64, new_hasher
from lightningstor.core import chunkindex, keys, manifests, records
from lightningstor.core.acl import acls_enabled, is_public
from lightningstor.core.buckets import bucket_guard, read_bucket_guard
from lightningstor.core.listing import asks_nothing
from lightningstor.core.objects import (
    DEFAULT_CHECKSUM,
    MAX_OBJECT_SIZE,
    ConflictError,
    ObjectManager,
    PutAttrs,
    effective_versioning,
    may_have_committed,
    validate_key,
)
from lightningstor.core.quotas import ZERO, BucketScope, Usage
from lightningstor.core.sse import CustomerKey, customer_etag, sse_applies
from lightningstor.core.types import Acl, Bucket, ChunkRef, Encryption, ObjectRecord, Principal, Versioning
from lightningstor.deferreds import uncancellable
from lightningstor.digits import clamped_int
from lightningstor.interfaces.metadata import (
    Compare,
    Delete,
    DeleteRange,
    IMetadataStore,
    KeyValue,
    Operation,
    Put,
    prefix_end,
)
from lightningstor.storage.chunks import pump

log = Logger()

MiB = 1 << 20
MIN_PART_SIZE = 5 * MiB  # every part but the last (AWS)
MAX_PART_SIZE = 5 * 1024**3
MAX_PART_NUMBER = 10000
MAX_LISTED = 1000  # ListParts max-parts / ListMultipartUploads max-uploads cap

COMPOSITE = "COMPOSITE"
FULL_OBJECT = "FULL_OBJECT"

# Full-object CRCs of a multipart object are combined from the parts' CRCs
# without re-reading data: crc(A || B) = combine(crc(A), crc(B), len(B)).
_COMBINE: dict[str, tuple[Callable[[int, int, int], int], int]] = {
    "crc32": (_crt.combine_crc32, 4),
    "crc32c": (_crt.combine_crc32c, 4),
    "crc64nvme": (_crt.combine_crc64nvme, 8),
}
# AWS: CRC64NVME supports only FULL_OBJECT; SHA-1/SHA-256 only COMPOSITE.
_COMPOSITE_ALGORITHMS = frozenset({"crc32", "crc32c", "sha1", "sha256"})
_DEFAULT_TYPE = {"crc32": COMPOSITE, "crc32c": COMPOSITE, "sha1": COMPOSITE, "sha256": COMPOSITE,
                 "crc64nvme": FULL_OBJECT}  # fmt: skip

_UPLOAD_ID = re.compile(r"[0-9a-f]{12}[A-Za-z0-9_-]{16,64}", re.ASCII)
_RETRIES = 100
# A repeated complete in a versioned bucket looks for the upload's object
# among this many of the key's newest noncurrent versions (one bounded scan;
# see MultipartManager._find_completed).
RETRY_VERSIONS_SCANNED = 16
_PARTS_DIGEST_BYTES = 16
_SCAN_BATCH = 1000
_FORMAT = 1


# -- values ------------------------------------------------------------------


@dataclass
class Upload:
    """An in-progress multipart upload: what CreateMultipartUpload fixed."""

    upload_id: str
    bucket_id: str
    key: str
    initiated_at: int  # Unix ms
    initiator: str  # principal id
    initiator_name: str = ""
    owner: str = ""
    content_type: str = "binary/octet-stream"
    system_headers: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    storage_class: str = "STANDARD"
    checksum_algorithm: str | None = None  # lower case, e.g. "crc32"
    checksum_type: str | None = None  # COMPOSITE | FULL_OBJECT (with an algorithm)
    # The bucket's org and project, for usage accounting: the parts of an
    # upload count against byte quotas (core.quotas) until it is completed
    # or aborted.  Records written before quotas existed have none and their
    # parts are not counted (so completing or aborting them releases nothing).
    org_id: str | None = None
    project_id: str | None = None
    # Object Lock settings CreateMultipartUpload asked for (core/objectlock.py),
    # given to the object when it is completed.
    lock_mode: str | None = None
    lock_until: int | None = None
    legal_hold: bool | None = None
    # SSE-S3 (core/sse.py): the upload's data key, wrapped; every part and
    # the completed object are encrypted with it.  None: plaintext.
    encryption: Encryption | None = None
    # The ACL CreateMultipartUpload asked for, given to the completed
    # object (core/acl.py); None: private.
    acl: Acl | None = None

    @property
    def usage_scope(self) -> BucketScope | None:
        """Where this upload's parts are counted, or None for an untracked upload."""
        if self.org_id is None:
            return None
        return BucketScope(self.org_id, self.project_id, self.bucket_id)


@dataclass
class Part:
    """One stored part."""

    part_number: int
    size: int
    etag: str  # hex MD5 of the part's bytes
    created_at: int  # Unix ms
    chunks: list[ChunkRef] = field(default_factory=list)
    checksums: dict[str, str] = field(default_factory=dict)  # algorithm -> base64
    # The part's CRC64NVME (base64) when its upload chose no checksum
    # algorithm: AWS computes this default for such a part, reports it in
    # UploadPart's answer (when the request chose no checksum either) and in
    # CompleteMultipartUpload's (combined into a FULL_OBJECT value), yet
    # keeps it nowhere a client reads later (ListParts, HeadObject,
    # GetObjectAttributes show none).  Parts stored before it existed have
    # none, and their upload's completion reports none.
    default_checksum: str | None = None


@dataclass(frozen=True)
class PartRef:
    """A part as CompleteMultipartUpload names it."""

    part_number: int
    etag: str  # unquoted
    checksums: Mapping[str, str] = field(default_factory=dict)


@dataclass
class PartListing:
    upload: Upload
    parts: list[Part]
    is_truncated: bool
    next_marker: int  # last part number listed (0 if none)


@dataclass
class UploadListing:
    uploads: list[Upload]
    common_prefixes: list[str]
    is_truncated: bool
    next_key_marker: str = ""
    next_upload_id_marker: str = ""


@dataclass
class Completed:
    record: ObjectRecord  # as committed (version id set if versioned)
    checksum_type: str | None  # COMPOSITE | FULL_OBJECT when the answer has a checksum
    # Checksums the answer reports that the object does not keep: the
    # default FULL_OBJECT CRC64NVME of an upload created without a checksum
    # algorithm, combined from its parts' (:attr:`Part.default_checksum`).
    reported_checksums: dict[str, str] = field(default_factory=dict)

    @property
    def answer_checksums(self) -> dict[str, str]:
        """What CompleteMultipartUpload answers (S3 and gRPC alike): the
        object's checksums, else the default it reports without keeping."""
        return self.record.checksums or self.reported_checksums


@dataclass(frozen=True)
class _Request:
    """What a complete request asks, as a repeated complete is compared by."""

    listed: Sequence[PartRef]
    expected_checksums: Mapping[str, str]
    checksum_type: str | None
    object_size: int | None


# -- pure rules ----------------------------------------------------------------


def checksum_type_of(checksums: Mapping[str, str]) -> str:
    """``COMPOSITE`` for a multipart object's checksum of part checksums
    (its value ends in ``-<part count>``), else ``FULL_OBJECT``."""
    for value in checksums.values():
        head, dash, count = value.rpartition("-")
        if dash and head and count.isdigit():
            return COMPOSITE
    return FULL_OBJECT


def validate_part_number(number: int) -> None:
    if not 1 <= number <= MAX_PART_NUMBER:
        raise errors.InvalidArgument(
            f"Part number must be an integer between 1 and {MAX_PART_NUMBER}, inclusive",
            ArgumentName="partNumber",
            ArgumentValue=str(number),
        )


def parse_part_number(raw: str | None) -> int:
    """The ``partNumber`` query parameter (ASCII digits only)."""
    if raw is None or not raw.isascii() or not raw.isdigit():
        raise errors.InvalidArgument(
            f"Part number must be an integer between 1 and {MAX_PART_NUMBER}, inclusive",
            ArgumentName="partNumber",
            ArgumentValue=str(raw),
        )
    number = clamped_int(raw)
    validate_part_number(number)
    return number


def resolve_checksum(algorithm: str | None, checksum_type: str | None) -> tuple[str | None, str | None]:
    """CreateMultipartUpload's x-amz-checksum-algorithm / -type -> (algorithm, type).

    The type defaults by algorithm as in AWS (CRC64NVME: FULL_OBJECT, the
    others COMPOSITE); combinations AWS refuses are InvalidRequest.
    """
    if not algorithm:
        if checksum_type:
            raise errors.InvalidRequest(
                "The x-amz-checksum-type header can only be used with the x-amz-checksum-algorithm header."
            )
        return None, None
    name = algorithm.strip().lower()
    if name not in ALGORITHMS:
        raise errors.InvalidRequest(f"Checksum algorithm provided is unsupported: {algorithm}")
    kind = checksum_type.strip().upper() if checksum_type else _DEFAULT_TYPE[name]
    if kind not in (COMPOSITE, FULL_OBJECT):
        raise errors.InvalidRequest(f"Value for x-amz-checksum-type header is invalid: {checksum_type}")
    if kind == FULL_OBJECT and name not in _COMBINE:
        raise errors.InvalidRequest(f"The {kind} checksum type cannot be used with the {name} checksum algorithm.")
    if kind == COMPOSITE and name not in _COMPOSITE_ALGORITHMS:
        raise errors.InvalidRequest(f"The {kind} checksum type cannot be used with the {name} checksum algorithm.")
    return name, kind


def missing_part_checksum(upload: Upload, listed: Sequence[PartRef]) -> None:
    """InvalidRequest if a complete of a COMPOSITE upload leaves out a part's checksum.

    AWS refuses such a complete with 400 InvalidRequest "The upload was
    created using a crc32 checksum. The complete request must include the
    checksum for each part. It was missing for part 1 in the request."
    (the first part without one): a composite checksum is a checksum of the
    part checksums, so the client must say which parts it checksummed.  A
    FULL_OBJECT upload's complete may leave them out (AWS accepts it: the
    whole-object CRC is combined from the parts' stored CRCs), and so may
    one of an upload without a checksum algorithm.  Checked before the parts
    are read and anything is written: a refused complete leaves the upload
    as it was, to be completed again.
    """
    algorithm = upload.checksum_algorithm
    if not algorithm or upload.checksum_type != COMPOSITE:
        return
    for ref in listed:
        if not any(name.lower() == algorithm for name in ref.checksums):
            raise errors.InvalidRequest(
                f"The upload was created using a {algorithm} checksum. The complete request must include "
                f"the checksum for each part. It was missing for part {ref.part_number} in the request."
            )


def consecutive_part_numbers(upload: Upload, listed: Sequence[PartRef]) -> None:
    """InvalidPartOrder if an upload with a checksum algorithm is completed
    from parts other than 1, 2, ... N.

    AWS's rule (CompletedPart, PartNumber): when an additional checksum is
    applied to each part, the part numbers must start at 1 and be
    consecutive, as a checksum of checksums numbers its parts by position.
    Checked, like :func:`missing_part_checksum`, before anything is read or
    written: the refused upload stays as it was.
    """
    if not upload.checksum_algorithm:
        return
    for position, ref in enumerate(listed, start=1):
        if ref.part_number != position:
            raise errors.InvalidPartOrder()


def multipart_etag(part_etags: Sequence[str]) -> str:
    """S3's multipart ETag: MD5 of the concatenated binary part MD5s, ``-N``."""
    digest = hashlib.md5(b"".join(bytes.fromhex(e) for e in part_etags)).hexdigest()
    return f"{digest}-{len(part_etags)}"


def bare_etag(etag: str) -> str:
    """A part ETag as a complete request names it, without space or quotes."""
    return etag.strip().strip('"')


def part_list_digest(parts: Sequence[tuple[int, str]]) -> str:
    """A digest of a completed part list: ``(part number, ETag)`` pairs, in order.

    Kept in the object record (:attr:`ObjectRecord.completed_parts`) to tell
    a repeated complete of the same list from a different one after the
    part records went with the upload.  The multipart ETag alone would not
    do: it covers the parts' bytes and count but not their numbers (parts 1
    and 3 of equal bytes give the ETag of parts 1 and 2).  Keeping the list
    itself would cost up to 10,000 entries per record; 16 bytes of SHA-256
    (22 base64url characters) are a fixed cost, and computing it is O(parts).
    """
    hasher = hashlib.sha256()
    for number, etag in parts:
        hasher.update(b"%d:%s\n" % (number, etag.encode("utf-8", "surrogatepass")))
    return base64.urlsafe_b64encode(hasher.digest()[:_PARTS_DIGEST_BYTES]).rstrip(b"=").decode("ascii")


def object_checksum_matches(have: str, want: str, checksum_type: str | None) -> bool:
    """Whether a client's whole-object x-amz-checksum-* value ``want`` is
    the object's ``have``; a COMPOSITE value may be sent without its ``-N``."""
    want = want.strip()
    if checksum_type == COMPOSITE and "-" not in want:
        have = have.rsplit("-", 1)[0]
    return _checksum_matches(have, want)


def composite_checksum(algorithm: str, part_values: Sequence[str]) -> str:
    """Checksum of the concatenated raw part checksums, base64, with ``-N``."""
    hasher = new_hasher(algorithm)
    for value in part_values:
        hasher.update(base64.b64decode(value))
    return f"{b64(hasher.digest())}-{len(part_values)}"


def full_object_crc(algorithm: str, parts: Sequence[tuple[str, int]]) -> str:
    """The whole object's CRC from ``(base64 part CRC, part size)`` pairs."""
    combine, width = _COMBINE[algorithm]
    crc = 0
    for value, size in parts:
        crc = combine(crc, int.from_bytes(base64.b64decode(value), "big"), size)
    return b64(crc.to_bytes(width, "big"))


def _completed(record: ObjectRecord, kind: str | None) -> Completed:
    """CompleteMultipartUpload's answer for ``record``: with the default
    checksum it reports (not keeps) when its upload had no algorithm."""
    if record.completed_checksums and not record.checksums:
        return Completed(record, FULL_OBJECT, dict(record.completed_checksums))
    return Completed(record, kind)


def default_object_checksum(parts: Sequence[Part]) -> dict[str, str]:
    """The default FULL_OBJECT CRC64NVME CompleteMultipartUpload reports for
    an upload created without a checksum algorithm, combined from its parts'
    CRCs (no data is read again); empty unless every part has one (a part
    stored before parts got it leaves the answer without: never an error)."""
    values = [p.checksums.get(DEFAULT_CHECKSUM) or p.default_checksum for p in parts]
    if not parts or not all(values):
        return {}
    return {DEFAULT_CHECKSUM: full_object_crc(DEFAULT_CHECKSUM, [(v or "", p.size) for v, p in zip(values, parts)])}


def part_range(record: ObjectRecord, part_number: int) -> tuple[int, int]:
    """``(first, last)`` byte offsets (inclusive) of part ``part_number``.

    Objects written in one request have one part, the whole object (AWS
    answers ``partNumber=1`` for them).  A number past the object's parts is
    AWS's 416 ``InvalidPartNumber``, with the number asked for and the count.
    An empty part gives ``last == first - 1``.
    """
    validate_part_number(part_number)
    sizes = record.part_sizes or [record.size]
    if part_number > len(sizes):
        raise errors.InvalidPartNumber(
            PartNumberRequested=str(part_number),
            ActualPartCount=str(len(sizes)),
        )
    start = sum(sizes[: part_number - 1])
    return start, start + sizes[part_number - 1] - 1


@dataclass
class ObjectPart:
    """A part of a completed multipart object, as GetObjectAttributes lists it."""

    part_number: int
    size: int
    checksums: dict[str, str]  # algorithm -> base64; empty when not kept


@dataclass
class ObjectPartsPage:
    """One page of a completed object's parts (GetObjectAttributes ObjectParts)."""

    parts_count: int
    parts: list[ObjectPart]
    is_truncated: bool
    next_marker: int  # the last part number listed (the marker when none)


def object_parts(record: ObjectRecord, marker: int, max_parts: int) -> ObjectPartsPage | None:
    """The parts of ``record`` numbered above ``marker``, at most ``max_parts``
    (capped at :data:`MAX_LISTED`); None for an object not written by
    multipart upload, which AWS answers without ObjectParts.

    Parts are numbered 1..N in the order they make up the object, as
    :func:`part_range` (GetObject ``partNumber``) numbers them.  Their
    checksums are those the record kept (:attr:`ObjectRecord.part_checksums`,
    empty for objects completed without a checksum algorithm or before the
    field existed).  ``max_parts`` 0 is an empty page, not truncated
    (:func:`asks_nothing`), like ListParts.
    """
    sizes = record.part_sizes
    if not sizes:
        return None
    count = len(sizes)
    if asks_nothing(max_parts):
        return ObjectPartsPage(count, [], False, marker)
    first = min(max(marker, 0), count)
    last = min(first + min(max_parts, MAX_LISTED), count)
    parts = [
        ObjectPart(
            number,
            sizes[number - 1],
            {a: values[number - 1] for a, values in record.part_checksums.items() if len(values) == count},
        )
        for number in range(first + 1, last + 1)
    ]
    return ObjectPartsPage(count, parts, last < count, parts[-1].part_number if parts else marker)


def new_upload_id(now: float) -> str:
    """Random and URL-safe; the hex millisecond prefix orders a key's uploads
    by initiation time, as ListMultipartUploads must."""
    return f"{int(now * 1000) & (1 << 48) - 1:012x}" + secrets.token_urlsafe(24)


def _concat_chunks(parts: Sequence[Part]) -> list[ChunkRef]:
    """The parts' chunks in order, offsets recomputed for the object."""
    out: list[ChunkRef] = []
    offset = 0
    for part in parts:
        for c in part.chunks:
            out.append(ChunkRef(c.chunk_id, offset, c.size, c.checksum))
            offset += c.size
    return out


def _checksum_matches(got: str, want: str) -> bool:
    return hmac.compare_digest(got.encode(), want.strip().encode())


def _same_completion(record: ObjectRecord, request: _Request) -> bool:
    """Whether ``request`` is the complete that made ``record``: the same
    part numbers and ETags, and nothing in it that the first complete would
    have refused (a checksum, checksum type or size the object does not have).

    Records written before :attr:`ObjectRecord.completed_parts` existed are
    compared by their multipart ETag (the parts' ETags, not their numbers).
    Per-part checksums are compared where the record kept them (those of the
    upload's algorithm); others a part may have had were checked by the
    first complete and went with the part records, and the part's ETag (an
    MD5 of the same bytes) already identifies it.
    """
    listed = request.listed
    if record.completed_parts is not None:
        if part_list_digest([(ref.part_number, bare_etag(ref.etag)) for ref in listed]) != record.completed_parts:
            return False
    else:
        try:
            if multipart_etag([bare_etag(ref.etag) for ref in listed]) != record.etag:
                return False
        except ValueError:  # not hex: no part ever had that ETag
            return False
    kind = checksum_type_of(record.checksums) if record.checksums else None
    # The default CRC64NVME the first complete answered with (an upload
    # without an algorithm): FULL_OBJECT, as that answer said.
    answered = record.checksums or record.completed_checksums or {}
    if not record.checksums and answered:
        kind = FULL_OBJECT
    if request.checksum_type and request.checksum_type.strip().upper() != (kind or ""):
        return False
    if request.object_size is not None and request.object_size != record.size:
        return False
    for name, value in request.expected_checksums.items():
        have = answered.get(name.lower())
        if have is None or not object_checksum_matches(have, value, kind):
            return False
    for index, ref in enumerate(listed):
        for name, value in ref.checksums.items():
            kept = record.part_checksums.get(name.lower())
            if kept is not None and len(kept) == len(listed) and not _checksum_matches(kept[index], value):
                return False
    return True


# -- records ---------------------------------------------------------------------




def encode_upload(u: Upload) -> bytes:
    d: dict[str, Any] = {"v": _FORMAT, "id": u.upload_id, "bucket": u.bucket_id, "key": u.key,
                         "ts": u.initiated_at, "by": u.initiator, "ct": u.content_type}  # fmt: skip
    if u.initiator_name:
        d["by_name"] = u.initiator_name
    if u.owner:
        d["owner"] = u.owner
    if u.system_headers:
        d["sys"] = u.system_headers
    if u.metadata:
        d["meta"] = u.metadata
    if u.tags:
        d["tags"] = u.tags
    if u.storage_class != "STANDARD":
        d["class"] = u.storage_class
    if u.checksum_algorithm:
        d["ck"] = [u.checksum_algorithm, u.checksum_type]
    if u.org_id is not None:
        d["scope"] = [u.org_id, u.project_id]
    if u.lock_mode is not None or u.legal_hold is not None:
        d["lock"] = [u.lock_mode, u.lock_until, u.legal_hold]
    if u.encryption is not None:
        d["sse"] = records.encode_encryption(u.encryption)
    if u.acl is not None:
        d["acl"] = records.encode_acl(u.acl)
    return records.dumps(d)


def decode_upload(data: bytes) -> Upload:
    d = json.loads(data)
    algorithm, kind = d.get("ck", (None, None))
    org_id, project_id = d.get("scope", (None, None))
    lock_mode, lock_until, legal_hold = d.get("lock", (None, None, None))
    return Upload(
        upload_id=d["id"], bucket_id=d["bucket"], key=d["key"], initiated_at=d["ts"],
        initiator=d.get("by", ""), initiator_name=d.get("by_name", ""), owner=d.get("owner", ""),
        content_type=d.get("ct", "binary/octet-stream"), system_headers=d.get("sys", {}),
        metadata=d.get("meta", {}), tags=d.get("tags", {}), storage_class=d.get("class", "STANDARD"),
        checksum_algorithm=algorithm, checksum_type=kind, org_id=org_id, project_id=project_id,
        lock_mode=lock_mode, lock_until=lock_until, legal_hold=legal_hold,
        encryption=records.decode_encryption(d["sse"]) if "sse" in d else None,
        acl=records.decode_acl(d["acl"]) if "acl" in d else None,
    )  # fmt: skip


def encode_part(p: Part) -> bytes:
    d: dict[str, Any] = {"v": _FORMAT, "n": p.part_number, "size": p.size, "etag": p.etag, "ts": p.created_at}
    if p.chunks:
        d["chunks"] = records.encode_chunks(p.chunks)
    if p.checksums:
        d["ck"] = p.checksums
    if p.default_checksum is not None:
        d["dck"] = p.default_checksum
    return records.dumps(d)


def decode_part(data: bytes) -> Part:
    d = json.loads(data)
    return Part(
        part_number=d["n"], size=d["size"], etag=d["etag"], created_at=d["ts"],
        chunks=records.decode_chunks(d.get("chunks", ())),
        checksums=d.get("ck", {}), default_checksum=d.get("dck"),
    )  # fmt: skip


def _common_prefix(key: str, prefix: str, delimiter: str | None) -> str | None:
    if not delimiter:
        return None
    i = key.find(delimiter, len(prefix))
    return None if i < 0 else key[: i + len(delimiter)]


# -- the manager -----------------------------------------------------------------


class MultipartManager:
    """Every multipart rule; the S3 layer only translates the wire format.

    ``chunks`` is the :class:`~lightningstor.storage.chunks.ChunkManager`;
    the limits default to AWS's and come from ``[limits]`` in a server.
    """

    def __init__(
        self,
        store: IMetadataStore,
        chunks: Any,
        objects: ObjectManager,
        clock: Callable[[], float],
        *,
        min_part_size: int = MIN_PART_SIZE,
        max_part_size: int = MAX_PART_SIZE,
        max_parts: int = MAX_PART_NUMBER,
        max_object_size: int = MAX_OBJECT_SIZE,
    ) -> None:
        self._store = store
        self._chunks = chunks
        self._objects = objects
        self._quotas = objects.quotas
        self._clock = clock
        self.min_part_size = min_part_size
        self.max_part_size = max_part_size
        self.max_parts = max_parts
        self.max_object_size = max_object_size
        # SSE-S3 keys (core/sse.py), set by the Core; None: encryption refused.
        self.sse: Any = None

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    # -- uploads -------------------------------------------------------------

    @inlineCallbacks
    def create(
        self,
        bucket: Bucket,
        key: str,
        attrs: PutAttrs,
        *,
        initiator: Principal,
        checksum_algorithm: str | None = None,
        checksum_type: str | None = None,
    ) -> Any:
        """Deferred[Upload]: a new upload; ``attrs`` become the object's attributes.

        NoSuchBucket if the bucket was deleted since the caller read it: the
        creation compares the bucket record's revision, so every upload of a
        deleted bucket was created before the deletion and is aborted with it
        (an upload does not keep the bucket alive: it does not clear a
        pending deletion, see core/buckets.py).
        """
        validate_key(key)
        algorithm, kind = resolve_checksum(checksum_algorithm, checksum_type)
        alive = bucket_guard(bucket, keep_alive=False)
        for _attempt in range(_RETRIES):
            if alive is None:
                alive = yield read_bucket_guard(self._store, bucket, keep_alive=False)
            now = self._clock()
            upload = Upload(
                upload_id=new_upload_id(now),
                bucket_id=bucket.bucket_id,
                key=key,
                initiated_at=int(now * 1000),
                initiator=initiator.principal_id,
                initiator_name=initiator.display_name,
                owner=attrs.owner or initiator.principal_id,
                content_type=attrs.content_type,
                system_headers=dict(attrs.system_headers),
                metadata=dict(attrs.metadata),
                tags=dict(attrs.tags),
                storage_class=attrs.storage_class,
                checksum_algorithm=algorithm,
                checksum_type=kind,
                org_id=bucket.org_id,
                project_id=bucket.project_id,
                lock_mode=attrs.lock_mode,
                lock_until=attrs.lock_until,
                legal_hold=attrs.legal_hold,
                acl=attrs.acl,
            )
            if attrs.customer_key is not None:
                # SSE-C (which wins over the bucket default): every part
                # must come with the same key (the handlers check it).
                upload.encryption = self.sse.customer_cipher(attrs.customer_key).encryption
            elif sse_applies(bucket, attrs.encryption):
                # One data key for the whole upload: its parts become the
                # object's chunks as they are.
                upload.encryption = self.sse.new_cipher(key).encryption
            ukey = keys.upload_key(bucket.bucket_id, key, upload.upload_id)
            result = yield self._store.txn([Compare(ukey, 0), alive.compare], [Put(ukey, encode_upload(upload))])
            if result.succeeded:
                return upload
            alive = None  # the bucket changed (NoSuchBucket if it went), or the id was taken
        raise errors.SlowDown("Could not allocate an upload id")

    @inlineCallbacks
    def _load(self, bucket: Bucket, key: str, upload_id: str) -> Any:
        """Deferred[(upload key, KeyValue, Upload)]; NoSuchUpload if absent."""
        if not _UPLOAD_ID.fullmatch(upload_id or ""):
            raise errors.NoSuchUpload(UploadId=str(upload_id))
        validate_key(key)
        ukey = keys.upload_key(bucket.bucket_id, key, upload_id)
        kv = yield self._store.get(ukey)
        if kv is None:
            raise errors.NoSuchUpload(UploadId=upload_id)
        return ukey, kv, decode_upload(kv.value)

    @inlineCallbacks
    def get(self, bucket: Bucket, key: str, upload_id: str) -> Any:
        """Deferred[Upload]; NoSuchUpload unless ``upload_id`` is in progress for this key."""
        _ukey, _kv, upload = yield self._load(bucket, key, upload_id)
        return upload

    @inlineCallbacks
    def _scan_parts(self, upload_id: str) -> Any:
        """Deferred[list[(KeyValue, Part)]] of every stored part, in order."""
        prefix = keys.parts_prefix(upload_id)
        rows = yield self._store.scan(prefix, prefix_end(prefix))
        return [(kv, decode_part(kv.value)) for kv in rows]

    # -- parts ---------------------------------------------------------------

    def new_part_writer(
        self, upload: Upload, algorithms: Sequence[str] = (), customer: CustomerKey | None = None
    ) -> Any:
        """A ChunkManager writer for one part: never inline (a part's bytes
        become the object's chunks), hashing the upload's checksum too, or
        the default one (:attr:`Part.default_checksum`) for an upload
        without.
        An SSE-C upload's parts need its ``customer`` key (core/sse.py)."""
        wanted = {a.lower() for a in algorithms}
        if upload.checksum_algorithm:
            wanted.add(upload.checksum_algorithm)
        else:
            wanted.add(DEFAULT_CHECKSUM)
        cipher = None if upload.encryption is None else self.sse.cipher(upload.encryption, upload.key, customer)
        return self._chunks.new_writer(tuple(sorted(wanted)), inline_threshold=-1, cipher=cipher)

    @uncancellable
    @inlineCallbacks
    def commit_part(
        self, upload: Upload, part_number: int, result: Any, checksums: Mapping[str, str]
    ) -> Any:
        """Deferred[Part]: store a written part (a ChunkManager WriteResult).

        Replaces a part of the same number (its chunks are deleted after the
        commit).  Fails with NoSuchUpload if the upload was completed or
        aborted meanwhile, QuotaExceeded if the part does not fit its
        bucket's byte quotas; on any failure the caller still owns (and must
        delete) the written chunks.
        """
        validate_part_number(part_number)
        if result.size > self.max_part_size:
            raise errors.EntityTooLarge(MaxSizeAllowed=str(self.max_part_size), ProposedSize=str(result.size))
        if result.inline is not None:
            raise ValueError("a part must be written with inlining disabled")
        etag = customer_etag(result.md5_hex, upload.encryption)
        part = Part(part_number, result.size, etag, self._now_ms(), list(result.chunks), dict(checksums))
        if upload.checksum_algorithm and upload.checksum_algorithm not in part.checksums:
            digest = result.digests.get(upload.checksum_algorithm)
            if digest is None:
                raise ValueError("the part writer did not compute the upload's checksum")
            part.checksums[upload.checksum_algorithm] = b64(digest)
        elif not upload.checksum_algorithm and DEFAULT_CHECKSUM not in part.checksums and DEFAULT_CHECKSUM in result.digests:
            part.default_checksum = b64(result.digests[DEFAULT_CHECKSUM])
        hint = chunkindex.part_hint(upload.bucket_id, upload.key, upload.upload_id, part_number, self._now_ms())
        index_ops = yield chunkindex.prepare(self._store, part.chunks, hint)
        try:
            committed = yield self._commit_part(upload, part, index_ops)
        except Exception as e:
            if part.chunks and not index_ops and not may_have_committed(e):
                yield chunkindex.forget(self._store, part.chunks)  # written ahead
            raise
        return committed

    @inlineCallbacks
    def _commit_part(self, upload: Upload, part: Part, index_ops: Sequence[Operation]) -> Any:
        part_number = part.part_number
        ukey = keys.upload_key(upload.bucket_id, upload.key, upload.upload_id)
        pkey = keys.part_key(upload.upload_id, part_number)
        encoded = encode_part(part)
        for _attempt in range(_RETRIES):
            ukv = yield self._store.get(ukey)
            if ukv is None:
                raise errors.NoSuchUpload(UploadId=upload.upload_id)
            pkv = yield self._store.get(pkey)
            old = decode_part(pkv.value) if pkv is not None else None
            scope = upload.usage_scope
            delta = Usage(upload_bytes=part.size - (old.size if old is not None else 0))
            quota = yield self._quotas.plan(scope, delta, object_size=part.size)
            ops: list[Operation] = [Put(ukey, ukv.value), Put(pkey, encoded)]  # bump the upload's revision
            ops += [*quota.ops, *index_ops]
            compares = [Compare(ukey, ukv.mod_revision), Compare(pkey, pkv.mod_revision if pkv else 0)]
            outcome = yield self._store.txn([*compares, *quota.compares], ops)
            if outcome.succeeded:
                self._quotas.committed(quota)
                if old is not None:
                    yield chunkindex.release(self._store, old.chunks, self._chunks.delete_chunks)
                return part
            self._quotas.conflicted(scope)
        raise errors.SlowDown("Too many concurrent writes to this upload")

    def check_part_length(self, upload: Upload, part_number: int, length: int | None) -> Any:
        """Deferred[None]: refuse a part of ``length`` bytes (None: not
        declared) that can never be committed, before a byte of it is
        stored: ``EntityTooLarge`` past :attr:`max_part_size`,
        ``QuotaExceeded`` past the bucket's quotas.  UploadPart over S3
        (from its headers) and gRPC (from its first message) and
        UploadPartCopy (from its range) ask it; the commit decides exactly."""
        if length is not None and length > self.max_part_size:
            return fail(errors.EntityTooLarge(MaxSizeAllowed=str(self.max_part_size), ProposedSize=str(length)))
        return self._quotas.check_part(upload.usage_scope, upload.upload_id, part_number, length)

    @inlineCallbacks
    def copy_part(
        self,
        upload: Upload,
        part_number: int,
        source: ObjectRecord,
        start: int,
        length: int,
        customer: CustomerKey | None = None,
        source_customer: CustomerKey | None = None,
    ) -> Any:
        """Deferred[Part]: UploadPartCopy of ``source`` bytes ``[start, start + length)``.

        Streams piece by piece (bounded memory) into new chunks of the part.
        ``customer`` / ``source_customer``: the SSE-C keys of the upload
        and of the source, for those that are SSE-C.
        """
        validate_part_number(part_number)
        yield self.check_part_length(upload, part_number, length)
        source_cipher = None
        if source.encryption is not None:
            source_cipher = self.sse.cipher(source.encryption, source.key, source_customer)
        writer = self.new_part_writer(upload, (), customer)
        reader = yield manifests.open_reader(self._store, self._chunks, source, start, length, source_cipher)
        # pump aborts the writer if the copy fails (the client gone included);
        # only a failed commit below may have landed, so it decides there.
        result = yield Deferred.fromCoroutine(pump(reader, writer))
        try:
            part = yield self.commit_part(upload, part_number, result, {})
        except BaseException as e:
            if not may_have_committed(e):
                yield writer.abort()
            raise
        return part

    @inlineCallbacks
    def list_parts(self, bucket: Bucket, key: str, upload_id: str, *, marker: int = 0,
                   max_parts: int = MAX_LISTED) -> Any:  # fmt: skip
        """Deferred[PartListing]: parts numbered above ``marker``, at most ``max_parts``.

        ``max_parts`` 0 is an empty page, not truncated (:func:`asks_nothing`);
        the upload is still looked up (NoSuchUpload, and the page describes it).
        """
        _ukey, _kv, upload = yield self._load(bucket, key, upload_id)
        if asks_nothing(max_parts):
            return PartListing(upload, [], False, 0)
        max_parts = min(max_parts, MAX_LISTED)
        prefix = keys.parts_prefix(upload_id)
        start = keys.part_key(upload_id, marker + 1) if marker < MAX_PART_NUMBER else prefix_end(prefix)
        rows = yield self._store.scan(start, prefix_end(prefix), max_parts + 1)
        parts = [decode_part(kv.value) for kv in rows[:max_parts]]
        truncated = len(rows) > max_parts
        return PartListing(upload, parts, truncated, parts[-1].part_number if parts else 0)

    # -- listing uploads -------------------------------------------------------

    @inlineCallbacks
    def list_uploads(
        self,
        bucket: Bucket,
        *,
        prefix: str = "",
        delimiter: str | None = None,
        key_marker: str = "",
        upload_id_marker: str = "",
        max_uploads: int = MAX_LISTED,
    ) -> Any:
        """Deferred[UploadListing], in AWS's order: key, then initiation.

        ``upload_id_marker`` counts only with ``key_marker`` (then uploads of
        that key after that id follow); a ``key_marker`` that is one of the
        common prefixes skips the whole prefix.  Like object listing, each
        common prefix costs one seek, not a read of every upload under it.
        ``max_uploads`` 0 is an empty page, not truncated (:func:`asks_nothing`).
        """
        if asks_nothing(max_uploads):
            return UploadListing([], [], False)
        max_uploads = min(max_uploads, MAX_LISTED)
        base = keys.uploads_prefix(bucket.bucket_id)
        lower = base + prefix.encode("utf-8")
        end = prefix_end(lower)
        pos = lower
        if key_marker:
            marker = base + key_marker.encode("utf-8")
            if upload_id_marker:
                after = marker + b"\x00" + upload_id_marker.encode("utf-8") + b"\x00"
            elif _common_prefix(key_marker, prefix, delimiter) == key_marker:
                after = prefix_end(marker)
            else:
                after = marker + b"\x01"  # past every "key\x00id" of the marker key
            pos = max(pos, after)
        uploads: list[Upload] = []
        prefixes: list[str] = []
        last: tuple[str, str] = ("", "")
        while True:
            room = max_uploads - len(uploads) - len(prefixes)
            rows: list[KeyValue] = yield self._store.scan(pos, end, min(room + 1, _SCAN_BATCH))
            if not rows:
                return UploadListing(uploads, prefixes, False)
            for kv in rows:
                if len(uploads) + len(prefixes) >= max_uploads:
                    return UploadListing(uploads, prefixes, True, *last)
                key = kv.key[len(base) :].split(b"\x00", 1)[0].decode("utf-8")
                cp = _common_prefix(key, prefix, delimiter)
                if cp is not None:
                    prefixes.append(cp)
                    last = (cp, "")
                    pos = prefix_end(base + cp.encode("utf-8"))
                    break
                upload = decode_upload(kv.value)
                uploads.append(upload)
                last = (upload.key, upload.upload_id)
                pos = kv.key + b"\x00"
            else:
                if len(rows) < min(room + 1, _SCAN_BATCH):
                    return UploadListing(uploads, prefixes, False)

    # -- completing and aborting -------------------------------------------------

    @uncancellable
    @inlineCallbacks
    def complete(
        self,
        bucket: Bucket,
        key: str,
        upload_id: str,
        listed: Sequence[PartRef],
        *,
        conditions: PutAttrs | None = None,
        expected_checksums: Mapping[str, str] | None = None,
        checksum_type: str | None = None,
        object_size: int | None = None,
        public_acls_blocked: bool = False,
        part_checksums_required: bool = False,
    ) -> Any:
        """Deferred[Completed]: commit the object made of the ``listed`` parts.

        ``expected_checksums`` are whole-object x-amz-checksum-* values the
        client sent (BadDigest if they differ), ``checksum_type`` its
        x-amz-checksum-type and ``object_size`` its x-amz-mp-object-size.
        With ``part_checksums_required`` (S3's rule, :func:`missing_part_checksum`)
        a COMPOSITE upload's complete must name every part's checksum; the
        gRPC API's part checksums are optional ("if the client kept it").
        The ACL the upload was created with is taken as the bucket stands
        now: dropped (the bucket owner owns the object) if the bucket's
        ACLs were disabled since, and 403 AccessDenied if it is public and
        ``public_acls_blocked`` (BlockPublicAcls, turned on since).
        Exactly one of concurrent completes/aborts of an upload wins; the
        aborts that lose get NoSuchUpload, and so do completes, except that
        a complete of an upload that is gone because a complete of the same
        parts committed it (a client retrying after a lost answer) gets that
        complete's answer while the object it made still exists, as AWS
        answers a repeated complete (:meth:`_completed_before`).  Nothing is
        held in memory for it: the object record names its upload and part
        list, so the answer survives a restart and reaches every worker.
        """
        _check_order(listed, self.max_parts)
        for _attempt in range(_RETRIES):
            try:
                ukey, ukv, upload = yield self._load(bucket, key, upload_id)
            except errors.NoSuchUpload:
                request = _Request(listed, expected_checksums or {}, checksum_type, object_size)
                done = yield self._completed_before(bucket, key, upload_id, request)
                if done is None:
                    raise
                return done
            if part_checksums_required:
                missing_part_checksum(upload, listed)
            consecutive_part_numbers(upload, listed)
            stored = yield self._scan_parts(upload_id)
            by_number = {part.part_number: part for _kv, part in stored}
            try:
                parts = self._listed_parts(upload, listed, by_number)
                record, kind = self._build_record(upload, parts, expected_checksums or {}, checksum_type, object_size)
            except errors.S3Error:
                moved = yield self._upload_moved(ukey, ukv)
                if moved:
                    continue  # the parts were read after a complete/abort/part landed: look again
                raise
            if not acls_enabled(bucket):
                record.acl, record.owner = None, bucket.created_by
            elif public_acls_blocked and is_public(record.acl):
                raise errors.AccessDenied(resource=f"/{bucket.name}/{key}")
            listed_numbers = {p.part_number for p in parts}
            unlisted = [p for p in by_number.values() if p.part_number not in listed_numbers]
            pprefix = keys.parts_prefix(upload_id)
            extra_ops: list[Operation] = [Delete(ukey), DeleteRange(pprefix, prefix_end(pprefix))]
            # The parts stop counting as upload bytes; the object counts instead.
            released = ZERO
            if upload.usage_scope is not None:
                released = Usage(upload_bytes=-sum(p.size for p in by_number.values()))
            try:
                committed = yield self._objects.commit(
                    bucket, record, conditions, extra_compares=[Compare(ukey, ukv.mod_revision)],
                    extra_ops=extra_ops, extra_usage=released, indexed=True,
                )  # fmt: skip
            except ConflictError:
                continue  # a part changed, or another complete/abort won: look again
            except (errors.PreconditionFailed, errors.NoSuchKey):
                moved = yield self._upload_moved(ukey, ukv)
                if moved:
                    continue  # the object checked is this upload's own (a concurrent same complete)
                raise
            # The listed parts' index hints already lead to the object key.
            garbage = [c for p in unlisted for c in p.chunks]
            yield chunkindex.release(self._store, garbage, self._chunks.delete_chunks)
            return _completed(committed if committed is not None else record, kind)
        raise errors.SlowDown("Too many concurrent changes to this upload")

    @inlineCallbacks
    def _upload_moved(self, ukey: bytes, ukv: KeyValue) -> Any:
        kv = yield self._store.get(ukey)
        return kv is None or kv.mod_revision != ukv.mod_revision

    @inlineCallbacks
    def _completed_before(self, bucket: Bucket, key: str, upload_id: str, request: _Request) -> Any:
        """Deferred[Completed | None]: the answer of the complete that already
        made ``upload_id`` into an object, when ``request`` is that same
        complete (:func:`_same_completion`); None if there was none, the
        object is gone, or the request differs.

        The write conditions (If-Match, If-None-Match) are not checked again:
        the complete that committed the object met them, and the retry of a
        conditional complete must not fail on the object it made itself.
        """
        record = yield self._find_completed(bucket, key, upload_id)
        if record is None or not _same_completion(record, request):
            return None
        return _completed(record, checksum_type_of(record.checksums) if record.checksums else None)

    @inlineCallbacks
    def _find_completed(self, bucket: Bucket, key: str, upload_id: str) -> Any:
        """Deferred[ObjectRecord | None]: the version of ``key`` that
        ``upload_id`` was completed into, if it is still there.

        The current version first (one read: a retry follows its complete
        within seconds).  In a bucket with versioning configured the object
        may have been overwritten or hidden by a delete marker since, yet it
        still exists: then the key's newest :data:`RETRY_VERSIONS_SCANNED`
        noncurrent versions are looked at, in one bounded scan (versions are
        not indexed by upload, and a search of the whole history would cost
        a read of every version of the key for every unknown upload id).
        Of those, only the JSON fields are parsed (not the chunk lists into
        ChunkRefs) until one names the upload.
        """
        current = yield self._objects.find(bucket, key)
        if current is not None and current.upload_id == upload_id and not current.delete_marker:
            return current
        if effective_versioning(bucket, current) is Versioning.DISABLED:
            return None  # an unversioned key keeps no older versions
        prefix = keys.key_versions_prefix(bucket.bucket_id, key)
        rows = yield self._store.scan(prefix, prefix_end(prefix), RETRY_VERSIONS_SCANNED)
        for kv in rows:
            if records.record_fields(kv.value).get("up") == upload_id:
                return records.decode_object(kv.value)
        return None

    @inlineCallbacks
    def checksum_algorithm(self, bucket: Bucket, key: str, upload_id: str) -> Any:
        """Deferred[str | None]: the algorithm of the checksum values a
        complete of ``upload_id`` carries (the gRPC API sends values without
        naming it).  For an upload already completed into an object still
        there, that of the object, so a repeated complete reads the same;
        NoSuchUpload otherwise."""
        try:
            upload = yield self.get(bucket, key, upload_id)
        except errors.NoSuchUpload:
            record = yield self._find_completed(bucket, key, upload_id)
            if record is None:
                raise
            # A multipart object has one checksum, of its upload's algorithm.
            return next(iter(record.checksums), None)
        return upload.checksum_algorithm

    def _listed_parts(self, upload: Upload, listed: Sequence[PartRef], stored: Mapping[int, Part]) -> list[Part]:
        parts: list[Part] = []
        for ref in listed:
            part = stored.get(ref.part_number)
            if part is None or part.etag != bare_etag(ref.etag):
                raise errors.InvalidPart(
                    UploadId=upload.upload_id, PartNumber=str(ref.part_number), ETag=ref.etag
                )
            for algorithm, value in ref.checksums.items():
                have = part.checksums.get(algorithm.lower())
                if have is None and algorithm.lower() == DEFAULT_CHECKSUM:
                    # The CRC64NVME the server computed and answered for a part
                    # of an upload without an algorithm: the client may echo it.
                    have = part.default_checksum
                if have is None or not _checksum_matches(have, value):
                    raise errors.InvalidPart(
                        f"The {algorithm.upper()} checksum of part {ref.part_number} does not match the stored part.",
                        UploadId=upload.upload_id, PartNumber=str(ref.part_number), ETag=ref.etag,
                    )  # fmt: skip
            parts.append(part)
        # Sizes only once every part is known to exist: an unknown part is
        # InvalidPart even when an earlier one is also too small.
        for ref, part in zip(listed[:-1], parts[:-1]):
            if part.size < self.min_part_size:
                raise errors.EntityTooSmall(
                    UploadId=upload.upload_id, PartNumber=str(ref.part_number), ETag=ref.etag,
                    ProposedSize=str(part.size), MinSizeAllowed=str(self.min_part_size),
                )  # fmt: skip
        return parts

    def _build_record(
        self,
        upload: Upload,
        parts: Sequence[Part],
        expected: Mapping[str, str],
        checksum_type: str | None,
        object_size: int | None,
    ) -> tuple[ObjectRecord, str | None]:
        size = sum(p.size for p in parts)
        if size > self.max_object_size:
            raise errors.EntityTooLarge(MaxSizeAllowed=str(self.max_object_size), ProposedSize=str(size))
        if object_size is not None and object_size != size:
            raise errors.InvalidRequest(
                f"The provided x-amz-mp-object-size ({object_size}) does not match the object's size ({size})."
            )
        algorithm, kind = upload.checksum_algorithm, upload.checksum_type
        # An upload without an algorithm answers with the default FULL_OBJECT
        # CRC64NVME: a complete may state that type and value, checked as such.
        default = {} if algorithm else default_object_checksum(parts)
        stated_kind = kind or (FULL_OBJECT if default else None)
        if checksum_type and checksum_type.strip().upper() != (stated_kind or ""):
            if checksum_type.strip().upper() not in (COMPOSITE, FULL_OBJECT):
                raise errors.InvalidRequest(f"Value for x-amz-checksum-type header is invalid: {checksum_type}")
            # BadDigest, as AWS's reference of the request's ChecksumType says.
            raise errors.BadDigest(
                f"The upload was created using the {kind or 'null'} checksum mode. "
                f"The complete request must use the same checksum mode."
            )
        checksums: dict[str, str] = {}
        if algorithm:
            values = [p.checksums[algorithm] for p in parts]
            if kind == FULL_OBJECT:
                checksums[algorithm] = full_object_crc(algorithm, [(v, p.size) for v, p in zip(values, parts)])
            else:
                checksums[algorithm] = composite_checksum(algorithm, values)
        for name, value in expected.items():
            have = checksums.get(name.lower()) or default.get(name.lower())
            if have is None:
                raise errors.InvalidRequest(
                    f"The upload was created using the {algorithm or 'null'} checksum algorithm; "
                    f"x-amz-checksum-{name} cannot be checked."
                )
            if not object_checksum_matches(have, value, stated_kind):
                raise errors.BadDigest(f"The {name.upper()} you specified did not match the calculated checksum.")
        record = ObjectRecord(
            key=upload.key,
            size=size,
            etag=multipart_etag([p.etag for p in parts]),
            created_at=self._now_ms(),
            content_type=upload.content_type,
            system_headers=dict(upload.system_headers),
            metadata=dict(upload.metadata),
            checksums=checksums,
            storage_class=upload.storage_class,
            chunks=_concat_chunks(parts),
            tags=dict(upload.tags),
            owner=upload.owner,
            part_sizes=[p.size for p in parts],
            # Kept for GetObjectAttributes: the part records go with the upload.
            part_checksums={algorithm: values} if algorithm else {},
            # Without an algorithm: the default the answer reports, not kept
            # as the object's checksum (as AWS; see default_object_checksum).
            completed_checksums=default,
            upload_id=upload.upload_id,
            completed_parts=part_list_digest([(p.part_number, p.etag) for p in parts]),
            lock_mode=upload.lock_mode,
            lock_until=upload.lock_until,
            legal_hold=upload.legal_hold,
            encryption=upload.encryption,
            acl=upload.acl,
        )
        return record, kind if algorithm else None

    @inlineCallbacks
    def abort(self, bucket: Bucket, key: str, upload_id: str) -> Any:
        """Deferred[None]: drop the upload and free its parts' chunks."""
        ukey, _kv, _upload = yield self._load(bucket, key, upload_id)
        done = yield self.abort_row(ukey, upload_id)
        if not done:
            raise errors.NoSuchUpload(UploadId=upload_id)

    @inlineCallbacks
    def abort_row(self, ukey: bytes, upload_id: str) -> Any:
        """Deferred[bool]: abort the upload stored at ``ukey`` (a row a scan
        of the uploads read); False if it was already gone."""
        for _attempt in range(_RETRIES):
            ukv = yield self._store.get(ukey)
            if ukv is None:
                return False
            stored = yield self._scan_parts(upload_id)
            chunks = [c for _kv, p in stored for c in p.chunks]
            pprefix = keys.parts_prefix(upload_id)
            ops: list[Operation] = [Delete(ukey), DeleteRange(pprefix, prefix_end(pprefix))]
            released = Usage(upload_bytes=-sum(p.size for _kv, p in stored))
            quota = self._quotas.unguarded(decode_upload(ukv.value).usage_scope, released)
            outcome = yield self._store.txn([Compare(ukey, ukv.mod_revision)], [*ops, *quota.ops])
            if outcome.succeeded:
                self._quotas.committed(quota)
                yield chunkindex.release(self._store, chunks, self._chunks.delete_chunks)
                return True
        raise errors.SlowDown("Too many concurrent changes to this upload")

    @inlineCallbacks
    def _abort_matching(self, start: bytes, end: bytes, keep: Callable[[Upload], bool]) -> Any:
        """Deferred[int]: abort every upload in ``[start, end)`` that ``keep`` rejects."""
        aborted = 0
        pos = start
        while True:
            rows = yield self._store.scan(pos, end, _SCAN_BATCH)
            for kv in rows:
                upload = decode_upload(kv.value)
                if not keep(upload):
                    done = yield self.abort_row(kv.key, upload.upload_id)
                    aborted += int(done)
            if len(rows) < _SCAN_BATCH:
                return aborted
            pos = rows[-1].key + b"\x00"

    def abort_bucket(self, bucket: Bucket) -> Any:
        """Deferred[int]: abort every upload of a bucket being deleted (as AWS does)."""
        prefix = keys.uploads_prefix(bucket.bucket_id)
        return self._abort_matching(prefix, prefix_end(prefix), lambda _u: False)

    def expire(self, max_age_seconds: float) -> Any:
        """Deferred[int]: abort uploads initiated more than ``max_age_seconds`` ago."""
        cutoff = int((self._clock() - max_age_seconds) * 1000)
        return self._abort_matching(keys.UPLOADS, prefix_end(keys.UPLOADS), lambda u: u.initiated_at >= cutoff)


def _check_order(listed: Sequence[PartRef], max_parts: int) -> None:
    if not listed:
        raise errors.MalformedXML()
    if len(listed) > max_parts:
        raise errors.InvalidArgument(
            f"Part count must not exceed {max_parts}", ArgumentName="Part", ArgumentValue=str(len(listed))
        )
    previous = 0
    for ref in listed:
        validate_part_number(ref.part_number)
        if ref.part_number <= previous:
            raise errors.InvalidPartOrder()
        previous = ref.part_number

