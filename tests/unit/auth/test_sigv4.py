"""SigV4 building blocks and AWS's published S3 SigV4 examples.

The example requests and signatures are those of the AWS S3 API reference
("Signature Calculations for the Authorization Header: Transferring Payload in
a Single Chunk" and "Authenticating Requests: Using Query Parameters"):
secret ``wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY``, 2013-05-24T00:00:00Z.
"""

from __future__ import annotations

import datetime
import hashlib
from urllib.parse import quote_from_bytes, unquote_to_bytes

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lightningstor import errors
from lightningstor.auth import sigv4
from lightningstor.auth.request import RequestView, parse_auth, verify

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
EXAMPLE_NOW = datetime.datetime(2013, 5, 24, tzinfo=datetime.UTC).timestamp()
HOST = "examplebucket.s3.amazonaws.com"
CREDENTIAL = "AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request"


def _header_request(
    method: str, path: str, query: str, headers: dict[str, str], signed: str, signature: str
) -> RequestView:
    all_headers = {"host": [HOST], "x-amz-date": ["20130524T000000Z"]}
    all_headers.update({name: [value] for name, value in headers.items()})
    all_headers["authorization"] = [
        f"AWS4-HMAC-SHA256 Credential={CREDENTIAL},SignedHeaders={signed},Signature={signature}"
    ]
    return RequestView(method=method, raw_path=path, raw_query=query, headers=all_headers)


def _verify(view: RequestView) -> str:
    return verify(parse_auth(view), SECRET, view, now=EXAMPLE_NOW, region="us-east-1").payload


def test_aws_example_get_object() -> None:
    """AWS's "GET Object" example (Range header, empty payload hash) verifies as a signed empty payload."""
    view = _header_request(
        "GET",
        "/test.txt",
        "",
        {"range": "bytes=0-9", "x-amz-content-sha256": sigv4.EMPTY_SHA256},
        "host;range;x-amz-content-sha256;x-amz-date",
        "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
    )
    verified = verify(parse_auth(view), SECRET, view, now=EXAMPLE_NOW, region="us-east-1")
    assert (verified.access_key, verified.payload, verified.payload_sha256) == (
        "AKIAIOSFODNN7EXAMPLE",
        "SIGNED",
        sigv4.EMPTY_SHA256,
    )


def test_aws_example_put_object_with_raw_dollar_in_path() -> None:
    """AWS's "PUT Object" example: ``$`` sent raw must canonicalise to %24, and a signed Date header counts."""
    body_hash = hashlib.sha256(b"Welcome to Amazon S3.").hexdigest()
    view = _header_request(
        "PUT",
        "/test$file.text",
        "",
        {
            "date": "Fri, 24 May 2013 00:00:00 GMT",
            "x-amz-storage-class": "REDUCED_REDUNDANCY",
            "x-amz-content-sha256": body_hash,
        },
        "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class",
        "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd",
    )
    assert _verify(view) == "SIGNED"


@pytest.mark.parametrize(
    ("query", "signature"),
    [
        ("lifecycle", "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"),
        ("max-keys=2&prefix=J", "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"),
        ("prefix=J&max-keys=2", "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"),
    ],
)
def test_aws_examples_bucket_queries(query: str, signature: str) -> None:
    """AWS's "GET Bucket Lifecycle" (value-less parameter) and "List Objects" (sorted query) examples."""
    view = _header_request(
        "GET",
        "/",
        query,
        {"x-amz-content-sha256": sigv4.EMPTY_SHA256},
        "host;x-amz-content-sha256;x-amz-date",
        signature,
    )
    assert _verify(view) == "SIGNED"


def test_aws_example_presigned_get() -> None:
    """AWS's presigned-URL example verifies within its 86400 s lifetime and is refused after it."""
    query = (
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3"
        "%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
        "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
    )
    view = RequestView("GET", "/test.txt", query, {"host": [HOST]})
    parsed = parse_auth(view)
    assert verify(parsed, SECRET, view, now=EXAMPLE_NOW + 86000, region="us-east-1").payload == "UNSIGNED"
    with pytest.raises(errors.AccessDenied, match="Request has expired"):
        verify(parsed, SECRET, view, now=EXAMPLE_NOW + 86401, region="us-east-1")


def test_aws_example_streaming_seed_signature() -> None:
    """AWS's chunked-upload example: the seed request verifies and hands back the chunk signing context."""
    view = _header_request(
        "PUT",
        "/examplebucket/chunkObject.txt",
        "",
        {
            "host": "s3.amazonaws.com",
            "content-encoding": "aws-chunked",
            "content-length": "66824",
            "x-amz-content-sha256": sigv4.STREAMING_SIGNED,
            "x-amz-decoded-content-length": "66560",
            "x-amz-storage-class": "REDUCED_REDUNDANCY",
        },
        "content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;"
        "x-amz-storage-class",
        "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
    )
    verified = verify(parse_auth(view), SECRET, view, now=EXAMPLE_NOW, region="us-east-1")
    assert verified.payload == "STREAMING-SIGNED"
    assert verified.streaming is not None
    assert verified.streaming.seed_signature == "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
    assert verified.streaming.scope == "20130524/us-east-1/s3/aws4_request"
    assert verified.streaming.amz_date == "20130524T000000Z"


def test_chunk_signature_matches_aws_example() -> None:
    """The first 64 KiB chunk of AWS's example signs to ad80c730..., chained on the seed signature."""
    key = sigv4.signing_key(SECRET, "20130524", "us-east-1")
    to_sign = sigv4.chunk_string_to_sign(
        "20130524T000000Z",
        "20130524/us-east-1/s3/aws4_request",
        "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
        hashlib.sha256(b"a" * 65536).hexdigest(),
    )
    assert sigv4.sign_hex(key, to_sign) == "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648"


def test_trailer_signature_matches_minio_go_vector() -> None:
    """The trailer string to sign hashes ``name:value\\n`` (minio-go's vector for the AWS trailer example)."""
    key = sigv4.signing_key(SECRET, "20130524", "us-east-1")
    to_sign = sigv4.trailer_string_to_sign(
        "20130524T000000Z",
        "20130524/us-east-1/s3/aws4_request",
        "e05ab64fe1dfdbf0b5870abbaabdb063c371d4e96f2767e6934d90529c5ae850",
        hashlib.sha256(b"x-amz-checksum-crc32c:wdBDMA==\n").hexdigest(),
    )
    assert sigv4.sign_hex(key, to_sign) == "41e14ac611e27a8bb3d66c3bad6856f209297767d5dd4fc87d8fa9e422e03faf"


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("/bucket/a%20b", "/bucket/a%20b"),
        ("/bucket/a b", "/bucket/a%20b"),
        ("/bucket/a+b", "/bucket/a%2Bb"),
        ("/bucket/a%2bb", "/bucket/a%2Bb"),
        ("/bucket/%7Etilde~", "/bucket/~tilde~"),
        ("/bucket/%C3%BC", "/bucket/%C3%BC"),
        ("/bucket/\xc3\xbc", "/bucket/%C3%BC"),  # raw UTF-8 bytes, latin-1 decoded
        ("/bucket//x/../y/./z", "/bucket//x/../y/./z"),
        ("/bucket/100%", "/bucket/100%25"),
        ("/bucket/%zz", "/bucket/%25zz"),
        ("/bucket/a%2Fb", "/bucket/a%2Fb"),
        ("/bucket/!$&'()*,;=:@", "/bucket/%21%24%26%27%28%29%2A%2C%3B%3D%3A%40"),
        ("", "/"),
    ],
)
def test_canonical_uri(raw: str, canonical: str) -> None:
    """Paths are decoded and re-encoded with the unreserved set, never normalised or double-encoded."""
    assert sigv4.canonical_uri(raw) == canonical


def test_canonical_uri_candidates_all_name_the_same_key() -> None:
    """Fallback URIs (escaped slash decoded, raw form) are offered only when they differ."""
    assert list(sigv4.canonical_uri_candidates("/b/a%2fb")) == ["/b/a%2Fb", "/b/a/b", "/b/a%2fb"]
    assert list(sigv4.canonical_uri_candidates("/b/a b")) == ["/b/a%20b", "/b/a b"]
    assert list(sigv4.canonical_uri_candidates("/b/plain")) == ["/b/plain"]


def test_canonical_query_sorting_and_encoding() -> None:
    """Pairs are encoded then sorted by name and value; ``+`` is a space; bare names get ``=``."""
    pairs = sigv4.parse_query("b=2&a=2&a=1&uploads&prefix=a+b%2Bc&%C3%A4=1&z=x*y~")
    assert sigv4.canonical_query(pairs) == "%C3%A4=1&a=1&a=2&b=2&prefix=a%20b%2Bc&uploads=&z=x%2Ay~"
    assert sigv4.canonical_query(pairs, exclude=frozenset({b"a", b"z"})) == "%C3%A4=1&b=2&prefix=a%20b%2Bc&uploads="


def test_canonical_header_values_are_trimmed_and_collapsed() -> None:
    """Header values are trimmed, inner whitespace runs collapse, repeated headers join with commas."""
    block = sigv4.canonical_headers({"x-a": ["  one   two  ", "three"], "host": ["h"]}, ("host", "x-a", "x-missing"))
    assert block == "host:h\nx-a:one two,three\nx-missing:\n"


def test_utf8_bytes_in_header_values_are_not_whitespace() -> None:
    """Values are the wire bytes decoded as latin-1: the 0xA0 of "à" and the
    0x85 of "Å" (UTF-8) are text, not spaces to trim or collapse; ASCII
    spaces and tabs around and between them still are."""
    wire = [text.encode("utf-8").decode("latin-1") for text in ("voilà", "Ågesen", " \tà  b\t ")]
    assert sigv4.canonical_header_value(wire[:2]) == ",".join(wire[:2])
    assert sigv4.canonical_header_value(wire[2:]) == "à b".encode().decode("latin-1")


def test_signing_key_is_cached_per_secret() -> None:
    """The derived key is cached, and a different secret never gets another secret's key."""
    sigv4.signing_key.cache_clear()
    first = sigv4.signing_key("secret-one", "20240101", "us-east-1")
    again = sigv4.signing_key("secret-one", "20240101", "us-east-1")
    other = sigv4.signing_key("secret-two", "20240101", "us-east-1")
    assert first == again and first != other
    assert sigv4.signing_key.cache_info().hits == 1


@pytest.mark.parametrize(
    "header",
    [
        "AWS4-HMAC-SHA256 Credential=AK/20130524/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=ab",
        "AWS4-HMAC-SHA256 Credential=AK/20130524/us-east-1/s3/aws4_request,SignedHeaders=host,Signature=ab",
        "AWS4-HMAC-SHA256  Signature=ab ,Credential=AK/20130524/us-east-1/s3/aws4_request,  SignedHeaders=host",
    ],
)
def test_split_authorization_tolerates_spacing_and_order(header: str) -> None:
    """Commas with or without spaces and any component order parse the same way."""
    fields = sigv4.split_authorization(header)
    assert fields == sigv4.AuthorizationFields("AK/20130524/us-east-1/s3/aws4_request", "host", "ab")


@pytest.mark.parametrize(
    "header",
    [
        "AWS4-HMAC-SHA512 Credential=a, SignedHeaders=host, Signature=ab",
        "AWS4-HMAC-SHA256 Credential=a, SignedHeaders=host",
        "AWS4-HMAC-SHA256 Credential=a, SignedHeaders=host, Signature=ab, Extra=1",
        "AWS4-HMAC-SHA256 Credential=a, Credential=b, SignedHeaders=host, Signature=ab",
        "AWS4-HMAC-SHA256 Credential=a, SignedHeaders, Signature=ab",
    ],
)
def test_split_authorization_rejects_malformed(header: str) -> None:
    """Unknown algorithm, missing, extra, doubled or value-less components are malformed."""
    with pytest.raises(sigv4.MalformedAuthorization):
        sigv4.split_authorization(header)


def test_split_credential_allows_slash_in_access_key() -> None:
    """The scope is the last four parts, so access keys containing ``/`` still parse."""
    credential = sigv4.split_credential("team/key/20130524/eu-west-1/s3/aws4_request")
    assert credential == sigv4.Credential("team/key", "20130524", "eu-west-1", "s3", "aws4_request")
    assert sigv4.split_credential("20130524/eu-west-1/s3/aws4_request") is None


def test_split_signed_headers() -> None:
    """Signed header lists are lower-cased and sorted; empty names are malformed."""
    assert sigv4.split_signed_headers("X-Amz-Date;host") == ("host", "x-amz-date")
    assert sigv4.split_signed_headers("host;;x-amz-date") is None


# --------------------------------------------------------------------------- fast paths

_WIRE_BYTES = st.binary(max_size=24) | st.lists(
    st.sampled_from([b"a", b"Z", b"0", b"-", b"_", b".", b"~", b"/", b"%", b"+", b" ", b"%2F", b"%41",
                     b"%zz", b"\xc3\xa9", b"\x00", b"=", b"*"]), max_size=12
).map(b"".join)


@given(_WIRE_BYTES, st.booleans())
def test_uri_encode_matches_quote(data: bytes, keep_slash: bool) -> None:
    """The unreserved-only shortcut gives exactly what ``quote`` would."""
    assert sigv4.uri_encode(data, keep_slash=keep_slash) == quote_from_bytes(data, safe="/" if keep_slash else "")


@given(st.lists(st.tuples(_WIRE_BYTES, _WIRE_BYTES), max_size=6))
def test_parse_query_decodes_as_unquote(pairs: list[tuple[bytes, bytes]]) -> None:
    """Names and values without escapes skip ``unquote`` and still decode the
    way S3 reads a query: ``+`` is a space, ``%XX`` a byte."""
    raw = b"&".join(n.replace(b"&", b"") + b"=" + v.replace(b"&", b"") for n, v in pairs).decode("latin-1")
    sigv4._parse_query.cache_clear()
    expected = []
    for segment in raw.encode("latin-1").split(b"&"):
        if segment:
            name, _, value = segment.partition(b"=")
            expected.append((unquote_to_bytes(name.replace(b"+", b" ")), unquote_to_bytes(value.replace(b"+", b" "))))
    assert sigv4.parse_query(raw) == expected
