"""Typed values the core hands to protocol layers (SPEC §3).

These are plain data: no I/O, no wire format.  Records are serialized to the
metadata store by :mod:`lightningstor.core.records`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field


class Versioning(enum.Enum):
    DISABLED = "Disabled"  # never configured: S3 omits <Status>
    ENABLED = "Enabled"
    SUSPENDED = "Suspended"


@dataclass(frozen=True)
class Principal:
    """Who is calling: an access key resolved to its owner."""

    principal_id: str
    org_id: str
    project_id: str | None = None
    access_key_id: str | None = None
    display_name: str = ""
    # Roles from the principal's record (core.principals); the local
    # authorizer grants by role.  Empty for a credential with no record.
    roles: tuple[str, ...] = ()


# The methods a CORS rule may allow (AWS's list; anything else is refused
# when the configuration is stored).
CORS_METHODS = ("GET", "PUT", "POST", "DELETE", "HEAD")


@dataclass(frozen=True)
class CorsRule:
    """One rule of a bucket's CORS configuration (PutBucketCors).

    Origins and allowed headers may hold ``*`` wildcards; headers are
    compared case-insensitively, origins exactly (as AWS does).  Validation
    and matching live in :mod:`lightningstor.core.cors`.
    """

    allowed_methods: tuple[str, ...]
    allowed_origins: tuple[str, ...]
    allowed_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    max_age_seconds: int | None = None
    rule_id: str | None = None


@dataclass(frozen=True)
class LifecycleFilter:
    """Which objects a lifecycle rule applies to: all of its conditions must
    hold (a key prefix, tags the object must carry with these values, and
    exclusive size bounds).  ``prefix`` None: not given (matches every key,
    like the empty prefix, but is written back as it was sent)."""

    prefix: str | None = None
    tags: tuple[tuple[str, str], ...] = ()
    size_greater_than: int | None = None
    size_less_than: int | None = None


@dataclass(frozen=True)
class PublicAccessBlock:
    """A bucket's Block Public Access settings (PutPublicAccessBlock).

    ``block_public_policy`` refuses a public bucket policy when it is put;
    ``restrict_public_buckets`` makes a public policy grant nothing outside
    the bucket's scope (core/access.py).  ``block_public_acls`` refuses any
    write that carries a public ACL (a grant to AllUsers or
    AuthenticatedUsers, canned or not: s3/handlers/acl.py);
    ``ignore_public_acls`` makes such grants count for nothing in access
    decisions, though they stay stored and shown (core/access.py).
    """

    block_public_acls: bool = False
    ignore_public_acls: bool = False
    block_public_policy: bool = False
    restrict_public_buckets: bool = False

    # The server-wide switch ([s3] block_public_access) is all four at once.
    @classmethod
    def all(cls) -> PublicAccessBlock:
        return cls(True, True, True, True)


@dataclass(frozen=True)
class Grant:
    """One grant of an ACL: ``grantee_type`` is ``CanonicalUser`` (``grantee``
    a principal id) or ``Group`` (``grantee`` a group URI, core/acl.py);
    ``permission`` one of READ, WRITE, READ_ACP, WRITE_ACP, FULL_CONTROL."""

    grantee_type: str
    grantee: str
    permission: str


@dataclass(frozen=True)
class Acl:
    """An access control list as S3 knows it (PutBucketAcl, PutObjectAcl):
    its owner's principal id and its grants, in the order they were given.
    Meaning and checks live in :mod:`lightningstor.core.acl`."""

    owner: str
    grants: tuple[Grant, ...] = ()


@dataclass(frozen=True)
class LifecycleRule:
    """One rule of a bucket's lifecycle configuration
    (PutBucketLifecycleConfiguration).  Validation, matching and when an
    action is due live in :mod:`lightningstor.core.lifecycle`.

    ``form`` is how the rule named its objects, so GetBucketLifecycle
    answers what was sent: ``prefix`` (the legacy rule-level ``Prefix``),
    ``filter`` (a ``Filter`` with at most one condition) or ``and``
    (``Filter/And``).  Days are counted in lifecycle days (``[lifecycle]
    day_seconds``); ``expiration_date`` is a midnight UTC in Unix seconds.
    """

    rule_id: str
    enabled: bool
    filter: LifecycleFilter = LifecycleFilter()
    form: str = "filter"
    expiration_days: int | None = None
    expiration_date: int | None = None
    expired_object_delete_marker: bool | None = None
    noncurrent_days: int | None = None
    newer_noncurrent_versions: int | None = None
    abort_days: int | None = None


# Object Lock retention modes (AWS's names, as on the wire).
GOVERNANCE = "GOVERNANCE"
COMPLIANCE = "COMPLIANCE"
LOCK_MODES = (GOVERNANCE, COMPLIANCE)


@dataclass(frozen=True)
class DefaultRetention:
    """A bucket's Object Lock default retention (PutObjectLockConfiguration's
    ``Rule/DefaultRetention``): new versions written without a retention of
    their own get ``mode`` until ``days`` or ``years`` (exactly one is set)
    after their creation.  Validation lives in :mod:`lightningstor.core.objectlock`."""

    mode: str
    days: int | None = None
    years: int | None = None


@dataclass(frozen=True)
class BucketEncryption:
    """A bucket's default encryption (PutBucketEncryption): the algorithm
    applied to writes that ask for none (only ``AES256``, SSE-S3), and
    BucketKeyEnabled as sent (kept and returned; on AWS it only changes
    KMS request costs).  See core/sse.py."""

    algorithm: str = "AES256"
    bucket_key_enabled: bool | None = None


@dataclass(frozen=True)
class CustomerKeyCheck:
    """What an SSE-C object or upload keeps instead of the customer's key
    (core/sse.py): the key's base64 MD5 (echoed in responses, as AWS does)
    and a salted HMAC-SHA256 of the key, which tells a later request's key
    right from wrong without the key ever being stored."""

    key_md5: str
    salt: bytes
    mac: bytes


@dataclass(frozen=True)
class Encryption:
    """How an object version's (or a multipart upload's) data is encrypted
    at rest (core/sse.py): the algorithm (``AES256``), its data key wrapped
    under the server's key-encryption key (SSE-S3; empty for SSE-C, whose
    data key is the customer's and is never stored), the counter prefix of
    its inline data, and for SSE-C the check of the customer's key."""

    algorithm: str
    wrapped_key: bytes
    inline_nonce: bytes
    customer: CustomerKeyCheck | None = None


@dataclass(frozen=True)
class WebsiteRedirect:
    """Where a website redirect sends the browser: each part left None keeps
    the request's own (AWS's ``Redirect`` / ``RedirectAllRequestsTo``).
    ``replace_key_prefix_with`` and ``replace_key_with`` are exclusive."""

    host_name: str | None = None
    protocol: str | None = None  # "http" | "https"
    replace_key_prefix_with: str | None = None
    replace_key_with: str | None = None
    http_redirect_code: str | None = None  # "301" when None


@dataclass(frozen=True)
class WebsiteRoutingRule:
    """One routing rule: its condition (both parts optional; no condition
    matches every request) and the redirect it answers."""

    key_prefix_equals: str | None
    http_error_code_returned_equals: str | None
    redirect: WebsiteRedirect


@dataclass(frozen=True)
class WebsiteConfiguration:
    """A bucket's static website configuration (PutBucketWebsite).  Either
    ``redirect_all`` alone, or ``index_suffix`` with an optional error
    document and routing rules (validated in s3/websitexml.py)."""

    index_suffix: str | None = None
    error_key: str | None = None
    redirect_all: WebsiteRedirect | None = None
    routing_rules: tuple[WebsiteRoutingRule, ...] = ()


@dataclass
class Bucket:
    name: str
    bucket_id: str  # internal id; object keys live under it (unambiguous scoping)
    org_id: str
    project_id: str | None
    created_at: int  # Unix ms
    updated_at: int
    created_by: str
    versioning: Versioning = Versioning.DISABLED
    storage_class: str = "STANDARD"
    region: str = "us-east-1"
    tags: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    # The CORS configuration's rules in order (empty: none configured).
    cors: tuple[CorsRule, ...] = ()
    # The lifecycle configuration's rules in order (empty: none configured).
    lifecycle: tuple[LifecycleRule, ...] = ()
    # The bucket policy document as its owner sent it (empty: none).  Parsed
    # once per distinct text (core/policy.py, core/access.py), not per read.
    policy: str = ""
    # Block Public Access (None: never configured, nothing blocked).
    public_access_block: PublicAccessBlock | None = None
    # Object Lock (WORM): enabled at creation or later on a versioned bucket,
    # never disabled again; versioning then stays Enabled.  The default
    # retention applies to new versions that name none (core/objectlock.py).
    object_lock: bool = False
    default_retention: DefaultRetention | None = None
    # Default encryption (PutBucketEncryption; None: none configured).
    encryption: BucketEncryption | None = None
    # Static website hosting (PutBucketWebsite; None: none configured).
    website: WebsiteConfiguration | None = None
    # Object Ownership (PutBucketOwnershipControls): BucketOwnerEnforced
    # (ACLs disabled), BucketOwnerPreferred or ObjectWriter; None: no
    # ownership controls (DeleteBucketOwnershipControls), which behaves as
    # ObjectWriter, as on AWS.  Buckets made before ACLs existed here decode
    # as BucketOwnerEnforced: they keep the behaviour they were made with
    # (core/records.py).  core/acl.py.
    object_ownership: str | None = "BucketOwnerEnforced"
    # The bucket's ACL (None: private, its owner has FULL_CONTROL).  Only
    # consulted while ACLs are enabled (object_ownership is not
    # BucketOwnerEnforced): core/access.py.
    acl: Acl | None = None
    # Set while a DeleteBucket is checking that the bucket is empty; a write
    # that lands an object clears it (core/buckets.py, "Deleting a bucket").
    deleting: bool = False
    # The bucket record's mod revision when this copy was read (0: unknown).
    # Not stored: object commits compare it, so nothing lands in a bucket
    # deleted (or being deleted) since (core/buckets.py).
    revision: int = field(default=0, compare=False)


@dataclass(frozen=True)
class ChunkRef:
    chunk_id: str
    offset: int  # offset of this chunk in the object
    size: int
    checksum: int  # CRC32C of the chunk's bytes


@dataclass
class Manifest:
    """Where a huge object's chunk list lives (core/manifests.py): pages
    ``manifests/{manifest_id}/{n}``, page n starting at object offset
    ``starts[n]``; ``count`` chunks in all."""

    manifest_id: str
    starts: list[int]
    count: int


@dataclass
class ObjectRecord:
    """One version of an object (or a delete marker)."""

    key: str
    size: int
    etag: str  # unquoted hex MD5, or "hex-N" for multipart
    created_at: int  # Unix ms (Last-Modified)
    version_id: str | None = None  # None: unversioned ("null" version)
    content_type: str = "binary/octet-stream"
    # Content-Encoding, Content-Disposition, Content-Language, Cache-Control,
    # Expires: stored as sent, keyed by canonical header name.
    system_headers: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)  # x-amz-meta-* (lower-case names, no prefix)
    checksums: dict[str, str] = field(default_factory=dict)  # algorithm -> base64
    storage_class: str = "STANDARD"
    delete_marker: bool = False
    chunks: list[ChunkRef] = field(default_factory=list)
    inline: bytes | None = None  # small objects: data lives in the record
    tags: dict[str, str] = field(default_factory=dict)
    owner: str = ""  # principal id of the writer
    # Multipart objects: the size of each part, in order (GetObject
    # partNumber, x-amz-mp-parts-count).  Empty for single-request objects.
    part_sizes: list[int] = field(default_factory=list)
    # Multipart objects completed from an upload with a checksum algorithm:
    # each part's checksum of that algorithm, in part order (algorithm ->
    # base64 values), so GetObjectAttributes can show them after the part
    # records are gone.  Empty otherwise, and for records written before it.
    part_checksums: dict[str, list[str]] = field(default_factory=dict)
    # Versioning bookkeeping, assigned by ObjectManager.commit: the version's
    # place in its key's history (commit order; orders noncurrent versions
    # newest first), and on a *current* record the sequence of the key's
    # noncurrent ``null`` version, if one exists (so it is found in one read).
    sequence: int = 0
    null_sequence: int | None = None
    # Set when the chunk list is paged out of the record (core/manifests.py):
    # ``chunks`` is then empty when read back from the store.
    manifest: Manifest | None = None
    # Multipart objects: the upload they were completed from, so that a
    # repeated CompleteMultipartUpload (a client retrying after a lost
    # answer) gets the first one's answer, as from AWS.
    upload_id: str | None = None
    # With ``upload_id``: a digest of the part list that completed it
    # (numbers and ETags, core.multipart.part_list_digest), so a repeated
    # complete is recognised as the same request.  None for records written
    # before it (the multipart ETag then stands in for it).
    completed_parts: str | None = None
    # With ``upload_id``: checksums CompleteMultipartUpload reported that the
    # object does not keep (the default CRC64NVME of an upload created
    # without a checksum algorithm, core.multipart.default_object_checksum),
    # so a repeated complete answers the same.  Never shown by a read, as AWS.
    completed_checksums: dict[str, str] = field(default_factory=dict)
    # Object Lock (core/objectlock.py): the retention mode and the instant
    # (Unix ms) until which this version cannot be deleted, and its legal
    # hold (None: never set; False: set OFF).  Only in lock-enabled buckets.
    lock_mode: str | None = None
    lock_until: int | None = None
    legal_hold: bool | None = None
    # SSE-S3 (core/sse.py): set when the data (chunks or inline) is
    # encrypted at rest; None for plaintext objects and delete markers.
    encryption: Encryption | None = None
    # This version's ACL (None: private, ``owner`` has FULL_CONTROL).  Set
    # by the write that made the version or by PutObjectAcl; never copied
    # by CopyObject.  Only consulted while the bucket's ACLs are enabled.
    acl: Acl | None = None

    @property
    def quoted_etag(self) -> str:
        return f'"{self.etag}"'


@dataclass
class ListEntry:
    """An object as a listing shows it."""

    key: str
    size: int
    etag: str
    last_modified: int  # Unix ms
    storage_class: str = "STANDARD"
    owner: str = ""
    version_id: str | None = None
    is_latest: bool = True
    delete_marker: bool = False
    # The record's checksums (algorithm -> base64, as ObjectRecord.checksums),
    # the same mapping, not a copy; None or empty: stored without one.
    # Listings show the algorithm and type, never the value (AWS).
    checksums: Mapping[str, str] | None = None


@dataclass
class ListResult:
    entries: list[ListEntry]
    common_prefixes: list[str]
    is_truncated: bool
    next_marker: str | None = None  # last key or prefix returned, when truncated
