"""The ``local`` filesystem backend: the shared contract plus what only it promises
(on-disk block checksums, safe chunk ids, temp files, fsync, layout, config)."""

from __future__ import annotations

import errno
import os
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor as global_reactor
from twisted.plugin import IPlugin
from twisted.python.threadpool import ThreadPool
from zope.interface.verify import verifyObject

from lightningstor.checksums import crc32c
from lightningstor.errors import ChunkCorrupted, ChunkNotFound, ConfigError, StorageError
from lightningstor.interfaces.storage import IStorageBackendFactory, PluginContext
from lightningstor.storage.local import (
    BLOCK_SIZE,
    MAX_CHUNK_SIZE,
    LocalFsBackend,
    localStorageFactory,
)
from tests.contract.storage_contract import StorageBackendContract, failure_of, payload

# The installed reactor, typed loosely: its static type lacks IReactorFromThreads.
reactor: Any = global_reactor


class TestLocalContract(StorageBackendContract):
    """The IStorageBackend contract against the default local backend (fsync on)."""

    def make_backend(self, tmp_path: Path) -> LocalFsBackend:
        return LocalFsBackend(str(tmp_path / "store"), self.reactor, self.io_pool)


class TestLocalContractFlat(StorageBackendContract):
    """The contract again with no sharding and fsync off (the relaxed settings)."""

    def make_backend(self, tmp_path: Path) -> LocalFsBackend:
        return LocalFsBackend(str(tmp_path / "store"), self.reactor, self.io_pool, shard_depth=0, fsync=False)


# -- fixtures and helpers --------------------------------------------------------


MakeBackend = Callable[..., LocalFsBackend]


@pytest.fixture
def make(tmp_path: Path, io_pool: ThreadPool) -> MakeBackend:
    """Build a LocalFsBackend under tmp_path/store with the given options."""

    def build(**kwargs: Any) -> LocalFsBackend:
        return LocalFsBackend(str(tmp_path / "store"), reactor, io_pool, **kwargs)

    return build


def chunk_file(backend: LocalFsBackend, chunk_id: str) -> Path:
    [path] = Path(backend.base_path, "chunks").rglob(chunk_id)
    return path


def flip_bit(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))


def tmp_files(backend: LocalFsBackend) -> list[str]:
    tmp = Path(backend.base_path, "tmp")
    return sorted(p.name for p in tmp.iterdir()) if tmp.exists() else []


def new_id() -> str:
    return uuid.uuid4().hex


# -- integrity --------------------------------------------------------------------

SIZE = 4 * BLOCK_SIZE + 100  # five blocks, the last one short


@pytest_twisted.ensureDeferred
async def test_bit_flip_in_data_fails_reads_of_that_block_only(make: MakeBackend) -> None:
    """A flipped data bit makes get and ranges touching its block fail with
    ChunkCorrupted, while ranges over other blocks still read correctly."""
    backend = make(fsync=False)
    chunk_id, data = new_id(), payload(SIZE)
    await backend.put_chunk(chunk_id, data)
    flip_bit(chunk_file(backend, chunk_id), 2 * BLOCK_SIZE + 5)

    (await failure_of(backend.get_chunk(chunk_id))).trap(ChunkCorrupted)
    for offset, length in [(2 * BLOCK_SIZE + 5, 1), (2 * BLOCK_SIZE - 1, 2), (BLOCK_SIZE, 3 * BLOCK_SIZE)]:
        (await failure_of(backend.get_chunk_range(chunk_id, offset, length))).trap(ChunkCorrupted)
    for offset, length in [(0, 2 * BLOCK_SIZE), (3 * BLOCK_SIZE, BLOCK_SIZE + 100), (2 * BLOCK_SIZE - 10, 10)]:
        got = await backend.get_chunk_range(chunk_id, offset, length)
        assert got == data[offset : offset + length]


@pytest.mark.parametrize(
    "from_end",
    [
        1,  # magic
        5,  # footer CRC
        9,  # reserved
        11,  # version
        13,  # block size
        17,  # data length
        24 + 1,  # last block's CRC
        24 + 4 * 5 - 1,  # first block's CRC
    ],
)
@pytest_twisted.ensureDeferred
async def test_bit_flip_in_footer_fails_every_read(make: MakeBackend, from_end: int) -> None:
    """A flipped bit anywhere in the footer (block CRC table or trailer) is
    corruption: get and every range read fail with ChunkCorrupted."""
    backend = make(fsync=False)
    chunk_id = new_id()
    await backend.put_chunk(chunk_id, payload(SIZE))
    path = chunk_file(backend, chunk_id)
    flip_bit(path, path.stat().st_size - from_end)
    (await failure_of(backend.get_chunk(chunk_id))).trap(ChunkCorrupted)
    (await failure_of(backend.get_chunk_range(chunk_id, 0, 10))).trap(ChunkCorrupted)


@pytest.mark.parametrize("keep", [0, 10, 23, BLOCK_SIZE, SIZE, -1])
@pytest_twisted.ensureDeferred
async def test_truncated_or_extended_file_is_corrupt(make: MakeBackend, keep: int) -> None:
    """A chunk file cut short (or one byte too long) fails with ChunkCorrupted, never short data."""
    backend = make(fsync=False)
    chunk_id = new_id()
    await backend.put_chunk(chunk_id, payload(SIZE))
    path = chunk_file(backend, chunk_id)
    if keep < 0:
        with path.open("ab") as f:
            f.write(b"\0")
    else:
        os.truncate(path, keep)
    (await failure_of(backend.get_chunk(chunk_id))).trap(ChunkCorrupted)
    (await failure_of(backend.get_chunk_range(chunk_id, 0, 1))).trap(ChunkCorrupted)


@pytest_twisted.ensureDeferred
async def test_streamed_chunk_has_same_file_as_put(make: MakeBackend) -> None:
    """Block CRCs computed over unaligned streamed writes equal those of a one-shot
    put: the two files are byte-identical."""
    backend = make(fsync=False)
    data = payload(3 * BLOCK_SIZE + 7)
    one, two = new_id(), new_id()
    await backend.put_chunk(one, data)
    writer = backend.open_chunk(two)
    for start in range(0, len(data), 10_007):
        await writer.write(data[start : start + 10_007])
    await writer.commit()
    assert chunk_file(backend, one).read_bytes() == chunk_file(backend, two).read_bytes()


@pytest.mark.parametrize(
    ("offset", "length"),
    [
        (0, SIZE),  # whole chunk: every CRC from the footer table
        (0, 2 * BLOCK_SIZE),  # aligned blocks
        (BLOCK_SIZE, 10 * BLOCK_SIZE),  # clipped at the end: the short last block whole
        (5, BLOCK_SIZE),  # cuts two blocks
        (2 * BLOCK_SIZE + 3, 4),  # inside one block
        (4 * BLOCK_SIZE, 100),  # exactly the short last block
        (SIZE, 10),  # empty: at the end
        (7, 0),  # empty
    ],
)
@pytest.mark.parametrize("previous", [0, 0xDEADBEEF])
@pytest_twisted.ensureDeferred
async def test_range_read_with_running_crc(make: MakeBackend, offset: int, length: int, previous: int) -> None:
    """get_chunk_range_crc returns the same bytes as get_chunk_range and
    crc32c(data, previous), whether the range covers blocks whole (CRCs
    combined from the footer) or cuts them (computed directly)."""
    backend = make(fsync=False)
    chunk_id, data = new_id(), payload(SIZE, seed=offset + length)
    await backend.put_chunk(chunk_id, data)
    got, crc = await backend.get_chunk_range_crc(chunk_id, offset, length, previous)
    assert got == data[offset : offset + length]
    assert crc == crc32c(got, previous)


@pytest_twisted.ensureDeferred
async def test_range_read_with_crc_chained_equals_whole_chunk_crc(make: MakeBackend) -> None:
    """Reading a chunk piece by piece, feeding each CRC into the next read,
    gives the CRC32C of the whole chunk (what a reader checks against the
    chunk's metadata)."""
    backend = make(fsync=False)
    chunk_id, data = new_id(), payload(SIZE, seed=3)
    await backend.put_chunk(chunk_id, data)
    crc, pos, step = 0, 0, BLOCK_SIZE + 1000
    while pos < SIZE:
        got, crc = await backend.get_chunk_range_crc(chunk_id, pos, step, crc)
        pos += len(got)
    assert crc == crc32c(data)


@pytest_twisted.ensureDeferred
async def test_range_read_with_crc_checks_blocks(make: MakeBackend) -> None:
    """The CRC variant verifies the blocks it reads like get_chunk_range:
    a flipped bit is ChunkCorrupted (never a CRC of wrong bytes); a missing
    chunk is ChunkNotFound; bad arguments fail."""
    backend = make(fsync=False)
    chunk_id = new_id()
    await backend.put_chunk(chunk_id, payload(SIZE))
    flip_bit(chunk_file(backend, chunk_id), BLOCK_SIZE + 9)
    (await failure_of(backend.get_chunk_range_crc(chunk_id, 0, SIZE, 0))).trap(ChunkCorrupted)
    (await failure_of(backend.get_chunk_range_crc(chunk_id, BLOCK_SIZE, 1, 0))).trap(ChunkCorrupted)
    got, _ = await backend.get_chunk_range_crc(chunk_id, 2 * BLOCK_SIZE, BLOCK_SIZE, 0)
    assert len(got) == BLOCK_SIZE
    (await failure_of(backend.get_chunk_range_crc(new_id(), 0, 1, 0))).trap(ChunkNotFound)
    (await failure_of(backend.get_chunk_range_crc(chunk_id, -1, 1, 0))).trap(ValueError)
    (await failure_of(backend.get_chunk_range_crc("../x", 0, 1, 0))).trap(ValueError)


@pytest.mark.parametrize("size", [0, 1, BLOCK_SIZE, BLOCK_SIZE + 1, SIZE])
@pytest_twisted.ensureDeferred
async def test_chunk_writer_reports_crc_of_bytes_written(make: MakeBackend, size: int) -> None:
    """A chunk writer's crc32c (combined from its block CRCs) is the CRC32C of
    every byte written so far, however the writes were cut."""
    backend = make(fsync=False)
    assert backend.capabilities().chunk_crc32c
    data = payload(size, seed=size)
    writer = backend.open_chunk(new_id())
    for start in range(0, size, 10_007):
        await writer.write(data[start : start + 10_007])
        assert writer.crc32c == crc32c(data[: start + 10_007])
    assert writer.crc32c == crc32c(data)
    await writer.commit()


# -- chunk ids and layout -------------------------------------------------------

BAD_IDS = ["", "../../etc/passwd", "ABCDEF12", "ab/cd1234", "abcd.1234", "abcd\x001234", "-abcd1234", "a" * 129, "ab"]


@pytest.mark.parametrize("bad", BAD_IDS)
@pytest_twisted.ensureDeferred
async def test_bad_chunk_ids_rejected(make: MakeBackend, bad: str) -> None:
    """Ids that are not [0-9a-f-] (or too short to shard) are refused with
    ValueError by every method, and nothing is created on disk."""
    backend = make()
    for d in (
        backend.put_chunk(bad, b"x"),
        backend.get_chunk(bad),
        backend.get_chunk_range(bad, 0, 1),
        backend.delete_chunk(bad),
        backend.chunk_exists(bad),
    ):
        (await failure_of(d)).trap(ValueError)
    with pytest.raises(ValueError):
        backend.open_chunk(bad)
    assert not Path(backend.base_path).exists()


@pytest.mark.parametrize(
    ("depth", "chunk_id", "parts"),
    [
        (2, "abcdef0123456789abcdef0123456789", ["ab", "cd"]),
        (0, "abcdef0123456789abcdef0123456789", []),
        (4, "abcdef0123456789abcdef0123456789", ["ab", "cd", "ef", "01"]),
        (3, "a1b2c3d4-e5f6-4789-8abc-def012345678", ["a1", "b2", "c3"]),
    ],
)
@pytest_twisted.ensureDeferred
async def test_shard_layout(make: MakeBackend, depth: int, chunk_id: str, parts: list[str]) -> None:
    """A chunk lives at {base}/chunks/{ab}/{cd}/.../{id}, one level per shard_depth."""
    backend = make(shard_depth=depth, fsync=False)
    await backend.put_chunk(chunk_id, b"data")
    assert Path(backend.base_path, "chunks", *parts, chunk_id).is_file()


def test_constructor_does_no_io(tmp_path: Path, io_pool: ThreadPool) -> None:
    """Building a backend (on the reactor thread at start-up) touches no files."""
    LocalFsBackend(str(tmp_path / "store"), reactor, io_pool)
    assert not (tmp_path / "store").exists()


@pytest.mark.parametrize("kwargs", [{"shard_depth": 5}, {"shard_depth": -1}, {"max_chunk_size": 0}, {"max_chunk_size": MAX_CHUNK_SIZE + 1}])
def test_constructor_validates(make: MakeBackend, kwargs: dict[str, int]) -> None:
    """Out-of-range shard_depth or max_chunk_size are refused."""
    with pytest.raises(ValueError):
        make(**kwargs)


@pytest_twisted.ensureDeferred
async def test_max_chunk_size_enforced(make: MakeBackend) -> None:
    """put_chunk and streamed writes beyond max_chunk_size fail with ValueError."""
    backend = make(max_chunk_size=1000, fsync=False)
    (await failure_of(backend.put_chunk(new_id(), b"x" * 1001))).trap(ValueError)
    writer = backend.open_chunk(new_id())
    await writer.write(b"x" * 600)
    (await failure_of(writer.write(b"x" * 401))).trap(ValueError)
    await writer.abort()
    assert tmp_files(backend) == []


# -- temp files -------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_temp_files_gone_after_commit_and_abort(make: MakeBackend) -> None:
    """A streaming write lives in tmp/ until commit renames it; abort removes it."""
    backend = make(fsync=False)
    committed = backend.open_chunk(new_id())
    aborted = backend.open_chunk(new_id())
    await committed.write(b"a" * 100)
    await aborted.write(b"b" * 100)
    assert len(tmp_files(backend)) == 2
    await committed.commit()
    await aborted.abort()
    assert tmp_files(backend) == []
    (await failure_of(committed.write(b"more"))).trap(RuntimeError)


@pytest_twisted.ensureDeferred
async def test_cleanup_tmp_removes_only_stale_files(make: MakeBackend) -> None:
    """cleanup_tmp deletes temp files older than the limit and keeps fresh ones."""
    backend = make(fsync=False)
    assert await backend.cleanup_tmp(3600) == 0  # no tmp/ yet
    await backend.check()
    tmp = Path(backend.base_path, "tmp")
    stale, fresh = tmp / "stale.1", tmp / "fresh.1"
    stale.write_bytes(b"x")
    fresh.write_bytes(b"y")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    assert await backend.cleanup_tmp(3600) == 1
    assert tmp_files(backend) == ["fresh.1"]


@pytest_twisted.ensureDeferred
async def test_list_ignores_foreign_files(make: MakeBackend) -> None:
    """list_chunks reports only files named like chunk ids."""
    backend = make(fsync=False)
    chunk_id = new_id()
    await backend.put_chunk(chunk_id, b"x" * 10)
    chunks = Path(backend.base_path, "chunks")
    (chunks / "README").write_text("not a chunk")
    (chunks / f"{chunk_id}.partial").write_bytes(b"")
    assert [(c.chunk_id, c.size) for c in await backend.list_chunks()] == [(chunk_id, 10)]


@pytest_twisted.ensureDeferred
async def test_check_fails_when_base_unusable(tmp_path: Path, io_pool: ThreadPool) -> None:
    """check() fails with StorageError when the base path cannot hold directories."""
    base = tmp_path / "file"
    base.write_bytes(b"")
    backend = LocalFsBackend(str(base), reactor, io_pool)
    (await failure_of(backend.check())).trap(StorageError)


@pytest_twisted.ensureDeferred
async def test_check_creates_layout(make: MakeBackend) -> None:
    """check() creates chunks/ and tmp/ and leaves no probe file behind."""
    backend = make()
    await backend.check()
    assert Path(backend.base_path, "chunks").is_dir()
    assert tmp_files(backend) == []


# -- fsync ----------------------------------------------------------------------------


@pytest.fixture
def fsynced(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Paths passed to os.fsync (resolved through /proc) while the test runs."""
    seen: list[str] = []
    lock = threading.Lock()
    real = os.fsync

    def spy(fd: int) -> None:
        with lock:
            seen.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    return seen


@pytest_twisted.ensureDeferred
async def test_fsync_file_and_directories(make: MakeBackend, fsynced: list[str]) -> None:
    """A durable put fsyncs the file, its directory and the parents of shard
    directories it created; a put into existing shards fsyncs just file + dir;
    a delete fsyncs the directory."""
    backend = make()
    base = Path(backend.base_path)
    first = "abcd" + new_id()[4:]
    await backend.put_chunk(first, b"one")
    shard = base / "chunks" / "ab" / "cd"
    assert {str(shard), str(shard.parent), str(base / "chunks")} <= set(fsynced)
    assert any(p.startswith(str(base / "tmp")) for p in fsynced)  # the file, before rename

    fsynced.clear()
    second = "abcd" + new_id()[4:]
    writer = backend.open_chunk(second)
    await writer.write(b"two")
    await writer.commit()
    assert len(fsynced) == 2 and fsynced[1] == str(shard)

    fsynced.clear()
    await backend.delete_chunk(second)
    assert fsynced == [str(shard)]


@pytest_twisted.ensureDeferred
async def test_fsync_false_skips_fsync(make: MakeBackend, fsynced: list[str]) -> None:
    """With fsync=False nothing is fsync'd (the documented relaxation)."""
    backend = make(fsync=False)
    chunk_id = new_id()
    await backend.put_chunk(chunk_id, b"x")
    writer = backend.open_chunk(new_id())
    await writer.write(b"y")
    await writer.commit()
    await backend.delete_chunk(chunk_id)
    assert fsynced == []


# -- plugin factory -------------------------------------------------------------------


@pytest.fixture
def context(tmp_path: Path, io_pool: ThreadPool) -> PluginContext:
    return PluginContext(reactor=reactor, io_pool=io_pool, data_dir=str(tmp_path / "srv"))


def test_factory_provides_interfaces() -> None:
    """The exported factory is a named IPlugin + IStorageBackendFactory."""
    assert verifyObject(IStorageBackendFactory, localStorageFactory)
    assert IPlugin.providedBy(localStorageFactory)
    assert localStorageFactory.name == "local"


def test_factory_defaults(context: PluginContext) -> None:
    """Without options: <data_dir>/data, shard depth 2, fsync on, 64 MiB chunks."""
    backend = localStorageFactory.create({"backend": "local"}, context)
    assert backend.base_path == os.path.join(context.data_dir, "data")
    assert (backend.shard_depth, backend.fsync, backend.max_chunk_size) == (2, True, MAX_CHUNK_SIZE)


def test_factory_options(context: PluginContext, tmp_path: Path) -> None:
    """[storage] keys apply, [storage.local] keys win, relative data_dir is under the server's."""
    backend = localStorageFactory.create(
        {"data_dir": str(tmp_path / "abs"), "shard_depth": 1, "fsync": False, "chunk_size_bytes": 1 << 20},
        context,
    )
    assert (backend.base_path, backend.shard_depth, backend.fsync) == (str(tmp_path / "abs"), 1, False)
    backend = localStorageFactory.create({"shard_depth": 1, "local": {"shard_depth": 3, "data_dir": "rel"}}, context)
    assert (backend.base_path, backend.shard_depth) == (os.path.join(context.data_dir, "rel"), 3)


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"shard_depth": 5}, "storage.shard_depth"),
        ({"shard_depth": "2"}, "storage.shard_depth"),
        ({"shard_depth": True}, "storage.shard_depth"),
        ({"local": {"shard_depth": -1}}, "storage.local.shard_depth"),
        ({"fsync": "yes"}, "storage.fsync"),
        ({"data_dir": 7}, "storage.data_dir"),
        ({"chunk_size_bytes": MAX_CHUNK_SIZE + 1}, "storage.chunk_size_bytes"),
        ({"chunk_size_bytes": 0}, "storage.chunk_size_bytes"),
        ({"local": {"shard_dept": 1}}, "storage.local.shard_dept"),
        ({"local": "x"}, "storage.local"),
    ],
)
def test_factory_rejects_bad_options(context: PluginContext, options: dict[str, Any], key: str) -> None:
    """Invalid options raise ConfigError whose message starts with the offending key."""
    with pytest.raises(ConfigError) as info:
        localStorageFactory.create(options, context)
    assert str(info.value).startswith(f"{key}:")


# -- unreadable files --------------------------------------------------------------


def failing_reads(monkeypatch: pytest.MonkeyPatch, path: Path, code: int) -> None:
    """Make every ``os.pread`` of the file now at ``path`` fail with ``code``,
    as a disk does for a file on bad sectors (matched by inode: a new file
    renamed to the same path reads normally, as a rewritten copy would)."""
    bad = path.stat().st_ino
    real = os.pread

    def pread(fd: int, length: int, offset: int) -> bytes:
        if os.fstat(fd).st_ino == bad:
            raise OSError(code, os.strerror(code))
        return real(fd, length, offset)

    monkeypatch.setattr(os, "pread", pread)


@pytest.mark.parametrize("code", [errno.EIO, errno.EBADMSG, errno.EUCLEAN])
@pytest_twisted.ensureDeferred
async def test_a_file_the_disk_cannot_read_is_corrupt(
    make: MakeBackend, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    """A chunk file whose reads fail with a media error is a damaged copy
    (``ChunkCorrupted``, as a failed block CRC), not an unavailable backend:
    a cluster node answers DATA_LOSS for it, so it is served from another
    copy and repaired instead of the node being taken for down (before:
    ``StorageError``, UNAVAILABLE).  Other chunks read normally."""
    backend = make(fsync=False)
    bad_id, good_id, data = new_id(), new_id(), payload(SIZE)
    await backend.put_chunk(bad_id, data)
    await backend.put_chunk(good_id, data)
    failing_reads(monkeypatch, chunk_file(backend, bad_id), code)
    (await failure_of(backend.get_chunk(bad_id))).trap(ChunkCorrupted)
    (await failure_of(backend.get_chunk_range(bad_id, BLOCK_SIZE, 10))).trap(ChunkCorrupted)
    (await failure_of(backend.verify_chunk(bad_id))).trap(ChunkCorrupted)
    assert await backend.get_chunk(good_id) == data


@pytest_twisted.ensureDeferred
async def test_a_file_out_of_reach_is_a_storage_error(make: MakeBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    """A read failing for a reason that says nothing about the bytes (a
    stale NFS handle) stays a retryable ``StorageError``, never corruption."""
    backend = make(fsync=False)
    chunk_id = new_id()
    await backend.put_chunk(chunk_id, payload(SIZE))
    failing_reads(monkeypatch, chunk_file(backend, chunk_id), errno.ESTALE)
    failure = await failure_of(backend.get_chunk(chunk_id))
    assert failure.check(StorageError) and not failure.check(ChunkCorrupted), failure
