"""``python -m bench.memory_targets``: server RSS for issue 8's memory targets.

Starts the real server (``twistd -n lightningstor --workers 1``, or
``--workers N``; default settings: SQLite metadata, local chunk backend with
fsync, 8 MiB chunks) on a scratch data dir and samples its ``VmRSS`` every 50
ms (``bench.servers``; with several workers, the supervisor's and the
workers' added up, their PSS added up, and their resident pages with each
page counted once (``bench.servers.server_set_bytes``): RSS counts the pages the
processes share once per process) while it receives:

1. one PutObject of ``--single-gib`` GiB (default 5, S3's largest single PUT);
2. ``--count`` (32) concurrent PutObjects of ``--each-mib`` (256) MiB;
3. the same concurrent run again ``--repeats`` (3) more times, to see whether
   the peak or the settled RSS grows run over run.

Every object is deleted after its run.  The server deletes the chunks of a
deleted object only after a delay (``[storage] free_delay_seconds``, 300 s by default,
so readers of the old record can finish), so before each run the bench waits
until the data dir plus the run's bytes fit in ``--disk-budget-gib`` (17);
the waits are reported, and the server sits idle through them.

Bodies are streamed, never held whole by the client: each upload sends one
shared 1 MiB random buffer over and over, with the first 16 bytes of every
piece stamped with (upload, piece) so no two pieces of any upload are equal.
Requests are presigned (SigV4 query auth, ``UNSIGNED-PAYLOAD``) and sent by
asyncio over plain HTTP/1.1 with ``Content-Length``; responses are parsed by
``bench.loadgen``.  The targets: peak RSS < 150 MiB for the single upload,
< 300 MiB for the concurrent one, and no growth across runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import loadgen, servers  # noqa: E402
from bench.multipart_memory import status_kib  # noqa: E402

MiB = 1 << 20
GiB = 1 << 30
PIECE = MiB


async def _upload(url: str, size: int, stamp: int, template: bytes) -> tuple[int, bytes]:
    """PUT ``size`` bytes to a presigned ``url``, generated piece by piece."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port, limit=MiB)
    try:
        head = (
            f"PUT {parts.path}?{parts.query} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Content-Length: {size}\r\n\r\n"
        )
        writer.write(head.encode("latin-1"))
        piece = bytearray(template)
        sent = 0
        n = 0
        while sent < size:
            piece[:16] = stamp.to_bytes(8, "big") + n.to_bytes(8, "big")
            length = min(PIECE, size - sent)
            writer.write(bytes(piece[:length]))
            await writer.drain()
            sent += length
            n += 1
        code, _, _ = await loadgen._read_response(reader, "PUT")
        return code, b""
    finally:
        writer.close()


async def _uploads(urls: list[str], size: int) -> list[int]:
    template = os.urandom(PIECE)
    results = await asyncio.gather(*(_upload(u, size, i, template) for i, u in enumerate(urls)))
    return [code for code, _ in results]


def _du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def wait_for_disk(data_dir: Path, needed: int, budget: int, limit: float = 400.0) -> float:
    """Wait until ``data_dir`` plus ``needed`` bytes fit in ``budget``; seconds waited.

    Bounded: raises after ``limit`` seconds rather than overfill the disk.
    """
    start = time.monotonic()
    while _du(data_dir) + needed > budget:
        if time.monotonic() - start > limit:
            raise RuntimeError(f"data dir still holds {_du(data_dir) / GiB:.1f} GiB after {limit:.0f} s")
        time.sleep(2.0)
    return time.monotonic() - start


class PssSampler(threading.Thread):
    """The peak of the summed PSS of some pids, sampled every 50 ms."""

    def __init__(self, pids: list[int]) -> None:
        super().__init__(daemon=True)
        self.pids = pids
        self.peak = 0
        self.done = threading.Event()

    def now(self) -> int:
        return sum(servers.pss_bytes(p) for p in self.pids)

    def run(self) -> None:
        while not self.done.wait(0.05):
            self.peak = max(self.peak, self.now())


class SetSampler(PssSampler):
    """The peak of the pids' resident pages, each page counted once
    (:func:`bench.servers.server_set_bytes`)."""

    def now(self) -> int:
        return servers.server_set_bytes(self.pids)


def _rss(pids: list[int]) -> float:
    return sum(status_kib(p, "VmRSS") for p in pids) / 1024


def run_uploads(
    target: servers.Target, bucket: str, names: list[str], size: int, data_dir: Path, budget: int
) -> dict[str, Any]:
    """Upload ``names`` concurrently, then delete them; RSS figures of the run."""
    pids = target.pids()
    waited = wait_for_disk(data_dir, len(names) * size, budget)
    urls = [
        target.client.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": n}, ExpiresIn=3600)
        for n in names
    ]
    assert target.sampler is not None
    before = _rss(pids)
    pss = PssSampler(pids)
    pss.peak = pss_before = pss.now()
    whole = SetSampler(pids)
    whole.peak = set_before = whole.now()
    pss.start()
    whole.start()
    target.sampler.peak()  # reset: the peak below is this run's
    start = time.perf_counter()
    try:
        codes = asyncio.run(_uploads(urls, size))
    finally:
        for sampler in (pss, whole):
            sampler.done.set()
            sampler.join()
    seconds = time.perf_counter() - start
    peak = target.sampler.peak() / MiB
    if any(c != 200 for c in codes):
        raise RuntimeError(f"uploads failed: {codes}")
    for n in names:
        head = target.client.head_object(Bucket=bucket, Key=n)
        assert head["ContentLength"] == size, head
    disk = _du(data_dir) / MiB
    for n in names:
        target.client.delete_object(Bucket=bucket, Key=n)
    time.sleep(2.0)  # let RSS settle
    return {
        "waited_for_disk_s": waited,
        "uploads": len(names),
        "each_mib": size / MiB,
        "seconds": seconds,
        "mib_s": len(names) * size / MiB / seconds,
        "rss_before": before,
        "rss_peak": peak,
        "rss_after": _rss(pids),
        "pss_before": pss_before / MiB,
        "pss_peak": pss.peak / MiB,
        "pss_after": pss.now() / MiB,
        "set_before": set_before / MiB,
        "set_peak": whole.peak / MiB,
        "set_after": whole.now() / MiB,
        "disk_mib_with_data": disk,
        "disk_mib_after_delete": _du(data_dir) / MiB,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory_targets", description=__doc__.splitlines()[0])
    parser.add_argument("--single-gib", type=float, default=5.0)
    parser.add_argument("--count", type=int, default=32)
    parser.add_argument("--each-mib", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--disk-budget-gib", type=float, default=17.0)
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    args = parser.parse_args(argv)
    rows: list[tuple[str, dict[str, Any]]] = []
    with tempfile.TemporaryDirectory(prefix="ls-memory-") as scratch:
        target = servers.start_lightningstor(Path(scratch), args.workers)
        data_dir = Path(scratch) / "lightningstor"
        budget = int(args.disk_budget_gib * GiB)
        try:
            pids = target.pids()
            target.client.create_bucket(Bucket="memory")
            idle = _rss(pids)
            idle_pss = sum(servers.pss_bytes(p) for p in pids) / MiB
            idle_set = servers.server_set_bytes(pids) / MiB
            print(f"server pids {pids}, idle RSS {idle:.1f} MiB, PSS {idle_pss:.1f} MiB, pages once {idle_set:.1f} MiB",
                  file=sys.stderr)  # fmt: skip
            if args.single_gib > 0:
                size = int(args.single_gib * GiB)
                row = run_uploads(target, "memory", ["single"], size, data_dir, budget)
                row["hwm"] = sum(status_kib(p, "VmHWM") for p in pids) / 1024
                rows.append((f"1 x {args.single_gib:g} GiB", row))
                print(rows[-1], file=sys.stderr)
            for run in range(1 + args.repeats):
                names = [f"run{run}/obj{i:02d}" for i in range(args.count)]
                row = run_uploads(target, "memory", names, args.each_mib * MiB, data_dir, budget)
                row["hwm"] = sum(status_kib(p, "VmHWM") for p in pids) / 1024
                rows.append((f"{args.count} x {args.each_mib} MiB, run {run + 1}", row))
                print(rows[-1], file=sys.stderr)
        finally:
            if target.sampler is not None:
                target.sampler.stop()
            target.stop()
    print(f"{args.workers} worker(s); idle RSS after start: {idle:.1f} MiB (PSS {idle_pss:.1f} MiB, "
          f"pages counted once {idle_set:.1f} MiB)")  # fmt: skip
    print("| upload | waited for disk | time | throughput | RSS before | peak RSS (50 ms samples) | VmHWM so far "
          "| RSS after delete | PSS before / peak / after | pages once before / peak / after |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, r in rows:
        print(
            f"| {name} | {r['waited_for_disk_s']:.0f} s | {r['seconds']:.1f} s | {r['mib_s']:.0f} MiB/s | {r['rss_before']:.1f} MiB "
            f"| {r['rss_peak']:.1f} MiB | {r['hwm']:.1f} MiB | {r['rss_after']:.1f} MiB "
            f"| {r['pss_before']:.1f} / {r['pss_peak']:.1f} / {r['pss_after']:.1f} MiB "
            f"| {r['set_before']:.1f} / {r['set_peak']:.1f} / {r['set_after']:.1f} MiB |"
        )
    single = [r for name, r in rows if name.startswith("1 x")]
    many = [r for name, r in rows if not name.startswith("1 x")]
    # One process: its RSS is the figure.  Several: RSS added up counts the
    # pages they share once per process, and PSS moves with what else maps
    # the same libraries; the pages counted once are the server's own.
    judged = ["rss_peak"] if args.workers == 1 else ["rss_peak", "pss_peak", "set_peak"]
    for figure in judged:
        if single:
            print(f"target single upload peak < 150 MiB ({figure}):", "met" if single[0][figure] < 150 else "MISSED")
        if many:
            peak = max(r[figure] for r in many)
            print(f"target concurrent peak < 300 MiB ({figure}):", "met" if peak < 300 else "MISSED")
            peaks = [round(r[figure], 1) for r in many]
            afters = [round(r[figure.replace("peak", "after")], 1) for r in many]
            print(f"concurrent peaks run by run ({figure}): {peaks} MiB; settled after each: {afters} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
