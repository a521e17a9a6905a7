"""GetObjectAttributes (``GET /bucket/key?attributes``): HeadObject and
ListParts of a completed object in one XML document.

The request names what it wants in ``x-amz-object-attributes``; the answer
holds only those elements that exist for the object (no ``Checksum`` for an
object stored without one, no ``ObjectParts`` for one not written by
multipart upload).  The version is found exactly as GetObject finds it
(``versionId``, delete markers: 404 ``NoSuchKey`` / 405 with
``x-amz-delete-marker``), and the caller needs the same read permission as
GetObject (:data:`lightningstor.core.access.OPERATION_ACTIONS`).

The parts come from the object record (:func:`lightningstor.core.multipart.object_parts`),
paged by ``x-amz-part-number-marker`` and ``x-amz-max-parts`` as ListParts
pages by its query parameters.  An SSE-C object needs its key, as on
GetObject (s3/ssec.py), and the answer echoes the SSE-C headers.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import inlineCallbacks

from lightningstor import errors
from lightningstor.core.multipart import MAX_LISTED, checksum_type_of, object_parts
from lightningstor.core.types import ObjectRecord
from lightningstor.s3 import ssec, xmlio
from lightningstor.s3.dates import http_date
from lightningstor.s3.handlers.listing import page_limit
from lightningstor.s3.handlers.objects import version_header

ETAG = "ETag"
CHECKSUM = "Checksum"
OBJECT_PARTS = "ObjectParts"
STORAGE_CLASS = "StorageClass"
OBJECT_SIZE = "ObjectSize"
# The values x-amz-object-attributes may list (AWS's ObjectAttributes enum).
ATTRIBUTES = frozenset({ETAG, CHECKSUM, OBJECT_PARTS, STORAGE_CLASS, OBJECT_SIZE})

ATTRIBUTES_HEADER = "x-amz-object-attributes"


def requested_attributes(value: str | None) -> frozenset[str]:
    """The attribute names of an ``x-amz-object-attributes`` header.

    A comma-separated list (botocore joins the list with ``,``; blanks
    around a name are ignored).  Missing or blank is InvalidArgument, and so
    is any name outside AWS's five, matched case-sensitively as AWS does
    (``etag`` is not ``ETag``), with AWS's messages.
    """
    if value is None or not value.strip():
        raise errors.InvalidArgument(
            "The x-amz-object-attributes header specifying the attributes to be retrieved is either missing or empty",
            ArgumentName=ATTRIBUTES_HEADER,
            ArgumentValue=value or "",
        )
    names = frozenset(name.strip() for name in value.split(","))
    unknown = names - ATTRIBUTES
    if unknown:
        raise errors.InvalidArgument(
            "Invalid attribute name specified.",
            ArgumentName=ATTRIBUTES_HEADER,
            ArgumentValue=value,
        )
    return names


def parts_paging(headers: dict[str, str]) -> tuple[int, int]:
    """``(part number marker, max parts)`` from ``x-amz-part-number-marker``
    and ``x-amz-max-parts``, parsed as ListParts' ``part-number-marker`` and
    ``max-parts`` (AWS's integer rules, :func:`page_limit`): absent is 0 and
    1000; the page size is capped at 1000 and echoed capped, as ListParts
    does."""
    marker = page_limit(headers, "x-amz-part-number-marker", 0)
    max_parts = min(page_limit(headers, "x-amz-max-parts", MAX_LISTED), MAX_LISTED)
    return marker, max_parts


def _parts_element(record: ObjectRecord, marker: int, max_parts: int) -> xmlio.AttributesParts | None:
    """ObjectParts for a multipart object (None otherwise): the asked-for page."""
    page = object_parts(record, marker, max_parts)
    if page is None:
        return None
    return xmlio.AttributesParts(
        parts_count=page.parts_count,
        part_number_marker=marker,
        next_part_number_marker=page.next_marker,
        max_parts=max_parts,
        is_truncated=page.is_truncated,
        parts=[xmlio.AttributesPart(p.part_number, p.size, p.checksums) for p in page.parts],
    )


@inlineCallbacks
def get_object_attributes(api: Any, call: Any) -> Any:
    """Authenticate, resolve the bucket (authorized for reading the key),
    check the request's headers, then read the version and describe it.

    Header errors come after the bucket's (NoSuchBucket, AccessDenied) and
    before the object's (NoSuchKey), so a malformed request costs no read.
    """
    principal, _verified = yield call.auth.get()
    bucket = yield api.bucket(call, principal)
    wanted = requested_attributes(call.headers.get(ATTRIBUTES_HEADER))
    # Parsed whether or not ObjectParts is asked for: a bad value is a bad request.
    marker, max_parts = parts_paging(call.headers)
    record = yield api.core.objects.head(bucket, call.key, call.target.query.get("versionId"))
    ssec.read_key(call.headers, call.request.isSecure, record.encryption)
    checksums = record.checksums if CHECKSUM in wanted and record.checksums else None
    body = xmlio.object_attributes_xml(
        etag=record.etag if ETAG in wanted else None,
        checksums=checksums,
        checksum_type=checksum_type_of(checksums) if checksums else None,
        object_parts=_parts_element(record, marker, max_parts) if OBJECT_PARTS in wanted else None,
        storage_class=record.storage_class if STORAGE_CLASS in wanted else None,
        object_size=record.size if OBJECT_SIZE in wanted else None,
    )
    response_headers = [("Last-Modified", http_date(record.created_at))]
    response_headers += version_header(bucket, record.version_id)
    response_headers += ssec.response_headers(record.encryption)
    return api.send_xml(call, body, headers=response_headers)
