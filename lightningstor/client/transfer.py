"""File transfers: parallel multipart uploads, streaming downloads.

Memory stays bounded whatever the file's size: an upload reads each part
from the file 1 MiB at a time while it streams (``concurrency`` parts in
flight), and a download writes each received message to disk as it arrives.
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

from lightningstor.client.client import MESSAGE_CONTENT, LightningStorClient
from lightningstor.grpc.gen import lightningstor_pb2 as pb

MiB = 1 << 20
# The server's default PutObject limit (limits.max_grpc_put_object_bytes):
# larger files go up as multipart uploads.
DEFAULT_THRESHOLD = 5 * MiB
DEFAULT_PART_SIZE = 8 * MiB
MIN_PART_SIZE = 5 * MiB  # S3's minimum for every part but the last
MAX_PARTS = 10000

Progress = Callable[[int], None]  # called with the number of bytes just transferred


def plan_parts(size: int, part_size: int = DEFAULT_PART_SIZE) -> list[tuple[int, int]]:
    """``(offset, length)`` of each part: at least ``part_size`` (and 5 MiB),
    grown as needed to stay within 10000 parts."""
    part_size = max(part_size, MIN_PART_SIZE, math.ceil(size / MAX_PARTS))
    return [(offset, min(part_size, size - offset)) for offset in range(0, size, part_size)] or [(0, 0)]


def _read_range(fd: int, offset: int, length: int, progress: Progress | None) -> Iterator[bytes]:
    """The bytes ``[offset, offset + length)`` of ``fd`` in 1 MiB pieces (``os.pread``:
    threads share the descriptor without sharing a file position)."""
    end = offset + length
    while offset < end:
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
    concurrency: int = 4,
    progress: Progress | None = None,
) -> pb.PutObjectResponse | pb.CompleteMultipartUploadResponse:
    """Upload ``path`` as ``bucket/key``.

    Files up to ``threshold`` bytes go in one PutObject; larger ones as a
    multipart upload with ``concurrency`` parts in flight.  A failed
    multipart upload is aborted, so it leaves no parts behind.  The result
    has ``etag``, ``version_id`` and ``size`` either way.
    """
    size = os.path.getsize(path)
    if size <= threshold:
        with open(path, "rb") as f:
            content = f.read()
        result = client.put_object(bucket, key, content, content_type=content_type, metadata=metadata, tags=tags)
        if progress is not None:
            progress(len(content))
        return result
    upload = client.create_multipart_upload(bucket, key, content_type=content_type, metadata=metadata, tags=tags)
    fd = os.open(path, os.O_RDONLY)
    try:
        parts = plan_parts(size, part_size)

        def send(number: int, offset: int, length: int) -> pb.UploadPartResponse:
            return client.upload_part(
                bucket, key, upload.upload_id, number, _read_range(fd, offset, length, progress)
            )

        with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="lightningstor-upload") as pool:
            futures = [pool.submit(send, n, offset, length) for n, (offset, length) in enumerate(parts, 1)]
            done, _pending = wait(futures, return_when=FIRST_EXCEPTION)
            failed = [future for future in done if future.exception() is not None]
            if failed:
                for future in futures:
                    future.cancel()
                raise failed[0].exception()  # type: ignore[misc]
            uploaded = [f.result() for f in futures]
        return client.complete_multipart_upload(bucket, key, upload.upload_id, uploaded)
    except BaseException:
        try:
            client.abort_multipart_upload(bucket, key, upload.upload_id)
        except Exception:  # noqa: BLE001 - the original error is what matters
            pass
        raise
    finally:
        os.close(fd)


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
    ``on_metadata`` is called before the first byte (a progress bar learns
    the size there).
    """
    directory = os.path.dirname(os.path.abspath(path))
    with client.get_object(bucket, key, version_id=version_id) as stream:
        if on_metadata is not None:
            on_metadata(stream.metadata)
        etag = stream.metadata.etag
        md5 = hashlib.md5() if etag and "-" not in etag else None
        fd, tmp = tempfile.mkstemp(prefix=".lightningstor-", suffix=".part", dir=directory)
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in stream:
                    out.write(chunk)
                    if md5 is not None:
                        md5.update(chunk)
                    if progress is not None:
                        progress(len(chunk))
                out.flush()
                os.fsync(out.fileno())
            if md5 is not None and md5.hexdigest() != etag:
                raise OSError(f"downloaded data of {bucket}/{key} does not match its ETag {etag}")
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        return stream.metadata
