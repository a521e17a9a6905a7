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
    with pytest.raises(errors.InvalidRequest, match="Multiple checksum Types"):
        checksum_values({"x-amz-checksum-sha256": SHA256, "x-amz-checksum-crc32": compute("crc32", b"data")})


@pytest.mark.parametrize("value", [f"{SHA256}-3", f"{SHA256}-10000"])
def test_a_composite_value_is_taken_only_where_one_is_meant(value: str) -> None:
    """CompleteMultipartUpload's header may carry the part count its answer
    gives (``...-3``); a PutObject's may not."""
    assert checksum_values({"x-amz-checksum-sha256": value}, composite=True) == {"sha256": value}
    with pytest.raises(errors.InvalidRequest):
        checksum_values({"x-amz-checksum-sha256": value})


@pytest.mark.parametrize("value", ["!!!-3", "AAAA-3", f"{SHA256}-x", f"{SHA256}-", "-3"])
def test_a_malformed_composite_value_is_refused(value: str) -> None:
    with pytest.raises(errors.InvalidRequest, match="Value for x-amz-checksum-sha256 header is invalid"):
        checksum_values({"x-amz-checksum-sha256": value}, composite=True)
