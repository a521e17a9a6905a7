"""Bucket-policy patterns, policy variables and ``Condition`` operators.

The rules are AWS IAM's, as S3 applies them to bucket policies ("IAM JSON
policy elements: Condition operators", "Creating a condition with multiple
keys or values", "IAM policy elements: Variables and tags"):

* wildcards: ``*`` is any run of characters (none included, ``/`` and
  ``:`` included), ``?`` exactly one character; nothing else is special;
* a condition holds when every operator, and every key under it, holds; a
  key holds when any of its policy values matches (AND across operators and
  keys, OR across a key's values);
* a key absent from the request: an operator is false, its negated form
  (``StringNotEquals``, ``NotIpAddress``...) true, any ``...IfExists``
  true, ``Null`` tests exactly that; ``ForAllValues:`` is true and
  ``ForAnyValue:`` false for an absent or empty key;
* policy variables (``${aws:username}``, ``${s3:prefix}``..., the escapes
  ``${*}`` ``${?}`` ``${$}`` and the default form ``${key, 'default'}``)
  are substituted, in 2012-10-17 policies only, in ``Resource`` and in the
  values of the ``String*`` and ``Arn*`` operators; a substituted value is
  literal text (a ``*`` in a user name is no wildcard), and a variable whose
  key the request lacks (and that has no default) makes its value match
  nothing.

Everything that can be decided from the policy alone is decided once, when
it is parsed: patterns become compiled globs (linear-time matchers,
:mod:`lightningstor.core.globs`), CIDRs
networks, numbers and dates numbers, so a request only compares.  Kept out
of :mod:`lightningstor.core.policy` so the document rules and the operator
table each read on their own.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache

from lightningstor import errors
from lightningstor.core.globs import Glob, Token, literal_tokens, tokens_of
from lightningstor.core.globs import compile_glob as compile_glob

Keys = Mapping[str, tuple[str, ...]]

VERSION_2012 = "2012-10-17"
VERSION_2008 = "2008-10-17"

# -- wildcard patterns ---------------------------------------------------------------


def glob_can_start_with(pattern: str, prefix: str) -> bool:
    """Whether some string that starts with ``prefix`` matches ``pattern``.

    Used at parse time to ask whether a resource pattern can name an object
    of a bucket (``arn:aws:s3:::bucket/``...): every position the pattern
    can be in after reading ``prefix`` can still be completed, since each
    remaining literal, ``?`` or ``*`` accepts some character(s)."""
    states = _close(pattern, {0})
    for char in prefix:
        following = set()
        for pos in states:
            if pos < len(pattern):
                token = pattern[pos]
                if token == "*":
                    following.add(pos)
                elif token == "?" or token == char:
                    following.add(pos + 1)
        states = _close(pattern, following)
        if not states:
            return False
    return True


def _close(pattern: str, states: set[int]) -> set[int]:
    """``states`` plus the positions reachable by letting ``*`` match nothing."""
    out = set(states)
    for pos in sorted(states):
        while pos < len(pattern) and pattern[pos] == "*":
            pos += 1
            out.add(pos)
    return out


@lru_cache(maxsize=4096)
def _compiled(parts: tuple[Part, ...], arn: bool, ignore_case: bool) -> Glob:
    """A glob of ``parts``: the wildcards of ``text`` parts are active, and
    with ``arn`` those of the first five colon-delimited components stay
    within their component; ``literal`` parts match themselves."""
    tokens: list[Token] = []
    colons = 0
    for part in parts:
        if part[0] != "text":
            tokens += literal_tokens(part[1])
            continue
        for char in part[1]:
            tokens += tokens_of(char, segment=arn and colons < 5)
            if char == ":":
                colons += 1
    return Glob(tokens, ignore_case=ignore_case)


# -- policy variables ----------------------------------------------------------------

_VARIABLE = re.compile(r"\$\{([^}]*)\}")
_DEFAULT = re.compile(r"^\s*([^,\s]+)\s*,\s*'([^']*)'\s*\Z")
_ESCAPES = {"*": "*", "?": "?", "$": "$"}

# A template part: ("text", s) is policy text (its wildcards are active in
# a pattern), ("literal", s) text that is never a wildcard (an escape), and
# ("var", key, default) a request key's value (default None: none).
Part = tuple[str, str] | tuple[str, str, str | None]


def parse_template(text: str, variables: bool) -> tuple[Part, ...]:
    """``text`` split into parts; without ``variables`` (a 2008-10-17
    policy) ``${...}`` is plain text, as AWS reads it there."""
    if not variables or "${" not in text:
        return (("text", text),)
    parts: list[Part] = []
    last = 0
    for found in _VARIABLE.finditer(text):
        if found.start() > last:
            parts.append(("text", text[last : found.start()]))
        inner = found.group(1)
        if inner in _ESCAPES:
            parts.append(("literal", _ESCAPES[inner]))
        else:
            default = _DEFAULT.match(inner)
            if default:
                parts.append(("var", default.group(1).lower(), default.group(2)))
            else:
                parts.append(("var", inner.strip().lower(), None))
        last = found.end()
    if last < len(text):
        parts.append(("text", text[last:]))
    return tuple(parts)


def _resolve(part: Part, keys: Keys) -> str | None:
    """A variable's value in this request: its key's one value, else its
    default; None when neither (the value then matches nothing)."""
    values = keys.get(part[1])
    if values is not None and len(values) == 1:
        return values[0]
    return part[2] if len(part) > 2 else None  # type: ignore[misc]


def has_variables(parts: tuple[Part, ...]) -> bool:
    return any(part[0] != "text" for part in parts)


def render_literal(parts: tuple[Part, ...], keys: Keys) -> str | None:
    """The template as plain text for this request (None: unresolvable)."""
    out = []
    for part in parts:
        if part[0] == "var":
            value = _resolve(part, keys)
            if value is None:
                return None
            out.append(value)
        else:
            out.append(part[1])
    return "".join(out)


class Pattern:
    """A wildcard pattern that may hold policy variables; compiled once
    when it has none, per distinct substitution (cached) otherwise.

    ``arn``: ArnLike matching, each of the first five colon-delimited
    components matched on its own (a wildcard does not cross a colon there).
    """

    __slots__ = ("parts", "_ignore_case", "_arn", "_static")

    def __init__(self, text: str, *, variables: bool, ignore_case: bool = False, arn: bool = False) -> None:
        self.parts = parse_template(text, variables)
        self._ignore_case = ignore_case
        # ARN segmenting applies when the policy's own text has the five
        # colons of an ARN (substituted values' colons do not count).
        self._arn = arn and sum(part[1].count(":") for part in self.parts if part[0] == "text") >= 5
        self._static: Glob | None = None
        if not has_variables(self.parts):
            self._static = _compiled(self.parts, self._arn, ignore_case)

    def matches(self, value: str, keys: Keys) -> bool:
        if self._static is not None:
            return self._static.fullmatch(value)
        # Variables: substitute (as literal text, never wildcards), then match.
        parts: list[Part] = []
        for part in self.parts:
            if part[0] == "var":
                resolved = _resolve(part, keys)
                if resolved is None:
                    return False
                parts.append(("literal", resolved))
            else:
                parts.append(part)
        return _compiled(tuple(parts), self._arn, self._ignore_case).fullmatch(value)

    def is_fixed(self) -> bool:
        """No wildcard and no variable: one value only (Block Public Access)."""
        return not has_variables(self.parts) and not any(c in self.parts[0][1] for c in "*?")


# -- values of the other operators ------------------------------------------------------


def malformed(message: str) -> errors.S3Error:
    return errors.MalformedPolicy(message)


def parse_number(text: str) -> Decimal | None:
    try:
        number = Decimal(text.strip())
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


_EPOCH = re.compile(r"^-?\d+(\.\d+)?\Z")


def parse_date(text: str) -> float | None:
    """Seconds since the epoch of an ISO 8601 (W3C profile) date or an
    epoch time, as the ``Date*`` operators accept both; None if neither."""
    text = text.strip()
    # Four digits are W3C's year-only form (as epoch seconds they would be
    # the first hour of 1970, which no policy means).
    if re.fullmatch(r"\d{4}", text):
        text += "-01-01"
    elif re.fullmatch(r"\d{4}-\d{2}", text):
        text += "-01"
    elif _EPOCH.match(text):
        return float(text)
    try:
        when = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def parse_network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """A CIDR (a bare address is /32 or /128, as IAM reads it); None if invalid."""
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        return None


# -- operators ---------------------------------------------------------------------------

# One compiled policy value: whether a request value matches it.
Matcher = Callable[[str, Keys], bool]


def _string_matcher(family: str, text: str, variables: bool) -> Matcher:
    if family == "StringLike":
        like = Pattern(text, variables=variables)
        return like.matches
    if family in ("ArnEquals", "ArnLike"):
        arn = Pattern(text, variables=variables, arn=True)
        return arn.matches
    parts = parse_template(text, variables)
    fold = family == "StringEqualsIgnoreCase"
    if not has_variables(parts):
        wanted = text.casefold() if fold else text
        if fold:
            return lambda value, keys: value.casefold() == wanted
        return lambda value, keys: value == wanted

    def dynamic(value: str, keys: Keys) -> bool:
        wanted = render_literal(parts, keys)
        if wanted is None:
            return False
        return value.casefold() == wanted.casefold() if fold else value == wanted

    return dynamic


_NUMERIC: dict[str, Callable[[Decimal, Decimal], bool]] = {
    "Equals": lambda a, b: a == b,
    "LessThan": lambda a, b: a < b,
    "LessThanEquals": lambda a, b: a <= b,
    "GreaterThan": lambda a, b: a > b,
    "GreaterThanEquals": lambda a, b: a >= b,
}


def _numeric_matcher(compare: str, text: str) -> Matcher:
    bound = parse_number(text)
    if bound is None:
        raise malformed(f"Invalid numeric value in Conditions: {text}")
    test = _NUMERIC[compare]

    def match(value: str, keys: Keys) -> bool:
        number = parse_number(value)
        return number is not None and test(number, bound)

    return match


def _date_matcher(compare: str, text: str) -> Matcher:
    parsed = parse_date(text)
    if parsed is None:
        raise malformed(f"Invalid date value in Conditions: {text}")
    bound = Decimal(repr(parsed))
    test = _NUMERIC[compare]

    def match(value: str, keys: Keys) -> bool:
        when = parse_date(value)
        return when is not None and test(Decimal(repr(when)), bound)

    return match


def _bool_matcher(text: str) -> Matcher:
    wanted = text.strip().lower()
    if wanted not in ("true", "false"):
        raise malformed(f"Invalid boolean value in Conditions: {text}")
    return lambda value, keys: value.strip().lower() == wanted


def _binary_matcher(text: str) -> Matcher:
    try:
        wanted = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise malformed(f"Invalid binary value in Conditions: {text}") from None
    # A request holds a binary key's value as text; compare its bytes.
    return lambda value, keys: value.encode("utf-8") == wanted


def _ip_matcher(text: str) -> Matcher:
    network = parse_network(text)
    if network is None:
        raise malformed("Invalid IP address in Conditions")

    def match(value: str, keys: Keys) -> bool:
        try:
            address = ipaddress.ip_address(value.strip())
        except ValueError:
            return False
        return address.version == network.version and address in network

    return match


@dataclass(frozen=True)
class _Family:
    """A base operator: how a policy value compiles, and whether the
    operator is the negation of its matching."""

    family: str  # String..., Numeric, Date, Bool, Binary, Ip, Arn..., Null
    compare: str = ""  # Numeric/Date: Equals, LessThan...
    negated: bool = False


def _operator_table() -> dict[str, _Family]:
    table = {
        "StringEquals": _Family("StringEquals"),
        "StringNotEquals": _Family("StringEquals", negated=True),
        "StringEqualsIgnoreCase": _Family("StringEqualsIgnoreCase"),
        "StringNotEqualsIgnoreCase": _Family("StringEqualsIgnoreCase", negated=True),
        "StringLike": _Family("StringLike"),
        "StringNotLike": _Family("StringLike", negated=True),
        "Bool": _Family("Bool"),
        "BinaryEquals": _Family("Binary"),
        "IpAddress": _Family("Ip"),
        "NotIpAddress": _Family("Ip", negated=True),
        "ArnEquals": _Family("ArnEquals"),
        "ArnLike": _Family("ArnLike"),
        "ArnNotEquals": _Family("ArnEquals", negated=True),
        "ArnNotLike": _Family("ArnLike", negated=True),
        "Null": _Family("Null"),
    }
    for family in ("Numeric", "Date"):
        for compare in _NUMERIC:
            table[family + compare] = _Family(family, compare)
        table[family + "NotEquals"] = _Family(family, "Equals", negated=True)
    return table


OPERATORS = _operator_table()

# Operators whose values may hold policy variables (IAM: String and ARN).
_VARIABLE_FAMILIES = frozenset(
    {"StringEquals", "StringEqualsIgnoreCase", "StringLike", "ArnEquals", "ArnLike"}
)


def compile_value(family: _Family, text: str, variables: bool) -> Matcher:
    """One policy value compiled for its operator; MalformedPolicy when the
    value does not parse for it (a bad CIDR, number, date, base64...)."""
    kind = family.family
    if kind in _VARIABLE_FAMILIES:
        return _string_matcher(kind, text, variables)
    if kind == "Numeric":
        return _numeric_matcher(family.compare, text)
    if kind == "Date":
        return _date_matcher(family.compare, text)
    if kind == "Bool":
        return _bool_matcher(text)
    if kind == "Binary":
        return _binary_matcher(text)
    if kind == "Ip":
        return _ip_matcher(text)
    raise AssertionError(kind)


# -- condition keys ------------------------------------------------------------------------

_GLOBAL_KEYS = (
    "aws:SourceIp aws:SecureTransport aws:Referer aws:UserAgent aws:CurrentTime aws:EpochTime "
    "aws:username aws:userid aws:PrincipalType aws:PrincipalAccount aws:PrincipalArn aws:SourceVpc "
    "aws:SourceVpce aws:SourceAccount aws:SourceArn aws:SourceOwner aws:PrincipalOrgID aws:RequestedRegion "
    "aws:MultiFactorAuthPresent aws:MultiFactorAuthAge aws:TokenIssueTime aws:ViaAWSService aws:CalledVia "
    "aws:TagKeys aws:ResourceAccount"
)
_S3_KEYS = (
    "s3:prefix s3:delimiter s3:max-keys s3:VersionId s3:x-amz-acl s3:x-amz-grant-read s3:x-amz-grant-write "
    "s3:x-amz-grant-full-control s3:x-amz-content-sha256 s3:x-amz-copy-source s3:x-amz-metadata-directive "
    "s3:x-amz-server-side-encryption s3:x-amz-server-side-encryption-aws-kms-key-id "
    "s3:x-amz-server-side-encryption-customer-algorithm s3:x-amz-storage-class "
    "s3:x-amz-website-redirect-location s3:RequestObjectTagKeys s3:signatureversion s3:authType "
    "s3:signatureAge s3:TlsVersion s3:locationconstraint s3:object-lock-mode s3:object-lock-retain-until-date "
    "s3:object-lock-remaining-retention-days s3:object-lock-legal-hold s3:ResourceAccount "
    "s3:DataAccessPointArn s3:DataAccessPointAccount s3:if-match s3:if-none-match"
)
CONDITION_KEYS = frozenset(name.lower() for name in (_GLOBAL_KEYS + " " + _S3_KEYS).split())
# Keys naming one tag: the prefix and a tag key of at least one character.
TAG_KEY_PREFIXES = ("aws:principaltag/", "aws:requesttag/", "s3:existingobjecttag/", "s3:requestobjecttag/")


def known_condition_key(key: str) -> bool:
    """Whether ``key`` (lower-cased) is one a bucket policy may test."""
    if key in CONDITION_KEYS:
        return True
    return any(key.startswith(prefix) and len(key) > len(prefix) for prefix in TAG_KEY_PREFIXES)


# -- a condition entry -----------------------------------------------------------------------


@dataclass(frozen=True)
class ConditionEntry:
    """One ``operator: {key: values}`` pair of a statement's ``Condition``."""

    operator: str  # as written, e.g. "ForAnyValue:StringLikeIfExists"
    key: str  # lower-cased
    family: _Family
    set_op: str  # "", "ForAnyValue" or "ForAllValues"
    if_exists: bool
    values: tuple[str, ...]  # the policy's values as text
    matchers: tuple[Matcher, ...]  # compiled values (empty for Null)

    def _matches(self, value: str, keys: Keys) -> bool:
        return any(match(value, keys) for match in self.matchers)

    def holds(self, keys: Keys) -> bool:
        present = keys.get(self.key) or ()
        if self.family.family == "Null":
            # {"key": "true"}: holds when the key is absent; "false": present.
            return any((value == "true") == (not present) for value in self.values)
        if not present:
            if self.if_exists:
                return True
            if self.set_op:
                return self.set_op == "ForAllValues"
            return self.family.negated
        negated = self.family.negated
        if self.set_op == "ForAllValues":
            return all(self._matches(v, keys) != negated for v in present)
        if self.set_op == "ForAnyValue":
            return any(self._matches(v, keys) != negated for v in present)
        matched = any(self._matches(v, keys) for v in present)
        return matched != negated


def split_operator(operator: str) -> tuple[str, _Family, bool]:
    """``operator`` as (set prefix, base operator, IfExists); MalformedPolicy
    "Invalid Condition type : <operator>" for a name AWS does not know."""
    set_op, _, rest = operator.rpartition(":")
    if set_op not in ("", "ForAnyValue", "ForAllValues"):
        raise malformed(f"Invalid Condition type : {operator}")
    if_exists = rest.endswith("IfExists") and rest != "IfExists"
    base = rest[: -len("IfExists")] if if_exists else rest
    family = OPERATORS.get(base)
    if family is None or (family.family == "Null" and (if_exists or set_op)):
        raise malformed(f"Invalid Condition type : {operator}")
    return set_op, family, if_exists


def compile_entry(operator: str, key: str, values: tuple[str, ...], version: str) -> ConditionEntry:
    """One entry, checked and compiled (``key`` as written in the policy)."""
    set_op, family, if_exists = split_operator(operator)
    lowered = key.lower()
    if not known_condition_key(lowered):
        raise malformed("Policy has an invalid condition key")
    if not values:
        raise malformed("Invalid policy syntax.")
    if family.family == "Null":
        normalized = tuple(value.strip().lower() for value in values)
        if any(value not in ("true", "false") for value in normalized):
            raise malformed("Invalid boolean value in Conditions: " + values[0])
        return ConditionEntry(operator, lowered, family, set_op, if_exists, normalized, ())
    variables = version == VERSION_2012
    matchers = tuple(compile_value(family, value, variables) for value in values)
    return ConditionEntry(operator, lowered, family, set_op, if_exists, values, matchers)
