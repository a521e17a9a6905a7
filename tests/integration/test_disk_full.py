"""A full disk, for real: the server's data dir on a small tmpfs, mounted in
a private mount namespace (``unshare --mount``) that ends with the server.

What a user of a full server must see: an upload that does not fit is
refused with 507 InsufficientStorage (not retried by SDKs, unlike a 503; the
gRPC API answers RESOURCE_EXHAUSTED), every object acknowledged before is
intact, and writes that still fit (small objects live in the metadata
store) keep working until the metadata store has no room either, which is
the same 507.

With a free-space reserve (``[storage] min_free_bytes``) the server stops
adding object data *before* the disk is full, so deletes still find room
and a full server can be emptied (the second test).  The first test turns
the reserve off explicitly (the 64 MiB default is more than its 40 MiB disk)
to show what happens without one.

The tests need root for the mount; without it they are skipped, or fail
under LIGHTNINGSTOR_REQUIRE_TOOLS=1 (CI).
"""

from __future__ import annotations

import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from lightningstor.errors import RESERVE_MESSAGE
from tests.integration.conftest import make_client
from tests.integration.full import assert_grpc_put_refused, assert_insufficient_storage, fill_until_refused
from tests.integration.server import ServerProcess
from tests.integration.tools import require_mount_namespaces, tmpfs_wrapper, tool

MiB = 1 << 20
TMPFS_MIB = 40


def _config(directory: Path, min_free_bytes: int) -> str:
    """A config file (outside the tmpfs) setting the free-space reserve."""
    path = directory / f"reserve-{min_free_bytes}.toml"
    path.write_text(f"[storage]\nmin_free_bytes = {min_free_bytes}\n")
    return str(path)


@pytest.fixture(scope="module")
def full_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    require_mount_namespaces()
    mount = tmp_path_factory.mktemp("tmpfs")
    wrapper = tmpfs_wrapper(mount, TMPFS_MIB)
    # No reserve: this server shows the disk filling up for real.
    config = _config(tmp_path_factory.mktemp("conf"), 0)
    server = ServerProcess(mount / "data", wrapper=wrapper, config=config).start()
    yield server
    # SIGKILL: its audit log is on the full disk too, and a clean stop waits
    # 10 s for the writer's record that cannot be written (nothing about the
    # stop is checked here).
    server.kill()


def test_a_full_disk_refuses_what_does_not_fit_and_keeps_what_was_acknowledged(full_server: ServerProcess) -> None:
    s3 = make_client(full_server.endpoint)
    s3.create_bucket(Bucket="full")
    body = os.urandom(3 * MiB)
    stored, refused = fill_until_refused(s3, "full", ((f"big/{i}", body) for i in range(2 * TMPFS_MIB // 3)))
    assert_insufficient_storage(refused)
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
    assert_grpc_put_refused(full_server.grpc_endpoint, "full", "big/grpc", body)
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

    # Full is not broken: the server stays ready (an orchestrator that took
    # it away would take away the deletes that free space), and reads work.
    with urllib.request.urlopen(f"{full_server.endpoint}/ready", timeout=10) as ready:
        assert ready.status == 200


# -- with a free-space reserve ------------------------------------------------

RESERVE_MIB = 10
PART_MIB = 6


@pytest.fixture
def reserve_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server with ``min_free_bytes`` = 10 MiB on a 40 MiB tmpfs.

    The tmpfs lives in a mount namespace held by a ``sleep`` process, and the
    server joins it (``nsenter``), so the server can be restarted on the same
    data.
    """
    require_mount_namespaces()
    nsenter = tool("nsenter")
    mount = tmp_path_factory.mktemp("tmpfs")
    holder = subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c",
         f'mount -t tmpfs -o size={TMPFS_MIB}m tmpfs "$0" && echo mounted && exec sleep 100000', str(mount)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "mounted"
        config = _config(tmp_path_factory.mktemp("conf"), RESERVE_MIB * MiB)
        wrapper = [nsenter, f"--target={holder.pid}", "--mount", "--"]
        server = ServerProcess(mount / "data", wrapper=wrapper, config=config).start()
        try:
            yield server
        finally:
            server.stop()
    finally:
        holder.kill()
        holder.wait()


def _refused(response: Any) -> None:
    """A refusal by the reserve: 507 InsufficientStorage saying so (a disk
    that is really full answers 507 with the default message instead)."""
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 507
    assert response["Error"]["Code"] == "InsufficientStorage"
    assert response["Error"]["Message"] == RESERVE_MESSAGE


def _fill(s3: Any, bucket: str, prefix: str, body: bytes) -> list[str]:
    """PUT ``body`` under new keys until the server refuses; the keys stored."""
    stored: list[str] = []
    for i in range(TMPFS_MIB * MiB // len(body) + 1):
        try:
            s3.put_object(Bucket=bucket, Key=f"{prefix}{i}", Body=body)
        except ClientError as e:
            _refused(e.response)
            return stored
        stored.append(f"{prefix}{i}")
    pytest.fail("the reserve never refused a write")


def _put_when_accepted(s3: Any, bucket: str, key: str, body: bytes, timeout: float = 10.0) -> None:
    """PUT, retrying while the server still refuses with the reserve (it
    re-reads the free space at most every second)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            s3.put_object(Bucket=bucket, Key=key, Body=body)
            return
        except ClientError as e:
            _refused(e.response)
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_the_reserve_keeps_a_full_server_deletable(reserve_server: ServerProcess) -> None:
    s3: Any = make_client(reserve_server.endpoint)
    s3.create_bucket(Bucket="full")
    s3.create_bucket(Bucket="versioned")
    s3.put_bucket_versioning(Bucket="versioned", VersioningConfiguration={"Status": "Enabled"})
    small = b"s" * 4096
    s3.put_object(Bucket="full", Key="small/keep", Body=small)
    s3.put_object(Bucket="versioned", Key="small", Body=small)
    # An upload in progress holds a 6 MiB part: aborting it frees its space at once.
    upload = s3.create_multipart_upload(Bucket="full", Key="mp")["UploadId"]
    s3.upload_part(Bucket="full", Key="mp", UploadId=upload, PartNumber=1, Body=os.urandom(PART_MIB * MiB))
    # Small objects live inline in the metadata database: deleting these
    # frees about 1 MiB of pages inside its file (step 3).
    inline = b"i" * (60 * 1024)  # under the 64 KiB inline threshold
    seeded = [f"seed/{i}" for i in range(16)]
    for key in seeded:
        s3.put_object(Bucket="full", Key=key, Body=inline)

    # (1) Big PUTs are refused once the free space is below the reserve,
    # long before the 40 MiB are used up: 40 - 6 (part) - 10 (reserve), less
    # the metadata database, leaves room for about seven 3 MiB objects.
    body = os.urandom(3 * MiB)
    stored = _fill(s3, "full", "big/", body)
    assert 4 <= len(stored) <= 8, stored
    # A refused chunk's partial file is removed, which may lift the free
    # space back above the reserve by less than a big object: small
    # objects, stored inline in the metadata database, fill that up until
    # they are refused too, and from then on nothing adds data.
    time.sleep(1.5)  # the server re-reads the free space (it caches it for 0.5 s)
    small_stored = _fill(s3, "full", "inline/", inline)
    assert len(small_stored) * len(inline) < 3 * MiB + 64 * 1024, len(small_stored)
    time.sleep(1.5)
    # ... and so is everything else that adds data: small (inline) objects,
    # copies, parts, and over gRPC too.
    for call in (
        lambda: s3.put_object(Bucket="full", Key="small/new", Body=small),
        lambda: s3.copy_object(Bucket="full", Key="small/copy", CopySource={"Bucket": "full", "Key": "small/keep"}),
        lambda: s3.upload_part(Bucket="full", Key="mp", UploadId=upload, PartNumber=2, Body=body),
    ):
        with pytest.raises(ClientError) as refused:
            call()
        _refused(refused.value.response)
    assert_grpc_put_refused(reserve_server.grpc_endpoint, "full", "small/grpc", small)

    # (2) Every acknowledged object reads back whole; the refused ones do not exist.
    for key in stored:
        assert s3.get_object(Bucket="full", Key=key)["Body"].read() == body
    for key in small_stored + seeded:
        assert s3.get_object(Bucket="full", Key=key)["Body"].read() == inline
    assert s3.get_object(Bucket="full", Key="small/keep")["Body"].read() == small
    for key in ("small/new", "small/copy", f"big/{len(stored)}"):
        with pytest.raises(ClientError) as missing:
            s3.head_object(Bucket="full", Key=key)
        assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404

    # (3) Deleting works while the reserve is short: objects, a versioned
    # object (a delete marker; its data moves to a version), a tag set.
    s3.put_object_tagging(Bucket="full", Key="small/keep", Tagging={"TagSet": [{"Key": "t", "Value": "1"}]})
    for key in stored + small_stored + seeded:
        s3.delete_object(Bucket="full", Key=key)
    marker = s3.delete_object(Bucket="versioned", Key="small")
    assert marker["DeleteMarker"] is True
    for prefix in ("big/", "inline/", "seed/"):
        assert "Contents" not in s3.list_objects_v2(Bucket="full", Prefix=prefix)
    versions = s3.list_object_versions(Bucket="versioned")
    assert len(versions["Versions"]) == 1 and len(versions["DeleteMarkers"]) == 1
    # Deleted objects' chunks outlive them by the superseded-chunk grace
    # (300 s, for readers still streaming them): no space is back on the
    # volume yet, and big objects are still refused.  SQLite keeps the pages
    # its deleted rows freed inside its file, and small objects may use
    # them: the file does not grow.
    time.sleep(1.5)
    with pytest.raises(ClientError) as still:
        s3.put_object(Bucket="full", Key="big/still", Body=body)
    _refused(still.value.response)
    s3.put_object(Bucket="full", Key="small/new", Body=small)
    assert s3.get_object(Bucket="full", Key="small/new")["Body"].read() == small

    # (4) Freeing space makes writes welcome again.  An aborted upload's parts
    # go at once (nobody can be reading them) ...
    s3.abort_multipart_upload(Bucket="full", Key="mp", UploadId=upload)
    _put_when_accepted(s3, "full", "big/after-abort", body)
    assert s3.get_object(Bucket="full", Key="big/after-abort")["Body"].read() == body
    # ... and the deleted objects' chunks once their grace is over, or when
    # the server stops (it deletes retired chunks on a clean shutdown): after
    # a restart on the same disk, about as many big objects fit as before.
    reserve_server.restart()
    s3 = make_client(reserve_server.endpoint)
    again = _fill(s3, "full", "again/", body)
    assert len(again) >= len(stored), (len(again), len(stored))
    for key in again:
        assert s3.get_object(Bucket="full", Key=key)["Body"].read() == body
    assert s3.get_object(Bucket="full", Key="small/keep")["Body"].read() == small
