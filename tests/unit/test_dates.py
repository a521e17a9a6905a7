"""Tests for lightningstor.s3.dates: the XML and HTTP timestamp formats."""

from __future__ import annotations

import datetime
import email.utils

import pytest
from botocore.utils import parse_timestamp
from hypothesis import given, settings
from hypothesis import strategies as st

from lightningstor.s3.dates import http_date, iso8601, parse_http_date

DETERMINISTIC = settings(derandomize=True, max_examples=100, deadline=None, database=None)

# 2009-10-12T17:50:30Z, the timestamp of the S3 documentation's examples.
DOC_MS = 1255369830000
# Up to year 9999, the largest the four-digit formats can show.
MS = st.integers(min_value=0, max_value=253402300799999)


def test_iso8601_has_milliseconds_and_z() -> None:
    """XML timestamps look exactly like AWS's: three fractional digits and Z."""
    assert iso8601(DOC_MS) == "2009-10-12T17:50:30.000Z"
    assert iso8601(DOC_MS + 7) == "2009-10-12T17:50:30.007Z"
    assert iso8601(0) == "1970-01-01T00:00:00.000Z"


def test_iso8601_before_epoch() -> None:
    """Negative times floor correctly instead of printing a negative fraction."""
    assert iso8601(-1) == "1969-12-31T23:59:59.999Z"


@DETERMINISTIC
@given(MS)
def test_iso8601_parses_back_in_botocore(ms: int) -> None:
    """botocore's timestamp parser reads back the same instant, to the millisecond."""
    parsed = parse_timestamp(iso8601(ms))
    assert round(parsed.timestamp() * 1000) == ms


def test_http_date_is_imf_fixdate() -> None:
    """Last-Modified uses RFC 7231 IMF-fixdate with English names and GMT."""
    assert http_date(DOC_MS) == "Mon, 12 Oct 2009 17:50:30 GMT"
    assert http_date(0) == "Thu, 01 Jan 1970 00:00:00 GMT"


def test_http_date_truncates_milliseconds() -> None:
    """The header never rounds up to a time later than the real modification."""
    assert http_date(DOC_MS + 999) == "Mon, 12 Oct 2009 17:50:30 GMT"


@DETERMINISTIC
@given(MS)
def test_http_date_agrees_with_email_utils(ms: int) -> None:
    """The hand-built format matches the standard library's usegmt formatter."""
    assert http_date(ms) == email.utils.formatdate(ms // 1000, usegmt=True)


@DETERMINISTIC
@given(MS)
def test_http_date_round_trips(ms: int) -> None:
    """parse_http_date(http_date(t)) is t in whole seconds."""
    assert parse_http_date(http_date(ms)) == ms // 1000


@pytest.mark.parametrize(
    "value",
    [
        "Sun, 06 Nov 1994 08:49:37 GMT",  # IMF-fixdate
        "Sunday, 06-Nov-94 08:49:37 GMT",  # obsolete RFC 850
        "Sun Nov  6 08:49:37 1994",  # ANSI C asctime
        "sun, 06 nov 1994 08:49:37 gmt",  # case-insensitive names
        "Sun, 6 Nov 1994 08:49:37 GMT",  # one-digit day
        "Sun, 06 Nov 1994 08:49:37 -0000",  # email.utils.formatdate without usegmt
        "Sun, 06 Nov 1994 08:49:37 UTC",
        "  Sun, 06 Nov 1994 08:49:37 GMT  ",  # surrounding whitespace
        "Mon, 06 Nov 1994 08:49:37 GMT",  # wrong weekday is not checked
    ],
)
def test_parse_http_date_accepts_rfc7231_forms(value: str) -> None:
    """All three RFC 7231 forms (and common sloppiness) parse to the same instant."""
    assert parse_http_date(value) == 784111777.0


def test_parse_http_date_two_digit_years() -> None:
    """RFC 850 years 70-99 are 19xx, 00-69 are 20xx."""
    assert parse_http_date("Thursday, 01-Jan-70 00:00:00 GMT") == 0.0
    assert parse_http_date("Saturday, 01-Jan-00 00:00:00 GMT") == 946684800.0
    assert parse_http_date("Tuesday, 31-Dec-69 00:00:00 GMT") == parse_http_date(
        "Tue, 31 Dec 2069 00:00:00 GMT"
    )


def test_parse_http_date_leap_day() -> None:
    """February 29 is valid in leap years only (2000 yes, 1900 no)."""
    assert parse_http_date("Tue, 29 Feb 2000 00:00:00 GMT") == 951782400.0
    assert parse_http_date("Thu, 29 Feb 1900 00:00:00 GMT") is None


def test_parse_http_date_leap_second() -> None:
    """Second 60 is legal in the grammar and means the following instant."""
    assert parse_http_date("Sat, 31 Dec 2016 23:59:60 GMT") == parse_http_date("Sun, 01 Jan 2017 00:00:00 GMT")


@pytest.mark.parametrize(
    "value",
    [
        "",
        "yesterday",
        "2009-10-12T17:50:30.000Z",  # ISO 8601 is not an HTTP date
        "Sun, 06 Nov 1994 08:49:37",  # zone missing
        "Sun, 06 Nov 1994 08:49:37 PST",  # only GMT/UTC are meaningful
        "Sun, 06 Foo 1994 08:49:37 GMT",  # unknown month
        "Sun, 31 Nov 1994 08:49:37 GMT",  # no 31st of November
        "Sun, 00 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 24:00:00 GMT",
        "Sun, 06 Nov 1994 08:60:00 GMT",
        "Sun, 06 Nov 1994 08:49:61 GMT",
        "Sun, 06 Nov 0000 08:49:37 GMT",  # year zero does not exist
        "Sun, ٠٦ Nov 1994 08:49:37 GMT",  # non-ASCII digits
        "Sun, 06 Nov 1994 08:49:37 GMT trailing",
    ],
)
def test_parse_http_date_rejects_garbage(value: str) -> None:
    """Anything else is None, so the conditional header carrying it is ignored."""
    assert parse_http_date(value) is None


@DETERMINISTIC
@given(st.text(max_size=40))
def test_parse_http_date_never_raises(value: str) -> None:
    """Arbitrary header text yields a float or None, never an exception."""
    result = parse_http_date(value)
    assert result is None or isinstance(result, float)


def test_iso8601_day_cache_is_bounded_and_correct(monkeypatch: pytest.MonkeyPatch) -> None:
    """The per-day prefix cache stays bounded and never serves a stale day."""
    from lightningstor.s3 import dates

    monkeypatch.setattr(dates, "_DAY_PREFIX_CACHE_MAX", 2)
    monkeypatch.setattr(dates, "_DAY_PREFIX_CACHE", {})
    day = 86_400_000
    for index in range(10):
        ms = DOC_MS + index * day + 123
        assert iso8601(ms) == datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC).strftime(
            "%Y-%m-%dT%H:%M:%S.123Z"
        )
        assert len(dates._DAY_PREFIX_CACHE) <= 2


def test_unix_ms_is_exact_and_ends_with_year_9999() -> None:
    """Exact milliseconds (a float rounded 23:59:59.9999 up into year 10000),
    and nothing after 9999-12-31T23:59:59.999Z, the last instant a
    four-digit year (and so every SDK's parser) can show."""
    from datetime import UTC, timedelta, timezone

    from lightningstor.s3.dates import MAX_MS, unix_ms

    last = datetime.datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)
    assert unix_ms(last) == MAX_MS and iso8601(MAX_MS) == "9999-12-31T23:59:59.999Z"
    assert unix_ms(datetime.datetime(9999, 12, 31, 23, 59, 59, 999999)) == MAX_MS  # naive is UTC; truncated
    assert unix_ms(datetime.datetime(9999, 12, 31, 19, 0, tzinfo=timezone(-timedelta(hours=5)))) is None
    assert unix_ms(datetime.datetime(1969, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)) == -1
