"""Static website hosting against the real server: the configuration API
through boto3 (and raw XML for what boto3 will not send), AWS's validation
errors, and the website endpoint (``Host: <bucket>.<website_domain>``)
through http.client: index and error documents, folder redirects, routing
rules, RedirectAllRequestsTo, object redirects, HTML errors, and that it is
always an anonymous read through the bucket policy.
"""

from __future__ import annotations

import http.client
import json
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.exceptions import ClientError

from tests.integration.conftest import make_client
from tests.integration.raw import CREDS, client_error, signed
from tests.integration.server import ROOT_ACCESS_KEY, ServerProcess

SITE = "site.test"  # [s3] website_domain of the server under test


@pytest.fixture(scope="module")
def web_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("website")
    data = root / "data"
    data.mkdir()
    config = root / "lightningstor.toml"
    config.write_text(f'[s3]\nwebsite_domain = "{SITE}"\n[logging]\nformat = "json"\n')
    server = ServerProcess(data, config=str(config)).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def s3(web_server: ServerProcess) -> Any:
    return make_client(web_server.endpoint)


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"web-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


def public_read(s3: Any, bucket: str, *, list_too: bool = False) -> None:
    """The policy AWS's guide gives a website bucket (plus ListBucket, which
    turns a missing key's 403 into 404)."""
    statements = [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                   "Resource": f"arn:aws:s3:::{bucket}/*"}]
    if list_too:
        statements.append({"Effect": "Allow", "Principal": "*", "Action": "s3:ListBucket",
                           "Resource": f"arn:aws:s3:::{bucket}"})
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": statements}))


class Page:
    """A website answer: status, headers (lower-case names) and body."""

    def __init__(self, response: http.client.HTTPResponse) -> None:
        self.status = response.status
        self.headers = {k.lower(): v for k, v in response.getheaders()}
        self.body = response.read()


def visit(server: ServerProcess, bucket: str, path: str, method: str = "GET",
          headers: dict[str, str] | None = None, body: bytes = b"") -> Page:
    """One request to the website endpoint of ``bucket``."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers={"Host": f"{bucket}.{SITE}:{server.port}", **(headers or {})})
        return Page(conn.getresponse())
    finally:
        conn.close()


def html_code(page: Page) -> str:
    match = re.search(rb"<li>Code: (\w+)</li>", page.body)
    assert match, page.body
    return match.group(1).decode()


INDEX = {"IndexDocument": {"Suffix": "index.html"}}
WITH_ERROR = {"IndexDocument": {"Suffix": "index.html"}, "ErrorDocument": {"Key": "404.html"}}


# -- the configuration API ---------------------------------------------------------


def test_no_configuration_is_404(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as info:
        s3.get_bucket_website(Bucket=bucket)
    assert client_error(info)[:2] == (404, "NoSuchWebsiteConfiguration")


def test_put_get_delete_round_trip(s3: Any, bucket: str) -> None:
    config = {
        **WITH_ERROR,
        "RoutingRules": [
            {"Condition": {"KeyPrefixEquals": "docs/"},
             "Redirect": {"ReplaceKeyPrefixWith": "documents/", "HttpRedirectCode": "302"}},
            {"Condition": {"HttpErrorCodeReturnedEquals": "404"},
             "Redirect": {"HostName": "example.com", "Protocol": "https"}},
        ],
    }
    s3.put_bucket_website(Bucket=bucket, WebsiteConfiguration=config)
    got = s3.get_bucket_website(Bucket=bucket)
    assert got["IndexDocument"] == {"Suffix": "index.html"}
    assert got["ErrorDocument"] == {"Key": "404.html"}
    assert got["RoutingRules"] == config["RoutingRules"]
    assert "RedirectAllRequestsTo" not in got
    assert s3.delete_bucket_website(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as info:
        s3.get_bucket_website(Bucket=bucket)
    assert client_error(info)[:2] == (404, "NoSuchWebsiteConfiguration")
    # Deleting again is still 204, as on AWS.
    assert s3.delete_bucket_website(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 204


def test_redirect_all_round_trip(s3: Any, bucket: str) -> None:
    s3.put_bucket_website(Bucket=bucket, WebsiteConfiguration={
        "RedirectAllRequestsTo": {"HostName": "www.example.com", "Protocol": "https"}})
    got = s3.get_bucket_website(Bucket=bucket)
    assert got["RedirectAllRequestsTo"] == {"HostName": "www.example.com", "Protocol": "https"}
    assert "IndexDocument" not in got


def put_raw(server: ServerProcess, bucket: str, inner: str) -> tuple[int, bytes]:
    doc = f'<WebsiteConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">{inner}</WebsiteConfiguration>'
    return signed(server, "PUT", f"/{bucket}?website", doc.encode())


@pytest.mark.parametrize(
    ("inner", "code", "message"),
    [
        ("<IndexDocument><Suffix></Suffix></IndexDocument>", "InvalidArgument",
         "The IndexDocument Suffix is not well formed"),
        ("<IndexDocument><Suffix>a/index.html</Suffix></IndexDocument>", "InvalidArgument",
         "The IndexDocument Suffix is not well formed"),
        ("<ErrorDocument><Key>e.html</Key></ErrorDocument>", "InvalidArgument",
         "A value for IndexDocument Suffix must be provided if RedirectAllRequestsTo is empty"),
        ("<RedirectAllRequestsTo><HostName>x.com</HostName></RedirectAllRequestsTo>"
         "<IndexDocument><Suffix>i.html</Suffix></IndexDocument>", "InvalidArgument",
         "RedirectAllRequestsTo cannot be provided in conjunction with other Routing Rules."),
        ("<RedirectAllRequestsTo><HostName>x.com</HostName><Protocol>ftp</Protocol></RedirectAllRequestsTo>",
         "InvalidArgument", "Invalid protocol, protocol can be http or https."),
        ("<IndexDocument><Suffix>i.html</Suffix></IndexDocument><RoutingRules><RoutingRule>"
         "<Redirect><ReplaceKeyWith>a</ReplaceKeyWith><ReplaceKeyPrefixWith>b</ReplaceKeyPrefixWith></Redirect>"
         "</RoutingRule></RoutingRules>", "InvalidArgument",
         "You can only define ReplaceKeyPrefix or ReplaceKey but not both."),
        ("<IndexDocument><Suffix>i.html</Suffix></IndexDocument><RoutingRules><RoutingRule>"
         "<Redirect><HttpRedirectCode>200</HttpRedirectCode></Redirect></RoutingRule></RoutingRules>",
         "InvalidArgument", "The provided HTTP redirect code (200) is not valid. Valid codes are 3XX except 300."),
        ("<IndexDocument><Suffix>i.html</Suffix></IndexDocument><RoutingRules><RoutingRule>"
         "<Condition><HttpErrorCodeReturnedEquals>200</HttpErrorCodeReturnedEquals></Condition>"
         "<Redirect><HostName>x.com</HostName></Redirect></RoutingRule></RoutingRules>",
         "InvalidArgument", "The provided HTTP error code (200) is not valid. Valid codes are 4XX or 5XX."),
        ("<IndexDocument><Suffix>i.html</Suffix></IndexDocument><RoutingRules><RoutingRule>"
         "<Condition></Condition><Redirect><HostName>x.com</HostName></Redirect></RoutingRule></RoutingRules>",
         "InvalidArgument", "Condition cannot be empty."),
        ("<IndexDocument><Suffix>i.html</Suffix><Suffix>j.html</Suffix></IndexDocument>", "MalformedXML", ""),
        ("<IndexDocument><Suffix>i.html</Suffix></IndexDocument><Unknown/>", "MalformedXML", ""),
        ("<IndexDocument><Suffix>i.html</Suffix></IndexDocument><RoutingRules><RoutingRule>"
         "<Condition><KeyPrefixEquals>a</KeyPrefixEquals></Condition></RoutingRule></RoutingRules>",
         "MalformedXML", ""),
    ],
)
def test_invalid_configurations(web_server: ServerProcess, s3: Any, bucket: str, inner: str, code: str,
                                message: str) -> None:
    status, body = put_raw(web_server, bucket, inner)
    assert status == 400, body
    assert f"<Code>{code}</Code>".encode() in body
    assert message.encode() in body
    with pytest.raises(ClientError):  # nothing was stored
        s3.get_bucket_website(Bucket=bucket)


def test_too_many_routing_rules(web_server: ServerProcess, bucket: str) -> None:
    rule = "<RoutingRule><Redirect><HostName>x.com</HostName></Redirect></RoutingRule>"
    status, body = put_raw(web_server, bucket,
                           "<IndexDocument><Suffix>i.html</Suffix></IndexDocument>"
                           f"<RoutingRules>{rule * 51}</RoutingRules>")
    assert (status, b"<Code>InvalidArgument</Code>" in body) == (400, True)
    status, _ = put_raw(web_server, bucket,
                        "<IndexDocument><Suffix>i.html</Suffix></IndexDocument>"
                        f"<RoutingRules>{rule * 50}</RoutingRules>")
    assert status == 200


def test_configuration_needs_bucket_rights(web_server: ServerProcess, bucket: str) -> None:
    """Unsigned PutBucketWebsite / GetBucketWebsite are AccessDenied even on
    a public-read bucket (its policy allows only s3:GetObject)."""
    s3 = make_client(web_server.endpoint)
    public_read(s3, bucket)
    s3.put_bucket_website(Bucket=bucket, WebsiteConfiguration=INDEX)
    conn = http.client.HTTPConnection("127.0.0.1", web_server.port, timeout=30)
    try:
        conn.request("GET", f"/{bucket}?website")
        response = conn.getresponse()
        assert (response.status, b"<Code>AccessDenied</Code>" in response.read()) == (403, True)
    finally:
        conn.close()


def test_policy_action_names(web_server: ServerProcess, s3: Any, bucket: str) -> None:
    """A policy denying s3:PutBucketWebsite stops even the owner's put;
    s3:GetBucketWebsite and s3:DeleteBucketWebsite are separate actions."""
    s3.put_bucket_website(Bucket=bucket, WebsiteConfiguration=INDEX)
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Deny", "Principal": "*", "Action": ["s3:PutBucketWebsite", "s3:DeleteBucketWebsite"],
         "Resource": f"arn:aws:s3:::{bucket}"}]}))
    with pytest.raises(ClientError) as info:
        s3.put_bucket_website(Bucket=bucket, WebsiteConfiguration=WITH_ERROR)
    assert client_error(info)[:2] == (403, "AccessDenied")
    with pytest.raises(ClientError) as info:
        s3.delete_bucket_website(Bucket=bucket)
    assert client_error(info)[:2] == (403, "AccessDenied")
    assert s3.get_bucket_website(Bucket=bucket)["IndexDocument"] == {"Suffix": "index.html"}
    s3.delete_bucket_policy(Bucket=bucket)


def test_configuration_survives_restart(tmp_path: Any) -> None:
    data = tmp_path / "data"
    data.mkdir()
    server = ServerProcess(data).start()
    try:
        s3 = make_client(server.endpoint)
        s3.create_bucket(Bucket="keep-web")
        s3.put_bucket_website(Bucket="keep-web", WebsiteConfiguration=WITH_ERROR)
    finally:
        server.stop()
    server = ServerProcess(data).start()
    try:
        got = make_client(server.endpoint).get_bucket_website(Bucket="keep-web")
        assert (got["IndexDocument"], got["ErrorDocument"]) == ({"Suffix": "index.html"}, {"Key": "404.html"})
    finally:
        server.stop()


# -- the website endpoint ----------------------------------------------------------


@pytest.fixture
def site(s3: Any, bucket: str) -> str:
    """A public website bucket with an index, a folder and an error page."""
    public_read(s3, bucket, list_too=True)
    s3.put_bucket_website(Bucket=bucket, WebsiteConfiguration=WITH_ERROR)
    s3.put_object(Bucket=bucket, Key="index.html", Body=b"<p>home</p>", ContentType="text/html")
    s3.put_object(Bucket=bucket, Key="docs/index.html", Body=b"<p>docs</p>", ContentType="text/html")
    s3.put_object(Bucket=bucket, Key="page.html", Body=b"<p>page</p>", ContentType="text/html")
    s3.put_object(Bucket=bucket, Key="404.html", Body=b"<p>lost</p>", ContentType="text/html")
    return bucket


def test_index_document_at_root_and_in_folders(web_server: ServerProcess, site: str) -> None:
    root = visit(web_server, site, "/")
    assert (root.status, root.body, root.headers["content-type"]) == (200, b"<p>home</p>", "text/html")
    assert visit(web_server, site, "/docs/").body == b"<p>docs</p>"
    assert visit(web_server, site, "/page.html").body == b"<p>page</p>"
    head = visit(web_server, site, "/", method="HEAD")
    assert (head.status, head.body, head.headers["content-length"]) == (200, b"", "11")


def test_access_log_names_the_requested_key(web_server: ServerProcess, site: str) -> None:
    """The access log shows the key the client asked for, not the index or
    error document the endpoint looked up to answer it."""
    asked = {"/docs/": ("docs/", 200), "/nothing.html": ("nothing.html", 404), "/page.html": ("page.html", 200)}
    ids = {visit(web_server, site, path).headers["x-amz-request-id"]: want for path, want in asked.items()}
    deadline = time.monotonic() + 5
    while True:
        events = [json.loads(line) for line in web_server.output if line.startswith("{")]
        logged = {e["request_id"]: (e["key"], e["status"]) for e in events
                  if e.get("namespace") == "lightningstor.access" and e.get("request_id") in ids}
        if len(logged) == len(ids) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert logged == ids


def test_folder_without_slash_redirects(web_server: ServerProcess, site: str) -> None:
    page = visit(web_server, site, "/docs")
    assert (page.status, page.headers["location"]) == (302, "/docs/")


def test_missing_key_serves_the_error_document_with_404(web_server: ServerProcess, site: str) -> None:
    page = visit(web_server, site, "/nothing.html")
    assert (page.status, page.body, page.headers["content-type"]) == (404, b"<p>lost</p>", "text/html")
    assert visit(web_server, site, "/empty-folder/").status == 404


def test_missing_key_without_error_document_is_an_html_page(web_server: ServerProcess, s3: Any, site: str) -> None:
    s3.put_bucket_website(Bucket=site, WebsiteConfiguration=INDEX)
    page = visit(web_server, site, "/nothing.html")
    assert page.status == 404
    assert page.headers["content-type"].startswith("text/html")
    assert html_code(page) == "NoSuchKey"
    assert b"<title>404 Not Found</title>" in page.body


def test_unreadable_error_document_falls_back_to_html(web_server: ServerProcess, s3: Any, site: str) -> None:
    s3.delete_object(Bucket=site, Key="404.html")
    page = visit(web_server, site, "/nothing.html")
    assert (page.status, html_code(page)) == (404, "NoSuchKey")


def test_a_lost_chunk_is_an_html_500(web_server: ServerProcess, s3: Any, site: str) -> None:
    """An object whose stored data is gone answers this endpoint's HTML
    error page (InternalError), as any other error here, not twisted's bare
    "Processing Failed" page; the server reads it once more first (it may
    have been overwritten meanwhile, handlers/objects.py)."""
    chunks = web_server.data_dir / "data" / "chunks"
    before = set(chunks.rglob("*"))
    s3.put_object(Bucket=site, Key="lost.html", Body=b"x" * (128 * 1024))  # above the inline threshold
    new = [path for path in set(chunks.rglob("*")) - before if path.is_file()]
    assert len(new) == 1
    new[0].unlink()
    page = visit(web_server, site, "/lost.html")
    assert (page.status, page.headers["content-type"]) == (500, "text/html; charset=utf-8")
    assert html_code(page) == "InternalError"


def test_not_public_is_403_with_the_error_document(web_server: ServerProcess, s3: Any, bucket: str) -> None:
    """Without ListBucket a missing key is 403 (as from the S3 API); the
    error document is sent with that status."""
    public_read(s3, bucket)
    s3.put_bucket_website(Bucket=bucket, WebsiteConfiguration=WITH_ERROR)
    s3.put_object(Bucket=bucket, Key="404.html", Body=b"<p>lost</p>")
    page = visit(web_server, bucket, "/nothing.html")
    assert (page.status, page.body) == (403, b"<p>lost</p>")


def test_private_bucket_is_403_html(web_server: ServerProcess, s3: Any, bucket: str) -> None:
    s3.put_bucket_website(Bucket=bucket, WebsiteConfiguration=WITH_ERROR)
    s3.put_object(Bucket=bucket, Key="index.html", Body=b"secret")
    page = visit(web_server, bucket, "/")
    assert (page.status, html_code(page)) == (403, "AccessDenied")
    assert b"secret" not in page.body


def test_credentials_are_ignored(web_server: ServerProcess, s3: Any, bucket: str) -> None:
    """A website request is anonymous whatever it carries: an Authorization
    header neither fails it nor lets it read a private object."""
    s3.put_bucket_website(Bucket=bucket, WebsiteConfiguration=INDEX)
    s3.put_object(Bucket=bucket, Key="index.html", Body=b"secret")
    page = visit(web_server, bucket, "/", headers={"Authorization": f"AWS {ROOT_ACCESS_KEY}:bogus"})
    assert (page.status, html_code(page)) == (403, "AccessDenied")
    # Validly signed by the bucket's owner, for the website's Host: still anonymous.
    host = f"{bucket}.{SITE}:{web_server.port}"
    request = AWSRequest("GET", f"http://{host}/index.html", headers={"Host": host})
    S3SigV4Auth(CREDS, "s3", "us-east-1").add_auth(request)
    page = visit(web_server, bucket, "/index.html", headers=dict(request.headers.items()))
    assert (page.status, html_code(page)) == (403, "AccessDenied")


def test_no_website_configuration_is_404_html(web_server: ServerProcess, s3: Any, bucket: str) -> None:
    public_read(s3, bucket)
    page = visit(web_server, bucket, "/")
    assert page.status == 404
    assert page.headers["content-type"].startswith("text/html")
    assert html_code(page) == "NoSuchWebsiteConfiguration"
    assert f"<li>BucketName: {bucket}</li>".encode() in page.body


def test_missing_bucket_is_404_html(web_server: ServerProcess) -> None:
    page = visit(web_server, "no-such-bucket-here", "/")
    assert (page.status, html_code(page)) == (404, "NoSuchBucket")


@pytest.mark.parametrize("method", ["PUT", "POST", "DELETE"])
def test_other_methods_are_405(web_server: ServerProcess, site: str, method: str) -> None:
    page = visit(web_server, site, "/index.html", method=method, body=b"x")
    assert (page.status, html_code(page)) == (405, "MethodNotAllowed")


def test_redirect_all_requests(web_server: ServerProcess, s3: Any, bucket: str) -> None:
    s3.put_bucket_website(Bucket=bucket, WebsiteConfiguration={
        "RedirectAllRequestsTo": {"HostName": "www.example.com", "Protocol": "https"}})
    page = visit(web_server, bucket, "/a/b.html")
    assert (page.status, page.headers["location"]) == (301, "https://www.example.com/a/b.html")
    page = visit(web_server, bucket, "/")
    assert (page.status, page.headers["location"]) == (301, "https://www.example.com/")


def test_routing_rule_on_prefix(web_server: ServerProcess, s3: Any, site: str) -> None:
    s3.put_bucket_website(Bucket=site, WebsiteConfiguration={**WITH_ERROR, "RoutingRules": [
        {"Condition": {"KeyPrefixEquals": "old/"}, "Redirect": {"ReplaceKeyPrefixWith": "new/"}},
        {"Condition": {"KeyPrefixEquals": "old/"}, "Redirect": {"ReplaceKeyWith": "never.html"}},
        {"Condition": {"KeyPrefixEquals": "moved"}, "Redirect": {
            "ReplaceKeyWith": "here.html", "HostName": "other.example", "HttpRedirectCode": "307"}},
    ]})
    page = visit(web_server, site, "/old/a%20b.html")
    assert (page.status, page.headers["location"]) == (301, f"http://{site}.{SITE}:{web_server.port}/new/a%20b.html")
    page = visit(web_server, site, "/moved/x")
    assert (page.status, page.headers["location"]) == (307, "http://other.example/here.html")
    assert visit(web_server, site, "/page.html").status == 200  # no rule matches


def test_routing_rule_on_error_code(web_server: ServerProcess, s3: Any, site: str) -> None:
    s3.put_bucket_website(Bucket=site, WebsiteConfiguration={**WITH_ERROR, "RoutingRules": [
        {"Condition": {"HttpErrorCodeReturnedEquals": "404", "KeyPrefixEquals": "img/"},
         "Redirect": {"HostName": "images.example", "Protocol": "https"}},
    ]})
    page = visit(web_server, site, "/img/cat.png")
    assert (page.status, page.headers["location"]) == (301, "https://images.example/img/cat.png")
    assert visit(web_server, site, "/other.png").body == b"<p>lost</p>"  # prefix differs: error document
    assert visit(web_server, site, "/page.html").status == 200  # no error, no redirect


def test_every_redirect_carries_the_cors_headers(web_server: ServerProcess, s3: Any, site: str) -> None:
    """A browser checks CORS on a redirect too: with a rule allowing the
    origin, every website redirect (folder, object, routing rule before the
    lookup and after a 404, and RedirectAllRequestsTo) carries the headers,
    as the pages do.  The routing-rule and redirect-all ones did not (they
    answer before any object lookup)."""
    s3.put_bucket_cors(Bucket=site, CORSConfiguration={"CORSRules": [{"AllowedMethods": ["GET"], "AllowedOrigins": ["*"]}]})
    s3.put_bucket_website(Bucket=site, WebsiteConfiguration={**WITH_ERROR, "RoutingRules": [
        {"Condition": {"KeyPrefixEquals": "old/"}, "Redirect": {"ReplaceKeyPrefixWith": "docs/"}},
        {"Condition": {"HttpErrorCodeReturnedEquals": "404", "KeyPrefixEquals": "img/"},
         "Redirect": {"HostName": "images.example"}},
    ]})  # fmt: skip
    s3.put_object(Bucket=site, Key="go.html", Body=b"", WebsiteRedirectLocation="/page.html")
    origin = {"Origin": "https://app.example"}
    for path, status in (("/docs", 302), ("/go.html", 301), ("/old/x", 301), ("/img/cat.png", 301), ("/page.html", 200)):
        page = visit(web_server, site, path, headers=origin)
        assert (page.status, page.headers.get("access-control-allow-origin")) == (status, "*"), path
    s3.put_bucket_website(Bucket=site, WebsiteConfiguration={"RedirectAllRequestsTo": {"HostName": "www.example.com"}})
    page = visit(web_server, site, "/a", headers=origin)
    assert (page.status, page.headers.get("access-control-allow-origin")) == (301, "*")
    assert "access-control-allow-origin" not in visit(web_server, site, "/a").headers  # no Origin, no headers


def test_object_redirect_location(web_server: ServerProcess, s3: Any, site: str) -> None:
    s3.put_object(Bucket=site, Key="go.html", Body=b"", WebsiteRedirectLocation="/page.html")
    assert s3.head_object(Bucket=site, Key="go.html")["WebsiteRedirectLocation"] == "/page.html"
    page = visit(web_server, site, "/go.html")
    assert (page.status, page.headers["location"]) == (301, "/page.html")
    # The S3 API itself serves the object, not the redirect.
    assert s3.get_object(Bucket=site, Key="go.html")["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_object_redirect_location_must_be_simple(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as info:
        s3.put_object(Bucket=bucket, Key="bad", Body=b"", WebsiteRedirectLocation="page.html")
    assert client_error(info)[:2] == (400, "InvalidRedirectLocation")


def test_s3_api_on_plain_hosts_is_unchanged(web_server: ServerProcess, s3: Any, site: str) -> None:
    """Only ``<bucket>.<website_domain>`` is a website: the same port still
    answers S3 (XML errors) for every other Host."""
    conn = http.client.HTTPConnection("127.0.0.1", web_server.port, timeout=30)
    try:
        conn.request("GET", f"/{site}/nothing.html")
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    assert response.status == 404 and body.startswith(b"<?xml")
    assert visit(web_server, site, "/health").status == 404  # a key on the website, not the probe


def test_range_and_head_errors(web_server: ServerProcess, site: str) -> None:
    page = visit(web_server, site, "/page.html", headers={"Range": "bytes=3-6"})
    assert (page.status, page.body) == (206, b"page")
    head = visit(web_server, site, "/nothing.html", method="HEAD")
    assert (head.status, head.body) == (404, b"")


def test_website_domain_unset_keeps_hosts_path_style(server: ServerProcess) -> None:
    """Without ``website_domain`` (the shared server) such a Host is nothing
    special: the request is the S3 API's, with an XML error."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request("GET", "/", headers={"Host": f"some-bucket.{SITE}"})
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    assert response.status == 403 and body.startswith(b"<?xml")
