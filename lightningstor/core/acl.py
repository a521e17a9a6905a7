"""S3 ACLs and Object Ownership: what an ACL means, and how a request sets one.

Pure functions over :class:`~lightningstor.core.types.Acl`; no I/O.  The
gate (core/access.py) asks :func:`grants` whether an ACL lets a caller do
something; the S3 handlers (s3/handlers/acl.py) turn headers into ACLs with
:func:`requested_acl` and :func:`expand`.

**Object Ownership** decides whether ACLs count at all, as on AWS:

* ``BucketOwnerEnforced``: ACLs are disabled.  The bucket owner owns every
  object; a write may carry only an ACL that grants the owner FULL_CONTROL
  and nothing else (``private``, ``bucket-owner-full-control``); access is
  decided by policies and the authorizer alone.  The default for new
  buckets (``[s3] default_object_ownership``), as on AWS since April 2023.
* ``BucketOwnerPreferred``: ACLs count; an object written with
  ``bucket-owner-full-control`` is owned by the bucket owner, any other by
  its writer.
* ``ObjectWriter`` (and a bucket without ownership controls): ACLs count;
  the writer owns what it writes.

The canonical user id of S3's ACLs is the principal id (what ``Owner/ID``
shows in listings); principals have no e-mail address here, so a grant by
e-mail can never be resolved.  A grant by id may name a principal of any
tenant, so only the id's form is checked, never whether a principal holds
it: that would tell every tenant which ids the others use
(core.service.Core.check_grantees).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from lightningstor import errors
from lightningstor.core.types import Acl, Bucket, Grant, Principal

BUCKET_OWNER_ENFORCED = "BucketOwnerEnforced"
BUCKET_OWNER_PREFERRED = "BucketOwnerPreferred"
OBJECT_WRITER = "ObjectWriter"
OWNERSHIPS = (BUCKET_OWNER_ENFORCED, BUCKET_OWNER_PREFERRED, OBJECT_WRITER)

READ = "READ"
WRITE = "WRITE"
READ_ACP = "READ_ACP"
WRITE_ACP = "WRITE_ACP"
FULL_CONTROL = "FULL_CONTROL"
PERMISSIONS = (READ, WRITE, READ_ACP, WRITE_ACP, FULL_CONTROL)
# Not an ACL permission: what the object operations no ACL grant covers
# (tagging, attributes, retention, legal hold) ask of an object's ACL.  Only
# its owner has it; see OWNER_OPERATIONS.
OBJECT_OWNER = "OBJECT_OWNER"

CANONICAL_USER = "CanonicalUser"
GROUP = "Group"
ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
AUTHENTICATED_USERS = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"
LOG_DELIVERY = "http://acs.amazonaws.com/groups/s3/LogDelivery"
GROUPS = (ALL_USERS, AUTHENTICATED_USERS, LOG_DELIVERY)
PUBLIC_GROUPS = frozenset({ALL_USERS, AUTHENTICATED_USERS})

# The canonical user AWS's aws-exec-read grants READ to (Amazon EC2, for
# AMI bundles); kept so the canned ACL reads back as on AWS.
EC2_CANONICAL_ID = "6aa5a366c34c1cbe25dc49211496e913e0351eb0e8c37aa3477e40942ec6b97c"

CANNED = (
    "private", "public-read", "public-read-write", "authenticated-read", "bucket-owner-read",
    "bucket-owner-full-control", "aws-exec-read", "log-delivery-write",
)  # fmt: skip

# The grant headers and the permission each grants.
GRANT_HEADERS = {
    "x-amz-grant-read": READ,
    "x-amz-grant-write": WRITE,
    "x-amz-grant-read-acp": READ_ACP,
    "x-amz-grant-write-acp": WRITE_ACP,
    "x-amz-grant-full-control": FULL_CONTROL,
}
CANNED_HEADER = "x-amz-acl"

# Most grants one ACL may hold (AWS's limit).
MAX_GRANTS = 100


def acls_enabled(bucket: Bucket) -> bool:
    """Whether the bucket's (and its objects') ACLs count: every Object
    Ownership but ``BucketOwnerEnforced``, and no ownership controls at all."""
    return bucket.object_ownership != BUCKET_OWNER_ENFORCED


def check_ownership(value: str, what: str = "x-amz-object-ownership") -> str:
    """``value`` if it is an Object Ownership; 400 InvalidArgument otherwise."""
    if value not in OWNERSHIPS:
        raise errors.InvalidArgument(
            f"Invalid {what} header: {value}", ArgumentName=what, ArgumentValue=value
        )
    return value


def owner_grant(owner: str) -> Grant:
    return Grant(CANONICAL_USER, owner, FULL_CONTROL)


def private(owner: str) -> Acl:
    """The ACL of everything that has none: its owner has FULL_CONTROL."""
    return Acl(owner, (owner_grant(owner),))


def bucket_acl(bucket: Bucket) -> Acl:
    """The ACL that describes ``bucket``: its own while ACLs are enabled,
    else (and when it has none) its owner with FULL_CONTROL."""
    if bucket.acl is not None and acls_enabled(bucket):
        return bucket.acl
    return private(bucket.created_by)


def object_acl(bucket: Bucket, owner: str, acl: Acl | None) -> Acl:
    """The ACL of an object version owned by ``owner`` with ``acl`` stored:
    with ACLs disabled the bucket owner owns it with FULL_CONTROL."""
    if not acls_enabled(bucket):
        return private(bucket.created_by)
    return acl if acl is not None else private(owner)


def is_public(acl: Acl | None) -> bool:
    """Whether ``acl`` grants anything to AllUsers or AuthenticatedUsers
    (AuthenticatedUsers is any signed caller of any tenant)."""
    return acl is not None and any(g.grantee_type == GROUP and g.grantee in PUBLIC_GROUPS for g in acl.grants)


def owner_only(acl: Acl, owner: str) -> bool:
    """Whether ``acl`` grants ``owner`` FULL_CONTROL and nobody anything
    else: the one ACL a bucket with ACLs disabled takes."""
    return bool(acl.grants) and all(g == owner_grant(owner) for g in acl.grants)


def grants(
    acl: Acl,
    principal: Principal,
    permission: str,
    *,
    ignore_public: bool = False,
    by_id: bool = True,
    bucket_owner: str = "",
) -> bool:
    """Whether ``acl`` gives ``principal`` ``permission`` (or FULL_CONTROL).

    A grant counts for the principal named by id, for everyone (AllUsers)
    and for every signed caller (AuthenticatedUsers); with
    ``ignore_public`` (IgnorePublicAcls) the last two count for nothing.
    The ACL's owner may always read and change the ACL itself, as on AWS.
    Without ``by_id`` only the group grants count, not ownership nor grants
    by id: for a caller inside the bucket's scope whom the authorizer
    refused, neither an object it wrote nor a grant it could have made
    itself may outlive a revoked role (core/access.py).

    ``OBJECT_OWNER`` is had by the ACL's owner alone: no grant, not even
    FULL_CONTROL, gives it (see :data:`OWNER_OPERATIONS`).

    ``bucket_owner``: the id of the bucket's owner, whose grants count for
    the caller too.  Given for a caller of the bucket's own scope (whom the
    authorizer let in) asking about an object another tenant owns: AWS
    grants ``bucket-owner-read`` and ``bucket-owner-full-control`` to the
    bucket owner's account, which every principal of that account may use
    as far as its own permissions go.
    """
    who = principal.principal_id if by_id else ""
    if permission == OBJECT_OWNER:
        return bool(who) and who == acl.owner
    if who and who == acl.owner and permission in (READ_ACP, WRITE_ACP):
        return True
    for grant in acl.grants:
        if grant.permission != permission and grant.permission != FULL_CONTROL:
            continue
        if grant.grantee_type == CANONICAL_USER:
            if grant.grantee and grant.grantee in (who, bucket_owner):
                return True
        elif grant.grantee == ALL_USERS or (grant.grantee == AUTHENTICATED_USERS and principal.principal_id):
            if not ignore_public:
                return True
    return False


@dataclass(frozen=True)
class AclRequest:
    """The ACL a request asks for, before it is expanded for an owner:
    a canned ACL's name, or the grants of the ``x-amz-grant-*`` headers."""

    canned: str | None = None
    grants: tuple[Grant, ...] = ()


def requested_acl(headers: Mapping[str, str]) -> AclRequest | None:
    """The ACL ``x-amz-acl`` or the ``x-amz-grant-*`` headers ask for; None
    when the request carries neither.  Both together is 400 InvalidRequest;
    an unknown canned name is 400 InvalidArgument; a grant by e-mail is 400
    UnresolvableGrantByEmailAddress (an id's form is checked by the caller:
    core.service.Core.check_grantees)."""
    canned = headers.get(CANNED_HEADER)
    present = [name for name in GRANT_HEADERS if name in headers]
    if canned is not None and present:
        raise errors.InvalidRequest("Specifying both Canned ACLs and Header Grants is not allowed")
    if canned is not None:
        canned = canned.strip()
        if canned not in CANNED:
            raise errors.InvalidArgument(ArgumentName=CANNED_HEADER, ArgumentValue=canned)
        return AclRequest(canned=canned)
    if not present:
        return None
    found: list[Grant] = []
    for name in present:
        found.extend(parse_grant_header(name, headers[name]))
    return AclRequest(grants=tuple(found))


# The value quoted, or not: AWS takes both, and the aws cli sends what it is
# given (its own example: ``--grant-read uri=http://acs.amazonaws.com/...``).
_GRANTEE = re.compile(r'\s*([A-Za-z]+)\s*=\s*(?:"([^"]*)"|([^",\s]+))\s*(?:,|$)')


def parse_grant_header(name: str, value: str) -> list[Grant]:
    """The grants of one ``x-amz-grant-*`` header: comma-separated
    ``id="…"``, ``uri="…"`` or ``emailAddress="…"`` grantees, the quotes
    optional."""
    permission = GRANT_HEADERS[name]
    out: list[Grant] = []
    pos = 0
    value = value.strip()
    while pos < len(value):
        m = _GRANTEE.match(value, pos)
        if m is None or m.end() == pos:
            raise errors.InvalidArgument(ArgumentName=name, ArgumentValue=value)
        pos = m.end()
        quoted, bare = m.group(2), m.group(3)
        out.append(grantee_grant(m.group(1), bare if quoted is None else quoted, permission, name))
    if not out:
        raise errors.InvalidArgument(ArgumentName=name, ArgumentValue=value)
    return out


def grantee_grant(kind: str, value: str, permission: str, argument: str) -> Grant:
    """A grant to a grantee named as an ACL names it (``id``, ``uri`` or
    ``emailAddress``, the XML elements ID, URI and EmailAddress alike)."""
    kind = kind.lower()
    if kind == "id":
        if not value:
            raise errors.InvalidArgument("Invalid id", ArgumentName="CanonicalUser/ID", ArgumentValue=value)
        return Grant(CANONICAL_USER, value, permission)
    if kind == "uri":
        if value not in GROUPS:
            raise errors.InvalidArgument("Invalid group uri", ArgumentName="Group/URI", ArgumentValue=value)
        return Grant(GROUP, value, permission)
    if kind in ("emailaddress", "email"):
        raise errors.S3Error(code="UnresolvableGrantByEmailAddress", EmailAddress=value)
    raise errors.InvalidArgument(ArgumentName=argument, ArgumentValue=kind)


def expand(request: AclRequest, owner: str, bucket_owner: str, *, for_bucket: bool) -> Acl:
    """The ACL ``request`` sets on a resource owned by ``owner`` in a bucket
    owned by ``bucket_owner``: canned ACLs as AWS expands them (the
    bucket-owner ones only mean something on objects), grant headers as
    given (the owner then has only what they grant)."""
    if request.canned is None:
        return Acl(owner, request.grants)
    out = [owner_grant(owner)]
    canned = request.canned
    if canned in ("public-read", "public-read-write"):
        out.append(Grant(GROUP, ALL_USERS, READ))
        if canned == "public-read-write":
            out.append(Grant(GROUP, ALL_USERS, WRITE))
    elif canned == "authenticated-read":
        out.append(Grant(GROUP, AUTHENTICATED_USERS, READ))
    elif canned == "aws-exec-read":
        out.append(Grant(CANONICAL_USER, EC2_CANONICAL_ID, READ))
    elif canned == "log-delivery-write" and for_bucket:
        out += [Grant(GROUP, LOG_DELIVERY, WRITE), Grant(GROUP, LOG_DELIVERY, READ_ACP)]
    elif canned == "bucket-owner-read" and not for_bucket and bucket_owner != owner:
        out.append(Grant(CANONICAL_USER, bucket_owner, READ))
    elif canned == "bucket-owner-full-control" and not for_bucket and bucket_owner != owner:
        out.append(owner_grant(bucket_owner))
    return Acl(owner, tuple(out))


def object_owner(bucket: Bucket, writer: str, request: AclRequest | None) -> str:
    """Who owns an object ``writer`` writes into ``bucket`` (Object Ownership).
    An unsigned writer (``""``, let in by a policy or a public-read-write
    ACL) owns nothing: the bucket owner owns what it writes."""
    ownership = bucket.object_ownership
    if ownership == BUCKET_OWNER_ENFORCED or not writer:
        return bucket.created_by
    if ownership == BUCKET_OWNER_PREFERRED and request is not None and request.canned == "bucket-owner-full-control":
        return bucket.created_by
    return writer


def shares(acl: Acl, *owners: str) -> bool:
    """Whether ``acl`` grants anything to anyone but ``owners`` (a group,
    another principal): what a write's ACL must not do without the right to
    change ACLs (objects:put-acl, s3/handlers/acl.py).  ``private`` and the
    bucket-owner ACLs grant only the object's and the bucket's owners."""
    return any(g.grantee_type != CANONICAL_USER or g.grantee not in owners for g in acl.grants)


def canonical_ids(acl: Acl) -> list[str]:
    """The principal ids ``acl`` grants to (to check their form, and to show their names)."""
    return [g.grantee for g in acl.grants if g.grantee_type == CANONICAL_USER and g.grantee != EC2_CANONICAL_ID]


# -- what each operation needs from an ACL (AWS's permission mapping) --------
# Operation -> (level, permission): the bucket's ACL or the object version's.
BUCKET = "bucket"
OBJECT = "object"
OPERATION_PERMISSIONS: dict[str, tuple[str, str]] = {
    "HeadBucket": (BUCKET, READ),
    "ListObjects": (BUCKET, READ),
    "ListObjectsV2": (BUCKET, READ),
    "ListObjectVersions": (BUCKET, READ),
    "ListMultipartUploads": (BUCKET, READ),
    "PutObject": (BUCKET, WRITE),
    "PostObject": (BUCKET, WRITE),
    "CopyObject": (BUCKET, WRITE),
    "UploadPartCopy": (BUCKET, WRITE),
    "DeleteObject": (BUCKET, WRITE),
    "DeleteObjects": (BUCKET, WRITE),
    "CreateMultipartUpload": (BUCKET, WRITE),
    "UploadPart": (BUCKET, WRITE),
    "CompleteMultipartUpload": (BUCKET, WRITE),
    "AbortMultipartUpload": (BUCKET, WRITE),
    "GetBucketAcl": (BUCKET, READ_ACP),
    "PutBucketAcl": (BUCKET, WRITE_ACP),
    "GetObject": (OBJECT, READ),
    "HeadObject": (OBJECT, READ),
    "GetObjectAcl": (OBJECT, READ_ACP),
    "PutObjectAcl": (OBJECT, WRITE_ACP),
}
# The object operations no ACL permission covers: on AWS their object
# context is the object owner's own permission, which no grant (not even
# FULL_CONTROL, ``bucket-owner-full-control``) hands to anyone else.  So in
# a bucket with ACLs enabled they need the bucket's side as any operation,
# and then, for an object another tenant owns, to be its owner.
OWNER_OPERATIONS: dict[str, tuple[str, str]] = {
    op: (OBJECT, OBJECT_OWNER)
    for op in (
        "GetObjectTagging",
        "PutObjectTagging",
        "DeleteObjectTagging",
        "GetObjectAttributes",
        "GetObjectRetention",
        "PutObjectRetention",
        "GetObjectLegalHold",
        "PutObjectLegalHold",
    )
}
# Reading the source of a copy (CopyObject, UploadPartCopy).
COPY_SOURCE_PERMISSION = (OBJECT, READ)
# Deleting a named version takes more than WRITE on the bucket (AWS: only
# the bucket owner may, s3:DeleteObjectVersion).
_NOT_FOR_VERSIONS = frozenset({"DeleteObject", "DeleteObjects"})


def needed_permission(op: str, *, copy_source: bool, version_named: bool) -> tuple[str, str] | None:
    """(level, permission) an ACL must grant for ``op``; None when no ACL
    can allow it (bucket configuration...).  The object operations no grant
    covers ask for :data:`OBJECT_OWNER`."""
    if copy_source:
        return COPY_SOURCE_PERMISSION
    if version_named and op in _NOT_FOR_VERSIONS:
        return None
    return OPERATION_PERMISSIONS.get(op) or OWNER_OPERATIONS.get(op)
