"""Tests for bucket CORS below the wire: rule matching and validation
(lightningstor.core.cors), the CORSConfiguration document
(lightningstor.s3.corsxml), the bucket record, preflight classification and
the access key a preflight's query names.

Request bodies come from botocore's own serializer and answers are read
back with botocore's own parser: "what boto3 sends we read, and what we
send boto3 reads".
"""

from __future__ import annotations

from typing import Any

import botocore.session
import pytest
from botocore.model import ServiceModel
from botocore.parsers import RestXMLParser
from botocore.serialize import create_serializer
from hypothesis import given, settings
from hypothesis import strategies as st

from lightningstor import errors
from lightningstor.core import access, records
from lightningstor.core.cors import (
    allowed_origin,
    find_rule,
    parse_header_list,
    validate_rules,
    wildcard_match,
)
from lightningstor.core.types import Bucket, CorsRule
from lightningstor.s3 import operations
from lightningstor.s3.addressing import parse_target
from lightningstor.s3.corsxml import MAX_CORS_BODY, cors_configuration_xml, parse_cors_configuration
from lightningstor.s3.handlers.cors import query_access_key

DETERMINISTIC = settings(derandomize=True, max_examples=200, deadline=None, database=None)


def rule(methods: tuple[str, ...] = ("GET",), origins: tuple[str, ...] = ("*",), **kw: Any) -> CorsRule:
    return CorsRule(allowed_methods=methods, allowed_origins=origins, **kw)


@pytest.fixture(scope="module")
def s3_model() -> ServiceModel:
    return botocore.session.get_session().get_service_model("s3")


def boto_body(s3_model: ServiceModel, rules: list[dict[str, Any]]) -> bytes:
    """The PutBucketCors body boto3 sends for ``rules``."""
    request = create_serializer("rest-xml").serialize_to_request(
        {"Bucket": "b", "CORSConfiguration": {"CORSRules": rules}}, s3_model.operation_model("PutBucketCors")
    )
    body: bytes = request["body"]
    return body


def boto_read(s3_model: ServiceModel, body: bytes) -> dict[str, Any]:
    """GetBucketCors' answer as boto3 reads it."""
    shape = s3_model.operation_model("GetBucketCors").output_shape
    parsed: dict[str, Any] = RestXMLParser().parse({"body": body, "headers": {}, "status_code": 200}, shape)
    return parsed


# -- wildcard and rule matching --------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("*suffix", "foo.suffix", True),
        ("*suffix", "suffix", True),
        ("*suffix", "foo.suffix.get", False),
        ("start*end", "startend", True),
        ("start*end", "start12end", True),
        ("start*end", "0start12end", False),
        ("start*end", "startenX", False),
        ("prefix*", "prefix.suffix", True),
        ("prefix*", "bla.prefix", False),
        ("*", "", True),
        ("exact", "exact", True),
        ("exact", "Exact", False),  # origins are case-sensitive
        ("a*a", "a", False),  # the prefix and suffix may not overlap
        ("a.b", "axb", False),  # "." is not a wildcard
        ("x?y", "xzy", False),  # nor is "?"
    ],
)
def test_wildcard_match(pattern: str, value: str, expected: bool) -> None:
    """``*`` stands for any run of characters, everything else for itself
    (ceph/s3-tests' origin cases)."""
    assert wildcard_match(pattern, value) is expected


@DETERMINISTIC
@given(prefix=st.text(max_size=8), middle=st.text(max_size=8), suffix=st.text(max_size=8))
def test_a_wildcard_matches_whatever_it_stands_for(prefix: str, middle: str, suffix: str) -> None:
    """``p*s`` matches ``p + anything + s``, whatever the characters."""
    pattern = prefix.replace("*", "") + "*" + suffix.replace("*", "")
    assert wildcard_match(pattern, prefix.replace("*", "") + middle + suffix.replace("*", ""))


def test_the_first_matching_rule_wins() -> None:
    """Rules are tried in order; a rule must allow the origin and the method."""
    rules = [
        rule(("PUT",), ("https://a.example",), rule_id="put-a"),
        rule(("GET",), ("https://*.example",), rule_id="get-any"),
        rule(("GET", "PUT"), ("*",), rule_id="catch-all"),
    ]
    assert find_rule(rules, "https://a.example", "PUT").rule_id == "put-a"  # type: ignore[union-attr]
    assert find_rule(rules, "https://a.example", "GET").rule_id == "get-any"  # type: ignore[union-attr]
    assert find_rule(rules, "http://other", "PUT").rule_id == "catch-all"  # type: ignore[union-attr]
    assert find_rule(rules, "http://other", "DELETE") is None


def test_requested_headers_must_each_be_allowed_case_insensitively() -> None:
    """Every header of Access-Control-Request-Headers must match an
    AllowedHeader (``*`` wildcards, any case); one that does not fails the rule."""
    rules = [rule(allowed_headers=("Content-Type", "x-amz-meta-*"))]
    assert find_rule(rules, "o", "GET", ["content-type", "X-Amz-Meta-Color"]) is not None
    assert find_rule(rules, "o", "GET", []) is not None
    assert find_rule(rules, "o", "GET", ["x-amz-date"]) is None
    assert find_rule([rule()], "o", "GET", ["x-amz-meta-header2"]) is None  # none allowed
    assert find_rule([rule(allowed_headers=("*",))], "o", "GET", ["anything", "X-Else"]) is not None


def test_allowed_origin_is_star_only_for_the_bare_wildcard() -> None:
    """``Access-Control-Allow-Origin`` echoes the origin unless the rule's
    matching origin is exactly ``*``."""
    assert allowed_origin(rule(origins=("*",)), "https://x") == "*"
    assert allowed_origin(rule(origins=("https://*",)), "https://x") == "https://x"
    assert allowed_origin(rule(origins=("https://x", "*")), "https://x") == "https://x"


def test_parse_header_list() -> None:
    """Comma-separated, blanks and spaces dropped."""
    assert parse_header_list(" a, B ,,c ") == ["a", "B", "c"]
    assert parse_header_list(None) == []
    assert parse_header_list("") == []


# -- validation -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("rules", "code", "message"),
    [
        ([], "MalformedXML", None),
        ([rule()] * 101, "MalformedXML", None),
        ([rule(methods=())], "MalformedXML", None),
        ([rule(origins=())], "MalformedXML", None),
        (
            [rule(methods=("GET", "PATCH"))],
            "InvalidRequest",
            "Found unsupported HTTP method in CORS config. Unsupported method is PATCH",
        ),
        ([rule(methods=("get",))], "InvalidRequest", None),  # methods are upper case
        ([rule(origins=("*.a.*",))], "InvalidRequest", 'AllowedOrigin "*.a.*" can not have more than one wildcard.'),
        ([rule(allowed_headers=("**",))], "InvalidRequest", None),
        ([rule(expose_headers=("x-*",))], "InvalidRequest", None),
        ([rule(rule_id="x" * 256)], "InvalidArgument", None),
    ],
)
def test_configurations_aws_refuses(rules: list[CorsRule], code: str, message: str | None) -> None:
    """Each refused with AWS's code (and, where pinned, its message)."""
    with pytest.raises(errors.S3Error) as info:
        validate_rules(rules)
    assert info.value.code == code
    if message is not None:
        assert info.value.message == message


def test_a_full_configuration_is_accepted() -> None:
    """100 rules, every method, one wildcard per origin and header."""
    validate_rules([rule(("GET", "PUT", "POST", "DELETE", "HEAD"), ("https://*.x",), allowed_headers=("*",),
                         expose_headers=("ETag",), max_age_seconds=0, rule_id="r")] * 100)


# -- the XML document -----------------------------------------------------------


def test_boto3_bodies_round_trip(s3_model: ServiceModel) -> None:
    """What boto3 sends is read as the rules it meant, and what we send back
    boto3 reads as the same rules."""
    sent = [
        {"ID": "one", "AllowedHeaders": ["*"], "AllowedMethods": ["GET", "PUT"],
         "AllowedOrigins": ["https://*.example.com", "http://localhost:3000"],
         "ExposeHeaders": ["ETag", "x-amz-request-id"], "MaxAgeSeconds": 3000},
        {"AllowedMethods": ["HEAD"], "AllowedOrigins": ["*"]},
    ]  # fmt: skip
    rules = parse_cors_configuration(boto_body(s3_model, sent))
    assert rules[0] == CorsRule(("GET", "PUT"), ("https://*.example.com", "http://localhost:3000"), ("*",),
                                ("ETag", "x-amz-request-id"), 3000, "one")
    assert rules[1] == CorsRule(("HEAD",), ("*",))
    assert boto_read(s3_model, cors_configuration_xml(rules))["CORSRules"] == sent


def test_awkward_text_round_trips(s3_model: ServiceModel) -> None:
    """XML-special characters in origins and ids survive both ways."""
    sent = [{"ID": "a<b>&\"c'", "AllowedMethods": ["GET"], "AllowedOrigins": ["https://ü.example/&<>"]}]
    rules = parse_cors_configuration(boto_body(s3_model, sent))
    assert boto_read(s3_model, cors_configuration_xml(rules))["CORSRules"] == sent


@pytest.mark.parametrize(
    "body",
    [
        b"not xml",
        b"<CORSConfiguration><CORSRule><AllowedMethod>GET</AllowedMethod>",
        b"<Other/>",
        b"<CORSConfiguration><Unknown/></CORSConfiguration>",
        b"<CORSConfiguration><CORSRule><Bogus>1</Bogus></CORSRule></CORSConfiguration>",
        b"<CORSConfiguration><CORSRule><MaxAgeSeconds>-1</MaxAgeSeconds></CORSRule></CORSConfiguration>",
        b"<CORSConfiguration><CORSRule><MaxAgeSeconds>ten</MaxAgeSeconds></CORSRule></CORSConfiguration>",
        b"<CORSConfiguration><CORSRule><MaxAgeSeconds>99999999999</MaxAgeSeconds></CORSRule></CORSConfiguration>",
        b"<CORSConfiguration><CORSRule><ID>a</ID><ID>b</ID></CORSRule></CORSConfiguration>",
        b"<CORSConfiguration><CORSRule><AllowedMethod><x/></AllowedMethod></CORSRule></CORSConfiguration>",
    ],
)
def test_malformed_documents(body: bytes) -> None:
    """Not XML, the wrong root, unknown or repeated elements, a MaxAgeSeconds
    that is not a non-negative 32-bit integer: MalformedXML."""
    with pytest.raises(errors.MalformedXML):
        parse_cors_configuration(body)


def test_a_body_over_64_kib_is_refused_before_parsing() -> None:
    """AWS's size limit for a CORS configuration."""
    origin = "<AllowedOrigin>" + "o" * 1000 + "</AllowedOrigin>"
    body = ("<CORSConfiguration><CORSRule><AllowedMethod>GET</AllowedMethod>"
            + origin * 70 + "</CORSRule></CORSConfiguration>").encode()  # fmt: skip
    assert len(body) > MAX_CORS_BODY
    with pytest.raises(errors.S3Error) as info:
        parse_cors_configuration(body)
    assert info.value.code == "MaxMessageLengthExceeded"


# -- the bucket record ----------------------------------------------------------


def test_rules_round_trip_through_the_bucket_record() -> None:
    """Stored with the bucket (both metadata stores keep the same record);
    a record without rules is written exactly as before."""
    bucket = Bucket("b", "id", "org", None, 1, 2, "me")
    plain = records.encode_bucket(bucket)
    assert b"cors" not in plain and records.decode_bucket(plain).cors == ()
    bucket.cors = (rule(("GET", "PUT"), ("https://*.x",), allowed_headers=("*",), expose_headers=("ETag",),
                        max_age_seconds=5, rule_id="r1"), rule())
    assert records.decode_bucket(records.encode_bucket(bucket)) == bucket


# -- classification, authorization and the preflight's key ------------------------


@pytest.mark.parametrize(
    ("method", "uri", "op"),
    [
        ("GET", b"/b?cors", "GetBucketCors"),
        ("PUT", b"/b?cors", "PutBucketCors"),
        ("DELETE", b"/b?cors", "DeleteBucketCors"),
        ("OPTIONS", b"/b", "PreflightCors"),
        ("OPTIONS", b"/b/k", "PreflightCors"),
        ("OPTIONS", b"/b/k?partNumber=1&uploadId=u", "PreflightCors"),
        ("OPTIONS", b"/b?cors", "PreflightCors"),
        ("OPTIONS", b"/", "MethodNotAllowed"),
    ],
)
def test_classification(method: str, uri: bytes, op: str) -> None:
    """The configuration's three operations, and every OPTIONS on a bucket or
    object is a preflight whatever its query holds."""
    assert operations.classify(method, parse_target(uri, None, None)) == op


def test_cors_operations_are_authorized_like_bucket_tagging() -> None:
    """Reading the configuration takes buckets:get, changing it buckets:create."""
    assert access.action_of("GetBucketCors", False) == access.action_of("GetBucketTagging", False)
    assert access.action_of("PutBucketCors", False) == access.action_of("PutBucketTagging", False)
    assert access.action_of("DeleteBucketCors", False) == access.action_of("DeleteBucketTagging", False)
    assert access.action_of("PutBucketCors", False) == access.BUCKETS_CREATE


@pytest.mark.parametrize(
    ("query", "key"),
    [
        ({"X-Amz-Credential": "AKID123/20260101/us-east-1/s3/aws4_request"}, "AKID123"),
        ({"AWSAccessKeyId": "AKIDV2", "Signature": "x"}, "AKIDV2"),
        ({"X-Amz-Credential": ""}, ""),
        ({"uploadId": "u"}, None),
        ({}, None),
    ],
)
def test_the_access_key_a_presigned_query_names(query: dict[str, str], key: str | None) -> None:
    """SigV4's credential scope starts with the key id; SigV2 names it."""
    assert query_access_key(query) == key
