"""ACLs and Object Ownership over S3: GetBucketAcl, PutBucketAcl, GetObjectAcl,
PutObjectAcl, Get/Put/DeleteBucketOwnershipControls, and the ACL every
object write (PutObject, CopyObject, CreateMultipartUpload, PostObject) and
CreateBucket may carry.

What an ACL means, and Object Ownership's rules, live in core/acl.py; who
gets in because of one, in core/access.py.  Here the rules AWS applies to
*setting* one: with ACLs disabled (BucketOwnerEnforced) only an ACL that
grants the bucket owner FULL_CONTROL and nobody anything else is taken (and
changes nothing); anything else is 400 AccessControlListNotSupported and
nothing is stored.  ``BlockPublicAcls`` refuses a public ACL with 403
AccessDenied.  ACLs are set and read over S3 only: gRPC has no ACL API.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks, succeed

from lightningstor import errors
from lightningstor.core import access
from lightningstor.core import acl as acls
from lightningstor.core.principals import validate_id
from lightningstor.core.types import Acl, Bucket, Principal
from lightningstor.s3 import aclxml


def refuse_unless_allowed(api: Any, bucket: Bucket, acl: Acl, owner: str) -> None:
    """The checks every ACL a request puts on ``bucket`` or its objects
    goes through: ACLs disabled take only the owner-only ACL (400
    AccessControlListNotSupported), and BlockPublicAcls refuses a public
    one (403 AccessDenied)."""
    if not acls.acls_enabled(bucket) and not acls.owner_only(acl, owner):
        raise errors.AccessControlListNotSupported()
    if acls.is_public(acl) and api.core.access.public_access_block(bucket).block_public_acls:
        raise errors.AccessDenied(resource=f"/{bucket.name}")


def object_acl_for_write(
    api: Any, bucket: Bucket, writer: Principal, headers: Mapping[str, str]
) -> tuple[str, Acl | None]:
    """(owner, ACL to store) of an object ``writer`` writes into ``bucket``
    with ``headers`` (``x-amz-acl`` or ``x-amz-grant-*``): the owner as
    Object Ownership decides, the ACL None when it is private (or ACLs are
    disabled).  Refused as :func:`refuse_unless_allowed` says, before
    anything is stored."""
    request = acls.requested_acl(headers)
    owner = acls.object_owner(bucket, writer.principal_id, request)
    if request is None:
        return owner, None
    if not acls.acls_enabled(bucket) and request.canned != "bucket-owner-full-control":
        # What the ACL says is read as the writer means it: from inside the
        # bucket's scope (AWS's "same account") ``private`` gives the bucket
        # owner full control, as bucket-owner-full-control does; from
        # outside it gives the writer full control, which a bucket with
        # ACLs disabled refuses (AWS's answer to another account).
        meant_for = owner if access.in_scope(writer, bucket) else writer.principal_id
        if not acls.owner_only(acls.expand(request, meant_for, bucket.created_by, for_bucket=False), owner):
            raise errors.AccessControlListNotSupported()
    acl = acls.expand(request, owner, bucket.created_by, for_bucket=False)
    refuse_unless_allowed(api, bucket, acl, owner)
    if not acls.acls_enabled(bucket) or acl == acls.private(owner):
        return owner, None
    return owner, acl


def checked_grantees(api: Any, acl: Acl | None) -> Deferred[Any]:
    """Deferred[None]; 400 InvalidArgument if ``acl`` grants to an id that
    can be no principal.  Whether one holds it is not asked, so that the
    answer tells nothing about other tenants (core.service.Core.check_grantees)."""
    if acl is None or not acls.canonical_ids(acl):
        return succeed(None)
    d: Deferred[Any] = api.core.check_grantees(acl)
    return d


# What a bucket policy sees when a write's ACL is asked as PutObjectAcl
# (AskedAs names no version: the version is the one being written).
_PUT_ACL_AS = ("s3:PutObjectAcl", "s3:PutObjectAcl")


def checked_write_acl(
    api: Any, call: Any, principal: Principal, bucket: Bucket, key: str, owned: tuple[str, Acl | None]
) -> Deferred[Any]:
    """Deferred[None]: ``principal`` may write ``key`` with the ACL
    :func:`object_acl_for_write` made (``owned``: owner, ACL or None).

    An ACL that grants anyone but the object's owner and the bucket's owner
    (public-read, a grant header naming someone else) is asked as
    PutObjectAcl: ``objects:put-acl`` from the authorizer, after
    ``s3:PutObjectAcl`` from the bucket's policy, as AWS asks
    s3:PutObjectAcl of a write with ACL headers.  The right to write is not
    the right to choose who reads.  ``private`` and the bucket-owner ACLs
    (which clients often send by default) need nothing more.

    A bucket with a policy asks it of every caller, from inside the
    bucket's scope or not: a policy that lets other tenants or anonymous
    callers upload (a drop box) without allowing s3:PutObjectAcl must not
    let them publish, and its Deny of s3:PutObjectAcl binds a write's ACL
    as it binds PutObjectAcl.  Without a policy, a caller from outside the
    scope came in through the bucket's ACL (WRITE), which lets it set its
    new object's ACL, as AWS does for a public-read-write bucket; nor is
    an authorizer that knows only the SPEC's actions asked, for a bucket
    without a policy (it would be asked objects:put again).  Then the
    grantees' ids are checked (:func:`checked_grantees`)."""
    owner, acl = owned
    if acl is None:
        return succeed(None)
    gate = api.core.access
    refined = access.OBJECTS_PUT_ACL in getattr(gate.authorizer, "refined_actions", ())
    d: Deferred[Any]
    if acls.shares(acl, owner, bucket.created_by) and (
        bucket.policy or (refined and access.in_scope(principal, bucket))
    ):
        asked = access.AskedAs(call, op="PutObjectAcl")
        d = gate.allow(principal, bucket, access.OBJECTS_PUT_ACL, key, call.decisions.append, asked, _PUT_ACL_AS)
    else:
        d = succeed(None)
    return d.addCallback(lambda _: checked_grantees(api, acl))


def bucket_acl_for_create(api: Any, principal_id: str, headers: Mapping[str, str]) -> Acl | None:
    """The ACL CreateBucket's headers ask for (None: private).  Whether the
    new bucket's Object Ownership takes it is the core's check (400
    InvalidBucketAclWithObjectOwnership); a public one is refused while
    the server blocks public access (the bucket has no settings of its own
    yet)."""
    request = acls.requested_acl(headers)
    if request is None:
        return None
    acl = acls.expand(request, principal_id, principal_id, for_bucket=True)
    if acls.is_public(acl) and api.core.access.block_public_access:
        raise errors.AccessDenied()
    return None if acl == acls.private(principal_id) else acl


def _requested(call: Any, owner: str, bucket_owner: str, *, for_bucket: bool) -> Acl:
    """The ACL PutBucketAcl / PutObjectAcl sets: exactly one of a body
    document, ``x-amz-acl`` or grant headers.  A document must name the
    resource's owner as its Owner (403 AccessDenied otherwise)."""
    body = call.sink.content()
    request = acls.requested_acl(call.headers)
    if body.strip():
        if request is not None:
            raise errors.S3Error(code="UnexpectedContent")
        acl = aclxml.parse_access_control_policy(body)
        if acl.owner != owner:
            raise errors.AccessDenied()
        return acl
    if request is None:
        raise errors.S3Error(code="MissingSecurityHeader", MissingHeaderName="x-amz-acl")
    return acls.expand(request, owner, bucket_owner, for_bucket=for_bucket)


@inlineCallbacks
def _names(api: Any, acl: Acl, caller: Principal) -> Any:
    """Deferred[dict]: display names of the principals ``acl`` names that
    belong to the caller's own tenant (org).  Everyone else (a principal of
    another tenant, an id nobody holds) is shown by its id alone, the same
    for both: an ACL may name principals of other tenants, and their names
    are not this caller's to read.  An unsigned caller sees ids only."""
    names: dict[str, str] = {}
    if access.is_anonymous(caller):
        return names
    if caller.display_name:
        names[caller.principal_id] = caller.display_name
    for pid in dict.fromkeys([acl.owner, *acls.canonical_ids(acl)]):
        if not pid or pid in names:
            continue
        try:
            validate_id(pid, "principal id")
        except ValueError:
            continue
        record = yield api.core.principals.get(pid)
        if record is not None and record.display_name and record.org_id == caller.org_id:
            names[pid] = record.display_name
    return names


# -- bucket ACLs ----------------------------------------------------------------
@inlineCallbacks
def get_bucket_acl(api: Any, call: Any) -> Any:
    """The bucket's ACL; with ACLs disabled, its owner with FULL_CONTROL."""
    principal, _ = yield call.auth.get()
    bucket = yield api.bucket(call, principal)
    acl = acls.bucket_acl(bucket)
    names = yield _names(api, acl, principal)
    return api.send_xml(call, aclxml.access_control_policy_xml(acl, names))


@inlineCallbacks
def put_bucket_acl(api: Any, call: Any) -> Any:
    principal, _ = yield call.auth.get()
    bucket = yield api.bucket(call, principal)
    owner = bucket.created_by
    acl = _requested(call, owner, owner, for_bucket=True)
    refuse_unless_allowed(api, bucket, acl, owner)
    if acls.acls_enabled(bucket):
        yield checked_grantees(api, acl)
        yield api.core.buckets.set_acl(bucket, None if acl == acls.private(owner) else acl)
    return api.send(call, 200, content_type=None)


# -- object ACLs ----------------------------------------------------------------
@inlineCallbacks
def get_object_acl(api: Any, call: Any) -> Any:
    """One version's ACL; with ACLs disabled, the bucket owner with FULL_CONTROL."""
    from lightningstor.s3.handlers.objects import lookup_object, version_header

    principal, bucket, record = yield lookup_object(api, call)
    acl = acls.object_acl(bucket, record.owner or bucket.created_by, record.acl)
    names = yield _names(api, acl, principal)
    headers = version_header(bucket, record.version_id)
    return api.send_xml(call, aclxml.access_control_policy_xml(acl, names), headers=headers)


@inlineCallbacks
def put_object_acl(api: Any, call: Any) -> Any:
    from lightningstor.s3.handlers.objects import version_header

    principal, _ = yield call.auth.get()
    bucket = yield api.bucket(call, principal)
    version = call.target.query.get("versionId")
    record = yield api.core.objects.head(bucket, call.key, version)
    enabled = acls.acls_enabled(bucket)
    owner = (record.owner or bucket.created_by) if enabled else bucket.created_by
    acl = _requested(call, owner, bucket.created_by, for_bucket=False)
    refuse_unless_allowed(api, bucket, acl, owner)
    if enabled:
        yield checked_grantees(api, acl)
        # The version the ACL was authorized and expanded for, and its owner:
        # an overwrite in between must not receive it.
        record = yield api.core.objects.set_acl(
            bucket, call.key, record.version_id or version, None if acl == acls.private(owner) else acl, owner=owner
        )
    return api.send(call, 200, headers=version_header(bucket, record.version_id), content_type=None)


# -- Object Ownership -------------------------------------------------------------
@inlineCallbacks
def get_bucket_ownership_controls(api: Any, call: Any) -> Any:
    principal, _ = yield call.auth.get()
    bucket = yield api.bucket(call, principal)
    if bucket.object_ownership is None:
        raise errors.S3Error(code="OwnershipControlsNotFoundError", BucketName=bucket.name)
    return api.send_xml(call, aclxml.ownership_controls_xml(bucket.object_ownership))


@inlineCallbacks
def put_bucket_ownership_controls(api: Any, call: Any) -> Any:
    """200 once stored; BucketOwnerEnforced is refused while the bucket's
    ACL grants anyone but its owner (400 InvalidBucketAclWithObjectOwnership)."""
    principal, _ = yield call.auth.get()
    bucket = yield api.bucket(call, principal)
    body = call.sink.content()  # a digest sent with it was checked (s3/body.py)
    ownership = aclxml.parse_ownership_controls(body)
    yield api.core.buckets.set_object_ownership(bucket, ownership)
    return api.send(call, 200, content_type=None)


@inlineCallbacks
def delete_bucket_ownership_controls(api: Any, call: Any) -> Any:
    """204; the bucket then behaves as ObjectWriter (ACLs enabled), as on AWS."""
    principal, _ = yield call.auth.get()
    bucket = yield api.bucket(call, principal)
    if bucket.object_ownership is not None:
        yield api.core.buckets.set_object_ownership(bucket, None)
    return api.send(call, 204, content_type=None)
