"""The conformance suite every :class:`IStorageBackend` implementation must pass.

Use it through a thin pytest class that says how to build a backend::

    class TestMyBackend(StorageBackendContract):
        def make_backend(self, tmp_path):
            return MyBackend(..., self.reactor, self.io_pool)

``make_backend`` may return the backend, a Deferred or a coroutine of it, and
must hand back an *empty* backend that nothing else writes to while the test
runs (``list_chunks`` is compared exactly).  ``self.reactor`` is the running
reactor and ``self.io_pool`` a started thread pool the suite stops afterwards.
The suite closes every backend it made when the test ends.

Sizes straddle 64 KiB, the block size of the ``local`` backend's checksums,
so block-boundary bugs show; other backends simply see odd sizes.
"""

from __future__ import annotations

import inspect
import itertools
import os
import random
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred, DeferredList, gatherResults
from twisted.python.threadpool import ThreadPool
from zope.interface.verify import verifyObject

from lightningstor.errors import ChunkNotFound
from lightningstor.interfaces.storage import (
    BackendCapabilities,
    ChunkInfo,
    IChunkWriter,
    IStorageBackend,
)

BLOCK = 64 * 1024
SIZES = [0, 1, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 17]


def new_id() -> str:
    return uuid.uuid4().hex


def payload(size: int, seed: int = 0) -> bytes:
    """Deterministic pseudo-random bytes (a shifted or misplaced read shows)."""
    return random.Random(seed).randbytes(size)


async def failure_of(d: Deferred[Any]) -> Any:
    """The Failure ``d`` fires with (asserting that it does fail)."""
    [(ok, value)] = await DeferredList([d], consumeErrors=True)
    assert not ok, f"expected a failure, got {value!r}"
    return value


class StorageBackendContract:
    """Mixin of contract tests; subclasses implement :meth:`make_backend`."""

    reactor: Any
    io_pool: ThreadPool

    def make_backend(self, tmp_path: Path) -> Any:
        """Return an empty IStorageBackend (or a Deferred/awaitable of one)."""
        raise NotImplementedError

    @pytest.fixture(autouse=True)
    def _backend_resources(self) -> Iterator[None]:
        from twisted.internet import reactor

        self.reactor = reactor
        self.io_pool = ThreadPool(minthreads=1, maxthreads=4, name="contract-io")
        self.io_pool.start()
        self._backends: list[Any] = []
        yield
        try:
            for backend in self._backends:
                pytest_twisted.blockon(backend.close())
        finally:
            self.io_pool.stop()

    async def open_backend(self, tmp_path: Path) -> Any:
        backend = self.make_backend(tmp_path)
        if inspect.isawaitable(backend):
            backend = await backend
        self._backends.append(backend)
        return backend

    async def stream(self, backend: Any, chunk_id: str, parts: list[bytes]) -> Any:
        """Write ``parts`` through open_chunk without committing; return the writer."""
        writer = backend.open_chunk(chunk_id)
        for part in parts:
            await writer.write(part)
        return writer

    # -- shape ---------------------------------------------------------------

    @pytest_twisted.ensureDeferred
    async def test_provides_interface(self, tmp_path: Path) -> None:
        """The backend and its chunk writers provide their interfaces and a name."""
        backend = await self.open_backend(tmp_path)
        assert verifyObject(IStorageBackend, backend)
        assert isinstance(backend.name, str) and backend.name
        writer = backend.open_chunk(new_id())
        assert verifyObject(IChunkWriter, writer)
        await writer.abort()

    @pytest_twisted.ensureDeferred
    async def test_capabilities(self, tmp_path: Path) -> None:
        """capabilities() is a BackendCapabilities with a usable chunk size (>= 1 MiB)."""
        backend = await self.open_backend(tmp_path)
        caps = backend.capabilities()
        assert isinstance(caps, BackendCapabilities)
        assert caps.max_chunk_size >= 1 << 20
        assert caps.replicas >= 1

    @pytest_twisted.ensureDeferred
    async def test_check(self, tmp_path: Path) -> None:
        """check() fires with None on a healthy backend."""
        backend = await self.open_backend(tmp_path)
        assert await backend.check() is None

    # -- whole chunks ----------------------------------------------------------

    @pytest.mark.parametrize("size", SIZES)
    @pytest_twisted.ensureDeferred
    async def test_put_then_get(self, tmp_path: Path, size: int) -> None:
        """put_chunk then get_chunk returns the exact bytes, for sizes around block edges."""
        backend = await self.open_backend(tmp_path)
        chunk_id, data = new_id(), payload(size)
        assert await backend.put_chunk(chunk_id, data) is None
        assert await backend.get_chunk(chunk_id) == data
        assert await backend.chunk_exists(chunk_id) is True

    @pytest_twisted.ensureDeferred
    async def test_overwrite(self, tmp_path: Path) -> None:
        """A second put_chunk under the same id replaces the bytes (also shorter ones)."""
        backend = await self.open_backend(tmp_path)
        chunk_id = new_id()
        await backend.put_chunk(chunk_id, payload(2 * BLOCK, seed=1))
        await backend.put_chunk(chunk_id, payload(100, seed=2))
        assert await backend.get_chunk(chunk_id) == payload(100, seed=2)

    @pytest_twisted.ensureDeferred
    async def test_chunks_are_independent(self, tmp_path: Path) -> None:
        """Concurrent puts of different ids each keep their own bytes."""
        backend = await self.open_backend(tmp_path)
        ids = [new_id() for _ in range(8)]
        await gatherResults([backend.put_chunk(c, payload(1000 + i, seed=i)) for i, c in enumerate(ids)])
        got = await gatherResults([backend.get_chunk(c) for c in ids])
        assert got == [payload(1000 + i, seed=i) for i in range(8)]

    @pytest_twisted.ensureDeferred
    async def test_missing_chunk(self, tmp_path: Path) -> None:
        """get, get_chunk_range of an absent id fail with ChunkNotFound; exists is False."""
        backend = await self.open_backend(tmp_path)
        chunk_id = new_id()
        (await failure_of(backend.get_chunk(chunk_id))).trap(ChunkNotFound)
        (await failure_of(backend.get_chunk_range(chunk_id, 0, 10))).trap(ChunkNotFound)
        assert await backend.chunk_exists(chunk_id) is False

    # -- ranges ----------------------------------------------------------------

    @pytest.mark.parametrize(
        ("offset", "length"),
        [
            (0, 10),
            (5, 100),
            (BLOCK - 3, 6),  # across the first block boundary
            (BLOCK, BLOCK),  # exactly the second block
            (BLOCK - 1, BLOCK + 2),  # touches three blocks
            (10, 3 * BLOCK),  # most of the chunk
            (3 * BLOCK, 17),  # the short last block
        ],
    )
    @pytest_twisted.ensureDeferred
    async def test_range_reads(self, tmp_path: Path, offset: int, length: int) -> None:
        """get_chunk_range returns exactly the requested slice, across block edges."""
        backend = await self.open_backend(tmp_path)
        chunk_id, data = new_id(), payload(3 * BLOCK + 17)
        await backend.put_chunk(chunk_id, data)
        assert await backend.get_chunk_range(chunk_id, offset, length) == data[offset : offset + length]

    @pytest_twisted.ensureDeferred
    async def test_range_clipped_at_end(self, tmp_path: Path) -> None:
        """A range running past the end is clipped; one starting past it is empty."""
        backend = await self.open_backend(tmp_path)
        chunk_id, data = new_id(), payload(BLOCK + 10)
        await backend.put_chunk(chunk_id, data)
        assert await backend.get_chunk_range(chunk_id, BLOCK, 1000) == data[BLOCK:]
        assert await backend.get_chunk_range(chunk_id, 0, 10 * BLOCK) == data
        assert await backend.get_chunk_range(chunk_id, BLOCK + 10, 5) == b""
        assert await backend.get_chunk_range(chunk_id, 5 * BLOCK, 5) == b""
        assert await backend.get_chunk_range(chunk_id, 3, 0) == b""

    # -- delete ----------------------------------------------------------------

    @pytest_twisted.ensureDeferred
    async def test_delete_is_idempotent(self, tmp_path: Path) -> None:
        """delete_chunk answers True once, then False; the chunk is gone."""
        backend = await self.open_backend(tmp_path)
        chunk_id = new_id()
        await backend.put_chunk(chunk_id, b"bye")
        assert await backend.delete_chunk(chunk_id) is True
        assert await backend.delete_chunk(chunk_id) is False
        assert await backend.chunk_exists(chunk_id) is False
        (await failure_of(backend.get_chunk(chunk_id))).trap(ChunkNotFound)

    @pytest_twisted.ensureDeferred
    async def test_delete_leaves_others(self, tmp_path: Path) -> None:
        """Deleting one chunk does not touch another."""
        backend = await self.open_backend(tmp_path)
        keep, drop = new_id(), new_id()
        await backend.put_chunk(keep, b"keep")
        await backend.put_chunk(drop, b"drop")
        await backend.delete_chunk(drop)
        assert await backend.get_chunk(keep) == b"keep"

    # -- streaming writers -------------------------------------------------------

    @pytest_twisted.ensureDeferred
    async def test_streamed_chunk_invisible_until_commit(self, tmp_path: Path) -> None:
        """Bytes written through open_chunk are not readable or listed before commit."""
        backend = await self.open_backend(tmp_path)
        chunk_id = new_id()
        writer = await self.stream(backend, chunk_id, [payload(1000), payload(BLOCK)])
        assert await backend.chunk_exists(chunk_id) is False
        (await failure_of(backend.get_chunk(chunk_id))).trap(ChunkNotFound)
        assert chunk_id not in {c.chunk_id for c in await backend.list_chunks()}
        assert await writer.commit() is None
        assert await backend.get_chunk(chunk_id) == payload(1000) + payload(BLOCK)

    @pytest_twisted.ensureDeferred
    async def test_streamed_unaligned_writes(self, tmp_path: Path) -> None:
        """Writes of odd sizes that straddle block edges reassemble exactly."""
        backend = await self.open_backend(tmp_path)
        chunk_id, data = new_id(), payload(5 * BLOCK + 123)
        cuts = [0, 1, 7, BLOCK - 1, BLOCK + 5, 3 * BLOCK, 3 * BLOCK + 1, len(data)]
        parts = [data[a:b] for a, b in itertools.pairwise(cuts)]
        writer = await self.stream(backend, chunk_id, parts)
        await writer.commit()
        assert await backend.get_chunk(chunk_id) == data
        assert await backend.get_chunk_range(chunk_id, BLOCK - 2, 2 * BLOCK) == data[BLOCK - 2 : 3 * BLOCK - 2]

    @pytest_twisted.ensureDeferred
    async def test_streamed_empty_chunk(self, tmp_path: Path) -> None:
        """A writer committed without writes stores an empty chunk."""
        backend = await self.open_backend(tmp_path)
        chunk_id = new_id()
        await backend.open_chunk(chunk_id).commit()
        assert await backend.get_chunk(chunk_id) == b""

    @pytest_twisted.ensureDeferred
    async def test_streamed_overwrite(self, tmp_path: Path) -> None:
        """Committing a streamed chunk over an existing id replaces it."""
        backend = await self.open_backend(tmp_path)
        chunk_id = new_id()
        await backend.put_chunk(chunk_id, b"old")
        writer = await self.stream(backend, chunk_id, [b"new", b"er"])
        assert await backend.get_chunk(chunk_id) == b"old"
        await writer.commit()
        assert await backend.get_chunk(chunk_id) == b"newer"

    @pytest_twisted.ensureDeferred
    async def test_abort_leaves_nothing(self, tmp_path: Path) -> None:
        """An aborted writer leaves no chunk behind, and aborting twice is harmless."""
        backend = await self.open_backend(tmp_path)
        chunk_id = new_id()
        writer = await self.stream(backend, chunk_id, [payload(BLOCK + 1)])
        assert await writer.abort() is None
        await writer.abort()
        assert await backend.chunk_exists(chunk_id) is False
        assert await backend.list_chunks() == []

    @pytest_twisted.ensureDeferred
    async def test_abort_without_writes(self, tmp_path: Path) -> None:
        """Aborting a writer that never wrote succeeds."""
        backend = await self.open_backend(tmp_path)
        assert await backend.open_chunk(new_id()).abort() is None
        assert await backend.list_chunks() == []

    # -- listing -------------------------------------------------------------

    @pytest_twisted.ensureDeferred
    async def test_list_chunks(self, tmp_path: Path) -> None:
        """list_chunks names every stored chunk once, with its data size and a timestamp."""
        backend = await self.open_backend(tmp_path)
        assert await backend.list_chunks() == []
        sizes = {new_id(): size for size in (0, 5, BLOCK, 2 * BLOCK + 3)}
        for chunk_id, size in sizes.items():
            await backend.put_chunk(chunk_id, payload(size))
        gone = new_id()
        await backend.put_chunk(gone, b"x")
        await backend.delete_chunk(gone)
        listed = await backend.list_chunks()
        assert all(isinstance(info, ChunkInfo) for info in listed)
        assert {info.chunk_id: info.size for info in listed} == sizes
        assert len(listed) == len(sizes)
        assert all(info.created_at > 0 for info in listed)

    @pytest_twisted.ensureDeferred
    async def test_dash_ids(self, tmp_path: Path) -> None:
        """Ids in dashed uuid form (str(uuid4())) work like hex ids."""
        backend = await self.open_backend(tmp_path)
        chunk_id = str(uuid.uuid4())
        await backend.put_chunk(chunk_id, os.urandom(10))
        assert await backend.chunk_exists(chunk_id) is True
        assert [info.chunk_id for info in await backend.list_chunks()] == [chunk_id]
