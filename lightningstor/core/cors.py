"""Bucket CORS: what a configuration may hold, and which rule a request matches.

The rules are AWS S3's (PutBucketCors and "OPTIONS object"):

* a configuration holds 1..100 rules; each allows one or more methods of
  :data:`~lightningstor.core.types.CORS_METHODS` for one or more origins;
* an origin, and an allowed header, may hold at most one ``*`` wildcard,
  which stands for any run of characters (none included); an exposed header
  may hold none;
* a request matches the *first* rule whose origin pattern matches its
  ``Origin`` exactly (case-sensitive), whose methods include its method,
  and whose allowed headers cover every header it asks for
  (case-insensitive).

Here rather than in the S3 layer because the rules are the same whatever
protocol stores or evaluates a configuration; the S3 layer only turns XML
and HTTP headers into these values and back.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from lightningstor import errors
from lightningstor.core.patterns import matches as wildcard_match
from lightningstor.core.types import CORS_METHODS, CorsRule

MAX_RULES = 100
MAX_RULE_ID_LENGTH = 255


def validate_rules(rules: Sequence[CorsRule]) -> None:
    """Refuse a configuration AWS would refuse, with AWS's error and message.

    Structural faults (no rule, too many, a rule without a method or an
    origin) are ``MalformedXML``, as AWS's schema check answers them; the
    semantic ones are ``InvalidRequest``.
    """
    if not 1 <= len(rules) <= MAX_RULES:
        raise errors.MalformedXML()
    for rule in rules:
        _validate_rule(rule)


def _validate_rule(rule: CorsRule) -> None:
    if not rule.allowed_methods or not rule.allowed_origins:
        raise errors.MalformedXML()
    if rule.rule_id is not None and len(rule.rule_id) > MAX_RULE_ID_LENGTH:
        raise errors.InvalidArgument(
            f"The ID of a CORS rule is at most {MAX_RULE_ID_LENGTH} characters", ArgumentName="ID"
        )
    if rule.max_age_seconds is not None and rule.max_age_seconds < 0:
        raise errors.MalformedXML()
    for method in rule.allowed_methods:
        if method not in CORS_METHODS:
            raise errors.InvalidRequest(
                f"Found unsupported HTTP method in CORS config. Unsupported method is {method}"
            )
    for origin in rule.allowed_origins:
        if origin.count("*") > 1:
            raise errors.InvalidRequest(f'AllowedOrigin "{origin}" can not have more than one wildcard.')
    for header in rule.allowed_headers:
        if header.count("*") > 1:
            raise errors.InvalidRequest(f'AllowedHeader "{header}" can not have more than one wildcard.')
    for header in rule.expose_headers:
        if "*" in header:
            raise errors.InvalidRequest(
                f'ExposeHeader "{header}" contains wildcard. We currently do not support wildcard for ExposeHeader.'
            )


def parse_header_list(value: str | None) -> list[str]:
    """``Access-Control-Request-Headers``: comma-separated names, blanks dropped."""
    if not value:
        return []
    return [name.strip() for name in value.split(",") if name.strip()]


def find_rule(
    rules: Iterable[CorsRule], origin: str, method: str, request_headers: Sequence[str] = ()
) -> CorsRule | None:
    """The first rule that allows ``origin`` to use ``method`` with every
    header in ``request_headers``; None if no rule does."""
    wanted = [h.lower() for h in request_headers]
    for rule in rules:
        if method not in rule.allowed_methods:
            continue
        if not any(wildcard_match(pattern, origin) for pattern in rule.allowed_origins):
            continue
        if not wanted:
            return rule  # an actual request asks for no header (only a preflight does)
        allowed = [h.lower() for h in rule.allowed_headers]
        if all(any(wildcard_match(pattern, h) for pattern in allowed) for h in wanted):
            return rule
    return None


def allowed_origin(rule: CorsRule, origin: str) -> str:
    """What ``Access-Control-Allow-Origin`` answers for ``origin`` under a
    rule that matched it: ``*`` when the first of the rule's origins that
    matches is the bare ``*`` (any origin; credentials are then not
    allowed, since browsers refuse ``*`` together with them), else the
    request's own origin."""
    for pattern in rule.allowed_origins:
        if wildcard_match(pattern, origin):
            return "*" if pattern == "*" else origin
    return origin
