"""User metadata on the wire: the text stored for an ``x-amz-meta-*`` request
header and the response header a stored value becomes (AWS's RFC 2047 rule)."""

from __future__ import annotations

import pytest

from lightningstor.s3.headers import metadata_header_value, metadata_text, put_attrs


def _wire(text: str) -> str:
    """A header value as the handlers see it: the UTF-8 bytes read as latin-1."""
    return text.encode("utf-8").decode("latin-1")


@pytest.mark.parametrize("text", ["plain", "caf\u00e9", "\u65e5\u672c\u8a9e", "\U0001f680", ""])
def test_put_attrs_stores_the_text_of_utf8_bytes(text: str) -> None:
    attrs = put_attrs({"x-amz-meta-k": _wire(text)}, max_metadata_bytes=2048)
    assert attrs.metadata == {"k": text}


def test_text_that_is_not_utf8_bytes_is_kept() -> None:
    """A latin-1 byte sent raw (not valid UTF-8), or real text from a POST
    form, is already the text."""
    assert metadata_text("caf\u00e9") == "caf\u00e9"
    assert metadata_text("\u65e5") == "\u65e5"


@pytest.mark.parametrize(
    ("stored", "sent"),
    [
        ("blue", "blue"),
        ("=?UTF-8?B?YWJj?=", "=?UTF-8?B?YWJj?="),  # ASCII is presented as is
        ("Hello World\u00e9", "=?UTF-8?B?SGVsbG8gV29ybGTDqQ==?="),
        ("\U0001f680", "=?UTF-8?B?8J+agA==?="),
        # A record written before values were normalised holds the latin-1
        # reading of the UTF-8 bytes; it is sent as the same encoded-word.
        (_wire("Hello World\u00e9"), "=?UTF-8?B?SGVsbG8gV29ybGTDqQ==?="),
    ],
)
def test_non_ascii_values_are_sent_as_rfc2047_encoded_words(stored: str, sent: str) -> None:
    assert metadata_header_value(stored) == sent
