"""Small HTTP wire helpers shared by the S3 handlers."""

from __future__ import annotations


def header_value(value: str) -> bytes:
    """Header values are latin-1 on the wire; metadata that is not (UTF-8
    sent by a client) goes back as the UTF-8 bytes it arrived as."""
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode("utf-8")
