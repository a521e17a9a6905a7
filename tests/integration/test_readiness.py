"""Liveness and readiness on a real server whose storage directory breaks and recovers."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.integration.server import ServerProcess


def _get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_ready_flips_to_503_when_storage_breaks_and_back_when_restored(tmp_data: Path) -> None:
    """/ready answers 503 naming the storage check while the chunk directory is replaced
    by a regular file (as a lost mount or a wrong volume would leave it; root ignores
    permission bits, so chmod cannot simulate it), and 200 again once it is restored;
    /health stays 200 throughout (the process is alive)."""
    server = ServerProcess(tmp_data).start()
    try:
        ready, health = f"{server.endpoint}/ready", f"{server.endpoint}/health"
        status, body = _get(ready)
        assert status == 200 and body["checks"] == {"metadata": "ok", "storage": "ok"}

        chunks = tmp_data / "data" / "chunks"
        assert chunks.is_dir()
        aside = chunks.with_name("chunks.moved")
        chunks.rename(aside)
        chunks.write_bytes(b"not a directory")
        status, body = _get(ready)
        assert status == 503, body
        assert body["status"] == "unavailable"
        assert body["checks"]["metadata"] == "ok"
        assert body["checks"]["storage"] != "ok"
        assert _get(health)[0] == 200

        chunks.unlink()
        aside.rename(chunks)
        deadline = time.monotonic() + 5
        while (status := _get(ready)[0]) != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert status == 200
    finally:
        server.stop()


def test_a_storage_directory_unusable_at_start_is_reported_once_and_by_ready(tmp_data: Path, tmp_path: Path) -> None:
    """The chunk directory would be under a regular file: the server starts
    (the metadata is fine, /health answers), logs one error saying why, and
    /ready answers 503 naming the storage check.  Its first use of the
    directory used to end in an "Unhandled error in Deferred" at critical
    level."""
    (tmp_path / "afile").write_text("")
    config = tmp_path / "bad-storage.toml"
    config.write_text(f'[storage.local]\ndata_dir = "{tmp_path}/afile/chunks"\n')
    server = ServerProcess(tmp_data, config=str(config)).start()
    try:
        status, body = _get(f"{server.endpoint}/ready")
        assert status == 503 and "Not a directory" in body["checks"]["storage"], body
        deadline = time.monotonic() + 10
        while not any("Local storage is not usable" in line for line in server.output):
            assert time.monotonic() < deadline, "".join(server.output[-30:])
            time.sleep(0.1)
        assert not any("Unhandled error" in line for line in server.output)
    finally:
        server.stop()
