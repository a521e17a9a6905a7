"""A full disk, for real: the server's data dir on a small tmpfs, mounted in
a private mount namespace (``unshare --mount``) that ends with the server.

What a user of a full server must see: an upload that does not fit is
refused with 507 InsufficientStorage (not retried by SDKs, unlike a 503; the
gRPC API answers RESOURCE_EXHAUSTED), every object acknowledged before is
intact, and writes that still fit (small objects live in the metadata
store) keep working until the metadata store has no room either, which is
the same 507.  The test needs root for the mount; without it the test
is skipped, or fails under LIGHTNINGSTOR_REQUIRE_TOOLS=1 (CI).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest
from botocore.exceptions import ClientError

from lightningstor.client import LightningStorClient, errors
from tests.integration.conftest import make_client
from tests.integration.server import ROOT_ACCESS_KEY, ROOT_SECRET_KEY, ServerProcess

MiB = 1 << 20
TMPFS_MIB = 40


def _mount_namespaces_work() -> bool:
    try:
        probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "true"],
                               capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


@pytest.fixture(scope="module")
def full_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    if not _mount_namespaces_work():
        if os.environ.get("LIGHTNINGSTOR_REQUIRE_TOOLS") == "1":
            pytest.fail("a private mount namespace (unshare --mount, as root) is required")
        pytest.skip("no private mount namespace here (needs root)")
    mount = tmp_path_factory.mktemp("tmpfs")
    wrapper = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
               f'mount -t tmpfs -o size={TMPFS_MIB}m tmpfs "$0" && exec "$@"', str(mount)]
    server = ServerProcess(mount / "data", wrapper=wrapper).start()
    yield server
    server.stop()


def test_a_full_disk_refuses_what_does_not_fit_and_keeps_what_was_acknowledged(full_server: ServerProcess) -> None:
    s3 = make_client(full_server.endpoint)
    s3.create_bucket(Bucket="full")
    body = os.urandom(3 * MiB)
    stored: list[str] = []
    refused: dict[str, object] | None = None
    for i in range(2 * TMPFS_MIB // 3):
        try:
            s3.put_object(Bucket="full", Key=f"big/{i}", Body=body)
        except ClientError as e:
            refused = e.response
            break
        stored.append(f"big/{i}")
    assert refused is not None, "the tmpfs never filled up"
    assert refused["ResponseMetadata"]["HTTPStatusCode"] == 507  # type: ignore[index]
    assert refused["Error"]["Code"] == "InsufficientStorage"  # type: ignore[index]
    assert len(stored) >= TMPFS_MIB // 3 - 3  # the disk, not something else, was the limit

    # Every acknowledged object reads back whole; the refused one does not exist.
    for key in stored:
        assert s3.get_object(Bucket="full", Key=key)["Body"].read() == body
    with pytest.raises(ClientError) as missing:
        s3.head_object(Bucket="full", Key=f"big/{len(stored)}")
    assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404

    # A small object is inline in its metadata record: it still fits.
    s3.put_object(Bucket="full", Key="small", Body=b"s" * 4096)
    assert s3.get_object(Bucket="full", Key="small")["Body"].read() == b"s" * 4096

    # The gRPC API names the same refusal RESOURCE_EXHAUSTED.
    client = LightningStorClient.connect(f"grpc://{full_server.grpc_endpoint}", access_key=ROOT_ACCESS_KEY,
                                         secret_key=ROOT_SECRET_KEY, timeout=30)
    try:
        with pytest.raises(errors.ResourceExhaustedError) as grpc_refused:
            client.put_object("full", "big/grpc", body)
        assert grpc_refused.value.code == "InsufficientStorage"
    finally:
        client.close()
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="full", Prefix="big/")["Contents"]] == sorted(stored)

    # Small objects until the metadata store itself has no room: the same 507
    # (SQLite's "database or disk is full"), and what it holds still reads.
    small: list[str] = []
    for i in range(2000):
        try:
            s3.put_object(Bucket="full", Key=f"small/{i}", Body=b"%04d" % i * 1024)
        except ClientError as e:
            assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 507
            assert e.response["Error"]["Code"] == "InsufficientStorage"
            break
        small.append(f"small/{i}")
    else:
        pytest.fail("the metadata store never filled up")
    assert small
    for i in (0, len(small) - 1):
        assert s3.get_object(Bucket="full", Key=f"small/{i}")["Body"].read() == b"%04d" % i * 1024
