"""The condition keys of an S3 request, for bucket policies.

A bucket policy's ``Condition`` asks about the request: where it came from
(``aws:SourceIp``), whether it used TLS (``aws:SecureTransport``), its
headers (``s3:x-amz-acl``), its listing parameters (``s3:prefix``) and the
tags it sets (``s3:RequestObjectTag/<key>``).  The gate (core/access.py)
asks for them only when the bucket has a policy, so ordinary requests never
compute them.  Names are lower-cased: condition keys are case-insensitive.
The keys about the caller and the time come from the gate itself.

Only what the request itself states is a key; ``aws:SourceIp`` is the TCP
peer, never an ``X-Forwarded-For`` header, which any client can write.  A
browser form upload (PostObject) states through its form fields what other
writes state through headers: its keys come from the fields, which the
signed policy covers and the upload applies, never from its HTTP headers,
which nothing signs.
"""

from __future__ import annotations

import calendar
import time
from collections.abc import Mapping
from typing import Any

from lightningstor import errors
from lightningstor.s3 import xmlio
from lightningstor.s3.dates import iso8601
from lightningstor.s3.headers import FORM_HEADER_FIELDS, parse_tagging_header
from lightningstor.s3.objectlockxml import lock_headers, parse_legal_hold, parse_retention

# Request headers that are condition keys of the same name (``s3:<header>``).
_HEADER_KEYS = (
    "x-amz-acl",
    "x-amz-grant-read",
    "x-amz-grant-write",
    "x-amz-grant-read-acp",
    "x-amz-grant-write-acp",
    "x-amz-grant-full-control",
    "x-amz-content-sha256",
    "x-amz-copy-source",
    "x-amz-metadata-directive",
    "x-amz-server-side-encryption",
    "x-amz-server-side-encryption-aws-kms-key-id",
    # SSE-C: AWS's "require SSE-C" policy tests it with Null.
    "x-amz-server-side-encryption-customer-algorithm",
    "x-amz-storage-class",
    "x-amz-website-redirect-location",
    # Conditional writes and deletes: a policy may require them (AWS's
    # "Null": {"s3:if-match": "false"}).
    "if-match",
    "if-none-match",
)

# Listing parameters that are condition keys, and the operations that take
# them (AWS: s3:prefix, s3:delimiter and s3:max-keys apply to ListBucket and
# ListBucketVersions).
_LIST_KEYS = ("prefix", "delimiter", "max-keys")
_LISTINGS = frozenset({"ListObjects", "ListObjectsV2", "ListObjectVersions"})

# Operations whose x-amz-tagging header sets the new object's tags, and
# whose x-amz-object-lock-* headers set its Object Lock.
_TAGGING_WRITES = frozenset({"PutObject", "CopyObject", "CreateMultipartUpload"})

_DAY_MS = 86_400_000


# A form upload's fields that state something it does, besides those that
# become object headers: a field it ignores (if-none-match, a grant) must
# not satisfy a policy condition about what the upload does.
_FORM_APPLIED = FORM_HEADER_FIELDS | {"tagging", "x-amz-date"}


def _stated(call: Any) -> Mapping[str, str]:
    """What the request states in its headers, by lower-case header name:
    a form upload's fields that it applies (its ``acl`` field being
    PutObject's ``x-amz-acl``), any other request's headers."""
    if call.op != "PostObject":
        return call.headers  # type: ignore[no-any-return]
    plan = getattr(call.sink, "plan", None)
    fields: dict[str, str] = {} if plan is None else {k: v for k, v in plan.fields.items() if k in _FORM_APPLIED}
    if plan is not None and "acl" in plan.fields:
        fields["x-amz-acl"] = plan.fields["acl"]
    return fields


def policy_condition_keys(call: Any) -> dict[str, tuple[str, ...]]:
    """The condition keys ``call`` (an S3Call) states."""
    request = call.request
    headers = call.headers
    stated = _stated(call)
    keys: dict[str, tuple[str, ...]] = {}
    address = request.getClientAddress()
    host = getattr(address, "host", None)
    if host:
        keys["aws:sourceip"] = (host,)
    keys["aws:securetransport"] = ("true" if request.isSecure() else "false",)
    if "referer" in headers:
        keys["aws:referer"] = (headers["referer"],)
    if "user-agent" in headers:
        keys["aws:useragent"] = (headers["user-agent"],)
    for name in _HEADER_KEYS:
        if name in stated:
            keys[f"s3:{name}"] = (stated[name],)
    query = call.target.query
    if "versionId" in query:
        keys["s3:versionid"] = (query["versionId"],)
    if call.op in _LISTINGS:
        for name in _LIST_KEYS:
            if name in query:
                keys[f"s3:{name}"] = (query[name],)
    if call.op in _TAGGING_WRITES and "x-amz-tagging" in headers:
        _add_request_tags(keys, headers["x-amz-tagging"])
    elif call.op == "PostObject" and stated.get("tagging"):
        _add_form_tags(keys, stated["tagging"])
    keys.update(_lock_keys(call))
    keys.update(_auth_keys(call))
    age = _signature_age_ms(call, stated)
    if age is not None:
        keys["s3:signatureage"] = (str(age),)
    tls = _tls_version(request)
    if tls is not None:
        keys["s3:tlsversion"] = (tls,)
    return keys


def _signature_age_ms(call: Any, stated: Mapping[str, str]) -> int | None:
    """``s3:signatureAge``: milliseconds since a SigV4 request was signed
    (its x-amz-date header or field, or X-Amz-Date parameter), so a policy
    can refuse presigned URLs older than it likes whatever their
    X-Amz-Expires says."""
    stamp = stated.get("x-amz-date") or call.target.query.get("X-Amz-Date")
    if not stamp:
        return None
    try:
        signed = calendar.timegm(time.strptime(stamp, "%Y%m%dT%H%M%SZ"))
    except ValueError:
        return None
    return max(0, int(time.time() * 1000) - signed * 1000)


def _tls_version(request: Any) -> str | None:
    """``s3:TlsVersion`` as AWS gives it (``1.2``, ``1.3``) for a request
    over TLS; None for plain HTTP or a transport that cannot tell."""
    if not request.isSecure():
        return None
    transport = getattr(getattr(request, "channel", None), "transport", None)
    try:
        name = transport.getHandle().get_protocol_version_name()  # type: ignore[union-attr]
    except Exception:  # noqa: BLE001 - no TLS handle: no key, never an error
        return None
    return name[len("TLSv"):] if isinstance(name, str) and name.startswith("TLSv") else None


def _lock_keys(call: Any) -> dict[str, tuple[str, ...]]:
    """The Object Lock settings a request asks for, as AWS names them for
    policies (a policy may, say, deny retentions shorter than 30 days):
    from a write's x-amz-object-lock-* headers, or from a PutObjectRetention
    or PutObjectLegalHold body.  A malformed value gives no key: the handler
    refuses it itself."""
    mode = until = hold = None
    try:
        if call.op in _TAGGING_WRITES:
            asked = lock_headers(call.headers)
            mode, until, hold = asked.mode, asked.until, asked.legal_hold
        elif call.op == "PutObjectRetention":
            mode, until = parse_retention(call.sink.content())
        elif call.op == "PutObjectLegalHold":
            hold = parse_legal_hold(call.sink.content())
    except errors.S3Error:
        return {}
    keys: dict[str, tuple[str, ...]] = {}
    if mode is not None:
        keys["s3:object-lock-mode"] = (mode,)
    if until is not None:
        keys["s3:object-lock-retain-until-date"] = (iso8601(until),)
        remaining = max(0, -(-(until - int(time.time() * 1000)) // _DAY_MS))
        keys["s3:object-lock-remaining-retention-days"] = (str(remaining),)
    if hold is not None:
        keys["s3:object-lock-legal-hold"] = ("ON" if hold else "OFF",)
    return keys


def _add_request_tags(keys: dict[str, tuple[str, ...]], header: str) -> None:
    try:
        tags = parse_tagging_header(header)
    except errors.S3Error:
        return  # the handler refuses the header itself
    _set_request_tags(keys, tags)


def _set_request_tags(keys: dict[str, tuple[str, ...]], tags: Mapping[str, str]) -> None:
    for name, value in tags.items():
        keys[f"s3:requestobjecttag/{name.lower()}"] = (value,)
    keys["s3:requestobjecttagkeys"] = tuple(tags)


def _add_form_tags(keys: dict[str, tuple[str, ...]], document: str) -> None:
    """A form's ``tagging`` field is a Tagging XML document (AWS), not the
    header's query string."""
    try:
        tags = xmlio.parse_tagging(document.encode("utf-8"))
    except errors.S3Error:
        return  # the handler refuses the field itself
    _set_request_tags(keys, tags)


def _auth_keys(call: Any) -> dict[str, tuple[str, ...]]:
    """``s3:authType`` and ``s3:signatureversion`` of a signed request."""
    authorization = call.headers.get("authorization", "")
    query = call.target.query
    if call.op == "PostObject":
        # The form, not the headers, says how it is signed: the credentials
        # its plan parsed (postpolicy.credentials_of).  Without the version a
        # policy that denies SigV2 let a SigV2 form through.
        plan = getattr(call.sink, "plan", None)
        credentials = plan.credentials if plan is not None else None
        if credentials is None:  # an anonymous form
            return {"s3:authtype": ("POST",)}
        version = "AWS4-HMAC-SHA256" if credentials.scheme == "v4" else "AWS"
        return {"s3:authtype": ("POST",), "s3:signatureversion": (version,)}
    if authorization.startswith("AWS4-HMAC-SHA256"):
        return {"s3:authtype": ("REST-HEADER",), "s3:signatureversion": ("AWS4-HMAC-SHA256",)}
    if authorization.startswith("AWS "):
        return {"s3:authtype": ("REST-HEADER",), "s3:signatureversion": ("AWS",)}
    if "X-Amz-Signature" in query:
        return {"s3:authtype": ("REST-QUERY-STRING",), "s3:signatureversion": ("AWS4-HMAC-SHA256",)}
    if "Signature" in query:
        return {"s3:authtype": ("REST-QUERY-STRING",), "s3:signatureversion": ("AWS",)}
    return {}
