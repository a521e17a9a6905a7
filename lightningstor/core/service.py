"""The core: every business rule, no wire format.

Protocol layers (S3 HTTP, gRPC) call this object; it owns the metadata store,
the chunk manager and the credential store that plugins provide.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Callable

from cryptography.fernet import Fernet
from twisted.internet.defer import (
    Deferred,
    DeferredList,
    TimeoutError,
    fail,
    inlineCallbacks,
    maybeDeferred,
    succeed,
)
from twisted.python.failure import Failure

from lightningstor.core import manifests
from lightningstor.core.access import (
    BUCKETS_CREATE,
    OBJECTS_DELETE,
    OBJECTS_GET,
    AccessControl,
    AskedAs,
    PolicyContext,
    Trail,
)
from lightningstor.core.acl import canonical_ids
from lightningstor.core.attributes import check_bucket_tags
from lightningstor.core.buckets import BucketManager
from lightningstor.core.bulk import delete_objects
from lightningstor.core.copy import copy_object
from lightningstor.core.credentials import CredentialStore
from lightningstor.core.listing import check_version_id_marker, list_object_versions, list_objects
from lightningstor.core.multipart import MAX_OBJECT_SIZE, MAX_PART_NUMBER, MultipartManager
from lightningstor.core.objects import ObjectManager
from lightningstor.core.principals import PrincipalStore, validate_id
from lightningstor.core.quotas import QuotaManager
from lightningstor.core.sse import CustomerKey, DataCipher, KeyManager, KeyUnavailable, sse_applies
from lightningstor.core.types import Acl, Bucket, ObjectRecord, Principal, Versioning
from lightningstor.core.versions import next_versioning, update_bucket
from lightningstor.errors import (
    AccessDenied,
    InvalidArgument,
    MetadataFull,
    MethodNotAllowed,
    NoSuchKey,
    NoSuchVersion,
    S3Error,
    StorageFull,
)
from lightningstor.interfaces.authorizer import ITokenAuthenticator
from lightningstor.interfaces.metadata import IMetadataStore
from lightningstor.interfaces.storage import IStorageBackend

# How long /ready (and the gRPC health check) waits for each component.
READINESS_TIMEOUT = 5.0


def _valid_principal_id(value: str) -> bool:
    """Whether ``value`` can be a principal id at all (a grant naming
    anything else is refused without a store read)."""
    try:
        validate_id(value, "principal id")
    except ValueError:
        return False
    return True


class Core:
    """Facade over buckets, objects, listing, credentials and access control."""

    def __init__(
        self,
        *,
        store: IMetadataStore,
        backend: IStorageBackend,
        chunks: Any,  # storage.chunks.ChunkManager
        credentials: CredentialStore,
        authorizer: Any,  # IAuthorizer
        clock: Callable[[], float],
        region: str = "us-east-1",
        max_metadata_bytes: int = 2048,
        max_keys_per_list: int = 1000,
        max_multipart_parts: int = MAX_PART_NUMBER,
        max_object_size: int = MAX_OBJECT_SIZE,
        chunks_per_record: int = manifests.DEFAULT_CHUNKS_PER_RECORD,
        master_key: bytes | None = None,
    ) -> None:
        self.store = store
        # SSE-S3 keys derive from the master key file (core/sse.py).  Without
        # one (unit tests) an ephemeral key: objects encrypted with it are
        # unreadable after a restart, which no server does.
        self.sse = KeyManager(master_key if master_key is not None else Fernet.generate_key())
        self.backend = backend
        self.chunks = chunks
        self.credentials = credentials
        self.clock = clock
        self.region = region
        self.max_keys_per_list = max_keys_per_list
        # Quotas (SPEC §7.4): limits, usage rows and their checks, shared by
        # every write path below.
        self.quotas = QuotaManager(store, clock)
        self.buckets = BucketManager(store, clock, region, self.quotas)
        self.principals = PrincipalStore(store, clock)
        # Every protocol-layer operation resolves its bucket through here:
        # scope first, then the authorizer plugin (core/access.py).
        self.access = AccessControl(
            self.buckets,
            authorizer,
            clock=clock,
            object_tags=self._object_tags,
            object_acl=self._object_acl,
            principal_org=self._principal_org,
        )
        # The authorizer when it also vouches for bearer tokens its IAM
        # service issued (aegis), else None: such tokens are then unknown.
        self.token_authority: Any = authorizer if ITokenAuthenticator.providedBy(authorizer) else None
        # Principal id -> org, for the gate's question whether an object's
        # owner is of its bucket's tenant.  A principal never changes org
        # (nor is it deleted), so what was found stays true; ids without a
        # record are asked again.
        self._principal_orgs: dict[str, str] = {}
        # Superseded and deleted versions' chunks outlive their record by
        # ``[storage] free_delay_seconds`` (the ChunkManager's), so a GET
        # that read the old record can still stream it (storage/retired.py).
        self.objects = ObjectManager(
            store,
            chunks.retire_chunks,
            clock,
            max_metadata_bytes=max_metadata_bytes,
            quotas=self.quotas,
            chunks_per_record=chunks_per_record,
        )
        self.objects.max_object_size = max_object_size
        self.multipart = MultipartManager(
            store, chunks, self.objects, clock, max_parts=max_multipart_parts, max_object_size=max_object_size
        )
        self.multipart.sse = self.sse
        # Deleting a bucket aborts its in-progress uploads, as AWS does.
        self.buckets.abort_uploads = self.multipart.abort_bucket

    def open_reader(self, record: Any, start: int, length: int, customer: CustomerKey | None = None) -> Any:
        """Deferred[ObjectReader] of bytes ``[start, start + length)`` of an
        object version (its manifest pages are read if its chunk list is
        paged; its bytes are decrypted if it is encrypted).  An SSE-C
        version opens only with its ``customer`` key (core/sse.py)."""
        try:
            cipher = self.cipher_of(record, customer)
        except (KeyUnavailable, S3Error):
            return fail()
        return manifests.open_reader(self.store, self.chunks, record, start, length, cipher)

    def cipher_of(self, record: ObjectRecord, customer: CustomerKey | None = None) -> DataCipher | None:
        """The cipher that decrypts ``record``'s data; None if it is plaintext."""
        if record.encryption is None:
            return None
        return self.sse.cipher(record.encryption, record.key, customer)

    def new_writer(
        self,
        bucket: Bucket,
        key: str,
        requested: str | None,
        algorithms: tuple[str, ...] = (),
        *,
        inline_threshold: int | None = None,
        customer: CustomerKey | None = None,
    ) -> Any:
        """A ChunkManager writer for a new version of ``key`` in ``bucket``:
        encrypted under the ``customer``'s key for SSE-C (which wins over
        the bucket's default, as on AWS), else under a fresh data key when
        SSE-S3 applies (the write asked for it, or the bucket's default
        encryption does), plaintext otherwise.  Every object write path
        (PutObject, PostObject, CopyObject, gRPC) opens its writer here, so
        the bucket default cannot be missed."""
        if customer is not None:
            cipher: DataCipher | None = self.sse.customer_cipher(customer)
        else:
            cipher = self.sse.new_cipher(key) if sse_applies(bucket, requested) else None
        return self.chunks.new_writer(algorithms, inline_threshold=inline_threshold, cipher=cipher)

    def list_objects(self, bucket: Any, **kwargs: Any) -> Any:
        """Deferred[ListResult]; see :func:`lightningstor.core.listing.list_objects`."""
        kwargs["max_keys"] = max(0, min(kwargs.get("max_keys", 1000), self.max_keys_per_list))
        return list_objects(self.store, bucket.bucket_id, **kwargs)

    def list_object_versions(self, bucket: Any, **kwargs: Any) -> Any:
        """Deferred[VersionListResult]; see :func:`lightningstor.core.listing.list_object_versions`.

        A ``version_id_marker`` needs a ``key_marker`` and must be a valid
        id (InvalidArgument naming ``version-id-marker`` otherwise, as AWS).
        """
        check_version_id_marker(kwargs.get("key_marker"), kwargs.get("version_id_marker"))
        kwargs["max_keys"] = max(0, min(kwargs.get("max_keys", 1000), self.max_keys_per_list))
        return list_object_versions(self.store, bucket.bucket_id, **kwargs)

    def set_bucket_versioning(self, bucket: Bucket, status: str) -> Any:
        """Deferred[Bucket]: PutBucketVersioning (``Enabled`` or ``Suspended``)."""

        def change(stored: Bucket) -> None:
            new = next_versioning(stored.versioning, status)
            if stored.object_lock and new is not Versioning.ENABLED:
                # Object Lock needs every version kept: AWS refuses this.
                raise S3Error(
                    "An Object Lock configuration is present on this bucket, so the versioning state cannot be "
                    "changed.",
                    code="InvalidBucketState",
                    BucketName=stored.name,
                )
            stored.versioning = new

        return self._update_bucket(bucket, change)

    def set_bucket_tags(self, bucket: Bucket, tags: dict[str, str]) -> Any:
        """Deferred[Bucket] with its tag set replaced ({} removes it); InvalidTag
        for a set AWS would refuse."""
        check_bucket_tags(tags)

        def change(stored: Bucket) -> None:
            stored.tags = dict(tags)

        return self._update_bucket(bucket, change)

    def _update_bucket(self, bucket: Bucket, change: Any) -> Any:
        d: Deferred[Any] = update_bucket(self.store, bucket, change, self.objects.now_ms())

        def changed(result: Any) -> Any:
            self.buckets.forget_cached()
            return result

        return d.addBoth(changed)

    def _object_tags(self, bucket: Bucket, key: str, version_id: str | None) -> Deferred[Any]:
        """Deferred[dict | None]: the tags of the object a request names, for
        bucket policies that ask about them (s3:ExistingObjectTag); None
        when there is no such object (the request itself will say so)."""
        d: Deferred[Any] = self.objects.get_version(bucket, key, version_id)

        def absent(failure: Failure) -> None:
            # Only a missing object counts as one without tags: a store that
            # cannot answer must not turn a Deny on a tag into no Deny.
            failure.trap(NoSuchKey, NoSuchVersion, MethodNotAllowed, InvalidArgument)
            return None

        return d.addCallbacks(lambda record: dict(record.tags), absent)

    def _object_acl(self, bucket: Bucket, key: str, version_id: str | None) -> Deferred[Any]:
        """Deferred[(owner, Acl | None) | None]: the owner and ACL of the
        object version a request names, for ACL decisions (core/access.py);
        None when there is no such version (or it is a delete marker)."""
        d: Deferred[Any] = self.objects.get_version(bucket, key, version_id)

        def absent(failure: Failure) -> None:
            failure.trap(NoSuchKey, NoSuchVersion, MethodNotAllowed, InvalidArgument)
            return None

        def found(record: ObjectRecord) -> tuple[str, Acl | None] | None:
            return None if record.delete_marker else (record.owner, record.acl)

        return d.addCallbacks(found, absent)

    def _principal_org(self, principal_id: str) -> Deferred[Any]:
        """Deferred[str | None]: the org of a principal (None: no record
        holds the id), for ACL decisions on objects another tenant owns
        (core/access.py)."""
        known = self._principal_orgs.get(principal_id)
        if known is not None:
            return succeed(known)
        d: Deferred[Any] = self.principals.get(principal_id)

        def found(record: Any) -> str | None:
            if record is None:
                return None
            if len(self._principal_orgs) >= 10_000:
                self._principal_orgs.clear()
            self._principal_orgs[principal_id] = record.org_id
            return str(record.org_id)

        return d.addCallback(found)

    def check_grantees(self, acl: Acl) -> Deferred[None]:
        """Deferred[None]; 400 InvalidArgument ("Invalid id") if ``acl``
        grants to an id that can be no principal at all.

        Whether a well-formed id names a principal is deliberately not
        looked up: grants by id may name principals of other tenants
        (docs/access-control.md), and answering "Invalid id" for an id no
        tenant holds while taking the id of another tenant's principal
        would tell any caller who may write an ACL which ids exist in
        every tenant.  Checking only the form answers both alike, in the
        same time, with no store read.  A grant to an id nobody holds
        grants nothing until a principal of that id exists (principals are
        never deleted, so an id is never reused)."""
        for principal_id in dict.fromkeys(canonical_ids(acl)):
            if not _valid_principal_id(principal_id):
                return fail(InvalidArgument("Invalid id", ArgumentName="CanonicalUser/ID", ArgumentValue=principal_id))
        return succeed(None)

    def copy_object(self, *args: Any, **kwargs: Any) -> Any:
        return copy_object(self, *args, **kwargs)

    def delete_objects(
        self,
        bucket: Bucket,
        items: Any,
        *,
        owner: str,
        principal: Principal | None = None,
        trail: Trail = None,
        request: PolicyContext | None = None,
        bypass_governance: bool = False,
        if_match: Sequence[str | None] = (),
    ) -> Any:
        """Deferred[BulkDeleteResult]; see :func:`lightningstor.core.bulk.delete_objects`.

        With ``principal``, each key needs ``objects:delete`` on that object
        (from the bucket's policy, given the ``request``, or the authorizer),
        and an entry conditional on an ETag also ``objects:get``, as AWS
        asks (the answer tells whether the ETag matched).
        ``bypass_governance`` (the request asked for it) is granted per key
        as :meth:`may_bypass_governance` decides; without ``principal`` it
        is taken as granted (trusted callers: tools, tests)."""
        authorize = None
        bypass = None
        if principal is not None:
            @inlineCallbacks
            def authorize(key: str, version_id: str | None, etag: str | None) -> Any:
                # An entry naming a version is s3:DeleteObjectVersion, as
                # DeleteObject with versionId is: a policy keeping history
                # must not be bypassed by deleting in bulk.
                entry = request
                if request is not None and (version_id is not None or etag is not None):
                    entry = AskedAs(request, version_id=version_id, if_match=etag)
                yield self.access.allow(principal, bucket, OBJECTS_DELETE, key, trail, entry)
                yield self.allow_delete_condition(principal, bucket, key, etag, trail, request)

            if bypass_governance:
                def bypass(key: str) -> Any:
                    return self.may_bypass_governance(principal, bucket, key, trail, request)
        elif bypass_governance:
            def bypass(key: str) -> Any:
                return succeed(True)
        return delete_objects(
            self.objects, bucket, items, owner=owner, authorize=authorize, bypass=bypass, if_match=if_match
        )

    def allow_delete_condition(
        self,
        principal: Principal,
        bucket: Bucket,
        key: str,
        if_match: str | None,
        trail: Trail = None,
        request: PolicyContext | None = None,
    ) -> Deferred[Any]:
        """Deferred: AccessDenied unless the caller may make a deletion of
        ``key`` conditional on ``if_match``.  An ETag condition tells the
        caller whether it matched, something about the object, so AWS asks
        ``s3:GetObject`` too; ``*`` (exists) and no condition need nothing
        more than the deletion's own permission."""
        if if_match is None or if_match.strip() == "*":
            return succeed(None)
        read = None if request is None else AskedAs(request, op="GetObject")
        d: Deferred[Any] = self.access.allow(principal, bucket, OBJECTS_GET, key, trail, read)
        return d

    def may_bypass_governance(
        self,
        principal: Principal,
        bucket: Bucket,
        key: str | None,
        trail: Trail = None,
        request: PolicyContext | None = None,
    ) -> Deferred[bool]:
        """Deferred[bool]: whether the caller may bypass GOVERNANCE retention
        on ``key`` (it asked to, with ``x-amz-bypass-governance-retention``).

        A bucket policy sees AWS's ``s3:BypassGovernanceRetention``; the
        authorizer is asked for ``buckets:create`` on the object, the right
        that changes a bucket's configuration: undoing a retention is an
        administrator's act, not something every writer may do.  A refusal
        is not an error here: the deletion then proceeds without the bypass
        and the lock decides (core/objectlock.py)."""
        pair = ("s3:BypassGovernanceRetention", "s3:BypassGovernanceRetention")
        d: Deferred[Any] = self.access.allow(principal, bucket, BUCKETS_CREATE, key, trail, request, pair)

        def refused(failure: Failure) -> bool:
            failure.trap(AccessDenied)
            return False

        return d.addCallbacks(lambda _: True, refused)

    @inlineCallbacks
    def readiness(self, timeout: float = READINESS_TIMEOUT) -> Any:
        """Deferred[dict[str, str | None]]: component -> None if OK else the error.

        Each check gets ``timeout`` seconds: a hung store (an etcd cluster
        without quorum, a stuck disk) makes the probe answer "not ready"
        promptly instead of hanging the orchestrator's probe.

        A component that is full (StorageFull, MetadataFull: a check that
        writes a probe found no room) counts as ready.  Full is not broken:
        reads still work and each write gets its own 507, while deleting,
        which needs a ready server, is how space comes back.  An orchestrator
        that took a full server out of service would take that away too.
        """
        from twisted.internet import reactor

        checks = [
            maybeDeferred(self.store.check).addTimeout(timeout, reactor),
            maybeDeferred(self.backend.check).addTimeout(timeout, reactor),
        ]
        results = yield DeferredList(checks, consumeErrors=True)
        out: dict[str, str | None] = {}
        for name, (ok, value) in zip(("metadata", "storage"), results):
            if ok or value.check(StorageFull, MetadataFull):
                out[name] = None
            elif value.check(TimeoutError):
                out[name] = f"no answer within {timeout:g} s"
            else:
                out[name] = str(value.value) or value.type.__name__
        return out
