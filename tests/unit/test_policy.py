"""Tests for bucket policies (lightningstor.core.policy): what PutBucketPolicy
accepts and refuses (AWS's MalformedPolicy messages), principals, actions,
resources, Deny over Allow, policy variables in resources, condition_keys()
and GetBucketPolicyStatus' IsPublic.

The operators of ``Condition`` have their own file (test_policy_conditions).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from lightningstor import errors
from lightningstor.core.policy import (
    ACTIONS,
    MAX_POLICY_BYTES,
    BucketPolicy,
    RequestFacts,
    parse_policy,
)

BUCKET = "b"


def statement(**fields: Any) -> dict[str, Any]:
    """A statement that is valid unless ``fields`` say otherwise (a value of
    None drops the field)."""
    base: dict[str, Any] = {
        "Effect": "Allow",
        "Principal": "*",
        "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{BUCKET}/*",
    }
    base.update(fields)
    return {name: value for name, value in base.items() if value is not None}


def parse(*statements: dict[str, Any], version: str | None = "2012-10-17", **top: Any) -> BucketPolicy:
    document: dict[str, Any] = {"Statement": list(statements)}
    if version is not None:
        document["Version"] = version
    document.update(top)
    return parse_policy(json.dumps(document).encode(), BUCKET)


def facts(
    action: str = "s3:GetObject",
    resource: str = f"arn:aws:s3:::{BUCKET}/key",
    principal: str | None = "alice",
    org: str | None = "acme",
    **keys: str | tuple[str, ...],
) -> RequestFacts:
    """A request's facts; condition keys as keyword arguments, ``__`` for
    ``:`` and ``_`` for ``-``."""
    mapping = {
        name.replace("__", ":").replace("_", "-").lower(): (value if isinstance(value, tuple) else (value,))
        for name, value in keys.items()
    }
    return RequestFacts(action=action, resource=resource, principal_id=principal, org_id=org, keys=mapping)


def anonymous(action: str = "s3:GetObject", resource: str = f"arn:aws:s3:::{BUCKET}/key") -> RequestFacts:
    return RequestFacts(action=action, resource=resource, principal_id=None, org_id=None, keys={})


def refused(data: bytes | str | dict[str, Any], bucket: str = BUCKET) -> str:
    """The MalformedPolicy message PutBucketPolicy answers ``data`` with."""
    if isinstance(data, dict):
        data = json.dumps(data)
    if isinstance(data, str):
        data = data.encode()
    with pytest.raises(errors.MalformedPolicy) as caught:
        parse_policy(data, bucket)
    assert caught.value.status == 400
    return caught.value.message


def refused_statement(**fields: Any) -> str:
    return refused({"Version": "2012-10-17", "Statement": [statement(**fields)]})


# -- the document --------------------------------------------------------------------


def test_text_is_kept_exactly_as_sent() -> None:
    data = b'  {"Version":"2012-10-17",\n "Statement":{"Effect":"Allow","Principal":"*",'
    data += b'"Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}}'
    policy = parse_policy(data, BUCKET)
    assert policy.text == data.decode()
    assert policy.version == "2012-10-17"


def test_statement_may_be_a_single_object() -> None:
    policy = parse_policy(json.dumps({"Statement": statement()}).encode(), BUCKET)
    assert len(policy.statements) == 1
    assert policy.evaluate(anonymous()) == "Allow"


def test_version_defaults_to_2008_and_id_is_optional() -> None:
    assert parse(statement(), version=None).version == "2008-10-17"
    assert parse(statement(), version="2008-10-17", Id="my-policy").policy_id == "my-policy"


def test_size_limit() -> None:
    padding = " " * (MAX_POLICY_BYTES + 1)
    assert refused("{" + padding + "}") == "Policy exceeds the maximum allowed document size."
    # Exactly at the limit is fine.
    body = json.dumps({"Version": "2012-10-17", "Statement": [statement()]})
    parse_policy(body.encode() + b" " * (MAX_POLICY_BYTES - len(body)), BUCKET)


@pytest.mark.parametrize("data", [b"", b"   ", b"[]", b'"x"', b"Version", b"\xef\xbb\xbf{}"])
def test_first_byte_must_be_a_brace(data: bytes) -> None:
    assert refused(data) == "Policies must be valid JSON and the first byte must be '{'"


@pytest.mark.parametrize(
    "data",
    [b"{", b'{"Statement": [}', b'{"a": 1} trailing', b'{"Version": "\xff"}', b'{"Version": NaN}',
     # nested past Python's recursion limit, within the size limit: a RecursionError was a 500
     b'{"Statement": ' + b"[" * 5000 + b"]" * 5000 + b"}",
     b'{"Condition": ' + b'{"a": ' * 2500 + b"1" + b"}" * 2500 + b"}"],
)
def test_invalid_json(data: bytes) -> None:
    assert refused(data) == "This policy contains invalid Json"


def test_unknown_fields() -> None:
    assert refused({"Statement": [statement()], "Foo": 1}) == "Unknown field Foo"
    assert refused_statement(Extra="x") == "Unknown field Extra"
    # Field names are case-sensitive, as AWS's are.
    assert refused_statement(effect="Allow") == "Unknown field effect"


@pytest.mark.parametrize("version", ["2012-10-18", "", 2012, ["2012-10-17"], None])
def test_invalid_version(version: Any) -> None:
    document = {"Version": version, "Statement": [statement()]}
    assert refused(document) == "The policy must contain a valid version string"


def test_statement_required_and_not_empty() -> None:
    assert refused({"Version": "2012-10-17"}) == "Missing required field Statement"
    assert refused({"Statement": []}) == "Could not parse the policy: Statement is empty!"


@pytest.mark.parametrize(
    "document",
    [
        {"Id": 5, "Statement": [statement()]},
        {"Statement": "x"},
        {"Statement": ["x"]},
        {"Statement": [statement(Sid=1)]},
        {"Statement": [statement(Action=["s3:GetObject", 5])]},
        {"Statement": [statement(Resource={"a": "b"})]},
        {"Statement": [statement(Principal="*", NotPrincipal="*")]},
        {"Statement": [statement(NotAction="s3:PutObject")]},
        {"Statement": [statement(NotResource="arn:aws:s3:::b")]},
    ],
)
def test_invalid_syntax(document: dict[str, Any]) -> None:
    assert refused(document) == "Invalid policy syntax."


def test_sids_unique() -> None:
    document = {"Statement": [statement(Sid="one"), statement(Sid="one")]}
    assert refused(document) == "Statement IDs (SID) in a single policy must be unique."
    # Distinct, or absent, or empty Sids are fine.
    parse(statement(Sid="one"), statement(Sid="two"), statement(), statement(Sid=""), statement(Sid=""))


def test_effect() -> None:
    assert refused_statement(Effect=None) == "Missing required field Effect"
    assert refused_statement(Effect="allow") == "Invalid effect: allow"
    assert refused_statement(Effect="hello") == "Invalid effect: hello"


def test_required_elements() -> None:
    assert refused_statement(Principal=None) == "Missing required field Principal"
    assert refused_statement(Action=None) == "Missing required field Action"
    assert refused_statement(Resource=None) == "Missing required field Resource"


# -- principals --------------------------------------------------------------------


@pytest.mark.parametrize(
    "principal",
    [
        "arn:aws:iam::acme:root",  # a string Principal can only be "*"
        "acme",
        {},
        {"Federated": "graph.facebook.com"},
        {"CanonicalUser": "79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be"},
        {"AWS": "*", "Federated": "graph.facebook.com"},
        {"Service": []},
        {"Service": ""},
        {"Service": "*"},
        {"Service": "acme"},
        {"Service": "logging.s3.amazonaws.com/x"},
        {"Service": ["logging.s3.amazonaws.com", "not a service"]},
        {"AWS": "not an id", "Service": "logging.s3.amazonaws.com"},
        {"AWS": []},
        {"AWS": ""},
        {"AWS": "arn:aws:iam::acme:role/admin"},
        {"AWS": "arn:aws:iam::acme:user/"},
        {"AWS": "arn:aws:iam::acme:user/a*"},
        {"AWS": "arn:aws:iam:::root"},
        {"AWS": "arn:aws:iam::ac me:root"},
        {"AWS": "not an id"},
        {"aws": "*"},
    ],
)
def test_invalid_principal(principal: Any) -> None:
    assert refused_statement(Principal=principal) == "Invalid principal in policy"
    assert refused_statement(Effect="Deny", Principal=None, NotPrincipal=principal) == "Invalid principal in policy"


@pytest.mark.parametrize(
    "principal", ["*", {"AWS": "*"}, {"AWS": ["*"]}, {"AWS": ["arn:aws:iam::x:root", "*"]}]
)
def test_wildcard_principal_matches_everyone_including_anonymous(principal: Any) -> None:
    policy = parse(statement(Principal=principal))
    assert policy.evaluate(anonymous()) == "Allow"
    assert policy.evaluate(facts(principal="bob", org="other")) == "Allow"


def test_service_principal_is_accepted_and_matches_no_request() -> None:
    """Policies written for AWS name its services (log delivery, CloudTrail):
    they install, and no request here comes from an AWS service."""
    service = {"Service": ["logging.s3.amazonaws.com", "cloudtrail.amazonaws.com"]}
    policy = parse(statement(Principal=service))
    assert policy.evaluate(facts(principal="alice", org="acme")) is None
    assert policy.evaluate(facts(principal="logging.s3.amazonaws.com", org="logging.s3.amazonaws.com")) is None
    assert policy.evaluate(anonymous()) is None
    assert not policy.is_public()
    mixed = parse(statement(Principal={"AWS": "arn:aws:iam::acme:user/alice", "Service": "s3.amazonaws.com"}))
    assert mixed.evaluate(facts(principal="alice", org="acme")) == "Allow"
    assert mixed.evaluate(facts(principal="bob", org="acme")) is None
    deny_others = parse(statement(), statement(Effect="Deny", Principal=None, NotPrincipal={"Service": "s3.amazonaws.com"}))
    assert deny_others.evaluate(facts(principal="alice", org="acme")) == "Deny"
    assert deny_others.evaluate(anonymous()) == "Deny"


def test_org_principal_forms() -> None:
    for name in ("arn:aws:iam::acme:root", "acme"):
        policy = parse(statement(Principal={"AWS": name}))
        assert policy.evaluate(facts(principal="alice", org="acme")) == "Allow"
        assert policy.evaluate(facts(principal="bob", org="acme")) == "Allow"
        assert policy.evaluate(facts(principal="alice", org="other")) is None
        assert policy.evaluate(anonymous()) is None


def test_user_principal_is_one_principal_of_one_org() -> None:
    policy = parse(statement(Principal={"AWS": ["arn:aws:iam::acme:user/alice"]}))
    assert policy.evaluate(facts(principal="alice", org="acme")) == "Allow"
    assert policy.evaluate(facts(principal="bob", org="acme")) is None
    assert policy.evaluate(facts(principal="alice", org="other")) is None
    assert policy.evaluate(anonymous()) is None


def test_principal_list_is_any_of() -> None:
    policy = parse(statement(Principal={"AWS": ["arn:aws:iam::acme:user/alice", "globex"]}))
    assert policy.evaluate(facts(principal="alice", org="acme")) == "Allow"
    assert policy.evaluate(facts(principal="zed", org="globex")) == "Allow"
    assert policy.evaluate(facts(principal="bob", org="acme")) is None


def test_not_principal_applies_to_everyone_not_listed() -> None:
    policy = parse(
        statement(),
        statement(Effect="Deny", Principal=None, NotPrincipal={"AWS": "arn:aws:iam::acme:user/alice"}),
    )
    assert policy.evaluate(facts(principal="alice", org="acme")) == "Allow"
    assert policy.evaluate(facts(principal="bob", org="acme")) == "Deny"
    assert policy.evaluate(facts(principal="alice", org="other")) == "Deny"
    assert policy.evaluate(anonymous()) == "Deny"  # anonymous is not listed


def test_not_principal_org() -> None:
    policy = parse(statement(), statement(Effect="Deny", Principal=None, NotPrincipal={"AWS": "arn:aws:iam::acme:root"}))
    assert policy.evaluate(facts(principal="alice", org="acme")) == "Allow"
    assert policy.evaluate(facts(principal="alice", org="other")) == "Deny"
    assert policy.evaluate(anonymous()) == "Deny"


def test_not_principal_wildcard_names_nobody() -> None:
    policy = parse(statement(), statement(Effect="Deny", Principal=None, NotPrincipal="*"))
    assert policy.evaluate(anonymous()) == "Allow"
    assert policy.evaluate(facts()) == "Allow"


@pytest.mark.parametrize("not_principal", [{"AWS": "arn:aws:iam::acme:root"}, "*"])
def test_not_principal_with_allow_is_refused(not_principal: Any) -> None:
    """AWS supports NotPrincipal with Deny only (ceph/s3-tests
    test_bucket_policy_allow_notprincipal expects the refusal)."""
    assert refused_statement(Principal=None, NotPrincipal=not_principal) == (
        "NotPrincipal is supported only with Effect Deny")


# -- actions -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "action",
    ["iam:PassRole", "GetObject", "s3:", "s3:NoSuchAction", "s3:Get?", "ec2:*", "s3:GetObjectX*", [], ""],
)
def test_invalid_action(action: Any) -> None:
    assert refused_statement(Action=action) == "Policy has invalid action"
    assert refused_statement(Action=None, NotAction=action) == "Policy has invalid action"


def test_action_names_case_insensitive() -> None:
    policy = parse(statement(Action="S3:getobject"))
    assert policy.evaluate(facts(action="s3:GetObject")) == "Allow"
    assert policy.evaluate(facts(action="s3:GETOBJECT")) == "Allow"
    assert policy.evaluate(facts(action="s3:PutObject")) is None


def test_action_wildcards() -> None:
    star = parse(statement(Action="s3:Get*"))
    assert star.evaluate(facts(action="s3:GetObject")) == "Allow"
    assert star.evaluate(facts(action="s3:GetObjectTagging")) == "Allow"
    assert star.evaluate(facts(action="s3:PutObject")) is None
    # "?" is exactly one character.
    one = parse(statement(Action="s3:?etObject"))
    assert one.evaluate(facts(action="s3:GetObject")) == "Allow"
    assert one.evaluate(facts(action="s3:PutObject")) is None
    two = parse(statement(Action="s3:GetObjectVersion?cl"))
    assert two.evaluate(facts(action="s3:GetObjectVersionAcl")) == "Allow"
    assert two.evaluate(facts(action="s3:GetObjectVersionXAcl")) is None
    everything = parse(statement(Action="*"), statement(Action="s3:*", Effect="Deny", Principal={"AWS": "x"}))
    assert everything.evaluate(facts(action="s3:PutObject")) == "Allow"


def test_not_action() -> None:
    policy = parse(statement(Action=None, NotAction=["s3:DeleteObject", "s3:PutObject*"]))
    assert policy.evaluate(facts(action="s3:GetObject")) == "Allow"
    assert policy.evaluate(facts(action="s3:DeleteObject")) is None
    assert policy.evaluate(facts(action="s3:PutObjectAcl")) is None


def test_action_table_has_the_required_actions() -> None:
    required = (
        "GetObject GetObjectVersion PutObject DeleteObject DeleteObjectVersion GetObjectTagging "
        "GetObjectVersionTagging PutObjectTagging PutObjectVersionTagging DeleteObjectTagging "
        "DeleteObjectVersionTagging GetObjectAcl GetObjectVersionAcl PutObjectAcl PutObjectVersionAcl "
        "GetObjectAttributes GetObjectVersionAttributes AbortMultipartUpload ListMultipartUploadParts "
        "RestoreObject ListBucket ListBucketVersions ListBucketMultipartUploads ListAllMyBuckets CreateBucket "
        "DeleteBucket GetBucketLocation GetBucketVersioning PutBucketVersioning GetBucketTagging "
        "PutBucketTagging GetBucketCORS PutBucketCORS GetLifecycleConfiguration PutLifecycleConfiguration "
        "GetBucketPolicy PutBucketPolicy DeleteBucketPolicy GetBucketPolicyStatus GetBucketAcl PutBucketAcl "
        "GetBucketObjectLockConfiguration PutBucketObjectLockConfiguration GetObjectRetention "
        "PutObjectRetention GetObjectLegalHold PutObjectLegalHold BypassGovernanceRetention "
        "GetEncryptionConfiguration PutEncryptionConfiguration GetBucketPublicAccessBlock "
        "PutBucketPublicAccessBlock GetBucketOwnershipControls PutBucketOwnershipControls GetBucketLogging "
        "PutBucketLogging GetBucketNotification PutBucketNotification GetBucketWebsite PutBucketWebsite "
        "DeleteBucketWebsite GetReplicationConfiguration PutReplicationConfiguration "
        "GetAccelerateConfiguration PutAccelerateConfiguration GetBucketRequestPayment PutBucketRequestPayment"
    )
    for name in required.split():
        assert "s3:" + name in ACTIONS, name
    assert ACTIONS["s3:GetObject"] == "object"
    assert ACTIONS["s3:ListBucket"] == "bucket"
    assert ACTIONS["s3:ListAllMyBuckets"] == "service"


# -- resources -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "resource",
    [
        "*",  # AWS refuses the bare "*" in a bucket policy
        "arn:aws:s3:::other",
        "arn:aws:s3:::other/*",
        "arn:aws:s3:::bb/*",
        "arn:aws:s3:::B/*",  # bucket names are case-sensitive
        "arn:aws:s3:::",
        "arn:aws:s3:::/b",
        "arn:aws:s3::b",
        "b/*",
        "arn:aws:s3:::?",  # one character, but not this bucket's...
        [],
        "",
    ],
)
def test_invalid_resource(resource: Any) -> None:
    bucket = "bk" if resource == "arn:aws:s3:::?" else BUCKET
    document = {"Statement": [statement(Action="s3:*", Resource=resource)]}
    assert refused(document, bucket) == "Policy has invalid resource"


@pytest.mark.parametrize(
    "resource",
    ["arn:aws:s3:::*", "arn:aws:s3:::b*", "arn:aws:s3:::?", "arn:aws:s3:::*/*", "arn:aws:s3:::b/a?c"],
)
def test_wildcard_resources_naming_this_bucket(resource: str) -> None:
    parse(statement(Action="s3:*", Resource=resource))


def test_resource_of_another_bucket_refused_even_among_good_ones() -> None:
    document = {"Statement": [statement(Resource=["arn:aws:s3:::b/*", "arn:aws:s3:::c/*"])]}
    assert refused(document) == "Policy has invalid resource"


def test_resource_matching_case_sensitive_with_wildcards() -> None:
    policy = parse(statement(Resource="arn:aws:s3:::b/Logs/*.txt"))
    assert policy.evaluate(facts(resource="arn:aws:s3:::b/Logs/2026/a.txt")) == "Allow"
    assert policy.evaluate(facts(resource="arn:aws:s3:::b/logs/a.txt")) is None
    assert policy.evaluate(facts(resource="arn:aws:s3:::b/Logs/a.TXT")) is None
    one = parse(statement(Resource="arn:aws:s3:::b/file?.txt"))
    assert one.evaluate(facts(resource="arn:aws:s3:::b/file1.txt")) == "Allow"
    assert one.evaluate(facts(resource="arn:aws:s3:::b/file.txt")) is None
    assert one.evaluate(facts(resource="arn:aws:s3:::b/file12.txt")) is None
    # Other regex characters are themselves.
    dots = parse(statement(Resource="arn:aws:s3:::b/a.b[1]+"))
    assert dots.evaluate(facts(resource="arn:aws:s3:::b/a.b[1]+")) == "Allow"
    assert dots.evaluate(facts(resource="arn:aws:s3:::b/aXb[1]+")) is None


def test_wildcard_spans_slashes() -> None:
    policy = parse(statement(Resource="arn:aws:s3:::b/foo/*/bar"))
    assert policy.evaluate(facts(resource="arn:aws:s3:::b/foo/1/2/bar")) == "Allow"


def test_bucket_resource_is_not_its_objects() -> None:
    policy = parse(statement(Action="s3:*", Resource="arn:aws:s3:::b"))
    assert policy.evaluate(facts(action="s3:ListBucket", resource="arn:aws:s3:::b")) == "Allow"
    assert policy.evaluate(facts(action="s3:GetObject", resource="arn:aws:s3:::b/k")) is None


def test_not_resource() -> None:
    policy = parse(statement(Action="s3:*", Resource=None, NotResource="arn:aws:s3:::b/private/*"))
    assert policy.evaluate(facts(resource="arn:aws:s3:::b/public/x")) == "Allow"
    assert policy.evaluate(facts(resource="arn:aws:s3:::b")) == "Allow"
    assert policy.evaluate(facts(resource="arn:aws:s3:::b/private/x")) is None


def test_not_resource_of_another_bucket_refused() -> None:
    assert refused_statement(Resource=None, NotResource="arn:aws:s3:::c/*") == "Policy has invalid resource"


@pytest.mark.parametrize(
    ("action", "resource"),
    [
        ("s3:PutObject", "arn:aws:s3:::b"),
        (["s3:GetObject", "s3:ListBucket"], "arn:aws:s3:::b/*"),  # ListBucket: no bucket resource
        ("s3:GetBucketAcl", "arn:aws:s3:::b/*"),
        ("s3:ListAllMyBuckets", ["arn:aws:s3:::b", "arn:aws:s3:::b/*"]),
        ("s3:*ObjectTagging", "arn:aws:s3:::b"),  # every action it names is an object action
    ],
)
def test_action_does_not_apply_to_resources(action: Any, resource: Any) -> None:
    assert (
        refused_statement(Action=action, Resource=resource)
        == "Action does not apply to any resource(s) in statement"
    )


def test_actions_applying_to_some_resource_are_fine() -> None:
    parse(
        statement(Action=["s3:GetObject", "s3:ListBucket"], Resource=["arn:aws:s3:::b", "arn:aws:s3:::b/*"])
    )
    parse(statement(Action="s3:*", Resource="arn:aws:s3:::b"))  # s3:* has bucket actions
    parse(statement(Action="s3:List*", Resource="arn:aws:s3:::b/*"))  # ListMultipartUploadParts
    parse(statement(Action="s3:ListBucket", Resource="arn:aws:s3:::b*"))
    parse(statement(Action="s3:GetObject", Resource="arn:aws:s3:::b*"))  # b* also names b/...
    # With NotAction or NotResource the pairing is not checked.
    parse(statement(Action=None, NotAction="s3:PutObject", Resource="arn:aws:s3:::b"))
    parse(statement(Action="s3:PutObject", Resource=None, NotResource="arn:aws:s3:::b"))


# -- evaluation ------------------------------------------------------------------------


def test_deny_beats_allow_whatever_the_order() -> None:
    allow = statement(Action="s3:*", Resource=["arn:aws:s3:::b", "arn:aws:s3:::b/*"])
    deny = statement(Effect="Deny", Action="s3:DeleteObject")
    for order in ((allow, deny), (deny, allow)):
        policy = parse(*order)
        assert policy.evaluate(facts(action="s3:DeleteObject")) == "Deny"
        assert policy.evaluate(facts(action="s3:GetObject")) == "Allow"


def test_nothing_applies() -> None:
    policy = parse(statement(Principal={"AWS": "arn:aws:iam::acme:root"}))
    assert policy.evaluate(facts(org="other")) is None
    assert policy.evaluate(facts(action="s3:PutObject")) is None
    assert policy.evaluate(facts(resource="arn:aws:s3:::b")) is None


def test_deny_only_policy() -> None:
    policy = parse(statement(Effect="Deny", Condition={"Bool": {"aws:SecureTransport": "false"}}))
    assert policy.evaluate(facts(aws__SecureTransport="false")) == "Deny"
    assert policy.evaluate(facts(aws__SecureTransport="true")) is None


def test_conditions_must_all_hold() -> None:
    policy = parse(
        statement(
            Condition={
                "StringEquals": {"aws:UserAgent": "tool/1"},
                "IpAddress": {"aws:SourceIp": "10.0.0.0/8"},
            }
        )
    )
    assert policy.evaluate(facts(aws__UserAgent="tool/1", aws__SourceIp="10.1.2.3")) == "Allow"
    assert policy.evaluate(facts(aws__UserAgent="tool/1", aws__SourceIp="11.1.2.3")) is None
    assert policy.evaluate(facts(aws__UserAgent="tool/2", aws__SourceIp="10.1.2.3")) is None


# -- policy variables in resources -------------------------------------------------------------


def test_resource_variables() -> None:
    policy = parse(statement(Action="s3:*", Resource="arn:aws:s3:::b/home/${aws:username}/*"))
    assert policy.evaluate(facts(resource="arn:aws:s3:::b/home/alice/x", aws__username="alice")) == "Allow"
    assert policy.evaluate(facts(resource="arn:aws:s3:::b/home/bob/x", aws__username="alice")) is None
    # Missing key: the resource matches nothing.
    assert policy.evaluate(facts(resource="arn:aws:s3:::b/home//x")) is None
    assert policy.evaluate(facts(resource="arn:aws:s3:::b/home/${aws:username}/x")) is None


def test_substituted_value_is_literal() -> None:
    policy = parse(statement(Resource="arn:aws:s3:::b/home/${aws:username}/*"))
    assert policy.evaluate(facts(resource="arn:aws:s3:::b/home/a*/x", aws__username="a*")) == "Allow"
    assert policy.evaluate(facts(resource="arn:aws:s3:::b/home/abc/x", aws__username="a*")) is None
    assert policy.evaluate(facts(resource="arn:aws:s3:::b/home/ab/x", aws__username="a?")) is None


def test_variable_default_and_escapes() -> None:
    policy = parse(statement(Resource="arn:aws:s3:::b/${aws:username, 'guest'}/*"))
    assert policy.evaluate(facts(resource="arn:aws:s3:::b/guest/x")) == "Allow"
    assert policy.evaluate(facts(resource="arn:aws:s3:::b/al/x", aws__username="al")) == "Allow"
    assert policy.evaluate(facts(resource="arn:aws:s3:::b/guest/x", aws__username="al")) is None
    escaped = parse(statement(Resource="arn:aws:s3:::b/star${*}q${?}d${$}/*"))
    assert escaped.evaluate(facts(resource="arn:aws:s3:::b/star*q?d$/x")) == "Allow"
    assert escaped.evaluate(facts(resource="arn:aws:s3:::b/starXqYd$/x")) is None


def test_variables_are_text_in_2008_policies() -> None:
    for version in ("2008-10-17", None):
        policy = parse(statement(Resource="arn:aws:s3:::b/${aws:username}/*"), version=version)
        assert policy.evaluate(facts(resource="arn:aws:s3:::b/alice/x", aws__username="alice")) is None
        assert policy.evaluate(facts(resource="arn:aws:s3:::b/${aws:username}/x")) == "Allow"


def test_variable_in_bucket_part_validated_as_wildcard() -> None:
    parse(statement(Resource="arn:aws:s3:::${aws:username}/*"))
    document = {"Version": "2008-10-17", "Statement": [statement(Resource="arn:aws:s3:::${aws:username}/*")]}
    assert refused(document) == "Policy has invalid resource"


# -- condition_keys ----------------------------------------------------------------------


def test_condition_keys() -> None:
    policy = parse(
        statement(
            Resource="arn:aws:s3:::b/${aws:userid}/*",
            Condition={
                "StringEquals": {"S3:ExistingObjectTag/Color": "red", "aws:SourceVpc": "vpc-1"},
                "StringLike": {"s3:prefix": "${aws:username}/*"},
            },
        ),
        statement(Condition={"Null": {"aws:TokenIssueTime": "true"}}),
    )
    assert policy.condition_keys() == frozenset(
        {
            "s3:existingobjecttag/color",
            "aws:sourcevpc",
            "s3:prefix",
            "aws:username",
            "aws:userid",
            "aws:tokenissuetime",
        }
    )
    assert parse(statement()).condition_keys() == frozenset()
    # A 2008 policy has no variables to resolve.
    old = parse(statement(Condition={"StringLike": {"s3:prefix": "${aws:username}/*"}}), version="2008-10-17")
    assert old.condition_keys() == frozenset({"s3:prefix"})


# -- is_public -------------------------------------------------------------------------------


def public(*statements: dict[str, Any]) -> bool:
    return parse(*statements).is_public()


def test_aws_doc_public_examples() -> None:
    # "The meaning of public": an Allow of s3:PutObject to "*", bare or with a
    # wildcard aws:SourceVpc, is public; a fixed aws:SourceVpc is not.
    put = {"Action": "s3:PutObject"}
    assert public(statement(**put))
    assert public(statement(**put, Condition={"StringLike": {"aws:SourceVpc": "vpc-*"}}))
    assert not public(statement(**put, Condition={"StringEquals": {"aws:SourceVpc": "vpc-91237329"}}))


def test_fixed_principal_is_not_public() -> None:
    assert not public(statement(Principal={"AWS": "arn:aws:iam::acme:root"}))
    assert not public(statement(Principal={"AWS": ["arn:aws:iam::acme:user/alice", "globex"]}))
    assert public(statement(Principal={"AWS": ["arn:aws:iam::acme:root", "*"]}))


def test_deny_to_everyone_is_not_public() -> None:
    assert not public(statement(Effect="Deny"))


def test_one_public_statement_makes_the_policy_public() -> None:
    assert public(statement(Principal={"AWS": "acme"}), statement())


@pytest.mark.parametrize(
    ("condition", "is_public"),
    [
        ({"IpAddress": {"aws:SourceIp": "203.0.113.0/24"}}, False),
        ({"IpAddress": {"aws:SourceIp": ["203.0.113.0/24", "2001:db8::/64"]}}, False),
        ({"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}, False),
        ({"IpAddress": {"aws:SourceIp": "0.0.0.0/1"}}, True),  # broader than /8
        ({"IpAddress": {"aws:SourceIp": ["203.0.113.0/24", "0.0.0.0/0"]}}, True),
        ({"IpAddress": {"aws:SourceIp": "2001:db8::/31"}}, True),  # broader than /32
        ({"NotIpAddress": {"aws:SourceIp": "203.0.113.0/24"}}, True),
        ({"IpAddressIfExists": {"aws:SourceIp": "203.0.113.0/24"}}, True),
        ({"StringEquals": {"aws:SourceVpce": "vpce-1a2b3c4d"}}, False),
        ({"StringEquals": {"aws:SourceAccount": "111122223333"}}, False),
        ({"ArnEquals": {"aws:SourceArn": "arn:aws:cloudtrail:us-east-1:111122223333:trail/t"}}, False),
        ({"ArnLike": {"aws:SourceArn": "arn:aws:cloudtrail:*:111122223333:trail/*"}}, True),
        ({"StringEquals": {"aws:PrincipalOrgID": "o-123456"}}, False),
        ({"StringEquals": {"aws:PrincipalAccount": "acme"}}, False),
        ({"StringEquals": {"aws:SourceOwner": "111122223333"}}, False),
        ({"StringEquals": {"aws:PrincipalOrgID": "${aws:username}"}}, True),  # a variable is no fixed value
        ({"StringNotEquals": {"aws:PrincipalOrgID": "o-123456"}}, True),
        ({"StringEqualsIfExists": {"aws:PrincipalOrgID": "o-123456"}}, True),
        ({"ForAllValues:StringEquals": {"aws:PrincipalOrgID": "o-123456"}}, True),
        ({"ForAnyValue:StringEquals": {"aws:PrincipalOrgID": "o-123456"}}, False),
        ({"StringEquals": {"aws:userid": "AIDAEXAMPLE"}}, False),
        ({"StringLike": {"aws:userid": "AROAEXAMPLE:*"}}, False),  # the "AROLEID:*" pattern
        ({"StringLike": {"aws:userid": "AROA*"}}, True),
        ({"StringEquals": {"s3:x-amz-server-side-encryption-aws-kms-key-id": "arn:aws:kms:k"}}, False),
        ({"StringEquals": {"aws:UserAgent": "tool"}}, True),  # not a key that pins who
        ({"Bool": {"aws:SecureTransport": "true"}}, True),
        ({"Null": {"aws:SourceVpc": "false"}}, True),
    ],
)
def test_public_conditions(condition: dict[str, Any], is_public: bool) -> None:
    assert public(statement(Condition=condition)) is is_public


def test_pinning_condition_among_others() -> None:
    condition = {"StringEquals": {"aws:SourceVpc": "vpc-1"}, "Bool": {"aws:SecureTransport": "true"}}
    assert not public(statement(Condition=condition))


# -- real policies ---------------------------------------------------------------------------


def test_minio_client_download_policy() -> None:
    """What ``mc anonymous set download`` sends."""
    data = (
        b'{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":["*"]},'
        b'"Action":["s3:GetBucketLocation","s3:ListBucket"],"Resource":["arn:aws:s3:::b"]},'
        b'{"Effect":"Allow","Principal":{"AWS":["*"]},"Action":["s3:GetObject"],'
        b'"Resource":["arn:aws:s3:::b/*"]}]}'
    )
    policy = parse_policy(data, "b")
    assert policy.text == data.decode()
    assert policy.evaluate(anonymous("s3:GetObject", "arn:aws:s3:::b/dir/file")) == "Allow"
    assert policy.evaluate(anonymous("s3:ListBucket", "arn:aws:s3:::b")) == "Allow"
    assert policy.evaluate(anonymous("s3:GetBucketLocation", "arn:aws:s3:::b")) == "Allow"
    assert policy.evaluate(anonymous("s3:PutObject", "arn:aws:s3:::b/dir/file")) is None
    assert policy.evaluate(anonymous("s3:GetObject", "arn:aws:s3:::b")) is None
    assert policy.evaluate(anonymous("s3:ListBucket", "arn:aws:s3:::b/x")) is None
    assert policy.is_public()
    with pytest.raises(errors.MalformedPolicy):
        parse_policy(data, "other")


def test_s3_tests_list_bucket_policy() -> None:
    """s3-tests' test_bucket_policy: anyone may list."""
    policy = parse(
        statement(
            Principal={"AWS": "*"}, Action="s3:ListBucket", Resource=["arn:aws:s3:::b", "arn:aws:s3:::b/*"]
        )
    )
    assert policy.evaluate(anonymous("s3:ListBucket", "arn:aws:s3:::b")) == "Allow"


def test_s3_tests_deny_unencrypted_uploads() -> None:
    """s3-tests' test_bucket_policy_put_obj_enc: deny PutObject without SSE."""
    policy = parse(
        statement(
            Effect="Deny",
            Action="s3:PutObject",
            Condition={"StringNotEquals": {"s3:x-amz-server-side-encryption": "AES256"}},
        ),
        statement(
            Effect="Deny",
            Action="s3:PutObject",
            Condition={"Null": {"s3:x-amz-server-side-encryption": "true"}},
        ),
        statement(Action="s3:PutObject"),
    )
    upload = {"action": "s3:PutObject"}
    assert policy.evaluate(facts(**upload)) == "Deny"
    assert policy.evaluate(facts(**upload, s3__x_amz_server_side_encryption="aws:kms")) == "Deny"


def test_a_policy_may_require_sse_c() -> None:
    """AWS's "require SSE-C" recipe: deny PutObject when the request names
    no customer algorithm (s3-tests' test_encryption_sse_c_enforced_with_bucket_policy)."""
    policy = parse(
        statement(
            Effect="Deny",
            Action="s3:PutObject",
            Condition={"Null": {"s3:x-amz-server-side-encryption-customer-algorithm": "true"}},
        ),
        statement(Action="s3:PutObject"),
    )
    upload = {"action": "s3:PutObject"}
    assert policy.evaluate(facts(**upload)) == "Deny"
    assert policy.evaluate(facts(**upload, s3__x_amz_server_side_encryption_customer_algorithm="AES256")) == "Allow"


def test_s3_tests_existing_object_tag() -> None:
    """s3-tests' test_bucket_policy_get_obj_existing_tag."""
    policy = parse(
        statement(
            Principal={"AWS": "*"}, Condition={"StringEquals": {"s3:ExistingObjectTag/security": "public"}}
        )
    )
    assert policy.evaluate(anonymous()) is None
    tagged = RequestFacts(
        "s3:GetObject", "arn:aws:s3:::b/k", None, None, {"s3:existingobjecttag/security": ("public",)}
    )
    assert policy.evaluate(tagged) == "Allow"
    other = RequestFacts(
        "s3:GetObject", "arn:aws:s3:::b/k", None, None, {"s3:existingobjecttag/security": ("private",)}
    )
    assert policy.evaluate(other) is None


def test_s3_tests_acl_condition_on_put() -> None:
    """s3-tests' test_bucket_policy_put_obj_acl: deny public-read uploads."""
    policy = parse(
        statement(Action="s3:PutObject"),
        statement(
            Effect="Deny", Action="s3:PutObject", Condition={"StringLike": {"s3:x-amz-acl": "public*"}}
        ),
    )
    assert policy.evaluate(facts(action="s3:PutObject")) == "Allow"
    assert policy.evaluate(facts(action="s3:PutObject", s3__x_amz_acl="public-read")) == "Deny"
    assert policy.evaluate(facts(action="s3:PutObject", s3__x_amz_acl="private")) == "Allow"


def test_s3_tests_list_with_prefix_and_max_keys() -> None:
    """s3-tests' list-bucket condition policies (s3:prefix, s3:max-keys)."""
    policy = parse(
        statement(
            Action="s3:ListBucket",
            Resource="arn:aws:s3:::b",
            Condition={"StringEquals": {"s3:prefix": "foo"}, "NumericLessThanEquals": {"s3:max-keys": 10}},
        )
    )
    listing = {"action": "s3:ListBucket", "resource": "arn:aws:s3:::b"}
    assert policy.evaluate(facts(**listing, s3__prefix="foo", s3__max_keys="10")) == "Allow"
    assert policy.evaluate(facts(**listing, s3__prefix="foo", s3__max_keys="11")) is None
    assert policy.evaluate(facts(**listing, s3__prefix="bar", s3__max_keys="1")) is None


def test_facts_default_keys_empty() -> None:
    assert RequestFacts("s3:GetObject", "arn:aws:s3:::b/k", None, None).keys == {}
