"""Tests for bucket-policy ``Condition`` operators
(lightningstor.core.policy_conditions), through parse_policy as a client
would send them: every operator, ``...IfExists``, ``ForAnyValue:`` /
``ForAllValues:``, AWS's rules for a key the request lacks, policy
variables in values, and the values and names PutBucketPolicy refuses.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from lightningstor import errors
from lightningstor.core.policy import RequestFacts, parse_policy
from lightningstor.core.policy_conditions import (
    compile_glob,
    glob_can_start_with,
    parse_date,
    parse_template,
    split_operator,
)


def policy_with(condition: dict[str, Any], version: str = "2012-10-17") -> Any:
    document = {
        "Version": version,
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": ["arn:aws:s3:::b", "arn:aws:s3:::b/*"],
                "Condition": condition,
            }
        ],
    }
    return parse_policy(json.dumps(document).encode(), "b")


def holds(condition: dict[str, Any], keys: dict[str, Any] | None = None, version: str = "2012-10-17") -> bool:
    """Whether the condition holds for a request with ``keys`` (a str value
    is one value, a tuple several)."""
    mapping = {name.lower(): (v if isinstance(v, tuple) else (v,)) for name, v in (keys or {}).items()}
    facts = RequestFacts("s3:GetObject", "arn:aws:s3:::b/k", "alice", "acme", mapping)
    return bool(policy_with(condition, version).evaluate(facts) == "Allow")


def refused(condition: Any) -> str:
    with pytest.raises(errors.MalformedPolicy) as caught:
        policy_with(condition)
    return caught.value.message


# -- string operators ------------------------------------------------------------------


def test_string_equals_case_sensitive() -> None:
    condition = {"StringEquals": {"aws:UserAgent": "Tool/1"}}
    assert holds(condition, {"aws:useragent": "Tool/1"})
    assert not holds(condition, {"aws:useragent": "tool/1"})
    assert not holds({"StringEquals": {"aws:UserAgent": "Tool/*"}}, {"aws:useragent": "Tool/1"})


def test_string_not_equals() -> None:
    condition = {"StringNotEquals": {"aws:UserAgent": ["a", "b"]}}
    assert holds(condition, {"aws:useragent": "c"})
    assert not holds(condition, {"aws:useragent": "a"})
    assert not holds(condition, {"aws:useragent": "b"})


def test_string_ignore_case() -> None:
    assert holds({"StringEqualsIgnoreCase": {"aws:UserAgent": "TOOL"}}, {"aws:useragent": "tool"})
    assert not holds({"StringEqualsIgnoreCase": {"aws:UserAgent": "TOOL"}}, {"aws:useragent": "tool2"})
    assert not holds({"StringNotEqualsIgnoreCase": {"aws:UserAgent": "TOOL"}}, {"aws:useragent": "Tool"})
    assert holds({"StringNotEqualsIgnoreCase": {"aws:UserAgent": "TOOL"}}, {"aws:useragent": "other"})


def test_string_like_wildcards() -> None:
    condition = {"StringLike": {"s3:prefix": ["home/*", "doc?.txt"]}}
    assert holds(condition, {"s3:prefix": "home/"})
    assert holds(condition, {"s3:prefix": "home/a/b"})
    assert holds(condition, {"s3:prefix": "doc1.txt"})
    assert not holds(condition, {"s3:prefix": "doc.txt"})
    assert not holds(condition, {"s3:prefix": "doc12.txt"})
    assert not holds(condition, {"s3:prefix": "Home/a"})  # case-sensitive
    assert not holds(condition, {"s3:prefix": "xhome/a"})  # anchored
    assert holds({"StringLike": {"s3:prefix": ""}}, {"s3:prefix": ""})


def test_string_not_like() -> None:
    condition = {"StringNotLike": {"s3:prefix": "private/*"}}
    assert holds(condition, {"s3:prefix": "public/x"})
    assert not holds(condition, {"s3:prefix": "private/x"})


# -- numeric, date, bool, binary --------------------------------------------------------


@pytest.mark.parametrize(
    ("operator", "results"),
    [
        ("NumericEquals", (False, True, False)),
        ("NumericNotEquals", (True, False, True)),
        ("NumericLessThan", (True, False, False)),
        ("NumericLessThanEquals", (True, True, False)),
        ("NumericGreaterThan", (False, False, True)),
        ("NumericGreaterThanEquals", (False, True, True)),
    ],
)
def test_numeric(operator: str, results: tuple[bool, bool, bool]) -> None:
    condition = {operator: {"s3:max-keys": "10"}}
    got = tuple(holds(condition, {"s3:max-keys": value}) for value in ("9", "10", "10.5"))
    assert got == results


def test_numeric_values_may_be_json_numbers_and_decimals() -> None:
    assert holds({"NumericLessThanEquals": {"s3:max-keys": 10}}, {"s3:max-keys": "10"})
    assert holds({"NumericEquals": {"s3:max-keys": 1.5}}, {"s3:max-keys": "1.50"})
    assert not holds({"NumericEquals": {"s3:max-keys": "10"}}, {"s3:max-keys": "ten"})


@pytest.mark.parametrize(
    ("operator", "results"),
    [
        ("DateEquals", (False, True, False)),
        ("DateNotEquals", (True, False, True)),
        ("DateLessThan", (True, False, False)),
        ("DateLessThanEquals", (True, True, False)),
        ("DateGreaterThan", (False, False, True)),
        ("DateGreaterThanEquals", (False, True, True)),
    ],
)
def test_dates(operator: str, results: tuple[bool, bool, bool]) -> None:
    condition = {operator: {"aws:CurrentTime": "2026-06-01T12:00:00Z"}}
    requests = ("2026-06-01T11:59:59Z", "2026-06-01T12:00:00Z", "2026-06-01T12:00:01Z")
    assert tuple(holds(condition, {"aws:currenttime": when}) for when in requests) == results


def test_date_formats() -> None:
    noon = "2026-06-01T12:00:00Z"
    # An offset, epoch seconds, fractions: all the same instant.
    for policy_value in ("2026-06-01T14:00:00+02:00", "1780315200", 1780315200, "2026-06-01T12:00:00.000Z"):
        assert holds({"DateEquals": {"aws:CurrentTime": policy_value}}, {"aws:currenttime": noon}), (
            policy_value
        )
    assert holds({"DateEquals": {"aws:EpochTime": noon}}, {"aws:epochtime": "1780315200"})
    assert holds({"DateLessThan": {"aws:CurrentTime": "2027"}}, {"aws:currenttime": noon})
    assert holds({"DateGreaterThan": {"aws:CurrentTime": "2026-05"}}, {"aws:currenttime": noon})
    assert holds({"DateLessThan": {"aws:CurrentTime": "2026-06-02"}}, {"aws:currenttime": noon})
    assert not holds({"DateLessThan": {"aws:CurrentTime": "2026-06-02"}}, {"aws:currenttime": "not a date"})


def test_parse_date() -> None:
    assert parse_date("1970-01-01T00:00:00Z") == 0.0
    assert parse_date("1970-01-01") == 0.0
    assert parse_date("86400") == 86400.0
    assert parse_date("yesterday") is None


def test_bool() -> None:
    assert holds({"Bool": {"aws:SecureTransport": "true"}}, {"aws:securetransport": "true"})
    assert holds({"Bool": {"aws:SecureTransport": True}}, {"aws:securetransport": "TRUE"})
    assert holds({"Bool": {"aws:SecureTransport": "False"}}, {"aws:securetransport": "false"})
    assert not holds({"Bool": {"aws:SecureTransport": "true"}}, {"aws:securetransport": "false"})


def test_binary_equals() -> None:
    condition = {"BinaryEquals": {"aws:UserAgent": "QmluYXJ5VmFsdWVJbkJhc2U2NA=="}}
    assert holds(condition, {"aws:useragent": "BinaryValueInBase64"})
    assert not holds(condition, {"aws:useragent": "QmluYXJ5VmFsdWVJbkJhc2U2NA=="})


# -- IP addresses ------------------------------------------------------------------------


def test_ip_address_v4_and_v6() -> None:
    condition = {"IpAddress": {"aws:SourceIp": ["203.0.113.0/24", "2001:DB8:1234:5678::/64"]}}
    assert holds(condition, {"aws:sourceip": "203.0.113.7"})
    assert holds(condition, {"aws:sourceip": "2001:db8:1234:5678::1"})
    assert not holds(condition, {"aws:sourceip": "203.0.114.7"})
    assert not holds(condition, {"aws:sourceip": "2001:db8:1234:5679::1"})
    assert not holds(condition, {"aws:sourceip": "not-an-ip"})


def test_ip_bare_address_is_one_host_and_host_bits_are_ignored() -> None:
    assert holds({"IpAddress": {"aws:SourceIp": "203.0.113.5"}}, {"aws:sourceip": "203.0.113.5"})
    assert not holds({"IpAddress": {"aws:SourceIp": "203.0.113.5"}}, {"aws:sourceip": "203.0.113.6"})
    assert holds({"IpAddress": {"aws:SourceIp": "203.0.113.5/24"}}, {"aws:sourceip": "203.0.113.200"})


def test_ip_aws_doc_example_allow_range_except_one() -> None:
    condition = {
        "IpAddress": {"aws:SourceIp": "54.240.143.0/24"},
        "NotIpAddress": {"aws:SourceIp": "54.240.143.188/32"},
    }
    assert holds(condition, {"aws:sourceip": "54.240.143.1"})
    assert not holds(condition, {"aws:sourceip": "54.240.143.188"})
    assert not holds(condition, {"aws:sourceip": "54.240.144.1"})


def test_not_ip_address() -> None:
    condition = {"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}}
    assert holds(condition, {"aws:sourceip": "11.0.0.1"})
    assert not holds(condition, {"aws:sourceip": "10.0.0.1"})
    assert holds(condition, {"aws:sourceip": "::1"})  # another family is outside the range


# -- ARNs --------------------------------------------------------------------------------


def test_arn_like_matches_component_by_component() -> None:
    """AWS's own example: StringLike matches across the colons, ArnLike not."""
    pattern = "arn:aws:someservice:*:111122223333:finance/*"
    value = "arn:aws:someservice:us-east-2:999999999999:store/abc:111122223333:finance/document.txt"
    assert holds({"StringLike": {"aws:SourceArn": pattern}}, {"aws:sourcearn": value})
    assert not holds({"ArnLike": {"aws:SourceArn": pattern}}, {"aws:sourcearn": value})
    good = "arn:aws:someservice:us-east-2:111122223333:finance/a:b/c.txt"
    assert holds({"ArnLike": {"aws:SourceArn": pattern}}, {"aws:sourcearn": good})


def test_arn_equals_behaves_like_arn_like() -> None:
    pattern = "arn:aws:sns:us-east-?:111122223333:topic-*"
    for operator in ("ArnEquals", "ArnLike"):
        assert holds(
            {operator: {"aws:SourceArn": pattern}},
            {"aws:sourcearn": "arn:aws:sns:us-east-1:111122223333:topic-a"},
        )
        assert not holds(
            {operator: {"aws:SourceArn": pattern}},
            {"aws:sourcearn": "arn:aws:sns:us-west-1:111122223333:topic-a"},
        )
    for operator in ("ArnNotEquals", "ArnNotLike"):
        assert not holds(
            {operator: {"aws:SourceArn": pattern}},
            {"aws:sourcearn": "arn:aws:sns:us-east-2:111122223333:topic-b"},
        )
        assert holds(
            {operator: {"aws:SourceArn": pattern}},
            {"aws:sourcearn": "arn:aws:sqs:us-east-2:111122223333:topic-b"},
        )


def test_arn_value_that_is_no_arn() -> None:
    condition = {"ArnLike": {"aws:SourceArn": "arn:aws:sns:*:1:t"}}
    assert not holds(condition, {"aws:sourcearn": "arn:aws:sns"})


# -- missing keys ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operator", "value", "when_missing"),
    [
        ("StringEquals", "x", False),
        ("StringNotEquals", "x", True),
        ("StringEqualsIgnoreCase", "x", False),
        ("StringNotEqualsIgnoreCase", "x", True),
        ("StringLike", "*", False),
        ("StringNotLike", "x*", True),
        ("NumericEquals", "1", False),
        ("NumericNotEquals", "1", True),
        ("NumericLessThan", "1", False),
        ("NumericGreaterThanEquals", "1", False),
        ("DateEquals", "2026-01-01", False),
        ("DateNotEquals", "2026-01-01", True),
        ("DateGreaterThan", "2026-01-01", False),
        ("Bool", "false", False),
        ("BinaryEquals", "eA==", False),
        ("IpAddress", "0.0.0.0/0", False),
        ("NotIpAddress", "10.0.0.0/8", True),
        ("ArnEquals", "*", False),
        ("ArnLike", "*", False),
        ("ArnNotEquals", "arn:aws:s3:::x", True),
        ("ArnNotLike", "arn:aws:s3:::x", True),
    ],
)
def test_missing_key(operator: str, value: str, when_missing: bool) -> None:
    """IAM: a missing key makes an operator false and its negation true;
    ``...IfExists`` is true; ``ForAnyValue:`` false, ``ForAllValues:`` true."""
    key = "aws:UserAgent"
    assert holds({operator: {key: value}}) is when_missing
    assert holds({operator + "IfExists": {key: value}}) is True
    assert holds({"ForAnyValue:" + operator: {key: value}}) is False
    assert holds({"ForAllValues:" + operator: {key: value}}) is True
    assert holds({"ForAnyValue:" + operator + "IfExists": {key: value}}) is True
    # An empty value set is as good as missing.
    assert holds({operator: {key: value}}, {key: ()}) is when_missing
    assert holds({"ForAllValues:" + operator: {key: value}}, {key: ()}) is True
    assert holds({"ForAnyValue:" + operator: {key: value}}, {key: ()}) is False


def test_if_exists_still_tests_a_present_key() -> None:
    condition = {"StringEqualsIfExists": {"aws:UserAgent": "tool"}}
    assert holds(condition, {"aws:useragent": "tool"})
    assert not holds(condition, {"aws:useragent": "other"})
    negated = {"StringNotEqualsIfExists": {"aws:UserAgent": "tool"}}
    assert not holds(negated, {"aws:useragent": "tool"})
    assert holds(negated, {"aws:useragent": "other"})
    assert holds({"NumericLessThanIfExists": {"s3:max-keys": "10"}}, {"s3:max-keys": "5"})
    assert not holds({"NumericLessThanIfExists": {"s3:max-keys": "10"}}, {"s3:max-keys": "50"})


def test_null() -> None:
    assert holds({"Null": {"aws:TokenIssueTime": "true"}})
    assert not holds({"Null": {"aws:TokenIssueTime": "true"}}, {"aws:tokenissuetime": "2026-01-01T00:00:00Z"})
    assert holds({"Null": {"aws:TokenIssueTime": "false"}}, {"aws:tokenissuetime": "2026-01-01T00:00:00Z"})
    assert not holds({"Null": {"aws:TokenIssueTime": "false"}})
    assert holds({"Null": {"aws:TokenIssueTime": True}})
    assert holds({"Null": {"aws:TokenIssueTime": "TRUE"}})


# -- multi-valued keys ----------------------------------------------------------------------


def test_for_all_values() -> None:
    condition = {"ForAllValues:StringEquals": {"aws:TagKeys": ["color", "size"]}}
    assert holds(condition, {"aws:tagkeys": ("color",)})
    assert holds(condition, {"aws:tagkeys": ("color", "size")})
    assert not holds(condition, {"aws:tagkeys": ("color", "owner")})


def test_for_any_value() -> None:
    condition = {"ForAnyValue:StringEquals": {"aws:TagKeys": ["color", "size"]}}
    assert holds(condition, {"aws:tagkeys": ("owner", "size")})
    assert not holds(condition, {"aws:tagkeys": ("owner", "team")})
    like = {"ForAnyValue:StringLike": {"s3:RequestObjectTagKeys": "sec*"}}
    assert holds(like, {"s3:requestobjecttagkeys": ("a", "secret")})
    assert not holds(like, {"s3:requestobjecttagkeys": ("a", "b")})


def test_negated_set_operators() -> None:
    """Each request value is tested against the negated operator."""
    all_not = {"ForAllValues:StringNotEquals": {"aws:TagKeys": ["admin"]}}
    assert holds(all_not, {"aws:tagkeys": ("a", "b")})
    assert not holds(all_not, {"aws:tagkeys": ("a", "admin")})
    any_not = {"ForAnyValue:StringNotEquals": {"aws:TagKeys": ["admin"]}}
    assert holds(any_not, {"aws:tagkeys": ("a", "admin")})
    assert not holds(any_not, {"aws:tagkeys": ("admin",)})


def test_plain_operator_on_several_values() -> None:
    """Without a set operator: any request value matching is a match, and
    a negated operator holds when none does."""
    assert holds({"StringEquals": {"aws:TagKeys": "a"}}, {"aws:tagkeys": ("b", "a")})
    assert not holds({"StringNotEquals": {"aws:TagKeys": "a"}}, {"aws:tagkeys": ("b", "a")})
    assert holds({"StringNotEquals": {"aws:TagKeys": "a"}}, {"aws:tagkeys": ("b", "c")})


def test_and_across_keys_or_across_values() -> None:
    condition = {"StringEquals": {"aws:UserAgent": ["a", "b"], "aws:Referer": "r"}}
    assert holds(condition, {"aws:useragent": "b", "aws:referer": "r"})
    assert not holds(condition, {"aws:useragent": "b", "aws:referer": "x"})
    assert not holds(condition, {"aws:useragent": "c", "aws:referer": "r"})
    assert not holds(condition, {"aws:useragent": "a"})


# -- condition keys -----------------------------------------------------------------------


def test_condition_key_names_case_insensitive() -> None:
    assert holds({"IpAddress": {"AWS:SOURCEIP": "10.0.0.0/8"}}, {"aws:sourceip": "10.1.1.1"})
    assert holds(
        {"StringEquals": {"S3:ExistingObjectTag/Color": "red"}}, {"s3:existingobjecttag/color": "red"}
    )


@pytest.mark.parametrize(
    "key",
    [
        "aws:Nope",
        "s3:ExistingObjectTag/",
        "aws:PrincipalTag/",
        "color",
        "s3:prefixes",
        "iam:PassedToService",
        "",
    ],
)
def test_invalid_condition_key(key: str) -> None:
    assert refused({"StringEquals": {key: "x"}}) == "Policy has an invalid condition key"


@pytest.mark.parametrize(
    "key",
    [
        "aws:SourceIp",
        "aws:SecureTransport",
        "aws:PrincipalTag/team",
        "aws:RequestTag/team",
        "aws:TagKeys",
        "aws:ResourceAccount",
        "s3:ExistingObjectTag/color",
        "s3:RequestObjectTag/color",
        "s3:object-lock-remaining-retention-days",
        "s3:x-amz-server-side-encryption-aws-kms-key-id",
        "s3:TlsVersion",
        "s3:signatureAge",
    ],
)
def test_known_condition_keys(key: str) -> None:
    policy_with({"StringEqualsIfExists": {key: "x"}})


# -- operator names and values PutBucketPolicy refuses ------------------------------------------


@pytest.mark.parametrize(
    "operator",
    [
        "StringEqual",
        "stringequals",
        "NullIfExists",
        "ForAnyValue:Null",
        "ForSomeValues:StringEquals",
        "ForAllValues:",
        "IfExists",
        "StringEqualsIfExistsIfExists",
        "NumericNotLessThan",
    ],
)
def test_invalid_condition_type(operator: str) -> None:
    assert refused({operator: {"aws:UserAgent": "x"}}) == f"Invalid Condition type : {operator}"


def test_split_operator() -> None:
    set_op, family, if_exists = split_operator("ForAllValues:StringNotLikeIfExists")
    assert (set_op, family.family, family.negated, if_exists) == ("ForAllValues", "StringLike", True, True)


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        ({"IpAddress": {"aws:SourceIp": "10.0.0.0/33"}}, "Invalid IP address in Conditions"),
        ({"NotIpAddress": {"aws:SourceIp": "not-an-ip"}}, "Invalid IP address in Conditions"),
        ({"IpAddress": {"aws:SourceIp": "${aws:SourceIp}"}}, "Invalid IP address in Conditions"),
        ({"NumericLessThan": {"s3:max-keys": "ten"}}, "Invalid numeric value in Conditions: ten"),
        ({"NumericLessThan": {"s3:max-keys": "NaN"}}, "Invalid numeric value in Conditions: NaN"),
        ({"DateLessThan": {"aws:CurrentTime": "tomorrow"}}, "Invalid date value in Conditions: tomorrow"),
        ({"Bool": {"aws:SecureTransport": "yes"}}, "Invalid boolean value in Conditions: yes"),
        ({"Null": {"aws:SecureTransport": "maybe"}}, "Invalid boolean value in Conditions: maybe"),
        ({"BinaryEquals": {"aws:UserAgent": "***"}}, "Invalid binary value in Conditions: ***"),
        ({"StringEquals": {"aws:UserAgent": []}}, "Invalid policy syntax."),
        ({"StringEquals": {"aws:UserAgent": {"a": "b"}}}, "Invalid policy syntax."),
        ({"StringEquals": {"aws:UserAgent": [["a"]]}}, "Invalid policy syntax."),
        ({"StringEquals": {"aws:UserAgent": None}}, "Invalid policy syntax."),
        ({"StringEquals": "aws:UserAgent"}, "Invalid policy syntax."),
        ("StringEquals", "Invalid policy syntax."),
    ],
)
def test_invalid_values(condition: Any, message: str) -> None:
    assert refused(condition) == message


def test_string_values_may_be_numbers_and_booleans() -> None:
    assert holds({"StringEquals": {"s3:max-keys": 10}}, {"s3:max-keys": "10"})
    assert holds({"StringEquals": {"aws:SecureTransport": True}}, {"aws:securetransport": "true"})


# -- policy variables in values ----------------------------------------------------------------


def test_variables_in_string_values() -> None:
    condition = {"StringLike": {"s3:prefix": ["", "home/", "home/${aws:username}/*"]}}
    assert holds(condition, {"s3:prefix": "home/alice/x", "aws:username": "alice"})
    assert not holds(condition, {"s3:prefix": "home/bob/x", "aws:username": "alice"})
    assert holds(condition, {"s3:prefix": "home/", "aws:username": "alice"})
    # A missing variable makes only that value match nothing.
    assert not holds(condition, {"s3:prefix": "home/alice/x"})
    assert holds(condition, {"s3:prefix": ""})


def test_substituted_text_is_no_wildcard() -> None:
    condition = {"StringLike": {"s3:prefix": "${aws:username}/*"}}
    assert holds(condition, {"s3:prefix": "a*/x", "aws:username": "a*"})
    assert not holds(condition, {"s3:prefix": "ab/x", "aws:username": "a*"})


def test_variables_in_equals_ignore_case_and_arns() -> None:
    assert holds(
        {"StringEquals": {"aws:Referer": "${aws:username}"}}, {"aws:referer": "al", "aws:username": "al"}
    )
    assert not holds({"StringEquals": {"aws:Referer": "${aws:username}"}}, {"aws:referer": "al"})
    assert holds(
        {"StringEqualsIgnoreCase": {"aws:Referer": "x-${aws:username}"}},
        {"aws:referer": "X-AL", "aws:username": "al"},
    )
    arn = {"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::${aws:PrincipalAccount}:user/*"}}
    assert holds(arn, {"aws:principalarn": "arn:aws:iam::acme:user/al", "aws:principalaccount": "acme"})
    assert not holds(arn, {"aws:principalarn": "arn:aws:iam::other:user/al", "aws:principalaccount": "acme"})
    # The substituted value does not split ARN components.
    assert not holds(arn, {"aws:principalarn": "arn:aws:iam::a:b:user/al", "aws:principalaccount": "a"})


def test_negated_operator_with_unresolved_variable() -> None:
    """The value matches nothing, so its negation holds."""
    assert holds({"StringNotEquals": {"aws:Referer": "${aws:username}"}}, {"aws:referer": "x"})


def test_variable_default() -> None:
    condition = {"StringEquals": {"aws:Referer": "${aws:username, 'nobody'}"}}
    assert holds(condition, {"aws:referer": "nobody"})
    assert holds(condition, {"aws:referer": "al", "aws:username": "al"})


def test_escapes_in_values() -> None:
    condition = {"StringLike": {"aws:Referer": "a${*}b*"}}
    assert holds(condition, {"aws:referer": "a*bzz"})
    assert not holds(condition, {"aws:referer": "axbzz"})


def test_variables_are_text_in_2008_and_in_other_operators() -> None:
    condition = {"StringEquals": {"aws:Referer": "${aws:username}"}}
    assert not holds(condition, {"aws:referer": "al", "aws:username": "al"}, version="2008-10-17")
    assert holds(condition, {"aws:referer": "${aws:username}"}, version="2008-10-17")
    with pytest.raises(errors.MalformedPolicy):
        policy_with({"NumericEquals": {"s3:max-keys": "${s3:max-keys}"}})


# -- helpers ---------------------------------------------------------------------------------


def test_compile_glob() -> None:
    assert compile_glob("a*c").fullmatch("abbbc")
    assert compile_glob("a*c").fullmatch("ac")
    assert compile_glob("a?c").fullmatch("abc")
    assert not compile_glob("a?c").fullmatch("ac")
    assert compile_glob("a*").fullmatch("a/b\nc")
    assert not compile_glob("A").fullmatch("a")
    assert compile_glob("A", ignore_case=True).fullmatch("a")
    assert compile_glob("a.c").fullmatch("a.c") and not compile_glob("a.c").fullmatch("abc")


def test_glob_can_start_with() -> None:
    assert glob_can_start_with("b/*", "b/")
    assert glob_can_start_with("b*", "b/")
    assert glob_can_start_with("*", "b/")
    assert glob_can_start_with("?/x", "b/")
    assert glob_can_start_with("b/x", "b/")
    assert not glob_can_start_with("b", "b/")
    assert not glob_can_start_with("c*", "b/")
    assert glob_can_start_with("b?", "b/")  # "?" can be the slash
    assert not glob_can_start_with("bb/*", "b/")


def test_parse_template() -> None:
    assert parse_template("a${aws:username}b", True) == (
        ("text", "a"),
        ("var", "aws:username", None),
        ("text", "b"),
    )
    assert parse_template("a${aws:username}b", False) == (("text", "a${aws:username}b"),)
    assert parse_template("${AWS:UserName, 'x y'}", True) == (("var", "aws:username", "x y"),)
    assert parse_template("${*}${?}${$}", True) == (("literal", "*"), ("literal", "?"), ("literal", "$"))
    assert parse_template("${unclosed", True) == (("text", "${unclosed"),)
