"""S3 XML in and out: safe parsing of request bodies, rendering of responses.

Parsing goes through :mod:`xml.parsers.expat` directly, with handlers that
refuse any document type declaration.  That one refusal shuts out every
entity trick (billion laughs, external entities / XXE, parameter entities),
because entities can only be declared in a DTD; S3 bodies never carry one.
Bodies are capped in size before the parser sees them, and the S3 namespace
is stripped so callers match bare tag names whether or not the client sent
``xmlns`` (botocore does, curl users often do not).  Every failure is an
S3 error (``MalformedXML``, or ``MaxMessageLengthExceeded`` for an
oversized body), never an expat or Unicode exception.

Rendering builds strings, not an ElementTree: a 1000-key listing is on the
hot path, and string joins are several times faster than building and
serializing a DOM.  Text escaping follows what AWS emits:

* ``&``, ``<``, ``>`` and ``"`` become entity references (ETags therefore
  read ``&quot;...&quot;``, exactly as AWS writes them).
* C0 control characters other than TAB and LF become ``&#x..;`` references.
  For CR that is required for correctness (a raw CR would reach the client
  as LF after XML end-of-line normalisation).  The others (U+0001, ...) are
  not allowed in XML 1.0 even as references: AWS emits them anyway and
  strict parsers, botocore's included, reject the document.  That is why
  SDKs ask for ``encoding-type=url`` on listings (boto3 always does); we
  behave like AWS rather than invent a different wrong answer.
* Characters that cannot be encoded in UTF-8 (lone surrogates, which a
  valid key never holds) become numeric references instead of crashing the
  response.

With ``encoding-type=url``, keys and the other key-like values are
percent-encoded with ``quote(value, safe="/")``: space is ``%20`` and ``+``
is ``%2B`` (so both plain percent-decoding and botocore's ``unquote_plus``
give the key back), ``/`` stays literal, as the s3-tests suite records AWS
doing (``foo%2B1/``, ``quux%20ab/``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, NoReturn
from urllib.parse import quote
from xml.etree.ElementTree import Element, TreeBuilder
from xml.parsers import expat

from lightningstor import errors
from lightningstor.core.multipart import COMPOSITE, FULL_OBJECT, checksum_type_of
from lightningstor.core.types import ListResult
from lightningstor.s3.dates import iso8601, object_time

S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>\n'

MAX_DELETE_OBJECTS = 1000
# 1000 keys of 1024 bytes, each byte possibly written as a 6-byte reference
# (&quot;), is about 6 MiB; the default cap of 1 MiB would refuse a legal
# request.  The HTTP layer should bound the body it spools at least as high.
MAX_DELETE_BODY = 8 << 20
MAX_COMPLETE_MULTIPART_BODY = 4 << 20

# Lower-case algorithm names (as in lightningstor.checksums) <-> XML elements.
CHECKSUM_ELEMENTS: dict[str, str] = {
    "crc32": "ChecksumCRC32",
    "crc32c": "ChecksumCRC32C",
    "crc64nvme": "ChecksumCRC64NVME",
    "sha1": "ChecksumSHA1",
    "sha256": "ChecksumSHA256",
}
_CHECKSUM_ALGORITHMS = {element: name for name, element in CHECKSUM_ELEMENTS.items()}


# ---------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------


class _Refused(Exception):
    """Raised from inside expat handlers; becomes MalformedXML."""


def _refuse_declaration(*_args: object) -> NoReturn:
    raise _Refused("document type declarations are not allowed")


# Typed loosely: expat's handler slots each have their own signature.
_refuse: Callable[..., Any] = _refuse_declaration


def parse_xml(body: bytes, *, max_size: int = 1 << 20) -> Element:
    """Parse a request body into an Element tree with the S3 namespace removed.

    Elements in the S3 namespace and elements in no namespace get bare tag
    names; elements in any other namespace keep ``{uri}name`` so they never
    match what callers look for.  A body over ``max_size`` is refused with
    400 ``MaxMessageLengthExceeded`` before parsing; every other failure is
    400 ``MalformedXML``.
    """
    if len(body) > max_size:
        # AWS's code for an oversized XML body (400, like MalformedXML).
        raise errors.S3Error(code="MaxMessageLengthExceeded")
    builder = TreeBuilder()
    parser = expat.ParserCreate(namespace_separator="}")
    # Refusing the DOCTYPE itself covers internal and external subsets, and
    # with them every entity and notation declaration; the other handlers
    # are belt and braces should expat ever report one without a DOCTYPE.
    parser.StartDoctypeDeclHandler = _refuse
    parser.EntityDeclHandler = _refuse
    parser.UnparsedEntityDeclHandler = _refuse
    parser.NotationDeclHandler = _refuse
    parser.ExternalEntityRefHandler = _refuse
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.buffer_text = True

    def start(name: str, _attributes: dict[str, str]) -> None:
        builder.start(_local_name(name), {})

    def end(name: str) -> None:
        builder.end(_local_name(name))

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = builder.data
    try:
        parser.Parse(body, True)
        root: Element | None = builder.close()
    except (_Refused, expat.ExpatError, ValueError, LookupError, AssertionError) as exc:
        # ValueError: undecodable text; LookupError: an unknown encoding in
        # the XML declaration; AssertionError: TreeBuilder on a document
        # without a root element (expat reports that first in practice).
        raise errors.MalformedXML() from exc
    if root is None:  # TreeBuilder's assertion is gone under python -O
        raise errors.MalformedXML()
    return root


def _local_name(name: str) -> str:
    uri, sep, local = name.rpartition("}")
    if not sep or uri == S3_NS:
        return local
    return "{" + name


def _child(parent: Element, tag: str) -> Element | None:
    return parent.find(tag)


def leaf_text(element: Element) -> str:
    """The text of a leaf element; an element with children is malformed.
    (Every request document's parser uses it: xmlio, corsxml, lifecyclexml.)"""
    if len(element):
        raise errors.MalformedXML()
    return element.text or ""


def single_children(element: Element, allowed: Sequence[str]) -> dict[str, Element]:
    """The children of ``element`` by name; MalformedXML for an unknown or
    repeated one (configuration documents: lifecyclexml, objectlockxml)."""
    found: dict[str, Element] = {}
    for child in element:
        if child.tag not in allowed or child.tag in found:
            raise errors.MalformedXML()
        found[child.tag] = child
    return found


def _required_text(parent: Element, tag: str) -> str:
    element = _child(parent, tag)
    if element is None:
        raise errors.MalformedXML()
    return leaf_text(element)


def expect_root(body: bytes, tag: str, *, max_size: int = 1 << 20) -> Element:
    """The parsed document; MalformedXML unless its root is ``tag``."""
    root = parse_xml(body, max_size=max_size)
    if root.tag != tag:
        raise errors.MalformedXML()
    return root


def parse_delete_objects(body: bytes) -> tuple[bool, list[tuple[str, str | None]], list[str | None]]:
    """DeleteObjects body -> ``(quiet, [(key, version_id), ...], [etag, ...])``
    in request order.

    Keys keep every character, whitespace included (a key may be ``" "``);
    an empty ``<VersionId/>`` means no version.  An entry's ``<ETag>`` makes
    its deletion conditional (AWS's conditional deletes: the ETag, or ``*``
    for "exists"); empty or absent means none.  The directory-bucket
    conditions (``LastModifiedTime``, ``Size``) are 501 NotImplemented (a
    client sending one believes the delete is conditional); other unknown
    children are ignored.  The body cap is :data:`MAX_DELETE_BODY`.
    """
    root = expect_root(body, "Delete", max_size=MAX_DELETE_BODY)
    quiet = False
    objects: list[tuple[str, str | None]] = []
    etags: list[str | None] = []
    for element in root:
        if element.tag == "Quiet":
            value = leaf_text(element).strip().lower()
            if value not in ("true", "false"):
                raise errors.MalformedXML()
            quiet = value == "true"
        elif element.tag == "Object":
            key = _required_text(element, "Key")
            if not key:
                raise errors.MalformedXML()
            version_element = _child(element, "VersionId")
            version_id = leaf_text(version_element) if version_element is not None else ""
            objects.append((key, version_id or None))
            etag_element = _child(element, "ETag")
            etags.append((leaf_text(etag_element).strip() or None) if etag_element is not None else None)
            for condition in ("LastModifiedTime", "Size"):
                if _child(element, condition) is not None:
                    raise errors.NotImplementedS3(
                        f"Conditional deletes by {condition} are not supported",
                        additionalMessage=f"The Object element {condition} is not supported",
                    )
            if len(objects) > MAX_DELETE_OBJECTS:
                raise errors.MalformedXML()
    if not objects:
        raise errors.MalformedXML()
    return quiet, objects, etags


def parse_create_bucket_configuration(body: bytes) -> str | None:
    """CreateBucket body -> its ``LocationConstraint``, or ``None``.

    An empty body (the usual case, and what us-east-1 clients send) and an
    empty or absent ``LocationConstraint`` all mean "no constraint".
    """
    if not body.strip():
        return None
    root = expect_root(body, "CreateBucketConfiguration")
    element = _child(root, "LocationConstraint")
    if element is None:
        return None
    return leaf_text(element).strip() or None


def parse_versioning_configuration(body: bytes) -> str:
    """PutBucketVersioning body -> ``"Enabled"`` or ``"Suspended"``.

    ``MfaDelete`` is ignored (MFA delete is not supported); a missing or
    other ``Status`` is MalformedXML, as AWS answers.
    """
    root = expect_root(body, "VersioningConfiguration")
    status = _required_text(root, "Status").strip()
    if status not in ("Enabled", "Suspended"):
        raise errors.MalformedXML()
    return status


def parse_tagging(body: bytes) -> dict[str, str]:
    """PutObjectTagging / PutBucketTagging body -> ``{key: value}``.

    Keys and values keep their exact text.  Count and length limits differ
    between objects and buckets, so the caller checks them.
    """
    root = expect_root(body, "Tagging")
    tag_set = _child(root, "TagSet")
    if tag_set is None:
        raise errors.MalformedXML()
    tags: dict[str, str] = {}
    for tag in tag_set:
        if tag.tag != "Tag":
            continue
        key = _required_text(tag, "Key")
        value = _required_text(tag, "Value")
        if key in tags:
            raise errors.InvalidTag("Cannot provide multiple Tags with the same key")
        tags[key] = value
    return tags


@dataclass(frozen=True, slots=True)
class CompletedPart:
    """One ``<Part>`` of a CompleteMultipartUpload body."""

    part_number: int
    etag: str  # without quotes
    checksums: dict[str, str] = field(default_factory=dict)  # lower-case algorithm -> base64


_PART_NUMBER = re.compile(r"[0-9]{1,9}", re.ASCII)


def parse_complete_multipart(body: bytes) -> list[CompletedPart]:
    """CompleteMultipartUpload body -> its parts, in request order.

    The order is kept so the caller can answer ``InvalidPartOrder``; range
    checks on part numbers are the caller's too.  A part needs an integer
    ``PartNumber`` and an ``ETag``.  The body cap is
    :data:`MAX_COMPLETE_MULTIPART_BODY`: 10,000 parts with checksums run to
    about 2 MiB.
    """
    root = expect_root(body, "CompleteMultipartUpload", max_size=MAX_COMPLETE_MULTIPART_BODY)
    parts: list[CompletedPart] = []
    for element in root:
        if element.tag != "Part":
            continue
        number_text = _required_text(element, "PartNumber").strip()
        if _PART_NUMBER.fullmatch(number_text) is None:
            raise errors.MalformedXML()
        etag = _required_text(element, "ETag").strip().strip('"')
        checksums: dict[str, str] = {}
        for child in element:
            algorithm = _CHECKSUM_ALGORITHMS.get(child.tag)
            if algorithm is not None:
                checksums[algorithm] = leaf_text(child).strip()
        parts.append(CompletedPart(int(number_text), etag, checksums))
    if not parts:
        raise errors.MalformedXML()
    return parts


# ---------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------

_ESCAPES: dict[int, str] = {
    ord("&"): "&amp;",
    ord("<"): "&lt;",
    ord(">"): "&gt;",
    ord('"'): "&quot;",
    **{code: f"&#x{code:x};" for code in range(0x20) if code not in (0x09, 0x0A)},
}
_NEEDS_ESCAPE = re.compile("[&<>\"\x00-\x08\x0b-\x1f]")


def escape(text: str) -> str:
    """Escape element text the way AWS does (see the module docstring)."""
    if _NEEDS_ESCAPE.search(text) is None:
        return text
    return text.translate(_ESCAPES)


_URL_SAFE = re.compile("[A-Za-z0-9_.~/-]*")


def _url_escape(text: str) -> str:
    """``encoding-type=url`` form of a key-like value, ready for element text.

    ``quote`` leaves only ``A-Za-z0-9_.-~/``, none of which XML escapes; a
    value made of those alone is returned as it is without going through
    ``quote`` (once per listed key).
    ``surrogatepass``: never crash a listing on a key that is not valid Unicode.
    """
    if _URL_SAFE.fullmatch(text) is not None:
        return text
    return quote(text, safe="/", errors="surrogatepass")


def _is_url(encoding_type: str | None) -> bool:
    return encoding_type is not None and encoding_type.lower() == "url"


_Enc = Callable[[str], str]


def _finish(parts: list[str]) -> bytes:
    return "".join(parts).encode("utf-8", "xmlcharrefreplace")


def _quoted_etag(etag: str) -> str:
    return "&quot;" + escape(etag.strip('"')) + "&quot;"


def _bool(value: bool) -> str:
    return "true" if value else "false"


class _Doc:
    """A tiny append-only XML writer; text is escaped, names are trusted."""

    __slots__ = ("parts",)

    def __init__(self, root: str, *, namespace: bool = True) -> None:
        self.parts: list[str] = [XML_DECLARATION, f'<{root} xmlns="{S3_NS}">' if namespace else f"<{root}>"]

    def open(self, name: str) -> None:
        self.parts.append(f"<{name}>")

    def close(self, name: str) -> None:
        self.parts.append(f"</{name}>")

    def text(self, name: str, value: str) -> None:
        self.parts.append(f"<{name}>{escape(value)}</{name}>")

    def raw(self, name: str, value: str) -> None:
        """An element whose value is already escaped (numbers, ETags, dates)."""
        self.parts.append(f"<{name}>{value}</{name}>")

    def owner(self, name: str, owner_id: str, display_name: str) -> None:
        self.parts.append(
            f"<{name}><ID>{escape(owner_id)}</ID><DisplayName>{escape(display_name)}</DisplayName></{name}>"
        )

    def checksums(self, checksums: Mapping[str, str]) -> None:
        for algorithm, value in checksums.items():
            element = CHECKSUM_ELEMENTS.get(algorithm.lower())
            if element is not None:
                self.text(element, value)

    def finish(self, root: str) -> bytes:
        self.parts.append(f"</{root}>")
        return _finish(self.parts)


_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")


def _xml_safe(text: str) -> str:
    """Percent-encode the control characters XML 1.0 cannot carry at all, so an
    error about a key holding one still parses in every client (error
    documents have no encoding-type to ask for)."""
    return _CONTROL.sub(lambda m: f"%{ord(m.group()):02X}", text)


def error_xml(
    code: str,
    message: str,
    *,
    resource: str | None,
    request_id: str,
    fields: Mapping[str, str] = {},
    host_id: str | None = None,
) -> bytes:
    """The S3 error document (no namespace, like AWS).

    ``fields`` are the extra elements some errors carry (``Key``,
    ``BucketName``, ``Condition``...), written between Message and Resource.
    """
    doc = _Doc("Error", namespace=False)
    doc.text("Code", code)
    doc.text("Message", message)
    for name, value in fields.items():
        doc.text(name, _xml_safe(value))
    if resource is not None:
        doc.text("Resource", _xml_safe(resource))
    doc.text("RequestId", request_id)
    if host_id is not None:
        doc.text("HostId", host_id)
    return doc.finish("Error")


def list_buckets_xml(
    owner_id: str,
    owner_name: str,
    buckets: Sequence[tuple[str, int]],
    *,
    continuation_token: str | None = None,
    prefix: str | None = None,
    regions: Sequence[str] | None = None,
) -> bytes:
    """ListAllMyBucketsResult; ``buckets`` are ``(name, created_at_ms)``.

    ``continuation_token`` / ``prefix`` are echoed only for paginated
    ListBuckets (``max-buckets``), as AWS does.  ``regions`` (one per
    bucket) become ``BucketRegion``, which AWS includes only when the
    request has a parameter.
    """
    doc = _Doc("ListAllMyBucketsResult")
    doc.owner("Owner", owner_id, owner_name)
    doc.open("Buckets")
    for index, (name, created_ms) in enumerate(buckets):
        region = f"<BucketRegion>{escape(regions[index])}</BucketRegion>" if regions is not None else ""
        doc.parts.append(
            f"<Bucket><Name>{escape(name)}</Name><CreationDate>{object_time(created_ms)}</CreationDate>{region}</Bucket>"
        )
    doc.close("Buckets")
    if continuation_token is not None:
        doc.text("ContinuationToken", continuation_token)
    if prefix is not None:
        doc.text("Prefix", prefix)
    return doc.finish("ListAllMyBucketsResult")


class _EntryTexts:
    """Per-listing memo of the element texts that repeat across entries.

    One listing page writes up to 1,000 entries whose LastModified dates
    share seconds, whose owners and storage classes are mostly one or two
    values: each text is formatted once per page and looked up after that
    (a full ListObjectsV2 walk spent a fifth of its time writing entries).
    The texts are exactly what ``object_time``, ``_quoted_etag``, ``escape`` and
    ``_Doc.owner`` give.  A memo lives for one document, so it never grows
    beyond one page's distinct values.
    """

    __slots__ = ("seconds", "_owners", "_classes")

    def __init__(self) -> None:
        self.seconds: dict[int, str] = {}
        self._owners: dict[str, str] = {"": ""}
        self._classes: dict[str, str] = {"STANDARD": "STANDARD"}

    def second(self, seconds: int) -> str:
        """``iso8601`` of a whole second without its ``.000Z``, memoized in ``seconds``."""
        head = self.seconds.get(seconds)
        if head is None:
            head = self.seconds[seconds] = iso8601(seconds * 1000)[:-5]
        return head

    def date(self, ms: int) -> str:
        """``object_time(ms)``."""
        return self.second(ms // 1000) + ".000Z"

    @staticmethod
    def etag(etag: str) -> str:
        """``_quoted_etag(etag)``; an ETag needing no escape has no quote to strip."""
        if _NEEDS_ESCAPE.search(etag) is None:
            return "&quot;" + etag + "&quot;"
        return _quoted_etag(etag)

    def owner(self, owner: str) -> str:
        """The ``<Owner>`` element of ``owner`` (nothing for no owner)."""
        text = self._owners.get(owner)
        if text is None:
            e = escape(owner)
            text = self._owners[owner] = f"<Owner><ID>{e}</ID><DisplayName>{e}</DisplayName></Owner>"
        return text

    def storage_class(self, storage_class: str) -> str:
        text = self._classes.get(storage_class)
        if text is None:
            text = self._classes[storage_class] = escape(storage_class)
        return text


def _listed_checksum_text(names: Iterable[str], kind: str) -> str:
    algorithms = "".join(f"<ChecksumAlgorithm>{escape(name.upper())}</ChecksumAlgorithm>" for name in names)
    return f"{algorithms}<ChecksumType>{kind}</ChecksumType>"


# algorithm -> the text of an object with one checksum of that algorithm
# (every object AWS stores has at most one), whole-object or composite.
_LISTED_FULL_OBJECT = {name: _listed_checksum_text((name,), FULL_OBJECT) for name in CHECKSUM_ELEMENTS}
_LISTED_COMPOSITE = {name: _listed_checksum_text((name,), COMPOSITE) for name in CHECKSUM_ELEMENTS}


def listed_checksum(checksums: Mapping[str, str]) -> str:
    """The ``<ChecksumAlgorithm>`` and ``<ChecksumType>`` elements of an
    object stored with ``checksums`` (ListObjects ``Contents``,
    ListObjectVersions ``Version``); the value itself is never listed.

    AWS lists both for every object that has a checksum (the Object and
    ObjectVersion shapes): the algorithm upper case (``CRC32``), the type
    ``COMPOSITE`` for a multipart object's checksum of part checksums and
    ``FULL_OBJECT`` otherwise, as HeadObject's x-amz-checksum-type reports
    it (:func:`lightningstor.core.multipart.checksum_type_of`).  One
    checksum of a known algorithm is one dict lookup: a composite value is
    the only kind with a ``-`` (``<base64>-<part count>``; base64 has no
    ``-``), so a full walk of checksummed keys pays no formatting per key.
    """
    if len(checksums) == 1:
        [(name, value)] = checksums.items()
        text = (_LISTED_COMPOSITE if "-" in value else _LISTED_FULL_OBJECT).get(name)
        if text is not None:
            return text
    names = [name for name in CHECKSUM_ELEMENTS if name in checksums]
    return _listed_checksum_text(names, checksum_type_of(checksums)) if names else ""


def list_objects_xml(
    result: ListResult,
    *,
    version: int,
    bucket: str,
    prefix: str,
    delimiter: str | None,
    max_keys: int,
    encoding_type: str | None,
    marker: str = "",
    continuation_token: str | None = None,
    next_continuation_token: str | None = None,
    start_after: str | None = None,
    fetch_owner: bool = False,
) -> bytes:
    """ListBucketResult for ListObjects (``version=1``) or ListObjectsV2 (``2``).

    v1 echoes ``Marker`` always and gives ``NextMarker`` only when a
    delimiter was sent and the result is truncated (without a delimiter,
    clients continue from the last ``Key``, as the S3 docs say); it always
    shows ``Owner``.  v2 gives ``KeyCount`` (keys plus common prefixes),
    echoes ``ContinuationToken`` / ``StartAfter`` when sent, gives
    ``NextContinuationToken`` when truncated, and shows ``Owner`` only with
    ``fetch-owner=true``.  ``Delimiter`` is omitted when empty (AWS).

    With ``encoding_type="url"`` the key-like values (Key, Prefix,
    Delimiter, Marker, NextMarker, StartAfter, CommonPrefixes/Prefix) are
    percent-encoded and ``EncodingType`` is echoed; continuation tokens are
    opaque and never encoded.  ``encoding_type`` is expected to be validated
    by the caller (AWS answers anything but ``url`` with InvalidArgument).

    Note: botocore decodes ``Prefix`` for v2 and versions but not for v1
    (a botocore gap, boto/boto3#3534); AWS encodes it in all three and so
    do we.
    """
    url = _is_url(encoding_type)
    enc = _url_escape if url else escape

    doc = _Doc("ListBucketResult")
    parts = doc.parts
    doc.text("Name", bucket)
    doc.raw("Prefix", enc(prefix))
    if version == 1:
        doc.raw("Marker", enc(marker))
        if delimiter and result.is_truncated and result.next_marker is not None:
            doc.raw("NextMarker", enc(result.next_marker))
    else:
        if start_after:
            doc.raw("StartAfter", enc(start_after))
        if continuation_token is not None:
            # Echoed whenever sent, even empty (``continuation-token=``), as AWS.
            doc.text("ContinuationToken", continuation_token)
        if result.is_truncated and next_continuation_token:
            doc.text("NextContinuationToken", next_continuation_token)
        doc.raw("KeyCount", str(len(result.entries) + len(result.common_prefixes)))
    doc.raw("MaxKeys", str(max_keys))
    if delimiter:
        doc.raw("Delimiter", enc(delimiter))
    if url:
        doc.raw("EncodingType", "url")
    doc.raw("IsTruncated", _bool(result.is_truncated))
    show_owner = version == 1 or fetch_owner
    # The loop inlines the common case of each _EntryTexts lookup (a second
    # already seen, an ETag with nothing to escape, STANDARD): a call per
    # field per key is a measurable share of a 1,000-key page.
    texts = _EntryTexts()
    seconds = texts.seconds
    append = parts.append
    needs_escape = _NEEDS_ESCAPE.search
    for entry in result.entries:
        ms = entry.last_modified
        date = seconds.get(ms // 1000) or texts.second(ms // 1000)
        etag = entry.etag
        if needs_escape(etag) is not None:
            etag = escape(etag.strip('"'))
        storage_class = entry.storage_class
        if storage_class != "STANDARD":
            storage_class = texts.storage_class(storage_class)
        owner = texts.owner(entry.owner) if show_owner else ""
        checksum = listed_checksum(entry.checksums) if entry.checksums else ""
        append(
            f"<Contents><Key>{enc(entry.key)}</Key><LastModified>{date}.000Z</LastModified>"
            f"<ETag>&quot;{etag}&quot;</ETag>{checksum}<Size>{entry.size}</Size>"
            f"{owner}<StorageClass>{storage_class}</StorageClass></Contents>"
        )
    _common_prefixes(parts, result.common_prefixes, enc)
    return doc.finish("ListBucketResult")


def _common_prefixes(parts: list[str], prefixes: Iterable[str], enc: _Enc) -> None:
    for common in prefixes:
        parts.append(f"<CommonPrefixes><Prefix>{enc(common)}</Prefix></CommonPrefixes>")


def list_object_versions_xml(
    result: ListResult,
    *,
    bucket: str,
    prefix: str,
    delimiter: str | None,
    max_keys: int,
    encoding_type: str | None,
    key_marker: str = "",
    version_id_marker: str = "",
    next_key_marker: str | None = None,
    next_version_id_marker: str | None = None,
) -> bytes:
    """ListVersionsResult for ListObjectVersions.

    ``result.entries`` are written in the order given, which must be S3's:
    by key, newest version first, versions and delete markers interleaved.
    A ``version_id`` of ``None`` is the ``null`` version.  When truncated,
    ``NextKeyMarker`` is ``next_key_marker`` (default ``result.next_marker``)
    and ``NextVersionIdMarker`` is ``next_version_id_marker``.  With
    ``encoding_type="url"``, Key, Prefix, Delimiter, KeyMarker,
    NextKeyMarker and CommonPrefixes/Prefix are encoded (what AWS documents
    and botocore decodes); version ids are not.  Owner is always shown.
    """
    url = _is_url(encoding_type)
    enc = _url_escape if url else escape

    doc = _Doc("ListVersionsResult")
    parts = doc.parts
    doc.text("Name", bucket)
    doc.raw("Prefix", enc(prefix))
    doc.raw("KeyMarker", enc(key_marker))
    doc.text("VersionIdMarker", version_id_marker)
    if result.is_truncated:
        next_key = next_key_marker if next_key_marker is not None else result.next_marker
        if next_key is not None:
            doc.raw("NextKeyMarker", enc(next_key))
        if next_version_id_marker is not None:
            doc.text("NextVersionIdMarker", next_version_id_marker)
    doc.raw("MaxKeys", str(max_keys))
    if delimiter:
        doc.raw("Delimiter", enc(delimiter))
    if url:
        doc.raw("EncodingType", "url")
    doc.raw("IsTruncated", _bool(result.is_truncated))
    texts = _EntryTexts()
    date, etag_text, owner_text, class_text = texts.date, texts.etag, texts.owner, texts.storage_class
    append = parts.append
    for entry in result.entries:
        version_id = escape(entry.version_id) if entry.version_id is not None else "null"
        if entry.delete_marker:
            append(
                f"<DeleteMarker>{owner_text(entry.owner)}<Key>{enc(entry.key)}</Key>"
                f"<VersionId>{version_id}</VersionId><IsLatest>{_bool(entry.is_latest)}</IsLatest>"
                f"<LastModified>{date(entry.last_modified)}</LastModified></DeleteMarker>"
            )
        else:
            append(
                f"<Version><Key>{enc(entry.key)}</Key><VersionId>{version_id}</VersionId>"
                f"<IsLatest>{_bool(entry.is_latest)}</IsLatest>"
                f"<LastModified>{date(entry.last_modified)}</LastModified>"
                f"<ETag>{etag_text(entry.etag)}</ETag>{listed_checksum(entry.checksums) if entry.checksums else ''}"
                f"<Size>{entry.size}</Size>"
                f"<StorageClass>{class_text(entry.storage_class)}</StorageClass>{owner_text(entry.owner)}</Version>"
            )
    _common_prefixes(parts, result.common_prefixes, enc)
    return doc.finish("ListVersionsResult")


def delete_result_xml(
    deleted: Sequence[tuple[str, str | None, bool, str | None]],
    errors: Sequence[tuple[str, str | None, str, str]],
    quiet: bool,
) -> bytes:
    """DeleteResult of DeleteObjects.

    ``deleted``: ``(key, version_id, delete_marker, delete_marker_version_id)``;
    ``errors``: ``(key, version_id, code, message)``.  In quiet mode AWS
    lists only the errors.  ``DeleteMarker``/``DeleteMarkerVersionId`` are
    written only when a delete marker was created or removed.
    """
    doc = _Doc("DeleteResult")
    if not quiet:
        for key, version_id, delete_marker, marker_version_id in deleted:
            doc.open("Deleted")
            doc.text("Key", key)
            if version_id is not None:
                doc.text("VersionId", version_id)
            if delete_marker:
                doc.raw("DeleteMarker", "true")
                if marker_version_id is not None:
                    doc.text("DeleteMarkerVersionId", marker_version_id)
            doc.close("Deleted")
    for key, version_id, code, message in errors:
        doc.open("Error")
        doc.text("Key", key)
        if version_id is not None:
            doc.text("VersionId", version_id)
        doc.text("Code", code)
        doc.text("Message", message)
        doc.close("Error")
    return doc.finish("DeleteResult")


def copy_object_result_xml(
    etag: str,
    last_modified_ms: int,
    checksums: Mapping[str, str] = {},
    checksum_type: str | None = None,
) -> bytes:
    """CopyObjectResult: LastModified, ETag, then any ``Checksum*`` and the
    copy's ``ChecksumType`` (``COMPOSITE`` or ``FULL_OBJECT``, as AWS
    answers it beside a checksum)."""
    doc = _Doc("CopyObjectResult")
    doc.raw("LastModified", object_time(last_modified_ms))
    doc.raw("ETag", _quoted_etag(etag))
    doc.checksums(checksums)
    if checksum_type is not None:
        doc.text("ChecksumType", checksum_type)
    return doc.finish("CopyObjectResult")


def copy_part_result_xml(etag: str, last_modified_ms: int, checksums: Mapping[str, str] = {}) -> bytes:
    """CopyPartResult of UploadPartCopy: LastModified, ETag, then the part's
    checksum when the upload has a checksum algorithm (AWS sends it there,
    and SDKs take it from there for CompleteMultipartUpload's part list)."""
    doc = _Doc("CopyPartResult")
    doc.raw("LastModified", object_time(last_modified_ms))
    doc.raw("ETag", _quoted_etag(etag))
    _ordered_checksums(doc, checksums)
    return doc.finish("CopyPartResult")


def location_xml(region: str) -> bytes:
    """GetBucketLocation: us-east-1 is an *empty* LocationConstraint (AWS quirk).

    SDKs map the empty value back to us-east-1; sending the region name
    would make old clients build ``s3-us-east-1`` endpoints.
    """
    if not region or region == "us-east-1":
        return (XML_DECLARATION + f'<LocationConstraint xmlns="{S3_NS}"/>').encode()
    return (XML_DECLARATION + f'<LocationConstraint xmlns="{S3_NS}">{escape(region)}</LocationConstraint>').encode()


def versioning_xml(status: str | None) -> bytes:
    """GetBucketVersioning: no ``Status`` at all for a bucket never versioned.

    ``"Disabled"`` (the core's name for "never configured") is treated like
    ``None``; S3 has no Disabled status on the wire.
    """
    if status is None or status == "Disabled":
        return (XML_DECLARATION + f'<VersioningConfiguration xmlns="{S3_NS}"/>').encode()
    doc = _Doc("VersioningConfiguration")
    doc.text("Status", status)
    return doc.finish("VersioningConfiguration")


# PublicAccessBlockConfiguration's elements, in AWS's order.
PUBLIC_ACCESS_BLOCK_ELEMENTS = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")


def parse_public_access_block(body: bytes) -> tuple[bool, bool, bool, bool]:
    """PutPublicAccessBlock body -> the four settings in
    :data:`PUBLIC_ACCESS_BLOCK_ELEMENTS` order; an element left out is
    false, as in AWS.  Anything but ``true``/``false`` (either case), a
    repeated or unknown element is MalformedXML."""
    root = expect_root(body, "PublicAccessBlockConfiguration")
    values: dict[str, bool] = {}
    for name, child in single_children(root, PUBLIC_ACCESS_BLOCK_ELEMENTS).items():
        text = leaf_text(child).strip().lower()
        if text not in ("true", "false"):
            raise errors.MalformedXML()
        values[name] = text == "true"
    a, b, c, d = (values.get(name, False) for name in PUBLIC_ACCESS_BLOCK_ELEMENTS)
    return a, b, c, d


def public_access_block_xml(settings: Sequence[bool]) -> bytes:
    """GetPublicAccessBlock."""
    doc = _Doc("PublicAccessBlockConfiguration")
    for name, value in zip(PUBLIC_ACCESS_BLOCK_ELEMENTS, settings):
        doc.raw(name, _bool(value))
    return doc.finish("PublicAccessBlockConfiguration")


def policy_status_xml(public: bool) -> bytes:
    """GetBucketPolicyStatus."""
    doc = _Doc("PolicyStatus")
    doc.raw("IsPublic", _bool(public))
    return doc.finish("PolicyStatus")


def tagging_xml(tags: Mapping[str, str]) -> bytes:
    """Tagging document of GetObjectTagging / GetBucketTagging.

    A tag set has no order in S3; it is sent sorted by key, so the answer
    does not depend on the order a client happened to send (as Ceph RGW
    and MinIO answer; ceph/s3-tests compares lists)."""
    doc = _Doc("Tagging")
    doc.open("TagSet")
    for key, value in sorted(tags.items()):
        doc.parts.append(f"<Tag><Key>{escape(key)}</Key><Value>{escape(value)}</Value></Tag>")
    doc.close("TagSet")
    return doc.finish("Tagging")


def initiate_multipart_xml(bucket: str, key: str, upload_id: str) -> bytes:
    """InitiateMultipartUploadResult of CreateMultipartUpload."""
    doc = _Doc("InitiateMultipartUploadResult")
    doc.text("Bucket", bucket)
    doc.text("Key", key)
    doc.text("UploadId", upload_id)
    return doc.finish("InitiateMultipartUploadResult")


def complete_multipart_xml(
    location: str,
    bucket: str,
    key: str,
    etag: str,
    checksums: Mapping[str, str] = {},
    *,
    checksum_type: str | None = None,
) -> bytes:
    """CompleteMultipartUploadResult; ``checksum_type`` is COMPOSITE or FULL_OBJECT."""
    doc = _Doc("CompleteMultipartUploadResult")
    doc.text("Location", location)
    doc.text("Bucket", bucket)
    doc.text("Key", key)
    doc.raw("ETag", _quoted_etag(etag))
    doc.checksums(checksums)
    if checksum_type is not None:
        doc.text("ChecksumType", checksum_type)
    return doc.finish("CompleteMultipartUploadResult")


class ListedPart(NamedTuple):
    """A part as ListParts shows it."""

    part_number: int
    last_modified_ms: int
    etag: str
    size: int
    checksums: Mapping[str, str] = {}


def list_parts_xml(
    *,
    bucket: str,
    key: str,
    upload_id: str,
    parts: Sequence[ListedPart],
    part_number_marker: int,
    next_part_number_marker: int | None,
    max_parts: int,
    is_truncated: bool,
    initiator: tuple[str, str],
    owner: tuple[str, str],
    storage_class: str = "STANDARD",
    checksum_algorithm: str | None = None,
    checksum_type: str | None = None,
) -> bytes:
    """ListPartsResult; ``initiator`` / ``owner`` are ``(id, display_name)``.

    ``NextPartNumberMarker`` is the last part number listed (AWS sends it on
    every page, 0 when there are no parts); pass ``None`` to have it derived
    from ``parts``.  ``checksum_algorithm`` is the upload's algorithm in
    upper case (``CRC32``...) when it has one, ``checksum_type`` its
    ``COMPOSITE`` or ``FULL_OBJECT`` (SDKs read both from here).
    """
    if next_part_number_marker is None:
        next_part_number_marker = parts[-1].part_number if parts else 0
    doc = _Doc("ListPartsResult")
    doc.text("Bucket", bucket)
    doc.text("Key", key)
    doc.text("UploadId", upload_id)
    doc.owner("Initiator", *initiator)
    doc.owner("Owner", *owner)
    doc.text("StorageClass", storage_class)
    if checksum_algorithm is not None:
        doc.text("ChecksumAlgorithm", checksum_algorithm)
    if checksum_type is not None:
        doc.text("ChecksumType", checksum_type)
    doc.raw("PartNumberMarker", str(part_number_marker))
    doc.raw("NextPartNumberMarker", str(next_part_number_marker))
    doc.raw("MaxParts", str(max_parts))
    doc.raw("IsTruncated", _bool(is_truncated))
    for part in parts:
        doc.parts.append(
            f"<Part><PartNumber>{part.part_number}</PartNumber>"
            f"<LastModified>{object_time(part.last_modified_ms)}</LastModified>"
            f"<ETag>{_quoted_etag(part.etag)}</ETag><Size>{part.size}</Size>"
        )
        doc.checksums(part.checksums)
        doc.close("Part")
    return doc.finish("ListPartsResult")


class ListedUpload(NamedTuple):
    """An in-progress multipart upload as ListMultipartUploads shows it."""

    key: str
    upload_id: str
    initiated_ms: int
    initiator: tuple[str, str]  # (id, display_name)
    owner: tuple[str, str]
    storage_class: str = "STANDARD"
    checksum_algorithm: str | None = None
    checksum_type: str | None = None  # COMPOSITE | FULL_OBJECT, with an algorithm


def list_multipart_uploads_xml(
    *,
    bucket: str,
    uploads: Sequence[ListedUpload],
    common_prefixes: Sequence[str] = (),
    prefix: str = "",
    delimiter: str | None = None,
    key_marker: str = "",
    upload_id_marker: str = "",
    next_key_marker: str | None = None,
    next_upload_id_marker: str | None = None,
    max_uploads: int = 1000,
    is_truncated: bool = False,
    encoding_type: str | None = None,
) -> bytes:
    """ListMultipartUploadsResult.

    ``NextKeyMarker`` / ``NextUploadIdMarker`` are written when given (AWS
    writes them, possibly empty, on every page).  With
    ``encoding_type="url"`` Key, Prefix, Delimiter, KeyMarker, NextKeyMarker
    and CommonPrefixes/Prefix are encoded (botocore does not ask for it on
    this operation, so only clients that request it see it).
    """
    url = _is_url(encoding_type)
    enc = _url_escape if url else escape

    doc = _Doc("ListMultipartUploadsResult")
    parts = doc.parts
    doc.text("Bucket", bucket)
    doc.raw("KeyMarker", enc(key_marker))
    doc.text("UploadIdMarker", upload_id_marker)
    if next_key_marker is not None:
        doc.raw("NextKeyMarker", enc(next_key_marker))
    if next_upload_id_marker is not None:
        doc.text("NextUploadIdMarker", next_upload_id_marker)
    if delimiter:
        doc.raw("Delimiter", enc(delimiter))
    doc.raw("Prefix", enc(prefix))
    if url:
        doc.raw("EncodingType", "url")
    doc.raw("MaxUploads", str(max_uploads))
    doc.raw("IsTruncated", _bool(is_truncated))
    for upload in uploads:
        parts.append(f"<Upload><Key>{enc(upload.key)}</Key><UploadId>{escape(upload.upload_id)}</UploadId>")
        doc.owner("Initiator", *upload.initiator)
        doc.owner("Owner", *upload.owner)
        doc.text("StorageClass", upload.storage_class)
        if upload.checksum_algorithm is not None:
            doc.text("ChecksumAlgorithm", upload.checksum_algorithm)
        if upload.checksum_type is not None:
            doc.text("ChecksumType", upload.checksum_type)
        parts.append(f"<Initiated>{object_time(upload.initiated_ms)}</Initiated></Upload>")
    _common_prefixes(parts, common_prefixes, enc)
    return doc.finish("ListMultipartUploadsResult")


class AttributesPart(NamedTuple):
    """A part as GetObjectAttributes lists it under ObjectParts."""

    part_number: int
    size: int
    checksums: Mapping[str, str] = {}


class AttributesParts(NamedTuple):
    """GetObjectAttributes' ObjectParts element: one page of a multipart object's parts."""

    parts_count: int
    part_number_marker: int
    next_part_number_marker: int
    max_parts: int
    is_truncated: bool
    parts: Sequence[AttributesPart]


def _ordered_checksums(doc: _Doc, checksums: Mapping[str, str]) -> None:
    """Checksum elements in the order of AWS's shapes (CRC32, CRC32C,
    CRC64NVME, SHA1, SHA256), whatever order the record keeps them in."""
    for algorithm, element in CHECKSUM_ELEMENTS.items():
        value = checksums.get(algorithm)
        if value is not None:
            doc.text(element, value)


def object_attributes_xml(
    *,
    etag: str | None = None,
    checksums: Mapping[str, str] | None = None,
    checksum_type: str | None = None,
    object_parts: AttributesParts | None = None,
    storage_class: str | None = None,
    object_size: int | None = None,
) -> bytes:
    """GetObjectAttributesResponse holding only what was asked for and exists.

    ``None`` leaves an element out (not requested, or nothing to show: no
    checksum, not a multipart object).  The ETag is written unquoted, as AWS
    writes it in this document (unlike every other ETag element).  Elements
    come in the order of AWS's response shape.
    """
    doc = _Doc("GetObjectAttributesResponse")
    if etag is not None:
        doc.text("ETag", etag.strip('"'))
    if checksums:
        doc.open("Checksum")
        _ordered_checksums(doc, checksums)
        if checksum_type is not None:
            doc.text("ChecksumType", checksum_type)
        doc.close("Checksum")
    if object_parts is not None:
        doc.open("ObjectParts")
        doc.raw("PartsCount", str(object_parts.parts_count))
        doc.raw("PartNumberMarker", str(object_parts.part_number_marker))
        doc.raw("NextPartNumberMarker", str(object_parts.next_part_number_marker))
        doc.raw("MaxParts", str(object_parts.max_parts))
        doc.raw("IsTruncated", _bool(object_parts.is_truncated))
        for part in object_parts.parts:
            doc.open("Part")
            _ordered_checksums(doc, part.checksums)
            doc.raw("PartNumber", str(part.part_number))
            doc.raw("Size", str(part.size))
            doc.close("Part")
        doc.close("ObjectParts")
    if storage_class is not None:
        doc.text("StorageClass", storage_class)
    if object_size is not None:
        doc.raw("ObjectSize", str(object_size))
    return doc.finish("GetObjectAttributesResponse")
