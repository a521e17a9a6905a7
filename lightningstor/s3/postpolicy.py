"""POST policies: the signed document that authorizes a browser form upload.

A PostObject form carries ``policy`` (base64 JSON: an ``expiration`` and a
list of ``conditions`` the other form fields must meet) and a signature of
that base64 text: SigV4 (``x-amz-signature``, hex HMAC-SHA256 under the
signing key of ``x-amz-credential``'s scope) or SigV2 (``signature``,
base64 HMAC-SHA1 under the secret).  AWS: "Creating a POST Policy".

This module lives in the S3 layer rather than in :mod:`lightningstor.auth`
because most of it is about form fields (which field names are exempt,
``${filename}``, ``success_action_*``), the S3 wire format; the
cryptography is :mod:`lightningstor.auth`'s own (``sigv4.signing_key``,
``sigv4.sign_hex``, ``sigv2.sign``), not a copy.  Pure functions: the
handler looks the secret up and calls them.

Field names are compared case-insensitively (callers pass lower-case
names); condition operators and names too, as AWS does; the top-level
``expiration``/``conditions`` keys are case-sensitive.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from lightningstor import errors
from lightningstor.auth import sigv2, sigv4

# Fields no condition has to cover (AWS: the signature fields themselves,
# the file, and ``x-ignore-*``).
EXEMPT_FIELDS = frozenset({"file", "policy", "x-amz-signature", "signature", "awsaccesskeyid"})
_EXPIRATION_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?Z")
_MAX_POLICY_BYTES = 20 * 1024  # AWS: "The POST policy must be less than 20 KB"


@dataclass(frozen=True)
class Condition:
    """``op`` is ``eq`` or ``starts-with``; ``name`` the lower-case field
    name (``bucket`` for the request's bucket); ``text`` the condition as the
    policy wrote it, for error messages."""

    op: str
    name: str
    value: str
    text: str


@dataclass
class PostPolicy:
    """A parsed policy: expiry (epoch seconds), field conditions and the
    allowed file size (inclusive), if the policy bounds it."""

    expiration: float
    conditions: list[Condition] = field(default_factory=list)
    length_range: tuple[int, int] | None = None


@dataclass(frozen=True)
class PostCredentials:
    """Who claims to have signed the policy: ``scheme`` ``v4`` or ``v2``."""

    scheme: str
    access_key: str
    signature: str
    credential: sigv4.Credential | None = None


def invalid_policy(detail: str) -> errors.S3Error:
    return errors.InvalidPolicyDocument(f"Invalid Policy: {detail}")


def denied(detail: str) -> errors.S3Error:
    """AWS's 403 for a form the policy does not allow."""
    return errors.AccessDenied(f"Invalid according to Policy: {detail}")


def missing_field(name: str) -> errors.S3Error:
    """AWS's answer when a required field is absent (or comes after the file)."""
    return errors.InvalidArgument(
        f"Bucket POST must contain a field named '{name}'.  If it is specified, please check the order of the fields.",
        ArgumentName=name,
        ArgumentValue="",
    )


# -- the policy document ---------------------------------------------------
def parse_policy(encoded: str) -> PostPolicy:
    """Decode and validate the ``policy`` field; InvalidPolicyDocument (400)
    for anything that is not a policy AWS would accept."""
    if len(encoded) > _MAX_POLICY_BYTES * 4 // 3 + 4:
        raise invalid_policy("Policy document is too large.")
    try:
        document = json.loads(base64.b64decode(encoded.encode("ascii"), validate=True))
    except (ValueError, binascii.Error, RecursionError):  # RecursionError: absurdly nested JSON
        raise invalid_policy("Invalid JSON.") from None
    if not isinstance(document, dict):
        raise invalid_policy("Invalid JSON.")
    if "expiration" not in document:
        raise invalid_policy("Policy missing expiration.")
    policy = PostPolicy(_expiration(document["expiration"]))
    conditions = document.get("conditions")
    if not isinstance(conditions, list):
        raise invalid_policy("Policy missing conditions." if conditions is None else "Invalid 'conditions' value.")
    for item in conditions:
        _add_condition(policy, item)
    return policy


def _expiration(value: Any) -> float:
    if not isinstance(value, str) or not _EXPIRATION_RE.fullmatch(value):
        raise invalid_policy(f"Invalid 'expiration' value: '{value}'")
    try:
        moment = datetime.fromisoformat(value[:-1]).replace(tzinfo=UTC)
    except ValueError:
        raise invalid_policy(f"Invalid 'expiration' value: '{value}'") from None
    return moment.timestamp()


def _add_condition(policy: PostPolicy, item: Any) -> None:
    text = json.dumps(item, separators=(", ", ": "))
    if isinstance(item, dict):
        if not item:
            raise invalid_policy("Invalid Simple-Condition: Simple-Conditions must have exactly one property specified.")
        for name, value in item.items():
            if not isinstance(value, str):
                raise invalid_policy(f"Invalid Simple-Condition: value must be a string: {text}")
            policy.conditions.append(Condition("eq", name.lower().lstrip("$"), value, text))
        return
    if not isinstance(item, list) or not item or not isinstance(item[0], str):
        raise invalid_policy(f"Invalid condition: {text}")
    op = item[0].lower()
    if op == "content-length-range":
        policy.length_range = _length_range(item, text)
        return
    if op not in ("eq", "starts-with"):
        raise invalid_policy(f"Invalid condition: unknown operation {item[0]!r}")
    if len(item) != 3 or not all(isinstance(part, str) for part in item[1:]):
        raise invalid_policy(f"Invalid {item[0]} condition: {text}")
    name, value = item[1], item[2]
    if not name.startswith("$") or len(name) < 2:
        raise invalid_policy(f"Invalid {item[0]} condition: the field name must start with '$': {text}")
    policy.conditions.append(Condition(op, name[1:].lower(), value, text))


def _length_range(item: list[Any], text: str) -> tuple[int, int]:
    if len(item) != 3:
        raise invalid_policy(f"Invalid content-length-range: {text}")
    bounds = []
    for bound in item[1:]:
        if isinstance(bound, bool) or not isinstance(bound, int | str):
            raise invalid_policy(f"Invalid content-length-range: {text}")
        try:
            bounds.append(int(bound))
        except ValueError:
            raise invalid_policy(f"Invalid content-length-range: {text}") from None
    low, high = bounds
    if low < 0 or high < low:
        raise invalid_policy(f"Invalid content-length-range: {text}")
    return low, high


# -- checks ----------------------------------------------------------------
def check_expiration(policy: PostPolicy, now: float) -> None:
    if now >= policy.expiration:
        raise denied("Policy expired.")


def check_conditions(policy: PostPolicy, fields: Mapping[str, str], bucket: str) -> None:
    """Every condition holds and every field is covered by one.

    ``fields`` maps lower-case names to values (``key`` with ``${filename}``
    already replaced); ``bucket`` is the request's bucket, which the
    ``bucket`` condition names.
    """
    values = dict(fields)
    values["bucket"] = bucket
    covered = {"bucket"}
    for condition in policy.conditions:
        covered.add(condition.name)
        value = values.get(condition.name)
        if value is None or not _holds(condition, value):
            raise denied(f"Policy Condition failed: {condition.text}")
    extra = [
        name for name in fields
        if name not in covered and name not in EXEMPT_FIELDS and not name.startswith("x-ignore-")
    ]  # fmt: skip
    if extra:
        raise denied(f"Extra input fields: {', '.join(sorted(extra))}")


def _holds(condition: Condition, value: str) -> bool:
    if condition.op == "eq":
        return value == condition.value
    if condition.name == "content-type" and "," in value:
        # AWS: each of a comma-separated Content-Type's values must match.
        return all(part.strip().startswith(condition.value) for part in value.split(","))
    return value.startswith(condition.value)


def check_length(policy: PostPolicy, size: int) -> None:
    """The file's size against ``content-length-range``: EntityTooSmall /
    EntityTooLarge (400), as AWS."""
    if policy.length_range is None:
        return
    low, high = policy.length_range
    if size < low:
        raise errors.EntityTooSmall(
            "Your proposed upload is smaller than the minimum allowed size", ProposedSize=str(size), MinSizeAllowed=str(low)
        )
    if size > high:
        raise errors.EntityTooLarge(
            "Your proposed upload exceeds the maximum allowed size", ProposedSize=str(size), MaxSizeAllowed=str(high)
        )


# -- the signature ----------------------------------------------------------
def credentials_of(fields: Mapping[str, str], region: str) -> PostCredentials:
    """The signer's claim, from the form: SigV4 when any ``x-amz-algorithm``/
    ``x-amz-signature``/``x-amz-credential`` is present, else SigV2.
    Missing pieces are AWS's "must contain a field named" errors."""
    if "x-amz-security-token" in fields:
        raise errors.NotImplementedS3("Session tokens (x-amz-security-token) are not supported by LightningStor")
    if {"x-amz-algorithm", "x-amz-signature", "x-amz-credential"} & fields.keys():
        return _v4_credentials(fields, region)
    if "awsaccesskeyid" not in fields:
        raise missing_field("AWSAccessKeyId")
    if "signature" not in fields:
        raise missing_field("Signature")
    return PostCredentials("v2", fields["awsaccesskeyid"], fields["signature"])


def _v4_credentials(fields: Mapping[str, str], region: str) -> PostCredentials:
    for name in ("x-amz-algorithm", "x-amz-credential", "x-amz-date", "x-amz-signature"):
        if name not in fields:
            raise missing_field(name)
    if fields["x-amz-algorithm"] != sigv4.ALGORITHM:
        raise errors.InvalidArgument(
            f"Only {sigv4.ALGORITHM} is supported", ArgumentName="x-amz-algorithm", ArgumentValue=fields["x-amz-algorithm"]
        )
    if not sigv4.is_amz_date(fields["x-amz-date"]):
        raise errors.InvalidArgument(
            "x-amz-date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"",
            ArgumentName="x-amz-date", ArgumentValue=fields["x-amz-date"],
        )  # fmt: skip
    credential = sigv4.split_credential(fields["x-amz-credential"])
    if credential is None or credential.service != sigv4.SERVICE or credential.terminator != sigv4.TERMINATOR:
        raise errors.InvalidArgument(
            "Invalid credential: expected <key>/<date>/<region>/s3/aws4_request",
            ArgumentName="x-amz-credential", ArgumentValue=fields["x-amz-credential"],
        )  # fmt: skip
    if region and credential.region != region:
        raise errors.AuthorizationQueryParametersError(
            f"Error parsing the X-Amz-Credential parameter; the region '{credential.region}' is wrong; expecting '{region}'",
            Region=region,
        )
    return PostCredentials("v4", credential.access_key, fields["x-amz-signature"], credential)


def expected_signature(credentials: PostCredentials, secret: str, encoded_policy: str) -> str:
    """The signature of ``encoded_policy`` that ``credentials`` must carry."""
    if credentials.scheme == "v4":
        scope = credentials.credential
        assert scope is not None
        key = sigv4.signing_key(secret, scope.date, scope.region, scope.service)
        return sigv4.sign_hex(key, encoded_policy)
    return sigv2.sign(secret, encoded_policy)


def verify_signature(credentials: PostCredentials, secret: str, encoded_policy: str) -> None:
    """SignatureDoesNotMatch (403) unless the form's signature is right."""
    expected = expected_signature(credentials, secret, encoded_policy)
    given = credentials.signature.strip()
    if credentials.scheme == "v4":
        given = given.lower()
    if not hmac.compare_digest(expected.encode(), given.encode("utf-8", "replace")):
        raise errors.SignatureDoesNotMatch(AWSAccessKeyId=credentials.access_key, StringToSign=encoded_policy)
