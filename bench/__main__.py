"""``python -m bench``: LightningStor side by side with moto, and the box's limits.

Starts the real server (``twistd -n lightningstor``, default settings: fsync
on) or uses ``--endpoint``, starts moto's server (``pip install -e '.[bench]'``)
and a trivial twisted.web server, and measures, in one run:

* limits of the box: single-core MD5 and SHA-256, one loopback TCP
  connection, disk writes with fsync, one durable SQLite commit (the floor
  of a durable PUT at concurrency 1);
* 4 KiB PUT/GET/HEAD at concurrency 1 and 16 (presigned SigV4 URLs fired by
  a lean asyncio HTTP/1.1 client, :mod:`bench.loadgen`), and the same client's
  ceiling against the trivial server;
* one large PUT and GET, a multipart upload (16 MiB parts, 4 in flight),
  random 1 MiB ranged GETs;
* listing: N keys in 100 directories, a full ListObjectsV2 walk (1000 keys
  a page; a lean client, and boto3's paginator as a figure of its own) and
  the first page of a delimiter listing;
* each server's peak RSS per phase (supervisor plus workers with --workers).

``--quick`` shrinks every size (about 2-3 minutes on 2 cores).  ``--doc``
appends the tables to docs/performance.md and draws them as a PNG chart,
docs/performance-chart-<UTC date and time>.png (one per run, so older runs
keep their own), linked under the tables; ``--chart PATH`` draws
the chart elsewhere (or without ``--doc``).  ``--sse`` gives the benchmark
buckets default encryption (SSE-S3), to compare encrypted and plain runs.  The chart needs matplotlib (the
``bench`` extra); without it the chart is skipped with a message.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path

from bench import limits, phases, servers
from bench.report import Results, machine, table, targets

ROOT = Path(__file__).resolve().parent.parent


def _phase_names() -> list[str]:
    return ["small", "large", "listing"]


_SSE_S3 = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}


def run_target(
    target: servers.Target, scale: phases.Scale, results: Results, which: list[str], *, sse: bool = False
) -> None:
    bucket = f"bench-{uuid.uuid4().hex[:12]}"
    target.client.create_bucket(Bucket=bucket)
    if sse:
        # Bucket default encryption: every write of the run is SSE-S3.
        target.client.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=_SSE_S3)
    rss: dict[str, int | None] = {"idle": target.peak_rss()}
    started = time.perf_counter()
    if "small" in which:
        results.add(target.name, phases.small_objects(target, bucket, scale.small_count))
        rss["small objects"] = target.peak_rss()
    if "large" in which:
        results.add(target.name, phases.large_objects(target, bucket, scale))
        rss["large objects"] = target.peak_rss()
    if "listing" in which:
        list_bucket = f"{bucket}-list"
        target.client.create_bucket(Bucket=list_bucket)
        if sse:
            target.client.put_bucket_encryption(Bucket=list_bucket, ServerSideEncryptionConfiguration=_SSE_S3)
        results.add(target.name, phases.listing(target, list_bucket, scale.list_keys))
        rss["listing"] = target.peak_rss()
    if any(v for v in rss.values()):
        results.rss[target.name] = rss
    print(f"  {target.name}: {time.perf_counter() - started:.1f} s", file=sys.stderr)


def write_chart(results: Results, path: Path) -> bool:
    """Draw the chart; False (and one line on stderr) if matplotlib is missing."""
    try:
        from bench import chart
    except ImportError as e:
        if not (e.name or "").startswith("matplotlib"):
            raise
        print(
            f"chart skipped: matplotlib is not installed (pip install -e '.[bench]'); {path} not written",
            file=sys.stderr,
        )
        return False
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        chart.render(results, str(path))
    except OSError as e:
        print(f"chart skipped: cannot write {path}: {e}", file=sys.stderr)
        return False
    print(f"chart: {path}", file=sys.stderr)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a 2-3 minute run")
    parser.add_argument("--scale", type=int, default=None, help="keys for the listing phase (default 100000)")
    parser.add_argument("--workers", type=int, default=1, help="LightningStor worker processes")
    parser.add_argument("--endpoint", help="benchmark this S3 endpoint instead of starting LightningStor")
    parser.add_argument("--access-key", default="")
    parser.add_argument("--secret-key", default="")
    parser.add_argument("--no-moto", action="store_true", help="skip the moto reference server")
    parser.add_argument("--phases", default=",".join(_phase_names()), help="comma-separated: small,large,listing")
    parser.add_argument("--doc", action="store_true", help="append the results to docs/performance.md")
    parser.add_argument("--sse", action="store_true", help="SSE-S3: benchmark buckets with default encryption AES256")
    parser.add_argument(
        "--chart",
        metavar="PATH",
        help="write a PNG chart of the results (default with --doc: docs/performance-chart-<time>.png)",
    )
    args = parser.parse_args(argv)
    scale = phases.QUICK if args.quick else phases.Scale()
    if args.scale is not None:
        scale = replace(scale, list_keys=args.scale)
    full = phases.Scale()
    smaller = [
        f"{what} {ours:,} (targets: {theirs:,})"
        for what, ours, theirs in (
            ("large object MiB", scale.large_mib, full.large_mib),
            ("multipart MiB", scale.multipart_mib, full.multipart_mib),
            ("listing keys", scale.list_keys, full.list_keys),
        )
        if ours < theirs
    ]
    which = [p for p in args.phases.split(",") if p]
    results = Results()
    with tempfile.TemporaryDirectory(prefix="lightningstor-bench-") as scratch_name:
        scratch = Path(scratch_name)
        print("limits of the box ...", file=sys.stderr)
        results.limits = limits.measure(scratch_name, args.quick)
        print("generator ceiling (trivial twisted.web) ...", file=sys.stderr)
        url, stop_trivial = servers.start_trivial()
        try:
            results.ceiling = {f.name: f for f in phases.trivial_ceiling(url, max(2000, scale.small_count))}
        finally:
            stop_trivial()
        if args.endpoint:
            first = servers.external(args.endpoint, args.access_key, args.secret_key)
        else:
            first = servers.start_lightningstor(scratch, args.workers)
        starters = [lambda: first] + ([] if args.no_moto else [lambda: servers.start_moto(scratch)])
        for start in starters:
            target = start()
            print(f"{target.name} at {target.endpoint} ...", file=sys.stderr)
            try:
                run_target(target, scale, results, which, sse=args.sse)
            finally:
                if target.sampler is not None:
                    target.sampler.stop()
                target.stop()
    results.reduced = "; ".join(smaller)
    text = table(results)
    checks = targets(results)
    command = "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:])
    print(f"machine: {machine()}")
    print(f"command: {command}")
    print()
    print(text)
    if checks:
        print()
        print(checks)
    failed = results.failed()
    if failed:
        # Refused requests are quick: a rate counting them is no figure, so
        # such a run is neither appended to the docs nor a success.
        print(f"\n{failed} requests failed: this run measured nothing (see the errors above)", file=sys.stderr)
        return 1
    docs = ROOT / "docs"
    # One chart per run (named by its time), so that a run's link keeps
    # showing that run's chart after later runs.
    stamp = time.strftime("%Y-%m-%d-%H%M", time.gmtime())
    chart_path = Path(args.chart) if args.chart else (docs / f"performance-chart-{stamp}.png" if args.doc else None)
    charted = chart_path is not None and write_chart(results, chart_path)
    if args.doc:
        image = ""
        if charted and chart_path is not None:
            link = Path(os.path.relpath(chart_path.resolve(), docs)).as_posix()
            image = f"\n![Chart of this run: LightningStor, moto and the box's limits]({link})\n"
        with open(docs / "performance.md", "a") as f:
            f.write(
                f"\n### Run of {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n\n"
                f"Command: `{command}`\n\nMachine: {machine()}\n\n{text}\n\n{checks}\n{image}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
