"""Real S3 command-line tools against the real server: aws cli, s3cmd, rclone.

Where a tool is not installed the test is skipped, except when
LIGHTNINGSTOR_REQUIRE_TOOLS=1 (CI sets it after installing them): then a
missing tool is a failure.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.integration.server import ROOT_ACCESS_KEY, ROOT_SECRET_KEY


def _tool(name: str) -> str:
    local = Path(sys.executable).with_name(name)
    path = str(local) if local.exists() else shutil.which(name)
    if path is None:
        if os.environ.get("LIGHTNINGSTOR_REQUIRE_TOOLS") == "1":
            pytest.fail(f"{name} is required (LIGHTNINGSTOR_REQUIRE_TOOLS=1) but not installed")
        pytest.skip(f"{name} not installed")
    return path


def _environ(extra: dict[str, str] | None) -> dict[str, str]:
    # A CA bundle from the surrounding environment is irrelevant on plain HTTP
    # and makes rclone's AWS SDK refuse to start.
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    env.update(extra or {})
    return env


def _run(args: list[str], env: dict[str, str] | None = None, input: bytes | None = None) -> bytes:
    proc = subprocess.run(args, env=_environ(env), input=input, capture_output=True, timeout=120)
    assert proc.returncode == 0, (args, proc.stdout[-2000:], proc.stderr[-2000:])
    return proc.stdout


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


def test_aws_cli(server, tmp_path):
    """aws s3 mb/cp/sync/ls/rm and s3api round-trip a tree byte-identically."""
    aws = _tool("aws")
    env = {"AWS_ACCESS_KEY_ID": ROOT_ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": ROOT_SECRET_KEY,
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": str(tmp_path / "none"),
           "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")}
    ep = ["--endpoint-url", server.endpoint]
    bucket = f"awscli-{uuid.uuid4().hex[:8]}"
    src = tmp_path / "src"
    sums = _tree(src)
    _run([aws, *ep, "s3", "mb", f"s3://{bucket}"], env)
    _run([aws, *ep, "s3", "sync", str(src), f"s3://{bucket}/tree"], env)
    listing = _run([aws, *ep, "s3", "ls", "--recursive", f"s3://{bucket}/"], env).decode()
    assert listing.count("\n") == len(sums)
    dst = tmp_path / "dst"
    _run([aws, *ep, "s3", "cp", "--recursive", f"s3://{bucket}/tree", str(dst)], env)
    assert _sums(dst) == sums
    out = _run([aws, *ep, "s3", "cp", f"s3://{bucket}/tree/a.txt", "-"], env)
    assert out == b"hello\n"
    _run([aws, *ep, "s3api", "head-object", "--bucket", bucket, "--key", "tree/big.bin"], env)
    _run([aws, *ep, "s3", "rm", "--recursive", f"s3://{bucket}/"], env)
    _run([aws, *ep, "s3", "rb", f"s3://{bucket}"], env)


def test_s3cmd(server, tmp_path):
    """s3cmd mb/put/get/ls/info/del/rb work (SigV4, path style)."""
    s3cmd = _tool("s3cmd")
    host = server.endpoint.removeprefix("http://")
    cfg = tmp_path / "s3cfg"
    cfg.write_text(
        "[default]\n"
        f"access_key = {ROOT_ACCESS_KEY}\nsecret_key = {ROOT_SECRET_KEY}\n"
        f"host_base = {host}\nhost_bucket = {host}\nuse_https = False\n"
        "signature_v2 = False\nbucket_location = us-east-1\n"
    )
    base = [s3cmd, "-c", str(cfg)]
    bucket = f"s3cmd-{uuid.uuid4().hex[:8]}"
    data = os.urandom(1_000_000)
    src = tmp_path / "file.bin"
    src.write_bytes(data)
    _run([*base, "mb", f"s3://{bucket}"])
    _run([*base, "put", str(src), f"s3://{bucket}/dir/file.bin"])
    assert b"dir/" in _run([*base, "ls", f"s3://{bucket}"])
    info = _run([*base, "info", f"s3://{bucket}/dir/file.bin"])
    assert hashlib.md5(data).hexdigest().encode() in info
    _run([*base, "info", f"s3://{bucket}"])
    dst = tmp_path / "back.bin"
    _run([*base, "get", f"s3://{bucket}/dir/file.bin", str(dst)])
    assert dst.read_bytes() == data
    _run([*base, "del", f"s3://{bucket}/dir/file.bin"])
    _run([*base, "rb", f"s3://{bucket}"])


def test_rclone(server, tmp_path):
    """rclone copy + check of a tree, then a second copy transfers nothing new."""
    rclone = _tool("rclone")
    env = {
        "RCLONE_CONFIG": str(tmp_path / "rclone.conf"),
        "RCLONE_CONFIG_LS_TYPE": "s3",
        "RCLONE_CONFIG_LS_PROVIDER": "Other",
        "RCLONE_CONFIG_LS_ACCESS_KEY_ID": ROOT_ACCESS_KEY,
        "RCLONE_CONFIG_LS_SECRET_ACCESS_KEY": ROOT_SECRET_KEY,
        "RCLONE_CONFIG_LS_ENDPOINT": server.endpoint,
        "RCLONE_CONFIG_LS_REGION": "us-east-1",
        "RCLONE_CONFIG_LS_FORCE_PATH_STYLE": "true",
    }
    bucket = f"rclone-{uuid.uuid4().hex[:8]}"
    src = tmp_path / "src"
    sums = _tree(src)
    _run([rclone, "mkdir", f"ls:{bucket}"], env)
    _run([rclone, "copy", str(src), f"ls:{bucket}/tree"], env)
    _run([rclone, "check", str(src), f"ls:{bucket}/tree"], env)
    listed = _run([rclone, "lsf", "-R", "--files-only", f"ls:{bucket}/tree"], env).decode().splitlines()
    assert sorted(listed) == sorted(sums)
    dst = tmp_path / "dst"
    _run([rclone, "copy", f"ls:{bucket}/tree", str(dst)], env)
    assert _sums(dst) == sums
    again = subprocess.run([rclone, "copy", "-v", str(src), f"ls:{bucket}/tree"],
                           env=_environ(env), capture_output=True, timeout=120)
    assert again.returncode == 0
    assert b"Copied (new)" not in again.stderr
    _run([rclone, "purge", f"ls:{bucket}"], env)
