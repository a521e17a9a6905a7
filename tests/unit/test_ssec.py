"""SSE-C header validation (s3/ssec.py) and the key check (core/sse.py):
AWS's errors, in AWS's order, and records that never hold the key."""

from __future__ import annotations

import base64
import hashlib

import pytest

from lightningstor import errors
from lightningstor.core import records
from lightningstor.core.sse import CustomerKey, KeyManager, customer_etag
from lightningstor.core.types import Encryption
from lightningstor.s3 import ssec

KEY = bytes(range(32))
KEY_B64 = base64.b64encode(KEY).decode()
MD5_B64 = base64.b64encode(hashlib.md5(KEY).digest()).decode()
MD5_NAME = ssec.KEY_MD5_HEADER.lower()
GOOD = {ssec.ALGORITHM_HEADER: "AES256", ssec.KEY_HEADER: KEY_B64, MD5_NAME: MD5_B64}
MANAGER = KeyManager(base64.urlsafe_b64encode(bytes(32)))


def _without(name: str) -> dict[str, str]:
    return {k: v for k, v in GOOD.items() if k != name}


def _raises(headers: dict[str, str], code: str, message: str, prefix: str = "") -> errors.S3Error:
    with pytest.raises(errors.S3Error) as info:
        ssec.customer_key(headers, prefix)
    assert (info.value.code, info.value.message, info.value.status) == (code, message, 400)
    return info.value


def _key() -> CustomerKey:
    key = ssec.customer_key(GOOD)
    assert key is not None
    return key


def test_no_headers_is_not_ssec() -> None:
    assert ssec.customer_key({}) is None


def test_good_headers_give_the_key() -> None:
    got = _key()
    assert got.key == KEY and got.key_md5 == MD5_B64
    assert KEY_B64 not in repr(got) and repr(KEY) not in repr(got)


def test_missing_algorithm() -> None:
    err = _raises(_without(ssec.ALGORITHM_HEADER), "InvalidArgument", ssec.MSG_NO_ALGORITHM)
    assert err.fields["ArgumentName"] == ssec.ALGORITHM_HEADER


def test_unknown_algorithm() -> None:
    _raises({**GOOD, ssec.ALGORITHM_HEADER: "AES128"}, "InvalidEncryptionAlgorithmError", ssec.MSG_BAD_ALGORITHM)


def test_missing_key() -> None:
    err = _raises(_without(ssec.KEY_HEADER), "InvalidArgument", ssec.MSG_NO_KEY)
    assert err.fields["ArgumentName"] == ssec.KEY_HEADER


@pytest.mark.parametrize("value", [
    base64.b64encode(bytes(16)).decode(), base64.b64encode(bytes(33)).decode(), "!!notbase64!!"])
def test_bad_key(value: str) -> None:
    _raises({**GOOD, ssec.KEY_HEADER: value}, "InvalidArgument", ssec.MSG_BAD_KEY)


def test_missing_md5() -> None:
    err = _raises(_without(MD5_NAME), "InvalidArgument", ssec.MSG_NO_MD5)
    assert err.fields["ArgumentName"] == ssec.KEY_MD5_HEADER


def test_md5_mismatch() -> None:
    wrong = base64.b64encode(hashlib.md5(b"x").digest()).decode()
    _raises({**GOOD, MD5_NAME: wrong}, "InvalidArgument", ssec.MSG_MD5_MISMATCH)


def test_copy_source_headers_are_separate() -> None:
    """AWS's names: x-amz-copy-source-server-side-encryption-customer-*."""
    assert ssec.customer_key(GOOD, ssec.COPY_SOURCE_PREFIX) is None
    source = {
        "x-amz-copy-source-server-side-encryption-customer-algorithm": "AES256",
        "x-amz-copy-source-server-side-encryption-customer-key": KEY_B64,
        "x-amz-copy-source-server-side-encryption-customer-key-md5": MD5_B64,
    }
    assert ssec.customer_key(source) is None
    got = ssec.customer_key(source, ssec.COPY_SOURCE_PREFIX)
    assert got is not None and got.key == KEY
    del source["x-amz-copy-source-server-side-encryption-customer-key-md5"]
    err = _raises(source, "InvalidArgument", ssec.MSG_NO_MD5, ssec.COPY_SOURCE_PREFIX)
    assert err.fields["ArgumentName"] == "x-amz-copy-source-server-side-encryption-customer-key-MD5"


def test_plain_http_refused_before_validation() -> None:
    for headers in (GOOD, {ssec.ALGORITHM_HEADER: "bad"}, {"x-amz-copy-source-server-side-encryption-customer-key": "x"}):
        with pytest.raises(errors.InvalidRequest) as info:
            ssec.require_secure(headers, lambda: False)
        assert info.value.message == ssec.MSG_INSECURE
    ssec.require_secure(GOOD, lambda: True)
    ssec.require_secure({}, lambda: False)


def test_ssec_and_sse_s3_exclude_each_other() -> None:
    with pytest.raises(errors.InvalidArgument) as info:
        ssec.write_key({**GOOD, ssec.SSE_HEADER: "AES256"}, lambda: True)
    assert info.value.message == ssec.MSG_INCOMPATIBLE
    assert ssec.write_key({ssec.SSE_HEADER: "AES256"}, lambda: True) is None


def test_record_never_holds_the_key() -> None:
    cipher = MANAGER.customer_cipher(_key())
    enc = cipher.encryption
    assert enc.customer is not None and enc.wrapped_key == b""
    encoded = repr(records.encode_encryption(enc)).encode()
    assert KEY not in encoded and KEY_B64.encode() not in encoded
    assert records.decode_encryption(records.encode_encryption(enc)) == enc
    again = MANAGER.customer_cipher(_key()).encryption
    assert again.customer is not None
    assert again.customer.salt != enc.customer.salt and again.inline_nonce != enc.inline_nonce


def test_read_key_checks_the_record() -> None:
    enc = MANAGER.customer_cipher(_key()).encryption
    assert ssec.read_key(GOOD, lambda: True, enc) == _key()
    with pytest.raises(errors.InvalidRequest) as missing:
        ssec.read_key({}, lambda: True, enc)
    assert missing.value.message == ssec.MSG_KEY_REQUIRED
    other = bytes(32)
    other_headers = {**GOOD, ssec.KEY_HEADER: base64.b64encode(other).decode(),
                     MD5_NAME: base64.b64encode(hashlib.md5(other).digest()).decode()}
    with pytest.raises(errors.AccessDenied):
        ssec.read_key(other_headers, lambda: True, enc)
    with pytest.raises(errors.InvalidRequest) as plain:
        ssec.read_key(GOOD, lambda: True, None)
    assert plain.value.message == ssec.MSG_NOT_APPLICABLE
    assert ssec.read_key({}, lambda: True, None) is None


def test_core_cipher_refuses_without_the_key() -> None:
    """The floor under every reader (gRPC too): no key, no cipher."""
    enc = MANAGER.customer_cipher(_key()).encryption
    with pytest.raises(errors.InvalidRequest):
        MANAGER.cipher(enc, "k")
    with pytest.raises(errors.AccessDenied):
        MANAGER.cipher(enc, "k", CustomerKey(bytes(32), MD5_B64))  # claiming the right MD5
    data = b"hello world" * 5
    sealed = MANAGER.customer_cipher(_key())
    assert sealed.chunk("c1", 3, data) != data
    assert MANAGER.cipher(sealed.encryption, "k", _key()).chunk("c1", 3, sealed.chunk("c1", 3, data)) == data
    # One customer key, two records: two data keys (no keystream shared
    # between objects even if two 64-bit counter prefixes collided).
    other = MANAGER.customer_cipher(_key())
    assert other.chunk("c1", 3, data) != sealed.chunk("c1", 3, data)


def test_part_key_messages() -> None:
    enc = MANAGER.customer_cipher(_key()).encryption
    with pytest.raises(errors.InvalidRequest) as missing:
        ssec.part_key({}, lambda: True, enc)
    assert missing.value.message == ssec.MSG_PART_KEY_REQUIRED
    other = bytes(32)
    other_headers = {**GOOD, ssec.KEY_HEADER: base64.b64encode(other).decode(),
                     MD5_NAME: base64.b64encode(hashlib.md5(other).digest()).decode()}
    with pytest.raises(errors.InvalidRequest) as wrong:
        ssec.part_key(other_headers, lambda: True, enc)
    assert wrong.value.message == ssec.MSG_PART_KEY_MISMATCH


def test_etag() -> None:
    md5 = hashlib.md5(b"x").hexdigest()
    assert customer_etag(md5, None) == md5
    sse_s3 = Encryption("AES256", b"wrapped", bytes(8))
    assert customer_etag(md5, sse_s3) == md5
    enc = MANAGER.customer_cipher(_key()).encryption
    tag = customer_etag(md5, enc)
    assert tag != md5 and len(tag) == 32 and tag == customer_etag(md5, enc)


def test_response_headers() -> None:
    enc = MANAGER.customer_cipher(_key()).encryption
    assert ssec.response_headers(None) == []
    assert ssec.response_headers(enc) == [(ssec.ALGORITHM_HEADER, "AES256"), (ssec.KEY_MD5_HEADER, MD5_B64)]
