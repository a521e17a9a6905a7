"""SigV2 building blocks, AWS's published SigV2 examples, and s3cmd's signer as an oracle.

The examples are those of AWS's "Signing and Authenticating REST Requests"
(secret ``wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY``, bucket ``johnsmith``
addressed virtual-host style).
"""

from __future__ import annotations

import datetime
from email.utils import formatdate

import pytest

from lightningstor import errors
from lightningstor.auth import sigv2
from lightningstor.auth.request import RequestView, parse_auth, verify

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


@pytest.mark.parametrize(
    ("string_to_sign", "signature"),
    [
        ("GET\n\n\nTue, 27 Mar 2007 19:36:42 +0000\n/johnsmith/photos/puppy.jpg", "bWq2s1WEIj+Ydj0vQ697zp+IXMU="),
        ("PUT\n\nimage/jpeg\nTue, 27 Mar 2007 21:15:45 +0000\n/johnsmith/photos/puppy.jpg", "MyyxeRY7whkBe+bq8fHCL/2kKUg="),
        ("GET\n\n\nTue, 27 Mar 2007 19:42:41 +0000\n/johnsmith/", "htDYFYduRNen8P9ZfE/s9SuKy0U="),
    ],
)
def test_sign_matches_aws_examples(string_to_sign: str, signature: str) -> None:
    """HMAC-SHA1 + base64 of AWS's example strings gives AWS's example signatures."""
    assert sigv2.sign(SECRET, string_to_sign) == signature


def test_aws_example_virtual_host_get_verifies() -> None:
    """AWS's Object GET example verifies when the bucket came from the Host header."""
    when = datetime.datetime(2007, 3, 27, 19, 36, 42, tzinfo=datetime.UTC).timestamp()
    view = RequestView(
        "GET",
        "/photos/puppy.jpg",
        "",
        {
            "host": ["johnsmith.s3.amazonaws.com"],
            "date": ["Tue, 27 Mar 2007 19:36:42 +0000"],
            "authorization": ["AWS AKIAIOSFODNN7EXAMPLE:bWq2s1WEIj+Ydj0vQ697zp+IXMU="],
        },
    )
    parsed = parse_auth(view)
    assert parsed.scheme == "v2-header"
    verified = verify(parsed, SECRET, view, now=when, region="us-east-1", virtual_host_bucket="johnsmith")
    assert verified.access_key == "AKIAIOSFODNN7EXAMPLE"
    with pytest.raises(errors.SignatureDoesNotMatch):
        verify(parsed, SECRET, view, now=when, region="us-east-1")  # path-style reading lacks the bucket


def test_aws_example_list_ignores_non_subresource_query() -> None:
    """AWS's List example: prefix/max-keys/marker are not part of the V2 canonical resource."""
    when = datetime.datetime(2007, 3, 27, 19, 42, 41, tzinfo=datetime.UTC).timestamp()
    view = RequestView(
        "GET",
        "/",
        "prefix=photos&max-keys=50&marker=puppy",
        {
            "host": ["johnsmith.s3.amazonaws.com"],
            "date": ["Tue, 27 Mar 2007 19:42:41 +0000"],
            "authorization": ["AWS AKIAIOSFODNN7EXAMPLE:htDYFYduRNen8P9ZfE/s9SuKy0U="],
        },
    )
    verify(parse_auth(view), SECRET, view, now=when, region="", virtual_host_bucket="johnsmith")


def test_canonical_resource_sorts_and_decodes_subresources() -> None:
    """Sub-resources are kept, sorted by name, values decoded; other parameters are dropped."""
    resource = sigv2.canonical_resource(
        "/b/k",
        "uploadId=abc%2Bd&partNumber=3&prefix=x&response-content-type=text%2Fplain&acl",
        subresources=sigv2.WIDE_SUBRESOURCES,
        decode_values=True,
    )
    assert resource == "/b/k?acl&partNumber=3&response-content-type=text/plain&uploadId=abc+d"
    raw = sigv2.canonical_resource(
        "/b/k", "response-content-type=text%2Fplain", subresources=sigv2.AWS_SUBRESOURCES, decode_values=False
    )
    assert raw == "/b/k?response-content-type=text%2Fplain"


def test_a_decoded_value_that_reads_as_more_subresources_is_no_candidate() -> None:
    """``partNumber=1%26uploadId%3DU`` decodes to the resource signed for an
    UploadPart (``partNumber=1&uploadId=U``), but the request has no upload
    id and is a PutObject: only the as-sent form may verify it.  A decoded
    ``&`` inside an ordinary value (a file name) is still decoded."""
    smuggled = "partNumber=1%26uploadId%3DU"
    assert sigv2.canonical_resource("/b/k", smuggled, subresources=sigv2.AWS_SUBRESOURCES, decode_values=True) is None
    signed_for_upload_part = "PUT\n\n\nD\n/b/k?partNumber=1&uploadId=U"
    candidates = list(sigv2.strings_to_sign(
        method="PUT", content_md5="", content_type="", date_candidates=["D"], amz_headers={},
        raw_path="/b/k", raw_query=smuggled,
    ))  # fmt: skip
    assert candidates and signed_for_upload_part not in candidates
    assert "PUT\n\n\nD\n/b/k?partNumber=1%26uploadId%3DU" in candidates
    for sneaky in ("versionId=v%26acl", "response-content-type=a%26response-expires%3D1", "acl=%26versions"):
        assert sigv2.canonical_resource("/b/k", sneaky, subresources=sigv2.WIDE_SUBRESOURCES, decode_values=True) is None
    name = "response-content-disposition=attachment%3B%20filename%3D%22a%26b.txt%22"
    assert sigv2.canonical_resource("/b/k", name, subresources=sigv2.AWS_SUBRESOURCES, decode_values=True) == (
        '/b/k?response-content-disposition=attachment; filename="a&b.txt"'
    )


def _candidates(raw_query: str, method: str = "GET") -> list[str]:
    return list(
        sigv2.strings_to_sign(
            method=method,
            content_md5="",
            content_type="",
            date_candidates=["D"],
            amz_headers={},
            raw_path="/b",
            raw_query=raw_query,
        )
    )


def test_both_subresource_lists_tried_when_both_cover_the_request() -> None:
    """A parameter AWS's list and botocore's both sign (``acl``): one string
    (and the bucket-level resource botocore signs, ``/b/``)."""
    assert _candidates("acl") == ["GET\n\n\nD\n/b?acl", "GET\n\n\nD\n/b/?acl"]


def test_a_list_that_leaves_out_a_selecting_parameter_is_not_tried() -> None:
    """Only botocore/MinIO sign ``object-lock``: the narrow list, which
    would leave it out, is not tried, or a signature of ``GET /b`` (a
    listing) would also sign ``GET /b?object-lock``."""
    assert _candidates("object-lock") == ["GET\n\n\nD\n/b?object-lock", "GET\n\n\nD\n/b/?object-lock"]


@pytest.mark.parametrize("name", ["publicAccessBlock", "policyStatus", "attributes", "ownershipControls"])
def test_parameters_no_v2_client_signs_must_be_signed_all_the_same(name: str) -> None:
    """No client's V2 list names these; a V2 request carrying one verifies
    only with a signature that covers it (so in practice never)."""
    for candidate in _candidates(name, "DELETE"):
        assert candidate.endswith(f"?{name}")


def test_every_parameter_the_s3_layer_routes_on_must_be_signed() -> None:
    """SELECTING holds every sub-resource the S3 layer picks an operation by,
    and the two that pick the object (a version, a part)."""
    from lightningstor.s3.operations import SUBRESOURCES

    assert set(SUBRESOURCES) | {"versionId", "partNumber"} <= sigv2.SELECTING


def test_only_a_bucket_level_path_style_request_gets_the_slash_form() -> None:
    """``/bucket/`` is tried for ``/bucket`` alone: not for an object path,
    and not for a virtual-hosted request (whose resource already ends in ``/``)."""

    def resources(raw_path: str, bucket_prefix: str = "") -> list[str]:
        return [c.rsplit("\n", 1)[1] for c in sigv2.strings_to_sign(
            method="PUT", content_md5="", content_type="", date_candidates=["D"], amz_headers={},
            raw_path=raw_path, raw_query="", bucket_prefix=bucket_prefix)]  # fmt: skip

    assert resources("/bucket") == ["/bucket", "/bucket/"]
    assert resources("/bucket/key") == ["/bucket/key"]
    assert resources("/bucket/") == ["/bucket/"]
    assert resources("/", "/bucket") == ["/bucket/"]


def test_canonical_amz_headers() -> None:
    """x-amz-* headers are sorted, trimmed, repeated values comma-joined; others ignored."""
    block = sigv2.canonical_amz_headers({"x-amz-meta-b": [" 2 ", "3"], "x-amz-acl": ["private"], "content-type": ["x"]})
    assert block == "x-amz-acl:private\nx-amz-meta-b:2,3\n"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("AWS AK:c2ln", ("AK", "c2ln")),
        ("AWS  AK:c2ln ", ("AK", "c2ln")),
        ("AWS a:b:c2ln", ("a:b", "c2ln")),
        ("AWS AK", None),
        ("AWS :sig", None),
        ("AWS4 AK:sig", None),
    ],
)
def test_split_authorization(header: str, expected: tuple[str, str] | None) -> None:
    """``AWS AKID:signature`` splits on the last colon; anything else is malformed."""
    assert sigv2.split_authorization(header) == expected


def test_s3cmd_v2_signer_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    """A request signed by s3cmd's own ``sign_request_v2`` (with sub-resources and x-amz headers) verifies."""
    from S3 import Config as s3cmd_config
    from S3 import Crypto as s3cmd_crypto
    from S3.SortedDict import SortedDict

    config = s3cmd_config.Config()
    monkeypatch.setattr(config, "access_key", "s3cmd-key", raising=False)
    monkeypatch.setattr(config, "secret_key", "s3cmd/secret+key", raising=False)
    now = 1_700_000_000.0
    headers = SortedDict(ignore_case=True)
    headers["x-amz-date"] = formatdate(now, usegmt=True)
    headers["x-amz-meta-colour"] = "blue"
    headers["content-type"] = "text/plain"
    params = {"uploadId": "2~abc/def", "partNumber": "7"}
    signed = s3cmd_crypto.sign_request_v2("PUT", "/bucket/dir/a key+1.txt", params, headers)

    view = RequestView(
        "PUT",
        "/bucket/dir/a%20key%2B1.txt",
        "partNumber=7&uploadId=2~abc%2Fdef",
        {name.lower(): [value] for name, value in signed.items()} | {"host": ["127.0.0.1:9000"]},
    )
    parsed = parse_auth(view)
    assert parsed.access_key == "s3cmd-key"
    verify(parsed, "s3cmd/secret+key", view, now=now, region="us-east-1")
    with pytest.raises(errors.SignatureDoesNotMatch):
        verify(parsed, "s3cmd/secret+key", _with(view, raw_query="partNumber=8&uploadId=2~abc%2Fdef"), now=now, region="")


def _with(view: RequestView, **changes: str) -> RequestView:
    fields = {"method": view.method, "raw_path": view.raw_path, "raw_query": view.raw_query, "headers": view.headers}
    fields.update(changes)
    return RequestView(**fields)  # type: ignore[arg-type]
