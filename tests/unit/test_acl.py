"""S3 ACLs: the model (core/acl.py), the XML (s3/aclxml.py), the record
encoding, and the gate's decisions with ACLs (core/access.py)."""

from __future__ import annotations

import json
from typing import Any

import botocore.session
import pytest
import pytest_twisted
from botocore.parsers import RestXMLParser
from twisted.internet.defer import inlineCallbacks

from lightningstor import config, errors
from lightningstor.core import access, acl, records
from lightningstor.core.access import AccessControl, Decision
from lightningstor.core.objects import PutAttrs
from lightningstor.core.types import Acl, Bucket, Grant, ObjectRecord, Principal, PublicAccessBlock
from lightningstor.s3 import aclxml
from tests.unit.core_helpers import put_object

OWNER = Principal("owner", "acme", roles=("admin",))
NOBODY = Principal("nobody", "acme")
OUTSIDER = Principal("boss", "globex", roles=("admin",))
THIRD = Principal("third", "initech", roles=("admin",))

PUBLIC_READ = Grant(acl.GROUP, acl.ALL_USERS, acl.READ)


def _bucket(ownership: str | None = acl.OBJECT_WRITER, bucket_acl: Acl | None = None) -> Bucket:
    return Bucket("b", "id", "acme", None, 0, 0, "owner", object_ownership=ownership, acl=bucket_acl)


# -- the model -------------------------------------------------------------------------


@pytest.mark.parametrize("canned,extra", [
    ("private", set()),
    ("public-read", {(acl.ALL_USERS, "READ")}),
    ("public-read-write", {(acl.ALL_USERS, "READ"), (acl.ALL_USERS, "WRITE")}),
    ("authenticated-read", {(acl.AUTHENTICATED_USERS, "READ")}),
    ("aws-exec-read", {(acl.EC2_CANONICAL_ID, "READ")}),
    ("bucket-owner-read", {("bob", "READ")}),
    ("bucket-owner-full-control", {("bob", "FULL_CONTROL")}),
    ("log-delivery-write", set()),  # only on buckets
])
def test_canned_acls_on_objects_expand_as_aws(canned: str, extra: set[tuple[str, str]]) -> None:
    got = acl.expand(acl.AclRequest(canned=canned), "alice", "bob", for_bucket=False)
    assert got.owner == "alice"
    assert {(g.grantee, g.permission) for g in got.grants} == {("alice", "FULL_CONTROL")} | extra


def test_canned_acls_on_buckets() -> None:
    log = acl.expand(acl.AclRequest(canned="log-delivery-write"), "o", "o", for_bucket=True)
    assert {(g.grantee, g.permission) for g in log.grants} == {
        ("o", "FULL_CONTROL"), (acl.LOG_DELIVERY, "WRITE"), (acl.LOG_DELIVERY, "READ_ACP")}
    # The bucket-owner ones mean nothing more than private on a bucket, or
    # on an object its bucket's owner owns.
    for canned in ("bucket-owner-read", "bucket-owner-full-control"):
        assert acl.expand(acl.AclRequest(canned=canned), "o", "o", for_bucket=False) == acl.private("o")
        assert acl.expand(acl.AclRequest(canned=canned), "o", "x", for_bucket=True) == acl.private("o")


def test_grant_headers() -> None:
    request = acl.requested_acl({
        "x-amz-grant-read": f'id="alice", uri="{acl.ALL_USERS}"',
        "x-amz-grant-full-control": 'ID = "bob"',
    })
    assert request is not None and request.canned is None
    assert set(request.grants) == {
        Grant(acl.CANONICAL_USER, "alice", "READ"), PUBLIC_READ, Grant(acl.CANONICAL_USER, "bob", "FULL_CONTROL")}
    assert acl.expand(request, "carol", "carol", for_bucket=True).grants == request.grants
    assert acl.requested_acl({}) is None
    assert acl.requested_acl({"x-amz-acl": "public-read"}) == acl.AclRequest(canned="public-read")


def test_grant_headers_without_quotes() -> None:
    """AWS takes unquoted values, and the aws cli sends them so
    (``--grant-read uri=http://...``, ``s3 cp --grants read=uri=...``)."""
    request = acl.requested_acl({
        "x-amz-grant-read": f"uri={acl.ALL_USERS}",
        "x-amz-grant-full-control": 'id=alice, id="bob",ID=carol',
    })
    assert request is not None
    assert set(request.grants) == {PUBLIC_READ, *(Grant(acl.CANONICAL_USER, who, "FULL_CONTROL")
                                                  for who in ("alice", "bob", "carol"))}  # fmt: skip


@pytest.mark.parametrize("headers,code", [
    ({"x-amz-acl": "private", "x-amz-grant-read": 'id="a"'}, "InvalidRequest"),
    ({"x-amz-acl": "world-readable"}, "InvalidArgument"),
    ({"x-amz-grant-read": 'emailAddress="a@example.com"'}, "UnresolvableGrantByEmailAddress"),
    ({"x-amz-grant-read": 'uri="http://example.com/group"'}, "InvalidArgument"),
    ({"x-amz-grant-read": "alice"}, "InvalidArgument"),
    ({"x-amz-grant-read": 'id="a" id="b"'}, "InvalidArgument"),
    ({"x-amz-grant-read": "id=a id=b"}, "InvalidArgument"),
    ({"x-amz-grant-read": "id="}, "InvalidArgument"),
    ({"x-amz-grant-read": "uri=http://example.com/group"}, "InvalidArgument"),
    ({"x-amz-grant-read": 'color="blue"'}, "InvalidArgument"),
    ({"x-amz-grant-read": ""}, "InvalidArgument"),
])
def test_bad_acl_headers(headers: dict[str, str], code: str) -> None:
    with pytest.raises(errors.S3Error) as e:
        acl.requested_acl(headers)
    assert e.value.code == code and e.value.status == 400


def test_grants_and_public_acls() -> None:
    public = Acl("owner", (acl.owner_grant("owner"), PUBLIC_READ))
    anonymous = access.ANONYMOUS
    assert acl.grants(public, anonymous, acl.READ)
    assert not acl.grants(public, anonymous, acl.READ, ignore_public=True)
    assert not acl.grants(public, anonymous, acl.WRITE)
    assert acl.grants(public, OWNER, acl.WRITE)  # FULL_CONTROL covers it
    authenticated = Acl("owner", (Grant(acl.GROUP, acl.AUTHENTICATED_USERS, acl.READ),))
    assert acl.grants(authenticated, OUTSIDER, acl.READ) and not acl.grants(authenticated, anonymous, acl.READ)
    # The owner may always read and change the ACL itself.
    bare = Acl("owner", ())
    assert acl.grants(bare, OWNER, acl.READ_ACP) and acl.grants(bare, OWNER, acl.WRITE_ACP)
    assert not acl.grants(bare, OWNER, acl.READ)
    # An empty id never matches an anonymous caller.
    assert not acl.grants(Acl("", (acl.owner_grant(""),)), anonymous, acl.READ)
    assert acl.is_public(public) and acl.is_public(authenticated) and not acl.is_public(acl.private("o"))
    assert acl.owner_only(acl.private("o"), "o") and not acl.owner_only(public, "owner")
    assert not acl.owner_only(Acl("o", ()), "o")


def test_object_ownership_decides_the_owner() -> None:
    full = acl.AclRequest(canned="bucket-owner-full-control")
    assert acl.object_owner(_bucket(acl.BUCKET_OWNER_ENFORCED), "w", None) == "owner"
    assert acl.object_owner(_bucket(acl.BUCKET_OWNER_PREFERRED), "w", full) == "owner"
    assert acl.object_owner(_bucket(acl.BUCKET_OWNER_PREFERRED), "w", None) == "w"
    assert acl.object_owner(_bucket(acl.OBJECT_WRITER), "w", full) == "w"
    assert acl.object_owner(_bucket(None), "w", full) == "w"
    assert not acl.acls_enabled(_bucket(acl.BUCKET_OWNER_ENFORCED)) and acl.acls_enabled(_bucket(None))
    # With ACLs disabled, what is stored is not what counts.
    stored = Acl("w", (acl.owner_grant("w"), PUBLIC_READ))
    assert acl.object_acl(_bucket(acl.BUCKET_OWNER_ENFORCED), "w", stored) == acl.private("owner")
    assert acl.bucket_acl(_bucket(acl.BUCKET_OWNER_ENFORCED, stored)) == acl.private("owner")
    assert acl.object_acl(_bucket(), "w", None) == acl.private("w")


def test_config_knows_every_ownership() -> None:
    assert config.OBJECT_OWNERSHIPS == acl.OWNERSHIPS
    assert config.S3Settings().default_object_ownership == acl.BUCKET_OWNER_ENFORCED


def test_needed_permissions() -> None:
    assert acl.needed_permission("GetObject", copy_source=False, version_named=True) == (acl.OBJECT, acl.READ)
    assert acl.needed_permission("CopyObject", copy_source=True, version_named=False) == (acl.OBJECT, acl.READ)
    assert acl.needed_permission("CopyObject", copy_source=False, version_named=False) == (acl.BUCKET, acl.WRITE)
    assert acl.needed_permission("DeleteObject", copy_source=False, version_named=True) is None
    assert acl.needed_permission("PutBucketPolicy", copy_source=False, version_named=False) is None
    assert acl.needed_permission("ListObjectsV2", copy_source=False, version_named=False) == (acl.BUCKET, acl.READ)


# -- XML ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def parse() -> Any:
    model = botocore.session.get_session().get_service_model("s3")

    def _parse(operation: str, body: bytes) -> dict[str, Any]:
        shape = model.operation_model(operation).output_shape
        parsed: dict[str, Any] = RestXMLParser().parse({"body": body, "headers": {}, "status_code": 200}, shape)
        return parsed

    return _parse


def test_rendered_acl_reads_back_in_boto3(parse: Any) -> None:
    doc = Acl("alice", (acl.owner_grant("alice"), PUBLIC_READ, Grant(acl.CANONICAL_USER, "bob", acl.WRITE_ACP)))
    body = aclxml.access_control_policy_xml(doc, {"alice": "Alice & Co"})
    assert b'xsi:type="Group"' in body and b'xsi:type="CanonicalUser"' in body
    parsed = parse("GetObjectAcl", body)
    assert parsed["Owner"] == {"ID": "alice", "DisplayName": "Alice & Co"}
    assert parsed["Grants"] == [
        {"Grantee": {"ID": "alice", "DisplayName": "Alice & Co", "Type": "CanonicalUser"}, "Permission": "FULL_CONTROL"},
        {"Grantee": {"URI": acl.ALL_USERS, "Type": "Group"}, "Permission": "READ"},
        {"Grantee": {"ID": "bob", "DisplayName": "bob", "Type": "CanonicalUser"}, "Permission": "WRITE_ACP"},
    ]
    # And what it renders parses back to the same ACL.
    assert aclxml.parse_access_control_policy(body) == doc


def test_botocore_documents_parse() -> None:
    body = (
        b'<AccessControlPolicy xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Owner><ID>alice</ID></Owner>'
        b'<AccessControlList><Grant><Grantee xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        b'xsi:type="Group"><URI>http://acs.amazonaws.com/groups/global/AllUsers</URI></Grantee>'
        b"<Permission>READ</Permission></Grant></AccessControlList></AccessControlPolicy>"
    )
    assert aclxml.parse_access_control_policy(body) == Acl("alice", (PUBLIC_READ,))
    assert aclxml.parse_access_control_policy(b"<AccessControlPolicy><Owner><ID>a</ID></Owner>"
                                              b"</AccessControlPolicy>") == Acl("a", ())


@pytest.mark.parametrize("body,code", [
    (b"<AccessControlPolicy><Owner><ID>a</ID></Owner>", "MalformedXML"),
    (b"not xml", "MalformedXML"),
    (b"<Policy/>", "MalformedACLError"),
    (b"<AccessControlPolicy/>", "MalformedACLError"),  # no owner
    (b"<AccessControlPolicy><Owner><DisplayName>a</DisplayName></Owner></AccessControlPolicy>", "MalformedACLError"),
    (b"<AccessControlPolicy><Owner><ID>a</ID></Owner><AccessControlList><Grant><Grantee><ID>b</ID></Grantee>"
     b"<Permission>EVERYTHING</Permission></Grant></AccessControlList></AccessControlPolicy>", "MalformedACLError"),
    (b"<AccessControlPolicy><Owner><ID>a</ID></Owner><AccessControlList><Grant><Grantee><ID>b</ID><URI>u</URI>"
     b"</Grantee><Permission>READ</Permission></Grant></AccessControlList></AccessControlPolicy>", "MalformedACLError"),
    (b"<AccessControlPolicy><Owner><ID>a</ID></Owner><AccessControlList><Grant><Permission>READ</Permission>"
     b"</Grant></AccessControlList></AccessControlPolicy>", "MalformedACLError"),
    (b"<AccessControlPolicy><Owner><ID>a</ID></Owner><AccessControlList><Nope/></AccessControlList>"
     b"</AccessControlPolicy>", "MalformedACLError"),
    (b"<AccessControlPolicy><Owner><ID>a</ID></Owner><AccessControlList><Grant><Grantee><EmailAddress>x@y"
     b"</EmailAddress></Grantee><Permission>READ</Permission></Grant></AccessControlList></AccessControlPolicy>",
     "UnresolvableGrantByEmailAddress"),
    (b"<AccessControlPolicy>" + b" " * aclxml.MAX_ACL_BODY + b"</AccessControlPolicy>", "MaxMessageLengthExceeded"),
])
def test_bad_acl_documents(body: bytes, code: str) -> None:
    with pytest.raises(errors.S3Error) as e:
        aclxml.parse_access_control_policy(body)
    assert e.value.code == code


def test_ownership_controls_xml() -> None:
    for value in acl.OWNERSHIPS:
        assert aclxml.parse_ownership_controls(aclxml.ownership_controls_xml(value)) == value
    for body in (b"<OwnershipControls/>", b"<OwnershipControls><Rule><ObjectOwnership>Mine</ObjectOwnership>"
                 b"</Rule></OwnershipControls>", b"<OwnershipControls><Rule/></OwnershipControls>",
                 b"<OwnershipControls><Rule><ObjectOwnership>ObjectWriter</ObjectOwnership></Rule><Rule>"
                 b"<ObjectOwnership>ObjectWriter</ObjectOwnership></Rule></OwnershipControls>"):
        with pytest.raises(errors.MalformedXML):
            aclxml.parse_ownership_controls(body)


# -- records --------------------------------------------------------------------------------


def test_records_keep_acls_and_old_records_still_decode() -> None:
    stored = Acl("w", (acl.owner_grant("w"), PUBLIC_READ))
    bucket = _bucket(acl.BUCKET_OWNER_PREFERRED, stored)
    again = records.decode_bucket(records.encode_bucket(bucket))
    assert again.object_ownership == acl.BUCKET_OWNER_PREFERRED and again.acl == stored
    # A record written before ACLs existed (no "own"): ACLs stay disabled,
    # as they were in effect; "no ownership controls" is stored as "".
    enforced = records.encode_bucket(_bucket(acl.BUCKET_OWNER_ENFORCED))
    assert b'"own"' not in enforced and b'"acl"' not in enforced
    assert records.decode_bucket(enforced).object_ownership == acl.BUCKET_OWNER_ENFORCED
    assert records.decode_bucket(enforced).acl is None
    none = records.encode_bucket(_bucket(None))
    assert b'"own":""' in none and records.decode_bucket(none).object_ownership is None
    record = ObjectRecord("k", 1, "e", 0, owner="w", acl=stored, inline=b"x")
    assert records.decode_object(records.encode_object(record)).acl == stored
    plain = records.encode_object(ObjectRecord("k", 1, "e", 0))
    assert b'"acl"' not in plain and records.decode_object(plain).acl is None


# -- the gate -----------------------------------------------------------------------------


class _Request:
    def __init__(self, op: str, version: str | None = None) -> None:
        self.op = op
        self._version = version

    def version_named(self) -> bool:
        return self._version is not None

    def condition_keys(self) -> dict[str, tuple[str, ...]]:
        return {"s3:versionid": (self._version,)} if self._version else {}


@pytest_twisted.inlineCallbacks
def test_gate_with_acls_disabled_is_unchanged(make_core: Any) -> None:
    """The default bucket: another tenant does not see it, anonymous is
    refused, whatever ACL the record might hold."""
    core = make_core()
    bucket = yield core.buckets.create(OWNER, "data")
    assert bucket.object_ownership == acl.BUCKET_OWNER_ENFORCED
    asked: list[Any] = []
    core.access.object_acl = lambda *a: asked.append(a)  # must never be read
    with pytest.raises(errors.NoSuchBucket):
        yield core.access.bucket(OUTSIDER, "data", access.OBJECTS_GET, "k", None, _Request("GetObject"))
    with pytest.raises(errors.AccessDenied):
        yield core.access.bucket(access.ANONYMOUS, "data", access.OBJECTS_GET, "k", None, _Request("GetObject"))
    assert asked == []


@pytest_twisted.inlineCallbacks
def test_gate_lets_acl_grantees_in(make_core: Any) -> None:
    core = make_core()
    bucket = yield core.buckets.create(OWNER, "data", object_ownership=acl.OBJECT_WRITER)
    public = Acl("owner", (acl.owner_grant("owner"), PUBLIC_READ, Grant(acl.CANONICAL_USER, "boss", acl.READ_ACP)))
    yield put_object(core, bucket, "pub", b"x")
    yield core.objects.set_acl(bucket, "pub", None, public)
    yield put_object(core, bucket, "priv", b"x")
    gate = core.access
    trail: list[Decision] = []
    found = yield gate.bucket(access.ANONYMOUS, "data", access.OBJECTS_GET, "pub", trail.append, _Request("GetObject"))
    assert found.name == "data"
    assert trail == [Decision(access.OBJECTS_GET, "org/acme/bucket/data/object/pub", True)]
    for who in (access.ANONYMOUS, OUTSIDER, NOBODY):
        with pytest.raises(errors.AccessDenied):
            yield gate.bucket(who, "data", access.OBJECTS_GET, "priv", None, _Request("GetObject"))
    # READ_ACP to boss by id: GetObjectAcl yes, PutObjectAcl no.
    yield gate.bucket(OUTSIDER, "data", access.OBJECTS_GET, "pub", None, _Request("GetObjectAcl"))
    with pytest.raises(errors.AccessDenied):
        yield gate.bucket(OUTSIDER, "data", access.OBJECTS_PUT, "pub", None, _Request("PutObjectAcl"))
    with pytest.raises(errors.AccessDenied):
        yield gate.bucket(THIRD, "data", access.OBJECTS_GET, "pub", None, _Request("GetObjectAcl"))
    # A bucket with ACLs enabled is visible to other tenants (403, not 404), as on AWS,
    # even for what no ACL can grant.
    with pytest.raises(errors.AccessDenied):
        yield gate.bucket(THIRD, "data", access.BUCKETS_GET, None, None, _Request("GetBucketPolicy"))
    # No bucket READ: a missing key is refused; with it, the request goes on (to its 404).
    with pytest.raises(errors.AccessDenied):
        yield gate.bucket(access.ANONYMOUS, "data", access.OBJECTS_GET, "absent", None, _Request("GetObject"))
    bucket = yield core.buckets.set_acl(bucket, Acl("owner", (acl.owner_grant("owner"), PUBLIC_READ)))
    yield gate.bucket(access.ANONYMOUS, "data", access.OBJECTS_GET, "absent", None, _Request("GetObject"))
    yield gate.bucket(access.ANONYMOUS, "data", access.OBJECTS_LIST, None, None, _Request("ListObjectsV2"))
    with pytest.raises(errors.AccessDenied):  # READ is not WRITE
        yield gate.bucket(access.ANONYMOUS, "data", access.OBJECTS_PUT, "new", None, _Request("PutObject"))
    # IgnorePublicAcls: the grants stay, and count for nothing.
    yield core.buckets.set_public_access_block(bucket, PublicAccessBlock(ignore_public_acls=True))
    with pytest.raises(errors.AccessDenied):
        yield gate.bucket(access.ANONYMOUS, "data", access.OBJECTS_GET, "pub", None, _Request("GetObject"))
    with pytest.raises(errors.AccessDenied):
        yield gate.bucket(access.ANONYMOUS, "data", access.OBJECTS_LIST, None, None, _Request("ListObjectsV2"))


@pytest_twisted.inlineCallbacks
def test_gate_asks_the_authorizer_first_and_an_acl_only_when_it_refuses(make_core: Any) -> None:
    core = make_core()
    bucket = yield core.buckets.create(OWNER, "data", object_ownership=acl.OBJECT_WRITER)
    yield core.buckets.set_acl(bucket, Acl("owner", (acl.owner_grant("owner"), Grant(acl.GROUP, acl.AUTHENTICATED_USERS,
                                                                                      acl.WRITE))))
    reads: list[Any] = []
    real = core.access.object_acl

    def counting(*args: Any) -> Any:
        reads.append(args)
        return real(*args)

    gate = AccessControl(core.buckets, core.access.authorizer, object_acl=counting)
    trail: list[Decision] = []
    # The owner (admin role): the authorizer allows; the version is read for
    # its owner only (an object another tenant owns is that tenant's to share).
    yield gate.bucket(OWNER, "data", access.OBJECTS_GET, "k", trail.append, _Request("GetObject"))
    assert [key for _, key, _ in reads] == ["k"]
    # nobody (no role): the authorizer refuses, the bucket's public WRITE grant lets it put.
    yield gate.bucket(NOBODY, "data", access.OBJECTS_PUT, "k", trail.append, _Request("PutObject"))
    # The owner's listing: the bucket's to decide, nothing read.
    yield gate.bucket(OWNER, "data", access.OBJECTS_LIST, None, trail.append, _Request("ListObjectsV2"))
    assert [d.allowed for d in trail] == [True, True, True]  # one decision each: the one that stands
    assert len(reads) == 1
    with pytest.raises(errors.AccessDenied):  # WRITE does not delete a named version
        yield gate.bucket(NOBODY, "data", access.OBJECTS_DELETE, "k", None, _Request("DeleteObject", "v1"))
    with pytest.raises(errors.AccessDenied):  # nor change the configuration
        yield gate.bucket(NOBODY, "data", access.BUCKETS_CREATE, None, None, _Request("PutBucketPolicy"))


@pytest_twisted.inlineCallbacks
def test_ownership_changes_and_acl_checks_in_the_core(make_core: Any) -> None:
    core = make_core()
    with pytest.raises(errors.InvalidBucketAclWithObjectOwnership):
        yield core.buckets.create(OWNER, "data", acl=Acl("owner", (acl.owner_grant("owner"), PUBLIC_READ)))
    with pytest.raises(errors.InvalidArgument):
        yield core.buckets.create(OWNER, "data", object_ownership="Mine")
    core.buckets.default_object_ownership = acl.OBJECT_WRITER
    bucket = yield core.buckets.create(OWNER, "data", acl=Acl("owner", (acl.owner_grant("owner"), PUBLIC_READ)))
    assert bucket.object_ownership == acl.OBJECT_WRITER and acl.is_public(bucket.acl)
    with pytest.raises(errors.InvalidBucketAclWithObjectOwnership):
        yield core.buckets.set_object_ownership(bucket, acl.BUCKET_OWNER_ENFORCED)
    bucket = yield core.buckets.set_acl(bucket, None)
    bucket = yield core.buckets.set_object_ownership(bucket, acl.BUCKET_OWNER_ENFORCED)
    with pytest.raises(errors.AccessControlListNotSupported):
        yield core.buckets.set_acl(bucket, acl.private("owner"))
    with pytest.raises(errors.InvalidArgument):
        yield core.check_grantees(Acl("owner", (Grant(acl.CANONICAL_USER, "not an id!", acl.READ),)))


@pytest_twisted.inlineCallbacks
def test_grantee_ids_are_checked_for_their_form_without_a_store_read(make_core: Any) -> None:
    """An id nobody holds and the id of another tenant's principal are
    answered alike, and neither is looked up: the answer cannot depend on
    which ids exist (docs/access-control.md)."""
    core = make_core()
    yield core.principals.create("globex-boss", "globex", display_name="Globex Boss")

    def no_lookup(principal_id: str) -> Any:
        raise AssertionError(f"principal {principal_id} was looked up")

    core.principals.get = no_lookup
    for grantee in ("globex-boss", "ghost"):
        yield core.check_grantees(Acl("owner", (Grant(acl.CANONICAL_USER, grantee, acl.READ),)))
    with pytest.raises(errors.InvalidArgument, match="Invalid id"):
        yield core.check_grantees(Acl("owner", (Grant(acl.CANONICAL_USER, "-bad", acl.READ),)))


def test_an_acl_shares_when_it_grants_beyond_the_owners() -> None:
    """What takes objects:put-acl on a write: private and the bucket-owner
    ACLs do not share; public-read, aws-exec-read and a grant to another
    principal do."""
    def canned(name: str, owner: str = "writer") -> Acl:
        return acl.expand(acl.AclRequest(canned=name), owner, "boss", for_bucket=False)

    for name in ("private", "bucket-owner-read", "bucket-owner-full-control"):
        assert not acl.shares(canned(name), "writer", "boss"), name
    for name in ("public-read", "public-read-write", "authenticated-read", "aws-exec-read"):
        assert acl.shares(canned(name), "writer", "boss"), name
    assert acl.shares(Acl("writer", (Grant(acl.CANONICAL_USER, "friend", acl.READ),)), "writer", "boss")


@pytest_twisted.inlineCallbacks
def test_no_acl_grant_hands_the_configuration_to_outsiders(make_core: Any) -> None:
    """An outsider granted FULL_CONTROL on a bucket may use its objects, not
    its configuration: not its ACL, its policy or any other setting."""
    core = make_core()
    bucket = yield core.buckets.create(OWNER, "data", object_ownership=acl.OBJECT_WRITER)
    yield core.buckets.set_acl(bucket, Acl("owner", (
        acl.owner_grant("owner"), Grant(acl.CANONICAL_USER, "boss", acl.FULL_CONTROL),
        Grant(acl.GROUP, acl.ALL_USERS, acl.FULL_CONTROL))))  # fmt: skip
    gate = core.access
    yield gate.bucket(OUTSIDER, "data", access.OBJECTS_PUT, "k", None, _Request("PutObject"))
    yield gate.bucket(OUTSIDER, "data", access.BUCKETS_GET, None, None, _Request("GetBucketAcl"))
    for who in (OUTSIDER, access.ANONYMOUS):
        for op in ("PutBucketAcl", "PutBucketOwnershipControls", "PutBucketVersioning", "DeletePublicAccessBlock"):
            with pytest.raises(errors.AccessDenied):
                yield gate.bucket(who, "data", access.BUCKETS_CREATE, None, None, _Request(op))
        with pytest.raises(errors.AccessDenied):
            yield gate.bucket(who, "data", access.BUCKETS_GET, None, None, _Request("GetBucketPolicy"))


@pytest_twisted.inlineCallbacks
def test_what_a_caller_owns_does_not_outlive_the_authorizers_refusal(make_core: Any) -> None:
    """In-scope callers the authorizer refuses get in through public grants
    only: not through owning the object, nor through grants by id (which
    anyone allowed to write could have made itself)."""
    core = make_core()
    bucket = yield core.buckets.create(OWNER, "data", object_ownership=acl.OBJECT_WRITER)
    yield put_object(core, bucket, "mine", b"x")
    yield core.objects.set_acl(bucket, "mine", None, Acl("nobody", (acl.owner_grant("nobody"),)))
    gate = core.access
    for op, action in (("GetObject", access.OBJECTS_GET), ("GetObjectAcl", access.OBJECTS_GET),
                       ("PutObjectAcl", access.OBJECTS_PUT)):  # fmt: skip
        with pytest.raises(errors.AccessDenied):
            yield gate.bucket(NOBODY, "data", action, "mine", None, _Request(op))
    yield core.objects.set_acl(bucket, "mine", None, Acl("owner", (
        acl.owner_grant("owner"), Grant(acl.CANONICAL_USER, "nobody", acl.READ))))  # fmt: skip
    with pytest.raises(errors.AccessDenied):
        yield gate.bucket(NOBODY, "data", access.OBJECTS_GET, "mine", None, _Request("GetObject"))
    yield core.objects.set_acl(bucket, "mine", None, Acl("owner", (
        acl.owner_grant("owner"), Grant(acl.GROUP, acl.AUTHENTICATED_USERS, acl.READ))))  # fmt: skip
    yield gate.bucket(NOBODY, "data", access.OBJECTS_GET, "mine", None, _Request("GetObject"))
    # Outsiders keep what they own (their objects in a bucket shared with them).
    yield core.objects.set_acl(bucket, "mine", None, Acl("boss", (acl.owner_grant("boss"),)))
    yield gate.bucket(OUTSIDER, "data", access.OBJECTS_GET, "mine", None, _Request("GetObject"))


@pytest_twisted.inlineCallbacks
def test_an_acl_meant_for_one_owner_never_lands_on_anothers_version(make_core: Any) -> None:
    """PutObjectAcl authorizes and expands the ACL for the version's owner;
    if another writer replaced the version meanwhile, the change is 409
    OperationAborted, not an ACL on someone else's object."""
    core = make_core()
    bucket = yield core.buckets.create(OWNER, "data", object_ownership=acl.OBJECT_WRITER)
    yield put_object(core, bucket, "k", b"x")
    with pytest.raises(errors.S3Error) as info:
        yield core.objects.set_acl(bucket, "k", None, Acl("boss", (acl.owner_grant("boss"), PUBLIC_READ)), owner="boss")
    assert info.value.code == "OperationAborted" and info.value.status == 409
    record = yield core.objects.set_acl(bucket, "k", None, Acl("owner", (acl.owner_grant("owner"), PUBLIC_READ)),
                                        owner="owner")
    assert acl.is_public(record.acl)


def test_unsigned_writers_own_nothing() -> None:
    """An unsigned writer (a public-read-write bucket) leaves the object to
    the bucket owner, whatever the Object Ownership."""
    for ownership in (acl.OBJECT_WRITER, acl.BUCKET_OWNER_PREFERRED, acl.BUCKET_OWNER_ENFORCED):
        bucket = _bucket(ownership)
        assert acl.object_owner(bucket, "", acl.AclRequest(canned="public-read")) == bucket.created_by
        assert acl.object_owner(bucket, "w", None) == ("w" if ownership != acl.BUCKET_OWNER_ENFORCED else bucket.created_by)


@inlineCallbacks
def _owned(core: Any, bucket: Bucket, key: str, owner: str) -> Any:
    """Deferred[ObjectRecord] of a small object ``owner`` wrote (as a
    protocol handler makes the record)."""
    writer = core.chunks.new_writer(())
    writer.write(b"x")
    result = yield writer.finish()
    attrs = PutAttrs(owner=owner)
    committed = yield core.objects.commit(bucket, core.objects.new_record(key, result, attrs, {}), attrs)
    return committed


@pytest_twisted.inlineCallbacks
def test_an_object_another_tenant_owns_is_that_tenants_to_share(make_core: Any) -> None:
    """ObjectWriter: what boss (globex) wrote into acme's bucket is globex's.
    acme's side (the authorizer, whose admin role and owner rule allow
    everything here, and the bucket policy's Allow) decides its deletion and
    listing, and may refuse, but reads, ACL reads and changes and copies
    of it need boss's ACL: its grant to the caller, to a group, or to the
    bucket's owner (for any principal of the bucket's scope).  As AWS's
    object context."""
    core = make_core()
    yield core.principals.create("boss", "globex")
    yield core.principals.create("writer", "acme", roles=("read-write",))
    bucket = yield core.buckets.create(OWNER, "data", object_ownership=acl.OBJECT_WRITER)
    for key, owner in (("theirs", "boss"), ("acme-rw", "writer"), ("ghost", "nobody-holds-it"), ("old", "")):
        yield _owned(core, bucket, key, owner)
    gate = core.access
    rw = Principal("writer", "acme", roles=("read-write",))

    def ask(who: Principal, op: str, key: str, trail: Any = None, copy: bool = False) -> Any:
        action = access.action_of(op, True) if not copy else access.OBJECTS_GET
        return gate.bucket(who, "data", action, key, trail, _Request(op), access.COPY_SOURCE if copy else None)

    object_ops = ("GetObject", "HeadObject", "GetObjectAcl", "PutObjectAcl")
    for who in (OWNER, rw):
        for op in object_ops:
            with pytest.raises(errors.AccessDenied):
                yield ask(who, op, "theirs")
        with pytest.raises(errors.AccessDenied):
            yield ask(who, "CopyObject", "theirs", copy=True)
        # An id no principal holds is no owner of acme's.
        with pytest.raises(errors.AccessDenied):
            yield ask(who, "GetObject", "ghost")
    trail: list[Decision] = []
    with pytest.raises(errors.AccessDenied):
        yield ask(OWNER, "GetObject", "theirs", trail.append)
    assert trail == [Decision(access.OBJECTS_GET, "org/acme/bucket/data/object/theirs", False)]
    # acme's own objects, whoever of acme wrote them (or nobody recorded), and a missing key.
    for key in ("acme-rw", "old", "absent"):
        for op in object_ops:
            yield ask(OWNER, op, key)
    # The bucket's side still decides deletion and listing; boss keeps what it owns.
    yield ask(OWNER, "DeleteObject", "theirs")
    yield gate.bucket(OWNER, "data", access.OBJECTS_LIST, None, None, _Request("ListObjectsV2"))
    for op in object_ops:
        yield ask(OUTSIDER, op, "theirs")

    # bucket-owner-read: READ for acme's principals (the grant names the bucket's owner), not READ_ACP.
    readable = acl.expand(acl.AclRequest(canned="bucket-owner-read"), "boss", "owner", for_bucket=False)
    yield core.objects.set_acl(bucket, "theirs", None, readable)
    for who in (OWNER, rw):
        yield ask(who, "GetObject", "theirs")
        yield ask(who, "HeadObject", "theirs")
        yield ask(who, "CopyObject", "theirs", copy=True)
        with pytest.raises(errors.AccessDenied):
            yield ask(who, "GetObjectAcl", "theirs")
    with pytest.raises(errors.AccessDenied):  # a grant to the bucket's owner is not one to other tenants
        yield ask(THIRD, "GetObject", "theirs")
    # bucket-owner-full-control: everything; still not past the authorizer's refusal.
    full = acl.expand(acl.AclRequest(canned="bucket-owner-full-control"), "boss", "owner", for_bucket=False)
    yield core.objects.set_acl(bucket, "theirs", None, full)
    for op in object_ops:
        yield ask(OWNER, op, "theirs")
    with pytest.raises(errors.AccessDenied):
        yield ask(rw, "PutObjectAcl", "theirs")  # read-write has no objects:put-acl
    with pytest.raises(errors.AccessDenied):
        yield ask(NOBODY, "GetObject", "theirs")  # no role: grants by id do not count for it

    # A policy's Allow speaks for the bucket owner's objects only; its Deny for all.
    yield core.objects.set_acl(bucket, "theirs", None, None)
    policy = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::acme:root"}, "Action": "s3:*",
         "Resource": "arn:aws:s3:::data/*"},
        {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::data/*"},
        {"Effect": "Deny", "Principal": {"AWS": "arn:aws:iam::globex:root"}, "Action": "s3:GetObjectAcl",
         "Resource": "arn:aws:s3:::data/*"},
    ]}  # fmt: skip
    bucket = yield core.buckets.set_policy(bucket, json.dumps(policy))
    for who in (OWNER, rw, THIRD, access.ANONYMOUS):
        with pytest.raises(errors.AccessDenied):
            yield ask(who, "GetObject", "theirs")
    for who in (THIRD, access.ANONYMOUS):
        yield ask(who, "GetObject", "acme-rw")
    yield ask(OUTSIDER, "GetObject", "theirs")
    with pytest.raises(errors.AccessDenied):
        yield ask(OUTSIDER, "GetObjectAcl", "theirs")
    # A public grant is the owner's to make, and opens it to everyone the policy lets in.
    yield core.objects.set_acl(bucket, "theirs", None, acl.expand(
        acl.AclRequest(canned="public-read"), "boss", "owner", for_bucket=False))
    for who in (OWNER, THIRD, access.ANONYMOUS):
        yield ask(who, "GetObject", "theirs")


@pytest_twisted.inlineCallbacks
def test_tagging_and_locks_of_another_tenants_object_are_its_owners_alone(make_core: Any) -> None:
    """The object operations no ACL permission covers (tagging, attributes,
    retention, legal hold): acme's side still decides them for acme's
    objects, but on boss's (globex's) object only boss has them, with no
    grant from acme; no grant to acme, not even FULL_CONTROL, gives them
    to acme, and a public FULL_CONTROL gives them to nobody."""
    core = make_core()
    yield core.principals.create("boss", "globex")
    bucket = yield core.buckets.create(OWNER, "data", object_ownership=acl.OBJECT_WRITER)
    yield _owned(core, bucket, "ours", "owner")
    yield _owned(core, bucket, "theirs", "boss")
    gate = core.access

    def ask(who: Principal, op: str, key: str) -> Any:
        return gate.bucket(who, "data", access.action_of(op, True), key, None, _Request(op))

    owner_ops = tuple(acl.OWNER_OPERATIONS)
    assert "PutObjectTagging" in owner_ops and "PutObjectLegalHold" in owner_ops
    for op in owner_ops:
        yield ask(OWNER, op, "ours")
        yield ask(OUTSIDER, op, "theirs")
        for who, key in ((OWNER, "theirs"), (OUTSIDER, "ours"), (THIRD, "theirs"), (access.ANONYMOUS, "theirs")):
            with pytest.raises(errors.AccessDenied):
                yield ask(who, op, key)
    everything = Acl("boss", (acl.owner_grant("boss"), Grant(acl.CANONICAL_USER, "owner", acl.FULL_CONTROL),
                              Grant(acl.GROUP, acl.ALL_USERS, acl.FULL_CONTROL)))  # fmt: skip
    yield core.objects.set_acl(bucket, "theirs", None, everything)
    yield ask(OWNER, "GetObject", "theirs")  # the grants do count for what an ACL covers
    for op in owner_ops:
        for who in (OWNER, THIRD, access.ANONYMOUS):
            with pytest.raises(errors.AccessDenied):
                yield ask(who, op, "theirs")
    # The bucket's policy Deny binds the owner too.
    policy = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Deny", "Principal": "*", "Action": "s3:PutObjectTagging", "Resource": "arn:aws:s3:::data/*"},
    ]}  # fmt: skip
    yield core.buckets.set_policy(bucket, json.dumps(policy))
    with pytest.raises(errors.AccessDenied):
        yield ask(OUTSIDER, "PutObjectTagging", "theirs")
    yield ask(OUTSIDER, "GetObjectTagging", "theirs")


@pytest_twisted.inlineCallbacks
def test_the_owners_tenant_is_looked_up_only_when_needed_and_once(make_core: Any) -> None:
    """The bucket's owner and the caller need no lookup; another owner's
    org is read once (a principal never changes org); an id without a
    record is asked again (it might be created later)."""
    core = make_core()
    yield core.principals.create("boss", "globex")
    bucket = yield core.buckets.create(OWNER, "data", object_ownership=acl.OBJECT_WRITER)
    yield _owned(core, bucket, "ours", "owner")
    yield _owned(core, bucket, "theirs", "boss")
    yield _owned(core, bucket, "ghost", "ghost")
    looked: list[str] = []
    real = core.principals.get

    def counting(principal_id: str) -> Any:
        looked.append(principal_id)
        return real(principal_id)

    core.principals.get = counting
    gate = core.access
    yield gate.bucket(OWNER, "data", access.OBJECTS_GET, "ours", None, _Request("GetObject"))
    yield gate.bucket(OUTSIDER, "data", access.OBJECTS_GET, "theirs", None, _Request("GetObject"))
    assert looked == []
    for _ in range(2):
        with pytest.raises(errors.AccessDenied):
            yield gate.bucket(OWNER, "data", access.OBJECTS_GET, "theirs", None, _Request("GetObject"))
        with pytest.raises(errors.AccessDenied):
            yield gate.bucket(OWNER, "data", access.OBJECTS_GET, "ghost", None, _Request("GetObject"))
    assert looked == ["boss", "ghost", "ghost"]


def test_grants_to_the_bucket_owner_count_when_asked() -> None:
    """``bucket_owner``: a grant to the bucket's owner counts for the caller
    (a principal of the bucket's scope asking about another tenant's
    object); the owner's implicit rights on the ACL do not pass on."""
    readable = acl.expand(acl.AclRequest(canned="bucket-owner-read"), "boss", "owner", for_bucket=False)
    rw = Principal("writer", "acme")
    assert not acl.grants(readable, rw, acl.READ)
    assert acl.grants(readable, rw, acl.READ, bucket_owner="owner")
    assert not acl.grants(readable, rw, acl.READ_ACP, bucket_owner="owner")
    assert not acl.grants(readable, rw, acl.READ, bucket_owner="someone-else")
    assert not acl.grants(Acl("boss", ()), rw, acl.READ_ACP, bucket_owner="boss")  # ownership is not a grant
    assert not acl.grants(Acl("boss", (Grant(acl.CANONICAL_USER, "", acl.READ),)), access.ANONYMOUS, acl.READ)


def test_only_the_owner_has_what_no_acl_permission_covers() -> None:
    everything = Acl("boss", (Grant(acl.CANONICAL_USER, "writer", acl.FULL_CONTROL),
                              Grant(acl.GROUP, acl.ALL_USERS, acl.FULL_CONTROL)))  # fmt: skip
    assert acl.grants(everything, OUTSIDER, acl.OBJECT_OWNER)
    assert not acl.grants(everything, OUTSIDER, acl.OBJECT_OWNER, by_id=False)
    assert not acl.grants(everything, Principal("writer", "acme"), acl.OBJECT_OWNER, bucket_owner="writer")
    assert not acl.grants(everything, access.ANONYMOUS, acl.OBJECT_OWNER)
    assert not acl.grants(Acl("", ()), access.ANONYMOUS, acl.OBJECT_OWNER)
    assert acl.needed_permission("PutObjectTagging", copy_source=False, version_named=True) == (
        acl.OBJECT, acl.OBJECT_OWNER)
