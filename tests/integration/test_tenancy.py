"""Multi-tenancy and access control through S3 (boto3) against ONE real server.

Tenants are provisioned with ``lightningstor-admin`` on the running server's
own data (tests/integration/tenants.py): two orgs (acme, globex), two
projects in acme (web, data), each with its own keys.  The tests pin:

* isolation for every operation family: another tenant's bucket answers
  NoSuchBucket and nothing of it changes;
* scoping: two orgs can both own ``backups``; a project sees its own and
  the org's buckets, never the other project's;
* one allow grant per SPEC §7.3 action lets a role-less principal do that
  and nothing else; one deny grant takes exactly that action from an admin;
* the owner rule, the built-in roles;
* expired, disabled keys and disabled principals are refused within
  ``[iam] cache_seconds``; grant changes arrive within it too;
* presigned URLs carry the signer's permissions.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from lightningstor.core import access
from tests.integration.tenants import SHORT, Identity, Tenancy, s3_clients, standard_specs

CACHE_SECONDS = 0.5


@pytest.fixture(scope="module")
def tenancy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tenancy]:
    t = Tenancy.start(tmp_path_factory.mktemp("tenancy"), cache_seconds=CACHE_SECONDS)
    yield t
    t.stop()


@pytest.fixture(scope="module")
def ids(tenancy: Tenancy) -> dict[str, Identity]:
    return tenancy.provision(standard_specs())


@pytest.fixture(scope="module")
def s3(tenancy: Tenancy, ids: dict[str, Identity]) -> Callable[[str], Any]:
    """``s3(principal_id)``: that principal's boto3 client (cached)."""
    return s3_clients(tenancy, ids)


def code_of(call: Callable[[], Any]) -> str | None:
    """The S3 error code ``call`` fails with (HEAD answers carry none: the
    status then), or None if it succeeds."""
    try:
        call()
    except ClientError as e:
        return str(e.response["Error"].get("Code") or e.response["ResponseMetadata"]["HTTPStatusCode"])
    return None


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def world(s3: Callable[[str], Any]) -> dict[str, str]:
    """Buckets of each tenant, made through S3 by their admins."""
    s3("acme-admin").create_bucket(Bucket="backups")
    s3("acme-admin").put_object(Bucket="backups", Key="a.txt", Body=b"acme backup")
    s3("globex-admin").create_bucket(Bucket="backups")
    s3("globex-admin").put_object(Bucket="backups", Key="a.txt", Body=b"globex backup")
    s3("acme-admin").create_bucket(Bucket="acme-shared")
    s3("acme-admin").put_object(Bucket="acme-shared", Key="shared.txt", Body=b"for every acme project")
    s3("web-admin").create_bucket(Bucket="web-site")
    s3("web-admin").put_object(Bucket="web-site", Key="index.html", Body=b"<h1>web</h1>")
    s3("data-admin").create_bucket(Bucket="data-lake")
    s3("data-admin").put_object(Bucket="data-lake", Key="rows.csv", Body=b"1,2,3")
    s3("acme-admin").create_bucket(Bucket="lab")
    s3("acme-admin").put_object(Bucket="lab", Key="fixed.txt", Body=b"fixed")
    return {}


# -- scoping -------------------------------------------------------------------------------


def test_two_orgs_own_a_bucket_of_the_same_name(s3: Callable[[str], Any], world: dict[str, str]) -> None:
    """``backups`` exists in acme and in globex; each org reads its own, and
    a write by one never shows in the other's."""
    acme, globex = s3("acme-admin"), s3("globex-admin")
    assert acme.get_object(Bucket="backups", Key="a.txt")["Body"].read() == b"acme backup"
    assert globex.get_object(Bucket="backups", Key="a.txt")["Body"].read() == b"globex backup"
    globex.put_object(Bucket="backups", Key="only-globex.txt", Body=b"g")
    assert [o["Key"] for o in acme.list_objects_v2(Bucket="backups")["Contents"]] == ["a.txt"]
    assert code_of(lambda: acme.head_object(Bucket="backups", Key="only-globex.txt")) == "404"
    # Creating it again is "already owned" only inside one's own scope.
    assert code_of(lambda: acme.create_bucket(Bucket="backups")) == "BucketAlreadyOwnedByYou"
    assert "backups" in [b["Name"] for b in s3("globex-rw").list_buckets()["Buckets"]]


def test_projects_see_their_own_and_the_orgs_buckets(s3: Callable[[str], Any], world: dict[str, str]) -> None:
    """A project lists and resolves its buckets and the org's shared ones,
    never the other project's or another org's."""
    web = {b["Name"] for b in s3("web-rw").list_buckets()["Buckets"]}
    data = {b["Name"] for b in s3("data-rw").list_buckets()["Buckets"]}
    globex = {b["Name"] for b in s3("globex-rw").list_buckets()["Buckets"]}
    assert {"web-site", "acme-shared", "backups", "lab"} <= web and "data-lake" not in web
    assert {"data-lake", "acme-shared", "backups"} <= data and "web-site" not in data
    assert not ({"web-site", "data-lake", "acme-shared", "lab"} & globex)
    assert s3("web-rw").get_object(Bucket="acme-shared", Key="shared.txt")["Body"].read() == b"for every acme project"
    assert s3("data-rw").get_object(Bucket="acme-shared", Key="shared.txt")["Body"].read() == b"for every acme project"
    assert code_of(lambda: s3("data-rw").get_object(Bucket="web-site", Key="index.html")) == "NoSuchBucket"
    assert code_of(lambda: s3("web-admin").get_object(Bucket="data-lake", Key="rows.csv")) == "NoSuchBucket"


def test_object_acl_names_the_writer_not_the_reader(s3: Callable[[str], Any], world: dict[str, str]) -> None:
    """GetObjectAcl answers with the object's owner, as the listing does,
    whoever of the tenant reads it."""
    reader = s3("web-rw")
    acl = reader.get_object_acl(Bucket="acme-shared", Key="shared.txt")
    assert acl["Owner"]["ID"] == "acme-admin"
    assert [g["Grantee"]["ID"] for g in acl["Grants"]] == ["acme-admin"]
    listed = reader.list_objects_v2(Bucket="acme-shared", FetchOwner=True)["Contents"]
    assert [o["Owner"]["ID"] for o in listed if o["Key"] == "shared.txt"] == ["acme-admin"]
    assert s3("acme-admin").get_object_acl(Bucket="acme-shared", Key="shared.txt")["Owner"]["ID"] == "acme-admin"


# -- isolation: every operation family -----------------------------------------------------


def _victim_state(c: Any, bucket: str, upload: tuple[str, str]) -> dict[str, Any]:
    """Everything an attacker could have changed in ``bucket``."""
    key, upload_id = upload
    return {
        "versions": [(v["Key"], v["VersionId"], v["ETag"]) for v in
                     c.list_object_versions(Bucket=bucket).get("Versions", [])],
        "markers": c.list_object_versions(Bucket=bucket).get("DeleteMarkers", []),
        "uploads": [(u["Key"], u["UploadId"]) for u in c.list_multipart_uploads(Bucket=bucket).get("Uploads", [])],
        "parts": [(p["PartNumber"], p["ETag"]) for p in
                  c.list_parts(Bucket=bucket, Key=key, UploadId=upload_id).get("Parts", [])],
        "bucket_tags": c.get_bucket_tagging(Bucket=bucket)["TagSet"],
        "object_tags": c.get_object_tagging(Bucket=bucket, Key="secret.txt")["TagSet"],
        "versioning": c.get_bucket_versioning(Bucket=bucket).get("Status"),
        "body": c.get_object(Bucket=bucket, Key="secret.txt")["Body"].read(),
        "exists": [b["Name"] for b in c.list_buckets()["Buckets"]].count(bucket),
    }


def _attacks(c: Any, bucket: str, upload: tuple[str, str], own: str, own_upload: tuple[str, str]) -> dict[str, Callable[[], Any]]:
    """One call per S3 operation, aimed at another tenant's ``bucket``
    (``own`` is a bucket of the attacker, for copies in both directions)."""
    key, upload_id = upload
    own_key, own_upload_id = own_upload
    src = {"Bucket": bucket, "Key": "secret.txt"}
    return {
        "HeadBucket": lambda: c.head_bucket(Bucket=bucket),
        "GetBucketLocation": lambda: c.get_bucket_location(Bucket=bucket),
        "DeleteBucket": lambda: c.delete_bucket(Bucket=bucket),
        "GetBucketVersioning": lambda: c.get_bucket_versioning(Bucket=bucket),
        "PutBucketVersioning": lambda: c.put_bucket_versioning(
            Bucket=bucket, VersioningConfiguration={"Status": "Suspended"}),
        "GetBucketTagging": lambda: c.get_bucket_tagging(Bucket=bucket),
        "PutBucketTagging": lambda: c.put_bucket_tagging(
            Bucket=bucket, Tagging={"TagSet": [{"Key": "owned", "Value": "by-attacker"}]}),
        "DeleteBucketTagging": lambda: c.delete_bucket_tagging(Bucket=bucket),
        "PutObject": lambda: c.put_object(Bucket=bucket, Key="secret.txt", Body=b"overwritten"),
        "PutObjectNew": lambda: c.put_object(Bucket=bucket, Key="planted.txt", Body=b"planted"),
        "GetObject": lambda: c.get_object(Bucket=bucket, Key="secret.txt"),
        "HeadObject": lambda: c.head_object(Bucket=bucket, Key="secret.txt"),
        "DeleteObject": lambda: c.delete_object(Bucket=bucket, Key="secret.txt"),
        "CopyObjectInto": lambda: c.copy_object(
            Bucket=bucket, Key="secret.txt", CopySource={"Bucket": own, "Key": "mine.txt"}),
        "CopyObjectOut": lambda: c.copy_object(Bucket=own, Key="stolen.txt", CopySource=src),
        "GetObjectTagging": lambda: c.get_object_tagging(Bucket=bucket, Key="secret.txt"),
        "GetObjectAttributes": lambda: c.get_object_attributes(
            Bucket=bucket, Key="secret.txt", ObjectAttributes=["ETag", "ObjectSize"]),
        "GetBucketAcl": lambda: c.get_bucket_acl(Bucket=bucket),
        "PutBucketAcl": lambda: c.put_bucket_acl(Bucket=bucket, ACL="private"),
        "GetObjectAcl": lambda: c.get_object_acl(Bucket=bucket, Key="secret.txt"),
        "PutObjectAcl": lambda: c.put_object_acl(Bucket=bucket, Key="secret.txt", ACL="private"),
        "PutObjectTagging": lambda: c.put_object_tagging(
            Bucket=bucket, Key="secret.txt", Tagging={"TagSet": [{"Key": "x", "Value": "y"}]}),
        "DeleteObjectTagging": lambda: c.delete_object_tagging(Bucket=bucket, Key="secret.txt"),
        "ListObjects": lambda: c.list_objects(Bucket=bucket),
        "ListObjectsV2": lambda: c.list_objects_v2(Bucket=bucket),
        "ListObjectVersions": lambda: c.list_object_versions(Bucket=bucket),
        "DeleteObjects": lambda: c.delete_objects(
            Bucket=bucket, Delete={"Objects": [{"Key": "secret.txt"}], "Quiet": False}),
        "CreateMultipartUpload": lambda: c.create_multipart_upload(Bucket=bucket, Key="mp.bin"),
        "UploadPart": lambda: c.upload_part(
            Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=2, Body=b"p" * 100),
        "UploadPartCopyInto": lambda: c.upload_part_copy(
            Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=3,
            CopySource={"Bucket": own, "Key": "mine.txt"}),
        "UploadPartCopyOut": lambda: c.upload_part_copy(
            Bucket=own, Key=own_key, UploadId=own_upload_id, PartNumber=1, CopySource=src),
        "ListMultipartUploads": lambda: c.list_multipart_uploads(Bucket=bucket),
        "ListParts": lambda: c.list_parts(Bucket=bucket, Key=key, UploadId=upload_id),
        "CompleteMultipartUpload": lambda: c.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"00"'}]}),
        "AbortMultipartUpload": lambda: c.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id),
    }


def _presigned(c: Any, method: str, bucket: str, key: str) -> str:
    op = {"GET": "get_object", "PUT": "put_object"}[method]
    url: str = c.generate_presigned_url(op, Params={"Bucket": bucket, "Key": key}, ExpiresIn=300)
    return url


def http(method: str, url: str, body: bytes | None = None) -> tuple[int, bytes]:
    """A plain HTTP request (presigned URLs need no client)."""
    req = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


# Who creates buckets for a principal that may not (its scope's admin).
ADMIN_OF = {"globex-rw": "globex-admin", "data-rw": "data-admin", "web-rw": "web-admin"}


@pytest.mark.parametrize(
    ("attacker", "victim"),
    [("globex-admin", "acme-admin"), ("globex-rw", "acme-admin"), ("web-admin", "data-admin"),
     ("data-rw", "web-admin"), ("acme-admin", "globex-admin")],
)
def test_another_tenants_bucket_is_invisible_to_every_operation(
    s3: Callable[[str], Any], world: dict[str, str], attacker: str, victim: str
) -> None:
    """Every S3 operation on a bucket of another tenant (another org, or
    another project of the same org) answers NoSuchBucket (a HEAD: 404),
    presigned GET/PUT too, and the bucket's objects, versions, tags,
    uploads and parts are exactly as before; copies in either direction
    fail the same way."""
    v, a = s3(victim), s3(attacker)
    bucket, own = _name("victim"), _name("own")
    v.create_bucket(Bucket=bucket)
    v.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    v.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": "team", "Value": "victim"}]})
    v.put_object(Bucket=bucket, Key="secret.txt", Body=b"top secret", Tagging="class=secret")
    mp = v.create_multipart_upload(Bucket=bucket, Key="big.bin")
    upload = ("big.bin", mp["UploadId"])
    v.upload_part(Bucket=bucket, Key="big.bin", UploadId=mp["UploadId"], PartNumber=1, Body=b"v" * 1000)
    s3(ADMIN_OF.get(attacker, attacker)).create_bucket(Bucket=own)
    a.put_object(Bucket=own, Key="mine.txt", Body=b"attacker data")
    own_mp = a.create_multipart_upload(Bucket=own, Key="loot.bin")
    before = _victim_state(v, bucket, upload)

    wrong: list[str] = []
    for op, call in _attacks(a, bucket, upload, own, ("loot.bin", own_mp["UploadId"])).items():
        code = code_of(call)
        expected = "404" if op in ("HeadBucket", "HeadObject") else "NoSuchBucket"
        if code != expected:
            wrong.append(f"{op}: {code}")
    status, body = http("GET", _presigned(a, "GET", bucket, "secret.txt"))
    if status != 404 or b"NoSuchBucket" not in body:
        wrong.append(f"presigned GET: {status} {body[:80]!r}")
    status, body = http("PUT", _presigned(a, "PUT", bucket, "secret.txt"), b"via presigned url")
    if status != 404 or b"NoSuchBucket" not in body:
        wrong.append(f"presigned PUT: {status} {body[:80]!r}")
    assert bucket not in [b["Name"] for b in a.list_buckets()["Buckets"]]
    assert wrong == []
    assert _victim_state(v, bucket, upload) == before
    assert [o["Key"] for o in a.list_objects_v2(Bucket=own)["Contents"]] == ["mine.txt"]
    assert a.list_parts(Bucket=own, Key="loot.bin", UploadId=own_mp["UploadId"]).get("Parts", []) == []


def test_same_name_in_another_scope_is_a_different_bucket(s3: Callable[[str], Any], world: dict[str, str]) -> None:
    """Creating a bucket named like another tenant's creates the caller's
    own; deleting it leaves the other tenant's untouched."""
    name = _name("twin")
    s3("acme-admin").create_bucket(Bucket=name)
    s3("acme-admin").put_object(Bucket=name, Key="k", Body=b"acme")
    s3("globex-admin").create_bucket(Bucket=name)
    assert s3("globex-admin").list_objects_v2(Bucket=name).get("KeyCount") == 0
    s3("globex-admin").delete_bucket(Bucket=name)
    assert s3("acme-admin").get_object(Bucket=name, Key="k")["Body"].read() == b"acme"


def test_a_project_bucket_hides_the_orgs_bucket_of_its_name(s3: Callable[[str], Any], world: dict[str, str]) -> None:
    """A project may name a bucket like one of its org's; the project's one
    then answers the name, and ListBuckets shows the name once (it used to
    list it twice, and paging lost one of the two)."""
    name = _name("shadow")
    s3("acme-admin").create_bucket(Bucket=name)
    s3("acme-admin").put_object(Bucket=name, Key="org.txt", Body=b"org")
    s3("web-admin").create_bucket(Bucket=name)
    s3("web-admin").put_object(Bucket=name, Key="web.txt", Body=b"web")
    listed = [b["Name"] for b in s3("web-admin").list_buckets()["Buckets"]]
    assert listed.count(name) == 1 and listed == sorted(listed)
    paged, token = [], None
    while True:
        page = s3("web-admin").list_buckets(MaxBuckets=1, **({"ContinuationToken": token} if token else {}))
        paged += [b["Name"] for b in page["Buckets"]]
        token = page.get("ContinuationToken")
        if not token:
            break
    assert paged == listed
    assert [o["Key"] for o in s3("web-admin").list_objects_v2(Bucket=name)["Contents"]] == ["web.txt"]
    assert [b["Name"] for b in s3("acme-admin").list_buckets()["Buckets"]].count(name) == 1


# -- roles and the owner rule --------------------------------------------------------------


def test_project_roles(s3: Callable[[str], Any], world: dict[str, str]) -> None:
    """read-only reads its project's and the org's buckets and writes
    nothing; read-write writes objects but does not create or delete
    buckets; admin does both, in its scope only."""
    ro, rw, admin = s3("web-ro"), s3("web-rw"), s3("web-admin")
    assert ro.get_object(Bucket="web-site", Key="index.html")["Body"].read() == b"<h1>web</h1>"
    assert ro.list_objects_v2(Bucket="acme-shared")["KeyCount"] == 1
    assert code_of(lambda: ro.put_object(Bucket="web-site", Key="x", Body=b"x")) == "AccessDenied"
    assert code_of(lambda: ro.delete_object(Bucket="web-site", Key="index.html")) == "AccessDenied"
    assert code_of(lambda: ro.create_multipart_upload(Bucket="web-site", Key="x")) == "AccessDenied"
    assert code_of(lambda: ro.create_bucket(Bucket=_name("ro"))) == "AccessDenied"
    key = _name("rw")
    rw.put_object(Bucket="web-site", Key=key, Body=b"rw")
    rw.put_object(Bucket="acme-shared", Key=key, Body=b"rw")
    rw.delete_object(Bucket="acme-shared", Key=key)
    assert code_of(lambda: rw.create_bucket(Bucket=_name("rw"))) == "AccessDenied"
    assert code_of(lambda: rw.delete_bucket(Bucket="web-site")) == "AccessDenied"
    name = _name("web")
    admin.create_bucket(Bucket=name)
    assert name not in [b["Name"] for b in s3("data-rw").list_buckets()["Buckets"]]
    assert name in [b["Name"] for b in ro.list_buckets()["Buckets"]]
    admin.delete_bucket(Bucket=name)


def test_project_admin_does_not_administer_the_orgs_shared_buckets(
    s3: Callable[[str], Any], world: dict[str, str]
) -> None:
    """A project admin works with the objects of the org's shared buckets but
    cannot reconfigure or delete those buckets: they belong to the org."""
    admin = s3("web-admin")
    key = _name("shared")
    admin.put_object(Bucket="acme-shared", Key=key, Body=b"from web")
    admin.delete_object(Bucket="acme-shared", Key=key)
    before = s3("acme-admin").get_bucket_versioning(Bucket="acme-shared").get("Status")
    assert code_of(lambda: admin.put_bucket_versioning(
        Bucket="acme-shared", VersioningConfiguration={"Status": "Enabled"})) == "AccessDenied"
    assert code_of(lambda: admin.put_bucket_tagging(
        Bucket="acme-shared", Tagging={"TagSet": [{"Key": "k", "Value": "v"}]})) == "AccessDenied"
    assert code_of(lambda: admin.delete_bucket(Bucket="acme-shared")) == "AccessDenied"
    assert s3("acme-admin").get_bucket_versioning(Bucket="acme-shared").get("Status") == before
    assert code_of(lambda: s3("acme-admin").get_bucket_tagging(Bucket="acme-shared")) == "NoSuchTagSet"


def test_owner_rule(tenancy: Tenancy, s3: Callable[[str], Any], world: dict[str, str]) -> None:
    """A principal whose only right is buckets:create fully controls the
    buckets it creates, and nothing else; a bucket the admin CLI creates
    with --owner belongs to that owner the same way."""
    creator = s3("acme-creator")
    mine = _name("mine")
    creator.create_bucket(Bucket=mine)
    creator.put_object(Bucket=mine, Key="k", Body=b"owned")
    assert creator.get_object(Bucket=mine, Key="k")["Body"].read() == b"owned"
    assert [o["Key"] for o in creator.list_objects_v2(Bucket=mine)["Contents"]] == ["k"]
    assert code_of(lambda: creator.get_object(Bucket="lab", Key="fixed.txt")) == "AccessDenied"
    assert code_of(lambda: creator.put_object(Bucket="lab", Key="k", Body=b"x")) == "AccessDenied"
    assert code_of(lambda: s3("acme-nobody").get_object(Bucket=mine, Key="k")) == "AccessDenied"
    creator.delete_object(Bucket=mine, Key="k")
    creator.delete_bucket(Bucket=mine)

    given = _name("given")
    # The console script itself, as an operator runs it beside the server.
    tenancy.admin("bucket", "create", given, "--org", "acme", "--project", "web", "--owner", "web-ro")
    ro = s3("web-ro")
    ro.put_object(Bucket=given, Key="mine", Body=b"read-only, but the owner")
    assert code_of(lambda: ro.put_object(Bucket="web-site", Key="x", Body=b"x")) == "AccessDenied"
    assert code_of(lambda: s3("data-rw").head_bucket(Bucket=given)) == "404"
    listed = tenancy.cli("bucket", "list", "--org", "acme", "--project", "web")[1]
    assert given in listed and "web-ro" in listed and "data-lake" not in listed


# -- one grant, one action -----------------------------------------------------------------


class Lab:
    """Fresh resources for each probe, prepared by the acme admin, so a
    probe's success or failure is the only thing that differs."""

    def __init__(self, admin: Any) -> None:
        self.admin = admin

    def object(self) -> str:
        key = _name("obj")
        self.admin.put_object(Bucket="lab", Key=key, Body=b"lab object")
        return key

    def upload(self, with_part: bool = False) -> tuple[str, str, list[dict[str, Any]]]:
        key = _name("mp")
        upload_id = self.admin.create_multipart_upload(Bucket="lab", Key=key)["UploadId"]
        parts = []
        if with_part:
            etag = self.admin.upload_part(Bucket="lab", Key=key, UploadId=upload_id, PartNumber=1,
                                          Body=b"part")["ETag"]
            parts.append({"PartNumber": 1, "ETag": etag})
        return key, upload_id, parts

    def uploads(self) -> set[str]:
        return {u["UploadId"] for u in self.admin.list_multipart_uploads(Bucket="lab").get("Uploads", [])}

    def exists(self, key: str) -> bool:
        return code_of(lambda: self.admin.head_object(Bucket="lab", Key=key)) is None


def probe(action: str, c: Any, lab: Lab) -> bool:
    """Try the S3 operation that needs ``action``: True if it was done (and
    had its effect), False if refused with AccessDenied and had none."""
    if action == access.BUCKETS_CREATE:
        name = _name("mk")
        code = code_of(lambda: c.create_bucket(Bucket=name))
        created = code_of(lambda: lab.admin.head_bucket(Bucket=name)) is None
        if created:
            lab.admin.delete_bucket(Bucket=name)
        return _outcome(code, created)
    if action == access.BUCKETS_DELETE:
        name = _name("rm")
        lab.admin.create_bucket(Bucket=name)
        code = code_of(lambda: c.delete_bucket(Bucket=name))
        gone = code_of(lambda: lab.admin.head_bucket(Bucket=name)) == "404"
        return _outcome(code, gone)
    if action == access.BUCKETS_GET:
        return _outcome(code_of(lambda: c.head_bucket(Bucket="lab")), None)
    if action == access.BUCKETS_LIST:
        return _outcome(code_of(lambda: c.list_buckets()), None)
    if action == access.OBJECTS_PUT:
        key = _name("put")
        code = code_of(lambda: c.put_object(Bucket="lab", Key=key, Body=b"probe"))
        return _outcome(code, lab.exists(key))
    if action == access.OBJECTS_GET:
        return _outcome(code_of(lambda: c.get_object(Bucket="lab", Key="fixed.txt")["Body"].read()), None)
    if action == access.OBJECTS_LIST:
        return _outcome(code_of(lambda: c.list_objects_v2(Bucket="lab")), None)
    if action == access.OBJECTS_DELETE:
        key = lab.object()
        code = code_of(lambda: c.delete_object(Bucket="lab", Key=key))
        return _outcome(code, not lab.exists(key))
    if action == access.OBJECTS_COPY:
        key = _name("cp")
        code = code_of(lambda: c.copy_object(Bucket="lab", Key=key,
                                             CopySource={"Bucket": "lab", "Key": "fixed.txt"}))
        return _outcome(code, lab.exists(key))
    if action == access.UPLOADS_CREATE:
        key = _name("mp")
        before = lab.uploads()
        code = code_of(lambda: c.create_multipart_upload(Bucket="lab", Key=key))
        new = lab.uploads() - before
        for upload_id in new:
            lab.admin.abort_multipart_upload(Bucket="lab", Key=key, UploadId=upload_id)
        return _outcome(code, bool(new))
    if action == access.UPLOADS_COMPLETE:
        key, upload_id, parts = lab.upload(with_part=True)
        code = code_of(lambda: c.complete_multipart_upload(
            Bucket="lab", Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}))
        return _outcome(code, lab.exists(key))
    if action == access.UPLOADS_ABORT:
        key, upload_id, _ = lab.upload()
        code = code_of(lambda: c.abort_multipart_upload(Bucket="lab", Key=key, UploadId=upload_id))
        return _outcome(code, upload_id not in lab.uploads())
    raise AssertionError(action)


def _outcome(code: str | None, effect: bool | None) -> bool:
    """Done (no error, and the change happened) or refused (AccessDenied;
    a HEAD: 403; and the change did not happen).  ``effect`` is None for
    reads.  Any other answer fails the test."""
    if code is None:
        assert effect in (True, None), "the operation succeeded but had no effect"
        return True
    assert code in ("AccessDenied", "403"), f"expected AccessDenied, got {code}"
    assert effect in (False, None), "the operation was refused but its change happened"
    return False


def _allowed(c: Any, lab: Lab) -> set[str]:
    return {action for action in access.ACTIONS if probe(action, c, lab)}


@pytest.mark.parametrize("action", access.ACTIONS, ids=lambda a: SHORT[a])
def test_one_allow_grant_gives_exactly_its_action(
    s3: Callable[[str], Any], world: dict[str, str], action: str
) -> None:
    """A principal with no role and one allow grant can do that action and
    no other (CopyObject also needs objects:get on the source)."""
    expected = {action} - {access.OBJECTS_COPY}
    assert _allowed(s3(f"only-{SHORT[action]}"), Lab(s3("acme-admin"))) == expected


def test_copy_needs_copy_and_get(s3: Callable[[str], Any], world: dict[str, str]) -> None:
    """objects:copy on the destination plus objects:get on the source: copy works."""
    assert _allowed(s3("copy-and-get"), Lab(s3("acme-admin"))) == {access.OBJECTS_COPY, access.OBJECTS_GET}


@pytest.mark.parametrize("action", access.ACTIONS, ids=lambda a: SHORT[a])
def test_a_deny_grant_beats_the_admin_role(s3: Callable[[str], Any], world: dict[str, str], action: str) -> None:
    """An org admin with one deny grant can do everything but that action
    (denying objects:get also stops copies, which read their source)."""
    expected = set(access.ACTIONS) - {action}
    if action == access.OBJECTS_GET:
        expected.discard(access.OBJECTS_COPY)
    assert _allowed(s3(f"deny-{SHORT[action]}"), Lab(s3("acme-admin"))) == expected


def test_no_role_no_grant_can_do_nothing(s3: Callable[[str], Any], world: dict[str, str]) -> None:
    assert _allowed(s3("acme-nobody"), Lab(s3("acme-admin"))) == set()


def _eventually(check: Callable[[], bool], within: float) -> float:
    """Seconds until ``check()`` held; AssertionError after ``within``."""
    start = time.monotonic()
    while True:
        if check():
            return time.monotonic() - start
        if time.monotonic() - start > within:
            raise AssertionError(f"not within {within}s")
        time.sleep(0.1)


# Whatever the machine's load, a change must reach the server within the
# cache TTL plus request time; generous against slow CI, far below the
# default 5 s TTL this server does not use.
WITHIN = CACHE_SECONDS + 2.5


def test_grant_and_revoke_reach_the_running_server(
    tenancy: Tenancy, s3: Callable[[str], Any], world: dict[str, str]
) -> None:
    """grant add / grant revoke made with the admin CLI while the server
    runs take effect within cache_seconds."""
    c = s3("acme-nobody")
    assert code_of(lambda: c.get_object(Bucket="lab", Key="fixed.txt")) == "AccessDenied"
    grant_id = tenancy.cli("grant", "add", "--principal", "acme-nobody", "--action", access.OBJECTS_GET,
                           "--resource", "org/acme/bucket/lab/object/fixed.txt")[1].strip()
    _eventually(lambda: code_of(lambda: c.get_object(Bucket="lab", Key="fixed.txt")) is None, WITHIN)
    # Exactly that object: not its neighbours.
    lab_key = Lab(s3("acme-admin")).object()
    assert code_of(lambda: c.get_object(Bucket="lab", Key=lab_key)) == "AccessDenied"
    tenancy.cli("grant", "revoke", grant_id)
    _eventually(lambda: code_of(lambda: c.get_object(Bucket="lab", Key="fixed.txt")) == "AccessDenied", WITHIN)


# -- keys: expiry, disabling --------------------------------------------------------------


def test_expired_key_is_refused(tenancy: Tenancy, world: dict[str, str]) -> None:
    """A key made with --expires-in works until then and is refused
    (InvalidAccessKeyId, 403) afterwards; another key of the principal still works."""
    ident = tenancy.new_key("web-ro", expires_in=2)
    c = ident.s3(tenancy.server.endpoint)
    assert c.get_object(Bucket="web-site", Key="index.html")["Body"].read() == b"<h1>web</h1>"
    _eventually(lambda: code_of(lambda: c.list_buckets()) == "InvalidAccessKeyId", 10)
    assert code_of(lambda: c.get_object(Bucket="web-site", Key="index.html")) == "InvalidAccessKeyId"
    listed = tenancy.cli("key", "list", "web-ro", "--json")[1]
    assert '"status": "expired"' in listed


def test_disabled_key_and_principal_are_refused_within_cache_seconds(
    tenancy: Tenancy, ids: dict[str, Identity], world: dict[str, str]
) -> None:
    """key disable stops one key, principal disable every key of the
    principal, within cache_seconds; enable restores them."""
    first = ids["acme-temp"].s3(tenancy.server.endpoint)
    second_id = tenancy.new_key("acme-temp")
    second = second_id.s3(tenancy.server.endpoint)
    ok = lambda c: code_of(lambda: c.head_bucket(Bucket="lab")) is None  # noqa: E731
    refused = lambda c: code_of(lambda: c.list_buckets()) == "InvalidAccessKeyId"  # noqa: E731
    assert ok(first) and ok(second)

    tenancy.cli("key", "disable", second_id.access_key)
    _eventually(lambda: refused(second), WITHIN)
    assert ok(first)
    tenancy.cli("key", "enable", second_id.access_key)
    _eventually(lambda: ok(second), WITHIN)

    tenancy.cli("principal", "disable", "acme-temp")
    _eventually(lambda: refused(first) and refused(second), WITHIN)
    tenancy.cli("principal", "enable", "acme-temp")
    _eventually(lambda: ok(first) and ok(second), WITHIN)


def test_unknown_key_is_refused(tenancy: Tenancy) -> None:
    stranger = Identity("x", "acme", None, "LSNOSUCHACCESSKEY000", "x" * 40)
    assert code_of(lambda: stranger.s3(tenancy.server.endpoint).list_buckets()) == "InvalidAccessKeyId"


# -- presigned URLs ------------------------------------------------------------------------


def test_presigned_urls_carry_the_signers_permissions(s3: Callable[[str], Any], world: dict[str, str]) -> None:
    """A URL does what its signer may: read-only can GET, not PUT; read-write
    can PUT; a signer without access gets AccessDenied (same org) or
    NoSuchBucket (another tenant)."""
    ro, rw = s3("web-ro"), s3("web-rw")
    status, body = http("GET", _presigned(ro, "GET", "web-site", "index.html"))
    assert (status, body) == (200, b"<h1>web</h1>")
    key = _name("presigned")
    status, body = http("PUT", _presigned(ro, "PUT", "web-site", key), b"nope")
    assert status == 403 and b"AccessDenied" in body
    assert code_of(lambda: rw.head_object(Bucket="web-site", Key=key)) == "404"
    status, _ = http("PUT", _presigned(rw, "PUT", "web-site", key), b"yes")
    assert status == 200
    assert ro.get_object(Bucket="web-site", Key=key)["Body"].read() == b"yes"
    status, body = http("GET", _presigned(s3("acme-nobody"), "GET", "acme-shared", "shared.txt"))
    assert status == 403 and b"AccessDenied" in body
    status, body = http("GET", _presigned(s3("globex-rw"), "GET", "web-site", "index.html"))
    assert status == 404 and b"NoSuchBucket" in body
    status, body = http("GET", _presigned(s3("deny-objects-get"), "GET", "lab", "fixed.txt"))
    assert status == 403 and b"AccessDenied" in body


# -- ids that name another tenant's data ---------------------------------------------------


def test_upload_and_version_ids_do_not_cross_tenants(s3: Callable[[str], Any], world: dict[str, str]) -> None:
    """Both orgs own a bucket called ``backups``: acme's upload ids and
    version ids used on globex's ``backups`` (same name, same key) find
    nothing, and acme's upload keeps its parts."""
    acme, globex = s3("acme-admin"), s3("globex-admin")
    key = _name("shared-key")
    upload_id = acme.create_multipart_upload(Bucket="backups", Key=key)["UploadId"]
    etag = acme.upload_part(Bucket="backups", Key=key, UploadId=upload_id, PartNumber=1, Body=b"acme part")["ETag"]
    globex.put_object(Bucket="backups", Key=key, Body=b"globex object")
    wrong = []
    calls = {
        "UploadPart": lambda: globex.upload_part(Bucket="backups", Key=key, UploadId=upload_id, PartNumber=1,
                                                 Body=b"globex part"),
        "UploadPartCopy": lambda: globex.upload_part_copy(Bucket="backups", Key=key, UploadId=upload_id,
                                                          PartNumber=2, CopySource={"Bucket": "backups", "Key": key}),
        "ListParts": lambda: globex.list_parts(Bucket="backups", Key=key, UploadId=upload_id),
        "CompleteMultipartUpload": lambda: globex.complete_multipart_upload(
            Bucket="backups", Key=key, UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]}),
        "AbortMultipartUpload": lambda: globex.abort_multipart_upload(Bucket="backups", Key=key, UploadId=upload_id),
    }
    for op, call in calls.items():
        code = code_of(call)
        if code != "NoSuchUpload":
            wrong.append(f"{op}: {code}")
    assert wrong == []
    assert upload_id not in [u["UploadId"] for u in globex.list_multipart_uploads(Bucket="backups").get("Uploads", [])]
    parts = acme.list_parts(Bucket="backups", Key=key, UploadId=upload_id)["Parts"]
    assert [(p["PartNumber"], p["ETag"]) for p in parts] == [(1, etag)]
    assert code_of(lambda: acme.head_object(Bucket="backups", Key=key)) == "404"
    assert globex.get_object(Bucket="backups", Key=key)["Body"].read() == b"globex object"

    acme.put_bucket_versioning(Bucket="backups", VersioningConfiguration={"Status": "Enabled"})
    version = acme.put_object(Bucket="backups", Key="v.txt", Body=b"acme version")["VersionId"]
    globex.put_object(Bucket="backups", Key="v.txt", Body=b"globex")
    assert code_of(lambda: globex.get_object(Bucket="backups", Key="v.txt", VersionId=version)) in (
        "NoSuchVersion", "NoSuchKey", "InvalidArgument")
    assert code_of(lambda: globex.delete_object(Bucket="backups", Key="v.txt", VersionId=version)) in (
        None, "NoSuchVersion", "InvalidArgument")
    assert acme.get_object(Bucket="backups", Key="v.txt", VersionId=version)["Body"].read() == b"acme version"


def test_object_level_grants(tenancy: Tenancy, s3: Callable[[str], Any], world: dict[str, str]) -> None:
    """Grants on object paths bound each key: a principal allowed to put and
    delete under ``tmp/`` only uploads parts and deletes there, and
    DeleteObjects refuses the keys outside (per-key AccessDenied)."""
    admin = s3("acme-admin")
    pid = _name("tmp-writer")
    tenancy.batch([
        ["principal", "create", pid, "--org", "acme"],
        ["grant", "add", "--principal", pid, "--action", access.OBJECTS_PUT, access.OBJECTS_DELETE,
         access.UPLOADS_CREATE, access.UPLOADS_COMPLETE, "--resource", "org/acme/bucket/lab/object/tmp/*"],
    ])
    c = tenancy.new_key(pid).s3(tenancy.server.endpoint)
    c.put_object(Bucket="lab", Key="tmp/a", Body=b"a")
    assert code_of(lambda: c.put_object(Bucket="lab", Key="keep/a", Body=b"a")) == "AccessDenied"
    admin.put_object(Bucket="lab", Key="keep/b", Body=b"b")
    result = c.delete_objects(Bucket="lab", Delete={"Objects": [{"Key": "tmp/a"}, {"Key": "keep/b"}]})
    assert [d["Key"] for d in result.get("Deleted", [])] == ["tmp/a"]
    assert [(e["Key"], e["Code"]) for e in result.get("Errors", [])] == [("keep/b", "AccessDenied")]
    assert admin.get_object(Bucket="lab", Key="keep/b")["Body"].read() == b"b"
    upload = admin.create_multipart_upload(Bucket="lab", Key="keep/mp")["UploadId"]
    assert code_of(lambda: c.upload_part(Bucket="lab", Key="keep/mp", UploadId=upload, PartNumber=1,
                                         Body=b"x")) == "AccessDenied"
    assert admin.list_parts(Bucket="lab", Key="keep/mp", UploadId=upload).get("Parts", []) == []
    mine = c.create_multipart_upload(Bucket="lab", Key="tmp/mp")["UploadId"]
    etag = c.upload_part(Bucket="lab", Key="tmp/mp", UploadId=mine, PartNumber=1, Body=b"y")["ETag"]
    c.complete_multipart_upload(Bucket="lab", Key="tmp/mp", UploadId=mine,
                                MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    assert admin.get_object(Bucket="lab", Key="tmp/mp")["Body"].read() == b"y"
