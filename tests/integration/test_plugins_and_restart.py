"""Plugins found like a third party's, start-up errors, and restart durability."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.integration.conftest import make_client
from tests.integration.server import ServerProcess

THIRD_PARTY = textwrap.dedent('''
    """A third-party storage backend: chunks as plain files in a directory."""
    import os
    from twisted.internet.defer import succeed, fail
    from twisted.plugin import IPlugin
    from zope.interface import implementer
    from lightningstor.errors import ChunkNotFound
    from lightningstor.interfaces import (
        BackendCapabilities, ChunkInfo, IChunkWriter, IStorageBackend, IStorageBackendFactory)

    @implementer(IChunkWriter)
    class Writer:
        def __init__(self, backend, chunk_id):
            self.backend, self.chunk_id, self.parts = backend, chunk_id, []
        def write(self, data):
            self.parts.append(bytes(data)); return succeed(None)
        def commit(self):
            return self.backend.put_chunk(self.chunk_id, b"".join(self.parts))
        def abort(self):
            self.parts = []; return succeed(None)

    @implementer(IStorageBackend)
    class DirBackend:
        name = "thirdparty-dir"
        def __init__(self, root):
            self.root = root; os.makedirs(root, exist_ok=True)
        def _p(self, cid): return os.path.join(self.root, cid)
        def put_chunk(self, cid, data):
            with open(self._p(cid), "wb") as f: f.write(data)
            return succeed(None)
        def open_chunk(self, cid): return Writer(self, cid)
        def get_chunk(self, cid):
            try:
                with open(self._p(cid), "rb") as f: return succeed(f.read())
            except FileNotFoundError: return fail(ChunkNotFound(cid))
        def get_chunk_range(self, cid, offset, length):
            d = self.get_chunk(cid); d.addCallback(lambda b: b[offset:offset + length]); return d
        def delete_chunk(self, cid):
            try: os.remove(self._p(cid)); return succeed(True)
            except FileNotFoundError: return succeed(False)
        def chunk_exists(self, cid): return succeed(os.path.exists(self._p(cid)))
        def list_chunks(self):
            return succeed([ChunkInfo(n, os.path.getsize(self._p(n)), os.path.getmtime(self._p(n)))
                            for n in os.listdir(self.root)])
        def capabilities(self): return BackendCapabilities(max_chunk_size=64 << 20)
        def check(self): return succeed(None)
        def close(self): return succeed(None)

    @implementer(IPlugin, IStorageBackendFactory)
    class Factory:
        name = "thirdparty-dir"
        description = "test plugin"
        def create(self, options, context):
            return DirBackend(options["root"])

    factory = Factory()
''')


def test_third_party_storage_plugin(tmp_path: Path) -> None:
    """A backend module dropped into a twisted/plugins dir on sys.path is selectable by name
    and really stores the chunks."""
    plugdir = tmp_path / "plug" / "twisted" / "plugins"
    plugdir.mkdir(parents=True)
    (plugdir / "lightningstor_thirdparty_test.py").write_text(THIRD_PARTY)
    chunks = tmp_path / "chunks"
    cfg = tmp_path / "server.toml"
    cfg.write_text(f'[storage]\nbackend = "thirdparty-dir"\n[storage.thirdparty-dir]\nroot = "{chunks}"\n')
    data = tmp_path / "data"
    data.mkdir()
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path / "plug"), os.environ.get("PYTHONPATH", "")])}
    server = ServerProcess(data, config=str(cfg), env=env).start()
    try:
        s3 = make_client(server.endpoint)
        s3.create_bucket(Bucket="plugged")
        body = os.urandom(300_000)
        s3.put_object(Bucket="plugged", Key="k", Body=body)
        assert s3.get_object(Bucket="plugged", Key="k")["Body"].read() == body
        stored = list(chunks.iterdir())
        assert len(stored) == 1 and stored[0].read_bytes() == body
    finally:
        server.stop()


def test_unknown_backend_name_fails_startup(tmp_path: Path) -> None:
    """An unknown storage.backend stops start-up with a message listing installed backends."""
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[storage]\nbackend = "nosuch"\n')
    twistd = str(Path(sys.executable).with_name("twistd"))
    proc = subprocess.run(
        [twistd, "-n", "--pidfile=", "lightningstor", "--data-dir", str(tmp_path / "d"), "--config", str(cfg),
         "--s3-addr", "127.0.0.1:0"],
        capture_output=True, text=True, timeout=60,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "nosuch" in out and "local" in out


def test_bad_config_value_fails_startup(tmp_path: Path) -> None:
    """A bad config value fails start-up naming the key."""
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[storage]\nchunk_size_bytes = 5\n")
    twistd = str(Path(sys.executable).with_name("twistd"))
    proc = subprocess.run(
        [twistd, "-n", "--pidfile=", "lightningstor", "--data-dir", str(tmp_path / "d"), "--config", str(cfg)],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode != 0
    assert "storage.chunk_size_bytes" in proc.stdout + proc.stderr


def test_restart_keeps_everything(tmp_data: Path) -> None:
    """Objects written before a graceful restart (SIGTERM) and a SIGKILL are all there, byte-identical."""
    server = ServerProcess(tmp_data).start()
    try:
        s3 = make_client(server.endpoint)
        s3.create_bucket(Bucket="durable")
        written = {}
        for i, size in enumerate([0, 10, 70_000, 9 * 1024 * 1024 + 3]):
            body = os.urandom(size)
            s3.put_object(Bucket="durable", Key=f"obj-{i}", Body=body)
            written[f"obj-{i}"] = hashlib.md5(body).hexdigest()
        for how in ("restart", "kill"):
            if how == "restart":
                server.restart()
            else:
                server.kill()
                server.start()
            s3 = make_client(server.endpoint)
            for key, md5 in written.items():
                got = s3.get_object(Bucket="durable", Key=key)["Body"].read()
                assert hashlib.md5(got).hexdigest() == md5, (how, key)
    finally:
        server.stop()


def _preflight_status(port: int, bucket: str) -> int:
    """An unsigned CORS preflight naming only ``bucket`` (no tenant, no key)."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("OPTIONS", f"/{bucket}/k", headers={
            "Origin": "https://app.example.com", "Access-Control-Request-Method": "GET"})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def test_restart_completes_the_bucket_name_index(tmp_data: Path) -> None:
    """A data directory written by a version without the bucket name index
    (entries and marker removed from the SQLite file while the server is
    stopped, plus a stale entry an older server's delete would leave) gets
    it at the next start: the primary's pass adds the entries, drops the
    stale one and marks the index complete; unsigned preflights resolve by
    name throughout."""
    import sqlite3
    import time

    from lightningstor.core import keys
    from lightningstor.interfaces.metadata import prefix_end

    rules = {"CORSRules": [{"AllowedOrigins": ["https://app.example.com"], "AllowedMethods": ["GET"]}]}
    server = ServerProcess(tmp_data).start()
    try:
        s3 = make_client(server.endpoint)
        for name in ("idx-alpha", "idx-beta"):
            s3.create_bucket(Bucket=name)
            s3.put_bucket_cors(Bucket=name, CORSConfiguration=rules)
        assert server.port is not None and _preflight_status(server.port, "idx-beta") == 200
        server.stop()

        db = sqlite3.connect(str(tmp_data / "metadata.db"))
        with db:
            names = db.execute("SELECT key, value FROM kv WHERE key >= ? AND key < ?",
                               (keys.BUCKET_NAMES, prefix_end(keys.BUCKET_NAMES))).fetchall()
            assert {bytes(v) for _k, v in names} == {
                keys.bucket_key("default", None, "idx-alpha"), keys.bucket_key("default", None, "idx-beta")}
            assert db.execute("SELECT 1 FROM kv WHERE key = ?", (keys.BUCKET_NAMES_INDEXED,)).fetchall()
            db.execute("DELETE FROM kv WHERE key >= ? AND key < ?",
                       (keys.BUCKET_NAMES, prefix_end(keys.BUCKET_NAMES)))
            db.execute("DELETE FROM kv WHERE key = ?", (keys.BUCKET_NAMES_INDEXED,))
            stale = keys.bucket_name_key("gone-org", None, "idx-beta")
            db.execute("INSERT INTO kv (key, value, mod_revision) VALUES (?, ?, 1)",
                       (stale, keys.bucket_key("gone-org", None, "idx-beta")))
        db.close()

        first_line = len(server.output)
        server.start()
        assert server.port is not None
        assert _preflight_status(server.port, "idx-alpha") == 200
        deadline = time.monotonic() + 20
        while not any("Bucket name index:" in line for line in server.output[first_line:]):
            assert time.monotonic() < deadline, "".join(server.output[-30:])
            time.sleep(0.05)
        line = next(x for x in server.output[first_line:] if "Bucket name index:" in x)
        assert "2 entries added, 1 stale removed, complete=True" in line, line
        for name in ("idx-alpha", "idx-beta"):
            assert _preflight_status(server.port, name) == 200, name
        assert _preflight_status(server.port, "idx-none") == 403
    finally:
        server.stop()


def test_health_and_ready_without_auth(server) -> None:
    """/health and /ready answer without credentials; other paths need them."""
    import urllib.error
    import urllib.request

    with urllib.request.urlopen(server.endpoint + "/health") as r:
        assert r.status == 200
    with urllib.request.urlopen(server.endpoint + "/ready") as r:
        assert r.status == 200
        assert b"ready" in r.read()
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(server.endpoint + "/")
    assert e.value.code == 403
    assert b"<Code>AccessDenied</Code>" in e.value.read()


@pytest.mark.parametrize(("workers", "option"), [("1", "--s3-addr"), ("2", "--s3-addr"), ("1", "metrics_addr")])
def test_port_in_use_fails_startup(tmp_path: Path, workers: str, option: str) -> None:
    """A busy S3 (or metrics) port ends start-up with one line naming the
    setting, exit status 1, with one worker as with several: one worker
    printed a 47-line traceback."""
    import socket

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    config = tmp_path / "server.toml"
    s3_addr = f"127.0.0.1:{port}"
    key = "server.s3_addr"
    if option == "metrics_addr":
        config.write_text(f'[server]\nmetrics_addr = "127.0.0.1:{port}"\n')
        s3_addr, key = "127.0.0.1:0", "server.metrics_addr"
    else:
        config.write_text("")
    try:
        twistd = str(Path(sys.executable).with_name("twistd"))
        proc = subprocess.run(
            [twistd, "-n", "--pidfile=", "lightningstor", "--data-dir", str(tmp_path / "d"), "--config", str(config),
             "--s3-addr", s3_addr, "--grpc-addr", "127.0.0.1:0", "-w", workers],
            capture_output=True, text=True, timeout=60,
        )
    finally:
        busy.close()
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert f"twistd lightningstor: {key}: cannot listen on 127.0.0.1:{port}: Address already in use" in out, out
    assert "Traceback" not in out, out


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_master_key_path_that_is_no_key_file_fails_startup_in_one_line(tmp_path: Path, workers: str) -> None:
    """A directory (or a damaged file) where the master key should be stops
    start-up naming security.master_key_file: it was a traceback."""
    key = tmp_path / "master.key"
    key.mkdir()
    config = tmp_path / "server.toml"
    config.write_text(f'[security]\nmaster_key_file = "{key}"\n')
    twistd = str(Path(sys.executable).with_name("twistd"))
    proc = subprocess.run(
        [twistd, "-n", "--pidfile=", "lightningstor", "--data-dir", str(tmp_path / "d"), "--config", str(config),
         "--s3-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0", "-w", workers],
        capture_output=True, text=True, timeout=60,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert f"twistd lightningstor: security.master_key_file: {key}: Is a directory" in out, out
    assert "Traceback" not in out, out
