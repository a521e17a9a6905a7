"""Stop keeping a buffered request body once its request is known to be refused.

AWS answers a request whose credentials fail, or an anonymous request it
will not let in, without keeping its body.  A
:class:`~lightningstor.s3.body.BufferedBody` (up to 8 MiB for DeleteObjects)
would otherwise stay in memory until the whole body has arrived and the
handler looks at the credentials, so clients without any credential could
make a worker hold one such body per connection.

Two outcomes are known before the body is needed:

* the request's authentication failed (unknown key, wrong signature, a
  presigned URL out of date...): every handler's first step answers that
  error;
* an anonymous request names a bucket that does not exist, or one with
  neither a bucket policy nor ACLs enabled: only one of those lets an
  anonymous caller in (core/access.py), so every operation on it is
  refused (``NoSuchBucket``, ``AccessDenied``).

Either way the sink discards (:meth:`BufferedBody.discard`).  The handler
still answers, once the rest of the body has been read and dropped, on a
connection still in sync, as a failed upload does; the declared length is
at most the sink's limit (``S3Api.begin`` refuses a longer one before
reading it), so the drain is bounded too.

Every handler that reads a buffered body checks the caller and the bucket
first, so what it answers does not change.  CreateBucket is the exception:
it reads its body before the caller's right to create, and its bucket does
not exist yet by definition, so it is not checked here (its bytes still
count in the in-flight budget).
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger
from twisted.python.failure import Failure

from lightningstor import errors
from lightningstor.core.access import ANONYMOUS
from lightningstor.core.acl import acls_enabled
from lightningstor.s3.body import BufferedBody

log = Logger()

# Operations whose bucket need not exist for the request to succeed.
_BUCKET_MADE = frozenset({"CreateBucket"})


def watch_body(api: Any, call: Any, sink: BufferedBody, length: int | None) -> None:
    """Have ``sink`` discard its body as soon as ``call`` is known to be
    refused.  ``length`` is the declared body length (0: no body, nothing
    to watch; None: chunked)."""
    auth = call.auth
    if length == 0 or auth is None or call.website:
        return
    refused = auth.failure()
    if refused is not None:
        sink.discard(_error_of(refused))
        return
    if not auth.done:
        # A signed request whose credential is being looked up (an anonymous
        # one is decided at once).
        auth.get().addErrback(_auth_failed, sink)
        return
    bucket = call.target.bucket
    if call.principal is ANONYMOUS and bucket is not None and call.op not in _BUCKET_MADE:
        d = api.core.access.resolve(ANONYMOUS, bucket)
        d.addCallback(_anonymous_reaches, sink)
        d.addErrback(_anonymous_missing, sink)


def _error_of(failure: Failure) -> BaseException:
    error = failure.value
    return error if isinstance(error, Exception) else errors.InternalError()


def _auth_failed(failure: Failure, sink: BufferedBody) -> None:
    # The handler gets the same failure from call.auth; this copy is consumed.
    sink.discard(_error_of(failure))


def _anonymous_reaches(bucket: Any, sink: BufferedBody) -> None:
    if not bucket.policy and not acls_enabled(bucket):
        sink.discard(errors.AccessDenied(resource=f"/{bucket.name}"))


def _anonymous_missing(failure: Failure, sink: BufferedBody) -> None:
    if failure.check(errors.NoSuchBucket):
        sink.discard(_error_of(failure))
    elif not failure.check(errors.S3Error):
        log.failure("Checking the bucket of an anonymous request failed", failure)
    # Any other outcome is the handler's to meet and answer; the body is
    # kept meanwhile, counted in the budget.
