"""The ``LifecycleConfiguration`` document of PutBucketLifecycleConfiguration
and GetBucketLifecycleConfiguration.

Parsing turns the XML into :class:`~lightningstor.core.types.LifecycleRule`
values and refuses what is not well-formed or does not follow AWS's schema
(``MalformedXML``: an unknown or repeated element, a missing ``Status``, an
``Expiration`` naming none or several of its forms, a number that is not
one); what the rules may *say* (day counts, IDs, filters, which actions go
together) is the core's to check (:mod:`lightningstor.core.lifecycle`).
Kept apart from :mod:`lightningstor.s3.xmlio`, whose safe parser it uses.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from xml.etree.ElementTree import Element

from lightningstor import errors
from lightningstor.core.lifecycle import DAY_SECONDS, FORM_AND, FORM_FILTER, FORM_PREFIX, midnight_error
from lightningstor.core.types import LifecycleFilter, LifecycleRule
from lightningstor.s3.dates import iso8601, unix_ms
from lightningstor.s3.xmlio import S3_NS, XML_DECLARATION, escape, expect_root, leaf_text, single_children

# A configuration of 1000 rules with long prefixes and several tags each
# stays well under this; a larger body is refused before it is parsed (400
# MaxMessageLengthExceeded), as PutBucketCors refuses one over 64 KiB.
MAX_LIFECYCLE_BODY = 1024 * 1024

_INT = re.compile(r"-?[0-9]{1,19}")
_INT32_MAX = 2**31 - 1
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}(T|$)")
_SIZE_MAX = 2**63 - 1
_ACTIONS = ("Expiration", "NoncurrentVersionExpiration", "AbortIncompleteMultipartUpload")
_TRANSITIONS = ("Transition", "NoncurrentVersionTransition")


@dataclass(frozen=True)
class ParsedConfiguration:
    """The rules in document order, and the positions of those that held a
    transition (refused by the core after every other check, as S3 orders
    them)."""

    rules: list[LifecycleRule]
    transitions: frozenset[int] = frozenset()


def parse_lifecycle_configuration(body: bytes) -> ParsedConfiguration:
    """PutBucketLifecycleConfiguration body -> the rules, in document order."""
    root = expect_root(body, "LifecycleConfiguration", max_size=MAX_LIFECYCLE_BODY)
    rules: list[LifecycleRule] = []
    transitions: set[int] = set()
    for child in root:
        if child.tag != "Rule":
            raise errors.MalformedXML()
        rule, has = _parse_rule(child)
        if has:
            transitions.add(len(rules))
        rules.append(rule)
    return ParsedConfiguration(rules, frozenset(transitions))



def _parse_rule(element: Element) -> tuple[LifecycleRule, bool]:
    found: dict[str, Element] = {}
    transitions = False
    for child in element:
        if child.tag in _TRANSITIONS:
            # Not stored, but checked like the rest: a document S3 would
            # refuse as malformed gets that answer, not 501.
            _check_transition(child)
            transitions = True
            continue
        if child.tag not in ("ID", "Prefix", "Filter", "Status", *_ACTIONS) or child.tag in found:
            raise errors.MalformedXML()
        found[child.tag] = child
    status = _text(found["Status"]) if "Status" in found else None
    if status not in ("Enabled", "Disabled"):
        raise errors.MalformedXML()
    if ("Prefix" in found) == ("Filter" in found):
        raise errors.MalformedXML()  # neither, or both
    if "Prefix" in found:
        form, rule_filter = FORM_PREFIX, LifecycleFilter(prefix=_text(found["Prefix"], strip=False))
    else:
        form, rule_filter = _parse_filter(found["Filter"])
    fields: dict[str, object] = {}
    if "Expiration" in found:
        fields.update(_parse_expiration(found["Expiration"]))
    if "NoncurrentVersionExpiration" in found:
        parts = single_children(
            found["NoncurrentVersionExpiration"], ("NoncurrentDays", "NewerNoncurrentVersions")
        )
        if "NoncurrentDays" not in parts:
            raise errors.MalformedXML()
        fields["noncurrent_days"] = _int(parts["NoncurrentDays"])
        if "NewerNoncurrentVersions" in parts:
            fields["newer_noncurrent_versions"] = _int(parts["NewerNoncurrentVersions"])
    if "AbortIncompleteMultipartUpload" in found:
        parts = single_children(found["AbortIncompleteMultipartUpload"], ("DaysAfterInitiation",))
        if "DaysAfterInitiation" not in parts:
            raise errors.MalformedXML()
        fields["abort_days"] = _int(parts["DaysAfterInitiation"])
    rule = LifecycleRule(
        rule_id=_text(found["ID"]) if "ID" in found else "",
        enabled=status == "Enabled",
        filter=rule_filter,
        form=form,
        **fields,  # type: ignore[arg-type]
    )
    return rule, transitions


def _check_transition(element: Element) -> None:
    """The schema of a ``Transition`` (``Days`` or ``Date``, and
    ``StorageClass``) or ``NoncurrentVersionTransition`` (``NoncurrentDays``,
    ``StorageClass``, optionally ``NewerNoncurrentVersions``)."""
    if element.tag == "Transition":
        parts = single_children(element, ("Days", "Date", "StorageClass"))
        if ("Days" in parts) == ("Date" in parts):
            raise errors.MalformedXML()  # neither, or both
        if "Days" in parts:
            _int(parts["Days"])
        elif _date(_text(parts["Date"])) % DAY_SECONDS:
            raise midnight_error()  # as for Expiration's Date
    else:
        parts = single_children(element, ("NoncurrentDays", "StorageClass", "NewerNoncurrentVersions"))
        if "NoncurrentDays" not in parts:
            raise errors.MalformedXML()
        _int(parts["NoncurrentDays"])
        if "NewerNoncurrentVersions" in parts:
            _int(parts["NewerNoncurrentVersions"])
    if "StorageClass" not in parts or not _text(parts["StorageClass"]):
        raise errors.MalformedXML()


def _parse_filter(element: Element) -> tuple[str, LifecycleFilter]:
    """``Filter``: empty, or exactly one of its conditions, or ``And``."""
    children = list(element)
    if len(children) > 1:
        raise errors.MalformedXML()
    if not children:
        return FORM_FILTER, LifecycleFilter()
    child = children[0]
    if child.tag == "And":
        return FORM_AND, _parse_conditions(child, allow_many_tags=True)
    return FORM_FILTER, _parse_conditions(element, allow_many_tags=False)


def _parse_conditions(element: Element, *, allow_many_tags: bool) -> LifecycleFilter:
    prefix: str | None = None
    tags: list[tuple[str, str]] = []
    greater: int | None = None
    less: int | None = None
    for child in element:
        if child.tag == "Prefix" and prefix is None:
            prefix = _text(child, strip=False)
        elif child.tag == "Tag" and (allow_many_tags or not tags):
            tags.append(_parse_tag(child))
        elif child.tag == "ObjectSizeGreaterThan" and greater is None:
            greater = _int(child, limit=_SIZE_MAX)
        elif child.tag == "ObjectSizeLessThan" and less is None:
            less = _int(child, limit=_SIZE_MAX)
        else:
            raise errors.MalformedXML()
    return LifecycleFilter(prefix=prefix, tags=tuple(tags), size_greater_than=greater, size_less_than=less)


def _parse_tag(element: Element) -> tuple[str, str]:
    parts = single_children(element, ("Key", "Value"))
    if "Key" not in parts or not _text(parts["Key"], strip=False):
        raise errors.MalformedXML()
    value = _text(parts["Value"], strip=False) if "Value" in parts else ""
    return _text(parts["Key"], strip=False), value


def _parse_expiration(element: Element) -> dict[str, object]:
    parts = single_children(element, ("Days", "Date", "ExpiredObjectDeleteMarker"))
    if len(parts) != 1:
        raise errors.MalformedXML()  # none, or more than one of its forms
    if "Days" in parts:
        return {"expiration_days": _int(parts["Days"])}
    if "Date" in parts:
        return {"expiration_date": _date(_text(parts["Date"]))}
    flag = _text(parts["ExpiredObjectDeleteMarker"])
    if flag not in ("true", "false"):
        raise errors.MalformedXML()
    return {"expired_object_delete_marker": flag == "true"}


def _text(element: Element, *, strip: bool = True) -> str:
    """The text of an element that may not have children.  Prefixes and
    tag values are kept as sent (a key may start with a space); other
    values are trimmed of pretty-printing whitespace."""
    text = leaf_text(element)
    return text.strip() if strip else text


def _int(element: Element, *, limit: int = _INT32_MAX) -> int:
    """An xsd:int (or long, for sizes); its sign is the core's to judge."""
    text = _text(element)
    if not _INT.fullmatch(text) or abs(int(text)) > limit:
        raise errors.MalformedXML()
    return int(text)


def _date(text: str) -> int:
    """An ISO 8601 date or date-time (UTC when it names no zone) -> Unix
    seconds.  Not a date: MalformedXML; not a whole second: not midnight."""
    if not _ISO_DATE.match(text):
        raise errors.MalformedXML()  # xsd:dateTime, not ISO 8601's basic form ("20220927")
    try:
        parsed = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    except ValueError:
        raise errors.MalformedXML() from None
    if parsed.microsecond:
        raise midnight_error()
    ms = unix_ms(parsed)
    if ms is None:
        raise errors.MalformedXML()  # past 9999-12-31 in UTC: not a date it can be shown as
    return ms // 1000


def lifecycle_configuration_xml(rules: Sequence[LifecycleRule]) -> bytes:
    """GetBucketLifecycleConfiguration's document: each rule as it was sent
    (its filter in the form it was written), with its (maybe generated) ID."""
    parts = [XML_DECLARATION, f'<LifecycleConfiguration xmlns="{S3_NS}">']
    for rule in rules:
        parts.append(f"<Rule><ID>{escape(rule.rule_id)}</ID>")
        parts.append(_filter_xml(rule))
        parts.append(f"<Status>{'Enabled' if rule.enabled else 'Disabled'}</Status>")
        if rule.expiration_days is not None:
            parts.append(f"<Expiration><Days>{rule.expiration_days}</Days></Expiration>")
        elif rule.expiration_date is not None:
            parts.append(f"<Expiration><Date>{iso8601(rule.expiration_date * 1000)}</Date></Expiration>")
        elif rule.expired_object_delete_marker is not None:
            flag = "true" if rule.expired_object_delete_marker else "false"
            parts.append(
                f"<Expiration><ExpiredObjectDeleteMarker>{flag}</ExpiredObjectDeleteMarker></Expiration>"
            )
        if rule.noncurrent_days is not None:
            parts.append(
                f"<NoncurrentVersionExpiration><NoncurrentDays>{rule.noncurrent_days}</NoncurrentDays>"
            )
            if rule.newer_noncurrent_versions is not None:
                parts.append(
                    f"<NewerNoncurrentVersions>{rule.newer_noncurrent_versions}</NewerNoncurrentVersions>"
                )
            parts.append("</NoncurrentVersionExpiration>")
        if rule.abort_days is not None:
            parts.append(
                "<AbortIncompleteMultipartUpload>"
                f"<DaysAfterInitiation>{rule.abort_days}</DaysAfterInitiation>"
                "</AbortIncompleteMultipartUpload>"
            )
        parts.append("</Rule>")
    parts.append("</LifecycleConfiguration>")
    return "".join(parts).encode("utf-8", "xmlcharrefreplace")


def _conditions_xml(f: LifecycleFilter) -> str:
    out = []
    if f.prefix is not None:
        out.append(f"<Prefix>{escape(f.prefix)}</Prefix>")
    out.extend(f"<Tag><Key>{escape(k)}</Key><Value>{escape(v)}</Value></Tag>" for k, v in f.tags)
    if f.size_greater_than is not None:
        out.append(f"<ObjectSizeGreaterThan>{f.size_greater_than}</ObjectSizeGreaterThan>")
    if f.size_less_than is not None:
        out.append(f"<ObjectSizeLessThan>{f.size_less_than}</ObjectSizeLessThan>")
    return "".join(out)


def _filter_xml(rule: LifecycleRule) -> str:
    if rule.form == FORM_PREFIX:
        return f"<Prefix>{escape(rule.filter.prefix or '')}</Prefix>"
    if rule.form == FORM_AND:
        return f"<Filter><And>{_conditions_xml(rule.filter)}</And></Filter>"
    return f"<Filter>{_conditions_xml(rule.filter)}</Filter>"
