"""Server memory while a large multipart upload streams in.

Starts the real server (``twistd -n lightningstor`` via the integration-test
harness) on a scratch data dir, uploads one object of ``--size-mib`` MiB in
``--part-mib`` MiB parts with ``--concurrency`` parts in flight (boto3,
default checksum settings: SigV4 signed payload + CRC32 over plain HTTP),
completes it, downloads it once, and samples the server's RSS throughout.

Prints the server's peak RSS (``VmHWM`` from /proc, which catches spikes
between samples), the RSS before and after, and the upload / download
throughput.  The target (docs/performance.md) is a peak below 200 MiB:
bodies stream through ~1 MiB pieces, never whole parts.

Run from the repository root::

    .venv/bin/python bench/multipart_memory.py [--size-mib 1024] [--part-mib 16] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.integration.conftest import make_client  # noqa: E402
from tests.integration.server import ServerProcess  # noqa: E402

MiB = 1 << 20


def status_kib(pid: int, field: str) -> int:
    """A ``/proc/PID/status`` field in KiB (``VmRSS``, ``VmHWM``)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


class RssSampler(threading.Thread):
    """Polls VmRSS every ``interval`` seconds; ``peak_kib`` is the largest seen."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.peak_kib = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                self.peak_kib = max(self.peak_kib, status_kib(self.pid, "VmRSS"))
            except (OSError, KeyError):
                return
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--part-mib", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    size = args.size_mib * MiB
    part_size = args.part_mib * MiB
    count = -(-size // part_size)

    with tempfile.TemporaryDirectory(prefix="ls-bench-") as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        server = ServerProcess(data).start()
        try:
            assert server.proc is not None
            pid = server.proc.pid
            s3: Any = make_client(server.endpoint, max_pool_connections=args.concurrency + 2)
            s3.create_bucket(Bucket="bench")
            base_kib = status_kib(pid, "VmRSS")
            # One random buffer, stamped per part: the client must not eat the
            # CPU (two cores are shared with the server) generating 1 GiB.
            template = bytearray(os.urandom(part_size))

            def body(n: int) -> bytes:
                length = min(part_size, size - (n - 1) * part_size)
                buf = bytearray(template[:length])
                buf[:8] = n.to_bytes(8, "big")
                return bytes(buf)

            sampler = RssSampler(pid)
            sampler.start()
            started = time.monotonic()
            uid = s3.create_multipart_upload(Bucket="bench", Key="big")["UploadId"]

            def upload(n: int) -> dict[str, object]:
                etag = s3.upload_part(Bucket="bench", Key="big", UploadId=uid, PartNumber=n, Body=body(n))["ETag"]
                return {"PartNumber": n, "ETag": etag}

            with ThreadPoolExecutor(args.concurrency) as pool:
                parts = list(pool.map(upload, range(1, count + 1)))
            s3.complete_multipart_upload(Bucket="bench", Key="big", UploadId=uid, MultipartUpload={"Parts": parts})
            upload_seconds = time.monotonic() - started
            after_upload_kib = sampler.peak_kib

            started = time.monotonic()
            stream = s3.get_object(Bucket="bench", Key="big")["Body"]
            received = 0
            while piece := stream.read(MiB):
                received += len(piece)
            download_seconds = time.monotonic() - started
            sampler.stop()
            assert received == size, (received, size)
            hwm_kib = status_kib(pid, "VmHWM")
            end_kib = status_kib(pid, "VmRSS")
        finally:
            server.stop()

    print(f"object: {args.size_mib} MiB in {count} parts of {args.part_mib} MiB, {args.concurrency} in flight")
    print(f"server RSS before upload:        {base_kib / 1024:8.1f} MiB")
    print(f"server RSS peak during upload:   {after_upload_kib / 1024:8.1f} MiB (sampled every 50 ms)")
    print(f"server RSS peak overall (VmHWM): {hwm_kib / 1024:8.1f} MiB")
    print(f"server RSS at the end:           {end_kib / 1024:8.1f} MiB")
    print(f"upload + complete: {upload_seconds:6.2f} s = {size / MiB / upload_seconds:7.1f} MiB/s")
    print(f"download:          {download_seconds:6.2f} s = {size / MiB / download_seconds:7.1f} MiB/s")
    target = 200 * 1024
    print("target peak RSS < 200 MiB:", "met" if hwm_kib < target else "MISSED")
    return 0 if hwm_kib < target else 1


if __name__ == "__main__":
    sys.exit(main())
