"""Server CPU per request when every object is read once, right after it was written.

``python -m bench.first_reads [--workers 2] [--keys 2000] [--rounds 6] [--concurrency 16] TREE [TREE ...]``

The suite's small-object phase (``python -m bench --phases small``) writes
its keys and then reads each of them once, as many applications do (upload,
then a first download or a thumbnail).  With several worker processes that
is the case where a per-process read cache helps least: the worker that
answers a read is often not the one that wrote the key.
:mod:`bench.cpu_per_request` cannot show it (one process, and its PUTs
overwrite the same keys), so this script:

* starts one server per TREE (a copy of the repository holding the version to
  measure: it is put in front of ``PYTHONPATH``, as ``cpu_per_request
  --baseline`` does), each with ``--workers`` worker processes;
* per round and per tree, in turn: creates a new bucket, PUTs ``--keys`` new
  4 KiB objects at ``--concurrency`` (16), then GETs each once, then HEADs each once;
* reports the server CPU (user + system, all worker processes and their
  threads, from ``/proc``) per request of each phase, per round, and the
  medians.

The servers run side by side and take turns, so drifts in the box's load
hit every tree alike; compare medians, not single rounds.  Servers keep
their caches across rounds, as a running server does: later rounds see a
full cache.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import uuid
from pathlib import Path

if __package__ in (None, ""):  # run as a script: python bench/first_reads.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import loadgen, phases, servers  # noqa: E402

PHASES = ("PUT", "GET", "HEAD")


def start(tree: str, scratch: Path, workers: int) -> servers.Target:
    """A server of the version in ``tree``."""
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (tree, saved) if p)
    try:
        return servers.start_lightningstor(scratch, workers)
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved


def one_round(
    target: servers.Target, keys: int, body: bytes, concurrency: int = 16
) -> dict[str, tuple[float, float, int]]:
    """(server µs per request, requests per second, errors) of each phase."""
    bucket = f"first-{uuid.uuid4().hex[:8]}"
    target.client.create_bucket(Bucket=bucket)
    names = [f"k/{i}" for i in range(keys)]
    requests = {
        method: [loadgen.build(method, url, body if method == "PUT" else b"")
                 for url in phases._presign_many(target.client, method, bucket, names)]
        for method in PHASES
    }  # fmt: skip
    pids = target.pids()[1:] or target.pids()  # the workers (or the one process)
    found = {}
    for method in PHASES:
        before = sum(servers.cpu_seconds(p) for p in pids)
        result = loadgen.run(target.endpoint, requests[method], concurrency)
        after = sum(servers.cpu_seconds(p) for p in pids)
        found[method] = ((after - before) / result.requests * 1e6, result.rate, result.errors)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.first_reads", description=__doc__.splitlines()[0])
    parser.add_argument("trees", nargs="+", help="copies of the repository to measure, in turn")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--keys", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--concurrency", type=int, default=16, help="connections (default 16)")
    args = parser.parse_args()
    body = os.urandom(4096)
    runs: dict[str, list[dict[str, tuple[float, float, int]]]] = {tree: [] for tree in args.trees}
    with tempfile.TemporaryDirectory(prefix="lightningstor-first-reads-") as scratch:
        targets = {}
        try:
            for i, tree in enumerate(args.trees):
                (Path(scratch) / str(i)).mkdir()
                targets[tree] = start(tree, Path(scratch) / str(i), args.workers)
            for n in range(args.rounds):
                for tree in args.trees:
                    runs[tree].append(one_round(targets[tree], args.keys, body, args.concurrency))
                print(f"round {n + 1}/{args.rounds}, load average {os.getloadavg()[0]:.2f}", file=sys.stderr)
        finally:
            for target in targets.values():
                target.stop()
    print(f"{args.workers} worker(s), {args.keys} new 4 KiB objects per round, c={args.concurrency}; server CPU per request")
    for tree in args.trees:
        for method in PHASES:
            samples = [run[method] for run in runs[tree]]
            print(
                f"{tree}  {method:<4} median {statistics.median(s[0] for s in samples):5.0f} us/req "
                f"{statistics.median(s[1] for s in samples):6.0f} req/s  rounds: "
                + " ".join(f"{s[0]:.0f}" for s in samples)
                + f"  errors {sum(s[2] for s in samples)}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
