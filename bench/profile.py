"""``python -m bench.profile PHASE``: where the server spends its time.

Starts LightningStor, attaches ``py-spy record`` (``pip install -e
'.[bench]'``) to the server process for the length of one workload, and
prints the functions that take the most samples: *self* (the function itself
is on top of the stack) and *total* (anywhere on the stack; what a fix there
could save at most).  Workloads: ``put`` / ``get`` (4 KiB, at concurrency
16 unless ``--concurrency``), ``large-put`` / ``large-get`` (256 MiB), ``list`` (walk of ``--count`` keys, 4,000 by default).
``--idle`` keeps idle threads' samples (off: pool threads waiting for work
would dominate).
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench import loadgen, phases, servers

MiB = 1 << 20


def workload(name: str, target: servers.Target, bucket: str, count: int, concurrency: int = 16) -> None:
    client = target.client
    if name in ("put", "get"):
        body = os.urandom(4096)
        keys = [f"p/{i}" for i in range(count)]
        if name == "get":
            loadgen.run(target.endpoint, [loadgen.build("PUT", u, body) for u in phases._presign_many(client, "PUT", bucket, keys)], 16)
        method = name.upper()
        urls = phases._presign_many(client, method, bucket, keys)
        requests = [loadgen.build(method, u, body if method == "PUT" else b"") for u in urls]
        start_profile()
        loadgen.run(target.endpoint, requests, concurrency)
    elif name in ("large-put", "large-get"):
        data = os.urandom(256 * MiB)
        put = [loadgen.build("PUT", phases._presign(client, "PUT", bucket, "big"), data)]
        if name == "large-get":
            loadgen.run(target.endpoint, put, 1)
            start_profile()
            loadgen.run(target.endpoint, [loadgen.build("GET", phases._presign(client, "GET", bucket, "big"))] * 2, 1)
        else:
            start_profile()
            loadgen.run(target.endpoint, put, 1)
    elif name == "list":
        keys = [f"dir{i % 100:03d}/k{i:07d}" for i in range(count)]
        loadgen.run(target.endpoint, [loadgen.build("PUT", u, b"") for u in phases._presign_many(client, "PUT", bucket, keys)], 16)
        start_profile()
        for _ in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            pass


_profiler: list[subprocess.Popen[bytes]] = []
_args: dict[str, str] = {}


def start_profile() -> None:
    cmd = [str(Path(sys.executable).with_name("py-spy")), "record", "--pid", _args["pid"], "--format", "raw",
           "--output", _args["out"], "--rate", _args["rate"]]
    if not _args.get("idle"):
        cmd.append("--gil")
    _profiler.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    time.sleep(1.0)  # py-spy attaches


def summarize(path: str, top: int) -> str:
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    with open(path) as f:
        for line in f:
            stack, _, count = line.rstrip().rpartition(" ")
            n = int(count)
            samples += n
            frames = [fr.split(" (", 1)[0] + " (" + fr.split(" (", 1)[1].split(":")[0].rsplit("/", 1)[-1] + ")"
                      if " (" in fr else fr for fr in stack.split(";")]
            own[frames[-1]] += n
            for fr in set(frames):
                total[fr] += n
    lines = [f"{samples} samples", "", "self %  function"]
    lines += [f"{100 * n / samples:5.1f}  {fr}" for fr, n in own.most_common(top)]
    lines += ["", "total %  function"]
    lines += [f"{100 * n / samples:5.1f}  {fr}" for fr, n in total.most_common(top * 4)]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.splitlines()[0])
    parser.add_argument("workload", choices=["put", "get", "large-put", "large-get", "list"])
    parser.add_argument("--count", type=int, default=4000)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--concurrency", type=int, default=16, help="connections for put/get (default 16)")
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    parser.add_argument("--idle", action="store_true", help="sample threads not holding the GIL too")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lightningstor-profile-") as scratch:
        target = servers.start_lightningstor(Path(scratch), 1)
        try:
            bucket = f"prof-{uuid.uuid4().hex[:8]}"
            target.client.create_bucket(Bucket=bucket)
            _args.update(pid=str(target.pids()[0]), out=os.path.join(scratch, "profile.txt"), idle="1" if args.idle else "", rate=str(args.rate))
            workload(args.workload, target, bucket, args.count, args.concurrency)
            for p in _profiler:
                p.send_signal(2)
                p.wait(30)
            print(summarize(_args["out"], args.top))
        finally:
            target.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
