"""Rules on what a writer may say about an object or bucket besides its bytes.

Shared by every protocol layer, so S3 and gRPC refuse the same tag sets and
storage classes with the same errors (AWS's limits and messages).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping

from lightningstor import errors

# Storage classes this release stores; SPEC §3.1 lists more for the future.
STORAGE_CLASSES = frozenset({"STANDARD"})

MAX_OBJECT_TAGS = 10  # AWS: at most 10 tags per object version
MAX_BUCKET_TAGS = 50  # AWS: at most 50 tags per bucket


# RFC 9110 §5.5: a header field value holds no control character but HTAB.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# RFC 9110 §5.6.2 token, lower case: a header field name (user metadata
# names become part of ``x-amz-meta-*`` response header names).
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+", re.ASCII)


def check_field_value(value: str, what: str, argument: str) -> None:
    """InvalidArgument (naming ``argument``) if ``value``, which is stored
    and later sent as a response header field (Content-Type, Cache-Control,
    ``x-amz-meta-*``...) or sent as one at once (a GET's ``response-*``
    override), holds a control character other than HTAB.

    The S3 request headers never get here with one (s3/framing.py refuses
    the request first); gRPC fields, POST form fields and query parameters
    do, and a NUL or ``\\x01`` sent back in a header makes the response
    unreadable to strict HTTP parsers (Node's, so the AWS SDK for
    JavaScript) or, for CR LF, splits the header.  Every protocol layer
    asks here, so they refuse the same values.  One regular-expression
    search: cheap enough per request.
    """
    if _CONTROL.search(value) is not None:
        raise errors.InvalidArgument(f"{what} contains control characters", ArgumentName=argument)


def is_header_name(name: str) -> bool:
    """Whether lower-cased ``name`` is a valid HTTP header field name."""
    return _TOKEN.fullmatch(name) is not None


def validate_storage_class(storage_class: str) -> None:
    """InvalidStorageClass unless this release offers ``storage_class``."""
    if storage_class not in STORAGE_CLASSES:
        raise errors.S3Error(code="InvalidStorageClass")


# Besides letters, digits and white space (any script), the characters
# AWS's tag pattern allows: ^([\p{L}\p{Z}\p{N}_.:/=+\-@]*)$.
_TAG_PUNCTUATION = frozenset("_.:/=+-@")


def _tag_text_ok(text: str) -> bool:
    return all(c in _TAG_PUNCTUATION or unicodedata.category(c)[0] in "LNZ" for c in text)


def validate_tags(tags: Mapping[str, str], limit: int) -> None:
    """AWS limits: ``limit`` tags, keys 1-128 and values 0-256 characters,
    of letters, digits, white space and ``_ . : / = + - @`` only."""
    if len(tags) > limit:
        raise errors.InvalidTag(f"Object tags cannot be greater than {limit}")
    for k, v in tags.items():
        if not 1 <= len(k) <= 128 or not _tag_text_ok(k):
            raise errors.InvalidTag("The TagKey you have provided is invalid")
        if len(v) > 256 or not _tag_text_ok(v):
            raise errors.InvalidTag("The TagValue you have provided is invalid")


def check_tags(tags: Mapping[str, str], limit: int) -> None:
    """AWS's tag rules: count, key/value lengths, and no ``aws:`` keys
    (that prefix is reserved for tags AWS itself sets)."""
    validate_tags(tags, limit)
    if any(k.lower().startswith("aws:") for k in tags):
        raise errors.InvalidTag("System tags cannot be added/updated by requester")


def check_object_tags(tags: Mapping[str, str]) -> None:
    """The tag set of one object version."""
    check_tags(tags, MAX_OBJECT_TAGS)


def check_bucket_tags(tags: Mapping[str, str]) -> None:
    """A bucket's tag set (AWS words the count error differently for buckets)."""
    if len(tags) > MAX_BUCKET_TAGS:
        raise errors.InvalidTag(f"Bucket tag count cannot be greater than {MAX_BUCKET_TAGS}")
    check_tags(tags, MAX_BUCKET_TAGS)
