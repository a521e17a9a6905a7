"""Multi-tenancy and access control through the gRPC API against ONE real
server: the checks of test_tenancy.py, with LightningStorClient and each
tenant's own key, for every RPC family (buckets, versioning, tagging,
objects, copies, listings, multipart uploads).

Tenants are provisioned with ``lightningstor-admin`` on the running
server's data (tests/integration/tenants.py).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from lightningstor.client import LightningStorClient
from lightningstor.client import errors as cerrors
from lightningstor.core import access
from tests.integration.tenants import SHORT, Identity, Tenancy, standard_specs

CACHE_SECONDS = 0.5
WITHIN = CACHE_SECONDS + 2.5  # a change reaches the server within the TTL (plus slack for a loaded machine)


@pytest.fixture(scope="module")
def tenancy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tenancy]:
    t = Tenancy.start(tmp_path_factory.mktemp("tenancy-grpc"), cache_seconds=CACHE_SECONDS)
    yield t
    t.stop()


@pytest.fixture(scope="module")
def ids(tenancy: Tenancy) -> dict[str, Identity]:
    return tenancy.provision(standard_specs())


@pytest.fixture(scope="module")
def grpc_of(tenancy: Tenancy, ids: dict[str, Identity]) -> Iterator[Callable[[str], LightningStorClient]]:
    """``grpc_of(principal_id)``: that principal's gRPC client (cached, closed at the end)."""
    clients: dict[str, LightningStorClient] = {}

    def get(principal_id: str) -> LightningStorClient:
        if principal_id not in clients:
            clients[principal_id] = ids[principal_id].grpc(tenancy.server.grpc_endpoint)
        return clients[principal_id]

    yield get
    for c in clients.values():
        c.close()


@pytest.fixture(scope="module")
def world(grpc_of: Callable[[str], LightningStorClient]) -> None:
    grpc_of("acme-admin").create_bucket("backups")
    grpc_of("acme-admin").put_object("backups", "a.txt", b"acme backup")
    grpc_of("globex-admin").create_bucket("backups")
    grpc_of("globex-admin").put_object("backups", "a.txt", b"globex backup")
    grpc_of("acme-admin").create_bucket("acme-shared")
    grpc_of("acme-admin").put_object("acme-shared", "shared.txt", b"shared")
    grpc_of("web-admin").create_bucket("web-site")
    grpc_of("web-admin").put_object("web-site", "index.html", b"<h1>web</h1>")
    grpc_of("data-admin").create_bucket("data-lake")
    grpc_of("acme-admin").create_bucket("lab")
    grpc_of("acme-admin").put_object("lab", "fixed.txt", b"fixed")


def code_of(call: Callable[[], Any]) -> str | None:
    """The S3 error code a call fails with, or None if it succeeds."""
    try:
        call()
    except cerrors.LightningStorError as e:
        return e.code
    return None


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _eventually(check: Callable[[], bool], within: float) -> None:
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > within:
            raise AssertionError(f"not within {within}s")
        time.sleep(0.1)


# -- scoping -------------------------------------------------------------------------------


def test_two_orgs_and_two_projects(grpc_of: Callable[[str], LightningStorClient], world: None) -> None:
    """Same-named org buckets hold each org's data; a project lists its own
    and the org's buckets, not the other project's."""
    assert grpc_of("acme-admin").get_object("backups", "a.txt").read() == b"acme backup"
    assert grpc_of("globex-rw").get_object("backups", "a.txt").read() == b"globex backup"
    web = {b.name for b in grpc_of("web-rw").list_buckets()}
    data = {b.name for b in grpc_of("data-rw").list_buckets()}
    globex = {b.name for b in grpc_of("globex-rw").list_buckets()}
    assert {"web-site", "acme-shared", "backups", "lab"} <= web and "data-lake" not in web
    assert {"data-lake", "acme-shared"} <= data and "web-site" not in data
    assert not ({"web-site", "data-lake", "acme-shared", "lab"} & globex)
    bucket = grpc_of("web-ro").head_bucket("web-site")
    assert (bucket.org_id, bucket.project_id) == ("acme", "web")
    assert grpc_of("data-rw").get_object("acme-shared", "shared.txt").read() == b"shared"


def test_create_bucket_cannot_name_another_scope(
    grpc_of: Callable[[str], LightningStorClient], world: None
) -> None:
    """CreateBucket's org_id/project_id may only name the caller's own
    scope: another org or another project is AccessDenied and nothing is made."""
    name = _name("elsewhere")
    assert code_of(lambda: grpc_of("globex-admin").create_bucket(name, org_id="acme")) == "AccessDenied"
    assert code_of(lambda: grpc_of("web-admin").create_bucket(name, org_id="acme", project_id="data")) \
        == "AccessDenied"
    assert code_of(lambda: grpc_of("acme-admin").head_bucket(name)) == "NoSuchBucket"
    assert code_of(lambda: grpc_of("data-admin").head_bucket(name)) == "NoSuchBucket"
    own = grpc_of("web-admin").create_bucket(name, org_id="acme", project_id="web")
    assert (own.org_id, own.project_id) == ("acme", "web")


# -- isolation: every RPC ------------------------------------------------------------------


def _state(c: LightningStorClient, bucket: str, upload: tuple[str, str]) -> dict[str, Any]:
    key, upload_id = upload
    return {
        "versions": [(v.key, v.version_id, v.etag, v.delete_marker, v.is_latest)
                     for v in c.iter_object_versions(bucket)],
        "uploads": [(u.key, u.upload_id) for u in c.list_multipart_uploads(bucket).uploads],
        "parts": [(p.part_number, p.etag) for p in c.list_parts(bucket, key, upload_id).parts],
        "bucket_tags": c.get_bucket_tagging(bucket),
        "object_tags": c.get_object_tagging(bucket, "secret.txt"),
        "versioning": c.get_bucket_versioning(bucket),
        "body": c.get_object(bucket, "secret.txt").read(),
    }


def _attacks(c: LightningStorClient, bucket: str, upload: tuple[str, str], own: str) -> dict[str, Callable[[], Any]]:
    key, upload_id = upload
    return {
        "HeadBucket": lambda: c.head_bucket(bucket),
        "DeleteBucket": lambda: c.delete_bucket(bucket),
        "GetBucketVersioning": lambda: c.get_bucket_versioning(bucket),
        "PutBucketVersioning": lambda: c.put_bucket_versioning(bucket, "Suspended"),
        "GetBucketTagging": lambda: c.get_bucket_tagging(bucket),
        "PutBucketTagging": lambda: c.put_bucket_tagging(bucket, {"owned": "by-attacker"}),
        "DeleteBucketTagging": lambda: c.delete_bucket_tagging(bucket),
        "PutObject": lambda: c.put_object(bucket, "secret.txt", b"overwritten"),
        "PutObjectNew": lambda: c.put_object(bucket, "planted.txt", b"planted"),
        "GetObject": lambda: c.get_object(bucket, "secret.txt").read(),
        "HeadObject": lambda: c.head_object(bucket, "secret.txt"),
        "DeleteObject": lambda: c.delete_object(bucket, "secret.txt"),
        "DeleteObjects": lambda: c.delete_objects(bucket, ["secret.txt"]),
        "CopyObjectInto": lambda: c.copy_object(own, "mine.txt", bucket, "secret.txt"),
        "CopyObjectOut": lambda: c.copy_object(bucket, "secret.txt", own, "stolen.txt"),
        "GetObjectTagging": lambda: c.get_object_tagging(bucket, "secret.txt"),
        "PutObjectTagging": lambda: c.put_object_tagging(bucket, "secret.txt", {"x": "y"}),
        "DeleteObjectTagging": lambda: c.delete_object_tagging(bucket, "secret.txt"),
        "ListObjects": lambda: c.list_objects(bucket),
        "ListObjectVersions": lambda: c.list_object_versions(bucket),
        "CreateMultipartUpload": lambda: c.create_multipart_upload(bucket, "mp.bin"),
        "UploadPart": lambda: c.upload_part(bucket, key, upload_id, 2, b"p" * 100),
        "CompleteMultipartUpload": lambda: c.complete_multipart_upload(bucket, key, upload_id, [(1, '"00"')]),
        "AbortMultipartUpload": lambda: c.abort_multipart_upload(bucket, key, upload_id),
        "ListMultipartUploads": lambda: c.list_multipart_uploads(bucket),
        "ListParts": lambda: c.list_parts(bucket, key, upload_id),
    }


ADMIN_OF = {"globex-rw": "globex-admin", "data-rw": "data-admin", "web-rw": "web-admin"}


@pytest.mark.parametrize(
    ("attacker", "victim"),
    [("globex-admin", "acme-admin"), ("globex-rw", "acme-admin"), ("web-admin", "data-admin"),
     ("data-rw", "web-admin"), ("acme-admin", "globex-admin")],
)
def test_another_tenants_bucket_is_invisible_to_every_rpc(
    grpc_of: Callable[[str], LightningStorClient], world: None, attacker: str, victim: str
) -> None:
    """Every RPC on another tenant's bucket answers NoSuchBucket, and its
    objects, versions, tags, uploads and parts stay exactly as they were."""
    v, a = grpc_of(victim), grpc_of(attacker)
    bucket, own = _name("victim"), _name("own")
    v.create_bucket(bucket, versioning=True, tags={"team": "victim"})
    v.put_object(bucket, "secret.txt", b"top secret", tags={"class": "secret"})
    mp = v.create_multipart_upload(bucket, "big.bin")
    v.upload_part(bucket, "big.bin", mp.upload_id, 1, b"v" * 1000)
    upload = ("big.bin", mp.upload_id)
    grpc_of(ADMIN_OF.get(attacker, attacker)).create_bucket(own)
    a.put_object(own, "mine.txt", b"attacker data")
    before = _state(v, bucket, upload)

    wrong = []
    for rpc, call in _attacks(a, bucket, upload, own).items():
        code = code_of(call)
        if code != "NoSuchBucket":
            wrong.append(f"{rpc}: {code}")
    assert wrong == []
    assert bucket not in {b.name for b in a.list_buckets()}
    assert _state(v, bucket, upload) == before
    assert [o.key for o in a.list_objects(own).objects] == ["mine.txt"]


# -- one grant, one action -----------------------------------------------------------------


class Lab:
    """Fresh resources per probe, made by the acme admin."""

    def __init__(self, admin: LightningStorClient) -> None:
        self.admin = admin

    def object(self) -> str:
        key = _name("obj")
        self.admin.put_object("lab", key, b"lab object")
        return key

    def exists(self, key: str) -> bool:
        return code_of(lambda: self.admin.head_object("lab", key)) is None

    def uploads(self) -> set[str]:
        return {u.upload_id for u in self.admin.list_multipart_uploads("lab").uploads}


def _outcome(code: str | None, effect: bool | None) -> bool:
    """Done (and the change happened) or refused with AccessDenied (and it
    did not); ``effect`` None for reads.  Anything else fails the test."""
    if code is None:
        assert effect in (True, None), "the call succeeded but had no effect"
        return True
    assert code == "AccessDenied", f"expected AccessDenied, got {code}"
    assert effect in (False, None), "the call was refused but its change happened"
    return False


def probe(action: str, c: LightningStorClient, lab: Lab) -> bool:
    """Try an RPC that needs ``action``; True if done, False if AccessDenied."""
    if action == access.BUCKETS_CREATE:
        name = _name("mk")
        code = code_of(lambda: c.create_bucket(name))
        made = code_of(lambda: lab.admin.head_bucket(name)) is None
        if made:
            lab.admin.delete_bucket(name)
        return _outcome(code, made)
    if action == access.BUCKETS_DELETE:
        name = _name("rm")
        lab.admin.create_bucket(name)
        code = code_of(lambda: c.delete_bucket(name))
        return _outcome(code, code_of(lambda: lab.admin.head_bucket(name)) == "NoSuchBucket")
    if action == access.BUCKETS_GET:
        return _outcome(code_of(lambda: c.head_bucket("lab")), None)
    if action == access.BUCKETS_LIST:
        return _outcome(code_of(lambda: c.list_buckets()), None)
    if action == access.OBJECTS_PUT:
        key = _name("put")
        return _outcome(code_of(lambda: c.put_object("lab", key, b"probe")), lab.exists(key))
    if action == access.OBJECTS_GET:
        return _outcome(code_of(lambda: c.get_object("lab", "fixed.txt").read()), None)
    if action == access.OBJECTS_LIST:
        return _outcome(code_of(lambda: c.list_objects("lab")), None)
    if action == access.OBJECTS_DELETE:
        key = lab.object()
        return _outcome(code_of(lambda: c.delete_object("lab", key)), not lab.exists(key))
    if action == access.OBJECTS_COPY:
        key = _name("cp")
        return _outcome(code_of(lambda: c.copy_object("lab", "fixed.txt", "lab", key)), lab.exists(key))
    if action == access.UPLOADS_CREATE:
        key = _name("mp")
        before = lab.uploads()
        code = code_of(lambda: c.create_multipart_upload("lab", key))
        new = lab.uploads() - before
        for upload_id in new:
            lab.admin.abort_multipart_upload("lab", key, upload_id)
        return _outcome(code, bool(new))
    if action == access.UPLOADS_COMPLETE:
        key = _name("mp")
        upload_id = lab.admin.create_multipart_upload("lab", key).upload_id
        part = lab.admin.upload_part("lab", key, upload_id, 1, b"part")
        code = code_of(lambda: c.complete_multipart_upload("lab", key, upload_id, [part]))
        return _outcome(code, lab.exists(key))
    if action == access.UPLOADS_ABORT:
        key = _name("mp")
        upload_id = lab.admin.create_multipart_upload("lab", key).upload_id
        code = code_of(lambda: c.abort_multipart_upload("lab", key, upload_id))
        return _outcome(code, upload_id not in lab.uploads())
    raise AssertionError(action)


def _allowed(c: LightningStorClient, lab: Lab) -> set[str]:
    return {action for action in access.ACTIONS if probe(action, c, lab)}


@pytest.mark.parametrize("action", access.ACTIONS, ids=lambda a: SHORT[a])
def test_one_allow_grant_gives_exactly_its_action(
    grpc_of: Callable[[str], LightningStorClient], world: None, action: str
) -> None:
    """No role, one allow grant: exactly that action (a copy also needs
    objects:get on its source)."""
    expected = {action} - {access.OBJECTS_COPY}
    assert _allowed(grpc_of(f"only-{SHORT[action]}"), Lab(grpc_of("acme-admin"))) == expected


def test_copy_needs_copy_and_get(grpc_of: Callable[[str], LightningStorClient], world: None) -> None:
    assert _allowed(grpc_of("copy-and-get"), Lab(grpc_of("acme-admin"))) == {access.OBJECTS_COPY, access.OBJECTS_GET}


@pytest.mark.parametrize("action", access.ACTIONS, ids=lambda a: SHORT[a])
def test_a_deny_grant_beats_the_admin_role(
    grpc_of: Callable[[str], LightningStorClient], world: None, action: str
) -> None:
    expected = set(access.ACTIONS) - {action}
    if action == access.OBJECTS_GET:
        expected.discard(access.OBJECTS_COPY)
    assert _allowed(grpc_of(f"deny-{SHORT[action]}"), Lab(grpc_of("acme-admin"))) == expected


def test_roles(grpc_of: Callable[[str], LightningStorClient], world: None) -> None:
    """read-only reads, read-write writes objects, neither manages buckets;
    a role-less principal can do nothing."""
    ro, rw = grpc_of("web-ro"), grpc_of("web-rw")
    assert ro.get_object("web-site", "index.html").read() == b"<h1>web</h1>"
    assert code_of(lambda: ro.put_object("web-site", "x", b"x")) == "AccessDenied"
    assert code_of(lambda: ro.put_bucket_tagging("web-site", {"a": "b"})) == "AccessDenied"
    rw.put_object("web-site", "rw.txt", b"rw")
    assert code_of(lambda: rw.put_bucket_versioning("web-site", "Enabled")) == "AccessDenied"
    assert code_of(lambda: rw.delete_bucket("web-site")) == "AccessDenied"
    assert _allowed(grpc_of("acme-nobody"), Lab(grpc_of("acme-admin"))) == set()


def test_owner_rule(grpc_of: Callable[[str], LightningStorClient], world: None) -> None:
    """Whoever may only create buckets controls the ones it creates, and
    nothing else."""
    creator = grpc_of("acme-creator")
    mine = _name("mine")
    creator.create_bucket(mine, tags={"owner": "creator"})
    creator.put_object(mine, "k", b"owned")
    assert creator.get_object(mine, "k").read() == b"owned"
    assert [o.key for o in creator.list_objects(mine).objects] == ["k"]
    creator.put_bucket_versioning(mine, "Enabled")
    assert code_of(lambda: creator.get_object("lab", "fixed.txt").read()) == "AccessDenied"
    assert code_of(lambda: grpc_of("acme-nobody").head_bucket(mine)) == "AccessDenied"
    for v in creator.iter_object_versions(mine):
        creator.delete_object(mine, v.key, version_id=v.version_id)
    creator.delete_bucket(mine)


# -- keys ----------------------------------------------------------------------------------


def test_expired_key_is_refused(tenancy: Tenancy, world: None) -> None:
    ident = tenancy.new_key("web-ro", expires_in=2)
    c = ident.grpc(tenancy.server.grpc_endpoint)
    try:
        assert c.get_object("web-site", "index.html").read() == b"<h1>web</h1>"
        _eventually(lambda: code_of(lambda: c.list_buckets()) == "InvalidAccessKeyId", 10)
    finally:
        c.close()


def test_disabled_key_and_principal_are_refused_within_cache_seconds(
    tenancy: Tenancy, grpc_of: Callable[[str], LightningStorClient], world: None
) -> None:
    first = grpc_of("acme-temp")
    second_id = tenancy.new_key("acme-temp")
    second = second_id.grpc(tenancy.server.grpc_endpoint)
    ok = lambda c: code_of(lambda: c.head_bucket("lab")) is None  # noqa: E731
    refused = lambda c: code_of(lambda: c.list_buckets()) == "InvalidAccessKeyId"  # noqa: E731
    try:
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
    finally:
        second.close()


def test_upload_and_version_ids_do_not_cross_tenants(
    grpc_of: Callable[[str], LightningStorClient], world: None
) -> None:
    """acme's upload and version ids, used on globex's same-named bucket and
    key, find nothing; acme's upload and version stay intact."""
    acme, globex = grpc_of("acme-admin"), grpc_of("globex-admin")
    key = _name("shared-key")
    upload_id = acme.create_multipart_upload("backups", key).upload_id
    part = acme.upload_part("backups", key, upload_id, 1, b"acme part")
    globex.put_object("backups", key, b"globex object")
    calls = {
        "UploadPart": lambda: globex.upload_part("backups", key, upload_id, 1, b"globex part"),
        "ListParts": lambda: globex.list_parts("backups", key, upload_id),
        "CompleteMultipartUpload": lambda: globex.complete_multipart_upload("backups", key, upload_id, [part]),
        "AbortMultipartUpload": lambda: globex.abort_multipart_upload("backups", key, upload_id),
    }
    wrong = [f"{rpc}: {code}" for rpc, call in calls.items() if (code := code_of(call)) != "NoSuchUpload"]
    assert wrong == []
    assert [(p.part_number, p.etag) for p in acme.list_parts("backups", key, upload_id).parts] == [
        (1, part.etag)]
    assert globex.get_object("backups", key).read() == b"globex object"
    acme.put_bucket_versioning("backups", "Enabled")
    version = acme.put_object("backups", "v.txt", b"acme version").version_id
    globex.put_object("backups", "v.txt", b"globex")
    assert code_of(lambda: globex.get_object("backups", "v.txt", version_id=version).read()) in (
        "NoSuchVersion", "NoSuchKey", "InvalidArgument")
    assert acme.get_object("backups", "v.txt", version_id=version).read() == b"acme version"


def test_a_missing_key_is_not_found_only_for_callers_who_may_list(
    grpc_of: Callable[[str], LightningStorClient], world: None
) -> None:
    """As over S3 (AWS's rule): a caller that may read objects but not
    list the bucket is refused for a key that does not exist, rather than
    told it does not, so it cannot probe which keys exist; a caller who may
    list hears NOT_FOUND."""
    reader = grpc_of(f"only-{SHORT[access.OBJECTS_GET]}")
    assert b"".join(reader.get_object("lab", "fixed.txt")) == b"fixed"
    for read in (
        lambda: reader.head_object("lab", "no-such-key"),
        lambda: b"".join(reader.get_object("lab", "no-such-key")),
        lambda: reader.get_object_tagging("lab", "no-such-key"),
    ):
        assert code_of(read) == "AccessDenied"
    assert code_of(lambda: grpc_of("acme-admin").head_object("lab", "no-such-key")) == "NoSuchKey"
