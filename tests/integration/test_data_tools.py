"""The S3 clients of data tools against the real server: Apache Arrow's
filesystem (built on the AWS SDK for C++) and obstore (Python bindings of
the Rust ``object_store`` crate, which Polars, DataFusion and delta-rs use).

They are two SDK families the other client tests do not reach, each with its
own signing, multipart part sizes, ranged reads, listing and conditional
writes.  What a dataset pipeline does is pinned: Parquet files written and
read back, a large stream uploaded in parts, random reads inside it,
directories as prefixes, moves, conditional puts, and every byte compared.
"""

from __future__ import annotations

import io
import os
import uuid
from typing import Any

import obstore
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pytest
from obstore.exceptions import AlreadyExistsError, PreconditionError
from obstore.store import S3Store

from tests.integration.conftest import make_client
from tests.integration.server import ROOT_ACCESS_KEY, ROOT_SECRET_KEY

MiB = 1 << 20


def _bucket(endpoint: str) -> tuple[Any, str]:
    client = make_client(endpoint)
    name = f"data-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=name)
    return client, name


def _keys(client: Any, bucket: str) -> list[str]:
    return sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", []))


def test_arrow_filesystem_writes_and_reads_a_dataset(server: Any) -> None:
    """Arrow's S3FileSystem (AWS SDK for C++): a Parquet dataset of four
    files round-trips row for row; a 30 MiB output stream goes up in parts and
    reads back at random offsets; directories are prefixes (an empty one is
    a ``dir/`` marker); a move is a copy and a delete."""
    client, bucket = _bucket(server.endpoint)
    fs = pafs.S3FileSystem(
        access_key=ROOT_ACCESS_KEY, secret_key=ROOT_SECRET_KEY, endpoint_override=server.endpoint,
        region="us-east-1", scheme="http",
    )  # fmt: skip
    rows = 200_000
    table = pa.table({"n": list(range(rows)), "s": [f"row {i}" for i in range(rows)]})
    ds.write_dataset(
        table, f"{bucket}/table", format="parquet", filesystem=fs, max_rows_per_file=50_000, max_rows_per_group=50_000
    )
    # Arrow marks the directory it creates with an empty "table/" object.
    assert _keys(client, bucket) == ["table/"] + [f"table/part-{i}.parquet" for i in range(4)]
    back = ds.dataset(f"{bucket}/table", format="parquet", filesystem=fs).to_table().sort_by("n")
    assert back.equals(table)

    data = os.urandom(30 * MiB + 7)
    with fs.open_output_stream(f"{bucket}/blobs/big.bin") as out:
        for start in range(0, len(data), 3 * MiB):
            out.write(data[start : start + 3 * MiB])
    head = client.head_object(Bucket=bucket, Key="blobs/big.bin")
    assert head["ContentLength"] == len(data)
    assert "-" in head["ETag"]  # it went up as a multipart upload
    with fs.open_input_file(f"{bucket}/blobs/big.bin") as f:
        for offset in (0, 5 * MiB - 3, 17 * MiB, len(data) - MiB):
            f.seek(offset)
            assert f.read(MiB) == data[offset : offset + MiB]
    assert fs.get_file_info(f"{bucket}/blobs/big.bin").size == len(data)

    fs.create_dir(f"{bucket}/empty")
    listed = {(i.path, i.type) for i in fs.get_file_info(pafs.FileSelector(bucket))}
    assert listed == {
        (f"{bucket}/table", pafs.FileType.Directory),
        (f"{bucket}/blobs", pafs.FileType.Directory),
        (f"{bucket}/empty", pafs.FileType.Directory),
    }
    fs.move(f"{bucket}/blobs/big.bin", f"{bucket}/moved.bin")
    assert client.get_object(Bucket=bucket, Key="moved.bin")["Body"].read() == data
    fs.delete_dir(f"{bucket}/table")
    fs.delete_dir(f"{bucket}/empty")
    # Moving the last file out of "blobs" leaves a marker, so the directory stays.
    assert _keys(client, bucket) == ["blobs/", "moved.bin"]
    assert fs.get_file_info(f"{bucket}/table").type == pafs.FileType.NotFound


def test_rust_object_store_puts_reads_and_writes_conditionally(server: Any) -> None:
    """obstore (Rust object_store): puts small and multipart, ranged and
    multi-range reads, listings with and without a delimiter, copy, rename,
    batch delete, and its conditional writes: create-only (If-None-Match: *)
    and update-if-unchanged (If-Match), each refused once stale, with the
    stored object left as it was."""
    client, bucket = _bucket(server.endpoint)
    store = S3Store(
        bucket, endpoint=server.endpoint, access_key_id=ROOT_ACCESS_KEY, secret_access_key=ROOT_SECRET_KEY,
        region="us-east-1", client_options={"allow_http": True},
    )  # fmt: skip
    obstore.put(store, "dir/small.txt", b"small")
    data = os.urandom(12 * MiB + 5)
    obstore.put(store, "big.bin", io.BytesIO(data), chunk_size=5 * MiB)
    assert client.head_object(Bucket=bucket, Key="big.bin")["ETag"].endswith('-3"')
    assert bytes(obstore.get(store, "dir/small.txt").bytes()) == b"small"
    assert obstore.head(store, "big.bin")["size"] == len(data)
    spans = [(0, 10), (5 * MiB - 1, 5 * MiB + 1), (len(data) - 100, len(data))]
    got = obstore.get_ranges(store, "big.bin", starts=[s for s, _ in spans], ends=[e for _, e in spans])
    assert [bytes(g) for g in got] == [data[s:e] for s, e in spans]
    assert bytes(obstore.get_range(store, "big.bin", start=7 * MiB, length=MiB)) == data[7 * MiB : 8 * MiB]
    assert sorted(m["path"] for batch in obstore.list(store) for m in batch) == ["big.bin", "dir/small.txt"]
    top = obstore.list_with_delimiter(store)
    assert top["common_prefixes"] == ["dir"] and [m["path"] for m in top["objects"]] == ["big.bin"]

    with pytest.raises(AlreadyExistsError):
        obstore.put(store, "dir/small.txt", b"replaced", mode="create")
    created = obstore.put(store, "dir/new.txt", b"first", mode="create")
    updated = obstore.put(store, "dir/new.txt", b"second", mode={"e_tag": created["e_tag"]})
    with pytest.raises(PreconditionError):
        obstore.put(store, "dir/new.txt", b"stale", mode={"e_tag": created["e_tag"]})
    assert bytes(obstore.get(store, "dir/new.txt").bytes()) == b"second"
    assert updated["e_tag"] == client.head_object(Bucket=bucket, Key="dir/new.txt")["ETag"]

    obstore.copy(store, "big.bin", "copy.bin")
    obstore.rename(store, "dir/small.txt", "renamed.txt")
    assert client.get_object(Bucket=bucket, Key="copy.bin")["Body"].read() == data
    assert _keys(client, bucket) == ["big.bin", "copy.bin", "dir/new.txt", "renamed.txt"]
    obstore.delete(store, ["big.bin", "copy.bin", "dir/new.txt", "renamed.txt"])
    assert _keys(client, bucket) == []
