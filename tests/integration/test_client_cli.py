"""The ``lightningstor`` command against a real server: every command, progress
output and the documented exit codes.

Most tests call ``cli.main`` in-process (fast); the console script itself is
run once as a subprocess, and the exit codes scripts rely on are checked on it.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from lightningstor.client import LightningStorClient, cli
from lightningstor.grpc.token import make_token
from tests.integration.server import ROOT_ACCESS_KEY, ROOT_SECRET_KEY, ServerProcess

MiB = 1 << 20


class _Bytes(io.StringIO):
    """A text stream with a ``.buffer`` collecting bytes, like ``sys.stdout``."""

    def __init__(self) -> None:
        super().__init__()
        self.raw_bytes = io.BytesIO()

    @property
    def buffer(self) -> io.BytesIO:  # type: ignore[override]
        return self.raw_bytes


@pytest.fixture
def env(server: ServerProcess, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {
        "LIGHTNINGSTOR_ENDPOINT": f"grpc://{server.grpc_endpoint}",
        "LIGHTNINGSTOR_ACCESS_KEY": ROOT_ACCESS_KEY,
        "LIGHTNINGSTOR_SECRET_KEY": ROOT_SECRET_KEY,
        "LIGHTNINGSTOR_S3_ENDPOINT": server.endpoint,
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("LIGHTNINGSTOR_TOKEN", raising=False)
    return values


def run(*argv: str) -> tuple[int, str, str, bytes]:
    """(exit status, stdout text, stderr text, stdout bytes) of ``lightningstor argv``."""
    out, err = _Bytes(), io.StringIO()
    status = cli.main(list(argv), out=out, err=err)
    return status, out.getvalue(), err.getvalue(), out.raw_bytes.getvalue()


@pytest.fixture
def bucket_name(env: dict[str, str]) -> Iterator[str]:
    name = f"c-{uuid.uuid4().hex[:16]}"
    yield name
    run("rb", "--force", f"s3://{name}")


def test_mb_ls_cp_cat_rm_rb(bucket_name: str, tmp_path: Path) -> None:
    """The everyday round trip: make a bucket, upload, list, read back, delete."""
    assert run("mb", f"s3://{bucket_name}")[0] == cli.EXIT_OK
    assert bucket_name in run("ls")[1]
    src = tmp_path / "hello.txt"
    src.write_bytes(b"hello world\n")
    status, out, _err, _ = run("cp", str(src), f"s3://{bucket_name}/docs/")
    assert status == 0 and f"s3://{bucket_name}/docs/hello.txt" in out
    status, out, _, _ = run("ls", f"s3://{bucket_name}")
    assert status == 0 and "PRE docs/" in out
    status, out, _, _ = run("ls", "-r", f"s3://{bucket_name}")
    assert "docs/hello.txt" in out and " 12 " in out
    status, _, _, data = run("cat", f"s3://{bucket_name}/docs/hello.txt")
    assert status == 0 and data == b"hello world\n"
    assert run("cat", "--range", "bytes=0-4", f"s3://{bucket_name}/docs/hello.txt")[3] == b"hello"
    dest = tmp_path / "back"
    dest.mkdir()
    assert run("cp", f"s3://{bucket_name}/docs/hello.txt", str(dest))[0] == 0
    assert (dest / "hello.txt").read_bytes() == b"hello world\n"
    assert run("rm", f"s3://{bucket_name}/docs/hello.txt")[0] == 0
    assert run("cat", f"s3://{bucket_name}/docs/hello.txt")[0] == cli.EXIT_NOT_FOUND
    assert run("rb", f"s3://{bucket_name}")[0] == 0
    assert bucket_name not in run("ls")[1]


def test_large_upload_is_multipart_with_progress(bucket_name: str, tmp_path: Path, env: dict[str, str]) -> None:
    """A file above the PutObject limit goes up as a parallel multipart upload
    (S3 multipart ETag), the progress bar reaches 100% on stderr, and the
    download is byte-identical."""
    run("mb", f"s3://{bucket_name}")
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(11 * MiB))
    status, out, err, _ = run("--progress", "cp", "--part-size", "5MiB", str(src), f"s3://{bucket_name}/big.bin")
    assert status == 0, err
    assert "100%" in err and "11.0 MiB/11.0 MiB" in err
    assert "-3)" in out  # three parts: the ETag is "md5-3"
    back = tmp_path / "big.out"
    status, _, err, _ = run("--progress", "cp", f"s3://{bucket_name}/big.bin", str(back))
    assert status == 0 and "100%" in err
    assert back.read_bytes() == src.read_bytes()
    client = LightningStorClient.connect(env["LIGHTNINGSTOR_ENDPOINT"], access_key=ROOT_ACCESS_KEY, secret_key=ROOT_SECRET_KEY)
    with client:
        assert client.head_object(bucket_name, "big.bin").parts_count == 3


def test_recursive_copies_in_all_directions(bucket_name: str, tmp_path: Path) -> None:
    """cp -r uploads a directory tree, copies a prefix server-side, downloads a
    prefix into a tree; rm -r empties a prefix; keys that would escape the
    destination directory are skipped and make the command exit 1."""
    run("mb", f"s3://{bucket_name}")
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.txt").write_bytes(b"a")
    (tree / "sub" / "b.txt").write_bytes(b"b")
    assert run("cp", "-r", str(tree), f"s3://{bucket_name}/up")[0] == 0
    assert run("cp", str(tree), f"s3://{bucket_name}/x")[0] == cli.EXIT_USAGE  # a directory needs -r
    assert run("cp", "-r", f"s3://{bucket_name}/up/", f"s3://{bucket_name}/copy/")[0] == 0
    out = run("ls", "-r", f"s3://{bucket_name}")[1]
    for key in ("up/a.txt", "up/sub/b.txt", "copy/a.txt", "copy/sub/b.txt"):
        assert key in out
    client_put = run("cp", str(tree / "a.txt"), f"s3://{bucket_name}/copy/../../evil.txt")
    assert client_put[0] == 0
    down = tmp_path / "down"
    status, _, err, _ = run("cp", "-r", f"s3://{bucket_name}/copy", str(down))
    assert status == cli.EXIT_ERROR and "skipping" in err  # the rest is copied, the skip fails the command
    assert (down / "a.txt").read_bytes() == b"a" and (down / "sub" / "b.txt").read_bytes() == b"b"
    assert not (tmp_path / "evil.txt").exists()
    assert run("rm", "-r", f"s3://{bucket_name}/up/")[0] == 0
    assert "up/" not in run("ls", "-r", f"s3://{bucket_name}")[1]


def test_rb_of_nonempty_bucket_and_force(bucket_name: str, tmp_path: Path) -> None:
    """rb on a bucket with objects fails with the conflict status; --force removes
    every version (versioned bucket) and then the bucket."""
    run("mb", "--versioning", f"s3://{bucket_name}")
    f = tmp_path / "v"
    for text in (b"1", b"2"):
        f.write_bytes(text)
        run("cp", str(f), f"s3://{bucket_name}/v")
    status, _, err, _ = run("rb", f"s3://{bucket_name}")
    assert status == cli.EXIT_CONFLICT and "BucketNotEmpty" in err
    assert run("ls", "--versions", f"s3://{bucket_name}")[1].count(" v\n") == 2
    assert run("rb", "--force", f"s3://{bucket_name}")[0] == 0
    assert run("ls", f"s3://{bucket_name}")[0] == cli.EXIT_NOT_FOUND


def test_presign_gives_a_working_s3_url(bucket_name: str, tmp_path: Path) -> None:
    """presign prints a SigV4 URL for the S3 endpoint that fetches the object."""
    run("mb", f"s3://{bucket_name}")
    src = tmp_path / "p.txt"
    src.write_bytes(b"presigned!")
    run("cp", str(src), f"s3://{bucket_name}/dir/p 1.txt")
    status, out, _, _ = run("presign", "--expires", "120", f"s3://{bucket_name}/dir/p 1.txt")
    assert status == 0 and "X-Amz-Signature=" in out
    with urllib.request.urlopen(out.strip(), timeout=10) as response:
        assert response.read() == b"presigned!"
    assert run("presign", "--expires", "0", f"s3://{bucket_name}/x")[0] == cli.EXIT_USAGE


def test_token_command_and_console_script_exit_codes(server: ServerProcess, env: dict[str, str], tmp_path: Path) -> None:
    """The installed ``lightningstor`` script: a token from ``lightningstor token``
    authenticates; a missing key exits 3, a bad token 4, a usage error 2, an
    unreachable endpoint 6."""
    script = str(Path(sys.executable).with_name("lightningstor"))
    token = subprocess.run([script, "token", "--lifetime", "600"], capture_output=True, text=True, env=os.environ, timeout=60)
    assert token.returncode == 0 and token.stdout.startswith("lst1.")
    only_token = {k: v for k, v in os.environ.items() if not k.startswith("LIGHTNINGSTOR_")}
    only_token.update(LIGHTNINGSTOR_ENDPOINT=env["LIGHTNINGSTOR_ENDPOINT"], LIGHTNINGSTOR_TOKEN=token.stdout.strip())

    def script_status(*argv: str, extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([script, *argv], capture_output=True, text=True, env={**only_token, **(extra or {})}, timeout=60)

    assert script_status("ls").returncode == 0
    missing = script_status("cat", "s3://no-such-bucket-cli/x")
    assert missing.returncode == cli.EXIT_NOT_FOUND and "NoSuchBucket" in missing.stderr
    bad = script_status("ls", extra={"LIGHTNINGSTOR_TOKEN": make_token(ROOT_ACCESS_KEY, "not-the-secret")})
    assert bad.returncode == cli.EXIT_AUTH and "SignatureDoesNotMatch" in bad.stderr
    assert script_status("cp", "a", "b").returncode == cli.EXIT_USAGE
    assert script_status("frobnicate").returncode == cli.EXIT_USAGE
    down = script_status("--endpoint", "grpc://127.0.0.1:1", "ls")
    assert down.returncode == cli.EXIT_UNAVAILABLE


def test_file_helpers_abort_failed_multipart_uploads(server: ServerProcess, bucket_name: str, tmp_path: Path) -> None:
    """upload_file aborts its multipart upload when a part fails (no parts left
    behind), and download_file never leaves a partial file at the destination."""
    run("mb", f"s3://{bucket_name}")
    src = tmp_path / "f.bin"
    src.write_bytes(os.urandom(6 * MiB))
    with LightningStorClient.connect(
        f"grpc://{server.grpc_endpoint}", access_key=ROOT_ACCESS_KEY, secret_key=ROOT_SECRET_KEY
    ) as client:
        calls = []

        def failing(n: int) -> None:
            calls.append(n)
            if len(calls) == 3:
                raise OSError("disk went away")

        with pytest.raises(OSError):
            client.upload_file(str(src), bucket_name, "f", part_size=5 * MiB, progress=failing)
        assert list(client.list_multipart_uploads(bucket_name).uploads) == []
        result = client.upload_file(str(src), bucket_name, "f", part_size=5 * MiB)
        assert result.size == 6 * MiB
        target = tmp_path / "out.bin"
        with pytest.raises(OSError):
            client.download_file(bucket_name, "f", str(target), progress=_disk_full)
        assert not target.exists() and [p.name for p in tmp_path.iterdir() if p.name.startswith(".lightningstor-")] == []
        meta = client.download_file(bucket_name, "f", str(target))
        assert hashlib.md5(target.read_bytes()).hexdigest() == hashlib.md5(src.read_bytes()).hexdigest()
        assert meta.size == 6 * MiB


def _disk_full(_n: int) -> None:
    raise OSError("disk full")


def _piped_into_early_closer(argv: list[str], read: int) -> tuple[int, bytes, str]:
    """Run the installed script with stdout into a pipe whose reader takes
    ``read`` bytes (none: closes at once) and then closes it, as ``| head -c``
    does; (exit status, what was read, stderr)."""
    script = str(Path(sys.executable).with_name("lightningstor"))
    proc = subprocess.Popen([script, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=os.environ)
    assert proc.stdout is not None and proc.stderr is not None
    got = proc.stdout.read(read) if read else b""
    proc.stdout.close()
    err = proc.stderr.read().decode()
    return proc.wait(timeout=60), got, err


def test_a_reader_closing_stdout_early_ends_the_command_quietly(bucket_name: str, tmp_path: Path) -> None:
    """``cat | head -c 10``, ``cp ... - | head`` and ``ls | head``: no
    BrokenPipeError message, and the exit status of a process killed by
    SIGPIPE (141 in a shell), as Unix tools end (it was 1 and a message)."""
    run("mb", f"s3://{bucket_name}")
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(4 * MiB))  # far more than a pipe holds
    assert run("cp", str(src), f"s3://{bucket_name}/big.bin")[0] == 0
    for argv in (["cat", f"s3://{bucket_name}/big.bin"], ["cp", f"s3://{bucket_name}/big.bin", "-"]):
        status, got, err = _piped_into_early_closer(argv, 10)
        assert (status, err) == (cli.EXIT_STDOUT_CLOSED, ""), argv
        assert got == src.read_bytes()[:10]
    status, _got, err = _piped_into_early_closer(["ls", f"s3://{bucket_name}"], 0)
    assert (status, err) == (cli.EXIT_STDOUT_CLOSED, "")


def test_a_broken_pipe_on_a_local_file_is_still_an_error(
    bucket_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only stdout's reader going away is quiet: EPIPE while writing a local
    download target (a FIFO whose reader died, a network file system) is an
    error with a message, exit 1."""
    run("mb", f"s3://{bucket_name}")
    (tmp_path / "src").write_bytes(b"data")
    assert run("cp", str(tmp_path / "src"), f"s3://{bucket_name}/k")[0] == 0

    def broken(*_args: object, **_kwargs: object) -> None:
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(LightningStorClient, "download_file", broken)
    status, _out, err, _raw = run("cp", f"s3://{bucket_name}/k", str(tmp_path / "k"))
    assert status == cli.EXIT_ERROR and "Broken pipe" in err
