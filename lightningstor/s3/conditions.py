"""Conditional requests (RFC 7232) with S3's answers.

Three families, each a pure function of the request headers and the current
object's ETag / modification time that raises the S3 error to answer with:

* GetObject / HeadObject (:func:`check_read_conditions`): ``If-Match`` and
  ``If-Unmodified-Since`` fail with 412 ``PreconditionFailed``;
  ``If-None-Match`` and ``If-Modified-Since`` with 304 ``NotModified``.
* CopyObject / UploadPartCopy source (:func:`check_copy_source_conditions`):
  the same four as ``x-amz-copy-source-if-*``, but every failure is 412.
* PutObject / CompleteMultipartUpload / CopyObject destination
  (:func:`check_write_conditions`): ``If-None-Match`` and ``If-Match`` on
  the object about to be replaced.  On these writes ``If-None-Match`` may
  only be ``*`` (:func:`write_if_none_match_any`).

Precedence is RFC 7232 §6, which is also what the S3 documentation spells
out as its two "quirks": a present ``If-Match`` replaces
``If-Unmodified-Since`` (If-Match true + If-Unmodified-Since false => 200),
and a present ``If-None-Match`` replaces ``If-Modified-Since``
(If-None-Match false + If-Modified-Since true => 304).  The 412 checks run
before the 304 checks.

Dates compare at one-second resolution: clients echo the ``Last-Modified``
header, which has whole seconds, so an object written at 10.5 s must count
as "not modified since 10 s" or every revalidation would miss.  A date that
does not parse makes its condition be ignored (RFC 7232 §3.3/§3.4, and S3).

ETags compare ignoring quotes (clients send both ``"abc"`` and ``abc``) and
a weak ``W/`` prefix; a header may hold a comma-separated list, and ``*``
matches any existing object.  A header that is present but empty is treated
as absent: no client sends one on purpose, and proxies sometimes leave them.
"""

from __future__ import annotations

from collections.abc import Mapping

from lightningstor import errors
from lightningstor.s3.dates import http_date, parse_http_date


def check_read_conditions(headers: Mapping[str, str], etag: str, last_modified_ms: int) -> None:
    """Evaluate GET/HEAD preconditions; ``headers`` keys are lower-case.

    Raises :class:`errors.PreconditionFailed` (with AWS's ``Condition``
    field naming the header) or :class:`errors.NotModified`, which carries
    the ``ETag`` and ``Last-Modified`` headers a 304 must repeat (RFC 7232
    §4.1; s3-tests check the ETag).
    """
    failed = _failed_positive(headers, "if-match", "if-unmodified-since", etag, last_modified_ms)
    if failed is not None:
        raise errors.PreconditionFailed(Condition=failed)
    if _failed_negative(headers, "if-none-match", "if-modified-since", etag, last_modified_ms) is not None:
        raise errors.NotModified(
            headers={"ETag": _quoted(etag), "Last-Modified": http_date(last_modified_ms)}
        )


def check_copy_source_conditions(headers: Mapping[str, str], etag: str, last_modified_ms: int) -> None:
    """Evaluate ``x-amz-copy-source-if-*`` against the copy source.

    Same precedence as :func:`check_read_conditions`, but AWS answers every
    failure, the none-match/modified-since ones included, with 412.
    """
    failed = _failed_positive(
        headers, "x-amz-copy-source-if-match", "x-amz-copy-source-if-unmodified-since", etag, last_modified_ms
    ) or _failed_negative(
        headers, "x-amz-copy-source-if-none-match", "x-amz-copy-source-if-modified-since", etag, last_modified_ms
    )
    if failed is not None:
        raise errors.PreconditionFailed(Condition=failed)


def check_write_conditions(headers: Mapping[str, str], current_etag: str | None) -> None:
    """Conditional writes: ``current_etag`` is ``None`` when no current object exists.

    Answers as AWS does (and as the s3-tests ``conditional_write`` suite
    pins): ``If-Match`` on a missing object (or one whose current version is
    a delete marker: pass ``None``) is 404 ``NoSuchKey``, even for ``*``;
    on a different ETag, 412.  ``If-None-Match: *`` on an existing object is
    412; ``If-None-Match`` with an ETag list is 412 only when one matches.
    ``If-Match`` is evaluated first when both are sent.
    """
    if_match = headers.get("if-match")
    if if_match:
        if current_etag is None:
            raise errors.NoSuchKey()
        if not _etag_matches(if_match, current_etag):
            raise errors.PreconditionFailed(Condition="If-Match")
    if_none_match = headers.get("if-none-match")
    if if_none_match and current_etag is not None and _etag_matches(if_none_match, current_etag):
        raise errors.PreconditionFailed(Condition="If-None-Match")


def write_if_match(headers: Mapping[str, str]) -> str | None:
    """A write's ``If-Match`` (the ETag its target must have, or ``*``);
    None when absent or empty (a proxy's empty header is no condition)."""
    return headers.get("if-match", "").strip() or None


# DeleteObject's conditions AWS supports "only for directory buckets".
DIRECTORY_BUCKET_DELETE_HEADERS = ("x-amz-if-match-last-modified-time", "x-amz-if-match-size")


def refuse_directory_bucket_conditions(headers: Mapping[str, str]) -> None:
    """501 NotImplemented for a DeleteObject that asks to delete only if the
    object has a size or modification time: a client sending them believes
    the delete is conditional, and ignoring them would delete regardless."""
    for name in DIRECTORY_BUCKET_DELETE_HEADERS:
        if name in headers:
            raise errors.NotImplementedS3(
                "A header you provided implies functionality that is not implemented",
                Header=name,
                additionalMessage="Conditional deletes by size or modification time are not supported",
            )


def write_if_none_match_any(headers: Mapping[str, str]) -> bool:
    """Whether a write (PutObject, CompleteMultipartUpload, CopyObject) asks
    ``If-None-Match: *``, "create only".

    AWS "Expects the '*' (asterisk) character" on these writes and answers
    any other value with 501 ``NotImplemented`` naming the header, in the
    error document AWS sends (``Header`` and ``additionalMessage``), never
    by ignoring the condition: a client sending an ETag there believes the
    write is conditional.  An empty header is absent, as on reads.
    """
    value = headers.get("if-none-match", "").strip()
    if not value:
        return False
    if value != "*":
        raise errors.NotImplementedS3(
            "A header you provided implies functionality that is not implemented",
            Header="If-None-Match",
            additionalMessage="We don't accept the provided value of If-None-Match header for this API",
        )
    return True


def _failed_positive(
    headers: Mapping[str, str], match_name: str, unmodified_name: str, etag: str, last_modified_ms: int
) -> str | None:
    """The failed header among If-Match / If-Unmodified-Since, else ``None``."""
    if_match = headers.get(match_name)
    if if_match:
        return None if _etag_matches(if_match, etag) else _display(match_name)
    since = _date(headers.get(unmodified_name))
    if since is not None and last_modified_ms // 1000 > since:
        return _display(unmodified_name)
    return None


def _failed_negative(
    headers: Mapping[str, str], none_match_name: str, modified_name: str, etag: str, last_modified_ms: int
) -> str | None:
    """The failed header among If-None-Match / If-Modified-Since, else ``None``."""
    if_none_match = headers.get(none_match_name)
    if if_none_match:
        return _display(none_match_name) if _etag_matches(if_none_match, etag) else None
    since = _date(headers.get(modified_name))
    if since is not None and last_modified_ms // 1000 <= since:
        return _display(modified_name)
    return None


def _date(value: str | None) -> float | None:
    return parse_http_date(value) if value else None


def _etag_matches(header_value: str, etag: str) -> bool:
    """True if ``header_value`` (``*`` or a list of ETags) matches ``etag``."""
    value = header_value.strip()
    if value == "*":
        return True
    target = _bare(etag)
    for item in value.split(","):
        candidate = item.strip()
        candidate = candidate.removeprefix("W/")
        if _bare(candidate) == target:
            return True
    return False


def _bare(etag: str) -> str:
    return etag.strip().strip('"')


def _quoted(etag: str) -> str:
    return f'"{_bare(etag)}"'


# AWS names the failed header in the error's <Condition> element, in the
# capitalisation of the S3 documentation.
_DISPLAY = {
    "if-match": "If-Match",
    "if-none-match": "If-None-Match",
    "if-modified-since": "If-Modified-Since",
    "if-unmodified-since": "If-Unmodified-Since",
}


def _display(name: str) -> str:
    if name.startswith("x-amz-copy-source-"):
        return "x-amz-copy-source-" + _DISPLAY[name[len("x-amz-copy-source-") :]]
    return _DISPLAY[name]
