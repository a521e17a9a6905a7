"""Headers a presigned URL carries in its signed query, as AWS reads them.

aws-sdk-js-v3's ``getSignedUrl`` (and Ruby's ``presigned_url``) moves the
command's ``x-amz-*`` headers into the query string and signs only ``host``:
a browser then PUTs the body alone.  S3 stores the ``x-amz-meta-*`` and ACL
it finds there; it ignores ``x-amz-tagging`` and checksums in a query.  A
server reading headers only answered 200 and dropped the metadata.
"""

from __future__ import annotations

import http.client
from typing import Any
from urllib.parse import urlencode, urlsplit

from botocore import auth as botocore_auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.integration.server import ROOT_ACCESS_KEY, ROOT_SECRET_KEY, ServerProcess


def presigned_put(server: ServerProcess, bucket: str, key: str, params: dict[str, str]) -> str:
    """A SigV4 presigned PUT URL with ``params`` in its signed query (the
    shape getSignedUrl produces), as path and query."""
    url = f"{server.endpoint}/{bucket}/{key}?{urlencode(params)}"
    request = AWSRequest("PUT", url, headers={"Host": urlsplit(server.endpoint).netloc})
    creds = Credentials(ROOT_ACCESS_KEY, ROOT_SECRET_KEY)
    botocore_auth.S3SigV4QueryAuth(creds, "s3", "us-east-1", expires=300).add_auth(request)
    parts = urlsplit(request.url)
    return f"{parts.path}?{parts.query}"


def put(server: ServerProcess, target: str, body: bytes) -> int:
    """PUT ``body`` with no header but Host and Content-Length (a browser's upload)."""
    assert server.port is not None
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request("PUT", target, body=body, headers={"Host": f"127.0.0.1:{server.port}"})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def test_metadata_in_the_signed_query_is_stored(server: ServerProcess, c: Any, bkt: str) -> None:
    target = presigned_put(server, bkt, "up.txt", {
        "x-amz-meta-owner": "alice", "x-amz-meta-original-name": "report 1.pdf",
        "x-amz-tagging": "a=b", "x-amz-checksum-crc32": "AAAAAA==", "x-id": "PutObject",
    })  # fmt: skip
    assert put(server, target, b"uploaded") == 200
    head = c.head_object(Bucket=bkt, Key="up.txt")
    assert head["Metadata"] == {"owner": "alice", "original-name": "report 1.pdf"}
    # As on S3: tags and checksum values in a query are not applied.
    assert c.get_object_tagging(Bucket=bkt, Key="up.txt")["TagSet"] == []
    assert c.get_object(Bucket=bkt, Key="up.txt")["Body"].read() == b"uploaded"


def test_a_canned_acl_in_the_signed_query_applies(server: ServerProcess, c: Any, bkt: str) -> None:
    c.put_bucket_ownership_controls(Bucket=bkt, OwnershipControls={"Rules": [{"ObjectOwnership": "ObjectWriter"}]})
    c.delete_public_access_block(Bucket=bkt)
    target = presigned_put(server, bkt, "public.txt", {"x-amz-acl": "public-read"})
    assert put(server, target, b"for all") == 200
    grants = c.get_object_acl(Bucket=bkt, Key="public.txt")["Grants"]
    assert any(g["Grantee"].get("URI", "").endswith("/AllUsers") and g["Permission"] == "READ" for g in grants)


def test_a_changed_query_value_fails_the_signature(server: ServerProcess, c: Any, bkt: str) -> None:
    target = presigned_put(server, bkt, "k", {"x-amz-meta-owner": "alice"})
    assert "x-amz-meta-owner=alice" in target
    assert put(server, target.replace("x-amz-meta-owner=alice", "x-amz-meta-owner=mallory"), b"x") == 403
    assert c.list_objects_v2(Bucket=bkt).get("KeyCount") == 0
