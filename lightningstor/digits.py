"""Reading decimal numbers that clients send, whatever their length.

Python's ``int()`` refuses strings of more than 4300 digits (a ValueError
that would surface as a 500), and parsing a long one costs time that the
answer does not need: every number S3 takes (part numbers, offsets, sizes,
expiry seconds) has a small upper bound, so a value beyond that bound only
needs to be known as "too large".
"""

from __future__ import annotations

# Larger than any size, offset or count S3 takes (its largest object is 5 TiB).
HUGE = 1 << 63


def clamped_int(digits: str, ceiling: int = HUGE) -> int:
    """The value of the ASCII decimal ``digits`` (checked by the caller), or
    ``ceiling`` when it has more than 19 significant digits."""
    significant = digits.lstrip("0")
    return int(significant or "0") if len(significant) <= 19 else ceiling
