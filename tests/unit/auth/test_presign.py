"""presign_v4: URLs that our verifier accepts and that botocore would have signed identically."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import auth_oracle as oracle
import pytest

from lightningstor import errors
from lightningstor.auth.presign import presign_v4
from lightningstor.auth.request import RequestView, parse_auth, verify

NOW = oracle.FIXED_EPOCH


def _as_view(url: str, method: str = "GET", headers: dict[str, str] | None = None) -> RequestView:
    """The request an HTTP client fetching ``url`` sends."""
    parts = urlsplit(url)
    host = parts.netloc if parts.port not in (80, None) or parts.scheme != "http" else parts.hostname
    all_headers = {"host": [host or ""]}
    all_headers.update({name.lower(): [value] for name, value in (headers or {}).items()})
    return RequestView(method, parts.path, parts.query, all_headers)


def _signature(url: str) -> str:
    return parse_qs(urlsplit(url).query)["X-Amz-Signature"][0]


@pytest.mark.parametrize("key", ["plain", "dir/with space+plus.txt", "ümlaut/日本", "a%2Fb"])
def test_round_trip(key: str) -> None:
    """A presigned URL verifies with parse_auth/verify as v4-query for its access key."""
    url = presign_v4("GET", f"http://127.0.0.1:9000/bucket/{key}", "AK", "sk/secret", now=NOW)
    view = _as_view(url)
    verified = verify(parse_auth(view), "sk/secret", view, now=NOW + 10, region="us-east-1")
    assert (verified.scheme, verified.access_key, verified.payload) == ("v4-query", "AK", "UNSIGNED")


@pytest.mark.parametrize(
    ("key", "encoded"),
    [("café.txt", "caf%C3%A9.txt"), ("naïve", "na%C3%AFve"), ("€uro", "%E2%82%ACuro"), ("caf%C3%A9", "caf%C3%A9")],
)
def test_raw_characters_are_encoded_as_utf8(key: str, encoded: str) -> None:
    """Characters of a raw URL are percent-encoded as UTF-8, as every S3
    client sends them, those below U+0100 included (they were encoded as
    single latin-1 bytes: a URL the server answers with InvalidURI); in the
    path and in query values alike."""
    url = presign_v4("GET", f"http://127.0.0.1:9000/bucket/{key}?response-content-disposition={key}", "AK",
                     "sk/secret", now=NOW)
    parts = urlsplit(url)
    assert parts.path == f"/bucket/{encoded}"
    assert f"response-content-disposition={encoded}&" in parts.query


def test_same_signature_as_botocore() -> None:
    """For the same request and instant, our signature equals botocore's S3SigV4QueryAuth."""
    url = oracle.object_url("bucket", "dir/a b+c.txt", {"versionId": "3/x y"})
    ours = presign_v4("GET", url, oracle.ACCESS_KEY, oracle.SECRET_KEY, now=NOW, expires=900)
    theirs = oracle.presign(oracle.request("GET", url), expires=900).url
    assert _signature(ours) == _signature(theirs)


def test_expiry_and_wrong_secret() -> None:
    """The URL expires after ``expires`` seconds and does not verify with another secret."""
    url = presign_v4("PUT", "http://127.0.0.1:9000/b/k", "AK", "secret", now=NOW, expires=60)
    view = _as_view(url, "PUT")
    parsed = parse_auth(view)
    verify(parsed, "secret", view, now=NOW + 60, region="us-east-1")
    with pytest.raises(errors.AccessDenied):
        verify(parsed, "secret", view, now=NOW + 61, region="us-east-1")
    with pytest.raises(errors.SignatureDoesNotMatch):
        verify(parsed, "other", view, now=NOW, region="us-east-1")


def test_signed_headers_and_existing_query() -> None:
    """Extra headers are signed (and required); existing query parameters are kept and signed."""
    url = presign_v4(
        "PUT",
        "https://s3.example.com/b/k?x-id=PutObject",
        "AK",
        "secret",
        region="eu-west-1",
        now=NOW,
        headers={"Content-Type": "image/png"},
    )
    assert "x-id=PutObject" in url
    assert "X-Amz-SignedHeaders=content-type%3Bhost" in url
    good = _as_view(url, "PUT", {"Content-Type": "image/png"})
    verify(parse_auth(good), "secret", good, now=NOW, region="eu-west-1")
    bad = _as_view(url, "PUT", {"Content-Type": "text/html"})
    with pytest.raises(errors.SignatureDoesNotMatch):
        verify(parse_auth(bad), "secret", bad, now=NOW, region="eu-west-1")
    with pytest.raises(errors.AuthorizationQueryParametersError):
        verify(parse_auth(good), "secret", good, now=NOW, region="us-east-1")


def test_default_port_is_not_part_of_host() -> None:
    """As HTTP clients do, the default port is left out of the signed Host."""
    url = presign_v4("GET", "http://example.com:80/b/k", "AK", "secret", now=NOW)
    view = RequestView("GET", urlsplit(url).path, urlsplit(url).query, {"host": ["example.com"]})
    verify(parse_auth(view), "secret", view, now=NOW, region="us-east-1")


@pytest.mark.parametrize("expires", [0, 604801])
def test_expires_range(expires: int) -> None:
    """Lifetimes AWS would refuse are refused when signing."""
    with pytest.raises(ValueError):
        presign_v4("GET", "http://h/b/k", "AK", "secret", expires=expires)
