"""Access control: the actions, the resource paths and the one gate (SPEC §7.3).

Two independent checks stand between a caller and a resource:

1. **Scope.** A bucket name resolves only inside the caller's own scope
   (:class:`~lightningstor.core.buckets.BucketManager`): another tenant's
   bucket is not found, whatever any grant says.  This is what makes the
   tenant boundary hold even with a permissive authorizer.
2. **Authorization.** The configured ``IAuthorizer`` plugin must allow the
   action on the resource.  An authorizer that cannot decide (IAM service
   down) fails, and the gate refuses: it never fails open.

Resource paths follow SPEC §7.3 (``org/{org}/project/{project}/bucket/{name}``
and ``.../bucket/{name}/object/{key}``); an org-level bucket has no project
segment (``org/{org}/bucket/{name}``), matching the SPEC §3.1 fully
qualified names ``{org}/{project}/{name}`` and ``{org}/{name}``.  The scope
itself (ListBuckets, CreateBucket's target scope) is ``org/{org}`` or
``org/{org}/project/{project}``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred, fail, inlineCallbacks, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from lightningstor import errors
from lightningstor.core.types import Bucket, Principal

log = Logger()

BUCKETS_CREATE = "lightningstor:buckets:create"
BUCKETS_GET = "lightningstor:buckets:get"
BUCKETS_LIST = "lightningstor:buckets:list"
BUCKETS_DELETE = "lightningstor:buckets:delete"
OBJECTS_PUT = "lightningstor:objects:put"
OBJECTS_GET = "lightningstor:objects:get"
OBJECTS_LIST = "lightningstor:objects:list"
OBJECTS_DELETE = "lightningstor:objects:delete"
OBJECTS_COPY = "lightningstor:objects:copy"
UPLOADS_CREATE = "lightningstor:uploads:create"
UPLOADS_COMPLETE = "lightningstor:uploads:complete"
UPLOADS_ABORT = "lightningstor:uploads:abort"

ACTIONS = (
    BUCKETS_CREATE, BUCKETS_GET, BUCKETS_LIST, BUCKETS_DELETE,
    OBJECTS_PUT, OBJECTS_GET, OBJECTS_LIST, OBJECTS_DELETE, OBJECTS_COPY,
    UPLOADS_CREATE, UPLOADS_COMPLETE, UPLOADS_ABORT,
)  # fmt: skip


# The SPEC §7.3 action each API operation needs (S3 and gRPC share the
# operation names), on its bucket (bucket-level operations) or on its object
# (object-level ones).  Changing a bucket's
# configuration (versioning, tags, CORS, lifecycle) takes the right to create buckets: the
# SPEC names no separate action for it, and it is an administrator's act.
# CopyObject and UploadPartCopy also need ``objects:get`` on the source;
# DeleteObjects needs ``objects:delete`` on each key it names.
OPERATION_ACTIONS = {
    "ListBuckets": BUCKETS_LIST,
    "CreateBucket": BUCKETS_CREATE,
    "HeadBucket": BUCKETS_GET,
    "GetBucketLocation": BUCKETS_GET,
    "GetBucketAcl": BUCKETS_GET,
    "GetBucketVersioning": BUCKETS_GET,
    "GetBucketTagging": BUCKETS_GET,
    "GetBucketCors": BUCKETS_GET,
    "GetBucketLifecycleConfiguration": BUCKETS_GET,
    "PutBucketAcl": BUCKETS_CREATE,
    "PutBucketVersioning": BUCKETS_CREATE,
    "PutBucketTagging": BUCKETS_CREATE,
    "DeleteBucketTagging": BUCKETS_CREATE,
    "PutBucketCors": BUCKETS_CREATE,
    "DeleteBucketCors": BUCKETS_CREATE,
    "PutBucketLifecycleConfiguration": BUCKETS_CREATE,
    "DeleteBucketLifecycle": BUCKETS_CREATE,
    "DeleteBucket": BUCKETS_DELETE,
    "ListObjects": OBJECTS_LIST,
    "ListObjectsV2": OBJECTS_LIST,
    "ListObjectVersions": OBJECTS_LIST,
    "ListMultipartUploads": OBJECTS_LIST,
    "DeleteObjects": OBJECTS_DELETE,
    "PutObject": OBJECTS_PUT,
    "PutObjectAcl": OBJECTS_PUT,
    "PutObjectTagging": OBJECTS_PUT,
    "DeleteObjectTagging": OBJECTS_PUT,
    "GetObject": OBJECTS_GET,
    "HeadObject": OBJECTS_GET,
    "GetObjectAcl": OBJECTS_GET,
    "GetObjectTagging": OBJECTS_GET,
    "GetObjectAttributes": OBJECTS_GET,
    "DeleteObject": OBJECTS_DELETE,
    "CopyObject": OBJECTS_COPY,
    "CreateMultipartUpload": UPLOADS_CREATE,
    "UploadPart": OBJECTS_PUT,
    "UploadPartCopy": OBJECTS_COPY,
    "CompleteMultipartUpload": UPLOADS_COMPLETE,
    "AbortMultipartUpload": UPLOADS_ABORT,
    "ListParts": OBJECTS_LIST,
}


def action_of(op: str, object_level: bool) -> str:
    """The action an operation needs; unknown or unsupported operations
    need read access to what they name (they only ever answer an error)."""
    return OPERATION_ACTIONS.get(op, OBJECTS_GET if object_level else BUCKETS_GET)


@dataclass(frozen=True)
class ResourceRef:
    """What an action is applied to.

    ``kind`` is ``scope`` (an org or project as a whole), ``bucket`` or
    ``object``.  ``owner`` is the principal that created the bucket (empty
    for a scope): authorizers may grant owners their own buckets.
    """

    kind: str
    org_id: str
    project_id: str | None = None
    bucket: str | None = None
    key: str | None = None
    owner: str = ""

    @property
    def path(self) -> str:
        out = f"org/{self.org_id}"
        if self.project_id:
            out += f"/project/{self.project_id}"
        if self.bucket is not None:
            out += f"/bucket/{self.bucket}"
            if self.key is not None:
                out += f"/object/{self.key}"
        return out


def scope_resource(org_id: str, project_id: str | None) -> ResourceRef:
    return ResourceRef("scope", org_id, project_id or None)


def bucket_resource(bucket: Bucket, key: str | None = None) -> ResourceRef:
    return ResourceRef(
        "object" if key is not None else "bucket",
        bucket.org_id,
        bucket.project_id,
        bucket.name,
        key,
        bucket.created_by,
    )


@dataclass(frozen=True)
class Decision:
    """One authorization question and its answer (audit records list them)."""

    action: str
    resource: str
    allowed: bool


# Where a protocol layer collects a request's decisions (its audit record).
Trail = Callable[[Decision], None] | None


# Object reads and listings may take their bucket from the read cache
# (core/buckets.py); every other action reads the bucket record.
_CACHED_READS = frozenset({OBJECTS_GET, OBJECTS_LIST})


class AccessControl:
    """The gate every protocol layer goes through."""

    def __init__(self, buckets: Any, authorizer: Any) -> None:
        self._buckets = buckets
        self.authorizer = authorizer

    # check() and bucket() run for every request: plain callbacks rather than
    # inlineCallbacks generators, since the authorizer's answer is usually
    # already at hand (LocalAuthorizer's cache) and the chain then runs at once.
    def check(self, principal: Principal, action: str, resource: ResourceRef, trail: Trail = None) -> Deferred[None]:
        """Deferred[None]; AccessDenied unless the authorizer allows it.

        An authorizer failure (IAM unreachable) is logged and answered as
        ``ServiceUnavailable``: the request is refused, but the client is
        told to retry rather than that it lacks permission.
        """
        try:
            answer = self.authorizer.authorize(principal, action, resource)
        except Exception:
            answer = fail()
        d: Deferred[Any] = answer if isinstance(answer, Deferred) else succeed(answer)
        d.addCallbacks(
            self._decided,
            self._undecided,
            callbackArgs=(action, resource, trail),
            errbackArgs=(action, resource, trail),
        )
        return d

    @staticmethod
    def _decided(allowed: Any, action: str, resource: ResourceRef, trail: Trail) -> None:
        if trail is not None:
            trail(Decision(action, resource.path, bool(allowed)))
        if not allowed:
            raise errors.AccessDenied(resource=_s3_resource(resource))
        return None

    def _undecided(self, failure: Failure, action: str, resource: ResourceRef, trail: Trail) -> Failure:
        if failure.check(errors.S3Error):
            return failure
        e = failure.value
        if not isinstance(e, Exception):  # BaseException (cancellation by GeneratorExit...) passes through
            return failure
        log.error(
            "authorizer {name} could not decide {action} on {res}: {err}",
            name=getattr(self.authorizer, "name", "?"), action=action, res=resource.path, err=e,
        )
        if trail is not None:
            trail(Decision(action, resource.path, False))
        unavailable = errors.ServiceUnavailable("The authorization service is unavailable")
        unavailable.__cause__ = e
        return Failure(unavailable)

    def bucket(
        self,
        principal: Principal,
        name: str,
        action: str,
        key: str | None = None,
        trail: Trail = None,
    ) -> Deferred[Any]:
        """Deferred[Bucket]: resolve ``name`` in the caller's scope, then
        authorize ``action`` on it (or on its object ``key``).

        NoSuchBucket if the name does not resolve: a bucket of another
        tenant is indistinguishable from one that does not exist.
        """
        if action in _CACHED_READS:
            d: Deferred[Any] = self._buckets.find_for_read(principal, name)
        else:
            d = self._buckets.get(principal, name)

        def authorize(bucket: Bucket) -> Deferred[Any]:
            checked = self.check(principal, action, bucket_resource(bucket, key), trail)
            return checked.addCallback(lambda _: bucket)

        return d.addCallback(authorize)

    def scope(
        self,
        principal: Principal,
        action: str,
        trail: Trail = None,
        bucket: str | None = None,
    ) -> Deferred[Any]:
        """Deferred[None]: authorize a scope-wide action (ListBuckets), or
        CreateBucket of ``bucket`` in the caller's own scope."""
        resource = ResourceRef(
            "bucket" if bucket is not None else "scope",
            principal.org_id,
            principal.project_id,
            bucket,
            None,
            "",
        )
        d: Deferred[Any] = self.check(principal, action, resource, trail)
        return d


def _s3_resource(resource: ResourceRef) -> str:
    """The ``<Resource>`` of the AccessDenied document (the S3 path)."""
    if resource.bucket is None:
        return "/"
    if resource.key is None:
        return f"/{resource.bucket}"
    return f"/{resource.bucket}/{resource.key}"


@inlineCallbacks
def allow_all(principal: Principal, action: str, resource: ResourceRef) -> Any:
    """An authorize function that allows everything (unit tests of other layers)."""
    yield None
    return True
