"""Tests for lightningstor.s3.xmlio: safe parsing and S3-exact rendering.

Request bodies are produced with botocore's own serializer and responses are
read back with botocore's own parser (plus the S3 handlers boto3 runs after
it), so "round-trips" here means "what boto3 sends we read, and what we send
boto3 reads" rather than agreement with ourselves.
"""

from __future__ import annotations

import datetime
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote_plus

import botocore.session
import pytest
from botocore import handlers
from botocore.model import ServiceModel
from botocore.parsers import ResponseParserError, RestXMLParser
from botocore.serialize import create_serializer
from hypothesis import given, settings
from hypothesis import strategies as st

from lightningstor import errors
from lightningstor.core.acl import private
from lightningstor.core.types import ListEntry, ListResult
from lightningstor.s3 import aclxml, xmlio
from lightningstor.s3.xmlio import CompletedPart, ListedPart, ListedUpload

DETERMINISTIC = settings(derandomize=True, max_examples=100, deadline=None, database=None)

S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"
MS = 1255369830000  # 2009-10-12T17:50:30Z
WHEN = datetime.datetime(2009, 10, 12, 17, 50, 30, tzinfo=datetime.UTC)

# Keys that have tripped S3 servers up: URL-special, XML-special, whitespace.
AWKWARD_KEYS = [
    "plain.txt",
    "a b",
    " leading and trailing ",
    "a+b",
    "100%",
    "%2F",
    "x&y",
    "<tag>",
    'quote"apos\'',
    "ключ/über/日本語/😀",
    "tab\there",
    "line\nbreak",
    "carriage\rreturn",
    "dir/sub dir/file?x=1#frag",
    "~*!@$^()[]{};:,=",
]

# Any Unicode scalar value (lone surrogates are not strings a client can send).
ANY_KEY = st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=40)
# Keys boto3 can send in an XML body: XML 1.0 characters, minus CR (which
# ElementTree writes raw and every XML parser turns into LF).
XML_KEY = st.text(
    alphabet=st.characters(
        codec="utf-8",
        exclude_characters=[chr(c) for c in range(0x20) if c not in (0x09, 0x0A)] + ["\ufffe", "\uffff"],
    ),
    min_size=1,
    max_size=40,
)


@pytest.fixture(scope="module")
def s3_model() -> ServiceModel:
    return botocore.session.get_session().get_service_model("s3")


@pytest.fixture(scope="module")
def parse(s3_model: ServiceModel) -> Any:
    """Parse a response body the way botocore does for an S3 operation."""

    def _parse(operation: str, body: bytes, status: int = 200) -> dict[str, Any]:
        shape = s3_model.operation_model(operation).output_shape
        response = {"body": body, "headers": {}, "status_code": status}
        parsed: dict[str, Any] = RestXMLParser().parse(response, shape)
        return parsed

    return _parse


@pytest.fixture(scope="module")
def serialize(s3_model: ServiceModel) -> Any:
    """Build a request body the way botocore does for an S3 operation."""
    serializer = create_serializer("rest-xml")

    def _serialize(operation: str, params: dict[str, Any]) -> bytes:
        request = serializer.serialize_to_request(params, s3_model.operation_model(operation))
        body: bytes = request["body"]
        return body

    return _serialize


def child_tags(body: bytes) -> list[str]:
    return [element.tag.split("}")[-1] for element in ET.fromstring(body)]


def entry(key: str, **kwargs: Any) -> ListEntry:
    defaults: dict[str, Any] = {"size": 3, "etag": "acbd18db4cc2f85cedef654fccc4a4d8", "last_modified": MS}
    defaults.update(kwargs)
    return ListEntry(key, **defaults)


# ===========================================================================
# parse_xml
# ===========================================================================


def test_parse_xml_strips_s3_namespace() -> None:
    """Tags in the S3 namespace come out bare, children included."""
    root = xmlio.parse_xml(f'<Delete xmlns="{S3_NS}"><Quiet>true</Quiet></Delete>'.encode())
    assert root.tag == "Delete"
    assert [child.tag for child in root] == ["Quiet"]


def test_parse_xml_tolerates_no_namespace() -> None:
    """Clients that omit xmlns (curl users) get the same tree."""
    root = xmlio.parse_xml(b'<?xml version="1.0" encoding="UTF-8"?>\n<Delete><Quiet>true</Quiet></Delete>')
    assert root.tag == "Delete"
    assert root[0].text == "true"


def test_parse_xml_keeps_foreign_namespaces_distinct() -> None:
    """An element in another namespace does not masquerade as an S3 element."""
    root = xmlio.parse_xml(b'<Delete xmlns="urn:other"><Quiet>true</Quiet></Delete>')
    assert root.tag == "{urn:other}Delete"


def test_parse_xml_decodes_references() -> None:
    """Predefined entities and character references are ordinary text."""
    root = xmlio.parse_xml(b"<K>a&amp;b&lt;&#13;&#x1F600;</K>")
    assert root.text == "a&b<\r\U0001f600"


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<Delete><Object><Key>&lol4;</Key></Object></Delete>"""

XXE_FILE = b"""<?xml version="1.0"?>
<!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<Delete><Object><Key>&xxe;</Key></Object></Delete>"""

XXE_PARAMETER = b"""<?xml version="1.0"?>
<!DOCTYPE foo [<!ENTITY % remote SYSTEM "http://127.0.0.1:1/evil.dtd"> %remote;]>
<Delete/>"""

EXTERNAL_DTD = b'<?xml version="1.0"?><!DOCTYPE Delete SYSTEM "http://127.0.0.1:1/x.dtd"><Delete/>'

PLAIN_DOCTYPE = b"<!DOCTYPE Delete><Delete/>"


@pytest.mark.parametrize("payload", [BILLION_LAUGHS, XXE_FILE, XXE_PARAMETER, EXTERNAL_DTD, PLAIN_DOCTYPE])
def test_parse_xml_refuses_doctypes(payload: bytes) -> None:
    """Billion laughs, XXE and any DOCTYPE at all are MalformedXML."""
    with pytest.raises(errors.MalformedXML):
        xmlio.parse_xml(payload)


def test_parse_xml_refuses_entity_payloads_in_operation_parsers() -> None:
    """The operation parsers inherit the refusal (no expanded or file content leaks)."""
    with pytest.raises(errors.MalformedXML):
        xmlio.parse_delete_objects(XXE_FILE)
    with pytest.raises(errors.MalformedXML):
        xmlio.parse_delete_objects(BILLION_LAUGHS)


def test_parse_xml_size_cap() -> None:
    """Bodies over max_size are refused (AWS's MaxMessageLengthExceeded, 400); at the limit they parse."""
    body = b"<A>" + b"x" * 93 + b"</A>"
    assert len(body) == 100
    assert xmlio.parse_xml(body, max_size=100).tag == "A"
    with pytest.raises(errors.S3Error) as info:
        xmlio.parse_xml(body + b" ", max_size=100)
    assert (info.value.code, info.value.status) == ("MaxMessageLengthExceeded", 400)


def test_parse_xml_default_cap_is_one_mib() -> None:
    """The default cap is 1 MiB; DeleteObjects allows more (a legal 1000-key body can exceed it)."""
    body = b"<A>" + b"x" * ((1 << 20) - 7) + b"</A>"
    assert xmlio.parse_xml(body).tag == "A"
    with pytest.raises(errors.S3Error):
        xmlio.parse_xml(body + b" ")


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"   ",
        b"not xml",
        b"<Delete>",  # unclosed
        b"<Delete></Other>",
        b"<Delete/><Delete/>",  # two roots
        b"<Delete/>trailing",
        b"<a:Delete/>",  # unbound prefix
        b"<Delete>\xff\xfe</Delete>",  # invalid UTF-8
        b"<Delete>\x01</Delete>",  # control character
        b"<Delete>&#1;</Delete>",  # reference to an illegal character
        b"<Delete>&undefined;</Delete>",
        b'<?xml version="1.0" encoding="bogus"?><Delete/>',
    ],
)
def test_parse_xml_malformed(body: bytes) -> None:
    """Anything that is not one well-formed XML element is MalformedXML."""
    with pytest.raises(errors.MalformedXML) as info:
        xmlio.parse_xml(body)
    assert info.value.status == 400


@DETERMINISTIC
@given(st.binary(max_size=200))
def test_parse_xml_random_bytes_only_malformed(body: bytes) -> None:
    """Random bytes either parse or raise MalformedXML; nothing else escapes."""
    try:
        xmlio.parse_xml(body)
    except errors.MalformedXML:
        pass


XMLISH = st.lists(
    st.sampled_from(
        ["<", ">", "/", "<Delete>", "</Delete>", "<Key>", "</Key>", "&", "&amp;", "&#", ";", "x", "1", "<!", "<?",
         "?>", "DOCTYPE", "ENTITY", "[", "]", '"', "=", " ", "xmlns", "\x00", "é", "]]>", "<![CDATA["]
    ),
    max_size=30,
).map("".join)


@DETERMINISTIC
@given(XMLISH, st.sampled_from(["utf-8", "utf-16", "latin-1"]))
def test_parse_xml_xmlish_text_only_malformed(text: str, encoding: str) -> None:
    """Near-XML fragments in several encodings never raise anything but MalformedXML."""
    try:
        xmlio.parse_xml(text.encode(encoding, "replace"))
    except errors.MalformedXML:
        pass


# ===========================================================================
# parse_delete_objects
# ===========================================================================


def test_delete_objects_from_botocore(serialize: Any) -> None:
    """The body boto3 sends gives quiet and (key, version) pairs in order."""
    body = serialize(
        "DeleteObjects",
        {"Bucket": "b", "Delete": {"Objects": [{"Key": "a"}, {"Key": "b", "VersionId": "v1", "ETag": '"e1"'}],
                                   "Quiet": True}},
    )
    assert xmlio.parse_delete_objects(body) == (True, [("a", None), ("b", "v1")], [None, '"e1"'])


def test_delete_objects_quiet_defaults_false() -> None:
    """Without <Quiet>, the response is verbose."""
    body = b"<Delete><Object><Key>k</Key></Object></Delete>"
    assert xmlio.parse_delete_objects(body) == (False, [("k", None)], [None])


@pytest.mark.parametrize(("text", "expected"), [("true", True), ("false", False), (" TRUE ", True), ("False", False)])
def test_delete_objects_quiet_values(text: str, expected: bool) -> None:
    """Quiet accepts true/false, case-insensitively, around whitespace."""
    body = f"<Delete><Quiet>{text}</Quiet><Object><Key>k</Key></Object></Delete>".encode()
    assert xmlio.parse_delete_objects(body)[0] is expected


def test_delete_objects_keys_keep_whitespace() -> None:
    """Keys are taken verbatim: leading/trailing spaces, tabs and newlines stay."""
    body = b"<Delete><Object><Key> a </Key></Object><Object><Key>\tb\n</Key></Object><Object><Key> </Key></Object></Delete>"
    assert xmlio.parse_delete_objects(body)[1] == [(" a ", None), ("\tb\n", None), (" ", None)]


def test_delete_objects_escaped_keys() -> None:
    """Escaped characters (including a CR sent as &#13;) are decoded."""
    body = b"<Delete><Object><Key>a&amp;b&lt;c&#13;d</Key></Object></Delete>"
    assert xmlio.parse_delete_objects(body)[1] == [("a&b<c\rd", None)]


def test_delete_objects_empty_version_is_none() -> None:
    """An empty <VersionId/> means no version; 'null' is passed through as a real id."""
    body = b"<Delete><Object><Key>a</Key><VersionId/></Object><Object><Key>b</Key><VersionId>null</VersionId></Object></Delete>"
    assert xmlio.parse_delete_objects(body)[1] == [("a", None), ("b", "null")]


def test_delete_objects_etag_conditions_and_unknown_elements() -> None:
    """An entry's ETag is its delete condition (empty: none); unknown
    elements do not break parsing; the directory-bucket conditions (Size,
    LastModifiedTime) are NotImplemented, not ignored (ignored, the entry
    was deleted whatever its size)."""
    body = (b"<Delete><Object><Key>a</Key><ETag> x </ETag><Other>3</Other></Object>"
            b"<Object><Key>b</Key><ETag/></Object><Object><Key>c</Key><ETag>*</ETag></Object><Extra/></Delete>")
    assert xmlio.parse_delete_objects(body) == (False, [("a", None), ("b", None), ("c", None)], ["x", None, "*"])
    for condition in (b"<Size>3</Size>", b"<LastModifiedTime>2026-11-28T00:00:00Z</LastModifiedTime>"):
        with pytest.raises(errors.S3Error) as e:
            xmlio.parse_delete_objects(b"<Delete><Object><Key>a</Key>" + condition + b"</Object></Delete>")
        assert (e.value.code, e.value.status) == ("NotImplemented", 501)


def test_delete_objects_limit() -> None:
    """1000 objects are allowed, 1001 are MalformedXML (AWS)."""
    thousand = b"<Delete>" + b"<Object><Key>k</Key></Object>" * 1000 + b"</Delete>"
    assert len(xmlio.parse_delete_objects(thousand)[1]) == 1000
    with pytest.raises(errors.MalformedXML):
        xmlio.parse_delete_objects(thousand.replace(b"</Delete>", b"<Object><Key>k</Key></Object></Delete>"))


def test_delete_objects_accepts_largest_legal_body() -> None:
    """1000 maximal keys written with 6-byte references (about 6 MiB of XML) still parse."""
    key = '"' * 1024
    body = ("<Delete>" + f"<Object><Key>{'&quot;' * 1024}</Key></Object>" * 1000 + "</Delete>").encode()
    assert len(body) > 5 << 20
    assert xmlio.parse_delete_objects(body)[1][999] == (key, None)


@pytest.mark.parametrize(
    "body",
    [
        b"<Delete></Delete>",  # no Object
        b"<Delete><Quiet>true</Quiet></Delete>",
        b"<Remove><Object><Key>k</Key></Object></Remove>",  # wrong root
        b"<Delete><Object><VersionId>v</VersionId></Object></Delete>",  # no Key
        b"<Delete><Object><Key></Key></Object></Delete>",  # empty Key
        b"<Delete><Object><Key>a<b/>c</Key></Object></Delete>",  # Key with markup
        b"<Delete><Quiet>yes</Quiet><Object><Key>k</Key></Object></Delete>",
        b"<Delete><Quiet>1</Quiet><Object><Key>k</Key></Object></Delete>",
        b"<Delete><Quiet/><Object><Key>k</Key></Object></Delete>",
    ],
)
def test_delete_objects_malformed(body: bytes) -> None:
    """Wrong root, no objects, objects without keys, bad Quiet: MalformedXML."""
    with pytest.raises(errors.MalformedXML):
        xmlio.parse_delete_objects(body)


@DETERMINISTIC
@given(st.lists(st.tuples(XML_KEY, st.one_of(st.none(), XML_KEY)), min_size=1, max_size=5), st.booleans())
def test_delete_objects_round_trip_property(
    serialize: Any, objects: list[tuple[str, str | None]], quiet: bool
) -> None:
    """Any key/version list boto3 can serialize parses back exactly."""
    params = [{"Key": key} if version is None else {"Key": key, "VersionId": version} for key, version in objects]
    body = serialize("DeleteObjects", {"Bucket": "b", "Delete": {"Objects": params, "Quiet": quiet}})
    assert xmlio.parse_delete_objects(body) == (quiet, objects, [None] * len(objects))


# ===========================================================================
# Other request bodies
# ===========================================================================


def test_create_bucket_configuration(serialize: Any) -> None:
    """LocationConstraint is read from boto3's body; empty bodies mean none."""
    body = serialize("CreateBucket", {"Bucket": "b", "CreateBucketConfiguration": {"LocationConstraint": "eu-west-1"}})
    assert xmlio.parse_create_bucket_configuration(body) == "eu-west-1"
    assert xmlio.parse_create_bucket_configuration(b"") is None
    assert xmlio.parse_create_bucket_configuration(b" \r\n") is None
    assert xmlio.parse_create_bucket_configuration(b"<CreateBucketConfiguration/>") is None
    empty = b"<CreateBucketConfiguration><LocationConstraint></LocationConstraint></CreateBucketConfiguration>"
    assert xmlio.parse_create_bucket_configuration(empty) is None


@pytest.mark.parametrize("body", [b"<Bucket/>", b"garbage", b"<CreateBucketConfiguration>"])
def test_create_bucket_configuration_malformed(body: bytes) -> None:
    """A non-empty body must be a CreateBucketConfiguration document."""
    with pytest.raises(errors.MalformedXML):
        xmlio.parse_create_bucket_configuration(body)


@pytest.mark.parametrize("status", ["Enabled", "Suspended"])
def test_versioning_configuration(serialize: Any, status: str) -> None:
    """PutBucketVersioning's Status is returned as sent."""
    body = serialize("PutBucketVersioning", {"Bucket": "b", "VersioningConfiguration": {"Status": status}})
    assert xmlio.parse_versioning_configuration(body) == status


@pytest.mark.parametrize(
    "body",
    [
        b"<VersioningConfiguration><Status>Disabled</Status></VersioningConfiguration>",
        b"<VersioningConfiguration><Status>enabled</Status></VersioningConfiguration>",
        b"<VersioningConfiguration><MfaDelete>Disabled</MfaDelete></VersioningConfiguration>",
        b"<VersioningConfiguration/>",
        b"<Versioning><Status>Enabled</Status></Versioning>",
        b"",
    ],
)
def test_versioning_configuration_malformed(body: bytes) -> None:
    """Any other or missing Status, or another document, is MalformedXML."""
    with pytest.raises(errors.MalformedXML):
        xmlio.parse_versioning_configuration(body)


def test_tagging(serialize: Any) -> None:
    """Tag keys and values come back verbatim, in order."""
    tags = [{"Key": "env", "Value": "prod"}, {"Key": " sp ace ", "Value": ""}, {"Key": "a&b", "Value": "<v>"}]
    body = serialize("PutObjectTagging", {"Bucket": "b", "Key": "k", "Tagging": {"TagSet": tags}})
    assert xmlio.parse_tagging(body) == {"env": "prod", " sp ace ": "", "a&b": "<v>"}
    assert xmlio.parse_tagging(b"<Tagging><TagSet/></Tagging>") == {}


def test_tagging_duplicate_keys_are_invalid_tag() -> None:
    """Two tags with one key are InvalidTag with AWS's message."""
    body = b"<Tagging><TagSet><Tag><Key>a</Key><Value>1</Value></Tag><Tag><Key>a</Key><Value>2</Value></Tag></TagSet></Tagging>"
    with pytest.raises(errors.InvalidTag) as info:
        xmlio.parse_tagging(body)
    assert info.value.message == "Cannot provide multiple Tags with the same key"


@pytest.mark.parametrize(
    "body",
    [
        b"<Tagging/>",
        b"<TagSet><Tag><Key>a</Key><Value>1</Value></Tag></TagSet>",
        b"<Tagging><TagSet><Tag><Value>1</Value></Tag></TagSet></Tagging>",
        b"<Tagging><TagSet><Tag><Key>a</Key></Tag></TagSet></Tagging>",
    ],
)
def test_tagging_malformed(body: bytes) -> None:
    """Missing TagSet, Key or Value is MalformedXML."""
    with pytest.raises(errors.MalformedXML):
        xmlio.parse_tagging(body)


def test_complete_multipart(serialize: Any) -> None:
    """Parts come back in request order with quotes stripped and checksums by algorithm."""
    parts = [
        {"PartNumber": 2, "ETag": '"e2"', "ChecksumCRC32": "AAAAAA==", "ChecksumSHA256": "c2hh"},
        {"PartNumber": 1, "ETag": "e1"},
        {"PartNumber": 3, "ETag": '"e3"', "ChecksumCRC32C": "x", "ChecksumCRC64NVME": "y", "ChecksumSHA1": "z"},
    ]
    body = serialize(
        "CompleteMultipartUpload", {"Bucket": "b", "Key": "k", "UploadId": "u", "MultipartUpload": {"Parts": parts}}
    )
    assert xmlio.parse_complete_multipart(body) == [
        CompletedPart(2, "e2", {"crc32": "AAAAAA==", "sha256": "c2hh"}),
        CompletedPart(1, "e1", {}),
        CompletedPart(3, "e3", {"crc32c": "x", "crc64nvme": "y", "sha1": "z"}),
    ]


def test_complete_multipart_escaped_quotes() -> None:
    """ETags sent as &quot;...&quot; (as some SDKs do) are stripped too."""
    body = b"<CompleteMultipartUpload><Part><ETag>&quot;abc&quot;</ETag><PartNumber> 7 </PartNumber></Part></CompleteMultipartUpload>"
    assert xmlio.parse_complete_multipart(body) == [CompletedPart(7, "abc", {})]


@pytest.mark.parametrize(
    "body",
    [
        b"<CompleteMultipartUpload/>",
        b"<CompleteMultipartUpload><Part><PartNumber>x</PartNumber><ETag>e</ETag></Part></CompleteMultipartUpload>",
        b"<CompleteMultipartUpload><Part><PartNumber>-1</PartNumber><ETag>e</ETag></Part></CompleteMultipartUpload>",
        b"<CompleteMultipartUpload><Part><PartNumber>1.5</PartNumber><ETag>e</ETag></Part></CompleteMultipartUpload>",
        b"<CompleteMultipartUpload><Part><PartNumber></PartNumber><ETag>e</ETag></Part></CompleteMultipartUpload>",
        b"<CompleteMultipartUpload><Part><ETag>e</ETag></Part></CompleteMultipartUpload>",
        b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber></Part></CompleteMultipartUpload>",
        b"<Complete><Part><PartNumber>1</PartNumber><ETag>e</ETag></Part></Complete>",
        b"garbage",
    ],
)
def test_complete_multipart_malformed(body: bytes) -> None:
    """No parts, non-integer numbers, missing ETag, wrong root: MalformedXML."""
    with pytest.raises(errors.MalformedXML):
        xmlio.parse_complete_multipart(body)


# ===========================================================================
# Rendering helpers
# ===========================================================================


def test_escape() -> None:
    """Markup characters become entities, controls become AWS-style hex references."""
    assert xmlio.escape("plain") == "plain"
    assert xmlio.escape("a&b<c>d\"e'f") == "a&amp;b&lt;c&gt;d&quot;e'f"
    assert xmlio.escape("\t\n") == "\t\n"
    assert xmlio.escape("\r\x01\x19\x07") == "&#xd;&#x1;&#x19;&#x7;"


def test_documents_start_with_declaration() -> None:
    """Every document begins with AWS's XML declaration line."""
    for body in (
        xmlio.error_xml("A", "b", resource=None, request_id="r"),
        xmlio.location_xml("us-east-1"),
        xmlio.versioning_xml(None),
        xmlio.tagging_xml({}),
    ):
        assert body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<')


# ===========================================================================
# error_xml
# ===========================================================================


def test_error_xml(parse: Any) -> None:
    """Error documents carry Code, Message, extra fields, Resource, RequestId; botocore reads them."""
    body = xmlio.error_xml(
        "NoSuchKey",
        "The specified key does not exist.",
        resource="/b/a&b",
        request_id="4442587FB7D0A2F9",
        fields={"Key": "a&b"},
        host_id="host",
    )
    assert child_tags(body) == ["Code", "Message", "Key", "Resource", "RequestId", "HostId"]
    assert b"xmlns" not in body  # AWS error documents have no namespace
    parsed = parse("GetObject", body, 404)
    assert parsed["Error"]["Code"] == "NoSuchKey"
    assert parsed["Error"]["Message"] == "The specified key does not exist."
    assert parsed["Error"]["Key"] == "a&b"
    assert parsed["Error"]["Resource"] == "/b/a&b"
    # botocore takes the request id from the x-amz-request-id header; the body copy is for humans.
    assert ET.fromstring(body).findtext("RequestId") == "4442587FB7D0A2F9"


def test_error_xml_without_resource() -> None:
    """Resource and HostId are omitted when not given."""
    body = xmlio.error_xml("SlowDown", "Please reduce your request rate.", resource=None, request_id="r")
    assert child_tags(body) == ["Code", "Message", "RequestId"]


# ===========================================================================
# ListBuckets
# ===========================================================================


def test_list_buckets(parse: Any) -> None:
    """ListAllMyBucketsResult: owner and buckets with creation dates, in order."""
    body = xmlio.list_buckets_xml("owner-id", "Owner Name", [("alpha", MS), ("beta", MS + 1500)])
    assert body.count(f'xmlns="{S3_NS}"'.encode()) == 1
    parsed = parse("ListBuckets", body)
    assert parsed["Owner"] == {"ID": "owner-id", "DisplayName": "Owner Name"}
    assert [b["Name"] for b in parsed["Buckets"]] == ["alpha", "beta"]
    assert parsed["Buckets"][0]["CreationDate"] == WHEN
    assert parsed["Buckets"][1]["CreationDate"] == WHEN + datetime.timedelta(seconds=1)  # whole seconds, as AWS
    assert "ContinuationToken" not in parsed


def test_list_buckets_empty_and_paginated(parse: Any) -> None:
    """No buckets is an empty <Buckets/>; pagination fields are echoed when given."""
    parsed = parse("ListBuckets", xmlio.list_buckets_xml("o", "o", [], continuation_token="t", prefix="p"))
    assert parsed.get("Buckets", []) == []
    assert parsed["ContinuationToken"] == "t"
    assert parsed["Prefix"] == "p"


# ===========================================================================
# ListObjects v1 / v2
# ===========================================================================


def parse_listing(parse: Any, operation: str, body: bytes, *, auto_url: bool) -> dict[str, Any]:
    """Parse a listing and, like boto3 when it set encoding-type itself, URL-decode it."""
    parsed: dict[str, Any] = parse(operation, body)
    decoder = {
        "ListObjects": handlers.decode_list_object,
        "ListObjectsV2": handlers.decode_list_object_v2,
        "ListObjectVersions": handlers.decode_list_object_versions,
    }[operation]
    decoder(parsed, context={"encoding_type_auto_set": auto_url})
    return parsed


def test_list_objects_v2_basic(parse: Any) -> None:
    """v2: KeyCount counts keys and prefixes; Contents carry key, date, quoted ETag, size, class."""
    result = ListResult([entry("a"), entry("b", size=0, storage_class="STANDARD_IA")], ["c/"], False)
    body = xmlio.list_objects_xml(
        result, version=2, bucket="bkt", prefix="", delimiter="/", max_keys=1000, encoding_type=None
    )
    assert b"<ETag>&quot;acbd18db4cc2f85cedef654fccc4a4d8&quot;</ETag>" in body
    assert child_tags(body) == [
        "Name", "Prefix", "KeyCount", "MaxKeys", "Delimiter", "IsTruncated", "Contents", "Contents", "CommonPrefixes",
    ]
    parsed = parse("ListObjectsV2", body)
    assert parsed["Name"] == "bkt"
    assert parsed["KeyCount"] == 3
    assert parsed["MaxKeys"] == 1000
    assert parsed["IsTruncated"] is False
    assert parsed["Delimiter"] == "/"
    first = parsed["Contents"][0]
    assert first["Key"] == "a"
    assert first["LastModified"] == WHEN
    assert first["ETag"] == '"acbd18db4cc2f85cedef654fccc4a4d8"'
    assert first["Size"] == 3
    assert first["StorageClass"] == "STANDARD"
    assert "Owner" not in first  # v2 shows owners only with fetch-owner
    assert parsed["Contents"][1]["StorageClass"] == "STANDARD_IA"
    assert parsed["CommonPrefixes"] == [{"Prefix": "c/"}]
    for absent in ("ContinuationToken", "NextContinuationToken", "StartAfter", "EncodingType"):
        assert absent not in parsed


def test_list_objects_v2_pagination(parse: Any) -> None:
    """v2 echoes ContinuationToken and StartAfter, and gives NextContinuationToken when truncated."""
    result = ListResult([entry("k")], [], True, next_marker="k")
    body = xmlio.list_objects_xml(
        result, version=2, bucket="b", prefix="p", delimiter=None, max_keys=1, encoding_type=None,
        continuation_token="tok/1=", next_continuation_token="tok/2=", start_after="j",
    )
    assert child_tags(body)[:8] == [
        "Name", "Prefix", "StartAfter", "ContinuationToken", "NextContinuationToken", "KeyCount", "MaxKeys", "IsTruncated",
    ]
    parsed = parse("ListObjectsV2", body)
    assert parsed["IsTruncated"] is True
    assert parsed["ContinuationToken"] == "tok/1="
    assert parsed["NextContinuationToken"] == "tok/2="
    assert parsed["StartAfter"] == "j"
    assert parsed["Prefix"] == "p"
    assert "Delimiter" not in parsed


def test_list_objects_v2_no_next_token_when_complete(parse: Any) -> None:
    """A complete page has no NextContinuationToken even if one is passed."""
    body = xmlio.list_objects_xml(
        ListResult([], [], False), version=2, bucket="b", prefix="", delimiter="", max_keys=5,
        encoding_type=None, next_continuation_token="stale",
    )
    parsed = parse("ListObjectsV2", body)
    assert "NextContinuationToken" not in parsed
    assert "Delimiter" not in parsed  # an empty delimiter is omitted, as AWS does
    assert parsed["KeyCount"] == 0


def test_list_objects_v2_fetch_owner(parse: Any) -> None:
    """fetch-owner=true adds Owner to each entry."""
    body = xmlio.list_objects_xml(
        ListResult([entry("k", owner="principal-1")], [], False), version=2, bucket="b", prefix="",
        delimiter=None, max_keys=5, encoding_type=None, fetch_owner=True,
    )
    assert parse("ListObjectsV2", body)["Contents"][0]["Owner"] == {"ID": "principal-1", "DisplayName": "principal-1"}


def test_list_objects_v1_markers(parse: Any) -> None:
    """v1 echoes Marker, shows Owner, and gives NextMarker when delimited and truncated."""
    result = ListResult([entry("a", owner="o")], ["b/"], True, next_marker="b/")
    body = xmlio.list_objects_xml(
        result, version=1, bucket="bkt", prefix="", delimiter="/", max_keys=2, encoding_type=None, marker="0"
    )
    assert child_tags(body) == [
        "Name", "Prefix", "Marker", "NextMarker", "MaxKeys", "Delimiter", "IsTruncated", "Contents", "CommonPrefixes",
    ]
    assert b"KeyCount" not in body
    parsed = parse("ListObjects", body)
    assert parsed["Marker"] == "0"
    assert parsed["NextMarker"] == "b/"
    assert parsed["Contents"][0]["Owner"]["ID"] == "o"


def test_list_objects_v1_no_next_marker_without_delimiter(parse: Any) -> None:
    """Without a delimiter v1 omits NextMarker; clients continue from the last Key."""
    result = ListResult([entry("a")], [], True, next_marker="a")
    body = xmlio.list_objects_xml(result, version=1, bucket="b", prefix="", delimiter=None, max_keys=1, encoding_type=None)
    parsed = parse("ListObjects", body)
    assert parsed["Marker"] == ""
    assert "NextMarker" not in parsed
    assert parsed["IsTruncated"] is True


def test_list_objects_v1_no_next_marker_when_complete(parse: Any) -> None:
    """A complete delimited page has no NextMarker."""
    result = ListResult([entry("a")], [], False, next_marker="a")
    body = xmlio.list_objects_xml(result, version=1, bucket="b", prefix="", delimiter="/", max_keys=5, encoding_type=None)
    assert "NextMarker" not in parse("ListObjects", body)


@pytest.mark.parametrize("version", [1, 2])
def test_list_objects_awkward_keys_without_encoding(parse: Any, version: int) -> None:
    """XML-safe awkward keys, prefixes and delimiters survive plain XML escaping."""
    operation = "ListObjects" if version == 1 else "ListObjectsV2"
    result = ListResult([entry(k) for k in AWKWARD_KEYS], ["p &<+%/"], False)
    body = xmlio.list_objects_xml(
        result, version=version, bucket="b", prefix="&<", delimiter="&", max_keys=1000, encoding_type=None,
        marker="<m>", start_after="<s>",
    )
    parsed = parse_listing(parse, operation, body, auto_url=False)
    assert [c["Key"] for c in parsed["Contents"]] == AWKWARD_KEYS
    assert parsed["CommonPrefixes"] == [{"Prefix": "p &<+%/"}]
    assert parsed["Prefix"] == "&<"
    assert parsed["Delimiter"] == "&"
    assert parsed["Marker" if version == 1 else "StartAfter"] == ("<m>" if version == 1 else "<s>")


@pytest.mark.parametrize("version", [1, 2])
def test_list_objects_url_encoding(parse: Any, version: int) -> None:
    """encoding-type=url: %20 for space, %2B for '+', '/' literal; boto3's decoding restores every value."""
    operation = "ListObjects" if version == 1 else "ListObjectsV2"
    keys = [*AWKWARD_KEYS, "bell\x07", "nul\x00", "esc\x1b[0m"]
    result = ListResult([entry(k) for k in keys], ["foo+1/", "quux ab/"], True, next_marker="quux ab/")
    body = xmlio.list_objects_xml(
        result, version=version, bucket="b", prefix="p q+", delimiter="/", max_keys=1000, encoding_type="url",
        marker="m n+", start_after="s t+", next_continuation_token="next",
    )
    # The exact forms the s3-tests suite records from AWS.
    assert b"<Prefix>foo%2B1/</Prefix>" in body
    assert b"<Prefix>quux%20ab/</Prefix>" in body
    assert b"<Delimiter>/</Delimiter>" in body
    assert b"<EncodingType>url</EncodingType>" in body
    parsed = parse_listing(parse, operation, body, auto_url=True)
    assert parsed["EncodingType"] == "url"
    assert [c["Key"] for c in parsed["Contents"]] == keys
    assert parsed["CommonPrefixes"] == [{"Prefix": "foo+1/"}, {"Prefix": "quux ab/"}]
    assert parsed["Delimiter"] == "/"
    if version == 1:
        assert parsed["Marker"] == "m n+"
        assert parsed["NextMarker"] == "quux ab/"
        # AWS encodes Prefix in v1 too; botocore just does not decode it there.
        assert parsed["Prefix"] == "p%20q%2B"
    else:
        assert parsed["Prefix"] == "p q+"
        assert parsed["StartAfter"] == "s t+"
        assert parsed["NextContinuationToken"] == "next"


def test_list_objects_url_encoding_tokens_are_not_encoded() -> None:
    """Continuation tokens are opaque: echoed verbatim even with encoding-type=url."""
    body = xmlio.list_objects_xml(
        ListResult([], [], True), version=2, bucket="b", prefix="", delimiter=None, max_keys=1,
        encoding_type="url", continuation_token="a+b/c=", next_continuation_token="d+e/f=",
    )
    assert b"<ContinuationToken>a+b/c=</ContinuationToken>" in body
    assert b"<NextContinuationToken>d+e/f=</NextContinuationToken>" in body


def test_list_objects_control_characters_without_encoding(parse: Any) -> None:
    """Without encoding-type, control characters are written as AWS does (&#x1;), which botocore rejects."""
    body = xmlio.list_objects_xml(
        ListResult([entry("a\x01b")], [], False), version=2, bucket="b", prefix="", delimiter=None,
        max_keys=1, encoding_type=None,
    )
    assert b"<Key>a&#x1;b</Key>" in body
    with pytest.raises(ResponseParserError):
        parse("ListObjectsV2", body)


def test_list_objects_carriage_return_survives(parse: Any) -> None:
    """A CR in a key is sent as a reference so XML end-of-line handling cannot turn it into LF."""
    body = xmlio.list_objects_xml(
        ListResult([entry("a\r\nb")], [], False), version=2, bucket="b", prefix="", delimiter=None,
        max_keys=1, encoding_type=None,
    )
    assert parse("ListObjectsV2", body)["Contents"][0]["Key"] == "a\r\nb"


def test_list_objects_lone_surrogate_does_not_crash() -> None:
    """A key that is not valid Unicode still renders (as a reference) instead of failing the listing."""
    for encoding_type in (None, "url"):
        body = xmlio.list_objects_xml(
            ListResult([entry("bad\udc80")], [], False), version=2, bucket="b", prefix="", delimiter=None,
            max_keys=1, encoding_type=encoding_type,
        )
        assert b"<Key>bad" in body


@DETERMINISTIC
@given(st.lists(ANY_KEY, min_size=1, max_size=8), st.lists(ANY_KEY, max_size=3), ANY_KEY, st.sampled_from([1, 2]))
def test_list_objects_url_round_trip_property(
    parse: Any, keys: list[str], prefixes: list[str], prefix: str, version: int
) -> None:
    """Any Unicode keys, prefixes and markers round-trip through encoding-type=url and boto3's decoding."""
    operation = "ListObjects" if version == 1 else "ListObjectsV2"
    result = ListResult([entry(k) for k in keys], prefixes, True, next_marker=keys[-1])
    body = xmlio.list_objects_xml(
        result, version=version, bucket="b", prefix=prefix, delimiter=prefix, max_keys=1000, encoding_type="url",
        marker=prefix, start_after=prefix,
    )
    parsed = parse_listing(parse, operation, body, auto_url=True)
    assert [c["Key"] for c in parsed["Contents"]] == keys
    assert [p["Prefix"] for p in parsed.get("CommonPrefixes", [])] == prefixes
    assert parsed["Delimiter"] == prefix
    if version == 1:
        assert parsed["Marker"] == prefix
        assert parsed["NextMarker"] == keys[-1]
        assert unquote_plus(parsed["Prefix"]) == prefix
    else:
        assert parsed["Prefix"] == prefix
        assert parsed["StartAfter"] == prefix


@DETERMINISTIC
@given(st.lists(XML_KEY, min_size=1, max_size=8))
def test_list_objects_plain_round_trip_property(parse: Any, keys: list[str]) -> None:
    """Any key made of XML characters round-trips without encoding-type (CR included)."""
    body = xmlio.list_objects_xml(
        ListResult([entry(k) for k in keys], [], False), version=2, bucket="b", prefix="", delimiter=None,
        max_keys=1000, encoding_type=None,
    )
    assert [c["Key"] for c in parse("ListObjectsV2", body)["Contents"]] == keys


# ===========================================================================
@pytest.mark.parametrize("version", [1, 2])
def test_list_objects_show_checksum_algorithm_and_type(parse: Any, version: int) -> None:
    """An object stored with a checksum lists its algorithm and type (never
    the value) right after its ETag, as AWS's Contents do: FULL_OBJECT for
    a whole-object checksum, COMPOSITE for a multipart checksum of part
    checksums ("-N"); an object without one shows neither element."""
    entries = [
        entry("crc", checksums={"crc32": "AAAAAA=="}),
        entry("mp", checksums={"crc32c": "yZRlqg==-3"}),
        entry("full", checksums={"crc64nvme": "AAAAAAAAAAA="}),
        entry("plain"),
        entry("empty", checksums={}),
    ]
    body = xmlio.list_objects_xml(
        ListResult(entries, [], False), version=version, bucket="b", prefix="", delimiter=None, max_keys=10,
        encoding_type=None,
    )
    assert b"&quot;</ETag><ChecksumAlgorithm>CRC32</ChecksumAlgorithm><ChecksumType>FULL_OBJECT</ChecksumType><Size>" in body
    assert b"AAAAAA==" not in body and b"yZRlqg" not in body
    listed = {c["Key"]: (c.get("ChecksumAlgorithm"), c.get("ChecksumType")) for c in parse(
        "ListObjectsV2" if version == 2 else "ListObjects", body)["Contents"]}
    assert listed == {
        "crc": (["CRC32"], "FULL_OBJECT"), "mp": (["CRC32C"], "COMPOSITE"), "full": (["CRC64NVME"], "FULL_OBJECT"),
        "plain": (None, None), "empty": (None, None),
    }


def test_listed_checksum_of_unusual_records() -> None:
    """Records with more than one checksum list each algorithm in AWS's
    order with one type; names outside S3's algorithms are not listed."""
    assert xmlio.listed_checksum({"sha256": "x", "crc32": "y"}) == (
        "<ChecksumAlgorithm>CRC32</ChecksumAlgorithm><ChecksumAlgorithm>SHA256</ChecksumAlgorithm>"
        "<ChecksumType>FULL_OBJECT</ChecksumType>"
    )
    assert xmlio.listed_checksum({"sha1": "x-2", "sha256": "y-2"}).endswith("<ChecksumType>COMPOSITE</ChecksumType>")
    assert xmlio.listed_checksum({"md5": "x"}) == ""
    assert xmlio.listed_checksum({"md5": "x", "crc32": "y"}) == (
        "<ChecksumAlgorithm>CRC32</ChecksumAlgorithm><ChecksumType>FULL_OBJECT</ChecksumType>"
    )


# ListObjectVersions
# ===========================================================================


def test_list_object_versions(parse: Any) -> None:
    """Versions and delete markers interleave in the given order; 'null' for unversioned; IsLatest."""
    entries = [
        entry("a", version_id="v3", is_latest=True, delete_marker=True, owner="o", size=0, etag=""),
        entry("a", version_id="v2", is_latest=False, owner="o"),
        entry("a", version_id=None, is_latest=False, owner="o", etag="abc-2", size=10),
        entry("b", version_id="v1", is_latest=True, owner="o"),
    ]
    body = xmlio.list_object_versions_xml(
        ListResult(entries, ["c/"], True, next_marker="b"), bucket="bkt", prefix="", delimiter="/",
        max_keys=4, encoding_type=None, key_marker="", version_id_marker="", next_version_id_marker="v1",
    )
    assert child_tags(body) == [
        "Name", "Prefix", "KeyMarker", "VersionIdMarker", "NextKeyMarker", "NextVersionIdMarker", "MaxKeys",
        "Delimiter", "IsTruncated", "DeleteMarker", "Version", "Version", "Version", "CommonPrefixes",
    ]
    parsed = parse("ListObjectVersions", body)
    assert parsed["Name"] == "bkt"
    assert parsed["IsTruncated"] is True
    assert parsed["NextKeyMarker"] == "b"
    assert parsed["NextVersionIdMarker"] == "v1"
    assert parsed["KeyMarker"] == ""
    assert parsed["VersionIdMarker"] == ""
    [marker] = parsed["DeleteMarkers"]
    assert marker == {
        "Owner": {"ID": "o", "DisplayName": "o"}, "Key": "a", "VersionId": "v3", "IsLatest": True, "LastModified": WHEN,
    }
    versions = parsed["Versions"]
    assert [(v["Key"], v["VersionId"], v["IsLatest"]) for v in versions] == [
        ("a", "v2", False), ("a", "null", False), ("b", "v1", True),
    ]
    assert versions[1]["ETag"] == '"abc-2"'
    assert versions[1]["Size"] == 10
    assert versions[0]["StorageClass"] == "STANDARD"
    assert versions[0]["Owner"]["ID"] == "o"
    assert parsed["CommonPrefixes"] == [{"Prefix": "c/"}]


def test_list_object_versions_show_checksum_algorithm_and_type(parse: Any) -> None:
    """Each Version of an object stored with a checksum shows its algorithm
    and type (AWS's ObjectVersion); delete markers and versions without one
    show neither."""
    entries = [
        entry("a", version_id="v3", is_latest=True, delete_marker=True, size=0, etag=""),
        entry("a", version_id="v2", is_latest=False, checksums={"sha256": "n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg="}),
        entry("a", version_id="v1", is_latest=False, checksums={"sha1": "qZk+NkcGgWq6PiVxeFDCbJzQ2J0=-2"}),
        entry("b", version_id=None, is_latest=True),
    ]
    body = xmlio.list_object_versions_xml(
        ListResult(entries, [], False), bucket="b", prefix="", delimiter=None, max_keys=10, encoding_type=None,
    )
    assert body.count(b"<ChecksumAlgorithm>") == 2 and b"n4bQ" not in body
    parsed = parse("ListObjectVersions", body)
    assert "ChecksumAlgorithm" not in parsed["DeleteMarkers"][0]
    assert [(v["VersionId"], v.get("ChecksumAlgorithm"), v.get("ChecksumType")) for v in parsed["Versions"]] == [
        ("v2", ["SHA256"], "FULL_OBJECT"), ("v1", ["SHA1"], "COMPOSITE"), ("null", None, None),
    ]


def test_list_object_versions_complete_page_has_no_next_markers(parse: Any) -> None:
    """NextKeyMarker / NextVersionIdMarker appear only on truncated pages; markers are echoed."""
    body = xmlio.list_object_versions_xml(
        ListResult([entry("a", version_id="v")], [], False, next_marker="a"), bucket="b", prefix="", delimiter=None,
        max_keys=5, encoding_type=None, key_marker="a", version_id_marker="v0", next_version_id_marker="v",
    )
    parsed = parse("ListObjectVersions", body)
    assert "NextKeyMarker" not in parsed
    assert "NextVersionIdMarker" not in parsed
    assert parsed["KeyMarker"] == "a"
    assert parsed["VersionIdMarker"] == "v0"


def test_list_object_versions_explicit_next_key_marker(parse: Any) -> None:
    """An explicit next_key_marker wins over result.next_marker."""
    body = xmlio.list_object_versions_xml(
        ListResult([], [], True, next_marker="ignored"), bucket="b", prefix="", delimiter=None, max_keys=1,
        encoding_type=None, next_key_marker="chosen",
    )
    assert parse("ListObjectVersions", body)["NextKeyMarker"] == "chosen"


@DETERMINISTIC
@given(st.lists(ANY_KEY, min_size=1, max_size=6), ANY_KEY)
def test_list_object_versions_url_round_trip_property(parse: Any, keys: list[str], prefix: str) -> None:
    """Keys, markers, prefix and delimiter round-trip through encoding-type=url and boto3's decoding."""
    entries = [entry(k, version_id=f"v{i}", delete_marker=i % 2 == 1) for i, k in enumerate(keys)]
    body = xmlio.list_object_versions_xml(
        ListResult(entries, [prefix], True), bucket="b", prefix=prefix, delimiter=prefix, max_keys=10,
        encoding_type="url", key_marker=prefix, version_id_marker="a+b", next_key_marker=keys[-1],
        next_version_id_marker="c+d",
    )
    parsed = parse_listing(parse, "ListObjectVersions", body, auto_url=True)
    listed = [v["Key"] for v in parsed.get("Versions", [])] + [m["Key"] for m in parsed.get("DeleteMarkers", [])]
    assert sorted(listed) == sorted(keys)
    for name in ("Prefix", "Delimiter", "KeyMarker"):
        assert parsed[name] == prefix
    assert parsed["NextKeyMarker"] == keys[-1]
    assert parsed["CommonPrefixes"] == [{"Prefix": prefix}]
    assert parsed["VersionIdMarker"] == "a+b"  # version ids are not encoded
    assert parsed["NextVersionIdMarker"] == "c+d"


# ===========================================================================
# DeleteObjects result
# ===========================================================================


def test_delete_result(parse: Any) -> None:
    """Deleted entries (with delete-marker details) and errors are read by botocore."""
    body = xmlio.delete_result_xml(
        [("plain", None, False, None), ("versioned", "v1", False, None), ("marked & <x>", None, True, "dm1")],
        [("denied", "v9", "AccessDenied", "Access Denied")],
        quiet=False,
    )
    parsed = parse("DeleteObjects", body)
    assert parsed["Deleted"] == [
        {"Key": "plain"},
        {"Key": "versioned", "VersionId": "v1"},
        {"Key": "marked & <x>", "DeleteMarker": True, "DeleteMarkerVersionId": "dm1"},
    ]
    assert parsed["Errors"] == [{"Key": "denied", "VersionId": "v9", "Code": "AccessDenied", "Message": "Access Denied"}]


def test_delete_result_quiet_lists_only_errors(parse: Any) -> None:
    """Quiet mode omits successes but still reports errors."""
    body = xmlio.delete_result_xml([("a", None, False, None)], [("b", None, "InternalError", "oops")], quiet=True)
    parsed = parse("DeleteObjects", body)
    assert "Deleted" not in parsed
    assert parsed["Errors"] == [{"Key": "b", "Code": "InternalError", "Message": "oops"}]
    assert child_tags(xmlio.delete_result_xml([("a", None, False, None)], [], quiet=True)) == []


# ===========================================================================
# Single-result documents
# ===========================================================================


def test_copy_object_result(parse: Any) -> None:
    """CopyObjectResult: LastModified, quoted ETag, checksums by element name."""
    body = xmlio.copy_object_result_xml("abc", MS, {"crc32": "AAAAAA==", "SHA256": "c2hh", "md5": "ignored"})
    assert child_tags(body) == ["LastModified", "ETag", "ChecksumCRC32", "ChecksumSHA256"]
    result = parse("CopyObject", body)["CopyObjectResult"]
    assert result["ETag"] == '"abc"'
    assert result["LastModified"] == WHEN
    assert result["ChecksumCRC32"] == "AAAAAA=="
    assert result["ChecksumSHA256"] == "c2hh"


def test_copy_object_result_checksum_type(parse: Any) -> None:
    """A checksum type given is written after the checksums."""
    body = xmlio.copy_object_result_xml("abc", MS, {"crc32": "AAAAAA==-2"}, "COMPOSITE")
    assert child_tags(body) == ["LastModified", "ETag", "ChecksumCRC32", "ChecksumType"]
    assert parse("CopyObject", body)["CopyObjectResult"]["ChecksumType"] == "COMPOSITE"


def test_copy_part_result(parse: Any) -> None:
    """CopyPartResult carries LastModified and the quoted ETag (already-quoted input is not double-quoted)."""
    result = parse("UploadPartCopy", xmlio.copy_part_result_xml('"abc"', MS))["CopyPartResult"]
    assert result == {"ETag": '"abc"', "LastModified": WHEN}


def test_copy_part_result_checksums(parse: Any) -> None:
    """The part's checksum (keyed by lower-case algorithm, as a part record keeps it) follows the ETag."""
    result = parse("UploadPartCopy", xmlio.copy_part_result_xml("abc", MS, {"crc64nvme": "Y3Jj"}))["CopyPartResult"]
    assert result == {"ETag": '"abc"', "LastModified": WHEN, "ChecksumCRC64NVME": "Y3Jj"}


class _FakeHTTPResponse:
    """Just enough of a botocore HTTP response for parse_get_bucket_location."""

    def __init__(self, content: bytes) -> None:
        self.raw = object()
        self.content = content


@pytest.mark.parametrize(("region", "expected"), [("us-east-1", None), ("", None), ("eu-west-1", "eu-west-1")])
def test_location(region: str, expected: str | None) -> None:
    """GetBucketLocation: us-east-1 is an empty LocationConstraint, other regions are named."""
    parsed: dict[str, Any] = {}
    handlers.parse_get_bucket_location(parsed, _FakeHTTPResponse(xmlio.location_xml(region)))
    assert parsed["LocationConstraint"] == expected


@pytest.mark.parametrize("status", [None, "Disabled"])
def test_versioning_never_enabled(parse: Any, status: str | None) -> None:
    """A never-versioned bucket answers an empty VersioningConfiguration (no Status)."""
    body = xmlio.versioning_xml(status)
    assert b"<VersioningConfiguration xmlns" in body
    assert "Status" not in parse("GetBucketVersioning", body)


@pytest.mark.parametrize("status", ["Enabled", "Suspended"])
def test_versioning_status(parse: Any, status: str) -> None:
    """Enabled / Suspended are reported in Status."""
    assert parse("GetBucketVersioning", xmlio.versioning_xml(status))["Status"] == status


def test_tagging_xml(parse: Any) -> None:
    """Tags render as a TagSet botocore reads back, sorted by key."""
    tags = {"env": "prod", "a&b": "<v>", " ": ""}
    parsed = parse("GetObjectTagging", xmlio.tagging_xml(tags))
    assert parsed["TagSet"] == [{"Key": k, "Value": v} for k, v in sorted(tags.items())]
    assert parse("GetBucketTagging", xmlio.tagging_xml({})).get("TagSet", []) == []


def test_acl(parse: Any) -> None:
    """The ACL grants the owner FULL_CONTROL as a CanonicalUser grantee."""
    parsed = parse("GetBucketAcl", aclxml.access_control_policy_xml(private("owner-id"), {"owner-id": "owner"}))
    assert parsed["Owner"] == {"ID": "owner-id", "DisplayName": "owner"}
    assert parsed["Grants"] == [
        {"Grantee": {"ID": "owner-id", "DisplayName": "owner", "Type": "CanonicalUser"}, "Permission": "FULL_CONTROL"}
    ]


def test_initiate_multipart(parse: Any) -> None:
    """InitiateMultipartUploadResult names bucket, key and upload id."""
    parsed = parse("CreateMultipartUpload", xmlio.initiate_multipart_xml("b", "dir/a b&c", "upload-1"))
    assert (parsed["Bucket"], parsed["Key"], parsed["UploadId"]) == ("b", "dir/a b&c", "upload-1")


def test_complete_multipart_xml(parse: Any) -> None:
    """CompleteMultipartUploadResult: location, bucket, key, quoted ETag, checksums and type."""
    body = xmlio.complete_multipart_xml(
        "http://h/b/k", "b", "k", "abc-2", {"crc64nvme": "Zm9v"}, checksum_type="FULL_OBJECT"
    )
    parsed = parse("CompleteMultipartUpload", body)
    assert parsed["Location"] == "http://h/b/k"
    assert (parsed["Bucket"], parsed["Key"]) == ("b", "k")
    assert parsed["ETag"] == '"abc-2"'
    assert parsed["ChecksumCRC64NVME"] == "Zm9v"
    assert parsed["ChecksumType"] == "FULL_OBJECT"


def test_list_parts(parse: Any) -> None:
    """ListPartsResult: markers, limits, initiator/owner and parts with checksums."""
    parts = [ListedPart(1, MS, "e1", 5 << 20, {"crc32": "AAAAAA=="}), ListedPart(2, MS, '"e2"', 10)]
    body = xmlio.list_parts_xml(
        bucket="b", key="k", upload_id="u", parts=parts, part_number_marker=0, next_part_number_marker=None,
        max_parts=2, is_truncated=True, initiator=("i-id", "i"), owner=("o-id", "o"), checksum_algorithm="CRC32",
    )
    parsed = parse("ListParts", body)
    assert (parsed["Bucket"], parsed["Key"], parsed["UploadId"]) == ("b", "k", "u")
    assert parsed["PartNumberMarker"] == 0
    assert parsed["NextPartNumberMarker"] == 2
    assert parsed["MaxParts"] == 2
    assert parsed["IsTruncated"] is True
    assert parsed["Initiator"] == {"ID": "i-id", "DisplayName": "i"}
    assert parsed["Owner"] == {"ID": "o-id", "DisplayName": "o"}
    assert parsed["StorageClass"] == "STANDARD"
    assert parsed["ChecksumAlgorithm"] == "CRC32"
    assert parsed["Parts"] == [
        {"PartNumber": 1, "LastModified": WHEN, "ETag": '"e1"', "Size": 5 << 20, "ChecksumCRC32": "AAAAAA=="},
        {"PartNumber": 2, "LastModified": WHEN, "ETag": '"e2"', "Size": 10},
    ]


def test_list_parts_empty(parse: Any) -> None:
    """An upload without parts lists none and reports NextPartNumberMarker 0."""
    body = xmlio.list_parts_xml(
        bucket="b", key="k", upload_id="u", parts=[], part_number_marker=0, next_part_number_marker=None,
        max_parts=1000, is_truncated=False, initiator=("i", "i"), owner=("o", "o"),
    )
    parsed = parse("ListParts", body)
    assert parsed.get("Parts", []) == []
    assert parsed["NextPartNumberMarker"] == 0
    assert "ChecksumAlgorithm" not in parsed


def test_list_multipart_uploads(parse: Any) -> None:
    """ListMultipartUploadsResult: markers, uploads with initiator/owner/date, common prefixes."""
    uploads = [
        ListedUpload("a&b", "u1", MS, ("i", "I"), ("o", "O")),
        ListedUpload("c", "u2", MS, ("i", "I"), ("o", "O"), storage_class="STANDARD_IA", checksum_algorithm="SHA256"),
    ]
    body = xmlio.list_multipart_uploads_xml(
        bucket="b", uploads=uploads, common_prefixes=["d/"], prefix="", delimiter="/", key_marker="",
        upload_id_marker="", next_key_marker="c", next_upload_id_marker="u2", max_uploads=2, is_truncated=True,
    )
    parsed = parse("ListMultipartUploads", body)
    assert parsed["Bucket"] == "b"
    assert parsed["NextKeyMarker"] == "c"
    assert parsed["NextUploadIdMarker"] == "u2"
    assert parsed["MaxUploads"] == 2
    assert parsed["IsTruncated"] is True
    assert parsed["Delimiter"] == "/"
    assert parsed["CommonPrefixes"] == [{"Prefix": "d/"}]
    first, second = parsed["Uploads"]
    assert first == {
        "Key": "a&b", "UploadId": "u1", "Initiator": {"ID": "i", "DisplayName": "I"},
        "Owner": {"ID": "o", "DisplayName": "O"}, "StorageClass": "STANDARD", "Initiated": WHEN,
    }
    assert second["StorageClass"] == "STANDARD_IA"
    assert second["ChecksumAlgorithm"] == "SHA256"
    assert "EncodingType" not in parsed


def test_list_multipart_uploads_url_encoding(parse: Any) -> None:
    """With encoding-type=url the key-like values are encoded (upload ids are not)."""
    body = xmlio.list_multipart_uploads_xml(
        bucket="b", uploads=[ListedUpload("a b+c", "u+1", MS, ("i", "i"), ("o", "o"))], common_prefixes=["p q/"],
        prefix="p q", delimiter="/", key_marker="k m", upload_id_marker="x+y", next_key_marker="n o",
        encoding_type="url",
    )
    parsed = parse("ListMultipartUploads", body)
    assert parsed["EncodingType"] == "url"
    assert parsed["Uploads"][0]["Key"] == "a%20b%2Bc"
    assert parsed["Uploads"][0]["UploadId"] == "u+1"
    assert parsed["Prefix"] == "p%20q"
    assert parsed["KeyMarker"] == "k%20m"
    assert parsed["NextKeyMarker"] == "n%20o"
    assert parsed["UploadIdMarker"] == "x+y"
    assert parsed["CommonPrefixes"] == [{"Prefix": "p%20q/"}]


def iter_etag_documents() -> Iterator[bytes]:
    yield xmlio.copy_object_result_xml("e", MS)
    yield xmlio.copy_part_result_xml("e", MS)
    yield xmlio.complete_multipart_xml("l", "b", "k", "e")
    yield xmlio.list_parts_xml(
        bucket="b", key="k", upload_id="u", parts=[ListedPart(1, MS, "e", 1)], part_number_marker=0,
        next_part_number_marker=1, max_parts=1, is_truncated=False, initiator=("i", "i"), owner=("o", "o"),
    )
    yield xmlio.list_objects_xml(
        ListResult([entry("k", etag="e")], [], False), version=2, bucket="b", prefix="", delimiter=None,
        max_keys=1, encoding_type=None,
    )
    yield xmlio.list_object_versions_xml(
        ListResult([entry("k", etag="e")], [], False), bucket="b", prefix="", delimiter=None, max_keys=1,
        encoding_type=None,
    )


def test_every_etag_is_quoted() -> None:
    """Every document with an ETag writes it as &quot;etag&quot;, as AWS does."""
    for body in iter_etag_documents():
        assert b"<ETag>&quot;e&quot;</ETag>" in body
