"""The measured phases: small objects, large objects, listing.

Each phase drives one target through presigned SigV4 URLs (built before the
clock starts) and the lean generator (:mod:`bench.loadgen`); boto3 is used
only for set-up, multipart create/complete and listing.  Every figure is a
``Figure`` (name, value, unit) so the report can line targets up.
"""

from __future__ import annotations

import os
import random
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from bench import largeobj, loadgen
from bench.servers import Target, cpu_seconds

MiB = 1 << 20
EXPIRES = 3600


@dataclass(frozen=True)
class Scale:
    """Sizes of one run (``--quick`` shrinks them)."""

    small_count: int = 2000
    large_mib: int = 256
    multipart_mib: int = 1024
    part_mib: int = 16
    ranged_gets: int = 400
    list_keys: int = 100_000


QUICK = Scale(small_count=400, large_mib=64, multipart_mib=128, part_mib=16, ranged_gets=100, list_keys=5000)


@dataclass(frozen=True)
class Figure:
    name: str
    value: float
    unit: str
    errors: int = 0


def _presign(client: Any, method: str, bucket: str, key: str, **extra: Any) -> str:
    op = {"PUT": "put_object", "GET": "get_object", "HEAD": "head_object"}[method]
    return client.generate_presigned_url(op, Params={"Bucket": bucket, "Key": key, **extra}, ExpiresIn=EXPIRES)


def _presign_many(client: Any, method: str, bucket: str, keys: list[str]) -> list[str]:
    return [_presign(client, method, bucket, key) for key in keys]


def _cpu_of(pids: list[int]) -> float:
    """CPU seconds the processes ``pids`` have used (one that has gone counts nothing)."""
    total = 0.0
    for pid in pids:
        try:
            total += cpu_seconds(pid)
        except OSError:
            pass
    return total


def small_objects(target: Target, bucket: str, count: int) -> list[Figure]:
    """4 KiB PUT/GET/HEAD at concurrency 1 and 16 (every PUT durable).

    At concurrency 16 the server's CPU time per request is reported too
    (when its pids are known): it depends much less than the request rate on
    what else the two cores are doing (contention still inflates it), so it
    compares servers in one run and runs on a quiet box."""
    body = os.urandom(4096)
    figures = []
    pids = target.pids()
    for concurrency in (1, 16):
        n = count if concurrency == 16 else max(50, count // 4)
        keys = [f"small/c{concurrency}/{i:06d}" for i in range(n)]
        for method in ("PUT", "GET", "HEAD"):
            urls = _presign_many(target.client, method, bucket, keys)
            requests = [loadgen.build(method, url, body if method == "PUT" else b"") for url in urls]
            cpu = _cpu_of(pids)
            result = loadgen.run(target.endpoint, requests, concurrency)
            cpu = _cpu_of(pids) - cpu
            figures.append(Figure(f"4 KiB {method} c={concurrency}", result.rate, "req/s", result.errors))
            if concurrency == 16 and pids:
                figures.append(
                    Figure(f"server CPU per 4 KiB {method} c=16", cpu / n * 1e6, "us/req", result.errors)
                )
    return figures


def trivial_ceiling(url: str, count: int) -> list[Figure]:
    """The generator against bench.trivial: the most it can drive."""
    body = b"x" * 4096
    figures = []
    for method in ("PUT", "GET"):
        requests = [loadgen.build(method, f"{url}/o/{i}", body if method == "PUT" else b"") for i in range(count)]
        result = loadgen.run(url, requests, 16)
        figures.append(Figure(f"4 KiB {method} c=16", result.rate, "req/s", result.errors))
    return figures


def large_objects(target: Target, bucket: str, scale: Scale) -> list[Figure]:
    """One big PUT and GET, a multipart upload with parallel parts, ranged GETs."""
    size = scale.large_mib * MiB
    data = os.urandom(size)
    # The single PUT and GET use a blocking client as lean as the loopback
    # limit's (bench/largeobj.py): the asyncio generator cannot receive much
    # faster than a third of one loopback connection.  Its GET figure is kept
    # alongside for comparison with earlier runs.
    put = largeobj.put(_presign(target.client, "PUT", bucket, "large"), data)
    get = largeobj.get(_presign(target.client, "GET", bucket, "large"))
    get_async = loadgen.run(target.endpoint, [loadgen.build("GET", _presign(target.client, "GET", bucket, "large"))], 1)
    figures = [
        Figure(f"{scale.large_mib} MiB PUT", size / 1e6 / put.seconds, "MB/s", int(put.status != 200)),
        Figure(f"{scale.large_mib} MiB GET", get.body_bytes / 1e6 / get.seconds, "MB/s", int(get.status != 200)),
        Figure(
            f"{scale.large_mib} MiB GET, asyncio generator",
            get_async.body_bytes / 1e6 / get_async.seconds,
            "MB/s",
            get_async.errors,
        ),
    ]
    part = scale.part_mib * MiB
    view = memoryview(data)
    parts_count = scale.multipart_mib // scale.part_mib
    start = time.perf_counter()
    upload = target.client.create_multipart_upload(Bucket=bucket, Key="multipart")
    upload_id = upload["UploadId"]
    requests = []
    for n in range(1, parts_count + 1):
        offset = ((n - 1) * part) % size
        url = target.client.generate_presigned_url(
            "upload_part",
            Params={"Bucket": bucket, "Key": "multipart", "UploadId": upload_id, "PartNumber": n},
            ExpiresIn=EXPIRES,
        )
        requests.append(loadgen.build("PUT", url, view[offset : offset + part]))
    result = loadgen.run(target.endpoint, requests, 4)
    name = f"{scale.multipart_mib} MiB multipart ({scale.part_mib} MiB parts x4)"
    if result.errors:
        # No figure from a partial upload: it is reported as failed (the
        # statuses say why) and the run goes on to its other phases.
        target.client.abort_multipart_upload(Bucket=bucket, Key="multipart", UploadId=upload_id)
        print(f"{target.name}: UploadPart failed: {dict(result.statuses)}", file=sys.stderr)
        figures.append(Figure(name, 0.0, "MB/s", result.errors))
    else:
        listed = target.client.list_parts(Bucket=bucket, Key="multipart", UploadId=upload_id, MaxParts=1000)
        parts = listed.get("Parts", [])
        target.client.complete_multipart_upload(
            Bucket=bucket,
            Key="multipart",
            UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": p["PartNumber"], "ETag": p["ETag"]} for p in parts]},
        )
        elapsed = time.perf_counter() - start
        stored = sum(p["Size"] for p in parts)
        figures.append(Figure(name, stored / 1e6 / elapsed, "MB/s", parts_count - len(parts)))
    rnd = random.Random(1)
    url = _presign(target.client, "GET", bucket, "large")
    ranged = []
    for _ in range(scale.ranged_gets):
        first = rnd.randrange(0, size - MiB)
        ranged.append(loadgen.build("GET", url, headers={"Range": f"bytes={first}-{first + MiB - 1}"}))
    result = loadgen.run(target.endpoint, ranged, 4)
    figures.append(Figure("random 1 MiB ranged GET c=4", result.rate, "req/s", result.errors))
    return figures


def listing(target: Target, bucket: str, keys: int) -> list[Figure]:
    """``keys`` empty objects in 100 directories: full ListObjectsV2 walk and
    the first page of a delimiter listing.

    The walk is timed with the lean client of ``bench.listing_scale`` (each
    page presigned, sent on one keep-alive connection, keys counted with a
    byte search), so it measures the server.  boto3's paginator, whose XML
    parsing on the client costs more than the server's listing, is timed
    too, as a figure of its own.
    """
    from bench.listing_scale import Lister

    names = [f"dir{i % 100:03d}/key{i:07d}" for i in range(keys)]
    with ThreadPoolExecutor(4) as pool:
        urls = list(pool.map(lambda k: _presign(target.client, "PUT", bucket, k), names, chunksize=1000))
    load = loadgen.run(target.endpoint, [loadgen.build("PUT", url, b"") for url in urls], 16)
    lister = Lister(target, bucket)  # type: ignore[arg-type]
    try:
        seen, _pages, walk = lister.walk()
        first, _entries = lister.timed(5, Delimiter="/")
    finally:
        lister.close()
    start = time.perf_counter()
    boto_seen = 0
    for page in target.client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        boto_seen += len(page.get("Contents", []))
    boto_walk = time.perf_counter() - start
    return [
        Figure(f"fill {keys:,} empty objects c=16", load.rate, "req/s", load.errors),
        Figure(f"ListObjectsV2 full walk ({seen:,} keys)", seen / walk, "keys/s", int(seen != keys)),
        Figure(
            f"the same walk with boto3's paginator (client XML parsing included, {boto_seen:,} keys)",
            boto_seen / boto_walk, "keys/s", int(boto_seen != keys),
        ),
        Figure("first delimiter page (median of 5)", first * 1000, "ms"),
    ]
