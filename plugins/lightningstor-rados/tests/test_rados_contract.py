"""The storage-backend contract suite, and RADOS-specific behaviour, against a real cluster."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from lightningstor.errors import ChunkCorrupted, ChunkNotFound, ConfigError, StorageError
from lightningstor.interfaces import DurabilityLevel, PluginContext
from tests.contract.storage_contract import StorageBackendContract, failure_of, new_id, payload

from conftest import CephCluster

pytestmark = pytest.mark.ceph  # needs the real cluster (conftest `ceph` fixture)
POOL = "lsr-contract"


def make(ceph: CephCluster, reactor: Any, io_pool: Any, namespace: str, **extra: object) -> Any:
    """A backend built the way the server builds it: through the registered factory."""
    from twisted.plugins.lightningstor_rados import radosStorageFactory

    options = {"backend": "rados", "rados": ceph.rados_table(POOL, namespace, **extra)}
    context = PluginContext(reactor=reactor, io_pool=io_pool, data_dir="/nonexistent")
    return radosStorageFactory.create(options, context)


class TestRadosContract(StorageBackendContract):
    """LightningStor's IStorageBackend contract, run against RADOS (one namespace per test)."""

    @pytest.fixture(autouse=True)
    def _cluster(self, ceph: CephCluster) -> None:
        self.ceph = ceph

    def make_backend(self, tmp_path: Path) -> Any:
        return make(self.ceph, self.reactor, self.io_pool, f"c-{uuid.uuid4().hex[:12]}")


class TestRadosSpecifics(StorageBackendContract):
    """What the contract does not pin: durability report, checksums, namespaces, start-up errors.

    Subclasses the contract mixin only for its reactor/pool fixture and cleanup;
    the contract tests themselves run in TestRadosContract.
    """

    @pytest.fixture(autouse=True)
    def _cluster(self, ceph: CephCluster) -> None:
        self.ceph = ceph

    def make_backend(self, tmp_path: Path) -> Any:
        return make(self.ceph, self.reactor, self.io_pool, f"s-{uuid.uuid4().hex[:12]}")

    def raw_ioctx(self, namespace: str) -> Any:
        import rados

        cluster = rados.Rados(conffile=self.ceph.conf_file, rados_id="admin", conf={"keyring": self.ceph.keyring})
        cluster.connect(timeout=10)
        ioctx = cluster.open_ioctx(POOL)
        ioctx.set_namespace(namespace)
        return cluster, ioctx

    @pytest_twisted.ensureDeferred
    async def test_capabilities_report_pool_size(self, tmp_path: Path) -> None:
        """A size-1 replicated pool (the test cluster's default) is reported as LOCAL, 1 replica."""
        backend = await self.open_backend(tmp_path)
        caps = backend.capabilities()
        assert (caps.durability, caps.replicas) == (DurabilityLevel.LOCAL, 1)
        assert caps.max_chunk_size == 64 << 20

    @pytest_twisted.ensureDeferred
    async def test_chunks_are_objects_named_by_id_in_the_namespace(self, tmp_path: Path) -> None:
        """A chunk is the RADOS object <id> in the configured namespace, with its CRC32C xattr."""
        ns = f"n-{uuid.uuid4().hex[:12]}"
        backend = make(self.ceph, self.reactor, self.io_pool, ns)
        self._backends.append(backend)
        chunk_id, data = new_id(), payload(1000)
        await backend.put_chunk(chunk_id, data)
        import rados

        cluster, ioctx = self.raw_ioctx(ns)
        try:
            assert ioctx.read(chunk_id, 2000) == data
            assert len(ioctx.get_xattr(chunk_id, "lightningstor.crc32c")) == 4
            ioctx.set_namespace("")
            with pytest.raises(rados.ObjectNotFound):
                ioctx.stat(chunk_id)
        finally:
            ioctx.close()
            cluster.shutdown()

    @pytest_twisted.ensureDeferred
    async def test_corrupted_chunk_is_detected(self, tmp_path: Path) -> None:
        """Bytes changed behind the backend's back fail a full read with ChunkCorrupted."""
        ns = f"k-{uuid.uuid4().hex[:12]}"
        backend = make(self.ceph, self.reactor, self.io_pool, ns)
        self._backends.append(backend)
        chunk_id = new_id()
        await backend.put_chunk(chunk_id, b"good data")
        cluster, ioctx = self.raw_ioctx(ns)
        try:
            ioctx.write(chunk_id, b"B", 0)  # same length, one byte flipped, xattr untouched
        finally:
            ioctx.close()
            cluster.shutdown()
        (await failure_of(backend.get_chunk(chunk_id))).trap(ChunkCorrupted)

    @pytest_twisted.ensureDeferred
    async def test_eio_on_a_read_is_corruption_not_an_outage(self, tmp_path: Path) -> None:
        """A read RADOS fails with EIO (an erasure-coded object short of shards)
        is ChunkCorrupted, as the local backend's EIO: reads go elsewhere and
        scrub reports the chunk, where a storage error made it a 503 for ever.
        A write's EIO stays a storage error."""
        import rados

        backend = await self.open_backend(tmp_path)
        chunk_id = new_id()
        await backend.put_chunk(chunk_id, b"data")

        class Failing:
            def __init__(self, real: Any) -> None:
                self.real = real

            def __getattr__(self, name: str) -> Any:
                return getattr(self.real, name)

            def read(self, *args: Any) -> bytes:
                raise rados.IOError("injected", errno=5)

            def operate_write_op(self, *args: Any) -> None:
                raise rados.IOError("injected", errno=5)

        backend._ioctx = Failing(backend._ioctx)
        (await failure_of(backend.get_chunk(chunk_id))).trap(ChunkCorrupted)
        (await failure_of(backend.get_chunk_range(chunk_id, 0, 2))).trap(ChunkCorrupted)
        (await failure_of(backend.put_chunk(new_id(), b"x"))).trap(StorageError)

    @pytest_twisted.ensureDeferred
    async def test_namespaces_are_isolated(self, tmp_path: Path) -> None:
        """Two backends on one pool with different namespaces do not see each other's chunks."""
        a = await self.open_backend(tmp_path)
        b = await self.open_backend(tmp_path)
        chunk_id = new_id()
        await a.put_chunk(chunk_id, b"in a")
        assert await b.chunk_exists(chunk_id) is False
        (await failure_of(b.get_chunk(chunk_id))).trap(ChunkNotFound)
        assert await b.list_chunks() == []

    @pytest_twisted.ensureDeferred
    async def test_check_probe_is_not_listed(self, tmp_path: Path) -> None:
        """check() writes a probe object that list_chunks never reports as a chunk."""
        backend = await self.open_backend(tmp_path)
        await backend.check()
        assert await backend.list_chunks() == []

    def test_missing_pool_without_create_fails_start(self) -> None:
        """A pool that does not exist, with create_pool off, is a ConfigError naming the key."""
        with pytest.raises(ConfigError, match=r"storage\.rados\.pool: pool 'lsr-absent-[0-9a-f]+' does not exist"):
            from twisted.plugins.lightningstor_rados import radosStorageFactory

            table = self.ceph.rados_table(f"lsr-absent-{uuid.uuid4().hex[:6]}", create_pool=False)
            radosStorageFactory.create({"rados": table}, PluginContext(self.reactor, self.io_pool, "/x"))

    def test_bad_keyring_fails_start(self, tmp_path: Path) -> None:
        """A keyring that does not authenticate is a ConfigError within the connect timeout."""
        bad = tmp_path / "keyring"
        bad.write_text("[client.admin]\n\tkey = AQBbPJdgAAAAABAAd8jYmV2+7I5wMxbPuMxm1Q==\n")
        from twisted.plugins.lightningstor_rados import radosStorageFactory

        table = self.ceph.rados_table(POOL, keyring=str(bad), connect_timeout_seconds=3)
        with pytest.raises(ConfigError, match=r"storage\.rados: cannot connect"):
            radosStorageFactory.create({"rados": table}, PluginContext(self.reactor, self.io_pool, "/x"))

    def _key(self, tmp_path: Path, name: str, osd_caps: str) -> str:
        """A keyring for a new client ``name`` with the docs' monitor caps and ``osd_caps``."""
        keyring = tmp_path / f"{name}.keyring"
        out = subprocess.run(
            ["ceph", "-c", self.ceph.conf_file, "-k", self.ceph.keyring, "auth", "get-or-create", f"client.{name}",
             "mon", "profile simple-rados-client", "osd", osd_caps],
            capture_output=True, text=True, timeout=60, check=True,
        ).stdout
        keyring.write_text(out)
        return str(keyring)

    def test_key_without_osd_rw_caps_fails_start_naming_the_user(self, tmp_path: Path) -> None:
        """A key that may connect but not read and write the pool stops start-up with a
        ConfigError naming the user and the caps to give (the server used to start and
        answer every write 503); the caps docs/rados.md gives start it."""
        from twisted.plugins.lightningstor_rados import radosStorageFactory

        name = f"lsr-{uuid.uuid4().hex[:8]}"
        context = PluginContext(self.reactor, self.io_pool, "/x")
        self._backends.append(make(self.ceph, self.reactor, self.io_pool, "caps"))  # the pool exists
        weak = self._key(tmp_path, name, f"profile simple-rados-client pool={POOL}")
        table = {**self.ceph.rados_table(POOL, "caps", create_pool=False), "user": name, "keyring": weak}
        with pytest.raises(ConfigError, match=rf"^storage\.rados\.user: client\.{name} may not read and write "
                                              rf"pool '{POOL}', namespace 'caps' \(EPERM\).*allow rw pool={POOL}"):
            radosStorageFactory.create({"rados": table}, context)
        good = self._key(tmp_path, name + "-rw", f"allow rw pool={POOL} namespace=caps")
        backend = radosStorageFactory.create(
            {"rados": {**table, "user": name + "-rw", "keyring": good}}, context
        )
        self._backends.append(backend)
