"""The S3 HTTP layer: a Klein app on a streaming ``twisted.web`` Site.

This module holds the plumbing every operation shares: classification and
authentication as soon as the headers arrive, the per-request
:class:`S3Call`, the one place errors become S3 XML, and the Klein routes.
The operations themselves live in :mod:`lightningstor.s3.handlers`.

``Expect: 100-continue`` on an upload (PutObject, UploadPart) is answered as
AWS does: "100 Continue" only once the checks that come before the first
stored byte (credentials, bucket, permission, upload id, sizes, quotas)
have passed; if one fails, its error at once, and the connection closes, so
the client never sends the body (``S3Api.begin``, ``S3Api._refuse_now``).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from klein import Klein
from twisted.internet.defer import CancelledError, Deferred, fail, inlineCallbacks, maybeDeferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import resource, server
from werkzeug.routing import PathConverter

from lightningstor import errors
from lightningstor.auth.request import ANONYMOUS as ANONYMOUS_SCHEME
from lightningstor.auth.request import (
    SIGNATURE_VERSION,
    RequestView,
    check_signature_version,
    parse_auth,
    verify,
)
from lightningstor.core.access import ANONYMOUS, AskedAs, Decision, action_of
from lightningstor.core.objects import MAX_SINGLE_PUT_BYTES
from lightningstor.core.policy_actions import COPY_SOURCE
from lightningstor.core.service import Core
from lightningstor.core.types import Principal
from lightningstor.deferreds import Shared
from lightningstor.s3 import operations, xmlio
from lightningstor.s3.addressing import Target, absolute_authority, host_bucket, parse_target
from lightningstor.s3.body import BufferedBody, ObjectBody
from lightningstor.s3.bodycheck import watch_body
from lightningstor.s3.channel import S3Channel
from lightningstor.s3.handlers.cors import add_cors_headers, error_bucket
from lightningstor.s3.headers import check_expected_owner
from lightningstor.s3.inflight import DEFAULT_MAX_INFLIGHT_UPLOAD_BYTES, InflightBudget
from lightningstor.s3.policykeys import policy_condition_keys
from lightningstor.s3.request import S3Request
from lightningstor.s3.summary import RequestSummary, summarize
from lightningstor.s3.websitexml import error_html

log = Logger()

# The largest upload request body that can be valid: a 5 GiB object or part
# plus aws-chunked framing (under 2% with the smallest legal 8 KiB chunks).
MAX_UPLOAD_REQUEST_BYTES = MAX_SINGLE_PUT_BYTES + MAX_SINGLE_PUT_BYTES // 50 + (1 << 20)

# Paths answered without credentials (GET/HEAD), and the operation name they
# are counted and logged under.
_PROBES = {"/health": "Health", "/ready": "Ready"}
# The header naming the account a request expects to own its bucket, and
# the source bucket of a copy (indexed by "is it the copy's source").
_EXPECTED_OWNER = ("x-amz-expected-bucket-owner", "x-amz-source-expected-bucket-owner")


# Query parameters that make a request a presigned (signed) S3 request.
_SIGNATURE_QUERY = frozenset({"X-Amz-Signature", "X-Amz-Credential", "Signature", "AWSAccessKeyId"})


@dataclass
class S3Options:
    """The settings the S3 layer reads (a slice of the configuration)."""

    region: str = "us-east-1"
    domain: str | None = None
    # Static website endpoint: ``Host: bucket.<website_domain>`` (None: off).
    website_domain: str | None = None
    max_clock_skew_seconds: int = 900
    # [s3] presigned_url_ttl_seconds and signature_version ("v2", "v4").
    max_presign_seconds: int = 7 * 24 * 3600
    signature_versions: frozenset[str] = frozenset({"v2", "v4"})
    max_xml_body_bytes: int = 2 << 20
    # The request line and headers together, and each of them ([limits]
    # max_header_bytes; twisted.web's own default).
    max_header_bytes: int = 16384
    max_metadata_bytes: int = 2048
    max_object_size_bytes: int = 5 * 1024**4
    max_delete_keys: int = 1000
    server_name: str = "LightningStor"
    max_inflight_upload_bytes: int = DEFAULT_MAX_INFLIGHT_UPLOAD_BYTES
    # The length of a lifecycle rule's day ([lifecycle] day_seconds), for
    # the expiry date x-amz-expiration reports.
    lifecycle_day_seconds: float = 86400.0


@dataclass
class S3Call:
    """One S3 request as the handlers see it."""

    request: Any
    op: str
    target: Target
    headers: dict[str, str]  # lower-case name -> value (repeats joined by ',')
    header_lists: dict[str, list[str]]
    request_id: str
    method: str
    auth: Shared | None = None  # .get() fires (Principal, VerifiedAuth)
    sink: Any = None
    started: float = field(default_factory=time.monotonic)
    principal: Principal | None = None
    # The access key id once it is known to exist, even if the signature
    # then fails (the audit log names the key a failed attempt used).
    access_key_id: str | None = None
    error_code: str | None = None  # the S3 error sent, if any (metrics, access log)
    object_size: int | None = None  # size written, for handlers whose request does not state it
    # Every authorization question asked for this request (the audit record).
    decisions: list[Decision] = field(default_factory=list)
    # The bucket's CORS rules were applied to the response (add_cors_headers):
    # an error answer needs no second look (S3Api._on_failure).
    cors_evaluated: bool = False
    # A static website request (handlers/website.py): errors answer as HTML.
    website: bool = False
    # Refused by S3Api.admission before doing anything: no audit record.
    unaudited: bool = False

    @property
    def bucket(self) -> str:
        assert self.target.bucket is not None
        return self.target.bucket

    # -- what a bucket policy may ask (core/access.py, PolicyContext) --------
    def version_named(self) -> bool:
        return "versionId" in self.target.query

    def condition_keys(self) -> dict[str, tuple[str, ...]]:
        return policy_condition_keys(self)

    @property
    def key(self) -> str:
        assert self.target.key is not None
        return self.target.key


def _request_id() -> str:
    """16 upper-case hex digits, unique in practice (64 random bits).

    An identifier, not a secret: the process-wide Mersenne Twister (seeded
    from the OS, and reseeded in a forked child) rather than
    ``secrets.token_hex``, whose ``getrandom`` system call releases the GIL
    and so hands the reactor thread's turn to a pool thread on every request.
    """
    return f"{random.getrandbits(64):016X}"


def _headers_of(request: Any) -> tuple[dict[str, str], dict[str, list[str]]]:
    lists: dict[str, list[str]] = {}
    for name, values in request.requestHeaders.getAllRawHeaders():
        lists.setdefault(name.decode("latin-1").lower(), []).extend(
            v.decode("latin-1") for v in values
        )
    return {k: ",".join(v) for k, v in lists.items()}, lists


# Request headers a presigned URL may carry in its query instead, signed
# there: aws-sdk-js-v3's getSignedUrl and Ruby's presigned_url move every
# x-amz-* header but SSE into the query, and S3 stores such metadata and
# ACLs.  Not x-amz-tagging, checksums or x-amz-copy-source: S3 ignores those
# in a query (a recent JS SDK puts an empty body's CRC32 there).
_HOISTED_HEADERS = frozenset({
    "x-amz-acl", "x-amz-grant-read", "x-amz-grant-read-acp", "x-amz-grant-write-acp", "x-amz-grant-full-control",
    "x-amz-grant-write", "x-amz-storage-class", "x-amz-website-redirect-location",
})  # fmt: skip


def _hoist_signed_query(query: dict[str, str], headers: dict[str, str]) -> None:
    """Take ``x-amz-meta-*`` and :data:`_HOISTED_HEADERS` from the query of
    a query-signed request into ``headers``, unless sent as headers too.

    Only ``headers`` (what handlers read), never the header lists the
    signature is checked against: the signature covers these parameters
    as part of the query, and they are no unsigned headers.  A request
    whose signature fails is answered before any handler reads them.
    """
    for name, value in query.items():
        lower = name.lower()
        if (lower.startswith("x-amz-meta-") or lower in _HOISTED_HEADERS) and lower not in headers:
            headers[lower] = value


# Legal bodies that can exceed the general XML limit: 1000 maximal keys to
# delete, 10000 parts each with a checksum.
_LARGE_BODIES = {
    "DeleteObjects": xmlio.MAX_DELETE_BODY,
    "CompleteMultipartUpload": xmlio.MAX_COMPLETE_MULTIPART_BODY,
}


# Headers every response keeps; anything else a handler set before failing
# (ETag, checksums, Content-Range of the object it was about to send) would
# describe a body the error document is not.
_KEPT_ON_ERROR = frozenset({
    b"x-amz-request-id", b"x-amz-id-2", b"server", b"date", b"x-lightningstor-worker",
    # CORS headers (S3Api.bucket) describe the bucket and origin, not the
    # body: an error is readable by the page that asked too, as from AWS.
    b"access-control-allow-origin", b"access-control-allow-methods", b"access-control-allow-credentials",
    b"access-control-expose-headers", b"access-control-max-age", b"vary",
})  # fmt: skip


def _drop_object_headers(request: Any) -> None:
    headers = request.responseHeaders
    for name, _values in list(headers.getAllRawHeaders()):
        if name.lower() not in _KEPT_ON_ERROR:
            headers.removeHeader(name)


class _AnyPath(PathConverter):
    """Matches the rest of the path, whatever it holds, newlines too.

    ``part_isolating`` must be set explicitly: werkzeug infers True for a
    regex without "/" and would then match one path segment only.
    """

    regex = r"[\s\S]*"
    part_isolating = False


class S3Site(server.Site):
    """A Site whose requests stream their bodies into the S3 layer."""

    requestFactory = S3Request

    def __init__(self, api: S3Api, **kwargs: Any) -> None:
        super().__init__(api.app.resource(), **kwargs)
        self.api = api
        self._s3_resource = _S3Resource(api._s3)
        # The probes are served directly too: Klein would match the request
        # path as sent, and for a target in absolute form
        # ("GET http://host/health") that is the whole URI, which only the
        # S3 catch-all route matches, while begin had classified a probe.
        self._probes = {"Health": _S3Resource(api._health), "Ready": _S3Resource(api._ready)}

    def protocol(self) -> S3Channel:  # type: ignore[override]
        """The connection: an HTTP/1.1 :class:`S3Channel`, without the proxy
        that could switch it to HTTP/2 (``Factory.buildProtocol`` calls this)."""
        channel = S3Channel()
        # twisted.web's limits, as configured: one line (the request line or
        # a header) and the request head in all.
        channel.MAX_LENGTH = channel.totalHeadersSize = self.api.options.max_header_bytes
        return channel

    def acceptableProtocols(self) -> list[bytes]:
        """ALPN: HTTP/1.1, and HTTP/1.0, which the channel serves too (a
        client offering only ``http/1.0``, as ``curl --http1.0`` does, failed
        its handshake).  Not HTTP/2, which the S3 layer does not speak."""
        return [b"http/1.1", b"http/1.0"]

    def log(self, request: Any) -> None:
        """No combined-log line: the access log is a structured event from
        the API's finish hooks (lightningstor.s3.accesslog), which also
        covers requests whose client went away."""

    def begin_request(self, request: Any, command: bytes, path: bytes, length: int | None) -> None:
        self.api.begin(request, command, path, length)

    def getResourceFor(self, request: Any) -> Any:
        call = getattr(request, "s3call", None)
        if call is not None:
            if call.op == "Invalid":
                # Klein/werkzeug cannot route a path that is not UTF-8 (it
                # answers plain text); such a request still gets its S3 XML error.
                return _ErrorResource(self.api)
            if call.op == "Metrics" and self.api.metrics_resource is not None:
                return self.api.metrics_resource
            probe = self._probes.get(call.op)
            if probe is not None:
                return probe
            # Every S3 operation: the operation is already known (begin),
            # so werkzeug's URL matching would only find the catch-all
            # route again, at the cost of all of twisted.web's own work
            # (DESIGN.md, "Costs measured").
            request.site = self
            request.sitepath = list(request.prepath)
            return self._s3_resource
        # Set-up failed (S3Request._begin logged why): Klein's routes answer.
        return super().getResourceFor(request)


class _S3Resource(resource.Resource):
    """The S3 routes (``S3Api._s3``), or a probe's, rendered without Klein.

    Klein's own work per request (werkzeug's ``bind`` and ``match``, URL
    part extraction, two ``maybeDeferred`` layers) costs about as much as
    all of twisted.web, and for S3 it can only ever pick ``S3Api._s3``: the
    operation was classified from the raw request line when the headers
    arrived.  This resource does what Klein does with that route's result,
    step for step: the handler's Deferred is cancelled if the connection is
    lost before it fires; bytes are written and the request finished (unless
    it already was); a failure that escapes ``S3Api._s3``'s own error
    mapping becomes twisted's 500 page, or is logged once the request is
    over.
    """

    isLeaf = True

    def __init__(self, handler: Callable[[Any], Any]) -> None:
        super().__init__()
        self.handler = handler

    def render(self, request: Any) -> Any:
        # Only a request whose S3Api.begin ran gets here (S3Site.getResourceFor
        # needs its call), so begin's notifyFinish hook, S3Api._finished,
        # tells the state when the request ends: one notification per
        # request rather than three, each a Deferred and its callbacks.
        state = _RenderState(request)
        request.s3_render = state
        d = maybeDeferred(self.handler, request)
        state.handler = d
        d.addErrback(state.failed)
        d.addCallback(state.write)
        d.addErrback(_write_failed)
        return server.NOT_DONE_YET


def _write_failed(failure: Failure) -> None:
    log.failure("Unhandled Error writing response", failure)


class _RenderState:
    """What :class:`_S3Resource` needs to know while a request is rendered."""

    __slots__ = ("done", "handler", "request")

    def __init__(self, request: Any) -> None:
        self.request = request
        self.done = False  # notifyFinish fired: finished, or the connection was lost
        self.handler: Deferred[Any] | None = None

    def ended(self, result: Any) -> None:
        """The request's notifyFinish outcome (from S3Api._finished): done;
        and if the connection was lost, the handler is cancelled."""
        self.done = True
        if isinstance(result, Failure) and self.handler is not None:
            self.handler.cancel()

    def failed(self, failure: Failure) -> None:
        if self.done:
            if not failure.check(CancelledError):
                log.failure("Unhandled Error Processing Request.", failure)
            return None
        self.request.processingFailed(failure)
        return None

    def write(self, body: Any) -> None:
        if isinstance(body, str):
            body = body.encode("utf-8")
        if isinstance(body, bytes):
            self.request.write(body)
        if not self.done:
            self.request.finish()


class _ErrorResource(resource.Resource):
    isLeaf = True

    def __init__(self, api: S3Api) -> None:
        super().__init__()
        self.api = api

    def render(self, request: Any) -> Any:
        d = maybeDeferred(self.api._s3, request)

        def write(body: Any) -> None:
            if not request.finished:
                if body:
                    request.write(body)
                request.finish()

        d.addCallback(write)
        d.addErrback(lambda f: log.failure("Answering an invalid request failed", f))
        return server.NOT_DONE_YET


class S3Api:
    """Routes S3 requests to handlers; owns error mapping and authentication."""

    def __init__(self, core: Core, options: S3Options, *, clock: Callable[[], float] = time.time) -> None:
        from lightningstor.s3.handlers import HANDLERS

        self.core = core
        self.options = options
        # The signed schemes ``[s3] signature_version`` refuses (none by default).
        self._refused_schemes = frozenset(
            scheme for scheme, version in SIGNATURE_VERSION.items() if version not in options.signature_versions
        )
        self._server_name = options.server_name.encode("latin-1")
        self.clock = clock
        self.handlers = HANDLERS
        self.inflight: set[Any] = set()
        # Upload and buffered body bytes held in memory, all connections
        # together (s3/inflight.py).
        self.upload_budget = InflightBudget(options.max_inflight_upload_bytes)
        # Called once per request when it ends (lightningstor.s3.summary):
        # metrics and the access log register here.
        self.finish_hooks: list[Callable[[RequestSummary], None]] = []
        # Like finish_hooks, for hooks that also need the request's S3Call
        # (None if set-up failed): the audit log reads its principal and
        # authorization decisions.
        self.call_hooks: list[Callable[[RequestSummary, S3Call | None], None]] = []
        # Asked as each request's headers arrive (after the health, readiness
        # and metrics probes): an error to answer at once instead of serving
        # it ([audit] when_full = "refuse" sets it), or None.
        self.admission: Callable[[], errors.S3Error | None] | None = None
        # Served at GET /metrics on this port when set (lightningstor.metrics).
        self.metrics_resource: resource.IResource | None = None
        self.app = Klein()
        self.app.url_map.merge_slashes = False
        self.app.url_map.strict_slashes = False
        self.app.route("/health", methods=["GET", "HEAD"])(self._health)
        self.app.route("/ready", methods=["GET", "HEAD"])(self._ready)
        # Object keys may hold any character, newlines included; werkzeug's
        # own path converter stops at a newline.
        self.app.url_map.converters["s3key"] = _AnyPath
        self.app.route("/", strict_slashes=False)(self._s3)
        self.app.route("/<s3key:rest>", strict_slashes=False)(lambda request, rest: self._s3(request))

    # -- request set-up (called from S3Request.gotLength) -----------------
    def begin(self, request: Any, command: bytes, path: bytes, length: int | None) -> None:
        headers, header_lists = _headers_of(request)
        authority = absolute_authority(path)
        if authority is not None:
            # The target's authority replaces Host for addressing and for the
            # signature check alike (RFC 9112 §3.2.2; absolute_authority).
            headers["host"] = authority
            header_lists["host"] = [authority]
        # As sent: methods are case-sensitive (RFC 9110 §9.1), so ``get`` is
        # no GET but a method S3 does not have (405 MethodNotAllowed).
        method = command.decode("ascii", "replace")
        request_id = _request_id()
        wire_id = request_id.encode()
        response_headers = request.responseHeaders
        response_headers.put(b"x-amz-request-id", wire_id)
        response_headers.put(b"x-amz-id-2", wire_id)
        response_headers.put(b"Server", self._server_name)
        self.inflight.add(request)
        # twisted.web drops request.content (the body byte count) before
        # notifyFinish fires, so the hook keeps it.
        request.notifyFinish().addBoth(self._finished, request, getattr(request, "content", None))
        try:
            website = self.options.website_domain
            if website is not None and host_bucket(headers.get("host"), website) is not None:
                target = parse_target(path, headers.get("host"), website)
                op = operations.WEBSITE
            else:
                target = parse_target(path, headers.get("host"), self.options.domain)
                op = operations.classify(method, target, "x-amz-copy-source" in headers)
        except errors.S3Error as e:
            # An unparseable request line: every stage reports the same error.
            refusal = self.admission() if self.admission is not None else None
            error = refusal or e
            target = Target(None, None, "/", "")
            call = S3Call(request, "Invalid", target, headers, header_lists, request_id, method)
            call.unaudited = refusal is not None
            call.auth = Shared(_failed(error))
            request.s3call = call
            request.body_sink = call.sink = BufferedBody(0, lambda: error)
            return
        query = target.query
        if ("X-Amz-Signature" in query or "Signature" in query) and op != operations.WEBSITE:
            _hoist_signed_query(query, headers)
        call = S3Call(request, op, target, headers, header_lists, request_id, method)
        request.s3call = call
        probe = self._probe(call) if op != operations.WEBSITE else None
        if probe is not None:
            call.op = probe
            return
        refusal = self.admission() if self.admission is not None else None
        if refusal is not None:
            call.unaudited = True
            self._refuse_now(call, refusal)
            return
        if op in operations.STREAMING and length is not None and length > MAX_UPLOAD_REQUEST_BYTES:
            # No object or part can be this large: answer now rather than
            # read (and discard) a body that may never end.
            self._refuse_now(call, errors.EntityTooLarge(
                MaxSizeAllowed=str(MAX_SINGLE_PUT_BYTES), ProposedSize=str(length)))
            return
        if op == operations.POST_OBJECT:
            self._begin_post_object(call, length)
            return
        if op == operations.WEBSITE:
            # Never authenticated: every website request is an anonymous
            # read, whatever credentials it carries (handlers/website.py).
            call.principal = ANONYMOUS
            call.website = True
            call.auth = Shared(succeed((ANONYMOUS, anonymous_auth(call))))
        elif op != operations.PREFLIGHT:
            # A CORS preflight is never signed: no credentials are checked
            # (call.auth stays None; its handler resolves the bucket itself,
            # handlers/cors.py), and a body, which it should not have, is
            # buffered below (within the in-flight budget) and ignored.
            call.auth = Shared(self.authenticate(call))
            refused = call.auth.failure()
            if refused is not None and headers.get("expect", "").lower() == "100-continue":
                # The client holds the body back until "100 Continue", which
                # twisted.web sends once this returns.  Its credentials already
                # failed (a wrong signature, with the key cached): answer the
                # error instead, as AWS does, so the body is never sent.
                self._refuse_now(call, self._s3_error(refused, call))
                return
        buffered = op not in operations.STREAMING or op not in self.handlers
        limit = self._buffered_limit(op)
        if buffered and length is not None and length > limit:
            # A body that would never be kept: answered at once, without
            # reading it, as an upload declaring more than any object may
            # hold; the connection closes.
            self._refuse_now(call, errors.S3Error(code="MaxMessageLengthExceeded"))
            return
        request.s3_leaf = True
        if not buffered:
            sink = ObjectBody(
                request.channel.transport,
                lambda: self._prepare_upload(call, length),
                self.upload_budget,
                lambda error: self._refuse_now(call, error),
            )
            request.body_sink = call.sink = sink
            if length != 0 and request.expects_continue():
                # The 100 waits for the upload's checks, which may need I/O
                # (twisted.web would send it as soon as this returns).
                request.hold_continue()
                sink.when_prepared(lambda error: self._upload_checked(call, error))
            return
        buffer = BufferedBody(
            limit,
            lambda: errors.S3Error(code="MaxMessageLengthExceeded"),
            headers,
            object_checksums=op == "CompleteMultipartUpload",
            transport=request.channel.transport,
            budget=self.upload_budget,
        )
        request.body_sink = call.sink = buffer
        # A signed payload hash must match the body: read from the verified
        # signature when a handler first reads the body (always after it is
        # authenticated), not with a Deferred for every request.
        buffer.auth = call.auth
        watch_body(self, call, buffer, length)

    def _buffered_limit(self, op: str) -> int:
        """The largest body an operation without object data may send."""
        return max(self.options.max_xml_body_bytes, _LARGE_BODIES.get(op, 0))

    def _begin_post_object(self, call: S3Call, length: int | None) -> None:
        """PostObject's credentials are form fields in its body: nothing is
        authenticated here (``call.auth`` stays None); its sink checks the
        form once the fields have arrived (handlers/post_object.py)."""
        from lightningstor.s3.handlers.post_object import begin_post

        refused = begin_post(self, call, length)
        if refused is not None:
            self._refuse_now(call, refused)

    def _upload_checked(self, call: S3Call, error: BaseException | None) -> None:
        """The checks of an upload whose "100 Continue" is held are over.

        Passed: the 100 goes out and the body flows.  Failed while the
        client still waits: its error at once (:meth:`_refuse_now`), and
        the body is never sent.  Failed after the client started its body
        anyway (its own wait for the 100 ran out): as without ``Expect``,
        the sink discards the body and the handler answers the error, on a
        connection still in sync.
        """
        request = call.request
        if error is not None and request.awaits_continue():
            self._refuse_now(call, self._s3_error(Failure(error), call))
        else:
            request.release_continue(error is None)

    def _refuse_now(self, call: S3Call, error: errors.S3Error) -> None:
        """Answer ``error`` before the body is read and close the connection.

        For a request refused as its headers arrive (from :meth:`begin`), or
        an upload whose client waits for "100 Continue" and whose checks
        failed (:meth:`_upload_checked`).  The response goes out at once;
        the rest of the body, if the client sends it anyway, is discarded
        while the connection closes (there is no request boundary to resume
        at), so the handler never runs.  The request ends when the
        connection is gone: the finish hooks see it once, with this status
        and error code (and not completed: its body was never read).
        """
        request = call.request
        request.setHeader(b"connection", b"close")
        request.channel.persistent = False
        # Set when the whole request has arrived, which this one never will.
        request.clientproto = getattr(request.channel, "_version", None) or b"HTTP/1.1"
        request.body_sink = call.sink = BufferedBody(0, lambda: error)
        call.auth = Shared(_failed(error))
        # The answer is final: no "100 Continue", ours or twisted.web's, and
        # no body deadline.
        request.refuse_body()
        request.write(self.send_error(call, error))
        request.channel.loseConnection()

    def _probe(self, call: S3Call) -> str | None:
        """The name of a request answered without credentials, else None.

        ``/metrics`` is the Prometheus scrape only when this port serves it
        and the request is not signed: a signed ``GET /metrics`` is S3
        ListObjects on a bucket called "metrics".
        """
        if call.method not in ("GET", "HEAD"):
            return None
        path = call.target.raw_path
        if path in _PROBES:
            return _PROBES[path]
        if (
            path == "/metrics"
            and self.metrics_resource is not None
            and not call.target.vhost
            and "authorization" not in call.headers
            and not _SIGNATURE_QUERY.intersection(call.target.query)
        ):
            return "Metrics"
        return None

    def _finished(self, result: Any, request: Any, content: Any) -> None:
        """``notifyFinish`` fired (response sent, or connection lost): run
        the finish hooks once.  Hook errors are logged, never raised.

        Then the request lets go of its call.  ``request.s3call`` and
        ``call.request`` point at each other, so every request's objects
        (about fifty: headers, target, auth, body sink, their dicts and
        lists) formed one reference cycle that only the cyclic garbage
        collector could free, and its passes cost about a tenth of the
        server's CPU under load.  A handler still running (a connection
        lost mid-upload) keeps its call, which still reaches the request.
        """
        self.inflight.discard(request)
        sink = request.body_sink
        if isinstance(sink, BufferedBody):
            sink.release()  # its bytes leave the in-flight budget
        try:
            self._run_finish_hooks(result, request, content)
        finally:
            request.s3call = None
            request.body_sink = None
            render = getattr(request, "s3_render", None)
            if render is not None:
                request.s3_render = None
                render.ended(result)

    def _run_finish_hooks(self, result: Any, request: Any, content: Any) -> None:
        if not self.finish_hooks and not self.call_hooks:
            return
        try:
            summary = summarize(
                request, not isinstance(result, Failure), int(getattr(content, "received", 0))
            )
        except Exception:
            log.failure("Summarizing a finished request failed")
            return
        for hook in self.finish_hooks:
            try:
                hook(summary)
            except Exception:
                log.failure("Request finish hook {hook} failed", hook=hook)
        call = getattr(request, "s3call", None)
        for call_hook in self.call_hooks:
            try:
                call_hook(summary, call)
            except Exception:
                log.failure("Request finish hook {hook} failed", hook=call_hook)

    def _prepare_upload(self, call: S3Call, length: int | None) -> Deferred[Any]:
        from lightningstor.s3.handlers.multipart import prepare_part_upload
        from lightningstor.s3.handlers.objects import prepare_upload

        prepare = prepare_part_upload if call.op == "UploadPart" else prepare_upload
        return maybeDeferred(prepare, self, call, length)

    def authenticate(self, call: S3Call) -> Deferred[Any]:
        """Deferred[(Principal, VerifiedAuth)]; fails with the S3 auth error.

        A callback chain, not a generator: it runs for every request, and the
        credential usually comes from the cache, already fired.
        """
        view = RequestView(
            method=call.method,
            raw_path=call.target.raw_path,
            raw_query=call.target.raw_query,
            headers=call.header_lists,
        )
        try:
            parsed = parse_auth(view)
            if parsed.scheme == ANONYMOUS_SCHEME:
                # An unsigned request: only a bucket policy or an ACL may let it in
                # (core/access.py); everything else answers AccessDenied.
                call.principal = ANONYMOUS
                return succeed((ANONYMOUS, verify(parsed, "", view, now=0, region="")))
            if parsed.scheme in self._refused_schemes:
                check_signature_version(SIGNATURE_VERSION[parsed.scheme], self.options.signature_versions)
        except Exception:  # as a generator would: the failure travels the chain
            return fail()
        d: Deferred[Any] = self.core.credentials.lookup(parsed.access_key)
        return d.addCallback(self._verify, call, parsed, view)

    def _verify(self, cred: Any, call: S3Call, parsed: Any, view: RequestView) -> tuple[Principal, Any]:
        if cred is None:
            raise errors.InvalidAccessKeyId(AWSAccessKeyId=parsed.access_key)
        call.access_key_id = parsed.access_key
        verified = verify(
            parsed,
            cred.secret,
            view,
            now=self.clock(),
            region=self.options.region,
            max_skew_seconds=self.options.max_clock_skew_seconds,
            max_presign_seconds=self.options.max_presign_seconds,
            virtual_host_bucket=call.target.bucket if call.target.vhost else None,
        )
        call.principal = cred.principal
        return cred.principal, verified

    # -- access -----------------------------------------------------------
    def bucket(
        self,
        call: S3Call,
        principal: Principal,
        *,
        name: str | None = None,
        key: str | None = None,
        action: str | None = None,
        source_version: str | None = None,
    ) -> Deferred[Any]:
        """Deferred[Bucket]: the request's bucket (or ``name``), resolved in
        the caller's scope and authorized for the operation's action on the
        bucket, or on the object ``key`` (default: the request's key).

        ``name`` is only ever the source of a copy, which a bucket policy
        sees as ``s3:GetObject``, or as ``s3:GetObjectVersion`` with that
        version's ``s3:VersionId`` (and tags) when the copy source names
        ``source_version`` (the request's own ``versionId`` is not the
        source's), and an ACL as a read of that version."""
        if key is None:
            key = call.target.key
        if action is None:
            action = action_of(call.op, key is not None)
        d: Deferred[Any] = self.core.access.bucket(
            principal,
            name if name is not None else call.bucket,
            action,
            key,
            call.decisions.append,
            call if name is None else AskedAs(call, version_id=source_version),
            COPY_SOURCE if name is not None else None,
        )
        if name is None and "origin" in call.headers:
            # A cross-origin request: its bucket's CORS rules may add
            # headers (handlers/cors.py).  Without an Origin, no extra work.
            d.addCallback(add_cors_headers, call)
        expected = call.headers.get(_EXPECTED_OWNER[name is not None])
        if expected is not None:
            d.addCallback(check_expected_owner, expected)
        return d

    def cross_origin(self, call: S3Call, bucket: Any) -> None:
        """The CORS headers of a cross-origin request whose handler resolved
        its bucket without :meth:`bucket` (DeleteObjects authorizes each key
        alone)."""
        if "origin" in call.headers:
            add_cors_headers(bucket, call)

    def authorize_scope(self, call: S3Call, principal: Principal, *, bucket: str | None = None) -> Deferred[Any]:
        """Deferred[None]: the operation's action on the caller's scope
        (ListBuckets) or on a bucket to be created there (CreateBucket)."""
        d: Deferred[Any] = self.core.access.scope(
            principal, action_of(call.op, False), call.decisions.append, bucket
        )
        return d

    # -- routes -----------------------------------------------------------
    def _health(self, request: Any) -> Any:
        request.setHeader(b"content-type", b"application/json")
        return b'{"status":"ok"}\n'

    @inlineCallbacks
    def _ready(self, request: Any) -> Any:
        import json

        status = yield self.core.readiness()
        ok = all(v is None for v in status.values())
        request.setResponseCode(200 if ok else 503)
        request.setHeader(b"content-type", b"application/json")
        body = {"status": "ready" if ok else "unavailable", "checks": {
            k: ("ok" if v is None else v) for k, v in status.items()}}
        return json.dumps(body).encode() + b"\n"

    def _s3(self, request: Any) -> Any:
        call: S3Call | None = getattr(request, "s3call", None)
        if call is None:
            # Request set-up failed in gotLength; answer rather than hang.
            call = S3Call(request, "Invalid", Target(None, None, "/", ""), {}, {}, "0", "GET")
            return self.send_error(call, errors.InternalError())
        d = maybeDeferred(self._dispatch, call)
        d.addErrback(self._on_failure, call)
        return d

    def _dispatch(self, call: S3Call) -> Any:
        handler = self.handlers.get(call.op)
        if handler is None:
            return self._unsupported(call)
        return handler(self, call)

    @inlineCallbacks
    def _unsupported(self, call: S3Call) -> Any:
        yield call.auth.get()  # type: ignore[union-attr]
        from lightningstor.s3.handlers.misc import unsupported

        result = yield unsupported(self, call)
        return result

    # -- responses --------------------------------------------------------
    def send(
        self,
        call: S3Call,
        status: int = 200,
        body: bytes = b"",
        *,
        headers: list[tuple[str, str]] | tuple[()] = (),
        content_type: str | None = "application/xml",
    ) -> bytes:
        request = call.request
        request.setResponseCode(status)
        response_headers = request.responseHeaders
        if headers:
            response_headers.set_pairs(headers)
        if body or status not in (204, 304):
            if content_type is not None:
                response_headers.put(b"Content-Type", content_type.encode())
        response_headers.put(b"Content-Length", b"%d" % len(body))
        if call.method == "HEAD":
            return b""
        return body

    def send_xml(self, call: S3Call, body: bytes, status: int = 200, headers: list[tuple[str, str]] | tuple[()] = ()) -> bytes:
        return self.send(call, status, body, headers=headers)

    def send_error(self, call: S3Call, error: errors.S3Error) -> bytes:
        call.error_code = error.code
        body = b""
        if call.website:
            # AWS's website endpoints answer errors as an HTML page.
            if call.method != "HEAD" and error.status != 304:
                body = error_html(error, call.request_id)
            return self.send(call, error.status, body, headers=list(error.headers.items()), content_type="text/html; charset=utf-8")
        if call.method != "HEAD" and error.status != 304:
            body = xmlio.error_xml(
                error.code,
                error.message,
                resource=error.resource or call.target.resource,
                request_id=call.request_id,
                fields=error.fields,
            )
        return self.send(call, error.status, body, headers=list(error.headers.items()))

    def _on_failure(self, failure: Failure, call: S3Call) -> Any:
        request = call.request
        if request.channel is None and failure.check(CancelledError):
            # The client went away and twisted.web cancelled the handler (a
            # request still queued behind a pipelined one, or one mid-way):
            # nobody is left to answer, and it is no fault of the server's.
            return None
        if request.finished or request.startedWriting:
            # Too late for an error document (a streamed body broke): cut the
            # connection so the client sees a short body, never wrong data.
            if not failure.check(errors.S3Error):
                log.failure("S3 {op} failed mid-response", failure, op=call.op)
            if not request.finished and request.channel is not None:
                request.channel.transport.abortConnection()
            return None
        _drop_object_headers(request)
        error = self._s3_error(failure, call)
        if "origin" in call.headers and not call.cors_evaluated and call.target.bucket is not None:
            # A cross-origin request that failed before its bucket's rules
            # were applied: the page may read the error only with them.
            d = error_bucket(self.core, call)
            d.addCallback(_add_cors_if_found, call)
            d.addErrback(_cors_lookup_failed, call)
            d.addCallback(lambda _: self.send_error(call, error))
            return d
        return self.send_error(call, error)

    def _s3_error(self, failure: Failure, call: S3Call) -> errors.S3Error:
        """The S3 error that answers ``failure`` (:func:`errors.below_core`);
        the server's own faults are logged."""
        err = failure.value
        answer = errors.below_core(err) if err is not None else None
        if answer is None:
            log.failure("Unhandled error in S3 {op}", failure, op=call.op)
            return errors.InternalError()
        if answer is not err:
            log.error("{op} {res} answered {code}: {err}", op=call.op, res=call.target.resource,
                      code=answer.code, err=err)
        return answer


def _add_cors_if_found(bucket: Any, call: S3Call) -> None:
    if bucket is not None:
        add_cors_headers(bucket, call)


def _cors_lookup_failed(failure: Failure, call: S3Call) -> None:
    """The error is answered without CORS headers, as before the lookup."""
    if not failure.check(CancelledError):
        log.failure("Looking up the CORS rules of a failed {op} failed", failure, op=call.op)


def anonymous_auth(call: S3Call) -> Any:
    """The VerifiedAuth of an unsigned request, for a call that is anonymous
    whatever it carries (a website request): its credentials are ignored."""
    view = RequestView(method=call.method, raw_path=call.target.raw_path, raw_query="", headers={})
    return verify(parse_auth(view), "", view, now=0, region="")


def _failed(error: Exception) -> Deferred[Any]:
    d: Deferred[Any] = Deferred()
    d.errback(Failure(error))
    return d
