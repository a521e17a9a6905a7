"""Shared fixtures for in-process tests of the core on real plugins."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.python.threadpool import ThreadPool

from lightningstor.authz.grants import GrantStore
from lightningstor.authz.local import LocalAuthorizer
from lightningstor.core.credentials import CredentialStore
from lightningstor.core.service import Core
from lightningstor.metadata.sqlite import SqliteMetadataStore
from lightningstor.storage.chunks import ChunkManager
from lightningstor.storage.local import LocalFsBackend


@pytest.fixture
def io_pool() -> Iterator[ThreadPool]:
    """A started thread pool for a storage backend's file I/O."""
    pool = ThreadPool(minthreads=1, maxthreads=4, name="test-io")
    pool.start()
    yield pool
    pool.stop()


@pytest.fixture
def stores() -> Iterator[list[SqliteMetadataStore]]:
    """SQLite stores a test opens; all closed at teardown even if the test failed."""
    opened: list[SqliteMetadataStore] = []
    yield opened
    for store in opened:
        pytest_twisted.blockon(store.close())


@pytest.fixture
def pools() -> Iterator[tuple[ThreadPool, ThreadPool]]:
    """Started io and cpu pools, stopped after the test."""
    io = ThreadPool(1, 4, "test-io")
    cpu = ThreadPool(1, 2, "test-cpu")
    io.start()
    cpu.start()
    yield io, cpu
    io.stop()
    cpu.stop()


class CoreFactory:
    """Builds a Core over SQLite + the local backend in a temp dir; closes stores after the test."""

    def __init__(self, tmp_path: Path, pools: tuple[ThreadPool, ThreadPool]) -> None:
        self.tmp_path = tmp_path
        self.pools = pools
        self.stores: list[Any] = []

    def __call__(self, *, fsync: bool = True, region: str = "us-east-1", **chunk_options: Any) -> Core:
        io, cpu = self.pools
        store = SqliteMetadataStore(str(self.tmp_path / "meta.db"), reactor)
        self.stores.append(store)
        backend = LocalFsBackend(str(self.tmp_path / "chunks"), reactor, io, fsync=fsync)
        chunks = ChunkManager(backend, reactor, cpu, **chunk_options)
        return Core(store=store, backend=backend, chunks=chunks,
                    credentials=CredentialStore(store, b"x" * 43 + b"="),
                    authorizer=LocalAuthorizer(GrantStore(store, time.time), time.time, 0),
                    clock=time.time, region=region)


@pytest.fixture
def make_core(tmp_path: Path, pools: tuple[ThreadPool, ThreadPool]) -> Iterator[CoreFactory]:
    factory = CoreFactory(tmp_path, pools)
    yield factory
    for store in factory.stores:
        pytest_twisted.blockon(store.close())
