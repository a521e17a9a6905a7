"""s3/headers.py: the x-amz-checksum-* values a request states, as PutObject
and CompleteMultipartUpload read them."""

from __future__ import annotations

import pytest

from lightningstor import errors
from lightningstor.checksums import compute
from lightningstor.s3.headers import checksum_values

SHA256 = compute("sha256", b"data")


def test_one_well_formed_value() -> None:
    assert checksum_values({"x-amz-checksum-sha256": f" {SHA256} "}) == {"sha256": SHA256}
    with pytest.raises(errors.InvalidRequest, match="Value for x-amz-checksum-sha256 header is invalid"):
        checksum_values({"x-amz-checksum-sha256": "AAAA"})
    for complete in (False, True):
        with pytest.raises(errors.InvalidRequest, match="Multiple checksum Types"):
            checksum_values({"x-amz-checksum-sha256": SHA256, "x-amz-checksum-crc32": compute("crc32", b"data")},
                            complete=complete)


@pytest.mark.parametrize("value", [f"{SHA256}-3", "bad", "!!!-3"])
def test_a_complete_compares_its_value_as_sent(value: str) -> None:
    """CompleteMultipartUpload's value is compared with the object as sent
    (a composite one carries its part count, ``...-3``; one that is no
    digest then fails as BadDigest); a PutObject's must be a digest."""
    assert checksum_values({"x-amz-checksum-sha256": value}, complete=True) == {"sha256": value}
    with pytest.raises(errors.InvalidRequest):
        checksum_values({"x-amz-checksum-sha256": value})
