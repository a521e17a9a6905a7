"""File transfers: parallel multipart uploads, streaming downloads.

Memory stays bounded whatever the file's size: an upload reads each part
from the file 1 MiB at a time while it streams (``concurrency`` parts in
flight), and a download writes each received message to disk as it arrives.
"""

from __future__ import annotations

import hashlib
import math
import os
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import BinaryIO

from lightningstor.client import retry
from lightningstor.client.client import MESSAGE_CONTENT, LightningStorClient, ObjectStream
from lightningstor.client.errors import LightningStorError
from lightningstor.client.retry import REFUSED_CODES
from lightningstor.grpc.gen import lightningstor_pb2 as pb

MiB = 1 << 20
# The server's default PutObject limit (limits.max_grpc_put_object_bytes):
# larger files go up as multipart uploads.
DEFAULT_THRESHOLD = 5 * MiB
DEFAULT_PART_SIZE = 8 * MiB
MIN_PART_SIZE = 5 * MiB  # S3's minimum for every part but the last
MAX_PARTS = 10000
# Parts in flight: within the server's default per-principal call cap
# (limits.max_grpc_calls_per_principal = 8) with room for a second transfer.
DEFAULT_CONCURRENCY = 4

Progress = Callable[[int], None]  # bytes just transferred (negative: a failed part is resent)


def plan_parts(size: int, part_size: int = DEFAULT_PART_SIZE) -> list[tuple[int, int]]:
    """``(offset, length)`` of each part: at least ``part_size`` (and 5 MiB),
    grown as needed to stay within 10000 parts."""
    part_size = max(part_size, MIN_PART_SIZE, math.ceil(size / MAX_PARTS))
    return [(offset, min(part_size, size - offset)) for offset in range(0, size, part_size)] or [(0, 0)]


class _Stopped(Exception):
    """Raised inside a part's data stream to cancel it (the upload is being abandoned)."""


class _Throttle:
    """At most ``limit`` parts in flight; a ``SlowDown`` halves the limit, so
    an upload over the server's per-principal call cap settles below it
    instead of failing."""

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self._busy = 0
        self._cond = threading.Condition()

    def __enter__(self) -> None:
        with self._cond:
            while self._busy >= self.limit:
                self._cond.wait()
            self._busy += 1

    def __exit__(self, *exc: object) -> None:
        with self._cond:
            self._busy -= 1
            self._cond.notify_all()

    def slow_down(self, error: LightningStorError) -> None:
        if error.code in REFUSED_CODES:
            with self._cond:
                self.limit = max(1, self.limit // 2)


def _read_range(
    fd: int, offset: int, length: int, progress: Progress | None, stop: threading.Event | None = None
) -> Iterator[bytes]:
    """The bytes ``[offset, offset + length)`` of ``fd`` in 1 MiB pieces (``os.pread``:
    threads share the descriptor without sharing a file position).  Once
    ``stop`` is set the next piece raises instead, which cancels the part's call."""
    end = offset + length
    while offset < end:
        if stop is not None and stop.is_set():
            raise _Stopped("upload abandoned")
        piece = os.pread(fd, min(MESSAGE_CONTENT, end - offset), offset)
        if not piece:
            raise OSError(f"file shrank while uploading (no data at offset {offset})")
        offset += len(piece)
        if progress is not None:
            progress(len(piece))
        yield piece


def upload_file(
    client: LightningStorClient,
    path: str,
    bucket: str,
    key: str,
    *,
    content_type: str | None = None,
    metadata: Mapping[str, str] | None = None,
    tags: Mapping[str, str] | None = None,
    threshold: int = DEFAULT_THRESHOLD,
    part_size: int = DEFAULT_PART_SIZE,
    concurrency: int = DEFAULT_CONCURRENCY,
    progress: Progress | None = None,
) -> pb.PutObjectResponse | pb.CompleteMultipartUploadResponse:
    """Upload ``path`` as ``bucket/key``.

    Files up to ``threshold`` bytes go in one PutObject (as a multipart
    upload after all when the server's PutObject limit is lower); larger ones as a
    multipart upload with up to ``concurrency`` parts in flight (fewer after
    a ``SlowDown``).  A part that fails with a retryable error is sent again
    (see :mod:`lightningstor.client.retry`).  A failed or interrupted
    multipart upload stops its parts in flight at their next 1 MiB piece,
    starts no further part, and is aborted, so it leaves no parts behind.
    The result has ``etag``, ``version_id`` and ``size`` either way.
    A path that is not a regular file (a pipe, ``/dev/stdin``) is read as a
    stream (:func:`upload_stream`).
    """
    if not stat.S_ISREG(os.stat(path).st_mode):
        with open(path, "rb") as f:
            return upload_stream(
                client, f, bucket, key, content_type=content_type, metadata=metadata, tags=tags,
                threshold=threshold, part_size=part_size, progress=progress,
            )  # fmt: skip
    size = os.path.getsize(path)
    if size <= threshold:
        with open(path, "rb") as f:
            content = f.read()
        result = _put_small(client, bucket, key, content, content_type, metadata, tags, progress)
        if result is not None:
            return result
    upload = client.create_multipart_upload(bucket, key, content_type=content_type, metadata=metadata, tags=tags)
    fd = os.open(path, os.O_RDONLY)
    stop = threading.Event()
    throttle = _Throttle(concurrency)
    pool = ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="lightningstor-upload")
    try:
        parts = plan_parts(size, part_size)

        def send(number: int, offset: int, length: int) -> pb.UploadPartResponse:
            def once() -> pb.UploadPartResponse:
                if stop.is_set():
                    raise _Stopped("upload abandoned")
                sent = [0]

                def counted(n: int) -> None:
                    sent[0] += n
                    if progress is not None:
                        progress(n)

                with throttle:
                    try:
                        return client.upload_part(
                            bucket, key, upload.upload_id, number, _read_range(fd, offset, length, counted, stop),
                            content_length=length,
                        )
                    except LightningStorError:
                        if progress is not None and sent[0]:
                            progress(-sent[0])  # the part will be sent again from its start
                        raise

            # stop.wait: an abandoned upload does not sleep out its backoff
            return retry.call(once, client.retry, idempotent=True, on_retry=throttle.slow_down, sleep=stop.wait)

        futures = [pool.submit(send, n, offset, length) for n, (offset, length) in enumerate(parts, 1)]
        done, _pending = wait(futures, return_when=FIRST_EXCEPTION)
        failed = [future for future in done if future.exception() is not None]
        if failed:
            raise failed[0].exception()  # type: ignore[misc]
        uploaded = [f.result() for f in futures]
        return client.complete_multipart_upload(bucket, key, upload.upload_id, uploaded)
    except BaseException:
        # Ctrl-C or a failed part: start no queued part, make the parts in
        # flight stop at their next piece, and wait for them (they read ``fd``)
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        try:
            client.abort_multipart_upload(bucket, key, upload.upload_id)
        except Exception:  # noqa: BLE001 - the original error is what matters
            pass
        raise
    finally:
        pool.shutdown(wait=True)
        os.close(fd)


def _read_full(source: BinaryIO, size: int) -> bytes:
    """Up to ``size`` bytes from ``source``: fewer only at its end (a pipe
    returns what it has, so one ``read`` is not enough)."""
    pieces: list[bytes] = []
    want = size
    while want > 0:
        piece = source.read(min(want, MESSAGE_CONTENT))
        if not piece:
            break
        pieces.append(piece)
        want -= len(piece)
    return b"".join(pieces)


def _put_small(
    client: LightningStorClient,
    bucket: str,
    key: str,
    content: bytes,
    content_type: str | None,
    metadata: Mapping[str, str] | None,
    tags: Mapping[str, str] | None,
    progress: Callable[[int], None] | None,
) -> pb.PutObjectResponse | None:
    """One PutObject of ``content``; None if the server's PutObject limit is
    below it (EntityTooLarge: the caller goes multipart, which has no such
    limit)."""
    try:
        result: pb.PutObjectResponse = client.put_object(
            bucket, key, content, content_type=content_type, metadata=metadata, tags=tags
        )
    except LightningStorError as e:
        if e.code != "EntityTooLarge":
            raise
        return None
    if progress is not None:
        progress(len(content))
    return result


def upload_stream(
    client: LightningStorClient,
    source: BinaryIO,
    bucket: str,
    key: str,
    *,
    content_type: str | None = None,
    metadata: Mapping[str, str] | None = None,
    tags: Mapping[str, str] | None = None,
    threshold: int = DEFAULT_THRESHOLD,
    part_size: int = DEFAULT_PART_SIZE,
    progress: Progress | None = None,
) -> pb.PutObjectResponse | pb.CompleteMultipartUploadResponse:
    """Upload what ``source`` yields until its end (stdin, a pipe) as
    ``bucket/key``, its size unknown in advance: one PutObject when it ends
    within ``threshold`` bytes, else a multipart upload of ``part_size``
    parts sent one after another (memory: one part)."""
    part_size = max(part_size, MIN_PART_SIZE)
    first = _read_full(source, threshold + 1)
    if len(first) <= threshold:
        small = _put_small(client, bucket, key, first, content_type, metadata, tags, progress)
        if small is not None:
            return small
    upload = client.create_multipart_upload(bucket, key, content_type=content_type, metadata=metadata, tags=tags)
    try:
        uploaded = []
        pending = first
        number = 1
        while True:
            while len(pending) < part_size:
                more = _read_full(source, part_size - len(pending))
                if not more:
                    break
                pending += more
            if not pending:
                break
            part, pending = pending[:part_size], pending[part_size:]
            uploaded.append(client.upload_part(bucket, key, upload.upload_id, number, part))
            if progress is not None:
                progress(len(part))
            number += 1
        return client.complete_multipart_upload(bucket, key, upload.upload_id, uploaded)
    except BaseException:
        try:
            client.abort_multipart_upload(bucket, key, upload.upload_id)
        except Exception:  # noqa: BLE001 - the original error is what matters
            pass
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _file_mode(path: str) -> int:
    """The mode a download gets: an existing file's own mode (replacing it
    keeps it), else what ``open`` would create under the umask (the
    temporary file starts as 0600, readable by its owner only)."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return 0o666 & ~_umask()


def _resumed(
    client: LightningStorClient,
    bucket: str,
    key: str,
    meta: pb.ObjectMetadata,
    version_id: str | None,
    written: int,
    attempt: int,
    error: LightningStorError,
) -> ObjectStream:
    """A stream of the rest of the object after ``written`` bytes, once
    ``error`` (a retryable failure mid-stream) has been waited out.  ``if_match``
    makes sure the rest is of the same object: if it was replaced meanwhile the
    download fails (``PreconditionFailed``) rather than mixing two."""
    if attempt >= client.retry.attempts or not retry.retryable(error, idempotent=True):
        raise error
    time.sleep(client.retry.delay(attempt))
    return client.get_object(
        bucket, key, version_id=version_id, range=f"bytes={written}-", if_match=meta.etag or None
    )


def download_file(
    client: LightningStorClient,
    bucket: str,
    key: str,
    path: str,
    *,
    version_id: str | None = None,
    progress: Progress | None = None,
    on_metadata: Callable[[pb.ObjectMetadata], None] | None = None,
) -> pb.ObjectMetadata:
    """Stream ``bucket/key`` into ``path``; return the object's metadata.

    The data goes to a temporary file beside ``path`` that replaces it only
    once complete and verified (the MD5 of objects written in one request
    must equal their ETag), so ``path`` never holds a partial download.
    A stream that fails with a retryable error (``ServiceUnavailable``,
    ``RequestTimeout``, ``SlowDown``) is resumed where it stopped with a
    range request, per ``client.retry``.
    ``on_metadata`` is called before the first byte (a progress bar learns
    the size there).
    """
    # A symlink's target is the file replaced; a device, a FIFO or a
    # socket (``/dev/null``, a pipe to another program) is written into,
    # never replaced by a regular file (the temporary file's rename did
    # that: a reader of the FIFO got nothing, /dev/null became a file).
    path = os.path.realpath(path)
    into_special = os.path.exists(path) and not stat.S_ISREG(os.stat(path).st_mode)
    directory = os.path.dirname(path)
    stream = client.get_object(bucket, key, version_id=version_id)
    meta = stream.metadata
    try:
        if on_metadata is not None:
            on_metadata(meta)
        etag = meta.etag
        md5 = hashlib.md5() if etag and "-" not in etag else None
        if into_special:
            fd, tmp = os.open(path, os.O_WRONLY | os.O_CLOEXEC), None
        else:
            fd, tmp = tempfile.mkstemp(prefix=".lightningstor-", suffix=".part", dir=directory)
        try:
            with os.fdopen(fd, "wb") as out:
                written, attempt = 0, 0
                while True:
                    try:
                        for chunk in stream:
                            out.write(chunk)
                            written += len(chunk)
                            if md5 is not None:
                                md5.update(chunk)
                            if progress is not None:
                                progress(len(chunk))
                        break
                    except LightningStorError as e:
                        stream.close()
                        if written >= meta.size:
                            raise
                        attempt += 1
                        stream = _resumed(client, bucket, key, meta, version_id, written, attempt, e)
                out.flush()
                if tmp is not None:
                    os.fsync(out.fileno())
            if written != meta.size:
                raise OSError(f"downloaded {written} bytes of {bucket}/{key}, expected {meta.size}")
            if md5 is not None and md5.hexdigest() != etag:
                raise OSError(f"downloaded data of {bucket}/{key} does not match its ETag {etag}")
            if tmp is not None:
                os.chmod(tmp, _file_mode(path))
                os.replace(tmp, path)
        except BaseException:
            if tmp is not None:
                try:
                    os.unlink(tmp)
                except FileNotFoundError:
                    pass
            raise
        return meta
    finally:
        stream.close()
