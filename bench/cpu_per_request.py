"""Server CPU time per small request: the figure to watch when tuning the request path.

``python -m bench.cpu_per_request [--ops get,put,head] [--keys 2000] [--rounds 3]
[--concurrency 16] [--repeat 1] [-- EXTRA TWISTD ARGS]``

Requests per second depend on everything else running on the box (the load
generator itself shares the two cores, and so do other people's test suites);
CPU time *per request* spent by the server process does not, or much less:
a request costs what it costs whether or not the server had to wait for a
core.  So this script reports both, for 4 KiB objects at concurrency 16
(``--concurrency`` to change it):

* ``req/s`` — what the run achieved (noisy under load);
* ``server us/req`` — user+system CPU of the whole server process (reactor,
  SQLite writer and thread pools) divided by the requests served;
* ``reactor us/req`` — the same for the reactor thread alone (the main
  thread).  A single-worker server cannot serve more than about
  1,000,000 / this figure requests per second, whatever the load generator
  does: it is the number to lower.

How: it starts the real server (``twistd -n lightningstor`` through the
integration-test harness: default settings, fsync on, access log and audit
log on, SQLite metadata, objects up to 64 KiB inline), creates a bucket,
presigns ``--keys`` SigV4 URLs per operation (before the clock starts) and
fires them with the lean asyncio generator of :mod:`bench.loadgen`.  CPU
times come from ``/proc/PID/stat`` and ``/proc/PID/task/PID/stat`` sampled
right before and after each timed run.  The PUT phase runs first (it fills
the keys the GET and HEAD phases read) and is timed on its second pass, so
that every timed PUT overwrites an existing object, like every other run.

Each operation is timed ``--repeat`` times; the report gives each run, the
best (lowest) server CPU per request, which is the least disturbed by other
processes, and the medians.  The load average at start and end is printed so
readers can judge the noise.

Comparing two versions on a shared, noisy box: ``--baseline DIR`` starts a
second server from ``DIR`` (a copy of the repository, or of its
``lightningstor`` and ``twisted`` directories, holding the other version: it
is put in front of ``PYTHONPATH``), and the two take turns, one short run
each, ``--repeat`` rounds.  Drifts in the box's load then hit both alike, and
the medians can be compared.  For example, with the committed code in a
scratch copy::

    git worktree add /tmp/before HEAD    # or: copy lightningstor/ and twisted/
    python -m bench.cpu_per_request --ops get,head,put --repeat 6 --baseline /tmp/before

``--trivial`` adds the trivial ``twisted.web`` server of :mod:`bench.trivial`
to the turns, driven the same way (same generator, same concurrency, 4 KiB
bodies, plain URLs).  Issue 8's small-object targets are ratios to that
server's request rate, so its CPU per request says what budget per request
the targets leave LightningStor on this box.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: python bench/cpu_per_request.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import loadgen, phases, servers  # noqa: E402
from bench.servers import cpu_seconds  # noqa: E402

BODY_SIZE = 4096


@dataclass(frozen=True)
class Sample:
    """One timed run of one operation."""

    op: str
    requests: int
    seconds: float
    errors: int
    server_cpu: float
    reactor_cpu: float
    concurrency: int = 16

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def server_us(self) -> float:
        return self.server_cpu / self.requests * 1e6

    @property
    def reactor_us(self) -> float:
        return self.reactor_cpu / self.requests * 1e6

    def line(self) -> str:
        return (
            f"{self.op:<5} c={self.concurrency:<2}: {self.rate:7.0f} req/s  server {self.server_us:6.0f} us/req "
            f"(reactor {self.reactor_us:6.0f})  server CPU {self.server_cpu / self.seconds * 100:4.0f}%"
            f"  errors {self.errors}  [{self.requests} requests, {self.seconds:.2f} s]"
        )


def timed(pid: int, op: str, endpoint: str, requests: list[loadgen.Request], concurrency: int) -> Sample:
    """Fire ``requests`` and measure the server's CPU time meanwhile."""
    s0, r0 = cpu_seconds(pid), cpu_seconds(pid, pid)
    result = loadgen.run(endpoint, requests, concurrency)
    s1, r1 = cpu_seconds(pid), cpu_seconds(pid, pid)
    return Sample(op, result.requests, result.seconds, result.errors, s1 - s0, r1 - r0, concurrency)


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


@dataclass
class Server:
    """One server under test, with its requests built for each operation."""

    label: str
    target: servers.Target
    requests: dict[str, list[loadgen.Request]]

    @property
    def pid(self) -> int:
        return self.target.pids()[0]


def start_trivial(args: argparse.Namespace, ops: list[str]) -> Server:
    """The trivial twisted.web server, with the same requests on plain URLs."""
    target = servers.trivial_target()
    body = os.urandom(BODY_SIZE)
    requests: dict[str, list[loadgen.Request]] = {}
    for op in ops:
        method = op.upper()
        urls = [f"{target.endpoint}/perf/p/{i}" for i in range(args.keys)]
        if method == "PUT":
            requests[method] = [loadgen.build(method, u, body) for u in urls]
        else:
            requests[method] = [loadgen.build(method, u) for u in urls] * args.rounds
        loadgen.run(target.endpoint, requests[method][:200], args.concurrency)  # warm up
    return Server(target.name, target, requests)


def start_server(label: str, tree: str | None, args: argparse.Namespace, ops: list[str]) -> Server:
    """Start a server (from ``tree``'s ``lightningstor`` package when given,
    put in front of ``PYTHONPATH``), fill it and build its requests."""
    saved = os.environ.get("PYTHONPATH")
    if tree:
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (tree, saved) if p)
    try:
        target = servers.start_lightningstor(Path(tempfile.mkdtemp(prefix="cpu-per-request-")), 1, args.extra)
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved
    client = target.client
    client.create_bucket(Bucket="perf")
    body = os.urandom(BODY_SIZE)
    keys = [f"p/{i}" for i in range(args.keys)]
    puts = [loadgen.build("PUT", u, body) for u in phases._presign_many(client, "PUT", "perf", keys)]
    loadgen.run(target.endpoint, puts, args.concurrency)  # fill (and warm up)
    requests: dict[str, list[loadgen.Request]] = {}
    for op in ops:
        method = op.upper()
        if method == "PUT":
            requests[method] = puts
        else:
            urls = phases._presign_many(client, method, "perf", keys)
            requests[method] = [loadgen.build(method, u) for u in urls] * args.rounds
        loadgen.run(target.endpoint, requests[method][:200], args.concurrency)  # warm up
    return Server(label, target, requests)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", default="get,put", help="comma-separated: get, put, head (default get,put)")
    parser.add_argument("--keys", type=int, default=2000, help="distinct 4 KiB objects (default 2000)")
    parser.add_argument("--rounds", type=int, default=3, help="GET/HEAD passes over the keys per run (default 3)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=1, help="timed runs per operation (default 1)")
    parser.add_argument(
        "--baseline",
        metavar="DIR",
        help="also run a server from DIR (a copy of the tree holding another lightningstor "
        "package) and alternate runs between the two; report medians",
    )
    parser.add_argument(
        "--trivial", action="store_true", help="also time the trivial twisted.web server (bench.trivial) in turn"
    )
    parser.add_argument("extra", nargs="*", help="extra twistd lightningstor arguments (after --)")
    args = parser.parse_args(argv)
    ops = [o.strip().lower() for o in args.ops.split(",") if o.strip()]
    unknown = set(ops) - {"get", "put", "head"}
    if unknown:
        parser.error(f"unknown operation(s): {', '.join(sorted(unknown))}")

    print(f"load average at start: {load_average()}  ({os.cpu_count()} CPUs)")
    started: list[Server] = []
    samples: dict[tuple[str, str], list[Sample]] = {}
    try:
        if args.baseline:
            started.append(start_server("baseline", args.baseline, args, ops))
        started.append(start_server("this tree" if args.baseline or args.trivial else "", None, args, ops))
        if args.trivial:
            started.append(start_trivial(args, ops))
        for round_ in range(args.repeat):
            for op in ops:
                method = op.upper()
                # Alternate which server goes first, so a drift in the box's
                # load does not always favour the same one.
                order = started if round_ % 2 == 0 else list(reversed(started))
                for server in order:
                    sample = timed(server.pid, method, server.target.endpoint, server.requests[method], args.concurrency)
                    samples.setdefault((server.label, method), []).append(sample)
                    prefix = f"[{server.label}] " if server.label else ""
                    print(prefix + sample.line(), flush=True)
    finally:
        for server in started:
            server.target.stop()
    print(f"load average at end: {load_average()}")
    if args.repeat > 1:
        print("best (lowest server CPU per request):")
        for (label, _op), runs in samples.items():
            print(f"  {label + ': ' if label else ''}" + min(runs, key=lambda s: s.server_us).line())
        print("median server / reactor us per request:")
        for (label, op), runs in samples.items():
            server_us = statistics.median(s.server_us for s in runs)
            reactor_us = statistics.median(s.reactor_us for s in runs)
            rate = statistics.median(s.rate for s in runs)
            print(f"  {label + ': ' if label else ''}{op:<5} {server_us:6.0f} / {reactor_us:6.0f} us  {rate:6.0f} req/s")
    return 0 if all(s.errors == 0 for runs in samples.values() for s in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
