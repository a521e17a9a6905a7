"""S3 ACLs and Object Ownership through the real server process (boto3 and
plain HTTP).

* A new bucket has ACLs disabled (BucketOwnerEnforced, AWS's default): an
  ACL other than the owner's own is 400 AccessControlListNotSupported and
  stores nothing.
* After PutBucketOwnershipControls ObjectWriter, ``public-read`` makes an
  object readable unsigned, a grant by id lets another tenant in, and
  ``authenticated-read`` lets any signed caller read; Block Public Access
  blocks or ignores public ACLs.
"""

from __future__ import annotations

import datetime
import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

from lightningstor.core import access
from tests.integration.tenants import ACME_ALL, Identity, Spec, Tenancy, s3_clients

ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"


@pytest.fixture(scope="module")
def tenancy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tenancy]:
    t = Tenancy.start(tmp_path_factory.mktemp("acl"), cache_seconds=0.5)
    yield t
    t.stop()


@pytest.fixture(scope="module")
def ids(tenancy: Tenancy) -> dict[str, Identity]:
    return tenancy.provision([
        Spec("acme-admin", "acme", roles=("admin",)),
        Spec("acme-nobody", "acme"),
        Spec("globex-admin", "globex", roles=("admin",)),
        Spec("initech-admin", "initech", roles=("admin",)),
        Spec("acme-named", "acme", name="Acme Named Person"),
        Spec("globex-named", "globex", name="Globex Secret Name"),
        # Writers: the read-write role, and a grant of every object action but
        # objects:put-acl; "acme-sharer" holds objects:put-acl as well.
        Spec("acme-rw", "acme", roles=("read-write",)),
        Spec("acme-putter", "acme", grants=(((
            access.OBJECTS_PUT, access.OBJECTS_GET, access.OBJECTS_LIST, access.OBJECTS_COPY, "lightningstor:uploads:*",
        ), ACME_ALL, "allow"),)),
        Spec("acme-sharer", "acme", grants=((
            (access.OBJECTS_PUT, access.OBJECTS_PUT_ACL, access.OBJECTS_GET), ACME_ALL, "allow"),)),
        # Read-write, but denied every object action under releases/.
        Spec("acme-denied", "acme", roles=("read-write",), grants=((
            (access.OBJECTS_GET, access.OBJECTS_PUT, access.OBJECTS_DELETE),
            ("org/acme/bucket/*/object/releases/*",), "deny"),)),
    ])  # fmt: skip


@pytest.fixture(scope="module")
def s3(tenancy: Tenancy, ids: dict[str, Identity]) -> Callable[[str], Any]:
    """``s3(principal_id)``: its client for the server's current endpoint."""
    return s3_clients(tenancy, ids)


def unsigned(endpoint: str) -> Any:
    return boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1",
        config=Config(signature_version=UNSIGNED, s3={"addressing_style": "path"},
                      retries={"max_attempts": 1, "mode": "standard"}),
    )  # fmt: skip


@pytest.fixture
def anonymous(tenancy: Tenancy) -> Any:
    return unsigned(tenancy.server.endpoint)


def _delete_all(admin: Any, name: str) -> None:
    try:
        admin.delete_public_access_block(Bucket=name)
        for page in admin.get_paginator("list_object_versions").paginate(Bucket=name):
            for v in page.get("Versions", []) + page.get("DeleteMarkers", []):
                admin.delete_object(Bucket=name, Key=v["Key"], VersionId=v["VersionId"])
        admin.delete_bucket(Bucket=name)
    except ClientError:
        pass


@pytest.fixture
def bucket(s3: Callable[[str], Any]) -> Iterator[str]:
    """A bucket of acme made as any client makes one: ACLs disabled."""
    name = f"acl-{uuid.uuid4().hex[:12]}"
    s3("acme-admin").create_bucket(Bucket=name)
    yield name
    _delete_all(s3("acme-admin"), name)


@pytest.fixture
def writer_bucket(s3: Callable[[str], Any], bucket: str) -> str:
    """``bucket`` switched to ObjectWriter: ACLs enabled."""
    s3("acme-admin").put_bucket_ownership_controls(
        Bucket=bucket, OwnershipControls={"Rules": [{"ObjectOwnership": "ObjectWriter"}]}
    )
    return bucket


def code_of(call: Callable[[], Any]) -> tuple[int, str]:
    with pytest.raises(ClientError) as info:
        call()
    err = info.value.response
    return err["ResponseMetadata"]["HTTPStatusCode"], err["Error"]["Code"]


def fetch(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def grants_of(acl: dict[str, Any]) -> set[tuple[str, str]]:
    return {(g["Grantee"].get("URI") or g["Grantee"].get("ID"), g["Permission"]) for g in acl["Grants"]}


# -- ACLs disabled (the default) -----------------------------------------------------------


def test_new_bucket_has_acls_disabled(s3: Callable[[str], Any], anonymous: Any, bucket: str) -> None:
    admin = s3("acme-admin")
    rules = admin.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]["Rules"]
    assert rules == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    assert code_of(lambda: admin.put_object(Bucket=bucket, Key="pub", Body=b"x", ACL="public-read")) == (
        400, "AccessControlListNotSupported")
    assert code_of(lambda: admin.head_object(Bucket=bucket, Key="pub"))[0] == 404  # nothing stored
    assert code_of(lambda: admin.put_object(
        Bucket=bucket, Key="g", Body=b"x", GrantRead='id="globex-admin"')) == (400, "AccessControlListNotSupported")
    admin.put_object(Bucket=bucket, Key="a", Body=b"x", ACL="private")
    admin.put_object(Bucket=bucket, Key="b", Body=b"x", ACL="bucket-owner-full-control")
    acl = admin.get_object_acl(Bucket=bucket, Key="a")
    assert acl["Owner"]["ID"] == "acme-admin"
    assert grants_of(acl) == {("acme-admin", "FULL_CONTROL")}
    assert code_of(lambda: admin.put_object_acl(Bucket=bucket, Key="a", ACL="public-read")) == (
        400, "AccessControlListNotSupported")
    admin.put_object_acl(Bucket=bucket, Key="a", ACL="private")  # the owner's own: 200, nothing changes
    assert code_of(lambda: admin.put_bucket_acl(Bucket=bucket, ACL="public-read")) == (
        400, "AccessControlListNotSupported")
    admin.put_bucket_acl(Bucket=bucket, ACL="private")
    assert grants_of(admin.get_bucket_acl(Bucket=bucket)) == {("acme-admin", "FULL_CONTROL")}
    assert code_of(lambda: anonymous.get_object(Bucket=bucket, Key="a")) == (403, "AccessDenied")


def test_acls_disabled_read_private_as_the_writer_means_it(s3: Callable[[str], Any], bucket: str) -> None:
    """With ACLs disabled, ``private`` from a writer of the bucket's own
    tenant means the bucket owner's full control (AWS's same account) and is
    taken; from another tenant it means the writer's own full control, which
    is AccessControlListNotSupported, as AWS answers another account.
    ``bucket-owner-full-control`` is taken from anyone."""
    import json

    admin, globex = s3("acme-admin"), s3("globex-admin")
    admin.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::globex:root"}, "Action": "s3:PutObject",
        "Resource": f"arn:aws:s3:::{bucket}/*"}]}))  # fmt: skip
    assert code_of(lambda: globex.put_object(Bucket=bucket, Key="p", Body=b"x", ACL="private")) == (
        400, "AccessControlListNotSupported")
    globex.put_object(Bucket=bucket, Key="b", Body=b"x", ACL="bucket-owner-full-control")
    globex.put_object(Bucket=bucket, Key="n", Body=b"x")
    assert admin.get_object_acl(Bucket=bucket, Key="b")["Owner"]["ID"] == "acme-admin"
    assert code_of(lambda: admin.head_object(Bucket=bucket, Key="p"))[0] == 404
    admin.put_object(Bucket=bucket, Key="mine", Body=b"x", ACL="private")
    admin.delete_bucket_policy(Bucket=bucket)


def test_create_bucket_with_ownership_and_acl(s3: Callable[[str], Any], anonymous: Any) -> None:
    admin = s3("acme-admin")
    name = f"acl-{uuid.uuid4().hex[:12]}"
    assert code_of(lambda: admin.create_bucket(Bucket=name, ACL="public-read")) == (
        400, "InvalidBucketAclWithObjectOwnership")
    assert code_of(lambda: admin.head_bucket(Bucket=name))[0] == 404
    assert code_of(lambda: admin.create_bucket(Bucket=name, ObjectOwnership="Nobody")) == (400, "InvalidArgument")
    admin.create_bucket(Bucket=name, ObjectOwnership="ObjectWriter", ACL="public-read")
    try:
        admin.put_object(Bucket=name, Key="k", Body=b"listed")
        assert [o["Key"] for o in anonymous.list_objects_v2(Bucket=name)["Contents"]] == ["k"]
        assert code_of(lambda: anonymous.get_object(Bucket=name, Key="k")) == (403, "AccessDenied")
    finally:
        _delete_all(admin, name)


# -- ACLs enabled -------------------------------------------------------------------------


def test_public_read_object_is_readable_unsigned(
    tenancy: Tenancy, s3: Callable[[str], Any], anonymous: Any, writer_bucket: str
) -> None:
    admin = s3("acme-admin")
    bucket = writer_bucket
    admin.put_object(Bucket=bucket, Key="pub.txt", Body=b"public bytes", ACL="public-read")
    admin.put_object(Bucket=bucket, Key="priv.txt", Body=b"private bytes")
    assert anonymous.get_object(Bucket=bucket, Key="pub.txt")["Body"].read() == b"public bytes"
    assert fetch(f"{tenancy.server.endpoint}/{bucket}/pub.txt") == (200, b"public bytes")
    assert code_of(lambda: anonymous.get_object(Bucket=bucket, Key="priv.txt")) == (403, "AccessDenied")
    assert fetch(f"{tenancy.server.endpoint}/{bucket}/priv.txt")[0] == 403
    # No bucket READ: a missing key is 403 too, as AWS.
    assert code_of(lambda: anonymous.get_object(Bucket=bucket, Key="nope")) == (403, "AccessDenied")
    acl = admin.get_object_acl(Bucket=bucket, Key="pub.txt")
    assert grants_of(acl) == {("acme-admin", "FULL_CONTROL"), (ALL_USERS, "READ")}
    assert [g["Grantee"]["Type"] for g in acl["Grants"]] == ["CanonicalUser", "Group"]
    admin.put_object_acl(Bucket=bucket, Key="pub.txt", ACL="private")
    assert code_of(lambda: anonymous.get_object(Bucket=bucket, Key="pub.txt")) == (403, "AccessDenied")
    assert grants_of(admin.get_object_acl(Bucket=bucket, Key="pub.txt")) == {("acme-admin", "FULL_CONTROL")}


def test_public_read_bucket_lets_unsigned_listing_in(
    s3: Callable[[str], Any], anonymous: Any, writer_bucket: str
) -> None:
    admin = s3("acme-admin")
    admin.put_object(Bucket=writer_bucket, Key="a", Body=b"x")
    assert code_of(lambda: anonymous.list_objects_v2(Bucket=writer_bucket)) == (403, "AccessDenied")
    admin.put_bucket_acl(Bucket=writer_bucket, ACL="public-read")
    assert [o["Key"] for o in anonymous.list_objects_v2(Bucket=writer_bucket)["Contents"]] == ["a"]
    assert code_of(lambda: anonymous.get_object(Bucket=writer_bucket, Key="a")) == (403, "AccessDenied")
    # Who may list hears that a key is missing.
    assert code_of(lambda: anonymous.get_object(Bucket=writer_bucket, Key="nope")) == (404, "NoSuchKey")
    assert code_of(lambda: anonymous.put_object(Bucket=writer_bucket, Key="b", Body=b"x")) == (403, "AccessDenied")
    assert grants_of(admin.get_bucket_acl(Bucket=writer_bucket)) == {
        ("acme-admin", "FULL_CONTROL"), (ALL_USERS, "READ")}


def test_grant_by_id_lets_that_principal_of_another_tenant_in(
    s3: Callable[[str], Any], anonymous: Any, writer_bucket: str
) -> None:
    admin = s3("acme-admin")
    admin.put_object(Bucket=writer_bucket, Key="for-globex", Body=b"hello globex", GrantRead='id="globex-admin"')
    assert s3("globex-admin").get_object(Bucket=writer_bucket, Key="for-globex")["Body"].read() == b"hello globex"
    assert code_of(lambda: s3("initech-admin").get_object(Bucket=writer_bucket, Key="for-globex")) == (
        403, "AccessDenied")
    assert code_of(lambda: anonymous.get_object(Bucket=writer_bucket, Key="for-globex")) == (403, "AccessDenied")
    # READ is not READ_ACP, nor WRITE.
    assert code_of(lambda: s3("globex-admin").get_object_acl(Bucket=writer_bucket, Key="for-globex")) == (
        403, "AccessDenied")
    assert code_of(lambda: s3("globex-admin").put_object(Bucket=writer_bucket, Key="x", Body=b"x")) == (
        403, "AccessDenied")
    # Grants must name ids a principal could have; e-mail grantees never resolve.
    assert code_of(lambda: admin.put_object(
        Bucket=writer_bucket, Key="y", Body=b"x", GrantRead='id="-not an id"')) == (400, "InvalidArgument")
    assert code_of(lambda: admin.put_object(
        Bucket=writer_bucket, Key="y", Body=b"x", GrantRead='emailAddress="a@example.com"')) == (
        400, "UnresolvableGrantByEmailAddress")
    assert code_of(lambda: admin.put_object(
        Bucket=writer_bucket, Key="y", Body=b"x", ACL="private", GrantRead='id="globex-admin"')) == (
        400, "InvalidRequest")


def _answer(response: dict[str, Any]) -> tuple[int, dict[str, str]]:
    """What a client learns from a successful answer: its status and its
    headers, but for those that differ on every request."""
    meta = response["ResponseMetadata"]
    varying = {"date", "x-amz-request-id", "x-amz-id-2"}
    return meta["HTTPStatusCode"], {k: v for k, v in meta["HTTPHeaders"].items() if k not in varying}


def test_grants_by_id_tell_nothing_about_other_tenants(s3: Callable[[str], Any], writer_bucket: str) -> None:
    """A grant by id to another tenant's principal and one to an id nobody
    holds get the same answer, and read back the same: the id, never the
    other tenant's display name.  Names of the caller's own tenant show;
    the grant across tenants still lets its principal in."""
    admin = s3("acme-admin")
    admin.put_object(Bucket=writer_bucket, Key="shared", Body=b"shared")
    answers: dict[str, list[Any]] = {}
    for grantee in ("globex-named", "nobody-holds-this-id"):
        grant = f'id="{grantee}"'
        answers[grantee] = [
            _answer(admin.put_object(Bucket=writer_bucket, Key=f"to-{grantee}", Body=b"x", GrantRead=grant)),
            _answer(admin.put_object_acl(Bucket=writer_bucket, Key="shared", GrantRead=grant)),
            _answer(admin.create_multipart_upload(Bucket=writer_bucket, Key="mp", GrantRead=grant)),
            code_of(lambda grant=grant: admin.put_object_acl(
                Bucket=writer_bucket, Key="shared", GrantRead=f'{grant}, id="-bad"')),
        ]
    assert answers["globex-named"][:2] == answers["nobody-holds-this-id"][:2]
    assert answers["globex-named"][3] == answers["nobody-holds-this-id"][3] == (400, "InvalidArgument")

    admin.put_object_acl(
        Bucket=writer_bucket, Key="shared",
        GrantRead='id="globex-named", id="nobody-holds-this-id", id="acme-named"',
        GrantReadACP='id="globex-named"',
    )  # fmt: skip

    def names(reader: str) -> dict[str, str]:
        acl = s3(reader).get_object_acl(Bucket=writer_bucket, Key="shared")
        shown = {g["Grantee"]["ID"]: g["Grantee"]["DisplayName"] for g in acl["Grants"]}
        return {**shown, acl["Owner"]["ID"]: acl["Owner"]["DisplayName"]}

    assert names("acme-admin") == {
        "globex-named": "globex-named", "nobody-holds-this-id": "nobody-holds-this-id",
        "acme-named": "Acme Named Person", "acme-admin": "acme-admin",
    }  # fmt: skip
    # globex-named reads the ACL (READ_ACP): its own name, no name of acme's.
    assert names("globex-named") == {
        "globex-named": "Globex Secret Name", "nobody-holds-this-id": "nobody-holds-this-id",
        "acme-named": "acme-named", "acme-admin": "acme-admin",
    }  # fmt: skip
    assert s3("globex-named").get_object(Bucket=writer_bucket, Key="shared")["Body"].read() == b"shared"
    assert code_of(lambda: s3("initech-admin").get_object(Bucket=writer_bucket, Key="shared")) == (
        403, "AccessDenied")


@pytest.mark.parametrize("writer", ["acme-rw", "acme-putter"])
def test_the_right_to_write_is_not_the_right_to_share(
    s3: Callable[[str], Any], anonymous: Any, writer_bucket: str, writer: str
) -> None:
    """A principal that may write objects (the read-write role, or a grant
    of objects:put) but not change ACLs (objects:put-acl) cannot make an
    object public or share it, by PutObjectAcl or by an ACL on a write, and
    nothing is stored; ACLs that grant only the owners pass.  With
    objects:put-acl the same requests work."""
    c, admin = s3(writer), s3("acme-admin")
    c.put_object(Bucket=writer_bucket, Key="mine", Body=b"mine")
    for canned in ("private", "bucket-owner-full-control", "bucket-owner-read"):
        c.put_object(Bucket=writer_bucket, Key=f"owned-{canned}", Body=b"x", ACL=canned)
    refused = {
        "PutObject public-read": lambda: c.put_object(Bucket=writer_bucket, Key="pub", Body=b"x", ACL="public-read"),
        "PutObject grant": lambda: c.put_object(
            Bucket=writer_bucket, Key="pub", Body=b"x", GrantRead='id="globex-admin"'),
        "CopyObject": lambda: c.copy_object(
            Bucket=writer_bucket, Key="pub", CopySource={"Bucket": writer_bucket, "Key": "mine"}, ACL="public-read"),
        "CreateMultipartUpload": lambda: c.create_multipart_upload(
            Bucket=writer_bucket, Key="pub", ACL="authenticated-read"),
        "PutObjectAcl": lambda: c.put_object_acl(Bucket=writer_bucket, Key="mine", ACL="public-read"),
        "PutObjectAcl grant": lambda: c.put_object_acl(
            Bucket=writer_bucket, Key="mine", GrantRead='id="globex-admin"'),
    }  # fmt: skip
    for name, call in refused.items():
        assert code_of(call) == (403, "AccessDenied"), name
    assert code_of(lambda: admin.head_object(Bucket=writer_bucket, Key="pub")) == (404, "404")
    assert not admin.list_multipart_uploads(Bucket=writer_bucket).get("Uploads")
    assert code_of(lambda: anonymous.get_object(Bucket=writer_bucket, Key="mine")) == (403, "AccessDenied")
    assert code_of(lambda: s3("globex-admin").get_object(Bucket=writer_bucket, Key="mine")) == (403, "AccessDenied")

    sharer = s3("acme-sharer")
    sharer.put_object(Bucket=writer_bucket, Key="pub", Body=b"public", ACL="public-read")
    assert anonymous.get_object(Bucket=writer_bucket, Key="pub")["Body"].read() == b"public"
    sharer.put_object_acl(Bucket=writer_bucket, Key="mine", ACL="public-read")
    assert anonymous.get_object(Bucket=writer_bucket, Key="mine")["Body"].read() == b"mine"


def test_a_writes_acl_is_asked_of_the_policy_as_put_object_acl(
    s3: Callable[[str], Any], anonymous: Any, writer_bucket: str
) -> None:
    """A bucket policy sees a write that shares its object as
    s3:PutObjectAcl too, as AWS asks: its Allow lets a read-write principal
    share, its Deny stops even an admin; writes that share nothing are not
    asked."""
    admin = s3("acme-admin")
    admin.put_bucket_policy(Bucket=writer_bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::acme:user/acme-rw"}, "Action": "s3:PutObjectAcl",
         "Resource": f"arn:aws:s3:::{writer_bucket}/*"},
        {"Effect": "Deny", "Principal": {"AWS": "arn:aws:iam::acme:user/acme-admin"}, "Action": "s3:PutObjectAcl",
         "Resource": f"arn:aws:s3:::{writer_bucket}/*"},
    ]}))  # fmt: skip
    s3("acme-rw").put_object(Bucket=writer_bucket, Key="rw", Body=b"by rw", ACL="public-read")
    assert anonymous.get_object(Bucket=writer_bucket, Key="rw")["Body"].read() == b"by rw"
    assert code_of(lambda: admin.put_object(Bucket=writer_bucket, Key="ad", Body=b"x", ACL="public-read")) == (
        403, "AccessDenied")
    admin.put_object(Bucket=writer_bucket, Key="ad", Body=b"x", ACL="bucket-owner-full-control")


def test_authenticated_read_is_for_signed_callers(
    s3: Callable[[str], Any], anonymous: Any, writer_bucket: str
) -> None:
    s3("acme-admin").put_object(Bucket=writer_bucket, Key="auth", Body=b"signed only", ACL="authenticated-read")
    assert s3("initech-admin").get_object(Bucket=writer_bucket, Key="auth")["Body"].read() == b"signed only"
    assert code_of(lambda: anonymous.get_object(Bucket=writer_bucket, Key="auth")) == (403, "AccessDenied")


def test_bucket_write_grant_and_bucket_owner_preferred(s3: Callable[[str], Any], bucket: str) -> None:
    """A principal of another tenant gets in through a grant by id;
    BucketOwnerPreferred gives the bucket owner what is written with
    bucket-owner-full-control, the writer the rest.  Inside the tenant a
    principal the authorizer refuses gets in only through public grants,
    never through grants by id or what it owns (a revoked role keeps
    nothing, not even a grant it could have made itself)."""
    admin, globex, nobody = s3("acme-admin"), s3("globex-admin"), s3("acme-nobody")
    admin.put_bucket_ownership_controls(
        Bucket=bucket, OwnershipControls={"Rules": [{"ObjectOwnership": "BucketOwnerPreferred"}]})
    assert code_of(lambda: globex.put_object(Bucket=bucket, Key="n", Body=b"x")) == (403, "AccessDenied")
    admin.put_bucket_acl(Bucket=bucket, GrantWrite='id="globex-admin", id="acme-nobody"',
                         GrantFullControl='id="acme-admin"')
    globex.put_object(Bucket=bucket, Key="mine", Body=b"x")
    globex.put_object(Bucket=bucket, Key="theirs", Body=b"x", ACL="bucket-owner-full-control")
    assert globex.get_object_acl(Bucket=bucket, Key="mine")["Owner"]["ID"] == "globex-admin"
    assert admin.get_object_acl(Bucket=bucket, Key="theirs")["Owner"]["ID"] == "acme-admin"
    assert code_of(lambda: globex.get_object(Bucket=bucket, Key="theirs")) == (403, "AccessDenied")
    assert globex.get_object(Bucket=bucket, Key="mine")["Body"].read() == b"x"
    # acme-nobody has no role: the grant by id does not let it write, nor read.
    assert code_of(lambda: nobody.put_object(Bucket=bucket, Key="n", Body=b"x")) == (403, "AccessDenied")
    admin.put_object(Bucket=bucket, Key="shared", Body=b"s", GrantRead='id="acme-nobody"')
    assert code_of(lambda: nobody.get_object(Bucket=bucket, Key="shared")) == (403, "AccessDenied")
    admin.put_object_acl(Bucket=bucket, Key="shared", ACL="authenticated-read")
    assert nobody.get_object(Bucket=bucket, Key="shared")["Body"].read() == b"s"  # public grants do


def test_multipart_listings_name_the_objects_future_owner(s3: Callable[[str], Any], bucket: str) -> None:
    """ListParts and ListMultipartUploads: ``Initiator`` is the writer,
    ``Owner`` who will own the object (AWS): the bucket owner under
    BucketOwnerEnforced, and under BucketOwnerPreferred for a
    bucket-owner-full-control upload (s3-tests' bucket ownership tests)."""
    admin, rw = s3("acme-admin"), s3("acme-rw")

    def listed(key: str, upload_id: str) -> tuple[tuple[str, str], tuple[str, str]]:
        parts = admin.list_parts(Bucket=bucket, Key=key, UploadId=upload_id)
        (entry,) = [u for u in admin.list_multipart_uploads(Bucket=bucket)["Uploads"] if u["UploadId"] == upload_id]
        assert (entry["Initiator"]["ID"], entry["Owner"]["ID"]) == (parts["Initiator"]["ID"], parts["Owner"]["ID"])
        return parts["Initiator"]["ID"], parts["Owner"]["ID"]

    enforced = rw.create_multipart_upload(Bucket=bucket, Key="enforced")["UploadId"]
    assert listed("enforced", enforced) == ("acme-rw", "acme-admin")
    admin.put_bucket_ownership_controls(
        Bucket=bucket, OwnershipControls={"Rules": [{"ObjectOwnership": "BucketOwnerPreferred"}]})
    given = rw.create_multipart_upload(Bucket=bucket, Key="given", ACL="bucket-owner-full-control")["UploadId"]
    kept = rw.create_multipart_upload(Bucket=bucket, Key="kept")["UploadId"]
    assert listed("given", given) == ("acme-rw", "acme-admin")
    assert listed("kept", kept) == ("acme-rw", "acme-rw")
    for key, upload_id in (("enforced", enforced), ("given", given), ("kept", kept)):
        admin.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)


def test_multipart_listings_show_initiators_by_id(
    s3: Callable[[str], Any], anonymous: Any, writer_bucket: str
) -> None:
    """Another tenant's principal starting an upload in a public-read-write
    bucket is listed by id (ID and DisplayName), to the bucket's tenant and
    to unsigned callers alike: its display name is not theirs to read."""
    admin = s3("acme-admin")
    admin.put_bucket_acl(Bucket=writer_bucket, ACL="public-read-write")
    upload = s3("globex-named").create_multipart_upload(Bucket=writer_bucket, Key="theirs")["UploadId"]
    try:
        for lister in (admin, anonymous):
            (entry,) = lister.list_multipart_uploads(Bucket=writer_bucket)["Uploads"]
            assert entry["Initiator"] == {"ID": "globex-named", "DisplayName": "globex-named"}
            assert entry["Owner"] == {"ID": "globex-named", "DisplayName": "globex-named"}
        parts = admin.list_parts(Bucket=writer_bucket, Key="theirs", UploadId=upload)
        assert parts["Initiator"]["DisplayName"] == parts["Owner"]["DisplayName"] == "globex-named"
    finally:
        s3("globex-named").abort_multipart_upload(Bucket=writer_bucket, Key="theirs", UploadId=upload)
        admin.put_bucket_acl(Bucket=writer_bucket, ACL="private")


def test_a_multipart_uploads_acl_is_taken_as_the_bucket_stands_at_completion(
    s3: Callable[[str], Any], anonymous: Any, writer_bucket: str
) -> None:
    """The ACL given at CreateMultipartUpload meets the bucket's settings
    again when the upload completes: BlockPublicAcls turned on since refuses
    a public one (the upload stays open), and ACLs disabled since drop it
    (the bucket owner owns the object)."""
    admin, globex = s3("acme-admin"), s3("globex-admin")

    def upload(client: Any, key: str, **acl: Any) -> tuple[str, dict[str, Any]]:
        up = client.create_multipart_upload(Bucket=writer_bucket, Key=key, **acl)["UploadId"]
        etag = client.upload_part(Bucket=writer_bucket, Key=key, UploadId=up, PartNumber=1, Body=b"m")["ETag"]
        return up, {"Parts": [{"PartNumber": 1, "ETag": etag}]}

    public, parts = upload(admin, "pub", ACL="public-read")
    admin.put_public_access_block(Bucket=writer_bucket, PublicAccessBlockConfiguration={"BlockPublicAcls": True})
    assert code_of(lambda: admin.complete_multipart_upload(
        Bucket=writer_bucket, Key="pub", UploadId=public, MultipartUpload=parts)) == (403, "AccessDenied")
    assert code_of(lambda: admin.head_object(Bucket=writer_bucket, Key="pub"))[0] == 404
    admin.abort_multipart_upload(Bucket=writer_bucket, Key="pub", UploadId=public)
    admin.delete_public_access_block(Bucket=writer_bucket)
    admin.put_bucket_acl(Bucket=writer_bucket, GrantWrite='id="globex-admin"', GrantFullControl='id="acme-admin"')
    theirs, parts = upload(globex, "theirs", ACL="public-read")
    admin.put_bucket_acl(Bucket=writer_bucket, ACL="private")
    admin.put_bucket_ownership_controls(
        Bucket=writer_bucket, OwnershipControls={"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]})
    admin.complete_multipart_upload(Bucket=writer_bucket, Key="theirs", UploadId=theirs, MultipartUpload=parts)
    acl = admin.get_object_acl(Bucket=writer_bucket, Key="theirs")
    assert acl["Owner"]["ID"] == "acme-admin" and grants_of(acl) == {("acme-admin", "FULL_CONTROL")}
    admin.put_bucket_ownership_controls(
        Bucket=writer_bucket, OwnershipControls={"Rules": [{"ObjectOwnership": "ObjectWriter"}]})
    assert code_of(lambda: anonymous.get_object(Bucket=writer_bucket, Key="theirs")) == (403, "AccessDenied")


def test_unsigned_uploads_into_a_public_read_write_bucket_belong_to_its_owner(
    s3: Callable[[str], Any], anonymous: Any, writer_bucket: str
) -> None:
    admin = s3("acme-admin")
    admin.put_bucket_acl(Bucket=writer_bucket, ACL="public-read-write")
    anonymous.put_object(Bucket=writer_bucket, Key="drop", Body=b"dropped", ACL="public-read")
    assert admin.get_object_acl(Bucket=writer_bucket, Key="drop")["Owner"]["ID"] == "acme-admin"
    assert anonymous.get_object(Bucket=writer_bucket, Key="drop")["Body"].read() == b"dropped"
    admin.put_bucket_acl(Bucket=writer_bucket, ACL="private")


def test_writers_let_in_by_an_acl_set_locks_and_tags_only_on_objects_they_will_own(
    s3: Callable[[str], Any], anonymous: Any
) -> None:
    """A public-read-write ACL grants writes, not retention, legal holds or
    tags: an unsigned writer (its objects go to the bucket owner) asking for
    them on PutObject, CopyObject or CreateMultipartUpload is 403 and writes
    nothing (a COMPLIANCE retention would have kept the owner from deleting
    the version until its date); the same writes without them go through.
    Another tenant's signed writer owns what it writes, and may."""
    admin, name = s3("acme-admin"), f"acl-lock-{uuid.uuid4().hex[:8]}"
    admin.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True, ObjectOwnership="ObjectWriter")
    admin.put_bucket_acl(Bucket=name, ACL="public-read-write")
    admin.put_object(Bucket=name, Key="src", Body=b"source")
    until = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=3650)
    lock = {"ObjectLockMode": "COMPLIANCE", "ObjectLockRetainUntilDate": until}
    try:
        for asked in (lock, {"ObjectLockLegalHoldStatus": "ON"}, {"Tagging": "k=v"}):
            assert code_of(lambda a=asked: anonymous.put_object(
                Bucket=name, Key="anon", Body=b"x", ChecksumAlgorithm="CRC32", **a)) == (403, "AccessDenied")
            assert code_of(lambda a=asked: anonymous.copy_object(
                Bucket=name, Key="anon", CopySource={"Bucket": name, "Key": "src"}, **a)) == (403, "AccessDenied")
            assert code_of(lambda a=asked: anonymous.create_multipart_upload(
                Bucket=name, Key="anon", **a)) == (403, "AccessDenied")
        assert code_of(lambda: admin.head_object(Bucket=name, Key="anon"))[0] == 404
        assert admin.list_multipart_uploads(Bucket=name).get("Uploads", []) == []
        anonymous.put_object(Bucket=name, Key="anon", Body=b"x")  # without them: a write as any other
        outsider = s3("globex-admin")
        outsider.put_object(Bucket=name, Key="theirs", Body=b"y", Tagging="k=v", ObjectLockLegalHoldStatus="ON",
                            ChecksumAlgorithm="CRC32")
        assert outsider.get_object_tagging(Bucket=name, Key="theirs")["TagSet"] == [{"Key": "k", "Value": "v"}]
        outsider.put_object_legal_hold(Bucket=name, Key="theirs", LegalHold={"Status": "OFF"})
    finally:
        admin.put_bucket_acl(Bucket=name, ACL="private")
        _delete_all(admin, name)
    # fmt: skip


def test_an_explicit_deny_beats_a_public_acl(s3: Callable[[str], Any], writer_bucket: str) -> None:
    """A principal's deny grant refuses it even what a public-read-write ACL
    grants everyone: an explicit deny wins over every allow, ACLs included
    (the ACL fallback once answered its refused reads, writes and deletes).
    Outside the denied prefix the ACL and its role still let it in."""
    admin, denied = s3("acme-admin"), s3("acme-denied")
    admin.put_bucket_acl(Bucket=writer_bucket, ACL="public-read-write")
    admin.put_object(Bucket=writer_bucket, Key="releases/v1.tar", Body=b"v1")
    try:
        assert code_of(lambda: denied.get_object(Bucket=writer_bucket, Key="releases/v1.tar")) == (403, "AccessDenied")
        assert code_of(lambda: denied.put_object(
            Bucket=writer_bucket, Key="releases/v2.tar", Body=b"v2")) == (403, "AccessDenied")  # fmt: skip
        assert code_of(lambda: denied.delete_object(
            Bucket=writer_bucket, Key="releases/v1.tar")) == (403, "AccessDenied")  # fmt: skip
        assert admin.get_object(Bucket=writer_bucket, Key="releases/v1.tar")["Body"].read() == b"v1"
        assert code_of(lambda: admin.head_object(Bucket=writer_bucket, Key="releases/v2.tar"))[0] == 404
        denied.put_object(Bucket=writer_bucket, Key="other.txt", Body=b"o")
        assert denied.get_object(Bucket=writer_bucket, Key="other.txt")["Body"].read() == b"o"
    finally:
        admin.put_bucket_acl(Bucket=writer_bucket, ACL="private")


def test_a_bucket_with_acls_enabled_keeps_its_name(s3: Callable[[str], Any], writer_bucket: str) -> None:
    """Its ACLs (or its objects') may let other tenants in by its name
    alone: another tenant may not create a second bucket of that name."""
    assert code_of(lambda: s3("globex-admin").create_bucket(Bucket=writer_bucket)) == (409, "BucketAlreadyExists")


def test_grpc_copy_reads_the_source_versions_acl(
    tenancy: Tenancy, ids: dict[str, Identity], s3: Callable[[str], Any], writer_bucket: str
) -> None:
    """A gRPC copy naming a source version is decided on that version's
    ACL, as over S3: a public current version does not open a private old
    one, nor does a delete marker."""
    from lightningstor.client.errors import PermissionDeniedError

    admin = s3("acme-admin")
    admin.put_bucket_versioning(Bucket=writer_bucket, VersioningConfiguration={"Status": "Enabled"})
    old = admin.put_object(Bucket=writer_bucket, Key="doc", Body=b"private draft")["VersionId"]
    admin.put_object(Bucket=writer_bucket, Key="doc", Body=b"published", ACL="public-read")
    mine = f"g-{uuid.uuid4().hex[:10]}"
    globex = s3("globex-admin")
    globex.create_bucket(Bucket=mine)
    client = ids["globex-admin"].grpc(tenancy.server.grpc_endpoint)
    try:
        client.copy_object(writer_bucket, "doc", mine, "current")
        with pytest.raises(PermissionDeniedError):
            client.copy_object(writer_bucket, "doc", mine, "old", source_version_id=old)
        admin.delete_object(Bucket=writer_bucket, Key="doc")  # a delete marker on top
        with pytest.raises(PermissionDeniedError):
            client.copy_object(writer_bucket, "doc", mine, "old2", source_version_id=old)
    finally:
        client.close()
    assert globex.get_object(Bucket=mine, Key="current")["Body"].read() == b"published"
    assert [o["Key"] for o in globex.list_objects_v2(Bucket=mine).get("Contents", [])] == ["current"]
    _delete_all(globex, mine)


def test_copy_and_multipart_take_the_requests_acl(
    s3: Callable[[str], Any], anonymous: Any, writer_bucket: str
) -> None:
    admin = s3("acme-admin")
    admin.put_object(Bucket=writer_bucket, Key="src", Body=b"source", ACL="public-read")
    admin.copy_object(Bucket=writer_bucket, Key="copy", CopySource={"Bucket": writer_bucket, "Key": "src"})
    assert code_of(lambda: anonymous.get_object(Bucket=writer_bucket, Key="copy")) == (403, "AccessDenied")
    admin.copy_object(Bucket=writer_bucket, Key="copy2", CopySource={"Bucket": writer_bucket, "Key": "src"},
                      ACL="public-read")
    assert anonymous.get_object(Bucket=writer_bucket, Key="copy2")["Body"].read() == b"source"
    upload = admin.create_multipart_upload(Bucket=writer_bucket, Key="mp", ACL="public-read")
    part = admin.upload_part(Bucket=writer_bucket, Key="mp", UploadId=upload["UploadId"], PartNumber=1, Body=b"m")
    admin.complete_multipart_upload(Bucket=writer_bucket, Key="mp", UploadId=upload["UploadId"],
                                    MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
    assert anonymous.get_object(Bucket=writer_bucket, Key="mp")["Body"].read() == b"m"


def test_block_public_acls_refuses_public_acls(s3: Callable[[str], Any], writer_bucket: str) -> None:
    admin = s3("acme-admin")
    admin.put_public_access_block(Bucket=writer_bucket, PublicAccessBlockConfiguration={
        "BlockPublicAcls": True, "IgnorePublicAcls": False, "BlockPublicPolicy": False,
        "RestrictPublicBuckets": False})
    assert code_of(lambda: admin.put_object(Bucket=writer_bucket, Key="p", Body=b"x", ACL="public-read")) == (
        403, "AccessDenied")
    assert code_of(lambda: admin.head_object(Bucket=writer_bucket, Key="p"))[0] == 404
    assert code_of(lambda: admin.put_bucket_acl(Bucket=writer_bucket, ACL="public-read")) == (403, "AccessDenied")
    assert code_of(lambda: admin.put_object(
        Bucket=writer_bucket, Key="p", Body=b"x", GrantRead=f'uri="{ALL_USERS}"')) == (403, "AccessDenied")
    admin.put_object(Bucket=writer_bucket, Key="p", Body=b"x", ACL="private")


def test_ignore_public_acls_keeps_them_but_they_count_for_nothing(
    s3: Callable[[str], Any], anonymous: Any, writer_bucket: str
) -> None:
    admin = s3("acme-admin")
    admin.put_object(Bucket=writer_bucket, Key="pub", Body=b"x", ACL="public-read")
    assert anonymous.get_object(Bucket=writer_bucket, Key="pub")["Body"].read() == b"x"
    admin.put_public_access_block(Bucket=writer_bucket, PublicAccessBlockConfiguration={
        "BlockPublicAcls": False, "IgnorePublicAcls": True, "BlockPublicPolicy": False,
        "RestrictPublicBuckets": False})
    assert code_of(lambda: anonymous.get_object(Bucket=writer_bucket, Key="pub")) == (403, "AccessDenied")
    assert (ALL_USERS, "READ") in grants_of(admin.get_object_acl(Bucket=writer_bucket, Key="pub"))


def test_back_to_enforced_needs_an_owner_only_bucket_acl(s3: Callable[[str], Any], writer_bucket: str) -> None:
    admin = s3("acme-admin")
    admin.put_bucket_acl(Bucket=writer_bucket, ACL="public-read")
    enforced = {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    assert code_of(lambda: admin.put_bucket_ownership_controls(
        Bucket=writer_bucket, OwnershipControls=enforced)) == (400, "InvalidBucketAclWithObjectOwnership")
    rules = admin.get_bucket_ownership_controls(Bucket=writer_bucket)["OwnershipControls"]["Rules"]
    assert rules == [{"ObjectOwnership": "ObjectWriter"}]
    admin.put_bucket_acl(Bucket=writer_bucket, ACL="private")
    admin.put_bucket_ownership_controls(Bucket=writer_bucket, OwnershipControls=enforced)
    admin.delete_bucket_ownership_controls(Bucket=writer_bucket)
    assert code_of(lambda: admin.get_bucket_ownership_controls(Bucket=writer_bucket)) == (
        404, "OwnershipControlsNotFoundError")


def test_malformed_acl_document_changes_nothing(s3: Callable[[str], Any], writer_bucket: str) -> None:
    admin = s3("acme-admin")
    admin.put_bucket_acl(Bucket=writer_bucket, ACL="public-read")
    before = grants_of(admin.get_bucket_acl(Bucket=writer_bucket))
    owner = {"ID": "acme-admin"}
    bad = {"Owner": owner, "Grants": [{"Grantee": {"Type": "Group", "URI": ALL_USERS}, "Permission": "EVERYTHING"}]}
    assert code_of(lambda: admin.put_bucket_acl(Bucket=writer_bucket, AccessControlPolicy=bad)) == (
        400, "MalformedACLError")
    assert grants_of(admin.get_bucket_acl(Bucket=writer_bucket)) == before
    # A document naming another owner is refused; a right one is taken.
    other = {"Owner": {"ID": "globex-admin"}, "Grants": []}
    assert code_of(lambda: admin.put_bucket_acl(Bucket=writer_bucket, AccessControlPolicy=other)) == (
        403, "AccessDenied")
    good = {"Owner": owner, "Grants": [
        {"Grantee": {"Type": "CanonicalUser", "ID": "acme-admin"}, "Permission": "FULL_CONTROL"},
        {"Grantee": {"Type": "CanonicalUser", "ID": "globex-admin"}, "Permission": "READ"},
    ]}
    admin.put_bucket_acl(Bucket=writer_bucket, AccessControlPolicy=good)
    assert grants_of(admin.get_bucket_acl(Bucket=writer_bucket)) == {
        ("acme-admin", "FULL_CONTROL"), ("globex-admin", "READ")}
    assert s3("globex-admin").list_objects_v2(Bucket=writer_bucket)["KeyCount"] == 0


def test_acls_and_ownership_survive_a_restart(tenancy: Tenancy, s3: Callable[[str], Any], writer_bucket: str) -> None:
    """Both live in the stored records (bucket and object), not in memory."""
    s3("acme-admin").put_object(Bucket=writer_bucket, Key="pub", Body=b"kept", ACL="public-read")
    s3("acme-admin").put_bucket_acl(Bucket=writer_bucket, ACL="public-read")
    tenancy.server.restart()
    admin, anonymous = s3("acme-admin"), unsigned(tenancy.server.endpoint)
    assert anonymous.get_object(Bucket=writer_bucket, Key="pub")["Body"].read() == b"kept"
    assert [o["Key"] for o in anonymous.list_objects_v2(Bucket=writer_bucket)["Contents"]] == ["pub"]
    rules = admin.get_bucket_ownership_controls(Bucket=writer_bucket)["OwnershipControls"]["Rules"]
    assert rules == [{"ObjectOwnership": "ObjectWriter"}]


def test_a_policy_asks_outsiders_put_object_acl_for_a_writes_acl(
    s3: Callable[[str], Any], anonymous: Any, writer_bucket: str
) -> None:
    """A bucket policy that lets another tenant's writer and anonymous
    callers upload, and denies s3:PutObjectAcl: neither may write an object
    with a public ACL, by any write path, though both may upload and a
    bucket-owner ACL still works.  Before, only callers inside the bucket's
    scope were asked, so such a drop box published whatever came in."""
    admin = s3("acme-admin")
    arn = f"arn:aws:s3:::{writer_bucket}/*"
    admin.put_bucket_policy(Bucket=writer_bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": "*", "Action": ["s3:PutObject"], "Resource": arn},
        {"Effect": "Deny", "Principal": {"AWS": "arn:aws:iam::globex:user/globex-admin"},
         "Action": "s3:PutObjectAcl", "Resource": arn},
    ]}))  # fmt: skip
    outsider = s3("globex-admin")
    for name, client in (("outsider", outsider), ("anonymous", anonymous)):
        client.put_object(Bucket=writer_bucket, Key=f"{name}-plain", Body=b"x")
        client.put_object(Bucket=writer_bucket, Key=f"{name}-owned", Body=b"x", ACL="bucket-owner-full-control")
        assert code_of(lambda c=client, n=name: c.put_object(  # type: ignore[misc]
            Bucket=writer_bucket, Key=f"{n}-pub", Body=b"x", ACL="public-read")) == (403, "AccessDenied")
        assert code_of(lambda c=client, n=name: c.put_object(  # type: ignore[misc]
            Bucket=writer_bucket, Key=f"{n}-grant", Body=b"x", GrantRead=f'uri="{ALL_USERS}"')) == (403, "AccessDenied")
    assert code_of(lambda: outsider.create_multipart_upload(Bucket=writer_bucket, Key="mp", ACL="public-read")) == (
        403, "AccessDenied")
    assert code_of(lambda: anonymous.get_object(Bucket=writer_bucket, Key="anonymous-pub"))[0] in (403, 404)


def test_what_another_tenant_owns_in_the_bucket_is_its_own_to_share(
    tenancy: Tenancy, ids: dict[str, Identity], s3: Callable[[str], Any], writer_bucket: str
) -> None:
    """ObjectWriter: an object globex writes into acme's bucket is globex's
    (another account's). acme, the bucket's owner, sees it listed and may
    delete it, but reads it, heads it, copies it, reads or changes its ACL
    only as far as globex's ACL grants acme: not at all when private, READ
    with bucket-owner-read (for every acme principal the authorizer lets
    in), everything with bucket-owner-full-control. acme's roles and its
    bucket policy's Allow do not reach it; its Deny does. Over S3 and gRPC
    alike (AWS's object context; ceph/s3-tests test_bucket_policy_put_obj_grant)."""
    from lightningstor.client.errors import PermissionDeniedError

    admin, rw, globex = s3("acme-admin"), s3("acme-rw"), s3("globex-admin")
    b = writer_bucket
    admin.put_bucket_acl(Bucket=b, GrantWrite='id="globex-admin"', GrantFullControl='id="acme-admin"')
    globex.put_object(Bucket=b, Key="theirs", Body=b"globex's")
    globex.put_object(Bucket=b, Key="readable", Body=b"readable", ACL="bucket-owner-read")
    globex.put_object(Bucket=b, Key="given", Body=b"given", ACL="bucket-owner-full-control")
    admin.put_object(Bucket=b, Key="ours", Body=b"acme's")
    assert globex.get_object_acl(Bucket=b, Key="theirs")["Owner"]["ID"] == "globex-admin"
    assert globex.get_object(Bucket=b, Key="theirs")["Body"].read() == b"globex's"

    def refused(client: Any, key: str) -> dict[str, tuple[int, str]]:
        return {
            "GetObject": code_of(lambda: client.get_object(Bucket=b, Key=key)),
            "HeadObject": code_of(lambda: client.head_object(Bucket=b, Key=key)),
            "GetObjectAcl": code_of(lambda: client.get_object_acl(Bucket=b, Key=key)),
            "PutObjectAcl": code_of(lambda: client.put_object_acl(Bucket=b, Key=key, ACL="private")),
            "CopyObject": code_of(lambda: client.copy_object(
                Bucket=b, Key=f"copy-of-{key}", CopySource={"Bucket": b, "Key": key})),
        }

    denied = {"GetObject": (403, "AccessDenied"), "HeadObject": (403, "403"), "GetObjectAcl": (403, "AccessDenied"),
              "PutObjectAcl": (403, "AccessDenied"), "CopyObject": (403, "AccessDenied")}  # fmt: skip
    assert refused(admin, "theirs") == denied
    assert code_of(lambda: rw.get_object(Bucket=b, Key="theirs")) == (403, "AccessDenied")
    client = ids["acme-admin"].grpc(tenancy.server.grpc_endpoint)
    try:
        with pytest.raises(PermissionDeniedError):
            client.head_object(b, "theirs")
        with pytest.raises(PermissionDeniedError):
            client.get_object(b, "theirs").read()
        assert client.head_object(b, "ours").size == len(b"acme's")
    finally:
        client.close()
    # bucket-owner-read: READ for acme's principals, not the ACL.
    assert admin.get_object(Bucket=b, Key="readable")["Body"].read() == b"readable"
    assert rw.get_object(Bucket=b, Key="readable")["Body"].read() == b"readable"
    assert code_of(lambda: admin.get_object_acl(Bucket=b, Key="readable")) == (403, "AccessDenied")
    # bucket-owner-full-control: everything, the ACL included (acme may hand back less).
    acl = admin.get_object_acl(Bucket=b, Key="given")
    assert acl["Owner"]["ID"] == "globex-admin"
    assert grants_of(acl) == {("globex-admin", "FULL_CONTROL"), ("acme-admin", "FULL_CONTROL")}
    admin.copy_object(Bucket=b, Key="copy-of-given", CopySource={"Bucket": b, "Key": "given"})
    admin.put_object_acl(Bucket=b, Key="given", ACL="bucket-owner-read")
    assert code_of(lambda: admin.get_object_acl(Bucket=b, Key="given")) == (403, "AccessDenied")
    assert admin.get_object(Bucket=b, Key="given")["Body"].read() == b"given"
    # acme's policy allows acme everything: that holds for acme's objects only.
    # Its Deny binds globex on its own object.
    arn = f"arn:aws:s3:::{b}/*"
    admin.put_bucket_policy(Bucket=b, Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::acme:root"}, "Action": "s3:*", "Resource": arn},
        {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": arn},
        {"Effect": "Deny", "Principal": {"AWS": "arn:aws:iam::globex:root"}, "Action": "s3:GetObject",
         "Resource": f"arn:aws:s3:::{b}/given"},
    ]}))  # fmt: skip
    assert refused(admin, "theirs") == denied
    assert code_of(lambda: s3("initech-admin").get_object(Bucket=b, Key="theirs")) == (403, "AccessDenied")
    assert s3("initech-admin").get_object(Bucket=b, Key="ours")["Body"].read() == b"acme's"
    assert globex.get_object(Bucket=b, Key="theirs")["Body"].read() == b"globex's"
    assert code_of(lambda: globex.get_object(Bucket=b, Key="given")) == (403, "AccessDenied")
    admin.delete_bucket_policy(Bucket=b)
    # Listed with its owner, and the bucket's owner may always delete it.
    listed = {o["Key"]: o["Owner"]["ID"] for o in admin.list_objects_v2(Bucket=b, FetchOwner=True)["Contents"]}
    assert listed["theirs"] == "globex-admin" and listed["ours"] == "acme-admin"
    # An ETag condition tells whether it matched, so it is asked as GetObject too (AWS).
    etag = globex.head_object(Bucket=b, Key="theirs")["ETag"]
    assert code_of(lambda: admin.delete_object(Bucket=b, Key="theirs", IfMatch=etag)) == (403, "AccessDenied")
    assert admin.delete_object(Bucket=b, Key="theirs")["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert code_of(lambda: admin.head_object(Bucket=b, Key="theirs")) == (404, "404")
    # acme's own objects are acme's, whoever of acme wrote them.
    rw.put_object(Bucket=b, Key="by-rw", Body=b"rw")
    assert admin.get_object_acl(Bucket=b, Key="by-rw")["Owner"]["ID"] == "acme-rw"
    assert admin.get_object(Bucket=b, Key="by-rw")["Body"].read() == b"rw"


def test_tags_attributes_and_holds_of_another_tenants_object_are_its_owners(
    tenancy: Tenancy, ids: dict[str, Identity], s3: Callable[[str], Any]
) -> None:
    """Tagging, GetObjectAttributes, retention and legal hold are covered by
    no ACL permission: on AWS the object's owner alone gives them (its
    object context), whatever its ACL grants the bucket's owner. So acme,
    whose ObjectWriter bucket globex writes into, is refused them on
    globex's objects, even with bucket-owner-full-control and over gRPC,
    and keeps them on its own; globex has them on its own objects without
    any grant from acme, except where acme's policy denies them, and not on
    acme's."""
    from lightningstor.client.errors import PermissionDeniedError

    admin, globex = s3("acme-admin"), s3("globex-admin")
    b = f"acl-{uuid.uuid4().hex[:12]}"
    admin.create_bucket(Bucket=b, ObjectLockEnabledForBucket=True)
    try:
        admin.put_bucket_ownership_controls(
            Bucket=b, OwnershipControls={"Rules": [{"ObjectOwnership": "ObjectWriter"}]}
        )
        admin.put_bucket_acl(Bucket=b, GrantWrite='id="globex-admin"', GrantFullControl='id="acme-admin"')
        globex.put_object(Bucket=b, Key="theirs", Body=b"globex's", Tagging="who=globex")
        globex.put_object(Bucket=b, Key="given", Body=b"given", Tagging="who=globex", ACL="bucket-owner-full-control")
        admin.put_object(Bucket=b, Key="ours", Body=b"acme's", Tagging="who=acme")

        def answers(client: Any, key: str) -> dict[str, Any]:
            def call(f: Callable[[], Any]) -> Any:
                try:
                    f()
                except ClientError as e:
                    return e.response["ResponseMetadata"]["HTTPStatusCode"], e.response["Error"]["Code"]
                return "ok"

            tagging = {"TagSet": [{"Key": "who", "Value": "changed"}]}
            return {
                "GetObjectTagging": call(lambda: client.get_object_tagging(Bucket=b, Key=key)),
                "PutObjectTagging": call(lambda: client.put_object_tagging(Bucket=b, Key=key, Tagging=tagging)),
                "DeleteObjectTagging": call(lambda: client.delete_object_tagging(Bucket=b, Key=key)),
                "GetObjectAttributes": call(lambda: client.get_object_attributes(
                    Bucket=b, Key=key, ObjectAttributes=["ETag", "ObjectSize"])),
                "PutObjectLegalHold": call(lambda: client.put_object_legal_hold(
                    Bucket=b, Key=key, LegalHold={"Status": "OFF"})),
                "GetObjectLegalHold": call(lambda: client.get_object_legal_hold(Bucket=b, Key=key)),
                "GetObjectRetention": call(lambda: client.get_object_retention(Bucket=b, Key=key)),
                "PutObjectRetention": call(lambda: client.put_object_retention(
                    Bucket=b, Key=key, Retention={"Mode": "GOVERNANCE", "RetainUntilDate": "2000-01-01T00:00:00Z"})),
            }  # fmt: skip

        denied = (403, "AccessDenied")
        everything_denied = dict.fromkeys(answers(admin, "no-such-key"), denied)
        # The bucket's owner: neither a private object of globex's, nor one
        # that grants it FULL_CONTROL (AWS: an ACL grants no tagging).
        assert answers(admin, "theirs") == everything_denied
        assert answers(admin, "given") == everything_denied
        assert globex.get_object_tagging(Bucket=b, Key="theirs")["TagSet"] == [{"Key": "who", "Value": "globex"}]
        client = ids["acme-admin"].grpc(tenancy.server.grpc_endpoint)
        try:
            with pytest.raises(PermissionDeniedError):
                client.get_object_tagging(b, "theirs")
            with pytest.raises(PermissionDeniedError):
                client.put_object_tagging(b, "given", {"who": "acme"})
            assert client.get_object_tagging(b, "ours") == {"who": "acme"}
        finally:
            client.close()
        # The owner: everything on its own objects (the retention in the past
        # is refused as on AWS, after the gate), nothing on acme's.
        own = answers(globex, "theirs")
        assert own == {**dict.fromkeys(own, "ok"), "GetObjectRetention": (404, "NoSuchObjectLockConfiguration"),
                       "PutObjectRetention": (400, "InvalidArgument")}, own  # fmt: skip
        assert answers(globex, "ours") == everything_denied
        # acme's own object stays acme's to tag.
        assert answers(admin, "ours")["PutObjectTagging"] == "ok"
        # acme's policy Deny binds globex on its own object.
        admin.put_bucket_policy(Bucket=b, Policy=json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Deny", "Principal": {"AWS": "arn:aws:iam::globex:root"}, "Action": "s3:PutObjectTagging",
             "Resource": f"arn:aws:s3:::{b}/*"}]}))  # fmt: skip
        assert answers(globex, "theirs")["PutObjectTagging"] == denied
        assert globex.get_object_tagging(Bucket=b, Key="theirs")["TagSet"] == []
        admin.delete_bucket_policy(Bucket=b)
    finally:
        _delete_all(admin, b)
