"""Bucket CORS: PutBucketCors, GetBucketCors, DeleteBucketCors, the browser's
preflight (``OPTIONS``), and the headers of actual cross-origin requests.

**Which bucket a preflight means.**  Bucket names are unique per tenant, and
a preflight is never signed, so its bucket is resolved as follows
(docs/s3-compatibility.md, "CORS"):

1. a presigned URL's query names its access key (``X-Amz-Credential`` for
   SigV4, ``AWSAccessKeyId`` for SigV2; a browser sends the preflight to
   the very URL it will use): the bucket is resolved in that key's
   principal's scope, exactly as the signed request will resolve it.  The
   signature is *not* checked (the preflight carries the query but is not
   the request it signs); an unknown, disabled or expired key resolves
   nothing;
2. otherwise the name must belong to exactly one bucket across all tenants
   (:meth:`~lightningstor.core.buckets.BucketManager.find_unique`: one
   read of the stored name index and one of the bucket record, whatever
   the number of buckets).

A name that resolves to no bucket, or to several, is refused like a request
no rule allows (403 ``AccessForbidden``): a preflight never tells whether a
bucket exists.  What a preflight discloses is what AWS discloses to anyone:
whether the bucket's rules allow an origin, method and headers.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks, succeed

from lightningstor import errors
from lightningstor.auth.sigv4 import split_credential
from lightningstor.core.access import is_anonymous
from lightningstor.core.cors import allowed_origin, find_rule, parse_header_list
from lightningstor.core.types import Bucket, CorsRule
from lightningstor.s3.corsxml import cors_configuration_xml, parse_cors_configuration
from lightningstor.s3.handlers.objects import check_body_digest

# Every CORS answer varies with these request headers (caches must key on them).
_VARY = "Origin, Access-Control-Request-Headers, Access-Control-Request-Method"


# -- the configuration ----------------------------------------------------------


@inlineCallbacks
def get_bucket_cors(api: Any, call: Any) -> Any:
    principal, _ = yield call.auth.get()
    bucket = yield api.bucket(call, principal)
    if not bucket.cors:
        raise errors.S3Error(code="NoSuchCORSConfiguration", BucketName=bucket.name)
    return api.send_xml(call, cors_configuration_xml(bucket.cors))


@inlineCallbacks
def put_bucket_cors(api: Any, call: Any) -> Any:
    """AWS requires an integrity check of the body (``Content-MD5`` or an
    ``x-amz-checksum-*`` header), as for DeleteObjects."""
    principal, _ = yield call.auth.get()
    bucket = yield api.bucket(call, principal)
    body = call.sink.content()
    check_body_digest(call, body)
    rules = parse_cors_configuration(body)
    yield api.core.buckets.set_cors(bucket, rules)
    return api.send(call, 200, content_type=None)


@inlineCallbacks
def delete_bucket_cors(api: Any, call: Any) -> Any:
    principal, _ = yield call.auth.get()
    bucket = yield api.bucket(call, principal)
    yield api.core.buckets.delete_cors(bucket)
    return api.send(call, 204, content_type=None)


# -- the preflight ----------------------------------------------------------------


def preflight(api: Any, call: Any) -> Deferred[Any]:
    """``OPTIONS /bucket[/key]``: 200 with the first matching rule's headers,
    else 403 ``AccessForbidden``; 400 ``BadRequest`` without ``Origin`` or
    ``Access-Control-Request-Method`` (checked first, as AWS does)."""
    # Its answer, 403 included, is the evaluation of the rules: an error
    # gets no second one (S3Api._on_failure), which ignores requested headers.
    call.cors_evaluated = True
    origin = call.headers.get("origin")
    if not origin:
        raise errors.BadRequest("Insufficient information. Origin request header needed.")
    method = call.headers.get("access-control-request-method")
    if not method:
        raise errors.BadRequest(
            "Insufficient information. Access-Control-Request-Method request header needed."
        )
    requested = parse_header_list(call.headers.get("access-control-request-headers"))
    d = preflight_bucket(api.core, call.bucket, call.target.query)
    return d.addCallback(_answer_preflight, api, call, origin, method, requested)


def _answer_preflight(
    bucket: Bucket | None, api: Any, call: Any, origin: str, method: str, requested: list[str]
) -> bytes:
    rule = find_rule(bucket.cors, origin, method, requested) if bucket is not None else None
    if rule is None:
        raise errors.AccessForbidden(
            Method=method,
            ResourceType="OBJECT" if call.target.key is not None else "BUCKET",
        )
    headers = _rule_headers(rule, origin)
    if requested:
        headers.append(("Access-Control-Allow-Headers", ", ".join(requested)))
    body: bytes = api.send(call, 200, headers=headers, content_type=None)
    return body


def preflight_bucket(core: Any, name: str, query: dict[str, str], access_key: str | None = None) -> Deferred[Any]:
    """Deferred[Bucket | None]: the bucket a preflight means (module
    docstring), or None if it names none or is ambiguous.  ``access_key``:
    the key a request already named (else the query's, if any)."""
    if access_key is None:
        access_key = query_access_key(query)
    if access_key is not None:
        d: Deferred[Any] = core.credentials.lookup(access_key) if access_key else succeed(None)
        return d.addCallback(_in_scope, core, name)
    found: Deferred[Any] = core.buckets.find_unique(name)
    return found


def query_access_key(query: dict[str, str]) -> str | None:
    """The access key id a presigned URL's query names (SigV4's
    ``X-Amz-Credential`` is ``key/date/region/service/aws4_request``;
    SigV2's ``AWSAccessKeyId`` is the key), "" if the parameter is there but
    empty, None without one."""
    credential = query.get("X-Amz-Credential")
    if credential is not None:
        # Split as the signature check splits it: a key may contain "/".
        parts = split_credential(credential)
        return parts.access_key if parts is not None else ""
    return query.get("AWSAccessKeyId")


def _in_scope(cred: Any, core: Any, name: str) -> Any:
    if cred is None:
        return None
    d: Deferred[Any] = core.buckets.find(cred.principal, name)
    return d


def error_bucket(core: Any, call: Any) -> Deferred[Any]:
    """Deferred[Bucket | None]: the bucket whose CORS rules answer an error
    that came before the request's bucket was authorized (a bad or expired
    signature, an unknown key, access denied).

    A browser reads such an answer only if it carries CORS headers: without
    them the page sees a "CORS error" instead of, say, the 403 of a
    presigned URL that expired (AWS evaluates the rules for errors too).
    The bucket is resolved as its preflight resolves it (module docstring):
    in the scope of the caller if it was authenticated, else of the access
    key the request names if that key exists, else by a unique name.  What
    this discloses is what the preflight already does to anyone.
    """
    if call.principal is not None and not is_anonymous(call.principal):
        d: Deferred[Any] = core.buckets.find(call.principal, call.bucket)
        return d
    # An existing key whose signature failed, else the query's, else by name.
    return preflight_bucket(core, call.bucket, call.target.query, call.access_key_id)


# -- actual requests ------------------------------------------------------------


def add_cors_headers(bucket: Bucket, call: Any) -> Bucket:
    """Add the CORS headers of a request with an ``Origin`` to its response,
    if a rule of its bucket allows that origin and method; returns the
    bucket (a callback of the request's bucket resolution, S3Api.bucket).

    The method is the request's own, or its ``Access-Control-Request-Method``
    if it sends one (as AWS and Ceph RGW evaluate it; ceph/s3-tests checks
    this).  Headers a request asks for are not checked here: a browser asked
    in the preflight.
    """
    call.cors_evaluated = True
    if bucket.cors:
        origin = call.headers["origin"]
        method = call.headers.get("access-control-request-method") or call.method
        rule = find_rule(bucket.cors, origin, method)
        if rule is not None:
            call.request.responseHeaders.set_pairs(_rule_headers(rule, origin))
    return bucket


def _rule_headers(rule: CorsRule, origin: str) -> list[tuple[str, str]]:
    """The headers every allowed CORS answer carries, preflight or not."""
    allow_origin = allowed_origin(rule, origin)
    headers = [
        ("Access-Control-Allow-Origin", allow_origin),
        ("Access-Control-Allow-Methods", ", ".join(rule.allowed_methods)),
        ("Vary", _VARY),
    ]
    if allow_origin != "*":
        headers.append(("Access-Control-Allow-Credentials", "true"))
    if rule.expose_headers:
        headers.append(("Access-Control-Expose-Headers", ", ".join(rule.expose_headers)))
    if rule.max_age_seconds is not None:
        headers.append(("Access-Control-Max-Age", str(rule.max_age_seconds)))
    return headers
