"""Protobuf messages <-> core values: the gRPC layer's wire translation.

Only spelling changes here (enums, field names, header-style names); every
rule about what is allowed lives in the core and is applied there.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lightningstor import errors
from lightningstor.checksums import is_digest_value
from lightningstor.core.attributes import (
    check_field_value,
    check_object_tags,
    is_header_name,
    validate_storage_class,
)
from lightningstor.core.multipart import COMPOSITE, FULL_OBJECT, Part, Upload, checksum_type_of
from lightningstor.core.objects import PutAttrs, validate_metadata
from lightningstor.core.types import Bucket, ListEntry, ObjectRecord, Versioning
from lightningstor.core.versions import reported_version_id, wire_version_id
from lightningstor.grpc.gen import lightningstor_pb2 as pb
from lightningstor.s3.headers import metadata_text

CHECKSUM_NAMES: dict[pb.ChecksumAlgorithm, str] = {
    pb.CHECKSUM_ALGORITHM_SHA256: "sha256",
    pb.CHECKSUM_ALGORITHM_SHA1: "sha1",
    pb.CHECKSUM_ALGORITHM_CRC32: "crc32",
    pb.CHECKSUM_ALGORITHM_CRC32C: "crc32c",
    pb.CHECKSUM_ALGORITHM_CRC64NVME: "crc64nvme",
}
CHECKSUM_ENUMS: dict[str, pb.ChecksumAlgorithm] = {name: value for value, name in CHECKSUM_NAMES.items()}

CHECKSUM_TYPE_NAMES: dict[pb.ChecksumType, str | None] = {
    pb.CHECKSUM_TYPE_UNSPECIFIED: None,
    pb.CHECKSUM_TYPE_COMPOSITE: COMPOSITE,
    pb.CHECKSUM_TYPE_FULL_OBJECT: FULL_OBJECT,
}
CHECKSUM_TYPE_ENUMS: dict[str | None, pb.ChecksumType] = {name: value for value, name in CHECKSUM_TYPE_NAMES.items()}

# Storage class names as S3 spells them; the core decides which are offered.
STORAGE_CLASS_NAMES: dict[pb.StorageClass, str] = {
    pb.STORAGE_CLASS_UNSPECIFIED: "STANDARD",
    pb.STORAGE_CLASS_STANDARD: "STANDARD",
    pb.STORAGE_CLASS_REDUCED_REDUNDANCY: "REDUCED_REDUNDANCY",
    pb.STORAGE_CLASS_ARCHIVE: "GLACIER",
}
STORAGE_CLASS_ENUMS: dict[str, pb.StorageClass] = {
    "STANDARD": pb.STORAGE_CLASS_STANDARD,
    "REDUCED_REDUNDANCY": pb.STORAGE_CLASS_REDUCED_REDUNDANCY,
    "GLACIER": pb.STORAGE_CLASS_ARCHIVE,
}

VERSIONING_ENUMS: dict[Versioning, pb.VersioningStatus] = {
    Versioning.DISABLED: pb.VERSIONING_STATUS_DISABLED,
    Versioning.ENABLED: pb.VERSIONING_STATUS_ENABLED,
    Versioning.SUSPENDED: pb.VERSIONING_STATUS_SUSPENDED,
}

# ObjectAttributes field -> the canonical header name the core stores it under.
SYSTEM_FIELDS = {
    "content_encoding": "Content-Encoding",
    "content_disposition": "Content-Disposition",
    "content_language": "Content-Language",
    "cache_control": "Cache-Control",
    "expires": "Expires",
}


# What the S3 API cannot hold in a request's headers it must not be given
# here either: these attributes are sent back as GET and HEAD response
# headers, and AWS limits a PUT's request header to 8 KB.  A 100 KB
# content_type was stored, and boto3 and the aws CLI could then not read
# the object (Python's HTTP client refuses a header line over 64 KiB).
MAX_HEADER_ATTRIBUTES_BYTES = 8192


def checksum_type_name(value: int) -> str | None:
    """The core's name of a ChecksumType (None for UNSPECIFIED); a number
    the enum does not define is refused as S3 refuses an unknown
    x-amz-checksum-type, never taken for "unspecified"."""
    if value not in CHECKSUM_TYPE_NAMES:
        raise errors.InvalidRequest(f"Value for checksum_type is invalid: {value}")
    return CHECKSUM_TYPE_NAMES[value]  # type: ignore[index]


def checksum_value(algorithm: str, value: str) -> str:
    """``value`` (stripped) if it is the base64 of an ``algorithm`` digest;
    InvalidRequest before any byte is stored otherwise, as the S3 API
    answers a malformed x-amz-checksum-* header (it was a BadDigest after)."""
    value = value.strip()
    if not is_digest_value(algorithm, value):
        raise errors.InvalidRequest(f"checksum_value is not the base64 of a {algorithm.upper()} digest")
    return value


def storage_class_name(value: int) -> str:
    """The S3 name of a request's StorageClass enum value; a number the
    enum does not define (an older or newer client's) is InvalidStorageClass,
    never taken for STANDARD."""
    name = STORAGE_CLASS_NAMES.get(value)  # type: ignore[call-overload]
    if name is None:
        raise errors.S3Error(code="InvalidStorageClass")
    return name


def storage_class_enum(name: str) -> pb.StorageClass:
    return STORAGE_CLASS_ENUMS.get(name, pb.STORAGE_CLASS_UNSPECIFIED)


def checksum_name(value: pb.ChecksumAlgorithm, *, allow_md5: bool = False) -> str | None:
    """The S3 algorithm name for an enum value (None for UNSPECIFIED)."""
    if value == pb.CHECKSUM_ALGORITHM_UNSPECIFIED:
        return None
    if value == pb.CHECKSUM_ALGORITHM_MD5:
        if allow_md5:
            return "md5"
        raise errors.InvalidArgument("MD5 is not a checksum algorithm here; use SHA256, SHA1 or a CRC")
    name = CHECKSUM_NAMES.get(value)
    if name is None:
        raise errors.InvalidArgument(f"Unknown checksum algorithm {value}", ArgumentName="checksum_algorithm")
    return name


def checksums(values: Mapping[str, str]) -> list[pb.ObjectChecksum]:
    return [
        pb.ObjectChecksum(algorithm=CHECKSUM_ENUMS[name], value=value)
        for name, value in sorted(values.items())
        if name in CHECKSUM_ENUMS
    ]


def user_metadata(metadata: Mapping[str, str], max_bytes: int) -> dict[str, str]:
    """Lower-cased user metadata, valid as S3 header names and values
    (they become ``x-amz-meta-*`` headers on the S3 side)."""
    out: dict[str, str] = {}
    for name, value in metadata.items():
        lowered = name.lower()
        if not is_header_name(lowered):
            raise errors.InvalidArgument(
                f"Metadata name {name!r} is not a valid HTTP header name", ArgumentName="metadata"
            )
        check_field_value(value, f"Metadata value of {name!r}", "metadata")
        out[lowered] = value
    validate_metadata(out, max_bytes)
    return out


def put_attrs(
    attributes: pb.ObjectAttributes | None,
    *,
    max_metadata_bytes: int,
    owner: str,
    content_type: str = "",
    metadata: Mapping[str, str] | None = None,
    tags: Mapping[str, str] | None = None,
) -> PutAttrs:
    """PutAttrs from an ObjectAttributes message (plus the request's own
    content_type/metadata fields where a request has them)."""
    attrs = PutAttrs(owner=owner)
    given = attributes if attributes is not None else pb.ObjectAttributes()
    # Each is sent back as a response header by the S3 API's GET and HEAD:
    # refused, as the S3 API's own request headers are, if it holds a
    # control character (core/attributes.py).
    check_field_value(content_type, "content_type", "content_type")
    check_field_value(given.content_type, "attributes.content_type", "attributes.content_type")
    chosen = content_type or given.content_type
    attrs.content_type = wire_text(chosen) if chosen else attrs.content_type
    merged = dict(given.metadata)
    merged.update(metadata or {})
    attrs.metadata = user_metadata(merged, max_metadata_bytes)
    for field_name, header in SYSTEM_FIELDS.items():
        if given.HasField(field_name):
            value = getattr(given, field_name)
            check_field_value(value, f"attributes.{field_name}", f"attributes.{field_name}")
            attrs.system_headers[header] = wire_text(value)
    size = sum(len(v.encode("utf-8", "surrogatepass")) for v in (chosen, *attrs.system_headers.values()))
    if size > MAX_HEADER_ATTRIBUTES_BYTES:
        raise errors.InvalidArgument(
            f"content_type and the attributes sent back as response headers take {size} bytes; "
            f"at most {MAX_HEADER_ATTRIBUTES_BYTES} in all",
            ArgumentName="attributes",
        )
    attrs.storage_class = storage_class_name(given.storage_class)
    validate_storage_class(attrs.storage_class)
    attrs.tags = dict(tags or {})
    check_object_tags(attrs.tags)
    return attrs


def _optional(value: str | None) -> dict[str, Any]:
    return {} if value is None else {"version_id": value}


def object_metadata(bucket: Bucket, record: ObjectRecord, *, tags: bool = True) -> pb.ObjectMetadata:
    """The object's metadata message; without ``tags`` (a caller from
    outside the bucket's scope, let in by a policy or an ACL to read the
    object, not its tags: S3's GetObjectTagging is a permission of its own)
    the tags are left out."""
    msg = pb.ObjectMetadata(
        bucket=bucket.name,
        key=record.key,
        size=record.size,
        etag=record.etag,
        content_type=metadata_text(record.content_type),
        checksums=checksums(record.checksums),
        storage_class=storage_class_enum(record.storage_class),
        metadata=record.metadata,
        last_modified=record.created_at,
        delete_marker=record.delete_marker,
        tags=record.tags if tags else {},
        parts_count=len(record.part_sizes),
        owner=record.owner,
        **_optional(reported_version_id(bucket, record.version_id)),
    )
    for field_name, header in SYSTEM_FIELDS.items():
        value = record.system_headers.get(header)
        if value is not None:
            setattr(msg, field_name, metadata_text(value))
    return msg


def wire_text(value: str) -> str:
    """A system attribute (Content-Type, Content-Disposition...) as the S3
    API stores it: the header's wire bytes decoded as latin-1, so the UTF-8
    bytes an S3 client sends for "é" and a gRPC client's "é" are stored, and
    read back through either API, alike (:func:`metadata_text` reads it)."""
    return value if value.isascii() else value.encode("utf-8").decode("latin-1")


def bucket_message(bucket: Bucket, *, outsider: bool = False) -> pb.Bucket:
    """The bucket's message; for an ``outsider`` (a caller from outside its
    scope, let in by a policy or an ACL) only what S3's HeadBucket tells:
    its name, org and region, none of its configuration."""
    if outsider:
        return pb.Bucket(name=bucket.name, org_id=bucket.org_id, region=bucket.region)
    msg = pb.Bucket(
        name=bucket.name,
        org_id=bucket.org_id,
        versioning=pb.VersioningConfig(status=VERSIONING_ENUMS[bucket.versioning]),
        created_at=bucket.created_at,
        updated_at=bucket.updated_at,
        created_by=bucket.created_by,
        storage_class=storage_class_enum(bucket.storage_class),
        metadata=bucket.metadata,
        tags=bucket.tags,
        region=bucket.region,
    )
    if bucket.project_id is not None:
        msg.project_id = bucket.project_id
    return msg


def listed_checksum(checksums: Mapping[str, str] | None) -> dict[str, Any]:
    """The ``checksum_algorithms`` and ``checksum_type`` fields of a listed
    object, as S3's listings show them (s3/xmlio.py ``listed_checksum``):
    never the values."""
    names = sorted(name for name in checksums or () if name in CHECKSUM_ENUMS)
    if not names:
        return {}
    return {
        "checksum_algorithms": [CHECKSUM_ENUMS[name] for name in names],
        "checksum_type": CHECKSUM_TYPE_ENUMS[checksum_type_of(checksums or {})],
    }


def object_summary(entry: ListEntry) -> pb.ObjectSummary:
    return pb.ObjectSummary(
        key=entry.key,
        size=entry.size,
        etag=entry.etag,
        last_modified=entry.last_modified,
        storage_class=storage_class_enum(entry.storage_class),
        owner=entry.owner,
        **listed_checksum(entry.checksums),
    )


def object_version(entry: ListEntry) -> pb.ObjectVersion:
    return pb.ObjectVersion(
        key=entry.key,
        version_id=wire_version_id(entry.version_id),
        is_latest=entry.is_latest,
        delete_marker=entry.delete_marker,
        size=entry.size,
        etag=entry.etag,
        last_modified=entry.last_modified,
        storage_class=storage_class_enum(entry.storage_class),
        owner=entry.owner,
        **listed_checksum(entry.checksums),
    )


def upload_message(upload: Upload) -> pb.MultipartUpload:
    return pb.MultipartUpload(
        key=upload.key,
        upload_id=upload.upload_id,
        initiated_at=upload.initiated_at,
        # By id, as S3's listings show it (its display name is not every lister's to read).
        initiator=pb.Owner(id=upload.initiator, display_name=upload.initiator),
        storage_class=storage_class_enum(upload.storage_class),
        checksum_algorithm=CHECKSUM_ENUMS.get(upload.checksum_algorithm or "", pb.CHECKSUM_ALGORITHM_UNSPECIFIED),
        checksum_type=CHECKSUM_TYPE_ENUMS.get(upload.checksum_type, pb.CHECKSUM_TYPE_UNSPECIFIED),
    )


def part_message(part: Part, *, sealed: bool = False) -> pb.Part:
    """``sealed``: an SSE-C upload's part, whose checksums are left out."""
    return pb.Part(
        part_number=part.part_number,
        etag=part.etag,
        size=part.size,
        last_modified=part.created_at,
        checksums=[] if sealed else checksums(part.checksums),
    )
