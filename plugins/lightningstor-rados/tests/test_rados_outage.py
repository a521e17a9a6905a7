"""With the only OSD stopped, the server answers 503 in bounded time; acknowledged data survives."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from tests.integration.conftest import make_client

from conftest import CephCluster
from rados_server import rados_server

pytestmark = pytest.mark.ceph  # needs the real cluster (conftest `ceph` fixture)
MiB = 1 << 20
OP_TIMEOUT = 5.0
BOUND = 3 * OP_TIMEOUT + 10  # a request may make a few RADOS calls in sequence


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def expect_503(call: Any) -> tuple[str, float]:
    """Run ``call``; assert it fails with a 503 S3 error; return (code, seconds taken)."""
    start = time.monotonic()
    with pytest.raises(ClientError) as info:
        call()
    elapsed = time.monotonic() - start
    err = info.value.response
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 503, err
    assert err["Error"]["Code"] in ("ServiceUnavailable", "SlowDown"), err
    return err["Error"]["Code"], elapsed


def read_when_back(s3: Any, bucket: str, key: str, deadline: float) -> bytes:
    """GET ``key``, retrying while the OSD comes back and its PGs re-peer."""
    while True:
        try:
            body: bytes = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            return body
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def test_osd_outage_gives_503_and_loses_nothing(tmp_path: Path, ceph: CephCluster) -> None:
    """Stopping the OSD makes PUT and GET fail with 503 within op_timeout-bounded time and
    /ready report unavailable; after the OSD restarts every acknowledged object reads back intact
    and writes work again."""
    with rados_server(tmp_path, ceph, "lsr-outage", "o", op_timeout=OP_TIMEOUT) as (server, s3):
        s3.create_bucket(Bucket="outage")
        acked = {"small": os.urandom(200_000), "multi": os.urandom(17 * MiB + 3)}
        for key, body in acked.items():
            s3.put_object(Bucket="outage", Key=key, Body=body)

        ceph.stop_osd()
        try:
            _, put_took = expect_503(lambda: s3.put_object(Bucket="outage", Key="during", Body=os.urandom(MiB)))
            assert put_took < BOUND
            # boto3's default response checksum validation cannot parse an error
            # response that carries x-amz-checksum-* headers (see README, "Known
            # issues"), so the GET uses a client that does not ask for checksums.
            plain = make_client(server.endpoint, response_checksum_validation="when_required",
                                read_timeout=120)
            _, get_took = expect_503(lambda: plain.get_object(Bucket="outage", Key="multi")["Body"].read())
            assert get_took < BOUND
            with pytest.raises(urllib.error.HTTPError) as ready:
                urllib.request.urlopen(f"{server.endpoint}/ready", timeout=BOUND)
            assert ready.value.code == 503
        finally:
            ceph.start_osd()

        deadline = time.monotonic() + 90
        for key, body in acked.items():
            assert sha(read_when_back(s3, "outage", key, deadline)) == sha(body), key
        after = os.urandom(MiB + 9)
        s3.put_object(Bucket="outage", Key="after", Body=after)
        assert s3.get_object(Bucket="outage", Key="after")["Body"].read() == after


def test_osd_outage_listing_fails_and_shutdown_ends(tmp_path: Path, ceph: CephCluster) -> None:
    """With the OSD down: the orphan collector's listing fails instead of
    reporting an empty pool ("collected 0 orphaned chunks", exit 0), and
    SIGTERM with GETs stuck in librados ends the server within the op
    timeout (it waited for ever: the cluster handle was shut down under the
    running calls, whose completions then never came)."""
    extra = "[server]\nshutdown_timeout_seconds = 2\n"
    with rados_server(tmp_path, ceph, "lsr-outage", "s", op_timeout=OP_TIMEOUT, extra=extra) as (server, s3):
        s3.create_bucket(Bucket="stuck")
        s3.put_object(Bucket="stuck", Key="k", Body=os.urandom(300_000))
        ceph.stop_osd()
        try:
            admin = str(Path(sys.executable).with_name("lightningstor-admin"))
            collect = subprocess.run(
                [admin, "collect", "--config", str(tmp_path / "server.toml"), "--data-dir", str(tmp_path / "data"),
                 "--grace-seconds", "0", "--unsafe-short-grace"],
                capture_output=True, text=True, timeout=BOUND * 3,
            )
            assert collect.returncode != 0, collect.stdout + collect.stderr
            assert "timed out" in collect.stderr, collect.stderr

            plain = make_client(server.endpoint, response_checksum_validation="when_required", read_timeout=120)
            outcomes: list[object] = []

            def get() -> None:
                try:
                    outcomes.append(plain.get_object(Bucket="stuck", Key="k")["Body"].read())
                except Exception as e:  # noqa: BLE001 - any end will do: the server is stopping
                    outcomes.append(e)

            readers = [threading.Thread(target=get, daemon=True) for _ in range(3)]
            for reader in readers:
                reader.start()
            time.sleep(1.0)  # the GETs are in librados now, waiting for the OSD
            started = time.monotonic()
            code = server.stop(timeout=OP_TIMEOUT + 30)
            took = time.monotonic() - started
            # twistd ends a SIGTERM shutdown by re-raising the signal: -15 is a clean
            # stop; -9 is stop()'s SIGKILL after its timeout.
            assert code == -signal.SIGTERM, f"the server did not exit by itself (exit {code}) after {took:.0f}s"
            assert took < OP_TIMEOUT + 15
            for reader in readers:
                reader.join(30)
            assert len(outcomes) == 3
        finally:
            ceph.start_osd()
