"""Object Lock (WORM): the rules, decided once for every protocol layer.

A bucket with Object Lock enabled keeps versioning Enabled for good; each
object version in it may carry a retention (a mode and a retain-until
instant) and a legal hold.  While either holds, the version cannot be
deleted (:func:`check_delete`): a delete without a version id only adds a
delete marker, and an overwrite only adds a version, so both stay allowed.
``GOVERNANCE`` retention yields to a caller who asks to bypass it and may
(``s3:BypassGovernanceRetention``; the protocol layer decides the "may");
``COMPLIANCE`` retention yields to no one and can only be extended.

The functions here are pure; :mod:`lightningstor.core.objects` calls them
inside its guarded read-check-write loops, so a retention changed
concurrently is always seen before a deletion lands.  The S3 layer only
parses headers and XML into these values.
"""

from __future__ import annotations

import calendar
import time

from lightningstor import errors
from lightningstor.core.types import (
    COMPLIANCE,
    GOVERNANCE,
    LOCK_MODES,
    Bucket,
    DefaultRetention,
    ObjectRecord,
)

DAY_MS = 86_400_000
# AWS's ceiling for a default retention period (100 years).
MAX_DEFAULT_DAYS = 36500
MAX_DEFAULT_YEARS = 100

LOCKED_MESSAGE = "Access Denied because object protected by object lock."


class ObjectLocked(errors.S3Error):
    """403 AccessDenied because a version is under retention or legal hold
    (AWS's code and message).  Its own type so a background deleter
    (the lifecycle service) can tell "locked" from any other refusal.
    The S3 layer names the request's own resource in the error document."""

    code = "AccessDenied"

    def __init__(self) -> None:
        super().__init__(LOCKED_MESSAGE)


def missing_configuration() -> errors.S3Error:
    """A lock request on a bucket without Object Lock: AWS's 400 InvalidRequest."""
    return errors.InvalidRequest("Bucket is missing Object Lock Configuration")


def check_mode(mode: str) -> None:
    """Modes are case-sensitive upper-case names, as AWS checks them; a
    configuration or retention document naming another is MalformedXML."""
    if mode not in LOCK_MODES:
        raise errors.MalformedXML()


def validate_default_retention(rule: DefaultRetention) -> None:
    """A default retention as PutObjectLockConfiguration accepts it: a known
    mode and exactly one positive period (both or neither: MalformedXML;
    zero, negative or past AWS's 100-year ceiling: InvalidRetentionPeriod)."""
    check_mode(rule.mode)
    if (rule.days is None) == (rule.years is None):
        raise errors.MalformedXML()
    period = rule.days if rule.days is not None else rule.years
    ceiling = MAX_DEFAULT_DAYS if rule.days is not None else MAX_DEFAULT_YEARS
    assert period is not None
    if period <= 0:
        raise errors.S3Error(
            "Default retention period must be a positive integer value.", code="InvalidRetentionPeriod"
        )
    if period > ceiling:
        raise errors.S3Error(
            f"Default retention period cannot exceed {ceiling} {'days' if rule.days is not None else 'years'}.",
            code="InvalidRetentionPeriod",
        )


def default_until(rule: DefaultRetention, created_ms: int) -> int:
    """The retain-until instant the default rule gives a version created at
    ``created_ms``: whole days later, or the same day of a later year (the
    28th of February for a 29th in a year without one)."""
    if rule.days is not None:
        return created_ms + rule.days * DAY_MS
    assert rule.years is not None
    t = time.gmtime(created_ms // 1000)
    year = t.tm_year + rule.years
    day = min(t.tm_mday, calendar.monthrange(year, t.tm_mon)[1])
    seconds = calendar.timegm((year, t.tm_mon, day, t.tm_hour, t.tm_min, t.tm_sec, 0, 0, 0))
    return seconds * 1000 + created_ms % 1000


def check_lock_request(
    bucket: Bucket, mode: str | None, until: int | None, legal_hold: bool | None, now_ms: int
) -> None:
    """Lock settings a write asks for (PutObject, CopyObject,
    CreateMultipartUpload headers), checked as AWS does before anything is
    stored: only in a lock-enabled bucket, mode and date together, the date
    in the future."""
    if mode is None and until is None and legal_hold is None:
        return
    if not bucket.object_lock:
        raise missing_configuration()
    if (mode is None) != (until is None):
        raise errors.InvalidArgument(
            "x-amz-object-lock-retain-until-date and x-amz-object-lock-mode must both be supplied"
        )
    if until is not None and until <= now_ms:
        raise errors.InvalidArgument("The retain until date must be in the future!")


def settle_new_version(bucket: Bucket, record: ObjectRecord) -> None:
    """Fix the lock of a version about to be committed: settings in a bucket
    without Object Lock are refused (whatever layer built the record), and a
    version that names no retention gets the bucket's default one, counted
    from its creation."""
    if record.delete_marker:
        record.lock_mode = record.lock_until = record.legal_hold = None  # markers carry no lock
        return
    if not bucket.object_lock:
        if record.lock_mode is not None or record.legal_hold is not None:
            raise missing_configuration()
        return
    rule = bucket.default_retention
    if record.lock_mode is None and rule is not None:
        record.lock_mode = rule.mode
        record.lock_until = default_until(rule, record.created_at)


def retention_active(record: ObjectRecord, now_ms: int) -> bool:
    """Whether the version's retain-until instant is still ahead."""
    return record.lock_mode is not None and record.lock_until is not None and record.lock_until > now_ms


def is_locked(record: ObjectRecord, now_ms: int) -> bool:
    """Whether anything protects the version from deletion right now."""
    return bool(record.legal_hold) or retention_active(record, now_ms)


def check_delete(record: ObjectRecord, now_ms: int, *, bypass_governance: bool) -> None:
    """Raise :class:`ObjectLocked` unless the version may be deleted for good:
    a legal hold always protects it, COMPLIANCE retention too until it
    passes, GOVERNANCE retention unless the caller bypasses it."""
    if record.delete_marker:
        return
    if record.legal_hold:
        raise ObjectLocked()
    if retention_active(record, now_ms) and (record.lock_mode == COMPLIANCE or not bypass_governance):
        raise ObjectLocked()


def check_retention_change(
    record: ObjectRecord, mode: str | None, until: int | None, now_ms: int, *, bypass_governance: bool
) -> None:
    """PutObjectRetention's rule: extending (same mode, a date no earlier)
    is always allowed; anything else - shortening, changing the mode,
    removing it - is refused while the current retention lasts, except for
    GOVERNANCE with the bypass.  A new date must lie in the future."""
    if mode is not None:
        check_mode(mode)
    if until is not None and until <= now_ms:
        raise errors.InvalidArgument("The retain until date must be in the future!")
    if not retention_active(record, now_ms):
        return
    assert record.lock_until is not None
    extends = mode == record.lock_mode and until is not None and until >= record.lock_until
    if extends:
        return
    if record.lock_mode == GOVERNANCE and bypass_governance:
        return
    raise ObjectLocked()
