"""``lightningstor``: a command line over the gRPC client library.

    lightningstor mb s3://photos
    lightningstor cp -r ./album s3://photos/2026/
    lightningstor ls -r s3://photos
    lightningstor cat s3://photos/2026/cat.jpg > cat.jpg
    lightningstor presign s3://photos/2026/cat.jpg --expires 600
    producer | lightningstor cp - s3://photos/log.txt   # - is stdin/stdout

Connection and credentials come from options or the environment
(``LIGHTNINGSTOR_ENDPOINT``, ``LIGHTNINGSTOR_TOKEN``,
``LIGHTNINGSTOR_ACCESS_KEY``/``LIGHTNINGSTOR_SECRET_KEY`` or
``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``LIGHTNINGSTOR_S3_ENDPOINT``).

Exit codes (stable, for scripts): see :data:`EXIT_CODES`.

Like any Unix filter, the command stops quietly when the reader of its
stdout goes away (``lightningstor cat s3://b/k | head -c 10``): no message,
and exit status 141, what a shell reports for a process killed by SIGPIPE
(:class:`StdoutClosed`).  Only stdout gets this: a local file that cannot be
written is an error like any other.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import posixpath
import signal
import stat
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, BinaryIO, NoReturn, TextIO

import grpc

from lightningstor.client import errors, retry
from lightningstor.client.client import LightningStorClient
from lightningstor.client.localpaths import inside, safe_relative
from lightningstor.client.progress import ProgressBar, human
from lightningstor.client.transfer import DEFAULT_CONCURRENCY, DEFAULT_THRESHOLD, upload_stream
from lightningstor.grpc.gen import lightningstor_pb2 as pb

EXIT_OK = 0
EXIT_ERROR = 1  # any other failure (server error, local I/O)
EXIT_USAGE = 2  # bad command line (argparse uses 2 too)
EXIT_NOT_FOUND = 3  # no such bucket / key / version / upload
EXIT_AUTH = 4  # no or bad credentials, or access denied
EXIT_CONFLICT = 5  # exists already, not empty, precondition failed
EXIT_UNAVAILABLE = 6  # server unreachable or overloaded: worth retrying
EXIT_INTERRUPTED = 130  # Ctrl-C or SIGTERM
EXIT_STDOUT_CLOSED = 141  # 128 + SIGPIPE: the reader of stdout went away

EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_ERROR: "other error (server error, local file problem; cp -r that skipped a key or file)",
    EXIT_USAGE: "invalid command line",
    EXIT_NOT_FOUND: "bucket, key, version or upload not found",
    EXIT_AUTH: "not authenticated, or access denied",
    EXIT_CONFLICT: "conflict: already exists, bucket not empty, precondition failed",
    EXIT_UNAVAILABLE: "server unreachable or unavailable (retry later)",
    EXIT_INTERRUPTED: "interrupted (SIGINT or SIGTERM)",
    EXIT_STDOUT_CLOSED: "stdout closed by its reader (e.g. | head), as a process killed by SIGPIPE; nothing printed",
}

_STATUS_EXIT = {
    grpc.StatusCode.NOT_FOUND: EXIT_NOT_FOUND,
    grpc.StatusCode.UNAUTHENTICATED: EXIT_AUTH,
    grpc.StatusCode.PERMISSION_DENIED: EXIT_AUTH,
    grpc.StatusCode.ALREADY_EXISTS: EXIT_CONFLICT,
    grpc.StatusCode.FAILED_PRECONDITION: EXIT_CONFLICT,
    grpc.StatusCode.ABORTED: EXIT_CONFLICT,
    grpc.StatusCode.UNAVAILABLE: EXIT_UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED: EXIT_UNAVAILABLE,
}

# S3 codes that mean "retry later" whatever their gRPC status (the ones the
# client retries itself): the server answers a principal over its gRPC call
# cap SlowDown with RESOURCE_EXHAUSTED, a status a quota exceeded shares.
_RETRY_LATER_CODES = retry.REFUSED_CODES | retry.TRANSIENT_CODES
# A command gives a refused call its few tries (about 3 s), not the library's
# minute: a script learns "retry later" (exit 6) and decides itself.
CLI_RETRY = retry.RetryPolicy(refused_seconds=0.0)

SCHEMES = ("s3://", "ls://")


class UsageError(Exception):
    """A problem with the command line: exit status 2."""


class StdoutClosed(Exception):
    """The reader of stdout went away (EPIPE on a write to it).

    Python ignores SIGPIPE, so a write to a closed pipe raises
    ``BrokenPipeError`` instead of ending the process as it ends ``cat``.
    Writes to stdout turn it into this exception (:func:`_stdout_writes`),
    so that :func:`main` can tell it from an ``OSError`` on a local file
    (which must stay an error) and exit quietly with
    :data:`EXIT_STDOUT_CLOSED`.
    """


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """Within: SIGTERM (``kill``, a job runner's timeout, systemd) ends the
    command as Ctrl-C does, by a KeyboardInterrupt where it is.  Its default
    action killed the process on the spot: a download left its temporary
    ``.part`` file behind and a multipart upload its parts on the server
    (never aborted, they hold space until a lifecycle rule removes them)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers belong to the main thread (in-process callers)
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _stdout_writes() -> Iterator[None]:
    """Around writes to stdout: ``BrokenPipeError`` -> :class:`StdoutClosed`."""
    try:
        yield
    except BrokenPipeError as e:
        raise StdoutClosed() from e


def _discard_stdout(out: TextIO) -> None:
    """Point the process's stdout at the null device, so the interpreter's
    last flush of what is still buffered does not print a BrokenPipeError
    on the way out (the recipe of Python's ``signal`` documentation)."""
    if out is not sys.stdout:
        return
    try:
        fd = out.fileno()
    except (OSError, ValueError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


@dataclass(frozen=True)
class Remote:
    bucket: str
    key: str  # may be "" (the bucket) or end with "/" (a prefix)

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def parse_remote(text: str) -> Remote | None:
    """``s3://bucket/key`` (or ``ls://``) -> Remote; a local path -> None."""
    for scheme in SCHEMES:
        if text.startswith(scheme):
            bucket, _, key = text[len(scheme) :].partition("/")
            if not bucket:
                raise UsageError(f"no bucket in {text!r}")
            return Remote(bucket, key)
    return None


def _remote(text: str, what: str = "location") -> Remote:
    remote = parse_remote(text)
    if remote is None:
        raise UsageError(f"expected an s3://bucket/key {what}, got {text!r}")
    return remote


# -- output --------------------------------------------------------------------


class Ui:
    def __init__(
        self, *, quiet: bool, progress: bool, out: TextIO, err: TextIO, inp: BinaryIO | None = None
    ) -> None:
        self.quiet = quiet
        self.progress = progress
        self.out = out
        self.err = err
        self._inp = inp

    def stdin(self) -> BinaryIO:
        """What ``cp -`` uploads."""
        return self._inp if self._inp is not None else sys.stdin.buffer

    def result(self, text: str) -> None:
        """A command's output itself (a URL, a token): printed even with ``-q``."""
        with _stdout_writes():
            print(text, file=self.out, flush=True)

    def say(self, text: str) -> None:
        if not self.quiet:
            with _stdout_writes():
                print(text, file=self.out, flush=True)

    def warn(self, text: str) -> None:
        print(f"lightningstor: {text}", file=self.err, flush=True)

    def bar(self, label: str, total: int | None) -> ProgressBar:
        return ProgressBar(label, total, enabled=self.progress and not self.quiet, stream=self.err)


def _date(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


# -- commands ------------------------------------------------------------------


def cmd_mb(client: LightningStorClient, args: argparse.Namespace, ui: Ui) -> int:
    target = _remote(args.bucket, "bucket")
    client.create_bucket(target.bucket, versioning=args.versioning)
    ui.say(f"make_bucket: {target.bucket}")
    return EXIT_OK


def cmd_rb(client: LightningStorClient, args: argparse.Namespace, ui: Ui) -> int:
    target = _remote(args.bucket, "bucket")
    if args.force:
        _delete_everything(client, target.bucket, ui)
    client.delete_bucket(target.bucket)
    ui.say(f"remove_bucket: {target.bucket}")
    return EXIT_OK


def _delete_everything(client: LightningStorClient, bucket: str, ui: Ui) -> None:
    """Every version and delete marker (a versioned bucket is empty only then),
    and every unfinished multipart upload.

    Each round lists the *first* page again and deletes it: paging on with
    markers would name a version just deleted, and the listing cannot resume
    inside a key from a version that is gone."""
    while True:
        page = client.list_object_versions(bucket)
        if not page.versions:
            break
        failures = _delete_batch(client, bucket, [(v.key, v.version_id) for v in page.versions], ui, announce=False)
        if failures:
            raise _delete_error(failures)
    while True:
        uploads = client.list_multipart_uploads(bucket)
        if not uploads.uploads:
            break
        for upload in uploads.uploads:
            client.abort_multipart_upload(bucket, upload.key, upload.upload_id)


def _delete_batch(
    client: LightningStorClient, bucket: str, batch: list[tuple[str, str | None]], ui: Ui, *, announce: bool = True
) -> list[pb.DeleteError]:
    """Delete up to 1000 keys; say ``delete:`` only for the keys the server
    deleted, warn about the others and return them."""
    result = client.delete_objects(bucket, batch, quiet=not announce)
    if announce:
        for deleted in result.deleted:
            ui.say(f"delete: s3://{bucket}/{deleted.key}")
    for failure in result.errors:
        ui.warn(f"delete failed: s3://{bucket}/{failure.key}: {failure.code}: {failure.message}")
    batch.clear()
    return list(result.errors)


def _delete_error(failures: Sequence[pb.DeleteError]) -> errors.LightningStorError:
    """The typed error of the first failure, so the exit status follows its code
    (``AccessDenied`` exits 4)."""
    code = failures[0].code
    cls = errors.CODE_CLASSES.get(code, errors.LightningStorError)
    return cls(f"{len(failures)} object(s) could not be deleted ({failures[0].message})", code=code)


def cmd_ls(client: LightningStorClient, args: argparse.Namespace, ui: Ui) -> int:
    if args.path is None:
        for bucket in client.list_buckets():
            ui.say(f"{_date(bucket.created_at)}  {bucket.name}")
        return EXIT_OK
    target = _remote(args.path)
    if args.versions:
        for v in client.iter_object_versions(target.bucket, prefix=target.key):
            flags = ("latest " if v.is_latest else "") + ("delete-marker" if v.delete_marker else "")
            ui.say(f"{_date(v.last_modified)} {v.size:>12}  {v.version_id:<32}  {flags:<20} {v.key}")
        return EXIT_OK
    delimiter = None if args.recursive else "/"
    for item in client.iter_objects(target.bucket, prefix=target.key, delimiter=delimiter):
        if isinstance(item, str):
            ui.say(f"{'PRE':>32} {item}")
        else:
            ui.say(f"{_date(item.last_modified)} {item.size:>12} {item.key}")
    return EXIT_OK


def _dir_prefix(key: str) -> str:
    """The listing prefix of a recursive command: ``photos`` means ``photos/``
    (as the aws CLI lists it), so sibling keys such as ``photos.txt`` or
    ``photos-backup/...`` are never part of it."""
    return key if not key or key.endswith("/") else key + "/"


def _local_destination(path: str, key: str) -> str:
    """Where ``cp s3://b/key path`` writes: into ``path`` if it is a directory,
    under the key's last component, which must be a safe file name (a key
    ending in ``/..`` must not make the download land beside ``path``)."""
    if path.endswith(os.sep) or os.path.isdir(path):
        name = posixpath.basename(key)
        if safe_relative(name, "") is None:
            raise UsageError(
                f"the key {key!r} has no usable local file name ({name!r}): give DEST as a file path"
            )
        return os.path.join(path, name)
    return path


def _remote_key(target: Remote, filename: str) -> str:
    """``cp file s3://b/`` or ``s3://b/dir/`` keeps the file's name."""
    if not target.key or target.key.endswith("/"):
        return target.key + os.path.basename(filename)
    return target.key


def _upload(client: LightningStorClient, path: str, target: Remote, ui: Ui, args: argparse.Namespace) -> None:
    size = os.path.getsize(path) if os.path.isfile(path) else None  # a pipe's size is unknown
    bar = ui.bar(f"upload: {path}", size)
    try:
        result = client.upload_file(
            path, target.bucket, target.key, content_type=args.content_type, progress=bar,
            part_size=args.part_size, concurrency=args.concurrency, threshold=args.threshold,
        )  # fmt: skip
    finally:
        bar.close()
    ui.say(f"upload: {path} to {target} ({human(result.size)}, etag {result.etag})")


def _download(client: LightningStorClient, source: Remote, path: str, ui: Ui, version_id: str | None) -> None:
    bar = ui.bar(f"download: {source}", None)
    try:
        meta = client.download_file(
            source.bucket, source.key, path, version_id=version_id, progress=bar,
            on_metadata=lambda m: bar.set_total(m.size),
        )  # fmt: skip
    finally:
        bar.close()
    ui.say(f"download: {source} to {path} ({human(meta.size)})")


def _walk(directory: str, ui: Ui, problems: list[str]) -> Iterator[tuple[str, str]]:
    """``(path, posix relative path)`` of every file under ``directory``, sorted.

    Symlinked directories are followed (as the aws CLI does); only a link
    back to a directory on its own path from ``directory`` (a loop) is
    skipped, with a warning: every real directory is copied under its own
    name, whatever links to it and in whatever order the filesystem lists
    them (marking directories "seen" as they were listed skipped a real
    directory listed after a link to it, and called it a link).  A
    directory that cannot be read is reported in ``problems`` (the command
    then fails) rather than silently left out."""

    def failed(error: OSError) -> None:
        problems.append(f"{error.filename}: {error.strerror}")
        ui.warn(f"cannot read {error.filename}: {error.strerror}")

    # The real paths of each walked directory and of its ancestors in the walk.
    chains = {directory: frozenset({os.path.realpath(directory)})}
    for root, dirs, files in os.walk(directory, onerror=failed, followlinks=True):
        chain = chains.pop(root)
        for name in list(dirs):
            full = os.path.join(root, name)
            real = os.path.realpath(full)
            if real in chain:
                ui.warn(f"skipping {full}: a link back to {real}, which contains it (a loop)")
                dirs.remove(name)
            else:
                chains[full] = chain | {real}
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            yield path, os.path.relpath(path, directory).replace(os.sep, "/")


def cmd_cp(client: LightningStorClient, args: argparse.Namespace, ui: Ui) -> int:
    if args.concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    if "-" in (args.source, args.dest):
        return _cp_stdio(client, args, ui)
    source, dest = parse_remote(args.source), parse_remote(args.dest)
    if source is None and dest is None:
        raise UsageError("one of SOURCE and DEST must be an s3://bucket/key location")
    if source is None:
        assert dest is not None
        if os.path.isdir(args.source):
            if not args.recursive:
                raise UsageError(f"{args.source} is a directory (use -r)")
            return _upload_tree(client, args, dest, ui)
        _upload(client, args.source, Remote(dest.bucket, _remote_key(dest, args.source)), ui, args)
        return EXIT_OK
    if dest is None:
        if args.recursive:
            return _download_tree(client, source, args.dest, ui)
        if not source.key:
            raise UsageError(f"{args.source} names no object (use -r for a whole bucket)")
        _download(client, source, _local_destination(args.dest, source.key), ui, args.version_id)
        return EXIT_OK
    # remote -> remote: a server-side copy
    if args.recursive:
        prefix, dest_prefix = _dir_prefix(source.key), _dir_prefix(dest.key)
        # The whole listing first: copies made into a destination inside the
        # source would otherwise show up in later pages and be copied again.
        keys = [item.key for item in client.iter_objects(source.bucket, prefix=prefix) if not isinstance(item, str)]
        for key in keys:
            target = Remote(dest.bucket, dest_prefix + key[len(prefix) :])
            client.copy_object(source.bucket, key, target.bucket, target.key)
            ui.say(f"copy: s3://{source.bucket}/{key} to {target}")
        return EXIT_OK
    if not source.key:
        raise UsageError(f"{args.source} names no object (use -r for a whole bucket)")
    key = _remote_key(dest, posixpath.basename(source.key))
    client.copy_object(source.bucket, source.key, dest.bucket, key, source_version_id=args.version_id)
    ui.say(f"copy: {source} to {Remote(dest.bucket, key)}")
    return EXIT_OK


# Failures no other object of a tree copy would escape: they end the command.
_TREE_FATAL = (errors.UnauthenticatedError, errors.NoSuchBucket)


def _upload_tree(client: LightningStorClient, args: argparse.Namespace, dest: Remote, ui: Ui) -> int:
    """``cp -r DIR s3://...``: every file; a file or directory that cannot be
    read is reported and the rest still copied, and the command exits 1."""
    prefix = _dir_prefix(dest.key)
    problems: list[str] = []
    for path, rel in _walk(args.source, ui, problems):
        try:
            if not stat.S_ISREG(os.stat(path).st_mode):
                # A FIFO would block the copy for ever, a device stream
                # without end: skipped, as the aws CLI skips them.
                problems.append(path)
                ui.warn(f"skipping {path}: not a regular file")
                continue
            _upload(client, path, Remote(dest.bucket, prefix + rel), ui, args)
        except OSError as e:
            problems.append(f"{path}: {e.strerror or e}")
            ui.warn(f"upload failed: {path}: {e.strerror or e}")
        except UnicodeError:  # a file name that is not valid UTF-8 cannot be a key
            problems.append(path)
            ui.warn(f"skipping {path!r}: its name is not valid UTF-8")
        except errors.LightningStorError as e:
            if isinstance(e, _TREE_FATAL):
                raise
            # One refused object (a key too long, a policy's deny): the
            # others are still copied, and the command exits 1.
            problems.append(path)
            ui.warn(f"upload failed: {path}: {e.code}: {e.message}")
    if problems:
        ui.warn(f"{len(problems)} file(s) or directories not copied")
        return EXIT_ERROR
    return EXIT_OK


def _download_tree(client: LightningStorClient, source: Remote, directory: str, ui: Ui) -> int:
    """``cp -r s3://... DIR``: every key under the prefix into the tree.  A key
    that is no safe local name, or whose file cannot be written, is reported
    and skipped, the rest still copied, and the command exits 1."""
    prefix = _dir_prefix(source.key)
    os.makedirs(directory, exist_ok=True)
    problems = 0
    for item in client.iter_objects(source.bucket, prefix=prefix):
        assert not isinstance(item, str)
        if item.key.endswith("/"):  # a folder marker: a directory, if its name is safe
            rel = safe_relative(item.key.rstrip("/"), prefix)
            if rel is not None and inside(directory, os.path.join(directory, rel)):
                try:
                    os.makedirs(os.path.join(directory, rel), exist_ok=True)
                except OSError as e:
                    ui.warn(f"cannot create {os.path.join(directory, rel)}: {e.strerror or e}")
                    problems += 1
                continue
            if item.key == prefix:
                continue
        safe = safe_relative(item.key, prefix)
        path = os.path.join(directory, safe) if safe is not None else ""
        if safe is None or not inside(directory, path):
            ui.warn(f"skipping s3://{source.bucket}/{item.key}: not a safe local file name")
            problems += 1
            continue
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            _download(client, Remote(source.bucket, item.key), path, ui, None)
        except OSError as e:
            ui.warn(f"download failed: s3://{source.bucket}/{item.key}: {e.strerror or e}")
            problems += 1
        except errors.LightningStorError as e:
            if isinstance(e, _TREE_FATAL):
                raise
            ui.warn(f"download failed: s3://{source.bucket}/{item.key}: {e.code}: {e.message}")
            problems += 1
    if problems:
        ui.warn(f"{problems} object(s) not copied")
        return EXIT_ERROR
    return EXIT_OK


def _cp_stdio(client: LightningStorClient, args: argparse.Namespace, ui: Ui) -> int:
    """``cp - s3://b/key`` uploads stdin; ``cp s3://b/key -`` writes the object to stdout."""
    if args.recursive:
        raise UsageError("- (stdin or stdout) cannot be used with -r")
    if args.source == "-":
        dest = parse_remote(args.dest)
        if dest is None or not dest.key or dest.key.endswith("/"):
            raise UsageError("cp - needs a destination s3://bucket/key naming the object")
        bar = ui.bar("upload: -", None)
        try:
            result = upload_stream(
                client, ui.stdin(), dest.bucket, dest.key, content_type=args.content_type,
                part_size=args.part_size, threshold=args.threshold, progress=bar,
            )  # fmt: skip
        finally:
            bar.close()
        ui.say(f"upload: - to {dest} ({human(result.size)}, etag {result.etag})")
        return EXIT_OK
    source = parse_remote(args.source)
    if source is None or not source.key:
        raise UsageError("cp ... - needs a source s3://bucket/key naming an object")
    _write_object(client, source, ui, version_id=args.version_id)
    return EXIT_OK


def cmd_rm(client: LightningStorClient, args: argparse.Namespace, ui: Ui) -> int:
    target = _remote(args.path)
    if args.recursive:
        # s3://b/photos means the "directory" photos/, never photos-backup/ or photos.txt
        batch: list[tuple[str, str | None]] = []
        failures: list[pb.DeleteError] = []
        for item in client.iter_objects(target.bucket, prefix=_dir_prefix(target.key)):
            assert not isinstance(item, str)
            batch.append((item.key, None))
            if len(batch) == 1000:
                failures += _delete_batch(client, target.bucket, batch, ui)
        if batch:
            failures += _delete_batch(client, target.bucket, batch, ui)
        if failures:
            raise _delete_error(failures)
        return EXIT_OK
    if not target.key:
        raise UsageError(f"{args.path} names no object (use -r to delete everything under a prefix)")
    client.delete_object(target.bucket, target.key, version_id=args.version_id)
    ui.say(f"delete: {target}")
    return EXIT_OK


def cmd_cat(client: LightningStorClient, args: argparse.Namespace, ui: Ui) -> int:
    target = _remote(args.path)
    if not target.key:
        raise UsageError(f"{args.path} names no object")
    _write_object(client, target, ui, version_id=args.version_id, range=args.range)
    return EXIT_OK


def _write_object(
    client: LightningStorClient, target: Remote, ui: Ui, *, version_id: str | None, range: str | None = None  # noqa: A002
) -> None:
    """Stream an object to stdout (``cat``, ``cp s3://... -``)."""
    out = ui.out.buffer if hasattr(ui.out, "buffer") else None
    with client.get_object(target.bucket, target.key, version_id=version_id, range=range) as stream, _stdout_writes():
        for chunk in stream:
            if out is not None:
                out.write(chunk)
            else:
                ui.out.write(chunk.decode("utf-8", "replace"))
        if out is not None:
            out.flush()
        ui.out.flush()


def cmd_presign(args: argparse.Namespace, ui: Ui) -> int:
    from urllib.parse import quote

    from lightningstor.auth.presign import presign_v4

    target = _remote(args.path)
    access, secret = _keys(args)
    if not (access and secret):
        raise UsageError("presign needs an access key and secret (--access-key/--secret-key or the environment)")
    base = args.s3_endpoint.rstrip("/")
    url = f"{base}/{quote(target.bucket)}/{quote(target.key, safe='/')}"
    try:
        ui.result(presign_v4(args.method, url, access, secret, region=args.region, expires=args.expires))
    except ValueError as e:
        raise UsageError(str(e)) from None
    return EXIT_OK


def cmd_token(args: argparse.Namespace, ui: Ui) -> int:
    from lightningstor.grpc.token import make_token

    access, secret = _keys(args)
    if not (access and secret):
        raise UsageError("token needs an access key and secret (--access-key/--secret-key or the environment)")
    try:
        ui.result(make_token(access, secret, lifetime=args.lifetime))
    except ValueError as e:
        raise UsageError(str(e)) from None
    return EXIT_OK


# -- plumbing -------------------------------------------------------------------


def _keys(args: argparse.Namespace) -> tuple[str | None, str | None]:
    access = args.access_key or os.environ.get("LIGHTNINGSTOR_ACCESS_KEY") or os.environ.get("AWS_ACCESS_KEY_ID")
    secret = args.secret_key or os.environ.get("LIGHTNINGSTOR_SECRET_KEY") or os.environ.get("AWS_SECRET_ACCESS_KEY")
    return access, secret


def _connect(args: argparse.Namespace) -> LightningStorClient:
    # The command line beats the environment: keys given as options are used
    # even when a (perhaps stale) LIGHTNINGSTOR_TOKEN is set.
    if args.token:
        token = args.token
    elif args.access_key or args.secret_key:
        token = None
    else:
        token = os.environ.get("LIGHTNINGSTOR_TOKEN")
    access, secret = _keys(args)
    if not token and not (access and secret):
        raise UsageError(
            "no credentials: set LIGHTNINGSTOR_TOKEN, or LIGHTNINGSTOR_ACCESS_KEY and LIGHTNINGSTOR_SECRET_KEY"
        )
    if bool(args.cert_file) != bool(args.key_file):
        raise UsageError("--cert-file and --key-file go together (a client certificate and its key)")
    roots, chain, key = (_read_pem(path) for path in (args.ca_file, args.cert_file, args.key_file))
    try:
        return LightningStorClient.connect(
            args.endpoint, token=token or None, access_key=access, secret_key=secret,
            root_certificates=roots, certificate_chain=chain, private_key=key, retry=CLI_RETRY,
        )  # fmt: skip
    except ValueError as e:
        raise UsageError(str(e)) from None


def _read_pem(path: str | None) -> bytes | None:
    if not path:
        return None
    with open(path, "rb") as f:
        return f.read()


def _size(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    value = text.strip().lower().removesuffix("ib").removesuffix("b")
    factor = units.get(value[-1:], 1)
    number = value[:-1] if value[-1:] in units else value
    try:
        return int(float(number) * factor)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 8MiB)") from None


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    epilog = "exit codes:\n" + "\n".join(f"  {code:<4} {text}" for code, text in EXIT_CODES.items())
    parser = _Parser(
        prog="lightningstor",
        description="LightningStor command line (native gRPC API).",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--endpoint", default=os.environ.get("LIGHTNINGSTOR_ENDPOINT", "grpc://127.0.0.1:9001"),
                        help="gRPC endpoint, grpc://host:port or grpcs://host:port (env LIGHTNINGSTOR_ENDPOINT)")
    parser.add_argument("--token", help="bearer token (env LIGHTNINGSTOR_TOKEN)")
    parser.add_argument("--access-key", help="access key id (env LIGHTNINGSTOR_ACCESS_KEY or AWS_ACCESS_KEY_ID)")
    parser.add_argument("--secret-key", help="secret key (env LIGHTNINGSTOR_SECRET_KEY or AWS_SECRET_ACCESS_KEY)")
    parser.add_argument("--ca-file", help="PEM CA certificates to trust for grpcs://")
    parser.add_argument("--cert-file", help="PEM client certificate for grpcs:// when the server requires one (mTLS)")
    parser.add_argument("--key-file", help="PEM private key of --cert-file")
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors and what the command is for (cat data, a token, a URL)")
    progress = parser.add_mutually_exclusive_group()
    progress.add_argument("--progress", dest="progress", action="store_true", default=None,
                          help="show a progress bar on stderr (default: when stderr is a terminal)")
    progress.add_argument("--no-progress", dest="progress", action="store_false")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("mb", help="make a bucket")
    p.add_argument("bucket", metavar="s3://BUCKET")
    p.add_argument("--versioning", action="store_true", help="create it with versioning enabled")

    p = sub.add_parser("rb", help="remove a bucket")
    p.add_argument("bucket", metavar="s3://BUCKET")
    p.add_argument("--force", action="store_true", help="delete every object, version and upload first")

    p = sub.add_parser("ls", help="list buckets, or objects under a prefix")
    p.add_argument("path", nargs="?", metavar="s3://BUCKET[/PREFIX]")
    p.add_argument("-r", "--recursive", action="store_true", help="all keys, not one level")
    p.add_argument("--versions", action="store_true", help="every version and delete marker")

    p = sub.add_parser("cp", help="copy files to, from or between buckets")
    p.add_argument("source", metavar="SOURCE")
    p.add_argument("dest", metavar="DEST")
    p.add_argument("-r", "--recursive", action="store_true", help="a directory or a whole prefix")
    p.add_argument("--content-type", help="Content-Type of uploaded objects")
    p.add_argument("--version-id", help="copy this version of the source")
    p.add_argument("--part-size", type=_size, default=8 << 20, help="multipart part size (default 8MiB)")
    p.add_argument("--threshold", type=_size, default=DEFAULT_THRESHOLD,
                   help="larger files go up as multipart uploads (default 5MiB)")
    p.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY,
                   help=f"parts uploaded at once (default {DEFAULT_CONCURRENCY}; fewer after a SlowDown)")

    p = sub.add_parser("rm", help="delete objects")
    p.add_argument("path", metavar="s3://BUCKET/KEY")
    p.add_argument("-r", "--recursive", action="store_true", help="everything under the prefix")
    p.add_argument("--version-id", help="delete this version for good")

    p = sub.add_parser("cat", help="write an object to stdout")
    p.add_argument("path", metavar="s3://BUCKET/KEY")
    p.add_argument("--version-id")
    p.add_argument("--range", help="bytes=first-last")

    p = sub.add_parser("presign", help="print a presigned S3 URL")
    p.add_argument("path", metavar="s3://BUCKET/KEY")
    p.add_argument("--expires", type=int, default=3600, help="seconds (1..604800, default 3600)")
    p.add_argument("--method", default="GET", choices=["GET", "PUT", "HEAD", "DELETE"])
    p.add_argument("--s3-endpoint", default=os.environ.get("LIGHTNINGSTOR_S3_ENDPOINT", "http://127.0.0.1:9000"),
                   help="S3 endpoint the URL points at (env LIGHTNINGSTOR_S3_ENDPOINT)")
    p.add_argument("--region", default="us-east-1")

    p = sub.add_parser("token", help="print a bearer token for the gRPC API")
    p.add_argument("--lifetime", type=int, default=3600, help="seconds (1..604800, default 3600)")
    return parser


COMMANDS: dict[str, Any] = {
    "mb": cmd_mb, "rb": cmd_rb, "ls": cmd_ls, "cp": cmd_cp, "rm": cmd_rm, "cat": cmd_cat,
}  # fmt: skip
OFFLINE: dict[str, Any] = {"presign": cmd_presign, "token": cmd_token}


def main(
    argv: Sequence[str] | None = None,
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
    inp: BinaryIO | None = None,
) -> int:
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    args = build_parser().parse_args(argv)
    progress = args.progress if args.progress is not None else err.isatty()
    ui = Ui(quiet=args.quiet, progress=progress, out=out, err=err, inp=inp)
    with _sigterm_interrupts():
        return _run(args, ui, out)


def _run(args: argparse.Namespace, ui: Ui, out: TextIO) -> int:
    """The command, its failures turned into messages and exit codes."""
    try:
        if args.command in OFFLINE:
            code = int(OFFLINE[args.command](args, ui))
        else:
            with _connect(args) as client:
                code = int(COMMANDS[args.command](client, args, ui))
        with _stdout_writes():
            out.flush()
        return code
    except StdoutClosed:
        _discard_stdout(out)
        return EXIT_STDOUT_CLOSED
    except UsageError as e:
        ui.warn(str(e))
        return EXIT_USAGE
    except errors.LightningStorError as e:
        ui.warn(f"{e.code}: {e.message}")
        if e.code in _RETRY_LATER_CODES:
            return EXIT_UNAVAILABLE
        return _STATUS_EXIT.get(e.status, EXIT_ERROR)
    except OSError as e:
        ui.warn(str(e))
        return EXIT_ERROR
    except UnicodeError:  # a local name that is not valid UTF-8 cannot be a key
        ui.warn("a file name is not valid UTF-8: it cannot be an object key")
        return EXIT_ERROR
    except KeyboardInterrupt:
        ui.warn("interrupted")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
