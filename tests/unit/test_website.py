"""Static website hosting without a server: the configuration document in
and out, its storage in the bucket record, and the website endpoint's
decisions (core/website.py)."""

from __future__ import annotations

import pytest

from lightningstor import errors
from lightningstor.core import records, website
from lightningstor.core.types import Bucket, WebsiteConfiguration, WebsiteRedirect, WebsiteRoutingRule
from lightningstor.s3.websitexml import error_html, parse_website_configuration, website_configuration_xml

NS = 'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'
FULL = WebsiteConfiguration(
    index_suffix="index.html",
    error_key="errors/404.html",
    routing_rules=(
        WebsiteRoutingRule("docs/", None, WebsiteRedirect(replace_key_prefix_with="documents/")),
        WebsiteRoutingRule(None, "404", WebsiteRedirect(host_name="x.example", protocol="https",
                                                        http_redirect_code="307")),
        WebsiteRoutingRule("a&b", "403", WebsiteRedirect(replace_key_with="<denied>.html")),
    ),
)


def _bucket(**kwargs: object) -> Bucket:
    return Bucket(name="b", bucket_id="id", org_id="o", project_id=None, created_at=1, updated_at=1,
                  created_by="p", **kwargs)  # type: ignore[arg-type]


def test_document_round_trip() -> None:
    assert parse_website_configuration(website_configuration_xml(FULL)) == FULL
    redirect = WebsiteConfiguration(redirect_all=WebsiteRedirect(host_name="h.example", protocol="http"))
    assert parse_website_configuration(website_configuration_xml(redirect)) == redirect


def test_document_without_namespace_and_with_whitespace() -> None:
    body = b"<WebsiteConfiguration>\n  <IndexDocument>\n    <Suffix>index.html</Suffix>\n  </IndexDocument>\n</WebsiteConfiguration>"
    assert parse_website_configuration(body) == WebsiteConfiguration(index_suffix="index.html")


def test_key_prefix_keeps_its_spaces() -> None:
    body = (f"<WebsiteConfiguration {NS}><IndexDocument><Suffix>i.html</Suffix></IndexDocument><RoutingRules>"
            "<RoutingRule><Condition><KeyPrefixEquals> a/</KeyPrefixEquals></Condition>"
            "<Redirect><ReplaceKeyPrefixWith>b/</ReplaceKeyPrefixWith></Redirect></RoutingRule>"
            "</RoutingRules></WebsiteConfiguration>").encode()
    assert parse_website_configuration(body).routing_rules[0].key_prefix_equals == " a/"


@pytest.mark.parametrize("body", [b"<Other/>", b"<WebsiteConfiguration/>x", b"not xml"])
def test_not_a_website_document(body: bytes) -> None:
    with pytest.raises(errors.S3Error) as info:
        parse_website_configuration(body)
    assert info.value.code == "MalformedXML"


@pytest.mark.parametrize("code", ["300", "200", "3000", "abc", "404", "3\u00b21", "3\uff107"])
def test_redirect_code_must_be_3xx_but_not_300(code: str) -> None:
    """Digits are ASCII digits: "3²1" passed str.isdigit, was stored, and
    every request the rule matched failed with a 500 (int() refused it);
    a full-width zero was stored and answered as 307."""
    body = (f"<WebsiteConfiguration><IndexDocument><Suffix>i</Suffix></IndexDocument><RoutingRules><RoutingRule>"
            f"<Redirect><HttpRedirectCode>{code}</HttpRedirectCode></Redirect></RoutingRule></RoutingRules>"
            "</WebsiteConfiguration>").encode()
    with pytest.raises(errors.S3Error) as info:
        parse_website_configuration(body)
    assert (info.value.code, info.value.fields["ArgumentName"]) == ("InvalidArgument", "HttpRedirectCode")


def test_record_has_no_website_field_until_configured() -> None:
    plain = _bucket()
    assert b"web" not in records.encode_bucket(plain)
    assert records.decode_bucket(records.encode_bucket(plain)).website is None
    configured = _bucket(website=FULL)
    assert records.decode_bucket(records.encode_bucket(configured)).website == FULL
    redirect = _bucket(website=WebsiteConfiguration(redirect_all=WebsiteRedirect(host_name="h")))
    assert records.decode_bucket(records.encode_bucket(redirect)) == redirect


@pytest.mark.parametrize(("key", "expected"), [
    ("", "index.html"), ("a/", "a/index.html"), ("a/b", "a/b"), ("a.html", "a.html")])
def test_index_key(key: str, expected: str) -> None:
    assert website.index_key(key, "index.html") == expected


def test_folder_index_key() -> None:
    assert website.folder_index_key("docs", "index.html") == "docs/index.html"
    assert website.folder_index_key("docs/", "index.html") is None
    assert website.folder_index_key("", "index.html") is None


def test_rules_before_and_after_the_lookup() -> None:
    assert website.rule_before_lookup(FULL, "docs/x") is FULL.routing_rules[0]
    assert website.rule_before_lookup(FULL, "doc") is None
    assert website.rule_after_error(FULL, "anything", 404) is FULL.routing_rules[1]
    assert website.rule_after_error(FULL, "a&b/c", 403) is FULL.routing_rules[2]
    assert website.rule_after_error(FULL, "b", 403) is None  # prefix condition too


def test_rule_redirects() -> None:
    assert website.rule_redirect(FULL.routing_rules[0], "docs/a b", scheme="http", host="h:1") == website.Redirect(
        301, "http://h:1/documents/a%20b")
    assert website.rule_redirect(FULL.routing_rules[1], "x", scheme="http", host="h") == website.Redirect(
        307, "https://x.example/x")
    no_prefix = WebsiteRoutingRule(None, "404", WebsiteRedirect(replace_key_prefix_with="new/"))
    assert website.rule_redirect(no_prefix, "old", scheme="https", host="h").location == "https://h/new/old"


def test_redirect_all_and_folder_redirect() -> None:
    assert website.redirect_all(WebsiteRedirect(host_name="w.example"), "a/b", scheme="https") == website.Redirect(
        301, "https://w.example/a/b")
    assert website.folder_redirect("my docs") == website.Redirect(302, "/my%20docs/")


@pytest.mark.parametrize(("location", "ok"), [
    ("/page.html", True), ("http://x/", True), ("https://x/y", True), ("page.html", False), ("ftp://x", False)])
def test_simple_redirect_location(location: str, ok: bool) -> None:
    assert website.simple_redirect_location(location) is ok


def test_error_page_escapes_and_lists_fields() -> None:
    page = error_html(errors.S3Error(code="NoSuchKey", Key="<x>"), "REQ")
    assert b"<title>404 Not Found</title>" in page
    assert b"<li>Code: NoSuchKey</li>" in page
    assert b"<li>Key: &lt;x&gt;</li>" in page
    assert b"<li>RequestId: REQ</li>" in page


@pytest.mark.parametrize("code", ["4\u00b24", "4\uff104", "4x4"])
def test_error_code_condition_must_be_three_ascii_digits(code: str) -> None:
    body = (f"<WebsiteConfiguration><IndexDocument><Suffix>i</Suffix></IndexDocument><RoutingRules><RoutingRule>"
            f"<Condition><HttpErrorCodeReturnedEquals>{code}</HttpErrorCodeReturnedEquals></Condition>"
            "<Redirect><HostName>h</HostName></Redirect></RoutingRule></RoutingRules></WebsiteConfiguration>").encode()
    with pytest.raises(errors.S3Error) as info:
        parse_website_configuration(body)
    assert (info.value.code, info.value.fields["ArgumentName"]) == ("InvalidArgument", "HttpErrorCodeReturnedEquals")
