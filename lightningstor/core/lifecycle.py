"""Bucket lifecycle rules: what a configuration may hold, which objects a rule
applies to, and when its actions fall due.

The rules are AWS S3's (PutBucketLifecycleConfiguration and "Lifecycle
configuration elements"):

* a configuration holds 1..1000 rules, each with a unique ``ID`` of at most
  255 characters (one is generated when none is given), a status, the
  objects it applies to and at least one action;
* a rule names its objects by the legacy rule-level ``Prefix`` ("Lifecycle
  V1") or by a ``Filter`` ("V2": a prefix, tags, exclusive size bounds, or
  ``And`` of them); the first rule decides which form every rule must use,
  as S3 decides it;
* actions: ``Expiration`` (``Days``, ``Date`` at midnight UTC, or
  ``ExpiredObjectDeleteMarker``), ``NoncurrentVersionExpiration``
  (``NoncurrentDays``, optionally keeping ``NewerNoncurrentVersions``) and
  ``AbortIncompleteMultipartUpload`` (``DaysAfterInitiation``; not with tag
  or size filters, which an upload does not have yet);
* transitions between storage classes are refused (501): one class is stored.

**When an action is due.**  With the default day length, as S3 computes it:
the start (an object's creation, the creation of the version that made a
version noncurrent, an upload's initiation) plus the number of days,
rounded *up* to the next midnight UTC (an instant that is already midnight
stays).  With another ``[lifecycle] day_seconds`` (tests, debugging) there
is no rounding: start plus days times the day length.  A ``Date`` is due
from that midnight on.

The rules are here rather than in the S3 layer because they are the same
whatever protocol stores or evaluates a configuration; the S3 layer only
turns XML into these values and back (:mod:`lightningstor.s3.lifecyclexml`),
and :mod:`lightningstor.core.lifecycle_service` applies them.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import replace

from lightningstor import errors
from lightningstor.core.types import LifecycleRule

MAX_RULES = 1000
MAX_RULE_ID_LENGTH = 255
MAX_SIZE_BOUND = 1099511627776000  # AWS's limit for the ObjectSize filters (1000 TiB)
DAY_SECONDS = 86400
_DAY_MS = DAY_SECONDS * 1000

# The rule forms (LifecycleRule.form).
FORM_PREFIX = "prefix"  # legacy rule-level Prefix (Lifecycle V1)
FORM_FILTER = "filter"  # Filter with at most one condition
FORM_AND = "and"  # Filter/And

# Action kinds, as S3 names them in its "overlapping prefixes" message.
_ACTION_KINDS: tuple[tuple[str, Callable[[LifecycleRule], bool]], ...] = (
    ("Expiration", lambda r: has_expiration(r)),
    ("NoncurrentVersionExpiration", lambda r: r.noncurrent_days is not None),
    ("AbortIncompleteMultipartUpload", lambda r: r.abort_days is not None),
)


def has_expiration(rule: LifecycleRule) -> bool:
    """Whether the rule has an ``Expiration`` element of any form."""
    return (
        rule.expiration_days is not None
        or rule.expiration_date is not None
        or rule.expired_object_delete_marker is not None
    )


def midnight_error() -> errors.S3Error:
    return errors.InvalidArgument("'Date' must be at midnight GMT", ArgumentName="Date")


# -- validation -------------------------------------------------------------------


MAX_NEWER_NONCURRENT_VERSIONS = 100


def validate_rules(
    rules: Sequence[LifecycleRule], *, transitions: Collection[int] = ()
) -> tuple[LifecycleRule, ...]:
    """The rules as stored: checked as AWS checks them (its codes and
    messages), each without an ``ID`` given one.

    The first fault found is the answer, in S3's order: the number of rules
    and their IDs, then each rule, then (V1) overlapping prefixes.
    ``transitions``: the positions of the rules that held a ``Transition``
    or ``NoncurrentVersionTransition`` (an action, so such a rule is not
    refused for having none); refused last with 501 NotImplemented, so a
    document S3 would refuse for another reason gets S3's answer.
    """
    if not rules:
        raise errors.InvalidRequest("At least one lifecycle rule must be specified.")
    if len(rules) > MAX_RULES:
        raise errors.InvalidRequest(
            f"The number of lifecycle rules must not exceed the allowed limit of {MAX_RULES} rules."
        )
    ids: set[str] = set()
    for rule in rules:
        if not rule.rule_id:
            continue
        if len(rule.rule_id) > MAX_RULE_ID_LENGTH:
            raise errors.InvalidArgument(
                f"ID length should not exceed allowed limit of {MAX_RULE_ID_LENGTH}", ArgumentName="ID"
            )
        if rule.rule_id in ids:
            raise errors.InvalidArgument(
                "Rule ID must be unique. Found same ID for more than one rule", ArgumentName="ID"
            )
        ids.add(rule.rule_id)
    v2 = rules[0].form != FORM_PREFIX
    for index, rule in enumerate(rules):
        _validate_rule(rule, v2, index in transitions)
    if not v2:
        _check_overlapping(rules)
    if transitions:
        raise errors.NotImplementedS3(
            "Transition and NoncurrentVersionTransition are not implemented by LightningStor "
            "(it stores one storage class)"
        )
    return tuple(rule if rule.rule_id else replace(rule, rule_id=_new_id(ids)) for rule in rules)


def _new_id(taken: set[str]) -> str:
    """A generated rule ID (AWS generates one too), unique in the configuration."""
    while True:
        candidate = base64.b64encode(str(uuid.uuid4()).encode()).decode().rstrip("=")
        if candidate not in taken:
            taken.add(candidate)
            return candidate


def _validate_rule(rule: LifecycleRule, v2: bool, transitions: bool) -> None:
    if v2 and rule.form == FORM_PREFIX:
        raise errors.InvalidRequest(
            "Base level prefix cannot be used in Lifecycle V2, prefixes are only supported in the Filter."
        )
    if not v2 and rule.form != FORM_PREFIX:
        raise errors.InvalidRequest("Filter element can only be used in Lifecycle V2.")
    f = rule.filter
    keys = [k for k, _v in f.tags]
    if len(set(keys)) != len(keys):
        raise errors.InvalidRequest("Duplicate Tag Keys are not allowed.")
    if f.size_greater_than is not None and not 0 <= f.size_greater_than <= MAX_SIZE_BOUND:
        raise errors.InvalidRequest(f"'ObjectSizeGreaterThan' should be between 0 and {MAX_SIZE_BOUND}.")
    if f.size_less_than is not None and not 1 <= f.size_less_than <= MAX_SIZE_BOUND:
        raise errors.InvalidRequest(f"'ObjectSizeLessThan' should be between 1 and {MAX_SIZE_BOUND}.")
    if (
        f.size_greater_than is not None
        and f.size_less_than is not None
        and f.size_less_than <= f.size_greater_than
    ):
        raise errors.InvalidRequest(
            "'ObjectSizeLessThan' has to be a value greater than 'ObjectSizeGreaterThan'."
        )
    if not (has_expiration(rule) or transitions) and rule.noncurrent_days is None and rule.abort_days is None:
        raise errors.InvalidRequest("At least one action needs to be specified in a rule")
    if rule.expiration_days is not None and rule.expiration_days <= 0:
        raise errors.InvalidArgument(
            "'Days' for Expiration action must be a positive integer", ArgumentName="Days"
        )
    if rule.expiration_date is not None and rule.expiration_date % DAY_SECONDS:
        raise midnight_error()
    if rule.noncurrent_days is not None and rule.noncurrent_days <= 0:
        raise errors.InvalidArgument(
            "'NoncurrentDays' for NoncurrentVersionExpiration action must be a positive integer",
            ArgumentName="NoncurrentDays",
        )
    if rule.newer_noncurrent_versions is not None:
        if not v2:
            raise errors.InvalidRequest("NewerNoncurrentVersions element can only be used in Lifecycle V2.")
        if rule.newer_noncurrent_versions <= 0:
            raise errors.InvalidArgument(
                "'NewerNoncurrentVersions' must be a positive integer", ArgumentName="NewerNoncurrentVersions"
            )
        if rule.newer_noncurrent_versions > MAX_NEWER_NONCURRENT_VERSIONS:
            # AWS: "You can specify up to 100 noncurrent versions to retain."
            raise errors.InvalidArgument(
                f"'NewerNoncurrentVersions' must not exceed {MAX_NEWER_NONCURRENT_VERSIONS}",
                ArgumentName="NewerNoncurrentVersions",
            )
    if rule.abort_days is not None and rule.abort_days <= 0:
        raise errors.InvalidArgument(
            "'DaysAfterInitiation' for AbortIncompleteMultipartUpload action must be a positive integer",
            ArgumentName="DaysAfterInitiation",
        )
    sized = f.size_greater_than is not None or f.size_less_than is not None
    if rule.expired_object_delete_marker is not None:
        if f.tags:
            raise errors.InvalidRequest("ExpiredObjectDeleteMarker cannot be specified with Tags.")
        if sized:
            raise errors.InvalidRequest("ExpiredObjectDeleteMarker cannot be specified with Object Size.")
    if rule.abort_days is not None:
        if f.tags:
            raise errors.InvalidRequest("AbortIncompleteMultipartUpload cannot be specified with Tags.")
        if sized:
            raise errors.InvalidRequest(
                "AbortIncompleteMultipartUpload cannot be specified with Object Size."
            )


def _check_overlapping(rules: Sequence[LifecycleRule]) -> None:
    """Lifecycle V1: no two rules whose prefixes overlap (one begins the
    other) may take the same kind of action (S3's answer)."""
    for kind, takes in _ACTION_KINDS:
        prefixes = sorted(r.filter.prefix or "" for r in rules if takes(r))
        for a, b in zip(prefixes, prefixes[1:]):
            if b.startswith(a):
                raise errors.InvalidRequest(
                    f"Found overlapping prefixes '{a}' and '{b}' for same action type '{kind}'"
                )


# -- matching and timing -------------------------------------------------------------


def matches(rule: LifecycleRule, key: str, size: int, tags: Mapping[str, str]) -> bool:
    """Whether ``rule`` is enabled and applies to an object (or version) with
    this key, size and tag set (a delete marker: size 0, no tags)."""
    if not rule.enabled:
        return False
    f = rule.filter
    if f.prefix and not key.startswith(f.prefix):
        return False
    if f.size_greater_than is not None and not size > f.size_greater_than:
        return False
    if f.size_less_than is not None and not size < f.size_less_than:
        return False
    return all(tags.get(k) == v for k, v in f.tags)


def due_ms(start_ms: int, days: int, day_seconds: float = DAY_SECONDS) -> int:
    """When an action of ``days`` days counted from ``start_ms`` falls due
    (module docstring: rounded up to midnight UTC with real days)."""
    if day_seconds == DAY_SECONDS:
        end = start_ms + days * _DAY_MS
        return -(-end // _DAY_MS) * _DAY_MS
    return start_ms + int(days * day_seconds * 1000)


def expiration_due_ms(rule: LifecycleRule, created_ms: int, day_seconds: float = DAY_SECONDS) -> int | None:
    """When the rule's Days / Date expiration falls due for something
    created at ``created_ms``; None if it has neither."""
    if rule.expiration_days is not None:
        return due_ms(created_ms, rule.expiration_days, day_seconds)
    if rule.expiration_date is not None:
        return rule.expiration_date * 1000
    return None


def expiration_of(
    rules: Iterable[LifecycleRule],
    key: str,
    size: int,
    tags: Mapping[str, str],
    created_ms: int,
    day_seconds: float = DAY_SECONDS,
) -> tuple[int, LifecycleRule] | None:
    """(due time, rule) of the earliest Days / Date expiration that applies
    to a current version, due or not; None if no rule expires it.  What
    ``x-amz-expiration`` reports: the service expires the version once any
    of its rules is due, so the earliest one decides."""
    earliest: tuple[int, LifecycleRule] | None = None
    for rule in rules:
        # The cheap test first: many rules expire nothing current (noncurrent
        # versions, uploads, delete markers only), and PUT/GET/HEAD ask this.
        if (rule.expiration_days is None and rule.expiration_date is None) or not matches(rule, key, size, tags):
            continue
        due = expiration_due_ms(rule, created_ms, day_seconds)
        if due is not None and (earliest is None or due < earliest[0]):
            earliest = (due, rule)
    return earliest


def expiring_rule(
    rules: Iterable[LifecycleRule],
    key: str,
    size: int,
    tags: Mapping[str, str],
    created_ms: int,
    now_ms: int,
    day_seconds: float = DAY_SECONDS,
) -> LifecycleRule | None:
    """The rule whose Days / Date expiration of the *current* version (not
    a delete marker) fell due first, if one is due at ``now_ms``; None if
    none is."""
    found = expiration_of(rules, key, size, tags, created_ms, day_seconds)
    return found[1] if found is not None and now_ms >= found[0] else None


def marker_expiring_rule(
    rules: Iterable[LifecycleRule], key: str, created_ms: int, now_ms: int, day_seconds: float = DAY_SECONDS
) -> LifecycleRule | None:
    """For a current delete marker that is the key's only version (an
    "expired object delete marker"): the first rule that removes it now.
    ``ExpiredObjectDeleteMarker`` does at once; a Days / Date expiration
    does once due for the marker's own creation (AWS: "Amazon S3 removes
    the expired object delete marker")."""
    for rule in rules:
        if not matches(rule, key, 0, {}):
            continue
        if rule.expired_object_delete_marker:
            return rule
        due = expiration_due_ms(rule, created_ms, day_seconds)
        if due is not None and now_ms >= due:
            return rule
    return None


def noncurrent_expiring_rule(
    rules: Iterable[LifecycleRule],
    key: str,
    size: int,
    tags: Mapping[str, str],
    noncurrent_since_ms: int,
    newer_noncurrent: int,
    now_ms: int,
    day_seconds: float = DAY_SECONDS,
) -> LifecycleRule | None:
    """The first rule that permanently deletes a noncurrent version now.

    ``noncurrent_since_ms``: when its successor was created (the version
    became noncurrent then); ``newer_noncurrent``: how many noncurrent
    versions of the key are newer than it (the rule keeps its
    ``NewerNoncurrentVersions`` newest ones whatever their age).
    """
    for rule in rules:
        if rule.noncurrent_days is None or not matches(rule, key, size, tags):
            continue
        if newer_noncurrent < (rule.newer_noncurrent_versions or 0):
            continue
        if now_ms >= due_ms(noncurrent_since_ms, rule.noncurrent_days, day_seconds):
            return rule
    return None


def abort_rule(
    rules: Iterable[LifecycleRule], key: str, initiated_ms: int, now_ms: int, day_seconds: float = DAY_SECONDS
) -> LifecycleRule | None:
    """The first rule that aborts an upload of ``key`` initiated at
    ``initiated_ms`` now (uploads are matched on the prefix only: rules with
    tag or size filters cannot hold this action)."""
    for rule in rules:
        if rule.abort_days is None or not matches(rule, key, 0, {}):
            continue
        if now_ms >= due_ms(initiated_ms, rule.abort_days, day_seconds):
            return rule
    return None


def abort_due(
    rules: Iterable[LifecycleRule], key: str, initiated_ms: int, day_seconds: float = DAY_SECONDS
) -> tuple[int, LifecycleRule] | None:
    """When the earliest enabled rule that aborts an upload of ``key``
    initiated at ``initiated_ms`` falls due, and that rule (what
    ``x-amz-abort-date`` / ``x-amz-abort-rule-id`` report); None if none does."""
    found: tuple[int, LifecycleRule] | None = None
    for rule in rules:
        if rule.abort_days is None or not matches(rule, key, 0, {}):
            continue
        due = due_ms(initiated_ms, rule.abort_days, day_seconds)
        if found is None or due < found[0]:
            found = (due, rule)
    return found


def scan_prefixes(rules: Iterable[LifecycleRule], wanted: Callable[[LifecycleRule], bool]) -> list[str]:
    """The key prefixes a pass must read to find everything the enabled
    ``wanted`` rules may act on, sorted, none inside another ([""]: all)."""
    prefixes = sorted({r.filter.prefix or "" for r in rules if r.enabled and wanted(r)})
    out: list[str] = []
    for prefix in prefixes:
        if not out or not prefix.startswith(out[-1]):
            out.append(prefix)
    return out
