"""Bucket policies: what PutBucketPolicy accepts, and what a policy decides.

The rules are AWS S3's (PutBucketPolicy, "Bucket policies", the IAM JSON
policy reference, and "The meaning of public" in the S3 Block Public
Access guide):

* a document is a JSON object of at most :data:`MAX_POLICY_BYTES`, with an
  optional ``Version`` (``2012-10-17``, or ``2008-10-17`` which is also the
  default and in which policy variables are plain text), an optional
  ``Id`` and a ``Statement`` that is one statement or a non-empty list;
  statement ids (``Sid``), when given, are unique;
* a statement has an ``Effect`` (``Allow``/``Deny``), exactly one of
  ``Principal``/``NotPrincipal`` (a bucket policy always says whom it is
  about), of ``Action``/``NotAction`` and of ``Resource``/``NotResource``,
  and optionally a ``Condition`` (:mod:`lightningstor.core.policy_conditions`);
* principals are ``*`` (everyone, anonymous callers included) or ``AWS``
  principals: ``*``, an org (``arn:aws:iam::<org>:root`` or the bare org
  id: every principal of that org) or one principal
  (``arn:aws:iam::<org>:user/<principal id>``); ``Service`` principals
  (``logging.s3.amazonaws.com``...) are accepted, so that policies written
  for AWS install, and match no request: no AWS service calls this server;
* actions are S3's names (``s3:GetObject``...), compared case-insensitively,
  with ``*``/``?`` wildcards; each must name at least one S3 action;
* resources are ARNs of *this* bucket or of its objects, compared
  case-sensitively, with ``*``/``?`` wildcards and (2012-10-17) policy
  variables; every action of a statement must apply to one of its
  resources (a bucket action to the bucket, an object action to objects);
* a request is denied when any ``Deny`` statement applies, else allowed
  when any ``Allow`` statement applies, else the policy says nothing.

A malformed document is refused with ``MalformedPolicy`` and AWS's message.
Pure and synchronous: parsing compiles every pattern, network, number and
date once, so :meth:`BucketPolicy.evaluate` only compares, per request.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lightningstor.core.globs import Glob
from lightningstor.core.policy_conditions import (
    VERSION_2008,
    VERSION_2012,
    ConditionEntry,
    Pattern,
    compile_entry,
    compile_glob,
    glob_can_start_with,
    malformed,
    parse_network,
    parse_template,
)

MAX_POLICY_BYTES = 20 * 1024  # AWS's limit for a bucket policy

ALLOW = "Allow"
DENY = "Deny"

_ARN_PREFIX = "arn:aws:s3:::"

# S3's actions a bucket policy may name, by the resource they act on:
# "object" (arn:aws:s3:::bucket/key), "bucket" (arn:aws:s3:::bucket) or
# "service" (no bucket resource: ListAllMyBuckets never applies to one).
_OBJECT_ACTIONS = (
    "GetObject GetObjectVersion PutObject DeleteObject DeleteObjectVersion GetObjectTagging "
    "GetObjectVersionTagging PutObjectTagging PutObjectVersionTagging DeleteObjectTagging "
    "DeleteObjectVersionTagging GetObjectAcl GetObjectVersionAcl PutObjectAcl PutObjectVersionAcl "
    "GetObjectAttributes GetObjectVersionAttributes AbortMultipartUpload ListMultipartUploadParts "
    "RestoreObject GetObjectRetention PutObjectRetention GetObjectLegalHold PutObjectLegalHold "
    "BypassGovernanceRetention GetObjectTorrent GetObjectVersionTorrent ReplicateObject ReplicateDelete "
    "ReplicateTags ObjectOwnerOverrideToBucketOwner"
)
_BUCKET_ACTIONS = (
    "ListBucket ListBucketVersions ListBucketMultipartUploads CreateBucket DeleteBucket GetBucketLocation "
    "GetBucketVersioning PutBucketVersioning GetBucketTagging PutBucketTagging GetBucketCORS PutBucketCORS "
    "GetLifecycleConfiguration PutLifecycleConfiguration GetBucketPolicy PutBucketPolicy DeleteBucketPolicy "
    "GetBucketPolicyStatus GetBucketAcl PutBucketAcl GetBucketObjectLockConfiguration "
    "PutBucketObjectLockConfiguration GetEncryptionConfiguration PutEncryptionConfiguration "
    "GetBucketPublicAccessBlock PutBucketPublicAccessBlock GetBucketOwnershipControls "
    "PutBucketOwnershipControls GetBucketLogging PutBucketLogging GetBucketNotification "
    "PutBucketNotification GetBucketWebsite PutBucketWebsite DeleteBucketWebsite "
    "GetReplicationConfiguration PutReplicationConfiguration GetAccelerateConfiguration "
    "PutAccelerateConfiguration GetBucketRequestPayment PutBucketRequestPayment "
    "GetIntelligentTieringConfiguration PutIntelligentTieringConfiguration GetInventoryConfiguration "
    "PutInventoryConfiguration GetMetricsConfiguration PutMetricsConfiguration GetAnalyticsConfiguration "
    "PutAnalyticsConfiguration"
)
ACTIONS: dict[str, str] = {
    **{"s3:" + name: "object" for name in _OBJECT_ACTIONS.split()},
    **{"s3:" + name: "bucket" for name in _BUCKET_ACTIONS.split()},
    "s3:ListAllMyBuckets": "service",
}

_STATEMENT_FIELDS = frozenset(
    {
        "Sid",
        "Effect",
        "Principal",
        "NotPrincipal",
        "Action",
        "NotAction",
        "Resource",
        "NotResource",
        "Condition",
    }
)
_DOCUMENT_FIELDS = frozenset({"Version", "Id", "Statement"})

# Org and principal ids, as lightningstor.core.principals allows them (not
# imported: that module needs Twisted and this one stays pure).
_ID = r"[A-Za-z0-9][A-Za-z0-9._@-]{0,127}"
_BARE_ORG = re.compile(rf"^{_ID}\Z")
_ORG_ARN = re.compile(rf"^arn:aws:iam::({_ID}):root\Z")
_USER_ARN = re.compile(rf"^arn:aws:iam::({_ID}):user/({_ID})\Z")
# An AWS service principal's name (``cloudtrail.amazonaws.com``).
_SERVICE = re.compile(r"^[a-z0-9][a-z0-9.-]*\.amazonaws\.com(\.cn)?\Z")

# Condition keys that, pinned to fixed values, make an Allow to everyone
# non-public (S3 Block Public Access, "The meaning of public").
_PINNING_KEYS = frozenset(
    {
        "aws:sourceip",
        "aws:sourcearn",
        "aws:sourcevpc",
        "aws:sourcevpce",
        "aws:sourceowner",
        "aws:sourceaccount",
        "aws:principalorgid",
        "aws:principalaccount",
        "aws:principalarn",
        "aws:userid",
        "s3:x-amz-server-side-encryption-aws-kms-key-id",
        "s3:dataaccesspointarn",
        "s3:dataaccesspointaccount",
    }
)
_PINNING_FAMILIES = frozenset(
    {"StringEquals", "StringEqualsIgnoreCase", "StringLike", "ArnEquals", "ArnLike"}
)
# "aws:userid outside the pattern AROLEID:*": a role's sessions are a fixed set.
_ROLE_SESSIONS = re.compile(r"^[A-Za-z0-9]+:\*\Z")


@dataclass(frozen=True)
class RequestFacts:
    """What one request's authorization is evaluated against."""

    action: str  # e.g. "s3:GetObject" (AWS's action name)
    resource: str  # "arn:aws:s3:::bucket" or "arn:aws:s3:::bucket/key"
    principal_id: str | None  # None: an anonymous (unsigned) request
    org_id: str | None  # the caller's org (tenant); None when anonymous
    # Condition keys present in the request, names lower-cased; a key not in
    # the mapping is absent from the request.
    keys: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Principals:
    """A ``Principal``/``NotPrincipal`` element: whom it names."""

    wildcard: bool = False  # "*": everyone, anonymous callers included
    orgs: frozenset[str] = frozenset()  # every principal of these orgs
    users: frozenset[tuple[str, str]] = frozenset()  # (org, principal id)
    services: frozenset[str] = frozenset()  # AWS services: kept, never match

    def matches(self, facts: RequestFacts) -> bool:
        if self.wildcard:
            return True
        if facts.principal_id is None:
            return False  # only "*" names an anonymous caller
        if facts.org_id in self.orgs:
            return True
        return (facts.org_id or "", facts.principal_id) in self.users


@dataclass(frozen=True)
class Statement:
    """One statement, compiled; ``not_*``: the element was ``NotX``."""

    sid: str | None
    effect: str
    principals: Principals
    not_principal: bool
    actions: tuple[Glob, ...]
    not_action: bool
    resources: tuple[Pattern, ...]
    not_resource: bool
    conditions: tuple[ConditionEntry, ...]

    def applies(self, facts: RequestFacts) -> bool:
        """Whether this statement's effect applies to the request: every
        element matches (a ``NotX`` element: X does not match)."""
        if any(a.fullmatch(facts.action) for a in self.actions) == self.not_action:
            return False
        keys = facts.keys
        if any(r.matches(facts.resource, keys) for r in self.resources) == self.not_resource:
            return False
        if self.principals.matches(facts) == self.not_principal:
            return False
        return all(entry.holds(keys) for entry in self.conditions)

    def is_public(self) -> bool:
        """An Allow to everyone (``*``) that no condition pins to fixed
        values (an Allow cannot use NotPrincipal)."""
        if self.effect != ALLOW or not self.principals.wildcard:
            return False
        return not any(_pins(entry) for entry in self.conditions)


@dataclass(frozen=True)
class BucketPolicy:
    """A bucket's policy: the document as sent, and its statements compiled."""

    text: str  # the document exactly as the client sent it
    version: str
    policy_id: str | None
    statements: tuple[Statement, ...]

    def evaluate(self, facts: RequestFacts) -> str | None:
        """``Deny`` if any Deny statement applies, else ``Allow`` if any Allow
        statement applies, else None (the policy neither allows nor denies)."""
        allowed = False
        for statement in self.statements:
            if (allowed and statement.effect == ALLOW) or not statement.applies(facts):
                continue
            if statement.effect == DENY:
                return DENY
            allowed = True
        return ALLOW if allowed else None

    def condition_keys(self) -> frozenset[str]:
        """Lower-cased condition keys any statement refers to, in a
        condition or a policy variable (the caller gathers costly facts,
        e.g. existing object tags, only when asked)."""
        found: set[str] = set()
        for statement in self.statements:
            for entry in statement.conditions:
                found.add(entry.key)
                if self.version == VERSION_2012:
                    for value in entry.values:
                        found.update(_variable_keys(value))
            for resource in statement.resources:
                found.update(part[1] for part in resource.parts if part[0] == "var")
        return frozenset(found)

    def is_public(self) -> bool:
        """GetBucketPolicyStatus' ``IsPublic``: whether any statement
        grants access to everyone without a condition pinning it to fixed
        values (S3 Block Public Access, "The meaning of public")."""
        return any(statement.is_public() for statement in self.statements)


def _variable_keys(value: str) -> set[str]:
    return {part[1] for part in parse_template(value, True) if part[0] == "var"}


def _pins(entry: ConditionEntry) -> bool:
    """Whether ``entry`` limits a statement to fixed values of a key that
    makes it non-public.  Operators that also pass when the key is absent
    (negated, ``...IfExists``, ``ForAllValues:``) pin nothing."""
    if entry.key not in _PINNING_KEYS or entry.family.negated or entry.if_exists:
        return False
    if entry.set_op == "ForAllValues":
        return False
    kind = entry.family.family
    if kind == "Ip":
        return entry.key == "aws:sourceip" and all(_narrow(value) for value in entry.values)
    if kind not in _PINNING_FAMILIES:
        return False
    if entry.key == "aws:userid":
        return all(_fixed(value) or _ROLE_SESSIONS.match(value) for value in entry.values)
    return all(_fixed(value) for value in entry.values)


def _fixed(value: str) -> bool:
    return not any(char in value for char in "*?") and "${" not in value


def _narrow(value: str) -> bool:
    """A CIDR no broader than /8 (IPv4) or /32 (IPv6): AWS calls broader
    ranges, such as 0.0.0.0/1, public."""
    network = parse_network(value)
    if network is None:
        return False
    return network.prefixlen >= (8 if network.version == 4 else 32)


# -- parsing ------------------------------------------------------------------------


def parse_policy(data: bytes, bucket: str) -> BucketPolicy:
    """The policy ``data`` holds for ``bucket``, validated as AWS's
    PutBucketPolicy does; ``MalformedPolicy`` with AWS's message otherwise."""
    if len(data) > MAX_POLICY_BYTES:
        raise malformed("Policy exceeds the maximum allowed document size.")
    if not data.lstrip().startswith(b"{"):
        raise malformed("Policies must be valid JSON and the first byte must be '{'")
    try:
        text = data.decode("utf-8")
        document = json.loads(text, parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):  # RecursionError: absurdly nested JSON
        raise malformed("This policy contains invalid Json") from None
    if not isinstance(document, dict):
        raise malformed("Policies must be valid JSON and the first byte must be '{'")
    _check_fields(document, _DOCUMENT_FIELDS)
    version = document.get("Version", VERSION_2008)
    if version not in (VERSION_2012, VERSION_2008):
        raise malformed("The policy must contain a valid version string")
    policy_id = document.get("Id")
    if policy_id is not None and not isinstance(policy_id, str):
        raise malformed("Invalid policy syntax.")
    if "Statement" not in document:
        raise malformed("Missing required field Statement")
    raw = document["Statement"]
    raw_statements = [raw] if isinstance(raw, dict) else raw
    if not isinstance(raw_statements, list):
        raise malformed("Invalid policy syntax.")
    if not raw_statements:
        raise malformed("Could not parse the policy: Statement is empty!")
    statements = tuple(_parse_statement(item, bucket, version) for item in raw_statements)
    sids = [s.sid for s in statements if s.sid]
    if len(sids) != len(set(sids)):
        raise malformed("Statement IDs (SID) in a single policy must be unique.")
    return BucketPolicy(text=text, version=version, policy_id=policy_id, statements=statements)


def _no_constant(name: str) -> Any:
    raise ValueError(name)  # NaN, Infinity: Python's JSON extensions, not JSON


def _check_fields(obj: dict[str, Any], allowed: frozenset[str]) -> None:
    for name in obj:
        if name not in allowed:
            raise malformed(f"Unknown field {name}")


def _one_of(obj: dict[str, Any], name: str) -> tuple[Any, bool]:
    """The value of ``name`` or ``Not<name>`` (exactly one must be there)
    and whether it was the ``Not`` form."""
    has, has_not = name in obj, "Not" + name in obj
    if has and has_not:
        raise malformed("Invalid policy syntax.")
    if not has and not has_not:
        raise malformed(f"Missing required field {name}")
    return (obj["Not" + name], True) if has_not else (obj[name], False)


def _strings(value: Any, empty_message: str) -> tuple[str, ...]:
    """A string-or-list element as a tuple of strings."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise malformed("Invalid policy syntax.")
    if not items or any(not item for item in items):
        raise malformed(empty_message)
    return tuple(items)


def _parse_statement(raw: Any, bucket: str, version: str) -> Statement:
    if not isinstance(raw, dict):
        raise malformed("Invalid policy syntax.")
    _check_fields(raw, _STATEMENT_FIELDS)
    sid = raw.get("Sid")
    if sid is not None and not isinstance(sid, str):
        raise malformed("Invalid policy syntax.")
    if "Effect" not in raw:
        raise malformed("Missing required field Effect")
    effect = raw["Effect"]
    if effect not in (ALLOW, DENY):
        raise malformed(f"Invalid effect: {effect}")
    principal_value, not_principal = _one_of(raw, "Principal")
    if not_principal and effect == ALLOW:
        # AWS supports NotPrincipal with Deny only: an Allow to "everyone
        # but" would open the bucket to every tenant and unsigned caller.
        raise malformed("NotPrincipal is supported only with Effect Deny")
    principals = _parse_principals(principal_value)
    action_value, not_action = _one_of(raw, "Action")
    actions = [_parse_action(text) for text in _strings(action_value, "Policy has invalid action")]
    resource_value, not_resource = _one_of(raw, "Resource")
    variables = version == VERSION_2012
    resources = [
        _parse_resource(text, bucket, variables)
        for text in _strings(resource_value, "Policy has invalid resource")
    ]
    conditions = _parse_conditions(raw.get("Condition"), version)
    if not not_action and not not_resource:
        _check_applicable(actions, resources)
    return Statement(
        sid=sid or None,
        effect=effect,
        principals=principals,
        not_principal=not_principal,
        actions=tuple(action for action, _ in actions),
        not_action=not_action,
        resources=tuple(resource for resource, _, _ in resources),
        not_resource=not_resource,
        conditions=conditions,
    )


def _parse_principals(value: Any) -> Principals:
    if value == "*":
        return Principals(wildcard=True)
    if not isinstance(value, dict) or not value or not set(value) <= {"AWS", "Service"}:
        raise malformed("Invalid principal in policy")
    services = _strings(value.get("Service", []), "Invalid principal in policy") if "Service" in value else ()
    if not all(_SERVICE.match(name) for name in services):
        raise malformed("Invalid principal in policy")
    names = _strings(value["AWS"], "Invalid principal in policy") if "AWS" in value else ()
    orgs: set[str] = set()
    users: set[tuple[str, str]] = set()
    for name in names:
        if name == "*":
            return Principals(wildcard=True)
        org = _ORG_ARN.match(name) or _BARE_ORG.match(name)
        user = _USER_ARN.match(name)
        if user:
            users.add((user.group(1), user.group(2)))
        elif org:
            orgs.add(org.group(1) if org.groups() else org.group(0))
        else:
            raise malformed("Invalid principal in policy")
    return Principals(orgs=frozenset(orgs), users=frozenset(users), services=frozenset(services))


def _parse_action(text: str) -> tuple[Glob, frozenset[str]]:
    """An action pattern and the resource types of the S3 actions it names."""
    service, colon, name = text.partition(":")
    if text != "*" and (not colon or service.lower() != "s3" or not name):
        raise malformed("Policy has invalid action")
    pattern = compile_glob(text, ignore_case=True)
    kinds = frozenset(kind for action, kind in ACTIONS.items() if pattern.fullmatch(action))
    if not kinds:
        raise malformed("Policy has invalid action")
    return pattern, kinds


def _parse_resource(text: str, bucket: str, variables: bool) -> tuple[Pattern, bool, bool]:
    """A resource pattern of this bucket, and whether it can name the
    bucket and whether objects of it.  AWS refuses a pattern that names
    neither (another bucket's, or the bare ``*``)."""
    if not text.startswith(_ARN_PREFIX) or text == _ARN_PREFIX or text.startswith(_ARN_PREFIX + "/"):
        raise malformed("Policy has invalid resource")
    # For the check a variable may stand for anything, an escape for one
    # character; at evaluation they are substituted.
    shape = "".join(
        part[1] if part[0] == "text" else ("?" if part[0] == "literal" else "*")
        for part in parse_template(text[len(_ARN_PREFIX) :], variables)
    )
    names_bucket = compile_glob(shape).fullmatch(bucket)
    names_objects = glob_can_start_with(shape, bucket + "/")
    if not names_bucket and not names_objects:
        raise malformed("Policy has invalid resource")
    return Pattern(text, variables=variables), names_bucket, names_objects


def _check_applicable(
    actions: list[tuple[Glob, frozenset[str]]], resources: list[tuple[Pattern, bool, bool]]
) -> None:
    """Each action must act on a resource the statement names: a bucket
    action on the bucket, an object action on objects."""
    bucket = any(names_bucket for _, names_bucket, _ in resources)
    objects = any(names_objects for _, _, names_objects in resources)
    for _, kinds in actions:
        if not (("bucket" in kinds and bucket) or ("object" in kinds and objects)):
            raise malformed("Action does not apply to any resource(s) in statement")


def _parse_conditions(raw: Any, version: str) -> tuple[ConditionEntry, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise malformed("Invalid policy syntax.")
    entries = []
    for operator, block in raw.items():
        if not isinstance(block, dict):
            raise malformed("Invalid policy syntax.")
        for key, value in block.items():
            entries.append(compile_entry(operator, key, _condition_values(value), version))
    return tuple(entries)


def _condition_values(value: Any) -> tuple[str, ...]:
    """A condition's value(s) as text: JSON strings, numbers and booleans
    all stand for their text (``10``, ``true``)."""
    items = value if isinstance(value, list) else [value]
    out = []
    for item in items:
        if isinstance(item, bool):
            out.append("true" if item else "false")
        elif isinstance(item, str | int | float):
            out.append(str(item))
        else:
            raise malformed("Invalid policy syntax.")
    return tuple(out)
