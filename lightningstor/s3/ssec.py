"""SSE-C request headers: parsing, AWS's validation and AWS's answers.

The crypto lives in core/sse.py (the customer's key is the data key of the
SSE-S3 data path; a record keeps only a salted HMAC of it).  Here:

* the three headers ``x-amz-server-side-encryption-customer-algorithm``,
  ``-customer-key`` (base64 of 32 bytes) and ``-customer-key-MD5`` (base64
  MD5 of the key) come together; a missing or bad one is 400
  InvalidArgument with AWS's message, in AWS's order (algorithm, key,
  MD5);
* CopyObject / UploadPartCopy name the source's key with the same three
  headers under ``x-amz-copy-source-``;
* the key must come over TLS: a plain-HTTP request carrying one is 400
  InvalidRequest (the key has crossed the wire in clear by then, but the
  client learns at once instead of doing it for every object);
* reads of an SSE-C object need its key (400 InvalidRequest without, 403
  AccessDenied with another), and SSE-C headers on anything else are 400
  InvalidRequest; each answer echoes the algorithm and the key's MD5.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Callable, Mapping

from lightningstor import errors
from lightningstor.core.sse import AES256, KEY_REQUIRED, CustomerKey, key_matches
from lightningstor.core.types import Encryption

ALGORITHM_HEADER = "x-amz-server-side-encryption-customer-algorithm"
KEY_HEADER = "x-amz-server-side-encryption-customer-key"
KEY_MD5_HEADER = "x-amz-server-side-encryption-customer-key-MD5"
COPY_SOURCE_PREFIX = "x-amz-copy-source-"
"""Replaces ``x-amz-`` in the names of a copy source's SSE-C headers
(``x-amz-copy-source-server-side-encryption-customer-key``...)."""
KEY_BYTES = 32

MSG_NO_ALGORITHM = (
    "Requests specifying Server Side Encryption with Customer provided keys must provide a valid encryption algorithm."
)
MSG_NO_KEY = "Requests specifying Server Side Encryption with Customer provided keys must provide an appropriate secret key."
MSG_NO_MD5 = (
    "Requests specifying Server Side Encryption with Customer provided keys "
    "must provide the client calculated MD5 of the secret key."
)
MSG_BAD_KEY = "The secret key was invalid for the specified algorithm."
MSG_MD5_MISMATCH = "The calculated MD5 hash of the key did not match the hash that was provided."
MSG_BAD_ALGORITHM = "The Encryption request you specified is not valid. Supported value: AES256."
MSG_INSECURE = "Requests specifying Server Side Encryption with Customer provided keys must be made over a secure connection."
MSG_KEY_REQUIRED = KEY_REQUIRED
MSG_NOT_APPLICABLE = "The encryption parameters are not applicable to this object."
MSG_PART_KEY_REQUIRED = (
    "The multipart upload initiate requested encryption. "
    "Subsequent part requests must include the appropriate encryption parameters."
)
MSG_PART_KEY_MISMATCH = "The provided encryption parameters did not match the ones used originally."
MSG_INCOMPATIBLE = "Server Side Encryption with Customer provided key is incompatible with the encryption method specified"
SSE_HEADER = "x-amz-server-side-encryption"


def header_names(prefix: str = "") -> tuple[str, str, str]:
    """The algorithm, key and key-MD5 header names, for a copy's source
    with ``prefix`` :data:`COPY_SOURCE_PREFIX`."""
    names = (ALGORITHM_HEADER, KEY_HEADER, KEY_MD5_HEADER)
    if not prefix:
        return names
    return tuple(prefix + name[len("x-amz-"):] for name in names)  # type: ignore[return-value]


def _md5_b64(data: bytes) -> str:
    """base64 of the MD5 of ``data``: the form of ``-customer-key-MD5``."""
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode("ascii")


def _decode_key(value: str) -> bytes | None:
    """The key bytes of a ``-customer-key`` header, or None if it is not
    strict base64 (a lenient decode would accept keys AWS refuses)."""
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def customer_key(headers: Mapping[str, str], prefix: str = "") -> CustomerKey | None:
    """The SSE-C key a request names (``prefix`` ``x-amz-copy-source-`` for
    a copy's source), None when it names none.

    Any one of the three headers makes it an SSE-C request; then every
    check AWS makes, in its order, each a 400 InvalidArgument naming the
    header (an unknown algorithm: InvalidEncryptionAlgorithmError)."""
    algo_name, key_name, md5_name = header_names(prefix)
    # Request header names arrive lower-cased.
    algorithm, raw, md5 = (headers.get(name.lower()) for name in (algo_name, key_name, md5_name))
    if algorithm is None and raw is None and md5 is None:
        return None
    if not algorithm:
        raise errors.InvalidArgument(MSG_NO_ALGORITHM, ArgumentName=algo_name, ArgumentValue="null")
    if algorithm != AES256:
        raise errors.S3Error(
            MSG_BAD_ALGORITHM, code="InvalidEncryptionAlgorithmError", ArgumentName=algo_name, ArgumentValue=algorithm
        )
    if not raw:
        raise errors.InvalidArgument(MSG_NO_KEY, ArgumentName=key_name, ArgumentValue="null")
    key = _decode_key(raw)
    if key is None or len(key) != KEY_BYTES:
        raise errors.InvalidArgument(MSG_BAD_KEY, ArgumentName=key_name, ArgumentValue="null")
    if not md5:
        raise errors.InvalidArgument(MSG_NO_MD5, ArgumentName=md5_name, ArgumentValue="null")
    actual = _md5_b64(key)
    if not hmac.compare_digest(actual, md5):
        raise errors.InvalidArgument(MSG_MD5_MISMATCH, ArgumentName=md5_name, ArgumentValue="null")
    return CustomerKey(key, actual)


_ALL_NAMES = tuple(name.lower() for prefix in ("", COPY_SOURCE_PREFIX) for name in header_names(prefix))


def named(headers: Mapping[str, str]) -> bool:
    """Whether any SSE-C header (the object's or a copy source's) is
    present.  Every check below asks this first, so the common request (no
    SSE-C anywhere) pays six dict lookups and nothing else: not even
    ``Request.isSecure``, whose interface lookup costs more than these
    (docs/performance.md, "Tenth round")."""
    for name in _ALL_NAMES:
        if name in headers:
            return True
    return False


def require_secure(headers: Mapping[str, str], is_secure: Callable[[], bool]) -> None:
    """AWS's 400 InvalidRequest for SSE-C headers sent over plain HTTP,
    checked before the headers themselves (a key sent in clear is refused
    whether or not it is well formed).  ``is_secure`` (the request's
    ``isSecure``) is only called when such a header is there."""
    if named(headers) and not is_secure():
        raise errors.InvalidRequest(MSG_INSECURE)


def write_key(headers: Mapping[str, str], is_secure: Callable[[], bool]) -> CustomerKey | None:
    """The SSE-C key a write (PutObject, CreateMultipartUpload, CopyObject's
    destination) asks for; with ``x-amz-server-side-encryption`` too it is
    AWS's 400 InvalidArgument (SSE-C and SSE-S3 exclude each other)."""
    if not named(headers):
        return None
    require_secure(headers, is_secure)
    key = customer_key(headers)
    if key is not None and SSE_HEADER in headers:
        raise errors.InvalidArgument(MSG_INCOMPATIBLE, ArgumentName=SSE_HEADER, ArgumentValue=headers[SSE_HEADER])
    return key


def read_key(
    headers: Mapping[str, str], is_secure: Callable[[], bool], encryption: Encryption | None, prefix: str = ""
) -> CustomerKey | None:
    """The SSE-C key that opens a stored object (GetObject, HeadObject,
    GetObjectAttributes; a copy's source with ``prefix``
    ``x-amz-copy-source-``), checked against its record: none for an SSE-C
    object is 400 InvalidRequest, another key 403 AccessDenied, a key for
    an object that is not SSE-C 400 InvalidRequest, as AWS answers."""
    return _matching_key(
        headers, is_secure, encryption, prefix,
        missing=lambda: errors.InvalidRequest(MSG_KEY_REQUIRED), wrong=errors.AccessDenied,
    )  # fmt: skip


def part_key(headers: Mapping[str, str], is_secure: Callable[[], bool], encryption: Encryption | None) -> CustomerKey | None:
    """The SSE-C key of an UploadPart / UploadPartCopy's destination: the
    one the upload was created with, every time (AWS's InvalidRequest
    messages for a missing or different key)."""
    return _matching_key(
        headers, is_secure, encryption, "",
        missing=lambda: errors.InvalidRequest(MSG_PART_KEY_REQUIRED),
        wrong=lambda: errors.InvalidRequest(MSG_PART_KEY_MISMATCH),
    )  # fmt: skip


def _matching_key(
    headers: Mapping[str, str],
    is_secure: Callable[[], bool],
    encryption: Encryption | None,
    prefix: str,
    *,
    missing: Callable[[], errors.S3Error],
    wrong: Callable[[], errors.S3Error],
) -> CustomerKey | None:
    """The request's SSE-C key checked against a stored object or upload
    (``encryption``); ``missing`` and ``wrong`` make the error AWS answers
    when the key is absent or another.  A plaintext object asked about
    without SSE-C headers costs six dict lookups (:func:`named`)."""
    check = encryption.customer if encryption is not None else None
    if check is None and not named(headers):
        return None
    require_secure(headers, is_secure)
    key = customer_key(headers, prefix)
    if check is None:
        if key is not None:
            raise errors.InvalidRequest(MSG_NOT_APPLICABLE)
        return None
    if key is None:
        raise missing()
    if not key_matches(check, key):
        raise wrong()
    return key


def response_headers(encryption: Encryption | None) -> list[tuple[str, str]]:
    """The SSE-C headers every answer about an SSE-C object or upload
    carries (AWS echoes the algorithm and the key's MD5)."""
    if encryption is None or encryption.customer is None:
        return []
    return [(ALGORITHM_HEADER, encryption.algorithm), (KEY_MD5_HEADER, encryption.customer.key_md5)]


def refuse_in_form(fields: Mapping[str, str]) -> None:
    """501 NotImplemented for SSE-C fields of a POST upload (PostObject):
    not implemented there, and refused rather than stored unencrypted."""
    if any(name.lower() in fields for name in (ALGORITHM_HEADER, KEY_HEADER, KEY_MD5_HEADER)):
        raise errors.NotImplementedS3(
            "Server-side encryption with customer keys is not supported by LightningStor in a POST upload"
        )
