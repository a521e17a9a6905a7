"""SSE-S3: server-side encryption of object data with server-managed keys.

Keys, from the top:

* the **master key file** (``[security] master_key_file``, one Fernet key a
  line, core/credentials.py) is what an operator keeps; every API server
  and worker of a deployment reads the same file;
* a **key-encryption key** (KEK) per line of that file, derived with
  HKDF-SHA256 under the label :data:`KEK_LABEL`.  The credential store uses
  the raw Fernet keys, so the two uses never share a key;
* a fresh random 256-bit **data key** per encrypted object version (and per
  multipart upload: its parts and the completed object share it), stored
  only wrapped: AES-256-GCM under the first line's KEK, with the object key
  as associated data, in the object or upload record.  Unwrapping tries
  every line's KEK, so a master key rotation (a new first line, the old one
  kept below it) keeps old objects readable; ``lightningstor-admin sse
  rewrap`` (core/sse_rewrap.py, :meth:`KeyManager.rewrap`) then wraps every
  stored data key again under the first line, after which the old line can
  leave the file.

Object data is AES-256-CTR under the data key, so ciphertext is exactly as
long as plaintext and a range read decrypts from any offset.  The counter
block of a chunk is ``prefix(8) || block_index(8, big-endian)``, where the
prefix is derived from the chunk id (:func:`chunk_nonce`): chunk ids are
fresh random UUIDs and every writer opens new chunks, so no counter block
repeats under one data key.  Inline data (small objects kept in the
metadata record) has a random prefix of its own, stored with the record.

SSE-C (customer-provided keys) uses the same data path with a data key
derived from the customer's 256-bit key and a random 128-bit salt of the
record (HMAC-SHA256 under a label of its own), so every object version or
upload encrypted under one customer key still has a key of its own and
the 64-bit counter prefixes never have to be unique across objects.  The
customer's key is never stored: the record keeps a
:class:`CustomerKeyCheck` (the salt and HMAC-SHA256(salt, key), plus the
key's MD5 to echo back), as AWS describes its own SSE-C.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from lightningstor import errors
from lightningstor.core.credentials import master_keys
from lightningstor.core.types import Bucket, CustomerKeyCheck, Encryption

AES256 = "AES256"
"""The one ``x-amz-server-side-encryption`` value this server implements."""

KEK_LABEL = b"lightningstor sse-s3 key-encryption key v1"
_CHUNK_NONCE_LABEL = b"lightningstor sse-s3 chunk nonce v1\x00"
_AAD_LABEL = b"lightningstor sse-s3 data key v1\x00"
_BLOCK = 16
_WRAP_NONCE = 12
_SALT = 16
_ETAG_LABEL = b"lightningstor sse-c etag v1\x00"
_DATA_KEY_LABEL = b"lightningstor sse-c data key v1\x00"

KEY_REQUIRED = (
    "The object was stored using a form of Server Side Encryption. "
    "The correct parameters must be provided to retrieve the object."
)
"""AWS's 400 InvalidRequest for a read of an SSE-C object without its key."""


@dataclass(frozen=True)
class CustomerKey:
    """A validated SSE-C key of one request (s3/ssec.py checked its length
    and MD5): the raw 256-bit key, kept in memory for the request only,
    and its base64 MD5."""

    key: bytes
    key_md5: str

    def __repr__(self) -> str:
        # A traceback or a debug log must never show the key.
        return f"CustomerKey(key_md5={self.key_md5!r})"


def _key_mac(salt: bytes, key: bytes) -> bytes:
    """HMAC-SHA256 of a customer key under a record's salt."""
    return hmac.new(salt, key, hashlib.sha256).digest()


def customer_data_key(check: CustomerKeyCheck, key: CustomerKey) -> bytes:
    """The data key of one SSE-C record: the customer's key and the
    record's salt through HMAC-SHA256 (a label distinct from the check's),
    so one customer key never encrypts two records with the same key."""
    return hmac.new(key.key, _DATA_KEY_LABEL + check.salt, hashlib.sha256).digest()


def key_matches(check: CustomerKeyCheck, key: CustomerKey) -> bool:
    """Whether ``key`` is the one ``check`` was made from (constant time)."""
    return hmac.compare_digest(_key_mac(check.salt, key.key), check.mac)


def customer_encrypted(encryption: Encryption | None) -> bool:
    """Whether data under ``encryption`` opens only with a customer's key (SSE-C)."""
    return encryption is not None and encryption.customer is not None


def customer_etag(md5_hex: str, encryption: Encryption | None) -> str:
    """The ETag stored for a body whose plaintext MD5 is ``md5_hex``.

    AWS: the ETag of an SSE-C object "is not an MD5 digest of their object
    data".  Publishing the plaintext MD5 would let anyone who may list the
    bucket (no key needed) confirm a guess of the content, so an SSE-C
    body's ETag is a keyed digest of it under the record's random salt:
    stable for its record (If-Match, CompleteMultipartUpload's part list
    work), unrelated to the plaintext for anyone without the record.
    Other bodies keep the MD5."""
    if encryption is None or encryption.customer is None:
        return md5_hex
    mac = hmac.new(encryption.customer.salt, _ETAG_LABEL + bytes.fromhex(md5_hex), hashlib.sha256)
    return mac.hexdigest()[:32]


def sse_applies(bucket: Bucket, requested: str | None) -> bool:
    """Whether a new object version (or upload) in ``bucket`` is encrypted:
    the write asked for SSE-S3 (``requested``, already validated by the
    protocol layer), or asked for nothing and the bucket has default
    encryption, as AWS applies it."""
    return requested is not None or bucket.encryption is not None


class KeyUnavailable(Exception):
    """A wrapped data key no KEK of this server's master key file opens
    (the file was replaced, or a rotated-out line was dropped too early)."""


def derive_kek(master_key_line: bytes) -> bytes:
    """The 256-bit KEK of one master key line (HKDF-SHA256, distinct label)."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=KEK_LABEL)
    return hkdf.derive(master_key_line)


def _aad(object_key: str) -> bytes:
    """Binds a wrapped key to its object's name: a record's key copied onto
    another object does not open there."""
    return _AAD_LABEL + object_key.encode("utf-8", "surrogatepass")


def chunk_nonce(chunk_id: str) -> bytes:
    """The 8-byte counter prefix of a chunk, from its (random, never reused) id."""
    return hashlib.sha256(_CHUNK_NONCE_LABEL + chunk_id.encode()).digest()[:8]


def ctr_xor(key: bytes, nonce: bytes, offset: int, data: bytes) -> bytes:
    """AES-256-CTR of ``data`` lying at byte ``offset`` of a stream whose
    counter blocks are ``nonce || block_index``: encryption and decryption
    are the same operation.  The keystream starts at block ``offset // 16``
    and skips ``offset % 16`` bytes, so any range is reachable directly."""
    block, skip = divmod(offset, _BLOCK)
    iv = nonce + block.to_bytes(8, "big")
    enc = Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor()
    if skip:
        enc.update(bytes(skip))
    return enc.update(data)


class DataCipher:
    """The data key of one object version or upload, unwrapped, with what
    its record must store (``encryption``).  Thread-safe: every call builds
    its own cipher context, so the CPU pool may run several at once."""

    __slots__ = ("_key", "encryption")

    def __init__(self, key: bytes, encryption: Encryption) -> None:
        if len(key) != 32:
            raise ValueError("an SSE-S3 data key is 256 bits")
        self._key = key
        self.encryption = encryption

    def chunk(self, chunk_id: str, offset: int, data: bytes) -> bytes:
        """Encrypt (or decrypt) ``data`` lying at ``offset`` within chunk ``chunk_id``."""
        return ctr_xor(self._key, chunk_nonce(chunk_id), offset, data)

    def inline(self, data: bytes) -> bytes:
        """Encrypt (or decrypt) a record's inline data with the record's own nonce."""
        return ctr_xor(self._key, self.encryption.inline_nonce, 0, data)


class KeyManager:
    """Makes and opens data keys with the KEKs of the master key file."""

    def __init__(self, master_key: bytes) -> None:
        # The first line wraps; every line unwraps (key rotation).
        self._keks = [AESGCM(derive_kek(line)) for line in master_keys(master_key)]

    def _wrap(self, key: bytes, object_key: str) -> bytes:
        """``key`` wrapped under the first line's KEK (a fresh random nonce)."""
        nonce = os.urandom(_WRAP_NONCE)
        return nonce + self._keks[0].encrypt(nonce, key, _aad(object_key))

    def _unwrap(self, encryption: Encryption, object_key: str) -> tuple[int, bytes]:
        """``(line, data key)``: the index of the first master key line whose
        KEK opens an SSE-S3 record's wrapped key, and the key.
        KeyUnavailable if none does (or the algorithm is unknown)."""
        if encryption.algorithm != AES256:
            raise KeyUnavailable(f"unknown server-side encryption algorithm {encryption.algorithm!r}")
        wrapped = encryption.wrapped_key
        nonce, sealed = wrapped[:_WRAP_NONCE], wrapped[_WRAP_NONCE:]
        for line, kek in enumerate(self._keks):
            try:
                return line, kek.decrypt(nonce, sealed, _aad(object_key))
            except InvalidTag:
                continue
        raise KeyUnavailable("no key of the master key file opens this object's data key")

    def rewrap(self, encryption: Encryption, object_key: str) -> bytes | None:
        """The wrapped data key of an SSE-S3 record of ``object_key``, wrapped
        again under the first line's KEK (fresh nonce, same associated data),
        or None if the first line already opens it: what ``lightningstor-admin
        sse rewrap`` stores so older lines can leave the master key file.
        The data key itself does not change, so the object's data stays as
        it is.  KeyUnavailable if no line opens it; ValueError for an SSE-C
        record (the server wraps nothing of those)."""
        if encryption.customer is not None:
            raise ValueError("an SSE-C record holds no server-wrapped key")
        line, key = self._unwrap(encryption, object_key)
        if line == 0:
            return None
        return self._wrap(key, object_key)

    def new_cipher(self, object_key: str) -> DataCipher:
        """A fresh random data key for a new object version or upload of
        ``object_key``, and the record field that carries it wrapped."""
        key = os.urandom(32)
        return DataCipher(key, Encryption(AES256, self._wrap(key, object_key), os.urandom(8)))

    def customer_cipher(self, key: CustomerKey) -> DataCipher:
        """The cipher of a new SSE-C object version or upload: a fresh
        salt, hence a data key of its own (:func:`customer_data_key`), the
        key check the record keeps, and a fresh inline prefix."""
        salt = os.urandom(_SALT)
        check = CustomerKeyCheck(key.key_md5, salt, _key_mac(salt, key.key))
        return DataCipher(customer_data_key(check, key), Encryption(AES256, b"", os.urandom(8), check))

    def cipher(self, encryption: Encryption, object_key: str, customer: CustomerKey | None = None) -> DataCipher:
        """The cipher of a stored object or upload of ``object_key``.

        KeyUnavailable if no KEK opens its wrapped key (a different master
        key file, or a record moved to another object name).  An SSE-C
        record opens only with its customer's key: none is AWS's 400
        InvalidRequest, another key 403 AccessDenied (the S3 handlers check
        first, with each operation's own message; this is the floor every
        other reader, gRPC included, stands on)."""
        if encryption.customer is not None:
            if customer is None:
                raise errors.InvalidRequest(KEY_REQUIRED)
            if not key_matches(encryption.customer, customer):
                raise errors.AccessDenied()
            return DataCipher(customer_data_key(encryption.customer, customer), encryption)
        _line, key = self._unwrap(encryption, object_key)
        return DataCipher(key, encryption)
