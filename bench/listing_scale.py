"""``python -m bench.listing_scale``: ListObjectsV2 at 10k, 100k and 1M keys.

For each size N a fresh server (``twistd -n lightningstor --workers 1``,
default settings: SQLite metadata) gets one bucket holding N empty objects
named ``dir-NNN/key-NNNNNNN`` spread over 100 "directories".  Then, against
the running server, it measures:

* a full ListObjectsV2 walk, 1,000 keys a page, one keep-alive connection;
* the first page of a ``/`` delimiter listing (median of 5);
* the first page (1,000 keys) of a prefix listing deep in the bucket
  (``dir-097/``), and the same prefix with ``/`` delimiter (median of 5);
* the server's peak RSS during each (VmRSS every 50 ms, ``bench.servers``).

How the keys get there (``--fill``):

* ``s3``: presigned PUTs of empty bodies at concurrency 16 (the lean
  generator, ``bench.loadgen``), exactly as a client would.  ~400 req/s on
  this 2-core box: fine for 10k, ~40 minutes for 1M.
* ``direct`` (default above 20,000 keys): the first key is PUT over S3 and its
  record read back as the template.  The server is stopped and a
  subprocess writes the other N-1 records through the project's own store
  (``SqliteMetadataStore.txn``, WAL, ``synchronous=FULL``), 1,000 puts per
  transaction: for each key the template with its ``key`` and
  ``created_at`` replaced, encoded by ``records.encode_object`` under
  ``keys.object_key``, plus one usage delta row per transaction
  (``keys.usage_delta_key``, ``quotas.encode_usage``) so the bucket's usage
  counts the objects as a PUT would.  Zero-byte objects are inline records
  with no chunks, so there is no chunk-index entry to write.  The server is
  then started again on the same data dir.

The client is lean: each page's URL is presigned (botocore SigV4, query
auth) when it is needed, sent over one ``http.client`` connection, and the
response is scanned for ``<Key>`` and ``NextContinuationToken`` with byte
searches instead of an XML parser.  The time the client spends presigning
and scanning is measured and reported, so the server's share can be told
apart on two shared cores.  So is the server process's own CPU time (user +
system, all threads, from ``/proc``) per listed key during the walks: on a
box shared with other benchmarks it moves much less than the wall time.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import loadgen, servers  # noqa: E402
from bench.servers import cpu_seconds  # noqa: E402

DIRECTORIES = 100
BATCH = 1000  # puts per metadata transaction in the direct fill
DEEP_PREFIX = "dir-097/"
_TOKEN = re.compile(rb"<NextContinuationToken>([^<]*)</NextContinuationToken>")


def key_name(i: int) -> str:
    """The i-th key: 100 directories, keys spread round-robin over them."""
    return f"dir-{i % DIRECTORIES:03d}/key-{i:07d}"


# -- filling ---------------------------------------------------------------------


def fill_s3(target: servers.Target, bucket: str, first: int, count: int) -> float:
    """PUT keys ``first .. count-1`` with empty bodies, c=16; returns req/s."""
    urls = [
        target.client.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": key_name(i)}, ExpiresIn=3600)
        for i in range(first, count)
    ]
    if not urls:
        return 0.0
    result = loadgen.run(target.endpoint, [loadgen.build("PUT", u, b"") for u in urls], 16)
    if result.errors:
        raise RuntimeError(f"fill: {result.errors} PUTs failed: {dict(result.statuses)}")
    return result.rate


def _direct_fill_main(db: str, bucket_name: str, template_key: str, first: int, count: int) -> None:
    """Subprocess: write records ``first .. count-1`` through SqliteMetadataStore.

    Runs its own reactor (a reactor cannot be restarted, hence a process
    per fill).  Several transactions are kept in flight so group commit
    shares each fsync, as it does for concurrent PUTs.
    """
    from dataclasses import replace

    from twisted.internet import defer, task

    from lightningstor.core import keys, records
    from lightningstor.core.quotas import BucketScope, Usage, encode_usage
    from lightningstor.interfaces.metadata import Put, prefix_end
    from lightningstor.metadata.sqlite import SqliteMetadataStore

    @defer.inlineCallbacks
    def run(reactor: Any) -> Any:
        store = SqliteMetadataStore(db, reactor)
        try:
            rows = yield store.scan(keys.BUCKETS, prefix_end(keys.BUCKETS))
            found = [records.decode_bucket(kv.value) for kv in rows]
            bucket = next(b for b in found if b.name == bucket_name)
            kv = yield store.get(keys.object_key(bucket.bucket_id, template_key))
            template = records.decode_object(kv.value)
            usage_prefix = BucketScope.of(bucket).prefix
            in_flight: list[Any] = []
            start = time.perf_counter()
            for low in range(first, count, BATCH):
                high = min(low + BATCH, count)
                now = int(time.time() * 1000)
                ops: list[Any] = [
                    Put(keys.object_key(bucket.bucket_id, name), records.encode_object(replace(template, key=name, created_at=now)))
                    for name in map(key_name, range(low, high))
                ]
                usage = Usage(bytes=template.size * (high - low), objects=high - low)
                ops.append(Put(keys.usage_delta_key(usage_prefix, f"{now:013x}{os.urandom(8).hex()}"), encode_usage(usage)))
                in_flight.append(store.txn([], ops))
                if len(in_flight) >= 4:
                    results = yield defer.gatherResults(in_flight)
                    assert all(r.succeeded for r in results)
                    in_flight = []
            results = yield defer.gatherResults(in_flight)
            assert all(r.succeeded for r in results)
            print(json.dumps({"records": count - first, "seconds": time.perf_counter() - start}))
        finally:
            yield store.close()

    task.react(run)


def fill_direct(db: Path, bucket: str, first: int, count: int) -> dict[str, Any]:
    """Run :func:`_direct_fill_main` in a subprocess (the server is stopped)."""
    out = subprocess.run(
        [sys.executable, "-m", "bench.listing_scale", "--_fill", str(db), bucket, key_name(0), str(first), str(count)],
        cwd=str(ROOT), check=True, capture_output=True, text=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


# -- the lean listing client -----------------------------------------------------------


class Lister:
    """Presigned ListObjectsV2 requests over one keep-alive connection."""

    def __init__(self, target: servers.Target, bucket: str) -> None:
        self.client = target.client
        self.bucket = bucket
        parts = urlsplit(target.endpoint)
        self.conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80)
        self.client_seconds = 0.0  # presigning and scanning, on the client

    def page(self, **params: Any) -> bytes:
        t0 = time.perf_counter()
        url = self.client.generate_presigned_url(
            "list_objects_v2", Params={"Bucket": self.bucket, **params}, ExpiresIn=3600
        )
        parts = urlsplit(url)
        self.client_seconds += time.perf_counter() - t0
        self.conn.request("GET", f"{parts.path}?{parts.query}")
        response = self.conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"ListObjectsV2 {params}: {response.status} {body[:300]!r}")
        return body

    def walk(self) -> tuple[int, int, float]:
        """Every key, 1,000 a page: (keys, pages, seconds); each page's
        seconds are kept in ``page_seconds``."""
        self.client_seconds = 0.0
        self.page_seconds: list[float] = []
        keys_seen = pages = 0
        params: dict[str, Any] = {"MaxKeys": 1000}
        start = time.perf_counter()
        while True:
            t0 = time.perf_counter()
            body = self.page(**params)
            self.page_seconds.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            pages += 1
            keys_seen += body.count(b"<Key>")
            m = _TOKEN.search(body)
            self.client_seconds += time.perf_counter() - t0
            if m is None:
                break
            params["ContinuationToken"] = m.group(1).decode()
        return keys_seen, pages, time.perf_counter() - start

    def timed(self, repeat: int, **params: Any) -> tuple[float, int]:
        """Median seconds of ``repeat`` identical first pages, and its entries."""
        times = []
        count = 0
        for _ in range(repeat):
            t0 = time.perf_counter()
            body = self.page(**params)
            times.append(time.perf_counter() - t0)
            count = body.count(b"<Key>") + body.count(b"<CommonPrefixes>")
        return statistics.median(times), count

    def close(self) -> None:
        self.conn.close()


# -- one size ------------------------------------------------------------------------


def wait_idle(pid: int, limit: float = 180.0) -> float:
    """Wait (at most ``limit`` s) until the server uses < 5% of a CPU over 1 s;
    returns the seconds waited.

    Any start-up work (and, before the gauges were computed from usage rows,
    the metrics count of every object every 60 s, many seconds of CPU on a
    1M-key bucket) must not overlap the measurements.
    """
    start = time.monotonic()
    while time.monotonic() - start < limit:
        before = cpu_seconds(pid)
        time.sleep(1.0)
        if cpu_seconds(pid) - before < 0.05:
            break
    return time.monotonic() - start


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _py_spy(pid: int, out: Path) -> subprocess.Popen[bytes]:
    """``py-spy record --gil`` on the server (``pip install -e '.[bench]'``)."""
    cmd = [str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(pid), "--format", "raw",
           "--output", str(out), "--rate", "200", "--gil"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # py-spy attaches
    return proc


def measure(size: int, scratch: Path, fill: str, walks: int, profile: bool = False) -> dict[str, Any]:
    mib = 1 << 20
    row: dict[str, Any] = {"keys": size, "load_start": _loadavg()}
    run_dir = scratch / f"n{size}"
    run_dir.mkdir()
    bucket = "listing"
    target = servers.start_lightningstor(run_dir, 1)
    data_dir = run_dir / "lightningstor"
    try:
        target.client.create_bucket(Bucket=bucket)
        mode = fill if fill != "auto" else ("s3" if size <= 20_000 else "direct")
        row["fill"] = mode
        t0 = time.perf_counter()
        if mode == "s3":
            row["fill_rate"] = fill_s3(target, bucket, 0, size)
        else:
            fill_s3(target, bucket, 0, 1)  # the template record, written by a real PUT
            assert target.sampler is not None
            target.sampler.stop()
            target.stop()
            info = fill_direct(data_dir / "metadata.db", bucket, 1, size)
            row["fill_rate"] = info["records"] / info["seconds"]
            target = _restart(run_dir, data_dir)
        row["fill_seconds"] = time.perf_counter() - t0
        row["db_mib"] = sum(p.stat().st_size for p in data_dir.glob("metadata.db*")) / mib
        lister = Lister(target, bucket)
        try:
            lister.page(MaxKeys=1)  # connection and bucket lookup warm
            row["idle_wait_s"] = wait_idle(target.pids()[0])
            row["rss_idle"] = target.peak_rss()
            walk_rows = []
            spy = _py_spy(target.pids()[0], scratch / "profile.txt") if profile else None
            server_pid = target.pids()[0]
            for _ in range(walks):
                cpu_before = cpu_seconds(server_pid)
                seen, pages, seconds = lister.walk()
                cpu = cpu_seconds(server_pid) - cpu_before
                if seen != size:
                    raise RuntimeError(f"walk saw {seen} keys, expected {size}")
                walk_rows.append((seconds, lister.client_seconds, pages, statistics.median(lister.page_seconds), cpu))
            if spy is not None:
                from bench.profile import summarize

                spy.send_signal(signal.SIGINT)
                spy.wait(60)
                row["profile"] = summarize(str(scratch / "profile.txt"), 30)
            seconds, client, pages, median_page, _ = sorted(walk_rows)[len(walk_rows) // 2]
            server_cpu = statistics.median(r[4] for r in walk_rows)
            row.update(walk_s=seconds, walk_client_s=client, pages=pages, walk_keys_s=size / seconds,
                       walk_us_per_key=seconds / size * 1e6, rss_walk=target.peak_rss(),
                       median_page_ms=median_page * 1000, walk_server_cpu_s=server_cpu,
                       walk_server_cpu_us_per_key=server_cpu / size * 1e6)
            row["idle_wait2_s"] = wait_idle(target.pids()[0])
            for name, params in (("delim", {"Delimiter": "/"}), ("prefix", {"Prefix": DEEP_PREFIX}),
                                 ("prefix_delim", {"Prefix": DEEP_PREFIX, "Delimiter": "/"})):
                seconds, entries = lister.timed(5, **params)
                row[f"{name}_ms"], row[f"{name}_entries"] = seconds * 1000, entries
            row["rss_pages"] = target.peak_rss()
        finally:
            lister.close()
    finally:
        if target.sampler is not None:
            target.sampler.stop()
        target.stop()
        shutil.rmtree(run_dir, ignore_errors=True)
    row["load_end"] = _loadavg()
    for k in ("rss_idle", "rss_walk", "rss_pages"):
        row[k] = row[k] / mib if row.get(k) else None
    return row


def _restart(run_dir: Path, data_dir: Path) -> servers.Target:
    """The server again, on the filled data dir (``start_lightningstor`` makes a new dir)."""
    from tests.integration.server import ROOT_ACCESS_KEY, ROOT_SECRET_KEY, ServerProcess

    server = ServerProcess(data_dir, extra_args=["--workers", "1"]).start()
    assert server.proc is not None
    pids = [server.proc.pid]
    target = servers.Target(
        name="LightningStor",
        endpoint=server.endpoint,
        client=servers.s3_client(server.endpoint, ROOT_ACCESS_KEY, ROOT_SECRET_KEY),
        pids=lambda: pids,
        stop=lambda: (server.stop(), None)[1],
    )
    target.sampler = servers.RssSampler(target.pids)
    return target


def report(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| keys | fill | full walk | keys/s | µs/key | client share | first `/` page (median of 5) "
        "| `dir-097/` first page | `dir-097/` + `/` | median walk page | server CPU per key (walk) "
        "| peak RSS idle / walk / pages |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['keys']:,} | {r['fill']} ({r['fill_rate']:,.0f}/s) | {r['walk_s']:.2f} s ({r['pages']} pages) "
            f"| {r['walk_keys_s']:,.0f} | {r['walk_us_per_key']:.1f} | {r['walk_client_s'] / r['walk_s']:.0%} "
            f"| {r['delim_ms']:.1f} ms ({r['delim_entries']} prefixes) | {r['prefix_ms']:.1f} ms ({r['prefix_entries']} keys) "
            f"| {r['prefix_delim_ms']:.1f} ms | {r['median_page_ms']:.1f} ms "
            f"| {r['walk_server_cpu_us_per_key']:.1f} µs | {r['rss_idle']:.0f} / {r['rss_walk']:.0f} / {r['rss_pages']:.0f} MiB |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--_fill"]:
        db, bucket, template, first, count = argv[1:6]
        _direct_fill_main(db, bucket, template, int(first), int(count))
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench.listing_scale", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated key counts")
    parser.add_argument("--fill", choices=["auto", "s3", "direct"], default="auto")
    parser.add_argument("--walks", type=int, default=1, help="full walks per size (the median is reported)")
    parser.add_argument("--profile", action="store_true", help="py-spy the server during the walks (GIL samples)")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="ls-listing-") as scratch:
        for size in (int(s) for s in args.sizes.split(",") if s):
            print(f"{size:,} keys ...", file=sys.stderr)
            row = measure(size, Path(scratch), args.fill, args.walks, args.profile)
            if "profile" in row:
                print(row.pop("profile"))
            print(json.dumps(row), file=sys.stderr)
            rows.append(row)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    print(report(rows))
    base = rows[0]
    for r in rows[1:]:
        print(f"{r['keys']:,} vs {base['keys']:,} keys: time per key x{r['walk_us_per_key'] / base['walk_us_per_key']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
