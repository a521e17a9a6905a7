"""Real S3 tools against the real server: aws cli, s3cmd, rclone, restic and
MinIO's Python SDK.

Where a tool is not installed the test is skipped, except when
LIGHTNINGSTOR_REQUIRE_TOOLS=1 (CI sets it after installing them): then a
missing tool is a failure.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from tests.integration.conftest import make_client
from tests.integration.server import ROOT_ACCESS_KEY, ROOT_SECRET_KEY
from tests.integration.tools import environ, minio_client, rclone_env, run_tool, s3cmd_command, tool


def _tree(root: Path) -> dict[str, str]:
    files = {
        "a.txt": b"hello\n",
        "empty": b"",
        "dir/b.bin": os.urandom(300_000),
        "dir/sub/c with space.txt": b"spaces",
        "dir/unicod\u00e9.txt": b"unicode",
        "big.bin": os.urandom(6 * 1024 * 1024 + 11),
    }
    sums = {}
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        sums[rel] = hashlib.md5(data).hexdigest()
    return sums


def _sums(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in root.rglob("*") if p.is_file()}


def _aws_env(tmp_path: Path) -> dict[str, str]:
    """The aws cli's environment: the root key, and no config file of the host's."""
    return {"AWS_ACCESS_KEY_ID": ROOT_ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": ROOT_SECRET_KEY,
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": str(tmp_path / "none"),
            "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")}


def test_aws_cli(server, tmp_path):
    """aws s3 mb/cp/sync/ls/rm and s3api round-trip a tree byte-identically."""
    aws = tool("aws")
    env = _aws_env(tmp_path)
    ep = ["--endpoint-url", server.endpoint]
    bucket = f"awscli-{uuid.uuid4().hex[:8]}"
    src = tmp_path / "src"
    sums = _tree(src)
    run_tool([aws, *ep, "s3", "mb", f"s3://{bucket}"], env)
    run_tool([aws, *ep, "s3", "sync", str(src), f"s3://{bucket}/tree"], env)
    listing = run_tool([aws, *ep, "s3", "ls", "--recursive", f"s3://{bucket}/"], env).decode()
    assert listing.count("\n") == len(sums)
    dst = tmp_path / "dst"
    run_tool([aws, *ep, "s3", "cp", "--recursive", f"s3://{bucket}/tree", str(dst)], env)
    assert _sums(dst) == sums
    out = run_tool([aws, *ep, "s3", "cp", f"s3://{bucket}/tree/a.txt", "-"], env)
    assert out == b"hello\n"
    run_tool([aws, *ep, "s3api", "head-object", "--bucket", bucket, "--key", "tree/big.bin"], env)
    run_tool([aws, *ep, "s3", "rm", "--recursive", f"s3://{bucket}/"], env)
    run_tool([aws, *ep, "s3", "rb", f"s3://{bucket}"], env)


def test_aws_cli_sync_exact_timestamps_transfers_nothing_the_second_time(server, tmp_path):
    """Listings give object times to the second, as HEAD and GET do: they gave
    milliseconds, so `aws s3 sync --exact-timestamps`, which sets a download's
    mtime from Last-Modified and compares it with the listing, downloaded
    every unchanged object again on every run."""
    aws = tool("aws")
    env = _aws_env(tmp_path)
    ep = ["--endpoint-url", server.endpoint]
    bucket = f"exact-{uuid.uuid4().hex[:8]}"
    s3 = make_client(server.endpoint)
    s3.create_bucket(Bucket=bucket)
    for i in range(5):
        s3.put_object(Bucket=bucket, Key=f"f{i}.txt", Body=b"x" * i)
    listed = {o["Key"]: o["LastModified"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert listed == {k: s3.head_object(Bucket=bucket, Key=k)["LastModified"] for k in listed}
    dst = tmp_path / "dst"
    first = run_tool([aws, *ep, "s3", "sync", f"s3://{bucket}", str(dst), "--exact-timestamps"], env).decode()
    assert first.count("download:") == 5
    again = run_tool([aws, *ep, "s3", "sync", f"s3://{bucket}", str(dst), "--exact-timestamps"], env).decode()
    assert "download:" not in again, again


def test_s3cmd(server, tmp_path):
    """s3cmd mb/put/get/ls/info/del/rb work (SigV4, path style)."""
    base = s3cmd_command(server.endpoint, tmp_path)
    bucket = f"s3cmd-{uuid.uuid4().hex[:8]}"
    data = os.urandom(1_000_000)
    src = tmp_path / "file.bin"
    src.write_bytes(data)
    run_tool([*base, "mb", f"s3://{bucket}"])
    run_tool([*base, "put", str(src), f"s3://{bucket}/dir/file.bin"])
    assert b"dir/" in run_tool([*base, "ls", f"s3://{bucket}"])
    info = run_tool([*base, "info", f"s3://{bucket}/dir/file.bin"])
    assert hashlib.md5(data).hexdigest().encode() in info
    run_tool([*base, "info", f"s3://{bucket}"])
    dst = tmp_path / "back.bin"
    run_tool([*base, "get", f"s3://{bucket}/dir/file.bin", str(dst)])
    assert dst.read_bytes() == data
    run_tool([*base, "del", f"s3://{bucket}/dir/file.bin"])
    run_tool([*base, "rb", f"s3://{bucket}"])


def _fetch(url: str) -> tuple[int, bytes]:
    """An unsigned GET, as a browser makes it."""
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _writer_bucket(server, prefix: str) -> str:
    """A bucket with ACLs enabled (ObjectWriter), as Mastodon or PeerTube need."""
    bucket = f"{prefix}-{uuid.uuid4().hex[:8]}"
    make_client(server.endpoint).create_bucket(Bucket=bucket, ObjectOwnership="ObjectWriter")
    return bucket


def test_aws_cli_cp_acl_public_read(server, tmp_path):
    """``aws s3 cp --acl public-read`` into an ObjectWriter bucket makes the
    object readable unsigned; into a default bucket it is refused."""
    aws = tool("aws")
    env = _aws_env(tmp_path)
    ep = ["--endpoint-url", server.endpoint]
    bucket = _writer_bucket(server, "awsacl")
    src = tmp_path / "pub.txt"
    src.write_bytes(b"published")
    run_tool([aws, *ep, "s3", "cp", "--acl", "public-read", str(src), f"s3://{bucket}/pub.txt"], env)
    run_tool([aws, *ep, "s3", "cp", str(src), f"s3://{bucket}/priv.txt"], env)
    assert _fetch(f"{server.endpoint}/{bucket}/pub.txt") == (200, b"published")
    assert _fetch(f"{server.endpoint}/{bucket}/priv.txt")[0] == 403
    plain = f"awsplain-{uuid.uuid4().hex[:8]}"
    run_tool([aws, *ep, "s3", "mb", f"s3://{plain}"], env)
    refused = subprocess.run([aws, *ep, "s3", "cp", "--acl", "public-read", str(src), f"s3://{plain}/pub.txt"],
                             env=environ(env), capture_output=True, timeout=120)
    assert refused.returncode != 0 and b"AccessControlListNotSupported" in refused.stderr


def test_aws_cli_grants_with_unquoted_grantees(server, tmp_path):
    """``aws s3 cp --grants read=uri=...`` and the aws cli's own example,
    ``s3api put-object-acl --grant-read uri=...``, send the grantee without
    quotes (``x-amz-grant-read: uri=http://...``); AWS takes it, and so does
    the server: the object becomes readable unsigned."""
    aws = tool("aws")
    env = _aws_env(tmp_path)
    ep = ["--endpoint-url", server.endpoint]
    all_users = "http://acs.amazonaws.com/groups/global/AllUsers"
    bucket = _writer_bucket(server, "awsgrants")
    src = tmp_path / "granted.txt"
    src.write_bytes(b"granted")
    # --grants takes several values: it goes last.
    run_tool([aws, *ep, "s3", "cp", str(src), f"s3://{bucket}/cp.txt", "--grants", f"read=uri={all_users}"], env)
    run_tool([aws, *ep, "s3", "cp", str(src), f"s3://{bucket}/later.txt"], env)
    assert _fetch(f"{server.endpoint}/{bucket}/later.txt")[0] == 403
    run_tool([aws, *ep, "s3api", "put-object-acl", "--bucket", bucket, "--key", "later.txt",
              "--grant-read", f"uri={all_users}"], env)  # fmt: skip
    assert _fetch(f"{server.endpoint}/{bucket}/cp.txt") == (200, b"granted")
    assert _fetch(f"{server.endpoint}/{bucket}/later.txt") == (200, b"granted")


def test_s3cmd_setacl_acl_public(server, tmp_path):
    """``s3cmd setacl --acl-public`` (a GetObjectAcl, then a PutObjectAcl of
    the document with an AllUsers READ grant added) makes an object readable
    unsigned; ``--acl-private`` takes it back."""
    base = s3cmd_command(server.endpoint, tmp_path)
    bucket = _writer_bucket(server, "s3cmdacl")
    src = tmp_path / "file.txt"
    src.write_bytes(b"via s3cmd")
    run_tool([*base, "put", str(src), f"s3://{bucket}/file.txt"])
    assert _fetch(f"{server.endpoint}/{bucket}/file.txt")[0] == 403
    run_tool([*base, "setacl", "--acl-public", f"s3://{bucket}/file.txt"])
    assert _fetch(f"{server.endpoint}/{bucket}/file.txt") == (200, b"via s3cmd")
    assert b"anon" in run_tool([*base, "info", f"s3://{bucket}/file.txt"]).lower()
    run_tool([*base, "setacl", "--acl-private", f"s3://{bucket}/file.txt"])
    assert _fetch(f"{server.endpoint}/{bucket}/file.txt")[0] == 403
    run_tool([*base, "put", "--acl-public", str(src), f"s3://{bucket}/put-public.txt"])
    assert _fetch(f"{server.endpoint}/{bucket}/put-public.txt") == (200, b"via s3cmd")


def test_rclone(server, tmp_path):
    """rclone copy + check of a tree, then a second copy transfers nothing new."""
    rclone = tool("rclone")
    env = rclone_env(server.endpoint, tmp_path / "rclone.conf")
    bucket = f"rclone-{uuid.uuid4().hex[:8]}"
    src = tmp_path / "src"
    sums = _tree(src)
    run_tool([rclone, "mkdir", f"ls:{bucket}"], env)
    run_tool([rclone, "copy", str(src), f"ls:{bucket}/tree"], env)
    run_tool([rclone, "check", str(src), f"ls:{bucket}/tree"], env)
    listed = run_tool([rclone, "lsf", "-R", "--files-only", f"ls:{bucket}/tree"], env).decode().splitlines()
    assert sorted(listed) == sorted(sums)
    dst = tmp_path / "dst"
    run_tool([rclone, "copy", f"ls:{bucket}/tree", str(dst)], env)
    assert _sums(dst) == sums
    again = subprocess.run([rclone, "copy", "-v", str(src), f"ls:{bucket}/tree"],
                           env=environ(env), capture_output=True, timeout=120)
    assert again.returncode == 0
    assert b"Copied (new)" not in again.stderr
    run_tool([rclone, "purge", f"ls:{bucket}"], env)


def test_restic(server, tmp_path):
    """restic (minio-go underneath: streaming-signed uploads, its own listing
    and locking) initialises a repository in a bucket, backs a tree up twice
    (the second finds nothing new), checks every pack it wrote, restores it
    byte-identically, and forgets and prunes a snapshot."""
    restic = tool("restic")
    bucket = f"restic-{uuid.uuid4().hex[:8]}"
    make_client(server.endpoint).create_bucket(Bucket=bucket)
    env = {"AWS_ACCESS_KEY_ID": ROOT_ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": ROOT_SECRET_KEY,
           "RESTIC_PASSWORD": "correct horse", "RESTIC_REPOSITORY": f"s3:{server.endpoint}/{bucket}/repo",
           "RESTIC_CACHE_DIR": str(tmp_path / "cache"), "HOME": str(tmp_path)}
    src = tmp_path / "src"
    sums = _tree(src)
    run_tool([restic, "init"], env)
    run_tool([restic, "backup", "--json", str(src)], env)
    second = run_tool([restic, "backup", "--json", str(src)], env).decode().splitlines()
    summary = json.loads(next(line for line in second if '"message_type":"summary"' in line))
    assert summary["files_new"] == 0 and summary["files_changed"] == 0
    run_tool([restic, "check", "--read-data"], env)
    snapshots = json.loads(run_tool([restic, "snapshots", "--json"], env))
    assert len(snapshots) == 2
    dst = tmp_path / "dst"
    run_tool([restic, "restore", "latest", "--target", str(dst)], env)
    assert _sums(dst / src.relative_to("/")) == sums
    run_tool([restic, "forget", "--keep-last", "1", "--prune"], env)
    assert len(json.loads(run_tool([restic, "snapshots", "--json"], env))) == 1
    run_tool([restic, "check"], env)


def test_minio_python_client(server, tmp_path):
    """MinIO's Python SDK: bucket, a multipart upload of unknown length
    (streamed in 5 MiB parts), file upload and download, stat, listing,
    server-side copy, a presigned GET, and a multi-object delete."""
    client = minio_client(server.endpoint, ROOT_ACCESS_KEY, ROOT_SECRET_KEY)
    from minio.commonconfig import CopySource
    from minio.deleteobjects import DeleteObject

    bucket = f"minio-{uuid.uuid4().hex[:8]}"
    client.make_bucket(bucket)
    assert client.bucket_exists(bucket)
    big = os.urandom(12 * 1024 * 1024 + 5)
    client.put_object(bucket, "dir/big.bin", io.BytesIO(big), length=-1, part_size=5 * 1024 * 1024)
    small = tmp_path / "small.txt"
    small.write_bytes(b"small object\n")
    client.fput_object(bucket, "dir/small.txt", str(small), content_type="text/plain")
    stat = client.stat_object(bucket, "dir/big.bin")
    assert stat.size == len(big) and stat.etag.endswith("-3")
    assert client.stat_object(bucket, "dir/small.txt").content_type == "text/plain"
    client.fget_object(bucket, "dir/big.bin", str(tmp_path / "back.bin"))
    assert (tmp_path / "back.bin").read_bytes() == big
    client.copy_object(bucket, "copy.txt", CopySource(bucket, "dir/small.txt"))
    names = sorted(o.object_name for o in client.list_objects(bucket, recursive=True))
    assert names == ["copy.txt", "dir/big.bin", "dir/small.txt"]
    assert [o.object_name for o in client.list_objects(bucket)] == ["copy.txt", "dir/"]
    url = client.presigned_get_object(bucket, "copy.txt")
    with urllib.request.urlopen(url, timeout=10) as reply:
        assert reply.read() == b"small object\n"
    errors = list(client.remove_objects(bucket, [DeleteObject(n) for n in names]))
    assert errors == []
    assert list(client.list_objects(bucket, recursive=True)) == []
    client.remove_bucket(bucket)
    assert not client.bucket_exists(bucket)
