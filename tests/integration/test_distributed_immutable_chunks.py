"""Chunk ids name immutable content: a storage node (``twistd
lightningstor-node``, a real process) never lets a ``PutChunk`` replace an
intact copy with other bytes.

A retry with the same bytes succeeds without rewriting anything; other
bytes are refused with ALREADY_EXISTS and the stored copy is kept; a rotten
copy (failing its own block CRCs) is replaced, which is how repair heals it;
and a divergent copy (intact, other bytes) is replaced only when the write
names its CRC32C, which is what repair does once the object's record told
it which copy is wrong.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from lightningstor.checksums import crc32c
from lightningstor.node.gen import lightningstor_node_pb2 as pb
from tests.integration.cluster import NodeProcess, make_nodes
from tests.integration.test_distributed_integrity import _get, _put_raw, _rot

KiB = 1 << 10
CHUNK = "c0ffee" * 6


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NodeProcess]:
    (node,) = make_nodes(tmp_path, 1)
    node.start()
    yield node
    node.stop()


def _put_replacing(node: NodeProcess, data: bytes, replace: int) -> None:
    channel, stub = node.stub()
    with channel:
        first = pb.PutChunkRequest(chunk_id=CHUNK, data=data, crc32c=crc32c(data), size=len(data), has_crc32c=True,
                                   replace_crc32c=replace, has_replace_crc32c=True)
        stub.PutChunk(iter([first]), timeout=10)


def _refused(put: Any, *args: Any, **kwargs: Any) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as caught:
        put(*args, **kwargs)
    code: grpc.StatusCode = caught.value.code()
    return code


def _file(node: NodeProcess) -> Path:
    return next((node.data_dir / "chunks").rglob(CHUNK))


def test_a_node_keeps_an_intact_chunk_and_refuses_other_bytes_under_its_id(node: NodeProcess) -> None:
    good = os.urandom(300 * KiB)
    other = os.urandom(300 * KiB)
    _put_raw(node, CHUNK, good, crc=crc32c(good))
    before = os.stat(_file(node))

    # An idempotent retry: accepted, and the stored file is not rewritten.
    _put_raw(node, CHUNK, good, crc=crc32c(good))
    _put_raw(node, CHUNK, good)  # an old writer that sends no CRC
    after = os.stat(_file(node))
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)

    # Other bytes, with or without their CRC, or the wrong CRC to replace:
    # refused, and the stored copy is untouched.
    assert _refused(_put_raw, node, CHUNK, other, crc=crc32c(other)) == grpc.StatusCode.ALREADY_EXISTS
    assert _refused(_put_raw, node, CHUNK, other) == grpc.StatusCode.ALREADY_EXISTS
    assert _refused(_put_raw, node, CHUNK, good[:-1]) == grpc.StatusCode.ALREADY_EXISTS
    assert _refused(_put_replacing, node, other, crc32c(other)) == grpc.StatusCode.ALREADY_EXISTS
    assert _get(node, CHUNK) == good
    assert not list((node.data_dir / "tmp").iterdir()), "a refused write left its temp file"
    assert any("Refused chunk" in line and "other bytes" in line for line in node.output)

    # Naming the stored copy's CRC32C (repair replacing a divergent copy)
    # replaces it.
    _put_replacing(node, other, crc32c(good))
    assert _get(node, CHUNK) == other

    # A rotten copy (fails its block CRCs) is replaced by any write.
    _rot(node, CHUNK)
    assert _get(node, CHUNK) == "DATA_LOSS"
    _put_raw(node, CHUNK, good, crc=crc32c(good))
    assert _get(node, CHUNK) == good
