"""A full master key rotation of SSE-S3 data through the real server and the
real ``lightningstor-admin``: a new first line, ``key reencrypt``, ``sse
rewrap``, the old line dropped, and every object (inline and chunked, a
noncurrent version) reads back byte for byte, and a multipart upload in
progress takes another part and completes.  The companion test does the
same without ``sse rewrap``: then the same reads fail, so the first test
passes because of the tool, not in spite of it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from cryptography.fernet import Fernet

from tests.etcd_cluster import EtcdCluster, etcd_binary
from tests.integration.conftest import make_client
from tests.integration.raw import client_error
from tests.integration.server import ServerProcess

MiB = 1024 * 1024
AES = {"ServerSideEncryption": "AES256"}
ADMIN = str(Path(sys.executable).with_name("lightningstor-admin"))
CONFIG = "[storage]\nchunk_size_bytes = 1048576\ninline_threshold_bytes = 4096\n"


def pattern(size: int, tag: str) -> bytes:
    unit = f"{tag}-".encode().ljust(61, b".")
    return (unit * (size // len(unit) + 1))[:size]


def admin(data: Path, config: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ADMIN, *argv, "--config", str(config), "--data-dir", str(data)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip


class Written:
    """The objects of one test, written through boto3 under the first key."""

    def __init__(self, s3: Any) -> None:
        self.bodies: dict[tuple[str, str, str | None], bytes] = {}
        s3.create_bucket(Bucket="flat")
        self._put(s3, "flat", "inline", pattern(1000, "inline"))
        self._put(s3, "flat", "chunked", pattern(3 * MiB + 123, "chunked"))
        s3.put_object(Bucket="flat", Key="plain", Body=b"plain body")
        self.bodies[("flat", "plain", None)] = b"plain body"
        # A versioned bucket with default encryption: a noncurrent version.
        s3.create_bucket(Bucket="history")
        s3.put_bucket_versioning(Bucket="history", VersioningConfiguration={"Status": "Enabled"})
        s3.put_bucket_encryption(Bucket="history", ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
        self.old_version = self._put(s3, "history", "doc", pattern(2 * MiB + 7, "doc-v1"), encrypt=False)
        self._put(s3, "history", "doc", pattern(300, "doc-v2"), encrypt=False)
        # A multipart upload in progress with one part.
        self.part1 = pattern(5 * MiB, "part-one")
        self.part2 = pattern(1234, "part-two")
        up = s3.create_multipart_upload(Bucket="flat", Key="mpu", **AES)
        self.upload_id = up["UploadId"]
        self.etag1 = s3.upload_part(Bucket="flat", Key="mpu", UploadId=self.upload_id, PartNumber=1,
                                    Body=self.part1)["ETag"]  # fmt: skip

    def _put(self, s3: Any, bucket: str, key: str, data: bytes, encrypt: bool = True) -> str | None:
        put = s3.put_object(Bucket=bucket, Key=key, Body=data, **(AES if encrypt else {}))
        assert put["ServerSideEncryption"] == "AES256"
        version = put.get("VersionId")
        self.bodies[(bucket, key, version)] = data
        return version  # type: ignore[no-any-return]

    def encrypted(self) -> list[tuple[str, str, str | None]]:
        return [k for k in self.bodies if k[1] != "plain"]

    def read(self, s3: Any, where: tuple[str, str, str | None]) -> bytes:
        bucket, key, version = where
        extra = {"VersionId": version} if version else {}
        return s3.get_object(Bucket=bucket, Key=key, **extra)["Body"].read()  # type: ignore[no-any-return]

    def finish_upload(self, s3: Any) -> bytes:
        """Another part under the upload's key, then the completion; the object read back."""
        etag2 = s3.upload_part(Bucket="flat", Key="mpu", UploadId=self.upload_id, PartNumber=2,
                               Body=self.part2)["ETag"]  # fmt: skip
        done = s3.complete_multipart_upload(Bucket="flat", Key="mpu", UploadId=self.upload_id, MultipartUpload={
            "Parts": [{"PartNumber": 1, "ETag": self.etag1}, {"PartNumber": 2, "ETag": etag2}]})
        assert done["ServerSideEncryption"] == "AES256"
        return s3.get_object(Bucket="flat", Key="mpu")["Body"].read()  # type: ignore[no-any-return]


def rotate(
    tmp_path: Path, rewrap: bool, extra_config: str = ""
) -> tuple[ServerProcess, Written, dict[str, Any] | None]:
    """Write everything under the first key, stop the server, rotate the
    master key file (``sse rewrap`` or not), drop the old line, start again."""
    data = tmp_path / "data"
    data.mkdir()
    config = tmp_path / "server.toml"
    config.write_text(CONFIG + extra_config)
    server = ServerProcess(data, config=str(config)).start()
    try:
        written = Written(make_client(server.endpoint))
    except BaseException:
        server.stop()
        raise
    server.stop()
    key_file = data / "master.key"
    old = key_file.read_bytes().strip()
    new = Fernet.generate_key()
    key_file.write_bytes(new + b"\n" + old + b"\n")
    # The credential secrets too, or the server would not start without the old line.
    done = admin(data, config, "key", "reencrypt", "--json")
    assert done.returncode == 0, done.stderr
    report = None
    if rewrap:
        done = admin(data, config, "sse", "rewrap", "--json")
        assert done.returncode == 0, done.stdout + done.stderr
        report = json.loads(done.stdout)
    key_file.write_bytes(new + b"\n")
    return server.start(), written, report


def check_rewrapped(server: ServerProcess, written: Written, report: dict[str, Any] | None) -> None:
    """What the rotation with ``sse rewrap`` must leave: every object reads
    back with the new line alone, the upload completes."""
    try:
        assert report is not None
        # inline, chunked, both versions of doc, the upload; the plain object has no key.
        assert (report["rewrapped"], report["checked"], report["current"], report["unreadable"]) == (5, 5, 0, 0)
        assert (report["plain"], report["ok"], report["settled"]) == (1, True, True)
        s3: Any = make_client(server.endpoint)
        for where, data in written.bodies.items():
            assert written.read(s3, where) == data, where
        ranged = s3.get_object(Bucket="flat", Key="chunked", Range=f"bytes={MiB - 5}-{2 * MiB + 5}")["Body"].read()
        assert ranged == written.bodies[("flat", "chunked", None)][MiB - 5 : 2 * MiB + 6]
        assert written.old_version is not None
        assert written.finish_upload(s3) == written.part1 + written.part2
    finally:
        server.stop()


def test_rewrap_lets_the_old_master_key_line_go(tmp_path: Path) -> None:
    check_rewrapped(*rotate(tmp_path, rewrap=True))


def test_rewrap_on_etcd_metadata(tmp_path: Path) -> None:
    """The same rotation with the metadata in etcd: ``sse rewrap`` reaches
    the store the server's config names, as every admin command does."""
    etcd_binary()
    etcd = EtcdCluster(tmp_path / "etcd").start()
    try:
        endpoints = ", ".join(f'"{e}"' for e in etcd.endpoints)
        extra = f'[metadata]\nbackend = "etcd"\nchainfire_endpoints = [{endpoints}]\n' \
                '[metadata.etcd]\nnamespace = "rewrap/"\n'
        check_rewrapped(*rotate(tmp_path, rewrap=True, extra_config=extra))
        assert not (tmp_path / "data" / "metadata.db").exists()  # it was etcd, not SQLite
    finally:
        etcd.stop()


def test_without_rewrap_the_old_line_is_still_needed(tmp_path: Path) -> None:
    server, written, _report = rotate(tmp_path, rewrap=False)
    try:
        s3: Any = make_client(server.endpoint)
        assert written.read(s3, ("flat", "plain", None)) == b"plain body"
        for where in written.encrypted():
            with pytest.raises(ClientError) as e:
                written.read(s3, where)
            assert client_error(e)[0] == 500, where
        with pytest.raises(ClientError) as e:
            written.finish_upload(s3)
        assert client_error(e)[0] == 500
    finally:
        server.stop()
