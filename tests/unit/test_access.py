"""Access control in the core: resource paths, the local authorizer, principals.

Runs on the real SQLite store (the make_core fixture); the authorizer is
asked the same questions the S3 and gRPC layers ask.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import fail, succeed

from lightningstor import errors
from lightningstor.authz.grants import GrantStore, matches, subject_of
from lightningstor.authz.local import LocalAuthorizer
from lightningstor.core import access
from lightningstor.core.access import AccessControl, Decision, ResourceRef, bucket_resource
from lightningstor.core.credentials import CredentialStore
from lightningstor.core.principals import PrincipalStore
from lightningstor.core.types import Principal

OWNER = Principal("owner", "acme", roles=("admin",))
RW = Principal("writer", "acme", roles=("read-write",))
RO = Principal("reader", "acme", roles=("read-only",))
NOBODY = Principal("nobody", "acme")
WEB = Principal("web-dev", "acme", project_id="web", roles=("read-write",))
WEB_ADMIN = Principal("web-admin", "acme", project_id="web", roles=("admin",))
OTHER_ORG_ADMIN = Principal("boss", "globex", roles=("admin",))


def test_resource_paths_follow_spec_7_3() -> None:
    assert ResourceRef("bucket", "acme", "web", "logs").path == "org/acme/project/web/bucket/logs"
    assert (
        ResourceRef("object", "acme", "web", "logs", "a/b.txt").path
        == "org/acme/project/web/bucket/logs/object/a/b.txt"
    )
    assert ResourceRef("bucket", "acme", None, "shared").path == "org/acme/bucket/shared"
    assert ResourceRef("scope", "acme", "web").path == "org/acme/project/web"


def test_every_operation_maps_to_a_spec_action() -> None:
    """Every operation maps to one of the SPEC's twelve actions, or to a
    finer one (objects:put-acl) that refines one of them."""
    assert set(access.OPERATION_ACTIONS.values()) == set(access.GRANTABLE_ACTIONS)
    assert len(access.ACTIONS) == 12
    assert set(access.GRANTABLE_ACTIONS) - set(access.ACTIONS) == set(access.REFINES)
    assert set(access.REFINES.values()) <= set(access.ACTIONS)
    assert access.action_of("PutObjectAcl", True) == access.OBJECTS_PUT_ACL
    # Unknown (unsupported) operations only need read access.
    assert access.action_of("GetBucketPolicy", False) == access.BUCKETS_GET
    assert access.action_of("RestoreObject", True) == access.OBJECTS_GET


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("org/acme/*", "org/acme/bucket/b/object/k", True),
        ("org/acme/bucket/b", "org/acme/bucket/b/object/k", False),
        ("org/acme/bucket/b/object/logs/*", "org/acme/bucket/b/object/logs/2026/x", True),
        ("org/acme/bucket/b/object/[a]", "org/acme/bucket/b/object/[a]", True),  # '[' is literal
        ("org/acme/bucket/b/object/?", "org/acme/bucket/b/object/x", False),  # '?' is literal
        ("lightningstor:objects:*", "lightningstor:objects:get", True),
        ("lightningstor:objects:*", "lightningstor:buckets:get", False),
        ("*", "anything\nat all", True),
    ],
)
def test_patterns(pattern: str, value: str, expected: bool) -> None:
    assert matches(pattern, value) is expected


@pytest.fixture
def authz(make_core: Any) -> tuple[LocalAuthorizer, GrantStore]:
    core = make_core()
    grants = GrantStore(core.store, time.time)
    return LocalAuthorizer(grants, time.time, cache_seconds=0), grants


def _bucket_ref(owner: str = "owner", project: str | None = None, key: str | None = None) -> ResourceRef:
    return ResourceRef("object" if key else "bucket", "acme", project, "data", key, owner)


@pytest_twisted.inlineCallbacks
def test_roles_allow_what_they_name_and_nothing_more(authz: Any) -> None:
    authorizer, _ = authz
    obj = _bucket_ref(key="k")
    bucket = _bucket_ref()
    cases = [
        (RW, access.OBJECTS_PUT, obj, True),
        (RW, access.UPLOADS_COMPLETE, obj, True),
        (RW, access.BUCKETS_DELETE, bucket, False),
        (RW, access.BUCKETS_CREATE, bucket, False),
        (RO, access.OBJECTS_GET, obj, True),
        (RO, access.OBJECTS_LIST, bucket, True),
        (RO, access.OBJECTS_PUT, obj, False),
        (RO, access.OBJECTS_DELETE, obj, False),
        (NOBODY, access.OBJECTS_GET, obj, False),
        (OWNER, access.BUCKETS_DELETE, bucket, True),
        # Roles hold only inside the holder's own org.
        (OTHER_ORG_ADMIN, access.OBJECTS_GET, obj, False),
        # A project principal's role covers its project and the org's shared
        # buckets, not another project's.
        (WEB, access.OBJECTS_PUT, _bucket_ref(project="web", key="k"), True),
        (WEB, access.OBJECTS_PUT, _bucket_ref(project=None, key="k"), True),
        (WEB, access.OBJECTS_PUT, _bucket_ref(project="data", key="k"), False),
        # A project admin administers its project's buckets, not the org's.
        (WEB_ADMIN, access.BUCKETS_DELETE, _bucket_ref(project="web"), True),
        (WEB_ADMIN, access.BUCKETS_CREATE, _bucket_ref(project="web"), True),
        (WEB_ADMIN, access.BUCKETS_DELETE, _bucket_ref(project=None), False),
        (WEB_ADMIN, access.BUCKETS_CREATE, _bucket_ref(project=None), False),
        (WEB_ADMIN, access.OBJECTS_DELETE, _bucket_ref(project=None, key="k"), True),
    ]
    for principal, action, resource, expected in cases:
        allowed = yield authorizer.authorize(principal, action, resource)
        assert allowed is expected, (principal.principal_id, action, resource.path)


@pytest_twisted.inlineCallbacks
def test_owner_rule_and_grants(authz: Any) -> None:
    authorizer, grants = authz
    mine = _bucket_ref(owner="nobody", key="k")
    allowed = yield authorizer.authorize(NOBODY, access.OBJECTS_DELETE, mine)
    assert allowed is True  # owners control their buckets, without any role
    theirs = _bucket_ref(owner="someone-else", key="logs/1")
    allowed = yield authorizer.authorize(NOBODY, access.OBJECTS_GET, theirs)
    assert allowed is False
    yield grants.add(subject_of(principal_id="nobody"), (access.OBJECTS_GET,), ("org/acme/bucket/data/object/logs/*",))
    allowed = yield authorizer.authorize(NOBODY, access.OBJECTS_GET, theirs)
    assert allowed is True
    other_key = _bucket_ref(owner="someone-else", key="secret")
    allowed = yield authorizer.authorize(NOBODY, access.OBJECTS_GET, other_key)
    assert allowed is False
    allowed = yield authorizer.authorize(NOBODY, access.OBJECTS_PUT, theirs)
    assert allowed is False  # the grant names get only


@pytest_twisted.inlineCallbacks
def test_deny_grant_beats_role_and_ownership(authz: Any) -> None:
    authorizer, grants = authz
    grant = yield grants.add(
        subject_of(role="read-write"), (access.OBJECTS_DELETE,), ("org/acme/*",), effect="deny"
    )
    allowed = yield authorizer.authorize(RW, access.OBJECTS_DELETE, _bucket_ref(owner="writer", key="k"))
    assert allowed is False
    allowed = yield authorizer.authorize(RW, access.OBJECTS_PUT, _bucket_ref(key="k"))
    assert allowed is True
    revoked = yield grants.revoke(grant.grant_id)
    assert revoked is True
    allowed = yield authorizer.authorize(RW, access.OBJECTS_DELETE, _bucket_ref(key="k"))
    assert allowed is True


@pytest_twisted.inlineCallbacks
def test_acl_writes_take_their_own_action(authz: Any) -> None:
    """objects:put-acl: admins and bucket owners have it; read-write (the
    right to write) does not; a grant names it, ``objects:*`` included; a
    deny of objects:put, made before the action existed, refuses it too."""
    authorizer, grants = authz
    obj = _bucket_ref(key="k")
    for principal, resource, expected in [
        (OWNER, obj, True),
        (RW, obj, False),
        (RO, obj, False),
        (NOBODY, _bucket_ref(owner="nobody", key="k"), True),  # the owner rule
        (WEB_ADMIN, _bucket_ref(project="web", key="k"), True),
    ]:
        allowed = yield authorizer.authorize(principal, access.OBJECTS_PUT_ACL, resource)
        assert allowed is expected, principal.principal_id
    assert (yield authorizer.authorize(RW, access.OBJECTS_PUT, obj)) is True
    yield grants.add(subject_of(principal_id="writer"), (access.OBJECTS_PUT_ACL,), ("org/acme/*",))
    yield grants.add(subject_of(principal_id="nobody"), ("lightningstor:objects:*",), ("org/acme/*",))
    assert (yield authorizer.authorize(RW, access.OBJECTS_PUT_ACL, obj)) is True
    assert (yield authorizer.authorize(NOBODY, access.OBJECTS_PUT_ACL, obj)) is True
    yield grants.add(subject_of(role="admin"), (access.OBJECTS_PUT,), ("org/acme/*",), effect="deny")
    assert (yield authorizer.authorize(OWNER, access.OBJECTS_PUT_ACL, obj)) is False
    assert (yield authorizer.authorize(OWNER, access.OBJECTS_GET, obj)) is True


@pytest_twisted.inlineCallbacks
def test_an_authorizer_without_the_finer_action_is_asked_the_spec_one(make_core: Any) -> None:
    """aegis (the SPEC's twelve actions) is asked objects:put for an ACL
    write, as before objects:put-acl existed; the local authorizer, which
    names it, is asked objects:put-acl."""
    core = make_core()
    bucket = yield core.buckets.create(OWNER, "data")
    spec_only = _Authorizer(True)
    yield AccessControl(core.buckets, spec_only).check(NOBODY, access.OBJECTS_PUT_ACL, bucket_resource(bucket, "k"))
    assert spec_only.asked == [("nobody", access.OBJECTS_PUT, "org/acme/bucket/data/object/k")]
    refined = _Authorizer(True)
    refined.refined_actions = frozenset({access.OBJECTS_PUT_ACL})
    yield AccessControl(core.buckets, refined).check(NOBODY, access.OBJECTS_PUT_ACL, bucket_resource(bucket, "k"))
    assert refined.asked == [("nobody", access.OBJECTS_PUT_ACL, "org/acme/bucket/data/object/k")]


@pytest_twisted.inlineCallbacks
def test_grants_are_cached_for_cache_seconds(make_core: Any) -> None:
    core = make_core()
    now = [1000.0]
    grants = GrantStore(core.store, time.time)
    authorizer = LocalAuthorizer(grants, lambda: now[0], cache_seconds=5)
    res = _bucket_ref(owner="x", key="k")
    allowed = yield authorizer.authorize(NOBODY, access.OBJECTS_GET, res)
    assert allowed is False
    yield grants.add(subject_of(principal_id="nobody"), ("lightningstor:objects:*",), ("org/acme/*",))
    allowed = yield authorizer.authorize(NOBODY, access.OBJECTS_GET, res)
    assert allowed is False  # still the cached (empty) grant list
    now[0] += 6
    allowed = yield authorizer.authorize(NOBODY, access.OBJECTS_GET, res)
    assert allowed is True


@pytest_twisted.inlineCallbacks
def test_grant_validation_refuses_typos(authz: Any) -> None:
    _, grants = authz
    with pytest.raises(ValueError, match="matches none"):
        yield grants.add("principal:x", ("lightningstor:object:get",), ("org/acme/*",))
    with pytest.raises(ValueError, match="starts with 'org/'"):
        yield grants.add("principal:x", (access.OBJECTS_GET,), ("acme/*",))
    with pytest.raises(ValueError, match="effect"):
        yield grants.add("principal:x", (access.OBJECTS_GET,), ("org/acme/*",), effect="maybe")
    listed = yield grants.all()
    assert listed == []


class _Authorizer:
    name = "test"

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.asked: list[tuple[str, str, str]] = []
        self.refined_actions: frozenset[str] = frozenset()

    def authorize(self, principal: Principal, action: str, resource: ResourceRef) -> Any:
        self.asked.append((principal.principal_id, action, resource.path))
        if isinstance(self.answer, Exception):
            return fail(self.answer)
        return succeed(self.answer)


@pytest_twisted.inlineCallbacks
def test_gate_resolves_scope_before_asking(make_core: Any) -> None:
    core = make_core()
    yield core.buckets.create(OWNER, "data")
    yielding = _Authorizer(True)
    gate = AccessControl(core.buckets, yielding)
    trail: list[Decision] = []
    bucket = yield gate.bucket(NOBODY, "data", access.OBJECTS_GET, "k", trail.append)
    assert bucket.name == "data"
    assert trail == [Decision(access.OBJECTS_GET, "org/acme/bucket/data/object/k", True)]
    # Another org never reaches the authorizer: the name does not resolve.
    with pytest.raises(errors.NoSuchBucket):
        yield gate.bucket(OTHER_ORG_ADMIN, "data", access.OBJECTS_GET, "k")
    assert [a[0] for a in yielding.asked] == ["nobody"]


@pytest_twisted.inlineCallbacks
def test_gate_denies_and_fails_closed(make_core: Any) -> None:
    core = make_core()
    bucket = yield core.buckets.create(OWNER, "data")
    trail: list[Decision] = []
    with pytest.raises(errors.AccessDenied) as denied:
        yield AccessControl(core.buckets, _Authorizer(False)).check(
            NOBODY, access.OBJECTS_GET, bucket_resource(bucket, "k"), trail.append
        )
    assert denied.value.resource == "/data/k"
    with pytest.raises(errors.ServiceUnavailable):
        yield AccessControl(core.buckets, _Authorizer(ConnectionRefusedError("aegis down"))).check(
            NOBODY, access.OBJECTS_GET, bucket_resource(bucket, "k"), trail.append
        )
    assert [d.allowed for d in trail] == [False, False]


@pytest_twisted.inlineCallbacks
def test_anonymous_callers_never_reach_the_authorizer(make_core: Any) -> None:
    """An authorizer that allows everything (a permissive platform IAM)
    must not let an unsigned request in: only a bucket policy may."""
    core = make_core()
    yield core.buckets.create(OWNER, "data")
    permissive = _Authorizer(True)
    gate = AccessControl(core.buckets, permissive)
    trail: list[Decision] = []
    with pytest.raises(errors.AccessDenied):
        yield gate.bucket(access.ANONYMOUS, "data", access.OBJECTS_GET, "k", trail.append)
    with pytest.raises(errors.AccessDenied):
        yield gate.scope(access.ANONYMOUS, access.BUCKETS_LIST, trail.append)
    with pytest.raises(errors.NoSuchBucket):
        yield gate.bucket(access.ANONYMOUS, "absent", access.OBJECTS_GET, "k", trail.append)
    assert permissive.asked == []
    assert [d.allowed for d in trail] == [False, False]


class _Request:
    """A protocol layer's description of one request (PolicyContext)."""

    def __init__(self, op: str, **keys: str) -> None:
        self.op = op
        self.keys = {k.replace("_", ":", 1): (v,) for k, v in keys.items()}

    def version_named(self) -> bool:
        return False

    def condition_keys(self) -> dict[str, tuple[str, ...]]:
        return dict(self.keys)


@pytest_twisted.inlineCallbacks
def test_a_stored_policy_that_no_longer_parses_denies_all_but_its_owner(make_core: Any) -> None:
    """Fail closed: dropping such a policy would drop its Deny statements."""
    core = make_core()
    bucket = yield core.buckets.create(OWNER, "data")
    bucket = yield core.buckets.set_policy(bucket, '{"Version": "2012-10-17", "Statement": "garbage"}')
    gate = core.access
    with pytest.raises(errors.AccessDenied):
        yield gate.bucket(OWNER, "data", access.OBJECTS_GET, "k", None, _Request("GetObject"))
    # The owner's side can still read and remove it.
    for op in ("GetBucketPolicy", "DeleteBucketPolicy"):
        found = yield gate.bucket(OWNER, "data", access.action_of(op, False), None, None, _Request(op))
        assert found.name == "data"
    yield core.buckets.set_policy(found, "")
    found = yield gate.bucket(OWNER, "data", access.OBJECTS_GET, "k", None, _Request("GetObject"))
    assert found.policy == ""


@pytest_twisted.inlineCallbacks
def test_policy_conditions_see_the_caller_and_the_request(make_core: Any) -> None:
    core = make_core()
    bucket = yield core.buckets.create(OWNER, "data")
    text = (
        '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",'
        ' "Resource": "arn:aws:s3:::data/home/${aws:username}/*",'
        ' "Condition": {"IpAddress": {"aws:SourceIp": "192.0.2.0/24"}}}]}'
    )
    yield core.buckets.set_policy(bucket, text)
    gate = core.access
    inside = _Request("GetObject", aws_sourceip="192.0.2.7")
    found = yield gate.bucket(NOBODY, "data", access.OBJECTS_GET, "home/nobody/x", None, inside)
    assert found.name == "data"
    with pytest.raises(errors.AccessDenied):  # another user's home
        yield gate.bucket(NOBODY, "data", access.OBJECTS_GET, "home/owner/x", None, inside)
    with pytest.raises(errors.AccessDenied):  # another network
        yield gate.bucket(NOBODY, "data", access.OBJECTS_GET, "home/nobody/x", None,
                          _Request("GetObject", aws_sourceip="198.51.100.1"))
    with pytest.raises(errors.AccessDenied):  # nobody's username for an anonymous caller
        yield gate.bucket(access.ANONYMOUS, "data", access.OBJECTS_GET, "home/nobody/x", None, inside)
    # Without a request (tools, tests), no policy is consulted: the role-less principal is refused.
    with pytest.raises(errors.AccessDenied):
        yield gate.bucket(NOBODY, "data", access.OBJECTS_GET, "home/nobody/x")


@pytest_twisted.inlineCallbacks
def test_credential_lookup_joins_the_principal_record(make_core: Any) -> None:
    core = make_core()
    principals = PrincipalStore(core.store, time.time)
    creds = CredentialStore(core.store, b"x" * 43 + b"=", cache_ttl=0)
    yield principals.create("dev", "acme", "web", roles=("read-only",), display_name="Dev")
    cred = yield creds.create(Principal("dev", "acme", "web"))
    found = yield creds.lookup(cred.access_key_id)
    assert found.principal.roles == ("read-only",)
    assert found.principal.project_id == "web"
    yield principals.update("dev", lambda r: replace(r, roles=("read-write",)))
    found = yield creds.lookup(cred.access_key_id)
    assert found.principal.roles == ("read-write",)
    # Disabling the principal disables every key it owns.
    yield principals.update("dev", lambda r: replace(r, disabled=True))
    found = yield creds.lookup(cred.access_key_id)
    assert found is None
    yield principals.update("dev", lambda r: replace(r, disabled=False))
    yield creds.set_disabled(cred.access_key_id, True)
    found = yield creds.lookup(cred.access_key_id)
    assert found is None
    keys = yield creds.list_keys("dev")
    assert [(k.access_key_id, k.disabled) for k in keys] == [(cred.access_key_id, True)]


@pytest_twisted.inlineCallbacks
def test_expired_key_is_unusable(make_core: Any) -> None:
    core = make_core()
    creds = CredentialStore(core.store, b"x" * 43 + b"=", cache_ttl=0)
    past = int((time.time() - 1) * 1000)
    cred = yield creds.create(Principal("dev", "acme"), expires_at=past)
    found = yield creds.lookup(cred.access_key_id)
    assert found is None


@pytest_twisted.inlineCallbacks
def test_principal_ids_and_roles_are_validated(make_core: Any) -> None:
    core = make_core()
    principals = PrincipalStore(core.store, time.time)
    for bad in ("", "../x", "a/b", "x" * 200, "with space", "newline\n"):
        with pytest.raises(ValueError):
            yield principals.create(bad, "acme")
    with pytest.raises(ValueError):
        yield principals.create("ok", "acme\n")
    for role in ("Bad Role", "read-only\n"):
        with pytest.raises(ValueError):
            yield principals.create("ok", "acme", roles=(role,))
    yield principals.create("ok", "acme")
    with pytest.raises(ValueError, match="already exists"):
        yield principals.create("ok", "globex")
    listed = yield principals.list()
    assert [(p.principal_id, p.org_id) for p in listed] == [("ok", "acme")]
