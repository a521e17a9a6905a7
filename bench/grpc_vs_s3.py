"""gRPC vs S3: PUT and GET throughput for the same objects on one server.

Starts the real server (``twistd -n lightningstor`` via the integration-test
harness) on a scratch data dir and, for each object size, writes ``--count``
objects over S3 (boto3, default settings) and over gRPC (the client library),
then reads every object back over both protocols (so GET compares the same
bytes on disk).  Requests are sequential from one client thread: the numbers
compare per-request protocol cost, not the server's parallel capacity.

* small objects (4 KiB): requests per second;
* 1 MiB objects: MiB/s;
* one large object (``--large-mib``): S3 sends it as one PutObject, gRPC as a
  multipart upload of 8 MiB parts sent one after another (gRPC PutObject
  takes at most 5 MiB); both read it back with one streamed GET.

Run from the repository root::

    .venv/bin/python bench/grpc_vs_s3.py [--count 200] [--large-mib 256]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lightningstor.client import LightningStorClient  # noqa: E402
from tests.integration.conftest import make_client  # noqa: E402
from tests.integration.server import ROOT_ACCESS_KEY, ROOT_SECRET_KEY, ServerProcess  # noqa: E402

MiB = 1 << 20


def timed(f: Callable[[], object]) -> float:
    start = time.perf_counter()
    f()
    return time.perf_counter() - start


def grpc_put_large(client: LightningStorClient, bucket: str, key: str, data: bytes, part: int = 8 * MiB) -> None:
    upload = client.create_multipart_upload(bucket, key)
    parts = [
        client.upload_part(bucket, key, upload.upload_id, n, data[offset : offset + part])
        for n, offset in enumerate(range(0, len(data), part), 1)
    ]
    client.complete_multipart_upload(bucket, key, upload.upload_id, parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200, help="small objects per protocol (1 MiB ones: count/4)")
    parser.add_argument("--large-mib", type=int, default=256)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="lightningstor-bench-") as scratch:
        data_dir = Path(scratch) / "data"
        data_dir.mkdir()
        server = ServerProcess(data_dir).start()
        try:
            s3 = make_client(server.endpoint)
            client = LightningStorClient.connect(
                f"grpc://{server.grpc_endpoint}", access_key=ROOT_ACCESS_KEY, secret_key=ROOT_SECRET_KEY
            )
            s3.create_bucket(Bucket="bench")
            rows: list[tuple[str, str, str, str]] = []

            def run_size(label: str, size: int, count: int, unit: str) -> None:
                body = os.urandom(size)
                s3_put = timed(lambda: [s3.put_object(Bucket="bench", Key=f"s3/{label}/{i}", Body=body) for i in range(count)])
                g_put = timed(lambda: [client.put_object("bench", f"g/{label}/{i}", body) for i in range(count)])
                keys = [f"s3/{label}/{i}" for i in range(count)] + [f"g/{label}/{i}" for i in range(count)]
                s3_get = timed(lambda: [s3.get_object(Bucket="bench", Key=k)["Body"].read() for k in keys])
                g_get = timed(lambda: [client.get_object("bench", k).read() for k in keys])

                def rate(n: int, seconds: float) -> str:
                    if unit == "req/s":
                        return f"{n / seconds:,.0f} req/s"
                    return f"{n * size / MiB / seconds:,.0f} MiB/s"

                rows.append((f"PUT {label}", rate(count, s3_put), rate(count, g_put), f"{s3_put / g_put:.2f}x"))
                rows.append((f"GET {label}", rate(2 * count, s3_get), rate(2 * count, g_get), f"{s3_get / g_get:.2f}x"))

            run_size("4 KiB", 4096, args.count, "req/s")
            run_size("1 MiB", MiB, max(1, args.count // 4), "MiB/s")

            large = os.urandom(args.large_mib * MiB)
            label = f"{args.large_mib} MiB"
            s3_put = timed(lambda: s3.put_object(Bucket="bench", Key="s3/large", Body=large))
            g_put = timed(lambda: grpc_put_large(client, "bench", "g/large", large))

            def s3_read(key: str) -> None:
                stream = s3.get_object(Bucket="bench", Key=key)["Body"]
                while stream.read(MiB):
                    pass

            def g_read(key: str) -> None:
                for _chunk in client.get_object("bench", key):
                    pass

            s3_get = timed(lambda: (s3_read("s3/large"), s3_read("g/large")))
            g_get = timed(lambda: (g_read("s3/large"), g_read("g/large")))
            mib = args.large_mib
            rows.append((f"PUT {label}", f"{mib / s3_put:,.0f} MiB/s", f"{mib / g_put:,.0f} MiB/s (multipart)", f"{s3_put / g_put:.2f}x"))
            rows.append((f"GET {label}", f"{2 * mib / s3_get:,.0f} MiB/s", f"{2 * mib / g_get:,.0f} MiB/s", f"{s3_get / g_get:.2f}x"))
            client.close()
        finally:
            server.stop()

    print(f"machine: {os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}")
    print()
    print("| operation | S3 (boto3) | gRPC (client library) | gRPC speed-up |")
    print("| --- | --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
