"""The ``lightningstor`` command and file helpers against a real server: what a
recursive command touches, where downloads may write, stdin/stdout, partial
failures and their exit codes, interrupted and throttled uploads.

Commands run in-process through ``cli.main`` (the harness of
test_client_cli.py) or, where stdin, the environment or a runaway loop
matter, as the installed console script in a subprocess.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from lightningstor.client import LightningStorClient, cli, errors
from lightningstor.grpc.token import make_token
from tests.integration.server import ROOT_ACCESS_KEY, ROOT_SECRET_KEY, ServerProcess, wait_until
from tests.integration.test_client_cli import env, run  # noqa: F401 - the fixture is used by name

MiB = 1 << 20
SCRIPT = str(Path(sys.executable).with_name("lightningstor"))


@pytest.fixture
def client(server: ServerProcess) -> Iterator[LightningStorClient]:
    with LightningStorClient.connect(
        f"grpc://{server.grpc_endpoint}", access_key=ROOT_ACCESS_KEY, secret_key=ROOT_SECRET_KEY
    ) as c:
        yield c


@pytest.fixture
def bucket(env: dict[str, str]) -> Iterator[str]:  # noqa: F811
    name = f"s-{uuid.uuid4().hex[:16]}"
    assert run("mb", f"s3://{name}")[0] == 0
    yield name
    run("rb", "--force", f"s3://{name}")


def _keys(client: LightningStorClient, bucket: str) -> list[str]:
    return [item.key for item in client.iter_objects(bucket) if not isinstance(item, str)]


def _put_many(client: LightningStorClient, bucket: str, keys: list[str]) -> None:
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda k: client.put_object(bucket, k, b"x"), keys))


def _script(*argv: str, env: dict[str, str], **kwargs: Any) -> subprocess.CompletedProcess[bytes]:  # noqa: F811
    return subprocess.run([SCRIPT, *argv], capture_output=True, env={**os.environ, **env}, **kwargs)


# -- A: what a command may touch ----------------------------------------------------------


def test_rm_r_of_a_prefix_keeps_siblings_sharing_its_name(bucket: str, client: LightningStorClient) -> None:
    """``rm -r s3://b/photos`` deletes the "directory" photos/ only, as the aws
    CLI does: photos-backup/... and photos.txt stay."""
    _put_many(client, bucket, ["photos/a.jpg", "photos/b.jpg", "photos-backup/keep.jpg", "photos.txt", "photos"])
    status, out, err, _ = run("rm", "-r", f"s3://{bucket}/photos")
    assert status == 0, err
    assert sorted(_keys(client, bucket)) == ["photos", "photos-backup/keep.jpg", "photos.txt"]
    assert out.count("delete: ") == 2 and "photos.txt" not in out


def test_cp_r_into_a_prefix_inside_its_source_copies_each_key_once(
    bucket: str, client: LightningStorClient, env: dict[str, str]  # noqa: F811
) -> None:
    """With more than one listing page of keys, copies made into a destination
    inside the source are not listed and copied again (before: without end).
    The source keys sort before ``backup/``, so the copies land in later pages."""
    _put_many(client, bucket, [f"data/{i:05d}" for i in range(1001)])
    done = _script("-q", "cp", "-r", f"s3://{bucket}/data/", f"s3://{bucket}/data/backup/", env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    keys = _keys(client, bucket)
    assert len(keys) == 2002
    assert sum(k.startswith("data/backup/") for k in keys) == 1001
    assert not any(k.startswith("data/backup/backup/") for k in keys)


@pytest.mark.parametrize("key", ["sub/..", "sub/.", "x/"])
def test_single_download_of_a_key_with_no_file_name_is_refused(
    bucket: str, client: LightningStorClient, tmp_path: Path, key: str
) -> None:
    """``cp s3://b/sub/.. DIR/`` would name DIR/.. and write beside DIR: it is
    refused with a usage error (exit 2) and a clear message, nothing written."""
    client.put_object(bucket, key, b"payload " * 1000)
    dest = tmp_path / "parent" / "dest"
    dest.mkdir(parents=True)
    status, _, err, _ = run("cp", f"s3://{bucket}/{key}", str(dest) + os.sep)
    assert status == cli.EXIT_USAGE, err
    assert "no usable local file name" in err and "Errno" not in err
    assert sorted(p.name for p in (tmp_path / "parent").iterdir()) == ["dest"]
    assert list(dest.iterdir()) == []


def test_cp_r_download_never_follows_a_link_out_of_the_destination(
    bucket: str, client: LightningStorClient, tmp_path: Path
) -> None:
    """A symlinked subdirectory of the destination must not carry a download
    elsewhere; unsafe keys are skipped with a warning, the rest copied, exit 1;
    folder markers just make their directory."""
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "link").symlink_to(outside, target_is_directory=True)
    _put_many(client, bucket, ["p/link/evil.txt", "p/ok.txt", "p/a/./b", "p/empty/"])
    status, _, err, _ = run("cp", "-r", f"s3://{bucket}/p", str(dest))
    assert status == cli.EXIT_ERROR
    assert "skipping s3://" in err and "p/link/evil.txt" in err and "p/a/./b" in err
    assert list(outside.iterdir()) == []
    assert (dest / "ok.txt").read_bytes() == b"x" and (dest / "empty").is_dir()
    assert "empty" not in err


# -- B: stdin/stdout, local trees, rb --force ------------------------------------------------


def test_dash_is_stdin_and_stdout(bucket: str, env: dict[str, str], tmp_path: Path) -> None:  # noqa: F811
    """``cp - s3://...`` uploads stdin (multipart when large), ``cp s3://... -``
    writes to stdout; no file named ``-`` is read or created."""
    (tmp_path / "-").write_bytes(b"stale file named dash")
    small = b"report v2 -- from the pipe\n"
    up = _script("cp", "-", f"s3://{bucket}/new.txt", env=env, input=small, cwd=tmp_path, timeout=60)
    assert up.returncode == 0, up.stderr
    down = _script("cp", f"s3://{bucket}/new.txt", "-", env=env, cwd=tmp_path, timeout=60)
    assert down.returncode == 0 and down.stdout == small
    big = os.urandom(11 * MiB + 5)
    up = _script("cp", "--part-size", "5MiB", "-", f"s3://{bucket}/big", env=env, input=big, cwd=tmp_path, timeout=60)
    assert up.returncode == 0, up.stderr
    assert b"-3)" in up.stdout  # three parts
    down = _script("cp", f"s3://{bucket}/big", "-", env=env, cwd=tmp_path, timeout=60)
    assert down.stdout == big
    assert (tmp_path / "-").read_bytes() == b"stale file named dash"
    assert _script("cp", "-r", "-", f"s3://{bucket}/x", env=env, timeout=60).returncode == cli.EXIT_USAGE


def test_cp_r_upload_reports_unreadable_directories_and_follows_links(
    bucket: str, client: LightningStorClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A directory that cannot be listed is reported and the command exits 1
    (the rest is still copied); a symlinked directory is followed once, a link
    back into the tree (a loop) is skipped with a warning."""
    tree = tmp_path / "tree"
    (tree / "locked").mkdir(parents=True)
    (tree / "locked" / "secret.txt").write_bytes(b"s")
    (tree / "ok.txt").write_bytes(b"o")
    other = tmp_path / "other"
    other.mkdir()
    (other / "f.txt").write_bytes(b"f")
    (tree / "linked").symlink_to(other, target_is_directory=True)
    (tree / "loop").symlink_to(tree, target_is_directory=True)
    real_scandir = os.scandir

    def scandir(path: Any = ".") -> Any:  # the tests run as root: chmod 000 would not stop them
        # (a file descriptor too: rmtree of a passed test's tmp_path scans by fd)
        if not isinstance(path, int) and os.fspath(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    status, _, err, _ = run("cp", "-r", str(tree), f"s3://{bucket}/up")
    assert status == cli.EXIT_ERROR
    assert "cannot read" in err and "locked" in err and "Permission denied" in err
    assert "loop" in err and "a loop" in err
    assert sorted(_keys(client, bucket)) == ["up/linked/f.txt", "up/ok.txt"]


def test_cp_r_upload_copies_every_real_directory_and_goes_on_after_a_refusal(
    bucket: str, client: LightningStorClient, tmp_path: Path
) -> None:
    """A real directory is copied under its own name even when a link to it
    is listed first (it was skipped as "a link, already copied", exit 0); a
    file the server refuses (a key too long) or that is no regular file (a
    FIFO, which blocked the copy for ever) is reported, and the rest is
    still copied, exit 1."""
    tree = tmp_path / "tree"
    (tree / "a" / "b" / "c").mkdir(parents=True)
    (tree / "a" / "b" / "c" / "file.txt").write_bytes(b"deep")
    (tree / "0link").symlink_to(tree / "a" / "b" / "c", target_is_directory=True)  # listed before "a"
    long_dir = tree / "m" / ("d" * 255) / ("e" * 255) / ("f" * 255) / ("g" * 255)
    long_dir.mkdir(parents=True)
    (long_dir / "too-long.txt").write_bytes(b"x")  # a key over 1,024 bytes
    os.mkfifo(tree / "n-fifo")
    (tree / "z-late.txt").write_bytes(b"late")
    status, _, err, _ = run("cp", "-r", str(tree), f"s3://{bucket}/up")
    assert status == cli.EXIT_ERROR, err
    assert "KeyTooLongError" in err and "not a regular file" in err
    assert sorted(_keys(client, bucket)) == ["up/0link/file.txt", "up/a/b/c/file.txt", "up/z-late.txt"]


def test_a_download_into_a_fifo_or_through_a_symlink_writes_into_it(
    bucket: str, client: LightningStorClient, tmp_path: Path
) -> None:
    """A download onto a FIFO (or a device) writes into it; onto a symlink,
    into the file it names.  Each was replaced by a regular file (a reader
    of the FIFO got nothing; a root ``cp s3://b/k /dev/null`` would have
    replaced /dev/null)."""
    client.put_object(bucket, "k", b"payload")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with ThreadPoolExecutor(1) as pool:
        read = pool.submit(fifo.read_bytes)
        status, _, err, _ = run("cp", f"s3://{bucket}/k", str(fifo))
        assert status == cli.EXIT_OK, err
        assert read.result(timeout=30) == b"payload"
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    target = tmp_path / "target.txt"
    target.write_bytes(b"old")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    assert run("cp", f"s3://{bucket}/k", str(link))[0] == cli.EXIT_OK
    assert link.is_symlink() and target.read_bytes() == b"payload"


def test_a_single_file_whose_name_is_not_utf8_is_an_error_not_a_traceback(
    bucket: str, tmp_path: Path
) -> None:
    """``cp <file> s3://...`` of a file whose name cannot be a key: exit 1
    with a message (it was a Python traceback)."""
    name = os.fsdecode(os.fsencode(str(tmp_path)) + b"/bad\xff.txt")
    Path(name).write_bytes(b"x")
    status, _, err, _ = run("cp", name, f"s3://{bucket}/")
    assert status == cli.EXIT_ERROR and "not valid UTF-8" in err and "Traceback" not in err


def test_rb_force_empties_a_versioned_bucket_of_more_than_a_page(
    env: dict[str, str], client: LightningStorClient  # noqa: F811
) -> None:
    """1002 versions: the 1000th falls inside k0333's versions, so paging on from
    a deleted marker version lost the rest of that key (before: BucketNotEmpty)."""
    name = f"v-{uuid.uuid4().hex[:16]}"
    assert run("mb", "--versioning", f"s3://{name}")[0] == 0
    keys = [f"k{i:04d}" for i in range(334)]
    for _ in range(3):
        _put_many(client, name, keys)
    status, _, err, _ = run("rb", "--force", f"s3://{name}")
    assert status == 0, err
    assert name not in [b.name for b in client.list_buckets()]


# -- C: interruption, throttling, partial failures, credentials ----------------------------------


def test_interrupted_multipart_upload_stops_promptly_and_is_aborted(
    bucket: str, client: LightningStorClient, tmp_path: Path
) -> None:
    """Ctrl-C while parts are queued: no further part is sent (before: every
    queued part went up first), and the upload is aborted."""
    path = tmp_path / "big"
    path.write_bytes(os.urandom(40 * MiB))
    sent = [0]

    def slow(n: int) -> None:  # paced, so the interrupt lands early on loopback too
        sent[0] += n
        time.sleep(0.02)

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 0.2)
    try:
        with pytest.raises(KeyboardInterrupt):
            client.upload_file(str(path), bucket, "big", part_size=5 * MiB, concurrency=1, progress=slow)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert sent[0] <= 10 * MiB, f"sent {sent[0] / MiB:.0f} MiB after the interrupt"
    assert list(client.list_multipart_uploads(bucket).uploads) == []


def test_upload_above_the_per_principal_call_cap_slows_down_and_succeeds(
    bucket: str, client: LightningStorClient, tmp_path: Path
) -> None:
    """12 parts at once against a cap of 8 calls: the refused parts are retried
    with fewer in flight instead of failing the upload (before: SlowDown, exit 6)."""
    src = tmp_path / "big"
    src.write_bytes(os.urandom(60 * MiB))
    status, out, err, _ = run("cp", "--concurrency", "12", "--part-size", "5MiB", str(src), f"s3://{bucket}/big")
    assert status == 0, err
    assert "-12)" in out
    assert client.head_object(bucket, "big").size == 60 * MiB


def test_rm_r_partial_failure_reports_only_deleted_keys_and_exits_by_code(
    bucket: str, client: LightningStorClient, s3: Any
) -> None:
    """A key the bucket policy protects is not printed as deleted, and the
    command exits 4 (AccessDenied) instead of 1."""
    _put_many(client, bucket, ["d/a", "d/locked", "d/z"])
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Deny", "Principal": "*", "Action": "s3:DeleteObject",
                       "Resource": f"arn:aws:s3:::{bucket}/d/locked"}],
    }  # fmt: skip
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    try:
        status, out, err, _ = run("rm", "-r", f"s3://{bucket}/d/")
    finally:
        s3.delete_bucket_policy(Bucket=bucket)
    assert status == cli.EXIT_AUTH, err
    assert "AccessDenied" in err and "d/locked" in err
    assert f"s3://{bucket}/d/a" in out and f"s3://{bucket}/d/z" in out and "locked" not in out
    assert _keys(client, bucket) == ["d/locked"]


def test_access_keys_on_the_command_line_beat_a_token_in_the_environment(
    env: dict[str, str],  # noqa: F811
) -> None:
    """A stale LIGHTNINGSTOR_TOKEN left in the shell does not override
    --access-key/--secret-key given explicitly (before: exit 4)."""
    bad = make_token(ROOT_ACCESS_KEY, "not-the-secret")
    only_token = {"LIGHTNINGSTOR_ENDPOINT": env["LIGHTNINGSTOR_ENDPOINT"], "LIGHTNINGSTOR_TOKEN": bad,
                  "LIGHTNINGSTOR_ACCESS_KEY": "", "LIGHTNINGSTOR_SECRET_KEY": ""}  # fmt: skip
    assert _script("ls", env=only_token, timeout=60).returncode == cli.EXIT_AUTH
    done = _script("--access-key", ROOT_ACCESS_KEY, "--secret-key", ROOT_SECRET_KEY, "ls", env=only_token, timeout=60)
    assert done.returncode == 0, done.stderr


def test_downloads_get_the_umask_mode_or_keep_the_existing_one(
    bucket: str, client: LightningStorClient, tmp_path: Path
) -> None:
    """A new file is created as ``open`` would under the umask (not 0600); an
    existing file keeps its mode."""
    client.put_object(bucket, "f", b"data")
    old = os.umask(0o022)
    try:
        assert run("cp", f"s3://{bucket}/f", str(tmp_path / "new"))[0] == 0
        existing = tmp_path / "existing"
        existing.write_bytes(b"old")
        existing.chmod(0o664)
        assert run("cp", f"s3://{bucket}/f", str(existing))[0] == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o644
    assert stat.S_IMODE(existing.stat().st_mode) == 0o664 and existing.read_bytes() == b"data"


def test_quiet_does_not_hide_a_token(env: dict[str, str]) -> None:  # noqa: F811
    """``TOKEN=$(lightningstor -q token)`` gets the token: it is the command's output."""
    status, out, _, _ = run("-q", "token")
    assert status == 0 and out.startswith("lst1.")


@pytest.fixture(scope="module")
def small_put_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    base = tmp_path_factory.mktemp("smallput")
    (base / "data").mkdir()
    (base / "c.toml").write_text("[limits]\nmax_grpc_put_object_bytes = 1048576\n")
    proc = ServerProcess(base / "data", config=str(base / "c.toml")).start()
    yield proc
    proc.stop()


def test_upload_falls_back_to_multipart_below_a_lowered_put_limit(
    small_put_server: ServerProcess, tmp_path: Path
) -> None:
    """A server whose PutObject limit is 1 MiB: a 2 MB file (under the 5 MiB
    threshold) and 2 MB from stdin still upload, as one-part multipart uploads."""
    small_env = {"LIGHTNINGSTOR_ENDPOINT": f"grpc://{small_put_server.grpc_endpoint}", "LIGHTNINGSTOR_TOKEN": "",
           "LIGHTNINGSTOR_ACCESS_KEY": ROOT_ACCESS_KEY, "LIGHTNINGSTOR_SECRET_KEY": ROOT_SECRET_KEY}  # fmt: skip
    data = os.urandom(2_000_000)
    (tmp_path / "f").write_bytes(data)
    assert _script("mb", "s3://small", env=small_env, timeout=60).returncode == 0
    done = _script("cp", str(tmp_path / "f"), "s3://small/f", env=small_env, timeout=60)
    assert done.returncode == 0, done.stderr
    done = _script("cp", "-", "s3://small/g", env=small_env, input=data, timeout=60)
    assert done.returncode == 0, done.stderr
    for key in ("f", "g"):
        assert _script("cat", f"s3://small/{key}", env=small_env, timeout=60).stdout == data


def test_cp_r_skips_a_file_name_that_is_not_utf8(bucket: str, client: LightningStorClient, tmp_path: Path) -> None:
    """Such a name cannot be a key: it is reported and skipped, the rest copied, exit 1
    (before: a traceback and nothing after it copied)."""
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "a.txt").write_bytes(b"a")
    with open(os.path.join(os.fsencode(tree), b"bad\xff.txt"), "wb") as f:
        f.write(b"b")
    (tree / "z.txt").write_bytes(b"z")
    status, _, err, _ = run("cp", "-r", str(tree), f"s3://{bucket}/t")
    assert status == cli.EXIT_ERROR and "not valid UTF-8" in err
    assert sorted(_keys(client, bucket)) == ["t/a.txt", "t/z.txt"]


class _DroppedStream:
    """A GetObject stream whose connection drops after ``good`` chunks."""

    def __init__(self, stream: Any, good: int) -> None:
        self._stream, self._good = stream, good
        self.metadata = stream.metadata

    def __iter__(self) -> Iterator[bytes]:
        for n, chunk in enumerate(self._stream):
            if n == self._good:
                raise errors.CODE_CLASSES["ServiceUnavailable"]("connection dropped", code="ServiceUnavailable")
            yield chunk

    def close(self) -> None:
        self._stream.close()

    def __enter__(self) -> _DroppedStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def test_download_resumes_a_dropped_stream_with_a_range(
    bucket: str, client: LightningStorClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A download whose stream fails with a retryable error mid-way continues
    from the bytes it has (a range request guarded by the ETag) instead of failing."""
    data = os.urandom(3 * MiB + 7)
    client.put_object(bucket, "f", data)
    real = client.get_object
    ranges: list[str | None] = []

    def flaky(*args: Any, **kwargs: Any) -> Any:
        ranges.append(kwargs.get("range"))
        stream = real(*args, **kwargs)
        return _DroppedStream(stream, 2) if len(ranges) == 1 else stream

    monkeypatch.setattr(client, "get_object", flaky)
    client.download_file(bucket, "f", str(tmp_path / "f"))
    assert (tmp_path / "f").read_bytes() == data
    assert ranges == [None, f"bytes={2 * MiB}-"]


def test_cp_r_download_goes_on_after_a_local_error(bucket: str, client: LightningStorClient, tmp_path: Path) -> None:
    """Keys ``a`` and ``a/b`` cannot both be files: the second is reported, the
    keys after it are still downloaded, and the command exits 1 (before: it
    stopped at the first error)."""
    _put_many(client, bucket, ["p/a", "p/a/b", "p/c"])
    status, _, err, _ = run("cp", "-r", f"s3://{bucket}/p/", str(tmp_path / "d"))
    assert status == cli.EXIT_ERROR and "download failed" in err and "p/a/b" in err
    assert (tmp_path / "d" / "a").read_bytes() == b"x" and (tmp_path / "d" / "c").read_bytes() == b"x"


@contextlib.contextmanager
def _cli(argv: list[str], env: dict[str, str], **kwargs: Any) -> Iterator[subprocess.Popen[bytes]]:  # noqa: F811
    """The console script running ``argv``; killed if still running at the end."""
    proc = subprocess.Popen([SCRIPT, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, **env}, **kwargs)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_sigterm_aborts_a_streamed_upload_as_ctrl_c_does(
    bucket: str, client: LightningStorClient, env: dict[str, str]  # noqa: F811
) -> None:
    """SIGTERM (a job runner's timeout, systemd) while stdin is being
    uploaded in parts: exit 130 and the multipart upload aborted (it killed
    the process on the spot, leaving the upload and its parts behind)."""
    with _cli(["cp", "-", f"s3://{bucket}/streamed"], env, stdin=subprocess.PIPE) as proc:
        assert proc.stdin is not None
        proc.stdin.write(os.urandom(12 * MiB))  # past the threshold: a multipart upload starts
        proc.stdin.flush()
        wait_until(lambda: list(client.list_multipart_uploads(bucket).uploads), "the multipart upload", poll=0.005)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == cli.EXIT_INTERRUPTED, err
    assert list(client.list_multipart_uploads(bucket).uploads) == []


def test_sigterm_during_a_download_leaves_no_temporary_file(
    bucket: str, client: LightningStorClient, env: dict[str, str], tmp_path: Path  # noqa: F811
) -> None:
    """SIGTERM mid-download: exit 130, and neither the destination nor the
    temporary .part file is left (the signal's default action left the
    .part behind).  The process is stopped (SIGSTOP) as soon as its .part
    appears, so the signal lands mid-stream however fast loopback is."""
    source = tmp_path / "source"
    source.write_bytes(os.urandom(128 * MiB))
    client.upload_file(str(source), bucket, "big", part_size=32 * MiB)
    source.unlink()
    dest = tmp_path / "dest"
    dest.mkdir()
    with _cli(["cp", f"s3://{bucket}/big", str(dest / "big")], env) as proc:
        wait_until(lambda: list(dest.glob("*.part")), "the temporary file", poll=0.005)
        proc.send_signal(signal.SIGSTOP)
        assert list(dest.glob("*.part")), "the download finished before it could be stopped"
        proc.send_signal(signal.SIGTERM)
        proc.send_signal(signal.SIGCONT)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == cli.EXIT_INTERRUPTED, err
    assert list(dest.iterdir()) == []
