"""A master key file that does not belong to the data: the real server
refuses it at start, and a restarted worker refuses it too, so nothing is
written under a key that cannot read what is stored (core/credentials.py,
``check_master_key``)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError
from cryptography.fernet import Fernet

from tests.integration.conftest import make_client
from tests.integration.server import ServerProcess
from tests.unit.test_admin_iam import _admin

_REFUSAL = "does not open this metadata store"


def _put_objects(s3: object, bucket: str) -> dict[str, bytes]:
    objects = {"sse": os.urandom(100_000), "plain": os.urandom(10_000)}
    s3.create_bucket(Bucket=bucket)  # type: ignore[attr-defined]
    s3.put_object(Bucket=bucket, Key="sse", Body=objects["sse"], ServerSideEncryption="AES256")  # type: ignore[attr-defined]
    s3.put_object(Bucket=bucket, Key="plain", Body=objects["plain"])  # type: ignore[attr-defined]
    return objects


def _read_objects(s3: object, bucket: str) -> dict[str, bytes]:
    return {k: s3.get_object(Bucket=bucket, Key=k)["Body"].read() for k in ("sse", "plain")}  # type: ignore[attr-defined]


def test_a_replaced_master_key_file_stops_the_start(tmp_data: Path) -> None:
    """Without the root key in the environment the server used to start on
    any key file, report ready, and answer every signed request 500 (and
    wrap new SSE-S3 objects under the new key).  Now the start stops with
    status 1 and one line naming the file; with the right file back, every
    object reads back."""
    server = ServerProcess(tmp_data).start()
    try:
        objects = _put_objects(make_client(server.endpoint), "keyed")
    finally:
        server.stop()
    key_file = tmp_data / "master.key"
    right = key_file.read_bytes()
    key_file.write_bytes(Fernet.generate_key() + b"\n")

    twistd = str(Path(sys.executable).with_name("twistd"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIGHTNINGSTOR_")}
    started = time.monotonic()
    proc = subprocess.run(
        [twistd, "-n", "--pidfile=", "lightningstor", "--data-dir", str(tmp_data), "--workers", "1",
         "--s3-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0"],
        capture_output=True, text=True, timeout=90, env=env, cwd=str(tmp_data.parent),
    )
    assert proc.returncode == 1, proc.stdout[-3000:]
    refusals = [line for line in proc.stdout.splitlines() if _REFUSAL in line]
    assert len(refusals) == 1 and str(key_file) in refusals[0], proc.stdout[-3000:]
    assert "Traceback" not in proc.stdout
    assert time.monotonic() - started < 60

    key_file.write_bytes(right)
    server.start()
    try:
        assert _read_objects(make_client(server.endpoint), "keyed") == objects
    finally:
        server.stop()


def test_a_restarted_worker_refuses_a_replaced_key_file(tmp_data: Path) -> None:
    """With two workers, only the supervisor's first start used to look at
    the key: a worker restarted after the file was replaced served with the
    new key.  Now it stops in its start-up, the supervisor tries again with
    its backoff, and once the file is right the worker is back and reads
    every object."""
    server = ServerProcess(tmp_data, extra_args=["--workers", "2"]).start()
    try:
        pids = server.ready_workers(2)
        s3 = make_client(server.endpoint)
        objects = _put_objects(s3, "keyed")
        key_file = tmp_data / "master.key"
        right = key_file.read_bytes()
        key_file.write_bytes(Fernet.generate_key() + b"\n")
        first_line = len(server.output)
        os.kill(pids[1], 9)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(
            "Worker 1" in line and "trying again" in line for line in server.output[first_line:]
        ):
            time.sleep(0.1)
        after = "".join(server.output[first_line:])
        assert _REFUSAL in after and re.search(r"Worker 1 .* trying again in 2 s", after), after[-3000:]
        key_file.write_bytes(right)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(
            "Worker 1 ready" in line for line in server.output[first_line:]
        ):
            time.sleep(0.1)
        assert any("Worker 1 ready" in line for line in server.output[first_line:]), "".join(server.output[-50:])
        # Each request is a new connection; both workers serve some of them.
        for _ in range(6):
            assert _read_objects(make_client(server.endpoint), "keyed") == objects
    finally:
        server.stop()


def test_a_lost_master_key_is_adopted_with_what_it_costs(tmp_data: Path) -> None:
    """The key file is lost for good: ``key adopt-master`` refuses without
    --yes and changes nothing; with it, it forgets the access keys only the
    lost key opened and makes the new file the store's.  The server then
    starts (the root key from the environment made again), plain objects
    read back, SSE-S3 objects do not (500), and new keys work."""
    server = ServerProcess(tmp_data).start()
    try:
        objects = _put_objects(make_client(server.endpoint), "keyed")
    finally:
        server.stop()
    assert _admin(tmp_data, "principal", "create", "alice", "--org", "acme", "--role", "read-only").returncode == 0
    assert _admin(tmp_data, "key", "create", "alice", "--json").returncode == 0
    same = _admin(tmp_data, "key", "adopt-master", "--yes")
    assert same.returncode == 0 and "nothing to adopt" in same.stdout, same.stderr

    key_file = tmp_data / "master.key"
    key_file.write_bytes(Fernet.generate_key() + b"\n")
    before = (tmp_data / "metadata.db").read_bytes()
    refused = _admin(tmp_data, "key", "adopt-master")
    assert refused.returncode == 2 and "--yes" in refused.stderr, refused.stderr
    assert (tmp_data / "metadata.db").read_bytes() == before
    adopted = _admin(tmp_data, "key", "adopt-master", "--yes", "--json")
    assert adopted.returncode == 0, adopted.stderr
    assert json.loads(adopted.stdout) == {"forgotten": 2}  # the root key and alice's
    assert json.loads(_admin(tmp_data, "key", "list", "alice", "--json").stdout) == []
    # What is lost with the key: `sse rewrap` names the SSE-S3 objects it wrapped.
    lost = _admin(tmp_data, "sse", "rewrap", "--json")
    assert lost.returncode == 3, lost.stderr
    report = json.loads(lost.stdout)
    assert report["unreadable"] == 1 and report["plain"] == 1, report
    assert [u["key"] for u in report["unreadable_keys"]] == ["sse"], report

    server.start()
    try:
        s3 = make_client(server.endpoint)
        assert s3.get_object(Bucket="keyed", Key="plain")["Body"].read() == objects["plain"]
        with pytest.raises(ClientError) as caught:
            s3.get_object(Bucket="keyed", Key="sse")
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
        made = json.loads(_admin(tmp_data, "key", "create", "alice", "--json").stdout)
        alice = boto3.client(
            "s3", endpoint_url=server.endpoint, aws_access_key_id=made["access_key_id"],
            aws_secret_access_key=made["secret_access_key"], region_name="us-east-1",
        )
        assert alice.list_buckets()["ResponseMetadata"]["HTTPStatusCode"] == 200  # signed with the new key
    finally:
        server.stop()
