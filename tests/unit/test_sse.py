"""SSE-S3 (core/sse.py): key derivation and wrapping, AES-CTR at any
offset, and the chunk pipeline storing only ciphertext while ETags,
checksums and read verification keep working."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from twisted.internet import reactor as global_reactor

from lightningstor.checksums import crc32c
from lightningstor.core import records
from lightningstor.core.sse import (
    AES256,
    KeyManager,
    KeyUnavailable,
    chunk_nonce,
    ctr_xor,
    derive_kek,
    sse_applies,
)
from lightningstor.core.types import Bucket, BucketEncryption, ObjectRecord
from lightningstor.storage.chunks import ChunkManager
from lightningstor.storage.local import LocalFsBackend
from tests.contract.storage_contract import payload
from tests.unit.test_chunk_manager import BIG, CHUNK, INLINE, PIECE, feed, read_all, started_pool

KEY = Fernet.generate_key()
reactor: Any = global_reactor


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[LocalFsBackend]:
    io = started_pool("sse-io")
    yield LocalFsBackend(str(tmp_path / "store"), reactor, io, fsync=False)
    io.stop()


@pytest.fixture
def manager(backend: LocalFsBackend) -> Iterator[ChunkManager]:
    cpu = started_pool("sse-cpu")
    yield ChunkManager(backend, reactor, cpu, chunk_size=CHUNK, piece_size=PIECE, inline_threshold=INLINE)
    cpu.stop()


def test_kek_is_not_the_credential_key() -> None:
    """The KEK is derived with its own label: it is neither the Fernet key
    the credential store uses nor either of its halves."""
    raw = __import__("base64").urlsafe_b64decode(KEY)
    kek = derive_kek(KEY)
    assert len(kek) == 32
    assert kek not in (raw, raw[:16] + raw[16:], KEY[:32])
    assert derive_kek(KEY) == kek  # deterministic: every server derives the same
    assert derive_kek(Fernet.generate_key()) != kek


def test_wrapped_key_round_trip_and_binding() -> None:
    """A data key is stored only wrapped, opens with the same master key and
    object name, and nowhere else."""
    keys = KeyManager(KEY)
    cipher = keys.new_cipher("photos/cat.jpg")
    enc = cipher.encryption
    assert enc.algorithm == AES256
    assert cipher._key not in enc.wrapped_key  # never stored in the clear
    assert len(enc.wrapped_key) == 12 + 32 + 16
    opened = keys.cipher(enc, "photos/cat.jpg")
    assert opened._key == cipher._key
    with pytest.raises(KeyUnavailable):
        keys.cipher(enc, "photos/dog.jpg")  # associated data: the object key
    with pytest.raises(KeyUnavailable):
        KeyManager(Fernet.generate_key()).cipher(enc, "photos/cat.jpg")
    assert keys.new_cipher("photos/cat.jpg")._key != cipher._key  # fresh per version


def test_rotation_keeps_old_keys_readable() -> None:
    """A new first line wraps new keys; the old line below it still opens
    what it wrapped (the credential store's rotation procedure)."""
    old = KeyManager(KEY).new_cipher("k")
    new_line = Fernet.generate_key()
    rotated = KeyManager(new_line + b"\n" + KEY)
    assert rotated.cipher(old.encryption, "k")._key == old._key
    fresh = rotated.new_cipher("k")
    with pytest.raises(KeyUnavailable):
        KeyManager(KEY).cipher(fresh.encryption, "k")


@pytest.mark.parametrize("offset", [0, 1, 15, 16, 17, 4095, 100_000])
def test_ctr_from_any_offset_matches_a_full_stream(offset: int) -> None:
    """Decrypting a range from its own offset equals slicing the full stream:
    counter = offset // 16, skipping offset % 16 bytes."""
    key, nonce = os.urandom(32), os.urandom(8)
    data = os.urandom(120_000)
    enc = Cipher(algorithms.AES(key), modes.CTR(nonce + bytes(8))).encryptor()
    full = enc.update(data)
    assert ctr_xor(key, nonce, 0, data) == full
    assert ctr_xor(key, nonce, offset, data[offset : offset + 5000]) == full[offset : offset + 5000]
    assert ctr_xor(key, nonce, offset, full[offset : offset + 5000]) == data[offset : offset + 5000]


def test_chunk_nonces_differ_per_chunk() -> None:
    ids = [os.urandom(16).hex() for _ in range(1000)]
    assert len({chunk_nonce(i) for i in ids}) == 1000
    assert chunk_nonce(ids[0]) == chunk_nonce(ids[0])


def test_bucket_default_decides_only_when_nothing_asked() -> None:
    plain = Bucket("b", "id", "org", None, 0, 0, "me")
    default = Bucket("b", "id", "org", None, 0, 0, "me", encryption=BucketEncryption())
    assert not sse_applies(plain, None)
    assert sse_applies(plain, AES256)
    assert sse_applies(default, None)


def test_records_keep_encryption_fields() -> None:
    """Object and bucket records round-trip the new fields, and records
    without them encode exactly as before (no new keys)."""
    enc = KeyManager(KEY).new_cipher("k").encryption
    rec = ObjectRecord(key="k", size=3, etag="e", created_at=1, inline=b"abc", encryption=enc)
    assert records.decode_object(records.encode_object(rec)).encryption == enc
    plain = ObjectRecord(key="k", size=3, etag="e", created_at=1)
    assert b"sse" not in records.encode_object(plain)
    bucket = Bucket("b", "id", "org", None, 0, 0, "me", encryption=BucketEncryption(AES256, True))
    assert records.decode_bucket(records.encode_bucket(bucket)).encryption == BucketEncryption(AES256, True)
    assert b"sse" not in records.encode_bucket(Bucket("b", "id", "org", None, 0, 0, "me"))


# -- the chunk pipeline --------------------------------------------------------------


async def _store_encrypted(manager: ChunkManager, data: bytes, cipher: Any, **kwargs: Any) -> Any:
    writer = manager.new_writer(("sha256", "crc32"), cipher=cipher, **kwargs)
    feed(writer, data, [1000, 70_000, 300_000])
    return await writer.finish()


async def _stored_bytes(backend: LocalFsBackend, chunk_id: str, size: int) -> bytes:
    """What the backend holds for a chunk (it sees and stores opaque bytes)."""
    data: bytes = await backend.get_chunk_range(chunk_id, 0, size)
    return data


def _on_disk(backend: LocalFsBackend) -> bytes:
    """Every byte of every chunk file, framing included."""
    return b"".join(p.read_bytes() for p in Path(backend.base_path).rglob("*") if p.is_file())


@pytest.mark.parametrize("size", [1, INLINE, INLINE + 1, CHUNK, BIG])
@pytest_twisted.ensureDeferred
async def test_encrypted_round_trip(manager: ChunkManager, backend: LocalFsBackend, size: int) -> None:
    """Only ciphertext reaches the backend or the inline result; the ETag and
    checksums are of the plaintext; chunk CRCs are of the stored bytes; a
    read with the cipher gives the plaintext back, also for every range."""
    cipher = KeyManager(KEY).new_cipher("obj")
    data = payload(size, seed=size)
    result = await _store_encrypted(manager, data, cipher)
    assert result.encryption == cipher.encryption
    assert result.md5_hex == hashlib.md5(data).hexdigest()
    assert result.digests["sha256"] == hashlib.sha256(data).digest()
    if size <= INLINE:
        assert result.inline is not None and len(result.inline) == size
        assert result.inline == cipher.inline(data)
        if size >= 16:  # a 1-byte ciphertext may equal its plaintext
            assert result.inline != data
    else:
        stored = b""
        for ref in result.chunks:
            raw = await _stored_bytes(backend, ref.chunk_id, ref.size)
            assert len(raw) == ref.size
            assert crc32c(raw) == ref.checksum  # scrub and reads verify stored bytes
            assert raw == cipher.chunk(ref.chunk_id, 0, data[ref.offset : ref.offset + ref.size])
            stored += raw
        assert data[:64] not in stored
        disk = _on_disk(backend)
        assert data[:64] not in disk and data[-64:] not in disk  # no plaintext written to disk
    reader = manager.read(result.chunks, result.inline, 0, size, cipher)
    out = bytearray()
    while (piece := await reader.next_piece()) is not None:
        out += piece
    assert bytes(out) == data
    for offset, length in ((0, 1), (size // 3, 1000), (max(0, size - 17), 17), (CHUNK - 5, 10)):
        if offset >= size:
            continue
        reader = manager.read(result.chunks, result.inline, offset, length, cipher)
        got = bytearray()
        while (piece := await reader.next_piece()) is not None:
            got += piece
        assert bytes(got) == data[offset : offset + length]


@pytest_twisted.ensureDeferred
async def test_plain_read_of_encrypted_chunks_is_ciphertext(manager: ChunkManager) -> None:
    """Without the cipher the reader returns the stored bytes (as the scrub
    and repair see them): what is on disk is not the plaintext."""
    cipher = KeyManager(KEY).new_cipher("obj")
    data = payload(BIG, seed=9)
    result = await _store_encrypted(manager, data, cipher)
    raw = await read_all(manager, result)
    assert len(raw) == len(data) and raw != data


@pytest_twisted.ensureDeferred
async def test_two_writers_never_share_a_keystream(manager: ChunkManager) -> None:
    """Two objects written with the same data key (two parts of one upload)
    get different chunk ids, hence different counter blocks."""
    cipher = KeyManager(KEY).new_cipher("obj")
    data = payload(CHUNK + 10, seed=1)
    a = await _store_encrypted(manager, data, cipher, inline_threshold=-1)
    b = await _store_encrypted(manager, data, cipher, inline_threshold=-1)
    assert {c.chunk_id for c in a.chunks}.isdisjoint(c.chunk_id for c in b.chunks)
    assert [c.checksum for c in a.chunks] != [c.checksum for c in b.chunks]


@pytest.mark.parametrize("offset", [0, 5, 4095, 9000])
@pytest_twisted.ensureDeferred
async def test_encrypted_without_backend_crc(offset: int) -> None:
    """A backend without the chunk_crc32c capability (the pipeline computes
    the CRC): the recorded CRC is of the stored ciphertext, so reads verify
    and decrypt at any offset; the memory backend holds no plaintext."""
    from tests.unit.test_chunk_manager import MemoryBackend

    backend = MemoryBackend()
    cpu = started_pool("sse-cpu-mem")
    try:
        manager = ChunkManager(backend, reactor, cpu, chunk_size=4096, piece_size=1024, inline_threshold=100)
        cipher = KeyManager(KEY).new_cipher("obj")
        data = payload(20_000, seed=offset)
        result = await _store_encrypted(manager, data, cipher)
        for ref in result.chunks:
            assert crc32c(backend.chunks[ref.chunk_id]) == ref.checksum
            assert backend.chunks[ref.chunk_id] != data[ref.offset : ref.offset + ref.size]
        reader = manager.read(result.chunks, None, offset, 20_000, cipher)
        out = bytearray()
        while (piece := await reader.next_piece()) is not None:
            out += piece
        assert bytes(out) == data[offset:]
    finally:
        cpu.stop()
