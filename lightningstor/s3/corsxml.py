"""The ``CORSConfiguration`` document of PutBucketCors and GetBucketCors.

Parsing turns the XML into :class:`~lightningstor.core.types.CorsRule`
values and refuses what is not well-formed or does not follow AWS's schema
(``MalformedXML``); what the rules may *say* (methods, wildcards, counts)
is the core's to check (:mod:`lightningstor.core.cors`).  Kept apart from
:mod:`lightningstor.s3.xmlio`, whose safe parser it uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from xml.etree.ElementTree import Element

from lightningstor import errors
from lightningstor.core.attributes import check_field_value
from lightningstor.core.types import CorsRule
from lightningstor.s3.xmlio import S3_NS, XML_DECLARATION, escape, expect_root, leaf_text

# AWS: "The maximum size of a CORS configuration is 64 KB"; a larger body
# is refused before it is parsed (400 MaxMessageLengthExceeded).
MAX_CORS_BODY = 64 * 1024

# The child elements of a CORSRule: element name -> CorsRule field (lists).
_LISTS = {
    "AllowedMethod": "allowed_methods",
    "AllowedOrigin": "allowed_origins",
    "AllowedHeader": "allowed_headers",
    "ExposeHeader": "expose_headers",
}


def parse_cors_configuration(body: bytes) -> list[CorsRule]:
    """PutBucketCors body -> the rules, in document order."""
    root = expect_root(body, "CORSConfiguration", max_size=MAX_CORS_BODY)
    rules = []
    for child in root:
        if child.tag != "CORSRule":
            raise errors.MalformedXML()
        rules.append(_parse_rule(child))
    return rules


def _parse_rule(element: Element) -> CorsRule:
    lists: dict[str, list[str]] = {name: [] for name in _LISTS.values()}
    rule_id: str | None = None
    max_age: int | None = None
    for child in element:
        text = _leaf_text(child)
        if child.tag in _LISTS:
            # Sent back in Access-Control-* response headers: no control
            # characters (core/attributes.py), as in any header value.
            check_field_value(text, child.tag, child.tag)
            lists[_LISTS[child.tag]].append(text)
        elif child.tag == "ID" and rule_id is None:
            rule_id = text
        elif child.tag == "MaxAgeSeconds" and max_age is None:
            max_age = _max_age(text)
        else:
            raise errors.MalformedXML()  # an unknown element, or ID / MaxAgeSeconds twice
    return CorsRule(
        allowed_methods=tuple(lists["allowed_methods"]),
        allowed_origins=tuple(lists["allowed_origins"]),
        allowed_headers=tuple(lists["allowed_headers"]),
        expose_headers=tuple(lists["expose_headers"]),
        max_age_seconds=max_age,
        rule_id=rule_id,
    )


def _leaf_text(element: Element) -> str:
    """The text of an element that may not have children, trimmed of the
    whitespace pretty-printed documents put around it."""
    return leaf_text(element).strip()


def _max_age(text: str) -> int:
    """``MaxAgeSeconds``: a non-negative integer (xsd:int)."""
    if not text.isascii() or not text.isdigit() or len(text) > 10 or int(text) > 2**31 - 1:
        raise errors.MalformedXML()
    return int(text)


def cors_configuration_xml(rules: Sequence[CorsRule]) -> bytes:
    """GetBucketCors' document: each rule's elements in AWS's order."""
    parts = [XML_DECLARATION, f'<CORSConfiguration xmlns="{S3_NS}">']
    for rule in rules:
        parts.append("<CORSRule>")
        if rule.rule_id is not None:
            parts.append(f"<ID>{escape(rule.rule_id)}</ID>")
        parts.extend(f"<AllowedHeader>{escape(h)}</AllowedHeader>" for h in rule.allowed_headers)
        parts.extend(f"<AllowedMethod>{escape(m)}</AllowedMethod>" for m in rule.allowed_methods)
        parts.extend(f"<AllowedOrigin>{escape(o)}</AllowedOrigin>" for o in rule.allowed_origins)
        parts.extend(f"<ExposeHeader>{escape(h)}</ExposeHeader>" for h in rule.expose_headers)
        if rule.max_age_seconds is not None:
            parts.append(f"<MaxAgeSeconds>{rule.max_age_seconds}</MaxAgeSeconds>")
        parts.append("</CORSRule>")
    parts.append("</CORSConfiguration>")
    return "".join(parts).encode("utf-8", "xmlcharrefreplace")
