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

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

from twisted.internet.defer import Deferred, fail, inlineCallbacks, maybeDeferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from lightningstor import errors
from lightningstor.core import acl as acls
from lightningstor.core.policy import BucketPolicy, RequestFacts, parse_policy
from lightningstor.core.policy_actions import COPY_SOURCE, OWNER_ALWAYS, policy_action
from lightningstor.core.types import Acl, Bucket, Principal, PublicAccessBlock

log = Logger()

# Who sends an unsigned request.  No principal id or org: no scope holds a
# bucket for it and no authorizer is asked about it; only a bucket policy
# or an ACL can let it in (AccessControl).
ANONYMOUS = Principal(principal_id="", org_id="", display_name="anonymous")


def is_anonymous(principal: Principal) -> bool:
    return not principal.principal_id

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

# Writing an object's ACL (PutObjectAcl, and an ACL header on a write that
# grants anyone but the object's and the bucket's owners): AWS's
# s3:PutObjectAcl, apart from s3:PutObject, so that the right to write
# objects is not the right to make them public.  The SPEC's twelve actions
# have no such action, so only an authorizer that names it in its
# ``refined_actions`` is asked it; every other one (aegis, whose contract is
# the SPEC's list) is asked the SPEC action it refines, objects:put, as before.
OBJECTS_PUT_ACL = "lightningstor:objects:put-acl"
REFINES = {OBJECTS_PUT_ACL: OBJECTS_PUT}
# Every action a grant of the local authorizer may name.
GRANTABLE_ACTIONS = (*ACTIONS, OBJECTS_PUT_ACL)


# The SPEC §7.3 action each API operation needs (S3 and gRPC share the
# operation names), on its bucket (bucket-level operations) or on its object
# (object-level ones).  Changing a bucket's
# configuration (versioning, tags, CORS, lifecycle, encryption, policy, Object Lock, ACL, Object
# Ownership) takes the right to create
# buckets: the SPEC names no separate action for it, and it is an administrator's act.  So does
# bypassing GOVERNANCE retention (x-amz-bypass-governance-retention, asked on the object:
# core.service.Core.may_bypass_governance).  Changing an object's ACL takes
# objects:put-acl (OBJECTS_PUT_ACL), not the right to write it.
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
    "GetBucketWebsite": BUCKETS_GET,
    "GetBucketLifecycleConfiguration": BUCKETS_GET,
    "GetBucketEncryption": BUCKETS_GET,
    "PutBucketEncryption": BUCKETS_CREATE,
    "DeleteBucketEncryption": BUCKETS_CREATE,
    "PutBucketAcl": BUCKETS_CREATE,
    "PutBucketVersioning": BUCKETS_CREATE,
    "PutBucketTagging": BUCKETS_CREATE,
    "DeleteBucketTagging": BUCKETS_CREATE,
    "PutBucketCors": BUCKETS_CREATE,
    "PutBucketWebsite": BUCKETS_CREATE,
    "DeleteBucketWebsite": BUCKETS_CREATE,
    "DeleteBucketCors": BUCKETS_CREATE,
    "PutBucketLifecycleConfiguration": BUCKETS_CREATE,
    "DeleteBucketLifecycle": BUCKETS_CREATE,
    "GetBucketPolicy": BUCKETS_GET,
    "GetBucketPolicyStatus": BUCKETS_GET,
    "PutBucketPolicy": BUCKETS_CREATE,
    "DeleteBucketPolicy": BUCKETS_CREATE,
    "GetPublicAccessBlock": BUCKETS_GET,
    "PutPublicAccessBlock": BUCKETS_CREATE,
    "DeletePublicAccessBlock": BUCKETS_CREATE,
    "GetObjectLockConfiguration": BUCKETS_GET,
    "PutObjectLockConfiguration": BUCKETS_CREATE,
    "GetBucketOwnershipControls": BUCKETS_GET,
    "PutBucketOwnershipControls": BUCKETS_CREATE,
    "DeleteBucketOwnershipControls": BUCKETS_CREATE,
    "DeleteBucket": BUCKETS_DELETE,
    "ListObjects": OBJECTS_LIST,
    "ListObjectsV2": OBJECTS_LIST,
    "ListObjectVersions": OBJECTS_LIST,
    "ListMultipartUploads": OBJECTS_LIST,
    "DeleteObjects": OBJECTS_DELETE,
    "PutObject": OBJECTS_PUT,
    "PutObjectAcl": OBJECTS_PUT_ACL,
    "PutObjectTagging": OBJECTS_PUT,
    "DeleteObjectTagging": OBJECTS_PUT,
    "GetObject": OBJECTS_GET,
    "HeadObject": OBJECTS_GET,
    "GetObjectAcl": OBJECTS_GET,
    "GetObjectTagging": OBJECTS_GET,
    "GetObjectAttributes": OBJECTS_GET,
    "GetObjectRetention": OBJECTS_GET,
    "GetObjectLegalHold": OBJECTS_GET,
    "PutObjectRetention": OBJECTS_PUT,
    "PutObjectLegalHold": OBJECTS_PUT,
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


class PolicyContext(Protocol):
    """What a protocol layer knows of one request that a bucket policy may
    ask about.  Only consulted for buckets that have a policy, so a layer
    computes the condition keys on demand, never for every request."""

    @property
    def op(self) -> str:
        """The operation's name (``GetObject``...)."""
        ...

    def version_named(self) -> bool:
        """Whether the request names an object version (``versionId``)."""
        ...

    def condition_keys(self) -> dict[str, tuple[str, ...]]:
        """The request's condition keys (lower-cased names, e.g.
        ``aws:sourceip``, ``s3:prefix``): see core/policy.py.  Keys about
        the caller (``aws:username``...) are added by the gate."""
        ...


class UnreadablePolicy:
    """Stands in for a stored policy that no longer parses (a later version
    validating more strictly than the one that stored it).  It denies
    everything: dropping it would drop its Deny statements too.  The
    owner's side can still read, replace or delete it (OWNER_ALWAYS)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def evaluate(self, facts: RequestFacts) -> str:
        return "Deny"

    def condition_keys(self) -> frozenset[str]:
        return frozenset()

    def is_public(self) -> bool:
        return False


class AskedAs:
    """A request's :class:`PolicyContext` asked as another operation, or
    about one version: a DeleteObjects entry naming a version
    (``s3:DeleteObjectVersion`` with ``s3:VersionId``), a GET of a missing
    key asked as the listing AWS checks then.  The request's own condition
    keys stand, except ``s3:VersionId``, which is this question's, and
    ``s3:if-match`` when ``if_match`` is given (a DeleteObjects entry's
    ``ETag``, its condition as DeleteObject's header is)."""

    def __init__(
        self,
        request: PolicyContext,
        *,
        op: str | None = None,
        version_id: str | None = None,
        if_match: str | None = None,
    ) -> None:
        self.op = request.op if op is None else op
        self._request = request
        self._version_id = version_id
        self._if_match = if_match

    def version_named(self) -> bool:
        return self._version_id is not None

    def condition_keys(self) -> dict[str, tuple[str, ...]]:
        keys = dict(self._request.condition_keys())
        keys.pop("s3:versionid", None)
        if self._version_id is not None:
            keys["s3:versionid"] = (self._version_id,)
        if self._if_match is not None:
            keys["s3:if-match"] = (self._if_match,)
        return keys


@lru_cache(maxsize=1024)
def _parsed_policy(text: str, bucket: str) -> BucketPolicy | UnreadablePolicy:
    try:
        return parse_policy(text.encode("utf-8"), bucket)
    except errors.MalformedPolicy as e:
        log.error(
            "The stored policy of bucket {bucket} no longer parses ({err}): every request is denied until its "
            "owner replaces or deletes it", bucket=bucket, err=e.message,
        )
        return UnreadablePolicy(text)


def bucket_policy(bucket: Bucket) -> BucketPolicy | UnreadablePolicy | None:
    """The bucket's policy, parsed once per distinct text (a bucket record is
    decoded on every request that reads it; its policy need not be)."""
    if not bucket.policy:
        return None
    return _parsed_policy(bucket.policy, bucket.name)


def in_scope(principal: Principal, bucket: Bucket) -> bool:
    """Whether ``bucket`` lies in the scope the principal's names resolve
    in, as BucketManager.find resolves them: the org's shared buckets, and
    for a project principal its project's too.

    A project bucket is outside an org-level principal's scope, though in
    its org: its names never resolve there, and when a policy or an ACL
    makes the bucket reachable by name from outside (``_elsewhere``), an
    org-level principal comes in as any outsider does, with what the policy
    or ACL grants it, not with its roles (which a policy naming someone
    else would otherwise have opened the bucket to)."""
    if bucket.org_id != principal.org_id or is_anonymous(principal):
        return False
    return bucket.project_id in (None, principal.project_id)


def _caller_keys(principal: Principal, now: float) -> dict[str, tuple[str, ...]]:
    """The condition keys about the caller and the time, which every
    protocol layer shares."""
    keys: dict[str, tuple[str, ...]] = {
        "aws:currenttime": (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),),
        "aws:epochtime": (str(int(now)),),
        "aws:principaltype": ("Anonymous" if is_anonymous(principal) else "User",),
    }
    if not is_anonymous(principal):
        keys["aws:username"] = (principal.principal_id,)
        keys["aws:userid"] = (principal.principal_id,)
        keys["aws:principalaccount"] = (principal.org_id,)
        keys["aws:principalarn"] = (f"arn:aws:iam::{principal.org_id}:user/{principal.principal_id}",)
    return keys


# Object reads and listings may take their bucket from the read cache
# (core/buckets.py); every other action reads the bucket record.
_CACHED_READS = frozenset({OBJECTS_GET, OBJECTS_LIST})


class AccessControl:
    """The gate every protocol layer goes through.

    **Bucket policies.**  A bucket with a policy (core/policy.py) has it
    evaluated first, as AWS combines a bucket policy with the caller's own
    permissions within one account: an explicit Deny refuses, an Allow
    grants without asking the authorizer, and otherwise the authorizer
    decides as for any bucket.  A policy (or, below, an ACL) is also the
    only way in from outside the bucket's scope: an anonymous request, or a
    principal of another tenant whose name does not resolve in its own
    scope, reaches the one bucket of that name (the name index,
    BucketManager.get_unique) and gets only what its policy explicitly
    allows.  Such a caller is never shown a bucket without a policy whose
    ACLs are disabled: a tenant's bucket stays as invisible to another
    tenant as before (NoSuchBucket), and anonymous requests get
    AccessDenied for it, as AWS answers.  Whatever a policy says, a caller
    from outside the scope never changes the bucket's configuration nor
    reads its policy.  Buckets without a policy pay one attribute check.

    **ACLs.**  While a bucket's ACLs are enabled (its Object Ownership is
    not BucketOwnerEnforced: core/acl.py), its ACL and its objects' ACLs
    are one more way in, after the policy (whose Deny still refuses first
    and whose Allow still grants) and after the authorizer: an in-scope
    caller the authorizer refuses is let in if a grant covers the operation
    (AWS's permission mapping, ``acl.needed_permission``), and a caller
    from outside the scope (anonymous, another tenant) reaches such a
    bucket and is let in only by a grant to it by id, to AllUsers, or (any
    signed caller) to AuthenticatedUsers.  An object's ACL is read only
    when the decision needs it (``object_acl``); ``IgnorePublicAcls`` makes
    the public grants count for nothing.  A bucket with ACLs disabled (the
    default) pays one attribute check, as for the policy.

    **Objects another tenant owns.**  In a bucket with ACLs enabled, an
    object written by a principal of another tenant (another account) is
    that tenant's (ObjectWriter).  The bucket's side, its policy's Allow
    and the authorizer (roles, grants, the owner rule), can then still
    refuse what the object's ACL operations ask (GetObject, HeadObject,
    GetObjectAcl, PutObjectAcl, the source of a copy) but no longer grant
    it: the object's ACL must, as AWS evaluates an object another account
    owns in its "object context" (its bucket policy applies only to the
    objects the bucket owner owns).  A caller of the bucket's scope then
    also gets what the ACL grants the bucket's owner (``bucket-owner-read``,
    ``bucket-owner-full-control``).  The object operations no ACL
    permission covers (tagging, attributes, retention, legal hold) are
    then its owner's alone (``acl.OWNER_OPERATIONS``).  Deleting and
    listing stay the bucket's to decide, as the bucket owner may always
    delete and list any object.
    The owner's tenant is looked up (``principal_org``) only when the
    owner is neither the caller nor the bucket's owner.
    """

    def __init__(
        self,
        buckets: Any,
        authorizer: Any,
        *,
        clock: Callable[[], float] = time.time,
        object_tags: Callable[[Bucket, str, str | None], Deferred[Any]] | None = None,
        object_acl: Callable[[Bucket, str, str | None], Deferred[Any]] | None = None,
        principal_org: Callable[[str], Deferred[Any]] | None = None,
    ) -> None:
        self._buckets = buckets
        self.authorizer = authorizer
        self._clock = clock
        # Deferred[dict | None] of an object's tags, for policies that ask
        # about s3:ExistingObjectTag (set by the core, which owns objects).
        self.object_tags = object_tags
        # Deferred[(owner, Acl | None) | None] of an object version's owner
        # and ACL, for ACL decisions on objects (set by the core as well).
        self.object_acl = object_acl
        # Deferred[str | None]: the org (tenant) of a principal id, None for
        # an id no principal record holds: whether an object's owner is of
        # its bucket's tenant (set by the core as well).
        self.principal_org = principal_org
        # [s3] block_public_access: every bucket blocks public access.
        self.block_public_access = False

    def public_access_block(self, bucket: Bucket) -> PublicAccessBlock:
        """The Block Public Access settings in force for ``bucket``: its own,
        or all of them when the server blocks public access everywhere."""
        if self.block_public_access:
            return PublicAccessBlock.all()
        return bucket.public_access_block or _NOTHING_BLOCKED

    # check() and bucket() run for every request: plain callbacks rather than
    # inlineCallbacks generators, since the authorizer's answer is usually
    # already at hand (LocalAuthorizer's cache) and the chain then runs at once.
    def check(self, principal: Principal, action: str, resource: ResourceRef, trail: Trail = None) -> Deferred[None]:
        """Deferred[None]; AccessDenied unless the authorizer allows it.

        An authorizer failure (IAM unreachable) is logged and answered as
        ``ServiceUnavailable``: the request is refused, but the client is
        told to retry rather than that it lacks permission.
        """
        if is_anonymous(principal):
            # No authorizer is asked about nobody: only a bucket policy or
            # an ACL lets an anonymous request in (bucket(), allow()).
            return maybeDeferred(self._decided, False, action, resource, trail)
        if action in REFINES and action not in getattr(self.authorizer, "refined_actions", ()):
            action = REFINES[action]
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
        request: PolicyContext | None = None,
        policy_as: tuple[str, str] | None = None,
    ) -> Deferred[Any]:
        """Deferred[Bucket]: resolve ``name`` in the caller's scope, then
        authorize ``action`` on it (or on its object ``key``).

        NoSuchBucket if the name does not resolve: a bucket of another
        tenant is indistinguishable from one that does not exist, unless
        its policy lets the caller in.  Without ``request`` (callers that
        describe no request: tools, tests) bucket policies are not
        consulted, and only the caller's scope is searched.
        """
        d = self.resolve(principal, name, cached=action in _CACHED_READS, policy_only=request is not None)

        def authorize(bucket: Bucket) -> Deferred[Any]:
            checked = self.allow(principal, bucket, action, key, trail, request, policy_as)
            return checked.addCallback(lambda _: bucket)

        return d.addCallback(authorize)

    def resolve(self, principal: Principal, name: str, *, cached: bool = False, policy_only: bool = True) -> Deferred[Any]:
        """Deferred[Bucket] called ``name`` for this caller, not authorized
        yet: in its scope; for an anonymous caller the one bucket of that
        name anywhere; for a caller whose scope has no such bucket, the one
        elsewhere if (``policy_only``) a policy may let it in."""
        if cached:
            d: Deferred[Any] = self._buckets.find_for_read(principal, name)
        elif is_anonymous(principal):
            d = self._buckets.get_unique(name)
        else:
            d = self._buckets.get(principal, name)
        if policy_only and not is_anonymous(principal):
            d.addErrback(self._elsewhere, name)
        return d

    def _elsewhere(self, failure: Failure, name: str) -> Any:
        failure.trap(errors.NoSuchBucket)
        d: Deferred[Any] = self._buckets.get_unique(name)

        def shared(bucket: Bucket) -> Any:
            # Another tenant's bucket is only visible through its policy,
            # or its ACLs while they are enabled.
            return bucket if bucket.policy or acls.acls_enabled(bucket) else failure

        return d.addCallbacks(shared, lambda _: failure)

    def allow(
        self,
        principal: Principal,
        bucket: Bucket,
        action: str,
        key: str | None = None,
        trail: Trail = None,
        request: PolicyContext | None = None,
        policy_as: tuple[str, str] | None = None,
    ) -> Deferred[None]:
        """Deferred[None]: ``action`` on ``bucket`` (or its object ``key``)
        allowed by its policy, the authorizer or an ACL (see the class
        docstring).  ``policy_as`` is the (action, versioned action) pair
        the policy sees when it is not the operation's own (the source of a
        copy: ``request`` then names the source's version, as
        ``s3:VersionId``)."""
        resource = bucket_resource(bucket, key)
        scoped = in_scope(principal, bucket)
        policy = bucket_policy(bucket) if request is not None else None
        # ACLs disabled (the default): one attribute check, nothing read.
        acls_on = request is not None and bucket.object_ownership != acls.BUCKET_OWNER_ENFORCED
        ask = None
        if acls_on and request is not None:
            ask = _acl_question(key, request, policy_as)
        if (
            not scoped
            and request is not None
            and (policy is not None or acls_on)
            and (action == BUCKETS_CREATE or request.op in OWNER_ALWAYS)
        ):
            # A bucket's configuration, its ACL and its policy (even to read
            # it) belong to its owner's side: no policy or ACL grant hands
            # them to another tenant or to anonymous callers.  AWS takes the
            # policy operations only from the owner's account; here every
            # configuration change (versioning, lifecycle, Object Lock, Block
            # Public Access, the bucket's ACL...) is an administrator's act
            # inside the scope.
            return maybeDeferred(self._decided, False, action, resource, trail)
        if policy is None or (scoped and request is not None and request.op in OWNER_ALWAYS):
            if ask is not None:
                if not scoped:
                    return self._by_acl(principal, bucket, ask, action, resource, trail)
                return self._check_or_acl(principal, bucket, ask, action, resource, trail)
            if not scoped and not is_anonymous(principal):
                if acls_on:
                    # Reached through its ACLs (_elsewhere): visible, as on AWS.
                    return maybeDeferred(self._decided, False, action, resource, trail)
                return fail(errors.NoSuchBucket(resource=bucket.name, BucketName=bucket.name))
            return self.check(principal, action, resource, trail)
        assert request is not None
        versioned = request.version_named()
        s3_action = (policy_as[1] if versioned else policy_as[0]) if policy_as else policy_action(request.op, versioned)
        arn = f"arn:aws:s3:::{bucket.name}" if key is None else f"arn:aws:s3:::{bucket.name}/{key}"
        keys = _caller_keys(principal, self._clock())
        keys["aws:resourceaccount"] = keys["s3:resourceaccount"] = (bucket.org_id,)
        keys["aws:requestedregion"] = (bucket.region,)
        keys.update(request.condition_keys())
        facts = RequestFacts(
            action=s3_action,
            resource=arn,
            principal_id=principal.principal_id or None,
            org_id=principal.org_id or None,
            keys=keys,
        )
        if key is not None and self.object_tags is not None and _asks_existing_tags(policy):
            version = keys.get("s3:versionid", (None,))[0]
            d: Deferred[Any] = self.object_tags(bucket, key, version)
            d.addCallback(_with_existing_tags, facts)
        else:
            d = succeed(facts)
        return d.addCallback(self._by_policy, policy, principal, bucket, scoped, action, resource, trail, ask)

    def _by_policy(
        self,
        facts: RequestFacts,
        policy: BucketPolicy | UnreadablePolicy,
        principal: Principal,
        bucket: Bucket,
        scoped: bool,
        action: str,
        resource: ResourceRef,
        trail: Trail,
        ask: _AclQuestion | None = None,
    ) -> Any:
        verdict = policy.evaluate(facts)
        if verdict == "Allow" and not scoped and self._restricted(bucket, policy):
            verdict = None  # RestrictPublicBuckets: a public policy lets no outsider in
        if verdict == "Allow":
            if ask is not None and ask.level == acls.OBJECT:
                # The policy speaks for the objects its bucket's owner owns only.
                return self._object_owners(principal, bucket, ask, action, resource, trail, scoped)
            if trail is not None:
                trail(Decision(action, resource.path, True))
            return None
        if verdict == "Deny" or (not scoped and ask is None):
            return self._decided(False, action, resource, trail)
        if ask is not None:
            if not scoped:
                return self._by_acl(principal, bucket, ask, action, resource, trail)
            return self._check_or_acl(principal, bucket, ask, action, resource, trail)
        return self.check(principal, action, resource, trail)

    def _check_or_acl(
        self, principal: Principal, bucket: Bucket, ask: _AclQuestion, action: str, resource: ResourceRef, trail: Trail
    ) -> Deferred[None]:
        """The authorizer's answer for an in-scope caller, and if it refuses,
        the ACLs' (the authorizer is asked first, so the common path is as
        without ACLs).  One decision reaches the trail: the one that stands."""
        d = self.check(principal, action, resource, None)

        def allowed(_: Any) -> Any:
            if ask.level == acls.OBJECT:
                # The authorizer speaks for the bucket's tenant: not for an
                # object another tenant owns.
                return self._object_owners(principal, bucket, ask, action, resource, trail, True)
            if trail is not None:
                trail(Decision(action, resource.path, True))
            return None

        def refused(failure: Failure) -> Any:
            if failure.check(errors.AccessDenied):
                # Only public grants count now: the authorizer just refused
                # the caller, and a revoked role must not live on in what it
                # owns or in grants it may have made itself.  Not even those
                # when the refusal was an explicit deny (an authorizer that can
                # tell, with an optional ``denies``): a deny wins over an ACL.
                denies = getattr(self.authorizer, "denies", None)
                if denies is None:
                    return self._by_acl(principal, bucket, ask, action, resource, trail, by_id=False)
                asked = maybeDeferred(denies, principal, action, resource)
                return asked.addCallback(
                    lambda denied: self._decided(False, action, resource, trail)
                    if denied
                    else self._by_acl(principal, bucket, ask, action, resource, trail, by_id=False)
                )
            if trail is not None:
                trail(Decision(action, resource.path, False))
            return failure

        return d.addCallbacks(allowed, refused)

    def _by_acl(
        self,
        principal: Principal,
        bucket: Bucket,
        ask: _AclQuestion,
        action: str,
        resource: ResourceRef,
        trail: Trail,
        *,
        by_id: bool = True,
    ) -> Deferred[None]:
        """Whether the bucket's ACL, or the object version's, grants what
        ``ask`` needs (recorded in the trail as any decision);
        ``by_id``: see :func:`acl.grants`."""
        ignore_public = self.public_access_block(bucket).ignore_public_acls
        if ask.level == acls.BUCKET:
            ok = acls.grants(
                acls.bucket_acl(bucket), principal, ask.permission, ignore_public=ignore_public, by_id=by_id
            )
            return maybeDeferred(self._decided, ok, action, resource, trail)
        if self.object_acl is None or ask.key is None:
            return maybeDeferred(self._decided, False, action, resource, trail)
        d: Deferred[Any] = self.object_acl(bucket, ask.key, ask.version)

        def decide(found: tuple[str, Acl | None] | None) -> None:
            if found is None:
                # No such object: a caller who may list the bucket goes on
                # to hear so (404); anyone else is refused, as AWS.
                ok = acls.grants(
                    acls.bucket_acl(bucket), principal, acls.READ, ignore_public=ignore_public, by_id=by_id
                )
            else:
                owner, stored = found
                ok = acls.grants(
                    acls.object_acl(bucket, owner, stored),
                    principal,
                    ask.permission,
                    ignore_public=ignore_public,
                    by_id=by_id,
                )
            return self._decided(ok, action, resource, trail)

        return d.addCallback(decide)

    def _object_owners(
        self,
        principal: Principal,
        bucket: Bucket,
        ask: _AclQuestion,
        action: str,
        resource: ResourceRef,
        trail: Trail,
        scoped: bool,
    ) -> Deferred[None]:
        """The bucket's side allowed an object operation (its policy, or the
        authorizer for a caller of its scope); whether the object's owner
        does too (AWS's object context).  An object of the bucket's own
        tenant, or no object at all (the request goes on to its 404), is
        the bucket's to decide: allowed.  An object another tenant owns
        needs its ACL's grant: to the caller by id, to a group, or, for a
        caller of the bucket's scope, to the bucket's owner
        (``bucket-owner-read``, ``bucket-owner-full-control``)."""
        if self.object_acl is None or ask.key is None:
            return maybeDeferred(self._decided, False, action, resource, trail)
        d: Deferred[Any] = self.object_acl(bucket, ask.key, ask.version)

        def found(version: tuple[str, Acl | None] | None) -> Any:
            if version is None:
                return self._decided(True, action, resource, trail)
            owner, stored = version
            org: Deferred[Any] = self._owner_org(owner, principal, bucket)
            return org.addCallback(decide, owner, stored)

        def decide(org: str | None, owner: str, stored: Acl | None) -> None:
            ok = org == bucket.org_id or acls.grants(
                acls.object_acl(bucket, owner, stored),
                principal,
                ask.permission,
                ignore_public=self.public_access_block(bucket).ignore_public_acls,
                bucket_owner=bucket.created_by if scoped else "",
            )
            return self._decided(ok, action, resource, trail)

        return d.addCallback(found)

    def _owner_org(self, owner: str, principal: Principal, bucket: Bucket) -> Deferred[Any]:
        """Deferred[str | None]: the org of an object's owner, None when no
        principal record says (which counts as another tenant).  No lookup
        for the usual owners: the bucket's (and versions written before
        objects had owners, whose owner is empty) or the caller."""
        if owner in ("", bucket.created_by):
            return succeed(bucket.org_id)
        if owner == principal.principal_id:
            return succeed(principal.org_id)
        if self.principal_org is None:
            return succeed(None)
        return self.principal_org(owner)

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


    def _restricted(self, bucket: Bucket, policy: BucketPolicy | UnreadablePolicy) -> bool:
        return self.public_access_block(bucket).restrict_public_buckets and policy.is_public()


_NOTHING_BLOCKED = PublicAccessBlock()


@dataclass(frozen=True)
class _AclQuestion:
    """What an ACL must grant for one decision: ``permission`` on the
    bucket, or on the object ``key``: the version the request names (its
    ``s3:VersionId``; for the source of a copy, the source's), read only
    when asked."""

    level: str
    permission: str
    key: str | None
    request: PolicyContext

    @property
    def version(self) -> str | None:
        return self.request.condition_keys().get("s3:versionid", (None,))[0]


def _acl_question(key: str | None, request: PolicyContext, policy_as: tuple[str, str] | None) -> _AclQuestion | None:
    """The ACL question of a decision in a bucket with ACLs enabled, or None
    when no ACL can answer it: an operation no ACL permission covers, or a
    question asked as another action than the operation's own (bypassing
    governance retention)."""
    copy_source = policy_as == COPY_SOURCE
    if policy_as is not None and not copy_source:
        return None
    need = acls.needed_permission(request.op, copy_source=copy_source, version_named=request.version_named())
    if need is None:
        return None
    level, permission = need
    return _AclQuestion(level, permission, key, request)


def _asks_existing_tags(policy: BucketPolicy | UnreadablePolicy) -> bool:
    return any(k.startswith("s3:existingobjecttag/") for k in policy.condition_keys())


def _with_existing_tags(tags: dict[str, str] | None, facts: RequestFacts) -> RequestFacts:
    """``facts`` with the object's tags as ``s3:ExistingObjectTag/<key>``
    (none when the object does not exist)."""
    if not tags:
        return facts
    keys = dict(facts.keys)
    for name, value in tags.items():
        keys[f"s3:existingobjecttag/{name.lower()}"] = (value,)
    return RequestFacts(facts.action, facts.resource, facts.principal_id, facts.org_id, keys)


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
