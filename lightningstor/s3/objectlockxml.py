"""Object Lock on the wire: the ``ObjectLockConfiguration``, ``Retention``
and ``LegalHold`` documents, and the ``x-amz-object-lock-*`` headers.

Only translation happens here: what is not well-formed or does not follow
AWS's schema is ``MalformedXML`` (an unknown or repeated element, a mode or
status AWS does not spell that way); what the values may *say* (periods,
dates in the future, who may shorten a retention) is the core's to decide
(:mod:`lightningstor.core.objectlock`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from xml.etree.ElementTree import Element

from lightningstor import errors
from lightningstor.core.objectlock import check_mode
from lightningstor.core.types import LOCK_MODES, DefaultRetention, ObjectRecord
from lightningstor.s3.dates import iso8601, unix_ms
from lightningstor.s3.xmlio import S3_NS, XML_DECLARATION, expect_root, leaf_text, single_children

MODE_HEADER = "x-amz-object-lock-mode"
UNTIL_HEADER = "x-amz-object-lock-retain-until-date"
HOLD_HEADER = "x-amz-object-lock-legal-hold"
BYPASS_HEADER = "x-amz-bypass-governance-retention"

_INT = re.compile(r"-?[0-9]{1,10}")
_HOLD = {"ON": True, "OFF": False}


@dataclass(frozen=True)
class LockHeaders:
    """The Object Lock settings a write's headers ask for (all None: none)."""

    mode: str | None = None
    until: int | None = None  # Unix ms
    legal_hold: bool | None = None

    @property
    def any(self) -> bool:
        return self.mode is not None or self.until is not None or self.legal_hold is not None



def parse_timestamp(text: str) -> int | None:
    """An ISO 8601 timestamp (``2030-01-01T00:00:00Z``, fractions allowed;
    no zone: UTC) as Unix ms, or None if it is not one."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return unix_ms(when)  # None past 9999-12-31T23:59:59.999Z as well


def parse_lock_configuration(body: bytes) -> DefaultRetention | None:
    """PutObjectLockConfiguration body -> the default retention (None: the
    configuration has no ``Rule``).  ``ObjectLockEnabled`` must be
    ``Enabled``; a ``DefaultRetention`` needs a mode and an integer period."""
    root = expect_root(body, "ObjectLockConfiguration")
    found = single_children(root, ("ObjectLockEnabled", "Rule"))
    if "ObjectLockEnabled" not in found or leaf_text(found["ObjectLockEnabled"]).strip() != "Enabled":
        raise errors.MalformedXML()
    rule = found.get("Rule")
    if rule is None:
        return None
    retention = single_children(rule, ("DefaultRetention",)).get("DefaultRetention")
    if retention is None:
        raise errors.MalformedXML()
    fields = single_children(retention, ("Mode", "Days", "Years"))
    if "Mode" not in fields:
        raise errors.MalformedXML()
    mode = leaf_text(fields["Mode"]).strip()
    check_mode(mode)
    days = _period(fields.get("Days"))
    years = _period(fields.get("Years"))
    return DefaultRetention(mode, days, years)


def _period(element: Element | None) -> int | None:
    if element is None:
        return None
    text = leaf_text(element).strip()
    if not _INT.fullmatch(text):
        raise errors.MalformedXML()
    return int(text)


def lock_configuration_xml(rule: DefaultRetention | None) -> bytes:
    """GetObjectLockConfiguration of a lock-enabled bucket."""
    parts = [XML_DECLARATION, f'<ObjectLockConfiguration xmlns="{S3_NS}">', "<ObjectLockEnabled>Enabled</ObjectLockEnabled>"]
    if rule is not None:
        period = f"<Days>{rule.days}</Days>" if rule.days is not None else f"<Years>{rule.years}</Years>"
        parts.append(f"<Rule><DefaultRetention><Mode>{rule.mode}</Mode>{period}</DefaultRetention></Rule>")
    parts.append("</ObjectLockConfiguration>")
    return "".join(parts).encode("utf-8")


def parse_retention(body: bytes) -> tuple[str | None, int | None]:
    """PutObjectRetention body -> (mode, retain-until ms); both None for an
    empty ``Retention`` (removing it).  An unknown mode or a date that is
    not one is MalformedXML."""
    root = expect_root(body, "Retention")
    found = single_children(root, ("Mode", "RetainUntilDate"))
    mode = leaf_text(found["Mode"]).strip() if "Mode" in found else None
    if mode is not None:
        check_mode(mode)
    until = None
    if "RetainUntilDate" in found:
        until = parse_timestamp(leaf_text(found["RetainUntilDate"]))
        if until is None:
            raise errors.MalformedXML()
    return mode, until


def retention_xml(record: ObjectRecord) -> bytes:
    """GetObjectRetention (the caller checked that the version has one)."""
    assert record.lock_mode is not None and record.lock_until is not None
    return (
        f'{XML_DECLARATION}<Retention xmlns="{S3_NS}"><Mode>{record.lock_mode}</Mode>'
        f"<RetainUntilDate>{iso8601(record.lock_until)}</RetainUntilDate></Retention>"
    ).encode()


def parse_legal_hold(body: bytes) -> bool:
    """PutObjectLegalHold body -> on (``ON``) or off (``OFF``); anything
    else, or no ``Status``, is MalformedXML."""
    root = expect_root(body, "LegalHold")
    status = single_children(root, ("Status",)).get("Status")
    if status is None:
        raise errors.MalformedXML()
    text = leaf_text(status).strip()
    if text not in _HOLD:
        raise errors.MalformedXML()
    return _HOLD[text]


def legal_hold_xml(on: bool) -> bytes:
    """GetObjectLegalHold."""
    status = "ON" if on else "OFF"
    return f'{XML_DECLARATION}<LegalHold xmlns="{S3_NS}"><Status>{status}</Status></LegalHold>'.encode()


def lock_headers(headers: Mapping[str, str]) -> LockHeaders:
    """The ``x-amz-object-lock-*`` headers of a write, parsed; a mode, date
    or hold status AWS would not take is InvalidArgument (AWS's messages)."""
    mode = headers.get(MODE_HEADER)
    raw_until = headers.get(UNTIL_HEADER)
    raw_hold = headers.get(HOLD_HEADER)
    if mode is not None and mode.strip() not in LOCK_MODES:
        raise errors.InvalidArgument("Unknown wormMode directive.", ArgumentName=MODE_HEADER, ArgumentValue=mode)
    until = None
    if raw_until is not None:
        until = parse_timestamp(raw_until)
        if until is None:
            raise errors.InvalidArgument(
                "The retain until date must be provided in ISO 8601 format",
                ArgumentName=UNTIL_HEADER,
                ArgumentValue=raw_until,
            )
    hold = None
    if raw_hold is not None:
        if raw_hold.strip() not in _HOLD:
            raise errors.InvalidArgument(
                "Legal Hold must be either of 'ON' or 'OFF'", ArgumentName=HOLD_HEADER, ArgumentValue=raw_hold
            )
        hold = _HOLD[raw_hold.strip()]
    return LockHeaders(mode.strip() if mode is not None else None, until, hold)


def lock_response_headers(record: ObjectRecord) -> list[tuple[str, str]]:
    """The ``x-amz-object-lock-*`` headers GetObject and HeadObject send for
    a version that carries a retention or a legal hold."""
    out: list[tuple[str, str]] = []
    if record.lock_mode is not None and record.lock_until is not None:
        out.append((MODE_HEADER, record.lock_mode))
        out.append((UNTIL_HEADER, iso8601(record.lock_until)))
    if record.legal_hold is not None:
        out.append((HOLD_HEADER, "ON" if record.legal_hold else "OFF"))
    return out


def bypass_requested(headers: Mapping[str, str]) -> bool:
    """Whether the request asks to bypass GOVERNANCE retention."""
    return headers.get(BYPASS_HEADER, "").strip().lower() == "true"
