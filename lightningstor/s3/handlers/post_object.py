"""PostObject: a browser's form upload (``POST /bucket``, ``multipart/form-data``).

The request carries no ``Authorization`` header: its credentials are form
fields (a signed ``policy``), which arrive in the body before the file.  So,
unlike PutObject, nothing can be checked when the headers arrive.  Instead:

1. ``begin_post`` (from ``S3Api.begin``) installs a :class:`FormBody` sink.
2. The sink runs the body through :class:`~lightningstor.s3.formdata.FormParser`,
   keeping the small fields (bounded) until the ``file`` part starts.
3. Then the form is checked as far as it can be without I/O (key, policy
   syntax, signature fields: :func:`plan_upload`), and an
   :class:`~lightningstor.s3.body.ObjectBody` is opened for the file, exactly
   as for PutObject: its ``prepare`` (:func:`_prepare`) looks the access key
   up, verifies the policy's signature, expiry and conditions, authorizes
   ``objects:put`` on the key and opens a chunk writer; file bytes that
   arrive meanwhile wait (at most 1 MiB, transport paused).  The file then
   streams into chunks with the usual backpressure and in-flight budget.
4. When the body has ended, :func:`post_object` verifies it with PutObject's
   own :func:`~lightningstor.s3.handlers.objects.receive_upload`, checks the
   policy's minimum size, commits through the core and answers as the form
   asks (``success_action_redirect``, ``success_action_status``).

Any error before the commit discards what was written.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from twisted.internet.defer import Deferred, fail
from twisted.logger import Logger
from twisted.python.failure import Failure

from lightningstor import errors
from lightningstor.auth.request import PAYLOAD_UNSIGNED, VerifiedAuth, check_signature_version
from lightningstor.core import access
from lightningstor.core.attributes import MAX_OBJECT_TAGS, check_field_value, check_tags
from lightningstor.core.objects import MAX_SINGLE_PUT_BYTES, add_default_checksum, validate_key
from lightningstor.core.types import Bucket, Principal
from lightningstor.s3 import formdata, postpolicy, ssec, xmlio
from lightningstor.s3.body import BufferedBody, ObjectBody
from lightningstor.s3.formdata import FormEvent, FormParser
from lightningstor.s3.handlers.acl import checked_write_acl, object_acl_for_write
from lightningstor.s3.handlers.objects import (
    UploadContext,
    check_outsider_extras,
    commit_upload,
    keep_stored_encoding,
    receive_upload,
)
from lightningstor.s3.headers import FORM_HEADER_FIELDS, put_attrs, refuse_unsupported
from lightningstor.s3.objectlockxml import HOLD_HEADER, MODE_HEADER, UNTIL_HEADER

# Form fields sent back as the answer's Location header (after a check,
# in _answer, that they name an http(s) URL).
_REDIRECT_FIELDS = ("success_action_redirect", "redirect")
log = Logger()
_NOT_MULTIPART = "Bucket POST must be of the enclosure-type multipart/form-data"
_POST_SCHEME = "post-policy"  # VerifiedAuth.scheme of a form upload


def begin_post(api: Any, call: Any, length: int | None) -> errors.S3Error | None:
    """Choose the body sink of a PostObject request (``S3Api.begin``).

    Returns an error to answer at once, before the body (a body larger than
    any object plus its form could be); otherwise the request proceeds and
    its errors, if any, are answered once the body has been read.
    """
    request = call.request
    request.s3_leaf = True
    limit = MAX_SINGLE_PUT_BYTES + formdata.DEFAULT_MAX_FIELDS_BYTES + 64 * 1024
    if length is not None and length > limit:
        return errors.EntityTooLarge(MaxSizeAllowed=str(MAX_SINGLE_PUT_BYTES), ProposedSize=str(length))
    boundary = formdata.boundary_of(call.headers.get("content-type", ""))
    if boundary is None:
        # Not a form: the body is discarded and post_object answers 412.
        request.body_sink = call.sink = BufferedBody(0, _not_a_form)
        return None
    request.body_sink = call.sink = FormBody(api, call, boundary)
    return None


def _not_a_form() -> errors.S3Error:
    return errors.PreconditionFailed(_NOT_MULTIPART, Condition=_NOT_MULTIPART)


@dataclass
class PostPlan:
    """What the form says, checked as far as is possible without I/O."""

    key: str
    fields: dict[str, str]  # lower-case name -> value (key substituted)
    encoded_policy: str
    policy: postpolicy.PostPolicy
    credentials: postpolicy.PostCredentials | None  # None: an anonymous upload


_FILENAME_PATH = re.compile(r"[/\\]")


def plan_upload(api: Any, fields: Mapping[str, str], filename: str | None) -> PostPlan:
    """The upload the form asks for, or the S3 error that refuses it.

    Order as AWS: the key first (a form without one is malformed whoever
    sent it), then the policy and the signature fields.  A form without
    policy and signature is an anonymous upload (``credentials`` None),
    which only a bucket policy allowing ``s3:PutObject`` to everyone, or a
    bucket ACL granting AllUsers WRITE, admits.
    """
    if "key" not in fields:
        raise postpolicy.missing_field("key")
    # As AWS: ${filename} is the file's name in every field (so also in
    # Content-Disposition, x-amz-meta-* and success_action_redirect), before
    # the policy is checked; of a path, only what follows the last / or \.
    name = _FILENAME_PATH.split(filename or "")[-1]
    values = {field: value.replace("${filename}", name) for field, value in fields.items()}
    key = values["key"]
    validate_key(key)
    if "policy" not in values:
        if {"x-amz-signature", "signature", "x-amz-credential", "awsaccesskeyid"} & values.keys():
            raise postpolicy.missing_field("policy")
        # An anonymous upload: no policy bounds it, and only the bucket's
        # own policy may let it in (_prepare).
        return PostPlan(key, values, "", postpolicy.PostPolicy(expiration=float("inf")), None)
    credentials = postpolicy.credentials_of(values, api.options.region)
    policy = postpolicy.parse_policy(values["policy"])
    return PostPlan(key, values, values["policy"], policy, credentials)


class FormBody:
    """The body sink of PostObject: fields kept, the file streamed.

    Answers ``receive``/``connection_lost`` (from the request) and
    ``finish``/``abort`` (from the handler) like
    :class:`~lightningstor.s3.body.ObjectBody`, to which it hands the file.
    After an error it swallows the rest of the body, so the error can be
    answered on a connection still in sync.
    """

    def __init__(self, api: Any, call: Any, boundary: bytes) -> None:
        self._api = api
        self._call = call
        self._parser = FormParser(boundary)
        self._fields: dict[str, str] = {}
        self._upload: ObjectBody | None = None
        self._error: BaseException | None = None
        self._ended = False
        self.plan: PostPlan | None = None
        self.file_size = 0
        self._max_size = MAX_SINGLE_PUT_BYTES

    # -- from the request ---------------------------------------------------
    def receive(self, data: bytes) -> None:
        if self._error is not None:
            return
        try:
            for event in self._parser.feed(data):
                self._on_event(event)
        except errors.S3Error as e:
            self._fail(e)
        except Exception:
            # Called from twisted.web's data path: never let a fault escape
            # there; the handler answers 500 once the body has ended.
            log.failure("PostObject form handling failed")
            self._fail(errors.InternalError())

    def connection_lost(self) -> None:
        """The client went away mid-body: nothing is stored."""
        if not self._ended:
            self._fail(errors.IncompleteBody())

    def _on_event(self, event: FormEvent) -> None:
        kind = event.kind
        if kind == "data":
            self._file_data(event.data)
        elif kind == "field":
            # ASCII case only: str.lower() folds the Kelvin sign (U+212A) to
            # "k", so a field AWS would refuse as unknown was taken as "key".
            name = event.name.lower() if event.name.isascii() else event.name
            if name in self._fields:
                raise errors.InvalidArgument(
                    f"The form field {event.name!r} appears more than once", ArgumentName=event.name
                )
            self._fields[name] = event.value
        elif kind == "file":
            self._start_file(event)

    def _start_file(self, event: FormEvent) -> None:
        plan = plan_upload(self._api, self._fields, event.filename)
        self.plan = plan
        self._call.target.key = plan.key  # logs and error documents name the object
        if plan.policy.length_range is not None:
            self._max_size = min(self._max_size, plan.policy.length_range[1])
        api, call = self._api, self._call
        self._upload = ObjectBody(
            call.request.channel.transport, lambda: _prepare(api, call, plan), api.upload_budget
        )

    def _file_data(self, data: bytes) -> None:
        self.file_size += len(data)
        if self.file_size > self._max_size:
            assert self.plan is not None
            if self.plan.policy.length_range is not None:
                postpolicy.check_length(self.plan.policy, self.file_size)
            raise errors.EntityTooLarge(MaxSizeAllowed=str(MAX_SINGLE_PUT_BYTES))
        assert self._upload is not None
        self._upload.receive(data)

    def _fail(self, error: BaseException) -> None:
        if self._error is not None:
            return
        self._error = error
        if self._upload is not None:
            self._upload.refuse(error)

    # -- from the handler ---------------------------------------------------
    def finish(self) -> Deferred[Any]:
        """Deferred[(UploadContext, BodyResult)] once the file is stored."""
        self._ended = True
        if self._error is None:
            try:
                self._parser.finish()
                if self._upload is None:
                    if "key" not in self._fields:
                        raise postpolicy.missing_field("key")
                    raise postpolicy.missing_field("file")
            except errors.S3Error as e:
                self._fail(e)
        if self._error is not None:
            failed: Deferred[Any] = Deferred()
            failed.errback(Failure(self._error))
            return failed
        assert self._upload is not None
        return self._upload.finish()

    def abort(self) -> None:
        if self._upload is not None:
            self._upload.abort()


# -- before the first stored byte (ObjectBody's prepare) ----------------------
def _prepare(api: Any, call: Any, plan: PostPlan) -> Deferred[Any]:
    """Deferred[UploadContext]: the policy's signer exists and signed it, the
    policy allows this form now, the signer may put this key, and the bucket
    can take it.  The same authorization as PutObject (``objects:put`` on the
    key, through ``S3Api.bucket``)."""
    if plan.credentials is None:
        call.principal = access.ANONYMOUS
        d: Deferred[Any] = api.bucket(call, access.ANONYMOUS, key=plan.key, action=access.OBJECTS_PUT)
        d.addCallback(lambda b: (access.ANONYMOUS, b))
    else:
        try:
            check_signature_version(plan.credentials.scheme, api.options.signature_versions)
        except errors.S3Error:
            return fail()
        d = api.core.credentials.lookup(plan.credentials.access_key)
        d.addCallback(_verified, api, call, plan)
    d.addCallback(_authorized, api, call, plan)
    return d


def _verified(cred: Any, api: Any, call: Any, plan: PostPlan) -> Deferred[Any]:
    assert plan.credentials is not None
    if cred is None:
        raise errors.InvalidAccessKeyId(AWSAccessKeyId=plan.credentials.access_key)
    call.access_key_id = plan.credentials.access_key
    postpolicy.verify_signature(plan.credentials, cred.secret, plan.encoded_policy)
    call.principal = cred.principal
    postpolicy.check_expiration(plan.policy, api.clock())
    postpolicy.check_conditions(plan.policy, plan.fields, call.bucket)
    bucket: Deferred[Any] = api.bucket(call, cred.principal, key=plan.key, action=access.OBJECTS_PUT)
    return bucket.addCallback(lambda b: (cred.principal, b))


def _authorized(found: tuple[Principal, Bucket], api: Any, call: Any, plan: PostPlan) -> Deferred[Any]:
    principal, bucket = found
    attrs = _attrs(api, plan)
    # The form's ``acl`` field is PutObject's x-amz-acl (no grant fields, as AWS).
    canned = {"x-amz-acl": plan.fields["acl"]} if "acl" in plan.fields else {}
    attrs.owner, attrs.acl = object_acl_for_write(api, bucket, principal, canned)
    check_outsider_extras(principal, bucket, plan.key, attrs.owner, lock=False, tags=bool(attrs.tags))
    signer = plan.credentials.access_key if plan.credentials is not None else ""
    verified = VerifiedAuth(signer, _POST_SCHEME, PAYLOAD_UNSIGNED, None, None)
    # An ACL that shares the object takes objects:put-acl, as PutObject's x-amz-acl does.
    checked: Deferred[Any] = checked_write_acl(api, call, principal, bucket, plan.key, (attrs.owner, attrs.acl))
    # As PutObject with an unknown length: the commit enforces quotas exactly.
    checked.addCallback(lambda _: api.core.quotas.check_put(bucket, plan.key, None))

    def context(_: Any) -> UploadContext:
        algorithms = tuple(sorted(set(attrs.store_checksums) | set(attrs.expected_checksums)))
        writer = api.core.new_writer(bucket, plan.key, attrs.encryption, algorithms)
        return UploadContext(principal, verified, bucket, attrs, writer, None, None, None)

    return checked.addCallback(context)


def _attrs(api: Any, plan: PostPlan) -> Any:
    """PutAttrs from the form: the fields PutObject takes as headers (the
    file part's own Content-Type is not one), tags from ``tagging``.

    Unlike request headers, form fields may hold any character: those that
    become response headers (the stored ones, through ``put_attrs``, and
    the redirect) are refused with a control character, as PutObject's
    headers are (core/attributes.py)."""
    fields = plan.fields
    for name in _REDIRECT_FIELDS:
        if name in fields:
            check_field_value(fields[name], name, name)
    refuse_unsupported(fields)  # encryption...: 501, as for PutObject's headers
    ssec.refuse_in_form(fields)
    for name in (MODE_HEADER, UNTIL_HEADER, HOLD_HEADER):
        if name in fields:  # not taken from a form (yet): refused rather than ignored
            raise errors.NotImplementedS3(f"Object Lock fields are not supported in a POST upload ({name})")
    # Content-Type comes from the form field only, as on AWS (default
    # binary/octet-stream): the policy decides what may be stored, and the
    # file part's own type is the uploader's to choose (text/html served
    # from the storage origin, by a policy that said nothing of it).
    headers = {name: value for name, value in fields.items() if name in FORM_HEADER_FIELDS or name.startswith("x-amz-meta-")}
    attrs = put_attrs(headers, max_metadata_bytes=api.options.max_metadata_bytes)
    keep_stored_encoding(attrs)
    tagging = fields.get("tagging")
    if tagging:
        attrs.tags = xmlio.parse_tagging(tagging.encode("utf-8"))
    check_tags(attrs.tags, MAX_OBJECT_TAGS)
    add_default_checksum(attrs)  # a form with no checksum field: the core's default, as PutObject
    return attrs


# -- the handler (the body has ended) -----------------------------------------
def post_object(api: Any, call: Any) -> Deferred[Any]:
    """Verify the stored file as PutObject does, then commit and answer."""
    if not isinstance(call.sink, FormBody):
        raise _not_a_form()
    d = receive_upload(api, call)
    d.addCallback(_check_size, call)
    return d.addCallback(_commit, api, call)


def _check_size(received: Any, call: Any) -> Any:
    _ctx, result, _checksums = received
    call.object_size = result.size
    plan = call.sink.plan
    try:
        postpolicy.check_length(plan.policy, result.size)
    except errors.S3Error:
        call.sink.abort()
        raise
    return received


def _commit(received: Any, api: Any, call: Any) -> Deferred[Any]:
    plan: PostPlan = call.sink.plan

    def answer(record: Any, headers: list[tuple[str, str]]) -> bytes:
        return _answer(api, call, plan, record.quoted_etag, headers)

    return commit_upload(received, api, call, plan.key, answer)


def _answer(api: Any, call: Any, plan: PostPlan, etag: str, headers: list[tuple[str, str]]) -> bytes:
    """As AWS: a redirect (303) when the form names a valid http(s) URL;
    else ``success_action_status`` 200, 201 (a PostResponse document) or
    204, the default (any other value too)."""
    fields = plan.fields
    location = object_location(call, plan.key)
    redirect = fields.get("success_action_redirect") or fields.get("redirect")
    if redirect and urlsplit(redirect).scheme in ("http", "https") and urlsplit(redirect).netloc:
        return api.send(  # type: ignore[no-any-return]
            call, 303, headers=[*headers, ("Location", redirect_target(redirect, call.bucket, plan.key, etag))],
            content_type=None,
        )
    status = fields.get("success_action_status", "").strip()
    headers.append(("Location", location))
    if status == "201":
        body = post_response_xml(location, call.bucket, plan.key, etag)
        return api.send(call, 201, body, headers=headers)  # type: ignore[no-any-return]
    if status == "200":
        return api.send(call, 200, headers=headers, content_type=None)  # type: ignore[no-any-return]
    return api.send(call, 204, headers=headers, content_type=None)  # type: ignore[no-any-return]


def redirect_target(redirect: str, bucket: str, key: str, etag: str) -> str:
    """``success_action_redirect`` with ``bucket``, ``key`` and ``etag``
    added to its query: before a ``#fragment`` (RFC 3986; after it, the
    browser never sends them), and every character outside ASCII
    percent-encoded as UTF-8 (a header's bytes; sent raw, é went out as
    Latin-1 and ☃ as UTF-8)."""
    parts = urlsplit(redirect)
    added = urlencode({"bucket": bucket, "key": key, "etag": etag})
    query = f"{parts.query}&{added}" if parts.query else added
    target = urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))
    return quote(target, safe="".join(chr(c) for c in range(0x21, 0x7F)))


def object_location(call: Any, key: str) -> str:
    """The stored object's URL, as the client addressed this server."""
    scheme = "https" if call.request.isSecure() else "http"
    host = call.headers.get("host", "")
    path = quote(key, safe="/") if call.target.vhost else f"{quote(call.bucket)}/{quote(key, safe='/')}"
    return f"{scheme}://{host}/{path}"


def post_response_xml(location: str, bucket: str, key: str, etag: str) -> bytes:
    """The ``PostResponse`` document of ``success_action_status=201``."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<PostResponse>'
        f"<Location>{xmlio.escape(location)}</Location><Bucket>{xmlio.escape(bucket)}</Bucket>"
        f"<Key>{xmlio.escape(key)}</Key><ETag>{xmlio.escape(etag)}</ETag></PostResponse>"
    ).encode("utf-8", "xmlcharrefreplace")
