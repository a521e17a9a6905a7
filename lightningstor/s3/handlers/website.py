"""Bucket static website configuration: PutBucketWebsite, GetBucketWebsite
and DeleteBucketWebsite.

The configuration is stored in the bucket record (as the CORS rules are);
this module only translates the wire format (s3/websitexml.py).  It also
serves the website endpoint itself (:func:`serve`).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks

from lightningstor import errors
from lightningstor.core import website
from lightningstor.core.types import WebsiteConfiguration
from lightningstor.s3.handlers.objects import lookup_object, read_again_if_replaced, respond_with_object
from lightningstor.s3.headers import WEBSITE_REDIRECT_HEADER
from lightningstor.s3.websitexml import parse_website_configuration, website_configuration_xml


@inlineCallbacks
def get_bucket_website(api: Any, call: Any) -> Any:
    principal, _ = yield call.auth.get()
    bucket = yield api.bucket(call, principal)
    if bucket.website is None:
        raise errors.S3Error(code="NoSuchWebsiteConfiguration", BucketName=bucket.name)
    return api.send_xml(call, website_configuration_xml(bucket.website))


@inlineCallbacks
def put_bucket_website(api: Any, call: Any) -> Any:
    """AWS does not require Content-MD5 here (unlike PutBucketCors); one
    that was sent is checked with the body (s3/body.py).  The document
    replaces any previous configuration."""
    principal, _ = yield call.auth.get()
    bucket = yield api.bucket(call, principal)
    config = parse_website_configuration(call.sink.content())
    yield api.core.buckets.set_website(bucket, config)
    return api.send(call, 200, content_type=None)


@inlineCallbacks
def delete_bucket_website(api: Any, call: Any) -> Any:
    """204 whether or not a configuration existed (as AWS answers)."""
    principal, _ = yield call.auth.get()
    bucket = yield api.bucket(call, principal)
    yield api.core.buckets.set_website(bucket, None)
    return api.send(call, 204, content_type=None)


# -- the website endpoint ---------------------------------------------------------

# Headers that would change which part of the error document is sent, or
# answer 304 for it: the error document always goes whole.
_ERROR_DOCUMENT_DROPS = ("range", "if-match", "if-none-match", "if-modified-since", "if-unmodified-since")
# What the gate answers for an object an anonymous reader may not see, or
# that does not exist: both end in the error document.
_NOT_SERVED = ("NoSuchKey", "AccessDenied")


@inlineCallbacks
def serve(api: Any, call: Any) -> Any:
    """A request to ``<bucket>.<website_domain>`` (S3Api.begin): an anonymous
    GetObject through the normal gate, dressed as AWS's website endpoint
    (core/website.py decides; errors answer as HTML, S3Api.send_error)."""
    if call.method not in ("GET", "HEAD"):
        raise errors.MethodNotAllowed(Method=call.method, ResourceType="OBJECT")
    call.op = "HeadObject" if call.method == "HEAD" else "GetObject"
    call.target.query = {}  # no versionId, partNumber or response-* overrides on a website
    bucket = yield api.core.buckets.get_unique(call.bucket)
    # The redirects below answer before any object lookup (which is where
    # a request's bucket adds its CORS headers): a browser checks CORS on
    # a redirect too, so a cross-origin fetch would fail on them alone.
    api.cross_origin(call, bucket)
    config = bucket.website
    if config is None:
        raise errors.S3Error(code="NoSuchWebsiteConfiguration", BucketName=bucket.name)
    key = call.target.key or ""
    scheme = "https" if call.request.isSecure() else "http"
    if config.redirect_all is not None:
        return _redirect(api, call, website.redirect_all(config.redirect_all, key, scheme=scheme))
    host = call.headers.get("host", "")
    rule = website.rule_before_lookup(config, key)
    if rule is not None:
        return _redirect(api, call, website.rule_redirect(rule, key, scheme=scheme, host=host))
    headers = dict(call.headers)

    def attempt() -> Deferred[Any]:
        # A second attempt starts from the request as it came (the error
        # document drops some of its headers) and with no error sent yet.
        call.headers.clear()
        call.headers.update(headers)
        call.error_code = None
        return _answer(api, call, config, key, scheme, host)

    answer = yield read_again_if_replaced(call, attempt)
    return answer


@inlineCallbacks
def _answer(api: Any, call: Any, config: WebsiteConfiguration, key: str, scheme: str, host: str) -> Any:
    """What the objects there now make of ``key``: the object or its index
    document (or the redirect one asks for), else :func:`_not_found`.  The
    whole of it is made again if the object found lost its chunks before a
    byte was sent (objects.read_again_if_replaced): the index, folder
    redirect and error document are then decided on the current objects."""
    assert config.index_suffix is not None  # validated: no RedirectAllRequestsTo, so an index
    try:
        found = yield _find(api, call, website.index_key(key, config.index_suffix))
    except errors.S3Error as e:
        if e.code not in _NOT_SERVED:
            raise
        answer = yield _not_found(api, call, config, key, scheme, host, e)
        return answer
    # Yielded, not returned: a Deferred returned from an inlineCallbacks
    # generator becomes its result as it is, and is only chained once a
    # callback gets it, after S3Api._s3's error mapping had passed: a lost
    # chunk became twisted's bare "Processing Failed" 500 instead of this
    # endpoint's HTML error page, and could not be read again.
    answer = yield _send_object(api, call, found)
    return answer


def _send_object(api: Any, call: Any, found: Any, *, status: int = 200) -> Any:
    """The object, or the 301 its ``x-amz-website-redirect-location`` asks for."""
    location = found[2].system_headers.get(WEBSITE_REDIRECT_HEADER)
    if location:
        return _redirect(api, call, website.Redirect(301, location))
    return respond_with_object(found, api, call, status=status)


@inlineCallbacks
def _not_found(
    api: Any, call: Any, config: WebsiteConfiguration, key: str, scheme: str, host: str, error: errors.S3Error
) -> Any:
    """A key that is missing (404) or not public (403): the folder's index
    (302), else a routing rule on the error code, else the error document
    with the error's status, else the error (an HTML page)."""
    assert config.index_suffix is not None
    folder = website.folder_index_key(key, config.index_suffix)
    if folder is not None and (yield _exists(api, call, folder)):
        return _redirect(api, call, website.folder_redirect(key))
    rule = website.rule_after_error(config, key, error.status)
    if rule is not None:
        return _redirect(api, call, website.rule_redirect(rule, key, scheme=scheme, host=host))
    if config.error_key is not None:
        for name in _ERROR_DOCUMENT_DROPS:
            call.headers.pop(name, None)
        try:
            found = yield _find(api, call, config.error_key)
        except errors.S3Error as e:
            if e.code not in _NOT_SERVED:
                raise
        else:
            call.error_code = error.code
            answer = yield _send_object(api, call, found, status=error.status)
            return answer
    raise error


def _find(api: Any, call: Any, key: str) -> Deferred[Any]:
    """Deferred[(principal, bucket, record)] of ``key``, read anonymously.

    The gate asks about ``key`` (the index or error document), so the call
    names it during the lookup; afterwards the call names the key the client
    asked for again, which is what the access log and audit record show.
    """
    requested = call.target.key
    call.target.key = key

    def restore(result: Any) -> Any:
        call.target.key = requested
        return result

    return lookup_object(api, call).addBoth(restore)


@inlineCallbacks
def _exists(api: Any, call: Any, key: str) -> Any:
    """Deferred[bool]: whether an anonymous reader may read ``key``."""
    try:
        yield _find(api, call, key)
    except errors.S3Error as e:
        if e.code not in _NOT_SERVED:
            raise
        return False
    return True


def _redirect(api: Any, call: Any, redirect: website.Redirect) -> bytes:
    body: bytes = api.send(call, redirect.status, headers=[("Location", redirect.location)], content_type=None)
    return body
