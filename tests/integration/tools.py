"""Finding and running real S3 command-line tools from the integration tests.

Where a tool is not installed its test is skipped, except when
LIGHTNINGSTOR_REQUIRE_TOOLS=1 (CI sets it after installing them): then a
missing tool is a failure.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration.server import ROOT_ACCESS_KEY, ROOT_SECRET_KEY


def tool(name: str) -> str:
    """The path of ``name`` (the venv's copy first), or skip/fail the test."""
    local = Path(sys.executable).with_name(name)
    path = str(local) if local.exists() else shutil.which(name)
    if path is None:
        if os.environ.get("LIGHTNINGSTOR_REQUIRE_TOOLS") == "1":
            pytest.fail(f"{name} is required (LIGHTNINGSTOR_REQUIRE_TOOLS=1) but not installed")
        pytest.skip(f"{name} not installed")
    return path


def require_mount_namespaces() -> None:
    """Skip (fail under LIGHTNINGSTOR_REQUIRE_TOOLS=1) unless this process may
    make private mount namespaces (``unshare --mount``: root), which the
    full-disk tests need for their small tmpfs mounts."""
    try:
        probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "true"],
                               capture_output=True, timeout=10)
        works = probe.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        works = False
    if not works:
        if os.environ.get("LIGHTNINGSTOR_REQUIRE_TOOLS") == "1":
            pytest.fail("a private mount namespace (unshare --mount, as root) is required")
        pytest.skip("no private mount namespace here (needs root)")


def tmpfs_wrapper(mount: Path, size_mib: int) -> list[str]:
    """A command prefix that runs a command with a ``size_mib`` tmpfs on
    ``mount``, in a mount namespace of its own that ends with it."""
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            f'mount -t tmpfs -o size={size_mib}m tmpfs "$0" && exec "$@"', str(mount)]


def python_tool(module: str) -> Any:
    """The imported client library ``module``; skipped or failed when it is
    missing, as :func:`tool` does for a program."""
    try:
        return importlib.import_module(module)
    except ImportError:
        if os.environ.get("LIGHTNINGSTOR_REQUIRE_TOOLS") == "1":
            pytest.fail(f"{module} is required (LIGHTNINGSTOR_REQUIRE_TOOLS=1) but not installed")
        pytest.skip(f"{module} not installed")


def minio_client(endpoint: str, access_key: str, secret_key: str) -> Any:
    """MinIO's Python SDK client for a plain-HTTP ``endpoint``
    (``http://host:port``); skipped or failed like :func:`python_tool`
    when the SDK is missing."""
    minio = python_tool("minio")
    host = endpoint.split("://", 1)[1]
    return minio.Minio(host, access_key=access_key, secret_key=secret_key, secure=False, region="us-east-1")


def node_project(project: Path, package: str, min_major: int) -> str:
    """The ``node`` program for the Node project in ``project``, once it is
    at least version ``min_major`` and the project's dependencies are
    installed (``npm ci`` there puts ``package`` in its node_modules);
    otherwise skip the test, or fail it under LIGHTNINGSTOR_REQUIRE_TOOLS=1,
    as :func:`tool` does."""
    node = tool("node")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    reason = None
    if int(version.lstrip("v").split(".")[0] or 0) < min_major:
        reason = f"{package} needs Node.js {min_major} or later; {node} is {version}"
    elif not (project / "node_modules" / package / "package.json").is_file():
        reason = f"{package} is not installed in {project.name}/node_modules (run `npm ci` in {project})"
    if reason is not None:
        if os.environ.get("LIGHTNINGSTOR_REQUIRE_TOOLS") == "1":
            pytest.fail(f"{reason}; required under LIGHTNINGSTOR_REQUIRE_TOOLS=1")
        pytest.skip(reason)
    return node


def environ(extra: dict[str, str] | None) -> dict[str, str]:
    """The process environment plus ``extra``.

    A CA bundle from the surrounding environment is irrelevant on plain HTTP
    and makes rclone's AWS SDK refuse to start, so it is dropped.
    """
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    env.update(extra or {})
    return env


def run_tool(args: list[str], env: dict[str, str] | None = None, input: bytes | None = None) -> bytes:
    """Run a tool; its stdout, or an assertion error with its output."""
    proc = subprocess.run(args, env=environ(env), input=input, capture_output=True, timeout=120)
    assert proc.returncode == 0, (args, proc.stdout[-2000:], proc.stderr[-2000:])
    return proc.stdout


def rclone_env(endpoint: str, config: Path) -> dict[str, str]:
    """rclone settings for a remote named ``ls`` pointing at ``endpoint`` as root."""
    return {
        "RCLONE_CONFIG": str(config),
        "RCLONE_CONFIG_LS_TYPE": "s3",
        "RCLONE_CONFIG_LS_PROVIDER": "Other",
        "RCLONE_CONFIG_LS_ACCESS_KEY_ID": ROOT_ACCESS_KEY,
        "RCLONE_CONFIG_LS_SECRET_ACCESS_KEY": ROOT_SECRET_KEY,
        "RCLONE_CONFIG_LS_ENDPOINT": endpoint,
        "RCLONE_CONFIG_LS_REGION": "us-east-1",
        "RCLONE_CONFIG_LS_FORCE_PATH_STYLE": "true",
    }


def s3cmd_command(endpoint: str, tmp_path: Path) -> list[str]:
    """``s3cmd -c CONFIG`` for the root credential against ``endpoint``
    (SigV4, path style, plain HTTP): the start of every s3cmd call."""
    host = endpoint.removeprefix("http://")
    cfg = tmp_path / "s3cfg"
    cfg.write_text(
        "[default]\n"
        f"access_key = {ROOT_ACCESS_KEY}\nsecret_key = {ROOT_SECRET_KEY}\n"
        f"host_base = {host}\nhost_bucket = {host}\nuse_https = False\n"
        "signature_v2 = False\nbucket_location = us-east-1\n"
    )
    return [tool("s3cmd"), "-c", str(cfg)]
