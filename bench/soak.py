"""The bounded soak: many S3 clients for a few minutes, then every object checked.

Starts the real server (``twistd -n lightningstor`` through
:func:`bench.servers.start_lightningstor`: fsync on, 1 MiB chunks, inlining up
to 1 KiB) on loopback, and runs ``--clients`` client threads for ``--seconds``.
Each client owns its own keys (``c<N>/k<M>``, a bounded key space so objects are
overwritten often) and does a random mix of:

* PUT of small (0..64 KiB) and multi-chunk (1..3 MiB) objects, often over an
  existing key (overwrite);
* GET (whole, or a range) and HEAD of its objects, checked against its model;
* ListObjectsV2 of its prefix, which must list exactly its live keys;
* DELETE;
* multipart upload (a 5 MiB part and a short last part, then complete);
* CopyObject from one of its keys to another.

Because a client's operations are sequential and nobody else touches its keys,
the client knows what each key must hold.  Every 2xx answer updates the model
(an *acknowledged* write); an operation that failed leaves the key uncertain
between its old and new state.  At the end every key is read back and must be
byte-identical (SHA-256, size, ETag) to its model, and every prefix listing must
match: an acknowledged object that is missing or different is *lost*.

The server's RSS is sampled every ``--rss-interval`` seconds; the report gives
the first-minute and last-minute averages and the least-squares slope.  For
runs under three minutes the windows are the first and last third.

Counted apart: 5xx answers (none allowed), 503 SlowDown (deliberate load
shedding, allowed and reported separately), unexpected 4xx and transport
errors.  Exit status 0 when there were no 5xx other than SlowDown, no
unexpected errors and no lost objects.

Run from the repository root::

    .venv/bin/python -m bench.soak --seconds 300 --clients 64 [--seed 7] [--json out.json]
    .venv/bin/python -m bench.soak --seconds 20 --clients 16      # short mode
    .venv/bin/python -m bench.soak --seconds 120 --clients 32 --workers 2
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import struct
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from bench import servers

KiB = 1 << 10
MiB = 1 << 20
CHUNK_SIZE = 1 * MiB
INLINE_THRESHOLD = 1 * KiB
PART_SIZE = 5 * MiB
KEYS_PER_CLIENT = 12
BUCKET = "soak"
CONFIG = f"""\
[storage]
chunk_size_bytes = {CHUNK_SIZE}
inline_threshold_bytes = {INLINE_THRESHOLD}
"""

# (operation, weight) of each client's random choice.
MIX: list[tuple[str, int]] = [
    ("put_small", 26),
    ("put_large", 6),
    ("get", 22),
    ("head", 12),
    ("list", 8),
    ("delete", 9),
    ("multipart", 2),
    ("copy", 6),
]

# Random bytes that object bodies are cut from (each body also starts with a
# unique 16-byte header, so no two writes have the same content).
_POOL = os.urandom(8 * MiB)


def body(rng: random.Random, client: int, serial: int, size: int) -> bytes:
    header = struct.pack(">QQ", client, serial)
    if size <= len(header):
        return header[:size]
    start = rng.randrange(0, len(_POOL) - size + 1)
    return header + _POOL[start : start + size - len(header)]


@dataclass(frozen=True)
class Content:
    """What a key must read back as."""

    size: int
    sha256: str
    etag: str  # unquoted


# A key's possible states: one when the last write was acknowledged, two (old
# and new; None is "absent") after a write whose outcome is unknown.
State = tuple[Content | None, ...]


@dataclass
class Tally:
    """Everything the clients counted; merged from all threads at the end."""

    ops: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    slowdown: int = 0
    server_errors: int = 0  # 5xx other than SlowDown
    unexpected: list[str] = field(default_factory=list)  # 4xx we did not ask for, transport errors
    mismatches: list[str] = field(default_factory=list)  # reads that disagreed with the model (live)
    latencies: dict[str, list[float]] = field(default_factory=dict)
    bytes_up: int = 0
    bytes_down: int = 0

    def merge(self, other: Tally) -> None:
        self.ops.update(other.ops)
        self.statuses.update(other.statuses)
        self.slowdown += other.slowdown
        self.server_errors += other.server_errors
        self.unexpected += other.unexpected
        self.mismatches += other.mismatches
        for op, values in other.latencies.items():
            self.latencies.setdefault(op, []).extend(values)
        self.bytes_up += other.bytes_up
        self.bytes_down += other.bytes_down


class _Failed(Exception):
    """An operation got an error answer or none (already counted)."""


class Client:
    """One soak client: its keys, its model of them, its own random stream."""

    def __init__(self, index: int, s3: Any, seed: int) -> None:
        self.index = index
        self.s3 = s3
        self.rng = random.Random(seed * 1000 + index)
        self.model: dict[str, State] = {}
        self.tally = Tally()
        self.serial = 0

    def key(self, n: int) -> str:
        return f"c{self.index:03d}/k{n:02d}"

    def prefix(self) -> str:
        return f"c{self.index:03d}/"

    # -- calling the server ---------------------------------------------------

    def call(self, op: str, fn: Callable[..., Any], **kwargs: Any) -> Any:
        """Call boto3, count the answer; raise _Failed on any error."""
        started = time.perf_counter()
        try:
            result = fn(**kwargs)
        except ClientError as e:
            status = int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
            code = e.response.get("Error", {}).get("Code", "")
            self.tally.statuses[status] += 1
            if status == 503 and code == "SlowDown":
                self.tally.slowdown += 1
            elif status >= 500:
                self.tally.server_errors += 1
                self.tally.unexpected.append(f"{op}: {status} {code}")
            else:  # clients only read keys they know exist: a 404 is a lost object
                self.tally.unexpected.append(f"{op}: {status} {code}")
            raise _Failed(f"{status} {code}") from e
        except BotoCoreError as e:
            self.tally.unexpected.append(f"{op}: {type(e).__name__}: {e}")
            raise _Failed(str(e)) from e
        self.tally.statuses[int(result.get("ResponseMetadata", {}).get("HTTPStatusCode", 200))] += 1
        self.tally.latencies.setdefault(op, []).append(time.perf_counter() - started)
        return result

    # -- the workload ---------------------------------------------------------

    def run_until(self, deadline: float, stop: threading.Event) -> None:
        ops, weights = zip(*MIX)
        while time.monotonic() < deadline and not stop.is_set():
            op = self.rng.choices(ops, weights)[0]
            if op in ("get", "head", "delete", "copy") and not self._live_keys():
                op = "put_small"
            self.tally.ops[op] += 1
            try:
                getattr(self, "list_prefix" if op == "list" else op)()
            except _Failed:
                pass

    def _live_keys(self) -> list[str]:
        return [k for k, state in self.model.items() if state == (state[0],) and state[0] is not None]

    def _target_key(self) -> str:
        """A key to write: often one that exists (an overwrite)."""
        live = self._live_keys()
        if live and self.rng.random() < 0.5:
            return self.rng.choice(live)
        return self.key(self.rng.randrange(KEYS_PER_CLIENT))

    def _write(self, key: str, new: Content | None, do: Callable[[], Any]) -> Any:
        """Run a write; on failure the key may be in its old or its new state."""
        old = self.model.get(key, (None,))
        try:
            result = do()
        except _Failed:
            self.model[key] = tuple(dict.fromkeys((*old, new)))
            raise
        return result

    def _put(self, size: int) -> None:
        key = self._target_key()
        self.serial += 1
        data = body(self.rng, self.index, self.serial, size)
        content = Content(len(data), hashlib.sha256(data).hexdigest(), hashlib.md5(data).hexdigest())
        result = self._write(key, content, lambda: self.call("put", self.s3.put_object, Bucket=BUCKET, Key=key, Body=data))
        self.tally.bytes_up += len(data)
        etag = result["ETag"].strip('"')
        if etag != content.etag:
            self.tally.mismatches.append(f"PUT {key}: ETag {etag}, expected {content.etag}")
        self.model[key] = (content,)

    def put_small(self) -> None:
        self._put(self.rng.choice([0, 1, 100, 1000, 1025]) if self.rng.random() < 0.3 else self.rng.randrange(64 * KiB))

    def put_large(self) -> None:
        self._put(self.rng.randrange(1 * MiB, 3 * MiB))

    def get(self) -> None:
        key = self.rng.choice(self._live_keys())
        content = self.model[key][0]
        assert content is not None
        if content.size > 2 and self.rng.random() < 0.3:
            start = self.rng.randrange(content.size - 1)
            end = self.rng.randrange(start, content.size)
            result = self.call("get", self.s3.get_object, Bucket=BUCKET, Key=key, Range=f"bytes={start}-{end}")
            data = result["Body"].read()
            self.tally.bytes_down += len(data)
            if len(data) != end - start + 1:
                self.tally.mismatches.append(f"GET {key} range {start}-{end}: {len(data)} bytes")
            return
        result = self.call("get", self.s3.get_object, Bucket=BUCKET, Key=key)
        data = result["Body"].read()
        self.tally.bytes_down += len(data)
        found = Content(len(data), hashlib.sha256(data).hexdigest(), result["ETag"].strip('"'))
        if found != content:
            self.tally.mismatches.append(f"GET {key}: {found}, expected {content}")

    def head(self) -> None:
        key = self.rng.choice(self._live_keys())
        content = self.model[key][0]
        assert content is not None
        result = self.call("head", self.s3.head_object, Bucket=BUCKET, Key=key)
        if (result["ContentLength"], result["ETag"].strip('"')) != (content.size, content.etag):
            self.tally.mismatches.append(f"HEAD {key}: {result['ContentLength']} {result['ETag']}, expected {content}")

    def list_prefix(self) -> None:
        keys = self._list_prefix("list")
        certain = {k for k, s in self.model.items() if len(s) == 1}
        expected = {k for k in certain if self.model[k][0] is not None}
        listed = keys & certain
        if listed != expected:
            self.tally.mismatches.append(
                f"LIST {self.prefix()}: missing {sorted(expected - listed)}, extra {sorted(listed - expected)}"
            )

    def _list_prefix(self, op: str) -> set[str]:
        keys: set[str] = set()
        token: str | None = None
        for _ in range(100):
            kwargs: dict[str, Any] = {"Bucket": BUCKET, "Prefix": self.prefix()}
            if token:
                kwargs["ContinuationToken"] = token
            page = self.call(op, self.s3.list_objects_v2, **kwargs)
            keys.update(obj["Key"] for obj in page.get("Contents", []))
            if not page.get("IsTruncated"):
                break
            token = page.get("NextContinuationToken")
        return keys

    def delete(self) -> None:
        key = self.rng.choice(self._live_keys())
        self._write(key, None, lambda: self.call("delete", self.s3.delete_object, Bucket=BUCKET, Key=key))
        self.model[key] = (None,)

    def copy(self) -> None:
        source = self.rng.choice(self._live_keys())
        content = self.model[source][0]
        assert content is not None
        target = self.key(self.rng.randrange(KEYS_PER_CLIENT))
        if target == source:
            return
        # The copy's ETag is only known from the answer: for an uncertain
        # outcome, accept any ETag with the right bytes (see _matches).
        maybe = Content(content.size, content.sha256, "*")
        result = self._write(
            target,
            maybe,
            lambda: self.call(
                "copy", self.s3.copy_object, Bucket=BUCKET, Key=target, CopySource={"Bucket": BUCKET, "Key": source}
            ),
        )
        etag = result["CopyObjectResult"]["ETag"].strip('"')
        self.model[target] = (Content(content.size, content.sha256, etag),)

    def multipart(self) -> None:
        key = self._target_key()
        self.serial += 1
        first = body(self.rng, self.index, self.serial, PART_SIZE)
        last = body(self.rng, self.index, self.serial + 1_000_000, self.rng.randrange(1, 200 * KiB))
        self.serial += 1
        data = first + last
        etag = hashlib.md5(hashlib.md5(first).digest() + hashlib.md5(last).digest()).hexdigest() + "-2"
        content = Content(len(data), hashlib.sha256(data).hexdigest(), etag)
        upload = self.call("multipart", self.s3.create_multipart_upload, Bucket=BUCKET, Key=key)["UploadId"]
        try:
            parts = []
            for number, part in ((1, first), (2, last)):
                answer = self.call(
                    "multipart", self.s3.upload_part, Bucket=BUCKET, Key=key, UploadId=upload, PartNumber=number, Body=part
                )
                parts.append({"PartNumber": number, "ETag": answer["ETag"]})
                self.tally.bytes_up += len(part)
        except _Failed:
            try:
                self.call("multipart", self.s3.abort_multipart_upload, Bucket=BUCKET, Key=key, UploadId=upload)
            except _Failed:
                pass
            raise
        result = self._write(
            key,
            content,
            lambda: self.call(
                "multipart",
                self.s3.complete_multipart_upload,
                Bucket=BUCKET,
                Key=key,
                UploadId=upload,
                MultipartUpload={"Parts": parts},
            ),
        )
        if result["ETag"].strip('"') != etag:
            self.tally.mismatches.append(f"COMPLETE {key}: ETag {result['ETag']}, expected {etag}")
        self.model[key] = (content,)

    # -- the final check ------------------------------------------------------

    def verify(self) -> tuple[int, list[str]]:
        """(objects checked, lost or wrong ones): every key against the model."""
        problems: list[str] = []
        checked = 0
        for n in range(KEYS_PER_CLIENT):
            key = self.key(n)
            states = self.model.get(key, (None,))
            found: Content | None
            try:
                result = self.s3.get_object(Bucket=BUCKET, Key=key)
                data = result["Body"].read()
                found = Content(len(data), hashlib.sha256(data).hexdigest(), result["ETag"].strip('"'))
            except ClientError as e:
                if e.response.get("Error", {}).get("Code") not in ("NoSuchKey", "404"):
                    problems.append(f"{key}: {e}")
                    continue
                found = None
            checked += 1
            if not any(_matches(found, state) for state in states):
                problems.append(f"{key}: found {found}, expected one of {states}")
            if len(states) == 1:
                self.model[key] = states
            else:  # settle the uncertain key to what it holds
                self.model[key] = (found,)
        listed = self._list_prefix("verify-list")
        expected = {k for k, s in self.model.items() if s[0] is not None}
        if listed != expected:
            problems.append(
                f"listing {self.prefix()}: missing {sorted(expected - listed)}, extra {sorted(listed - expected)}"
            )
        return checked, problems


def _matches(found: Content | None, state: Content | None) -> bool:
    if found is None or state is None:
        return found is state
    if state.etag == "*":
        return (found.size, found.sha256) == (state.size, state.sha256)
    return found == state


# -- memory -------------------------------------------------------------------------


class RssTrend(threading.Thread):
    """Samples the server's VmRSS every ``interval`` seconds: (seconds, bytes)."""

    def __init__(self, pid: int, interval: float) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._halt = threading.Event()
        self._start = time.monotonic()

    def run(self) -> None:
        while True:
            rss = servers.rss_bytes(self.pid)
            if rss:
                self.samples.append((time.monotonic() - self._start, rss))
            if self._halt.wait(self.interval):
                return

    def stop(self) -> None:
        self._halt.set()
        self.join(10)


def minute_averages(samples: list[tuple[float, int]], window: float = 60.0) -> list[float]:
    """Average RSS (MiB) of each ``window`` seconds of the run, in order."""
    buckets: dict[int, list[int]] = {}
    for t, r in samples:
        buckets.setdefault(int(t // window), []).append(r)
    return [sum(v) / len(v) / MiB for _, v in sorted(buckets.items())]


def trend(samples: list[tuple[float, int]], duration: float) -> dict[str, float]:
    """First- and last-window averages (MiB) and the least-squares slope (MiB/min)."""
    if len(samples) < 2:
        return {}
    window = 60.0 if duration >= 180 else duration / 3
    end = samples[-1][0]
    first = [r for t, r in samples if t <= window] or [samples[0][1]]
    last = [r for t, r in samples if t >= end - window] or [samples[-1][1]]
    settled = [(t, r) for t, r in samples if t > window]
    return {
        "window_seconds": window,
        "first_window_mib": sum(first) / len(first) / MiB,
        "last_window_mib": sum(last) / len(last) / MiB,
        "slope_mib_per_min": _slope(samples) * 60 / MiB,
        # Without the warm-up (thread pools, caches, allocator arenas).
        "slope_after_first_window_mib_per_min": _slope(settled) * 60 / MiB,
        "min_mib": min(r for _, r in samples) / MiB,
        "max_mib": max(r for _, r in samples) / MiB,
        "samples": float(len(samples)),
    }


def _slope(samples: list[tuple[float, int]]) -> float:
    """Least-squares slope of (seconds, bytes) samples, bytes per second."""
    n = len(samples)
    if n < 2:
        return 0.0
    mean_t = sum(t for t, _ in samples) / n
    mean_r = sum(r for _, r in samples) / n
    var = sum((t - mean_t) ** 2 for t, _ in samples)
    return sum((t - mean_t) * (r - mean_r) for t, r in samples) / var if var else 0.0


# -- the run ---------------------------------------------------------------------------


@dataclass
class SoakReport:
    seconds: float
    clients: int
    seed: int
    ops: dict[str, int]
    requests: int
    statuses: dict[int, int]
    server_errors: int
    slowdown: int
    unexpected: list[str]
    mismatches: list[str]
    lost: list[str]
    objects_verified: int
    live_objects: int
    mib_up: float
    mib_down: float
    latency_ms: dict[str, dict[str, float]]
    rss: dict[str, float]
    rss_samples: list[tuple[float, int]]
    server_hwm_mib: float
    verify_seconds: float

    @property
    def ok(self) -> bool:
        return not (self.server_errors or self.unexpected or self.mismatches or self.lost)


def _percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return {"count": float(len(ordered)), "p50": at(0.5), "p99": at(0.99), "max": ordered[-1] * 1000}


def _hwm_mib(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def run_soak(
    seconds: float,
    clients: int,
    *,
    seed: int = 1,
    rss_interval: float = 2.0,
    scratch: Path | None = None,
    progress: Callable[[str], None] = lambda line: None,
    workers: int = 1,
) -> SoakReport:
    """Start a server in ``scratch`` (a temporary directory by default), soak
    it, check every object, stop it; return the figures.  With ``workers``
    above 1 a client's requests land on any worker (its connections are
    spread over them), so reads often follow writes made by another worker
    process; RSS is then that of the first worker."""
    holder = None
    if scratch is None:
        holder = tempfile.TemporaryDirectory(prefix="ls-soak-")
        scratch = Path(holder.name)
    config = scratch / "soak.toml"
    config.write_text(CONFIG)
    target = servers.start_lightningstor(scratch, workers, ["--config", str(config)])
    try:
        pid = target.pids()[1] if workers > 1 else target.pids()[0]
        if target.sampler is not None:
            target.sampler.stop()  # the bench's 50 ms peak sampler; ours is coarser
        s3 = servers.s3_client(target.endpoint, *_root_keys(), pool=clients + 4)
        s3.create_bucket(Bucket=BUCKET)
        workers = [Client(i, s3, seed) for i in range(clients)]
        stop = threading.Event()
        sampler = RssTrend(pid, rss_interval)
        sampler.start()
        began = time.monotonic()
        deadline = began + seconds
        errors: list[BaseException] = []

        def work(client: Client) -> None:
            try:
                client.run_until(deadline, stop)
            except BaseException as e:  # a bug in the soak itself: stop everyone
                errors.append(e)
                stop.set()

        threads = [threading.Thread(target=work, args=(c,), daemon=True) for c in workers]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            time.sleep(min(10.0, max(0.5, seconds / 10)))
            done = sum(sum(c.tally.ops.values()) for c in workers)
            progress(f"{time.monotonic() - began:6.1f} s: {done} operations, RSS {servers.rss_bytes(pid) / MiB:.1f} MiB")
        for t in threads:
            t.join()
        elapsed = time.monotonic() - began
        sampler.stop()
        if errors:
            raise errors[0]
        progress("verifying every object")
        verify_started = time.monotonic()
        lost: list[str] = []
        verified = 0
        for client in workers:
            checked, problems = client.verify()
            verified += checked
            lost += problems
        verify_seconds = time.monotonic() - verify_started
        total = Tally()
        for client in workers:
            total.merge(client.tally)
        live = sum(1 for c in workers for s in c.model.values() if s[0] is not None)
        return SoakReport(
            seconds=elapsed,
            clients=clients,
            seed=seed,
            ops=dict(total.ops),
            requests=sum(total.statuses.values()),
            statuses=dict(total.statuses),
            server_errors=total.server_errors,
            slowdown=total.slowdown,
            unexpected=total.unexpected,
            mismatches=total.mismatches,
            lost=lost,
            objects_verified=verified,
            live_objects=live,
            mib_up=total.bytes_up / MiB,
            mib_down=total.bytes_down / MiB,
            latency_ms={op: _percentiles(v) for op, v in sorted(total.latencies.items())},
            rss=trend(sampler.samples, elapsed),
            rss_samples=sampler.samples,
            server_hwm_mib=_hwm_mib(pid),
            verify_seconds=verify_seconds,
        )
    finally:
        target.stop()
        if holder is not None:
            holder.cleanup()


def _root_keys() -> tuple[str, str]:
    from tests.integration.server import ROOT_ACCESS_KEY, ROOT_SECRET_KEY

    return ROOT_ACCESS_KEY, ROOT_SECRET_KEY


def render(report: SoakReport) -> str:
    lines = [
        f"soak: {report.clients} clients, {report.seconds:.0f} s, seed {report.seed}",
        f"operations: {sum(report.ops.values())} "
        f"({', '.join(f'{op} {n}' for op, n in sorted(report.ops.items()))}); "
        f"{report.requests} HTTP requests, {report.requests / report.seconds:.0f}/s",
        f"statuses: {', '.join(f'{s}: {n}' for s, n in sorted(report.statuses.items()))}",
        f"5xx (not SlowDown): {report.server_errors}; 503 SlowDown: {report.slowdown}; "
        f"unexpected errors: {len(report.unexpected)}; mismatched reads: {len(report.mismatches)}",
        f"verified {report.objects_verified} keys ({report.live_objects} live objects) "
        f"in {report.verify_seconds:.1f} s: {len(report.lost)} lost or wrong",
        f"data: {report.mib_up:.0f} MiB up, {report.mib_down:.0f} MiB down",
    ]
    if report.rss:
        r = report.rss
        lines.append(
            f"server RSS: first {r['window_seconds']:.0f} s avg {r['first_window_mib']:.1f} MiB, "
            f"last {r['window_seconds']:.0f} s avg {r['last_window_mib']:.1f} MiB, "
            f"slope {r['slope_mib_per_min']:+.2f} MiB/min "
            f"({r['slope_after_first_window_mib_per_min']:+.2f} after the first {r['window_seconds']:.0f} s), "
            f"min {r['min_mib']:.1f}, max {r['max_mib']:.1f} "
            f"({r['samples']:.0f} samples); VmHWM {report.server_hwm_mib:.1f} MiB"
        )
        window = r["window_seconds"]
        averages = minute_averages(report.rss_samples, window)
        lines.append(f"server RSS per {window:.0f} s: " + ", ".join(f"{a:.1f}" for a in averages) + " MiB")
    for op, p in report.latency_ms.items():
        lines.append(f"  {op:10s} n={p['count']:.0f} p50 {p['p50']:.1f} ms p99 {p['p99']:.1f} ms max {p['max']:.0f} ms")
    for title, items in (("unexpected", report.unexpected), ("mismatch", report.mismatches), ("lost", report.lost)):
        for item in items[:20]:
            lines.append(f"{title}: {item}")
    lines.append("OK" if report.ok else "FAILED")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rss-interval", type=float, default=2.0, help="seconds between RSS samples")
    parser.add_argument("--keep", type=Path, default=None, help="use (and keep) this scratch directory")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--workers", type=int, default=1, help="server worker processes")
    args = parser.parse_args(argv)
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    report = run_soak(
        args.seconds,
        args.clients,
        seed=args.seed,
        rss_interval=args.rss_interval,
        scratch=args.keep,
        workers=args.workers,
        progress=lambda line: print(f"[{time.monotonic() - began:6.1f}s] {line}", file=sys.stderr, flush=True),
    )
    print(render(report))
    if args.json is not None:
        args.json.write_text(json.dumps(asdict(report), indent=1))
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
