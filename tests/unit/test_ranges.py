"""Tests for lightningstor.s3.ranges: S3's reading of the Range header."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lightningstor import errors
from lightningstor.s3.ranges import content_range, parse_range

DETERMINISTIC = settings(derandomize=True, max_examples=100, deadline=None, database=None)


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        ("bytes=4-7", 11, (4, 7)),  # s3-tests test_ranged_request_response_code
        ("bytes=4-", 11, (4, 10)),  # open-ended
        ("bytes=-7", 11, (4, 10)),  # suffix
        ("bytes=0-0", 11, (0, 0)),  # a single byte
        ("bytes=10-10", 11, (10, 10)),  # the last byte
        ("bytes=4-999", 11, (4, 10)),  # end clipped to size - 1
        ("bytes=-100", 11, (0, 10)),  # suffix longer than the object: all of it
        ("bytes=3145728-5242880", 8388608, (3145728, 5242880)),
        ("BYTES=4-7", 11, (4, 7)),  # the unit is case-insensitive
        ("bytes=4-7,", 11, (4, 7)),  # empty list elements are dropped
        ("bytes= 4-7 ", 11, (4, 7)),  # whitespace around list elements
        ("bytes=0-18446744073709551616", 11, (0, 10)),  # beyond 64 bits: still clipped
    ],
)
def test_satisfiable_ranges(header: str, size: int, expected: tuple[int, int]) -> None:
    """Valid single ranges resolve to inclusive (start, end) within the object."""
    assert parse_range(header, size) == expected


@pytest.mark.parametrize(
    "header",
    [
        None,  # no header
        "items=0-1",  # unknown unit: RFC 7233 says ignore
        "bytes",  # no '='
        "bytes=",  # no range
        "bytes=-",  # neither position
        "bytes=abc",
        "bytes=1",  # no '-'
        "bytes=a-b",
        "bytes=+1-2",  # int() would take the sign, the grammar does not
        "bytes=1_0-20",  # int() would take the underscore
        "bytes=٣-٥",  # int() would take Arabic-Indic digits
        "bytes=1 - 2",  # no whitespace inside a range
        "bytes=5-2",  # last < first: invalid, AWS serves the whole object
        "bytes=1-0",
        "bytes=0-1,5-6",  # multiple ranges: S3 serves the whole object
        "bytes=0-1,-1",
        "bytes=0-1;2-3",
    ],
)
def test_ignored_headers_mean_whole_object(header: str | None) -> None:
    """Headers AWS ignores give None: a 200 with the whole object, not an error."""
    assert parse_range(header, 11) is None


@pytest.mark.parametrize(
    ("header", "size"),
    [
        ("bytes=40-50", 11),  # s3-tests test_ranged_request_invalid_range
        ("bytes=11-", 11),  # first byte exactly at the end
        ("bytes=11-20", 11),
        ("bytes=-0", 11),  # a zero-length suffix selects nothing
        ("bytes=40-50", 0),  # s3-tests test_ranged_request_empty_object
        ("bytes=0-", 0),
        ("bytes=0-0", 0),
    ],
)
def test_unsatisfiable_ranges_are_416(header: str, size: int) -> None:
    """Well-formed ranges outside the object are InvalidRange (416)."""
    with pytest.raises(errors.InvalidRange) as info:
        parse_range(header, size)
    assert info.value.status == 416


@pytest.mark.parametrize("header", ["bytes=-1", "bytes=-5", "bytes=-524288"])
def test_a_suffix_of_an_empty_object_is_the_whole_empty_object(header: str) -> None:
    """A suffix asks for at most its last n bytes: of an empty object, the
    whole (empty) object, 200 as AWS answers (readers of a file's tail rely
    on it; it was a 416).  A start position on an empty object stays 416."""
    assert parse_range(header, 0) is None


def test_invalid_range_carries_aws_details() -> None:
    """The 416 repeats the request range and size (AWS's error fields) and Content-Range: bytes */size."""
    with pytest.raises(errors.InvalidRange) as info:
        parse_range("bytes=40-50", 11)
    assert info.value.code == "InvalidRange"
    assert info.value.headers == {"Content-Range": "bytes */11"}
    assert info.value.fields == {"RangeRequested": "bytes=40-50", "ActualObjectSize": "11"}


def test_content_range() -> None:
    """Content-Range of a 206 is 'bytes start-end/size'."""
    assert content_range(0, 9, 100) == "bytes 0-9/100"
    assert content_range(4, 10, 11) == "bytes 4-10/11"


@DETERMINISTIC
@given(st.integers(min_value=0, max_value=10**6), st.integers(min_value=0, max_value=10**6), st.integers(0, 10**6))
def test_explicit_ranges_property(first: int, last: int, size: int) -> None:
    """bytes=a-b is ignored if b < a, 416 if a >= size, else [a, min(b, size-1)]."""
    header = f"bytes={first}-{last}"
    if last < first:
        assert parse_range(header, size) is None
    elif first >= size:
        with pytest.raises(errors.InvalidRange):
            parse_range(header, size)
    else:
        assert parse_range(header, size) == (first, min(last, size - 1))


@DETERMINISTIC
@given(st.integers(min_value=0, max_value=10**6), st.integers(0, 10**6))
def test_suffix_ranges_property(suffix: int, size: int) -> None:
    """bytes=-n serves the last min(n, size) bytes; n == 0 is 416, and any
    suffix of an empty object is the whole (empty) object."""
    header = f"bytes=-{suffix}"
    if suffix == 0:
        with pytest.raises(errors.InvalidRange):
            parse_range(header, size)
    elif size == 0:
        assert parse_range(header, size) is None
    else:
        start, end = parse_range(header, size) or (-1, -1)
        assert end == size - 1
        assert end - start + 1 == min(suffix, size)


@DETERMINISTIC
@given(st.text(max_size=30), st.integers(0, 100))
def test_arbitrary_headers_never_crash(header: str, size: int) -> None:
    """Any header text gives None, a range inside the object, or InvalidRange."""
    try:
        result = parse_range(header, size)
    except errors.InvalidRange:
        return
    if result is not None:
        start, end = result
        assert 0 <= start <= end < size
