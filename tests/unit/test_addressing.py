"""Which bucket, key and query parameters a request line names (s3/addressing.py)."""

from __future__ import annotations

from urllib.parse import parse_qsl

from hypothesis import given
from hypothesis import strategies as st

from lightningstor.auth import sigv4
from lightningstor.s3.addressing import absolute_authority, host_bucket, parse_target

_QUERY = st.lists(
    st.sampled_from(["a", "Z", "0", "-", "_", ".", "~", "/", "%", "+", " ", "=", "&", ";", "%2F", "%41",
                     "%zz", "%C3%A9", "%FF", "prefix", "versionId", "uploadId"]),
    max_size=16,
).map("".join)


@given(_QUERY)
def test_query_reads_as_parse_qsl(raw_query: str) -> None:
    """The parameters (first value of each name) are what ``parse_qsl`` with
    blank values kept reads from an ASCII query: ``+`` is a space, escapes
    are UTF-8 with bad bytes replaced, ``;`` is not a separator."""
    sigv4._decoded_query.cache_clear()
    target = parse_target(f"/bucket/key?{raw_query}".encode("latin-1"), "localhost", None)
    expected: dict[str, str] = {}
    for name, value in parse_qsl(raw_query, keep_blank_values=True, encoding="utf-8", errors="replace"):
        expected.setdefault(name, value)
    assert target.query == expected
    assert (target.bucket, target.key, target.raw_query) == ("bucket", "key", raw_query)


def test_raw_utf8_in_query_is_text() -> None:
    """A client that sends UTF-8 unescaped in the query gets the text it
    meant, as the signature check reads it (not one character per byte)."""
    target = parse_target("/b?prefix=café/".encode(), None, None)
    assert target.query == {"prefix": "café/"}
    assert sigv4.decoded_query(target.raw_query) == [("prefix", "café/")]


def test_path_and_virtual_host_style() -> None:
    assert parse_target(b"/b/dir//x%20y/", None, None).key == "dir//x y/"
    vhost = parse_target(b"/k/../z?acl", "b.s3.example.com:9000", "s3.example.com")
    assert (vhost.bucket, vhost.key, vhost.vhost, vhost.query) == ("b", "k/../z", True, {"acl": ""})
    assert parse_target(b"/", None, None).bucket is None


def test_absolute_authority_is_the_host_of_an_absolute_form_target() -> None:
    """The target's ``host[:port]`` (userinfo dropped) for absolute form;
    None for origin form, authority form, ``*`` and a bare name."""
    assert absolute_authority(b"http://b.s3.test:9000/k?x=1") == "b.s3.test:9000"
    assert absolute_authority(b"HTTPS://u:p@h/") == "h"
    assert absolute_authority(b"http://h?versions") == "h"
    assert absolute_authority(b"http:///k") == ""
    for target in (b"/b/k", b"/b/http://x/", b"*", b"evil:443", b"health", b"://h/"):
        assert absolute_authority(target) is None, target


def test_a_host_names_a_bucket_only_with_a_numeric_port() -> None:
    """``Host: b.domain:@evil.example`` named bucket b, and a website
    redirect copied that Host into its Location (a browser reads it as
    user info before the host evil.example).  What follows the last colon
    must be a port (RFC 3986 §3.2.3), else the Host names no bucket."""
    assert host_bucket("site.web.test", "web.test") == "site"
    assert host_bucket("Site.Web.Test.:8080", "web.test") == "site"
    assert host_bucket("site.web.test:", "web.test") == "site"  # an empty port is allowed
    for host in ("site.web.test:@evil.example", "site.web.test:80x", "site.web.test:\uff18\uff10", "[::1]", "web.test"):
        assert host_bucket(host, "web.test") is None, host
