"""POST policies (lightningstor.s3.postpolicy): parsing, conditions, expiry, signatures."""

from __future__ import annotations

import base64
import calendar
import hashlib
import hmac
import json
from typing import Any

import pytest

from lightningstor import errors
from lightningstor.s3 import postpolicy
from lightningstor.s3.postpolicy import check_conditions, check_expiration, check_length, parse_policy

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
NOON = calendar.timegm((2030, 1, 2, 12, 0, 0))


def encode(document: Any) -> str:
    return base64.b64encode(json.dumps(document).encode()).decode()


def policy(*conditions: Any, expiration: str = "2030-01-02T12:00:00.000Z") -> postpolicy.PostPolicy:
    return parse_policy(encode({"expiration": expiration, "conditions": list(conditions)}))


def denied_message(p: postpolicy.PostPolicy, fields: dict[str, str], bucket: str = "b") -> str:
    with pytest.raises(errors.S3Error) as e:
        check_conditions(p, fields, bucket)
    assert (e.value.code, e.value.status) == ("AccessDenied", 403)
    return e.value.message


# -- the document ------------------------------------------------------------------
def test_expiration_and_length_range_are_read() -> None:
    """``expiration`` (with or without fractions) becomes epoch seconds;
    content-length-range its inclusive bounds (numbers or numeric strings)."""
    p = policy(["content-length-range", 1, "10"])
    assert p.expiration == NOON
    assert p.length_range == (1, 10)
    assert policy(expiration="2030-01-02T12:00:00Z").expiration == NOON


@pytest.mark.parametrize("document", [
    {"conditions": []},  # no expiration
    {"EXPIRATION": "2030-01-02T12:00:00Z", "conditions": []},  # top-level keys are case-sensitive
    {"expiration": "2030-01-02 12:00:00+00:00", "conditions": []},  # not AWS's ISO 8601 form
    {"expiration": "2030-01-02T12:00:00Z"},  # no conditions
    {"expiration": "2030-01-02T12:00:00Z", "CONDITIONS": []},
    {"expiration": "2030-01-02T12:00:00Z", "conditions": [{}]},  # an empty condition
    {"expiration": "2030-01-02T12:00:00Z", "conditions": [["content-length-range", 0]]},
    {"expiration": "2030-01-02T12:00:00Z", "conditions": [["content-length-range", -1, 0]]},
    {"expiration": "2030-01-02T12:00:00Z", "conditions": [["content-length-range", 5, 4]]},
    {"expiration": "2030-01-02T12:00:00Z", "conditions": [["eq", "key", "x"]]},  # no "$"
    {"expiration": "2030-01-02T12:00:00Z", "conditions": [["matches", "$key", "x"]]},
    {"expiration": "2030-01-02T12:00:00Z", "conditions": [["eq", "$key"]]},
    {"expiration": "2030-01-02T12:00:00Z", "conditions": [{"key": 5}]},
])  # fmt: skip
def test_invalid_documents_are_400(document: Any) -> None:
    """What AWS refuses as a policy is 400 InvalidPolicyDocument."""
    with pytest.raises(errors.S3Error) as e:
        parse_policy(encode(document))
    assert (e.value.code, e.value.status) == ("InvalidPolicyDocument", 400)


def test_not_base64_json_is_400() -> None:
    """A policy that is not base64 of a JSON object (or nests deeper than the
    JSON reader recurses): InvalidPolicyDocument, never a 500."""
    nested = b'{"expiration": "2030-01-02T12:00:00Z", "conditions": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    for encoded in ("not base64!", base64.b64encode(b"[1, 2]").decode(), base64.b64encode(b"{").decode(),
                    base64.b64encode(nested).decode()):
        with pytest.raises(errors.S3Error) as e:
            parse_policy(encoded)
        assert e.value.code == "InvalidPolicyDocument"


# -- conditions ----------------------------------------------------------------------
def test_exact_starts_with_and_eq_conditions_hold() -> None:
    """Object form, eq and starts-with (empty prefix: anything) all hold;
    names and operators are case-insensitive, the bucket is the request's."""
    p = policy({"bUcKeT": "b"}, ["StArTs-WiTh", "$KeY", "user/"], ["eq", "$acl", "private"],
               ["starts-with", "$Content-Type", ""], {"success_action_status": "201"})
    check_conditions(p, {"key": "user/1", "acl": "private", "content-type": "x/y", "success_action_status": "201"}, "b")


def test_a_failed_condition_names_itself() -> None:
    """AWS's wording: "Invalid according to Policy: Policy Condition failed: [...]"."""
    p = policy({"bucket": "b"}, ["starts-with", "$key", "user/"])
    message = denied_message(p, {"key": "admin/1"})
    assert message == 'Invalid according to Policy: Policy Condition failed: ["starts-with", "$key", "user/"]'
    assert "eq" in denied_message(policy(["eq", "$acl", "private"]), {"acl": "public-read"})


def test_condition_on_a_missing_field_fails() -> None:
    """A condition whose field the form does not carry fails, even ``""``."""
    assert "Condition failed" in denied_message(policy(["eq", "$x-amz-meta-a", ""]), {})
    assert "Condition failed" in denied_message(policy(["starts-with", "$content-type", ""]), {})


def test_bucket_condition_must_match_the_request() -> None:
    """A policy for bucket ``a`` does not allow a POST to bucket ``b``."""
    assert "Condition failed" in denied_message(policy({"bucket": "a"}), {}, bucket="b")


def test_fields_not_covered_are_extra_input() -> None:
    """Every field but file, policy, the signature fields and x-ignore-* must
    be covered; the others are listed (sorted)."""
    p = policy({"key": "k"})
    ok = {"key": "k", "policy": "p", "x-amz-signature": "s", "signature": "s", "awsaccesskeyid": "a",
          "file": "", "x-ignore-me": "1"}
    check_conditions(p, ok, "b")
    message = denied_message(p, {**ok, "x-amz-meta-b": "1", "acl": "private"})
    assert message == "Invalid according to Policy: Extra input fields: acl, x-amz-meta-b"


def test_comma_separated_content_type_must_match_each() -> None:
    """AWS: each value of a comma-separated Content-Type meets starts-with."""
    p = policy(["starts-with", "$content-type", "image/"])
    check_conditions(p, {"content-type": "image/png, image/gif"}, "b")
    denied_message(p, {"content-type": "image/png, text/html"})


def test_expiration() -> None:
    """Before the expiration: allowed; at or after it: 403 "Policy expired."."""
    p = policy()
    check_expiration(p, NOON - 1)
    with pytest.raises(errors.S3Error) as e:
        check_expiration(p, NOON)
    assert (e.value.code, e.value.message) == ("AccessDenied", "Invalid according to Policy: Policy expired.")


def test_length_range() -> None:
    """Inside the range (inclusive): fine; outside: EntityTooSmall/TooLarge."""
    p = policy(["content-length-range", 2, 4])
    for size in (2, 3, 4):
        check_length(p, size)
    with pytest.raises(errors.S3Error) as e:
        check_length(p, 1)
    assert (e.value.code, e.value.fields["MinSizeAllowed"]) == ("EntityTooSmall", "2")
    with pytest.raises(errors.S3Error) as e:
        check_length(p, 5)
    assert (e.value.code, e.value.fields["MaxSizeAllowed"]) == ("EntityTooLarge", "4")
    check_length(policy(), 10**12)  # no range: no bound here


# -- signatures -------------------------------------------------------------------------
def v4_fields(encoded: str, secret: str = SECRET, **over: str) -> dict[str, str]:
    """A SigV4 form's signature fields, signed here from the AWS documentation."""
    key = f"AWS4{secret}".encode()
    for part in ("20300102", "us-east-1", "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    fields = {
        "x-amz-algorithm": "AWS4-HMAC-SHA256",
        "x-amz-credential": "AKIDEXAMPLE/20300102/us-east-1/s3/aws4_request",
        "x-amz-date": "20300102T000000Z",
        "x-amz-signature": hmac.new(key, encoded.encode(), hashlib.sha256).hexdigest(),
    }
    return {**fields, **over}


def test_v4_signature_verifies_and_a_wrong_one_does_not() -> None:
    """The hex HMAC-SHA256 of the base64 policy under the scope's signing key
    verifies; another secret's is SignatureDoesNotMatch (403)."""
    encoded = encode({"expiration": "2030-01-02T12:00:00Z", "conditions": []})
    creds = postpolicy.credentials_of(v4_fields(encoded), "us-east-1")
    assert (creds.scheme, creds.access_key) == ("v4", "AKIDEXAMPLE")
    postpolicy.verify_signature(creds, SECRET, encoded)
    with pytest.raises(errors.S3Error) as e:
        postpolicy.verify_signature(creds, SECRET + "x", encoded)
    assert (e.value.code, e.value.status) == ("SignatureDoesNotMatch", 403)
    with pytest.raises(errors.S3Error):
        postpolicy.verify_signature(creds, SECRET, encode({"expiration": "2031-01-01T00:00:00Z", "conditions": []}))


def test_v2_signature_verifies() -> None:
    """SigV2: base64 HMAC-SHA1 of the policy under the secret."""
    encoded = encode({"expiration": "2030-01-02T12:00:00Z", "conditions": []})
    good = base64.b64encode(hmac.new(SECRET.encode(), encoded.encode(), hashlib.sha1).digest()).decode()
    creds = postpolicy.credentials_of({"awsaccesskeyid": "AKID", "signature": good}, "us-east-1")
    postpolicy.verify_signature(creds, SECRET, encoded)
    bad = postpolicy.credentials_of({"awsaccesskeyid": "AKID", "signature": good[:-4] + "AAA="}, "us-east-1")
    with pytest.raises(errors.S3Error) as e:
        postpolicy.verify_signature(bad, SECRET, encoded)
    assert e.value.code == "SignatureDoesNotMatch"


@pytest.mark.parametrize("fields, code", [
    ({"awsaccesskeyid": "AKID"}, "InvalidArgument"),  # no signature
    ({"signature": "x"}, "InvalidArgument"),  # no access key
    ({"x-amz-algorithm": "AWS4-HMAC-SHA256"}, "InvalidArgument"),  # no credential, date, signature
    ({"x-amz-security-token": "t", "awsaccesskeyid": "A", "signature": "s"}, "NotImplemented"),
])  # fmt: skip
def test_incomplete_signature_fields(fields: dict[str, str], code: str) -> None:
    """Missing signature fields: AWS's "must contain a field named" 400; a
    session token, which this server does not issue: 501."""
    with pytest.raises(errors.S3Error) as e:
        postpolicy.credentials_of(fields, "us-east-1")
    assert e.value.code == code


def test_v4_scope_is_checked() -> None:
    """Another algorithm, a malformed credential or date, another region or
    service: refused before any secret is looked up."""
    encoded = encode({"expiration": "2030-01-02T12:00:00Z", "conditions": []})
    for over in (
        {"x-amz-algorithm": "AWS4-HMAC-SHA1"},
        {"x-amz-credential": "AKID/20300102/us-east-1"},
        {"x-amz-credential": "AKID/20300102/us-east-1/sts/aws4_request"},
        {"x-amz-date": "2030-01-02"},
        {"x-amz-credential": "AKID/20300102/eu-west-1/s3/aws4_request"},
    ):
        with pytest.raises(errors.S3Error) as e:
            postpolicy.credentials_of(v4_fields(encoded, **over), "us-east-1")
        assert e.value.status == 400, over
