"""Tests for lightningstor.s3.conditions: conditional requests with S3's answers."""

from __future__ import annotations

import pytest

from lightningstor import errors
from lightningstor.s3.conditions import (
    check_copy_source_conditions,
    check_read_conditions,
    check_write_conditions,
    write_if_none_match_any,
)

ETAG = "d41d8cd98f00b204e9800998ecf8427e"
# 2009-10-12T17:50:30.500Z: half a second past the Last-Modified header's value.
LAST_MODIFIED_MS = 1255369830500
SAME = "Mon, 12 Oct 2009 17:50:30 GMT"  # what the Last-Modified header says
BEFORE = "Mon, 12 Oct 2009 17:50:29 GMT"
AFTER = "Mon, 12 Oct 2009 17:50:31 GMT"


def read(**headers: str) -> None:
    check_read_conditions({k.replace("_", "-"): v for k, v in headers.items()}, ETAG, LAST_MODIFIED_MS)


def copy(**headers: str) -> None:
    check_copy_source_conditions(
        {"x-amz-copy-source-" + k.replace("_", "-"): v for k, v in headers.items()}, ETAG, LAST_MODIFIED_MS
    )


# --- GET / HEAD -------------------------------------------------------------


def test_no_conditions_pass() -> None:
    """Without conditional headers nothing is raised."""
    read()


@pytest.mark.parametrize(
    "value",
    [f'"{ETAG}"', ETAG, "*", f'"other", "{ETAG}"', f"W/\"{ETAG}\"", f'  "{ETAG}"  ', f'"x",{ETAG}'],
)
def test_if_match_true(value: str) -> None:
    """If-Match matches quoted, unquoted, weak, listed and '*' forms of the ETag."""
    read(if_match=value)


@pytest.mark.parametrize("value", ['"ABCORZ"', "ABCORZ", '"a", "b"', f'"{ETAG}x"'])
def test_if_match_false_is_412(value: str) -> None:
    """A non-matching If-Match is 412 PreconditionFailed naming the condition."""
    with pytest.raises(errors.PreconditionFailed) as info:
        read(if_match=value)
    assert info.value.status == 412
    assert info.value.fields == {"Condition": "If-Match"}


def test_if_unmodified_since() -> None:
    """If-Unmodified-Since fails only when modified after the date, at second resolution."""
    read(if_unmodified_since=SAME)
    read(if_unmodified_since=AFTER)
    with pytest.raises(errors.PreconditionFailed) as info:
        read(if_unmodified_since=BEFORE)
    assert info.value.fields == {"Condition": "If-Unmodified-Since"}


def test_if_match_true_overrides_if_unmodified_since_false() -> None:
    """S3 quirk (= RFC 7232 §6): If-Match true + If-Unmodified-Since false is 200."""
    read(if_match=ETAG, if_unmodified_since=BEFORE)


def test_if_match_false_with_if_unmodified_since_true_is_412() -> None:
    """If-Match decides alone when present: false is 412 even if the date would pass."""
    with pytest.raises(errors.PreconditionFailed):
        read(if_match='"nope"', if_unmodified_since=AFTER)


@pytest.mark.parametrize("value", [f'"{ETAG}"', ETAG, "*", f'"other", W/"{ETAG}"'])
def test_if_none_match_false_is_304(value: str) -> None:
    """A matching If-None-Match is 304 NotModified, carrying ETag and Last-Modified."""
    with pytest.raises(errors.NotModified) as info:
        read(if_none_match=value)
    assert info.value.status == 304
    assert info.value.headers == {"ETag": f'"{ETAG}"', "Last-Modified": SAME}


def test_if_none_match_true_passes() -> None:
    """A non-matching If-None-Match serves the object."""
    read(if_none_match="ABCORZ")


def test_if_modified_since() -> None:
    """If-Modified-Since is 304 unless modified after the date (the half second does not count)."""
    read(if_modified_since=BEFORE)
    with pytest.raises(errors.NotModified):
        read(if_modified_since=SAME)
    with pytest.raises(errors.NotModified):
        read(if_modified_since=AFTER)


def test_if_none_match_false_overrides_if_modified_since_true() -> None:
    """S3 quirk (= RFC 7232 §6): If-None-Match false + If-Modified-Since true is 304."""
    with pytest.raises(errors.NotModified):
        read(if_none_match=ETAG, if_modified_since=BEFORE)


def test_if_none_match_true_ignores_if_modified_since() -> None:
    """If-None-Match decides alone when present: true serves even if not modified since."""
    read(if_none_match="other", if_modified_since=AFTER)


def test_412_takes_precedence_over_304() -> None:
    """The If-Match family is evaluated before the If-None-Match family."""
    with pytest.raises(errors.PreconditionFailed):
        read(if_match="other", if_none_match=ETAG)
    with pytest.raises(errors.PreconditionFailed):
        read(if_unmodified_since=BEFORE, if_modified_since=AFTER)


@pytest.mark.parametrize("bad_date", ["yesterday", "2009-10-12T17:50:30Z", ""])
def test_unparseable_dates_are_ignored(bad_date: str) -> None:
    """An invalid date makes its condition be ignored rather than fail."""
    read(if_unmodified_since=bad_date)
    read(if_modified_since=bad_date)


def test_empty_etag_headers_are_ignored() -> None:
    """A present-but-empty If-Match / If-None-Match is treated as absent."""
    read(if_match="")
    read(if_none_match="")
    with pytest.raises(errors.PreconditionFailed):
        read(if_match="", if_unmodified_since=BEFORE)


def test_quoted_stored_etag() -> None:
    """The stored ETag may be passed with quotes; comparison still ignores them."""
    check_read_conditions({"if-match": ETAG}, f'"{ETAG}"', LAST_MODIFIED_MS)
    with pytest.raises(errors.NotModified) as info:
        check_read_conditions({"if-none-match": ETAG}, f'"{ETAG}"', LAST_MODIFIED_MS)
    assert info.value.headers["ETag"] == f'"{ETAG}"'


def test_multipart_etag() -> None:
    """Multipart ETags ('hex-N') compare as plain strings."""
    check_read_conditions({"if-match": '"abc-3"'}, "abc-3", LAST_MODIFIED_MS)
    with pytest.raises(errors.PreconditionFailed):
        check_read_conditions({"if-match": '"abc-2"'}, "abc-3", LAST_MODIFIED_MS)


# --- Copy source ------------------------------------------------------------


def test_copy_source_passes() -> None:
    """Satisfied copy-source conditions (or none) raise nothing."""
    copy()
    copy(if_match=f'"{ETAG}"', if_none_match="other", if_unmodified_since=AFTER, if_modified_since=BEFORE)


@pytest.mark.parametrize(
    ("headers", "condition"),
    [
        ({"if_match": "ABCORZ"}, "x-amz-copy-source-If-Match"),
        ({"if_unmodified_since": BEFORE}, "x-amz-copy-source-If-Unmodified-Since"),
        ({"if_none_match": ETAG}, "x-amz-copy-source-If-None-Match"),
        ({"if_none_match": "*"}, "x-amz-copy-source-If-None-Match"),
        ({"if_modified_since": SAME}, "x-amz-copy-source-If-Modified-Since"),
    ],
)
def test_copy_source_failures_are_all_412(headers: dict[str, str], condition: str) -> None:
    """Every failed copy-source condition is 412, the none-match/modified ones included (no 304)."""
    with pytest.raises(errors.PreconditionFailed) as info:
        copy(**headers)
    assert info.value.fields == {"Condition": condition}


def test_copy_source_if_match_true_overrides_unmodified_since_false() -> None:
    """AWS: copy-source-if-match true + if-unmodified-since false copies (200)."""
    copy(if_match=ETAG, if_unmodified_since=BEFORE)


def test_copy_source_if_none_match_false_with_modified_since_true_is_412() -> None:
    """AWS: copy-source-if-none-match false + if-modified-since true is 412."""
    with pytest.raises(errors.PreconditionFailed):
        copy(if_none_match=ETAG, if_modified_since=BEFORE)


def test_copy_source_ignores_plain_conditional_headers() -> None:
    """Plain If-Match on a copy applies to the destination, not the source."""
    check_copy_source_conditions({"if-match": "other", "if-none-match": ETAG}, ETAG, LAST_MODIFIED_MS)


def test_copy_source_ignores_bad_dates() -> None:
    """Unparseable copy-source dates are ignored like the plain ones."""
    copy(if_unmodified_since="garbage", if_modified_since="garbage")


# --- Conditional writes -----------------------------------------------------


def test_write_without_conditions() -> None:
    """Plain writes pass whether or not the object exists."""
    check_write_conditions({}, None)
    check_write_conditions({}, ETAG)


def test_if_none_match_star() -> None:
    """If-None-Match: * creates only: 412 when the object exists, fine when it does not."""
    check_write_conditions({"if-none-match": "*"}, None)
    with pytest.raises(errors.PreconditionFailed) as info:
        check_write_conditions({"if-none-match": "*"}, ETAG)
    assert info.value.fields == {"Condition": "If-None-Match"}


def test_if_none_match_etag_on_write() -> None:
    """If-None-Match with an ETag fails only when it matches the current object (s3-tests)."""
    with pytest.raises(errors.PreconditionFailed):
        check_write_conditions({"if-none-match": f'"{ETAG}"'}, ETAG)
    check_write_conditions({"if-none-match": "badetag"}, ETAG)
    check_write_conditions({"if-none-match": ETAG}, None)


def test_if_match_on_write() -> None:
    """If-Match replaces only the expected version: other ETag is 412, '*' or same passes."""
    check_write_conditions({"if-match": f'"{ETAG}"'}, ETAG)
    check_write_conditions({"if-match": "*"}, ETAG)
    with pytest.raises(errors.PreconditionFailed) as info:
        check_write_conditions({"if-match": "badetag"}, ETAG)
    assert info.value.fields == {"Condition": "If-Match"}


@pytest.mark.parametrize("value", ["*", "badetag", ETAG])
def test_if_match_on_missing_object_is_404(value: str) -> None:
    """AWS answers If-Match on a missing object (or delete marker) with 404 NoSuchKey, even for '*'."""
    with pytest.raises(errors.NoSuchKey) as info:
        check_write_conditions({"if-match": value}, None)
    assert info.value.status == 404


def test_if_match_checked_before_if_none_match() -> None:
    """With both headers, the If-Match outcome comes first."""
    with pytest.raises(errors.NoSuchKey):
        check_write_conditions({"if-match": "x", "if-none-match": "*"}, None)
    with pytest.raises(errors.PreconditionFailed) as info:
        check_write_conditions({"if-match": ETAG, "if-none-match": "*"}, ETAG)
    assert info.value.fields == {"Condition": "If-None-Match"}


@pytest.mark.parametrize(("value", "create_only"), [(None, False), ("", False), ("  ", False), ("*", True), (" * ", True)])
def test_write_if_none_match_star_or_absent(value: str | None, create_only: bool) -> None:
    headers = {} if value is None else {"if-none-match": value}
    assert write_if_none_match_any(headers) is create_only


@pytest.mark.parametrize("value", [ETAG, f'"{ETAG}"', "badetag", "*, x"])
def test_write_if_none_match_other_values_are_not_implemented(value: str) -> None:
    """AWS takes only "*" on writes; anything else is 501 naming the header."""
    with pytest.raises(errors.NotImplementedS3) as e:
        write_if_none_match_any({"if-none-match": value})
    assert e.value.status == 501
    assert e.value.message == "A header you provided implies functionality that is not implemented"
    assert e.value.fields == {
        "Header": "If-None-Match",
        "additionalMessage": "We don't accept the provided value of If-None-Match header for this API",
    }
