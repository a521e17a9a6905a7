"""Crash-consistency driver: a seeded mixed S3 workload, SIGKILLs, and the checks.

Used by ``tests/integration/test_crash_consistency.py`` (a bounded CI run) and
``bench/crash.py`` (as long as you like).  One *round* is:

1. start (or restart) the real ``twistd lightningstor`` on its data dir;
2. **verify** the whole store against the model (below);
3. run ``workers`` client threads doing random operations for a random
   fraction of a second to a couple of seconds;
4. ``SIGKILL`` the server while they are busy.

Each worker owns its keys, so per key the operations are sequential and the
model knows exactly what the store must hold, except for the one operation
per worker that was in flight at the kill: its outcome is *ambiguous*, and
the store must then hold either the old or the new state, whole.  Every
acknowledged operation is final.  Verification resolves each ambiguity to
what the store actually holds (after checking it is one of the allowed
states), so later rounds build on it.

Verification, per key: ListObjectsV2, HEAD and GET agree (presence, size,
ETag); the GET body's SHA-256 is that of the expected content; the ETag is
the one the PUT acknowledged (or the one the content must have); a checksum
requested at upload comes back.  For versioned keys, ListObjectVersions
equals the acknowledged history (plus at most the one in-flight version on
top), and every version reads back byte-identical.  No key or multipart
upload exists that the model cannot explain.

:meth:`CrashRun.final_check` then stops the server, runs
``lightningstor-admin collect --grace-seconds 0 --unsafe-short-grace`` (no
server uses the data any more) and ``scrub``, and proves from SQLite and the
chunk directory alone that the chunk files on disk are exactly the chunks
that live objects, versions and parts reference, that no temporary files
remain, and that every chunk-index entry names a record that exists and
references that chunk (and vice versa).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from tests.integration.conftest import make_client
from tests.integration.server import ServerProcess

KiB = 1024
MiB = 1024 * KiB
CHUNK_SIZE = 1 * MiB
INLINE_THRESHOLD = 1 * KiB
PLAIN_BUCKET = "crash-plain"
VERSIONED_BUCKET = "crash-versioned"
# Chunk lists longer than two are paged out of their records (manifest
# pages), so most chunked versions exercise that path too.
CHUNKS_PER_RECORD = 2
CONFIG = f"""\
[metadata]
chunks_per_record = {CHUNKS_PER_RECORD}

[storage]
chunk_size_bytes = {CHUNK_SIZE}
inline_threshold_bytes = {INLINE_THRESHOLD}
"""


@dataclass(frozen=True)
class Content:
    """What one object version must read back as."""

    sha256: str
    size: int
    etag: str  # unquoted
    checksum_sha256: str | None = None  # base64, when the upload asked for it


@dataclass(frozen=True)
class Marker:
    """A delete marker in a versioned key's history."""


MARKER = Marker()
Version = Content | Marker


@dataclass
class PlainKey:
    """An unversioned key: its acknowledged state and, after a kill, the
    state an unacknowledged write may have left instead."""

    name: str
    state: Content | None = None
    pending: list[Content | None] = field(default_factory=list)
    multipart_pending: bool = False


@dataclass
class VersionedKey:
    """A key in the versioned bucket: its acknowledged history (oldest first,
    with version ids) and at most one version an unacknowledged write may
    have added on top."""

    name: str
    history: list[tuple[str, Version]] = field(default_factory=list)
    pending: Version | None = None
    verified: set[str] = field(default_factory=set)


@dataclass
class Stats:
    """Counts for the report."""

    rounds: int = 0
    kills: int = 0
    ops: dict[str, int] = field(default_factory=dict)
    acknowledged: int = 0
    ambiguous: int = 0
    ambiguous_applied: int = 0
    orphans_collected: int = 0
    tmp_removed: int = 0
    chunk_files: int = 0
    chunk_bytes: int = 0
    live_chunk_bytes: int = 0
    verify_seconds: float = 0.0
    restart_seconds: float = 0.0

    def count(self, op: str) -> None:
        self.ops[op] = self.ops.get(op, 0) + 1


class CrashCheckFailed(AssertionError):
    """The store broke a crash-consistency promise."""


def _content(data: bytes, checksum: bool = False, etag: str | None = None) -> Content:
    return Content(
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        etag=etag or hashlib.md5(data).hexdigest(),
        checksum_sha256=base64.b64encode(hashlib.sha256(data).digest()).decode() if checksum else None,
    )


def _multipart_etag(parts: list[bytes]) -> str:
    digests = b"".join(hashlib.md5(p).digest() for p in parts)
    return f"{hashlib.md5(digests).hexdigest()}-{len(parts)}"


class Worker:
    """One client thread's keys and operations."""

    def __init__(self, run: CrashRun, index: int, keys_per_worker: int, versioned_keys: int) -> None:
        self.run = run
        self.index = index
        self.rng = random.Random(run.seed * 1000 + index)
        self.plain = [PlainKey(f"w{index}/k{i}") for i in range(keys_per_worker)]
        self.versioned = [VersionedKey(f"w{index}/v{i}") for i in range(versioned_keys)]
        self.s3: Any = None

    # -- data -------------------------------------------------------------

    def _data(self, kind: str) -> bytes:
        rng = self.rng
        if kind == "small":
            size = rng.randint(0, INLINE_THRESHOLD)
        elif kind == "medium":
            size = rng.randint(INLINE_THRESHOLD + 1, 300 * KiB)
        else:
            size = rng.randint(CHUNK_SIZE + 1, 3 * CHUNK_SIZE + 12345)
        return rng.randbytes(size)

    # -- one round ----------------------------------------------------------

    def work(self, stop: threading.Event) -> None:
        """Random operations until ``stop`` is set or one fails (the kill)."""
        ops: list[tuple[Callable[[], None], int]] = [
            (lambda: self.put("small"), 20),
            (lambda: self.put("medium"), 14),
            (lambda: self.put("large"), 8),
            (self.delete, 10),
            (self.copy, 8),
            (self.multipart, 3),
            (self.versioned_put, 12),
            (self.versioned_delete, 5),
        ]
        functions = [f for f, _ in ops]
        weights = [w for _, w in ops]
        while not stop.is_set():
            op = self.rng.choices(functions, weights)[0]
            try:
                op()
            except Exception as exc:  # noqa: BLE001 - any failure ends the round for this worker
                self.run.failed_while_alive(self.index, exc)
                return

    def _ack(self, op: str) -> None:
        with self.run.lock:
            self.run.stats.count(op)
            self.run.stats.acknowledged += 1

    def put(self, kind: str) -> None:
        key = self.rng.choice(self.plain)
        data = self._data(kind)
        checksum = self.rng.random() < 0.3
        new = _content(data, checksum)
        key.pending = [new]
        extra: dict[str, Any] = {"ChecksumAlgorithm": "SHA256"} if checksum else {}
        resp = self.s3.put_object(Bucket=PLAIN_BUCKET, Key=key.name, Body=data, **extra)
        if resp["ETag"].strip('"') != new.etag:
            raise CrashCheckFailed(f"PUT {key.name}: ETag {resp['ETag']} for content with MD5 {new.etag}")
        key.state, key.pending = new, []
        self._ack(f"put_{kind}")

    def delete(self) -> None:
        key = self.rng.choice(self.plain)
        key.pending = [None]
        self.s3.delete_object(Bucket=PLAIN_BUCKET, Key=key.name)
        key.state, key.pending = None, []
        self._ack("delete")

    def copy(self) -> None:
        sources = [k for k in self.plain if k.state is not None]
        if not sources:
            return
        source = self.rng.choice(sources)
        dest = self.rng.choice([k for k in self.plain if k is not source])
        assert source.state is not None
        new = Content(source.state.sha256, source.state.size, "")
        dest.pending = [new]
        resp = self.s3.copy_object(
            Bucket=PLAIN_BUCKET, Key=dest.name, CopySource={"Bucket": PLAIN_BUCKET, "Key": source.name}
        )
        etag = resp["CopyObjectResult"]["ETag"].strip('"')
        dest.state, dest.pending = Content(new.sha256, new.size, etag), []
        self._ack("copy")

    def multipart(self) -> None:
        key = self.rng.choice(self.plain)
        parts = [self.rng.randbytes(5 * MiB), self.rng.randbytes(self.rng.randint(1, CHUNK_SIZE + 999))]
        whole = b"".join(parts)
        new = _content(whole, etag=_multipart_etag(parts))
        key.pending = [new]
        key.multipart_pending = True
        upload = self.s3.create_multipart_upload(Bucket=PLAIN_BUCKET, Key=key.name)["UploadId"]
        listed = []
        for number, body in enumerate(parts, start=1):
            resp = self.s3.upload_part(
                Bucket=PLAIN_BUCKET, Key=key.name, UploadId=upload, PartNumber=number, Body=body
            )
            listed.append({"PartNumber": number, "ETag": resp["ETag"]})
        resp = self.s3.complete_multipart_upload(
            Bucket=PLAIN_BUCKET, Key=key.name, UploadId=upload, MultipartUpload={"Parts": listed}
        )
        if resp["ETag"].strip('"') != new.etag:
            raise CrashCheckFailed(f"multipart {key.name}: ETag {resp['ETag']}, expected {new.etag}")
        key.state, key.pending, key.multipart_pending = new, [], False
        self._ack("multipart")

    def versioned_put(self) -> None:
        key = self.rng.choice(self.versioned)
        data = self._data(self.rng.choice(["small", "small", "medium", "large"]))
        new = _content(data)
        key.pending = new
        resp = self.s3.put_object(Bucket=VERSIONED_BUCKET, Key=key.name, Body=data)
        key.history.append((resp["VersionId"], new))
        key.pending = None
        self._ack("versioned_put")

    def versioned_delete(self) -> None:
        key = self.rng.choice(self.versioned)
        key.pending = MARKER
        resp = self.s3.delete_object(Bucket=VERSIONED_BUCKET, Key=key.name)
        if not resp.get("DeleteMarker"):
            raise CrashCheckFailed(f"versioned DELETE {key.name} made no delete marker: {resp}")
        key.history.append((resp["VersionId"], MARKER))
        key.pending = None
        self._ack("versioned_delete")


class CrashRun:
    """The server, the model and the rounds.  ``log`` gets progress lines."""

    def __init__(
        self,
        data_dir: Path,
        *,
        seed: int = 1,
        workers: int = 3,
        keys_per_worker: int = 6,
        versioned_keys: int = 3,
        min_run: float = 0.2,
        max_run: float = 2.0,
        log: Callable[[str], None] = lambda line: None,
    ) -> None:
        self.data_dir = data_dir
        self.seed = seed
        self.rng = random.Random(seed)
        self.min_run = min_run
        self.max_run = max_run
        self.log = log
        self.stats = Stats()
        self.config = data_dir.parent / "crash.toml"
        self.config.write_text(CONFIG)
        self.server = ServerProcess(data_dir, config=str(self.config))
        self.workers = [Worker(self, i, keys_per_worker, versioned_keys) for i in range(workers)]
        self._killed_at: float | None = None
        self.lock = threading.Lock()
        self.errors: list[str] = []

    # -- lifecycle ----------------------------------------------------------

    def _client(self) -> Any:
        return make_client(self.server.endpoint, connect_timeout=5, read_timeout=30, max_pool_connections=4)

    def start(self) -> None:
        """Start the server and create the two buckets (first round only)."""
        began = time.monotonic()
        self.server.start()
        self.stats.restart_seconds += time.monotonic() - began
        s3 = self._client()
        if self.stats.rounds == 0:
            s3.create_bucket(Bucket=PLAIN_BUCKET)
            s3.create_bucket(Bucket=VERSIONED_BUCKET)
            s3.put_bucket_versioning(Bucket=VERSIONED_BUCKET, VersioningConfiguration={"Status": "Enabled"})

    def failed_while_alive(self, worker: int, exc: BaseException) -> None:
        """A worker's operation failed: expected once the kill was sent (the
        operation becomes ambiguous); a failure before it is a finding."""
        with self.lock:
            if self._killed_at is None or isinstance(exc, CrashCheckFailed):
                self.errors.append(f"worker {worker}: {type(exc).__name__}: {exc}")

    def round(self) -> None:
        """One verify / work / SIGKILL / restart cycle."""
        self.verify()
        for w in self.workers:
            w.s3 = self._client()
        stop = threading.Event()
        self._killed_at = None
        threads = [threading.Thread(target=w.work, args=(stop,), daemon=True) for w in self.workers]
        for t in threads:
            t.start()
        time.sleep(self.rng.uniform(self.min_run, self.max_run))
        with self.lock:
            self._killed_at = time.monotonic()
        self.server.kill()
        stop.set()
        for t in threads:
            t.join(60)
            if t.is_alive():
                raise CrashCheckFailed("a worker did not finish 60 s after the kill")
        if self.errors:
            raise CrashCheckFailed("operations failed while the server was up:\n" + "\n".join(self.errors))
        self.stats.kills += 1
        self.stats.rounds += 1
        self.start()

    def run_for(self, seconds: float) -> Stats:
        """Rounds until ``seconds`` have passed; the server is left running."""
        deadline = time.monotonic() + seconds
        self.start()
        while time.monotonic() < deadline:
            self.round()
            self.log(
                f"round {self.stats.rounds}: {self.stats.acknowledged} acknowledged, "
                f"{self.stats.ambiguous} in flight at a kill ({self.stats.ambiguous_applied} applied)"
            )
        self.verify(full=True)
        return self.stats

    # -- verification -------------------------------------------------------

    def verify(self, full: bool = False) -> None:
        """Check the whole store against the model and resolve ambiguities.

        Noncurrent versions are immutable: each is read back in the first
        verification after it appears and again only when ``full`` (the end
        of a run), so long runs do not slow down as histories grow."""
        began = time.monotonic()
        s3 = self._client()
        listed = self._list(s3, PLAIN_BUCKET)
        known = {k.name for w in self.workers for k in w.plain}
        if set(listed) - known:
            raise CrashCheckFailed(f"keys nobody wrote are listed: {sorted(set(listed) - known)}")
        for w in self.workers:
            for key in w.plain:
                self._verify_plain(s3, key, listed.get(key.name))
        self._verify_uploads(s3)
        vlisted = self._list(s3, VERSIONED_BUCKET)
        for w in self.workers:
            for vkey in w.versioned:
                self._verify_versioned(s3, vkey, vlisted.get(vkey.name), full)
        self.stats.verify_seconds += time.monotonic() - began

    @staticmethod
    def _list(s3: Any, bucket: str) -> dict[str, tuple[int, str]]:
        out: dict[str, tuple[int, str]] = {}
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for obj in page.get("Contents", []):
                out[obj["Key"]] = (obj["Size"], obj["ETag"].strip('"'))
        return out

    def _read(self, s3: Any, bucket: str, key: str, version_id: str | None = None) -> Content | None:
        """HEAD and GET one object (version); they must agree.  None if absent."""
        extra = {"VersionId": version_id} if version_id else {}
        try:
            head = s3.head_object(Bucket=bucket, Key=key, **extra)
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("404", "NoSuchKey", "405"):
                head = None
            else:
                raise
        try:
            got = s3.get_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED", **extra)
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("NoSuchKey", "MethodNotAllowed", "NoSuchVersion"):
                if head is not None:
                    raise CrashCheckFailed(f"{bucket}/{key}: HEAD finds it, GET does not") from None
                return None
            raise
        body = got["Body"].read()
        etag = got["ETag"].strip('"')
        if head is None:
            raise CrashCheckFailed(f"{bucket}/{key}: GET finds it, HEAD does not")
        if head["ETag"].strip('"') != etag or head["ContentLength"] != len(body):
            raise CrashCheckFailed(f"{bucket}/{key}: HEAD {head['ETag']}/{head['ContentLength']} "
                                   f"!= GET {etag}/{len(body)}")
        if got["ContentLength"] != len(body):
            raise CrashCheckFailed(f"{bucket}/{key}: Content-Length {got['ContentLength']}, body {len(body)}")
        return Content(hashlib.sha256(body).hexdigest(), len(body), etag, got.get("ChecksumSHA256"))

    @staticmethod
    def _matches(actual: Content | None, expected: Content | None) -> bool:
        if actual is None or expected is None:
            return actual is expected
        if (actual.sha256, actual.size) != (expected.sha256, expected.size):
            return False
        if expected.etag and actual.etag != expected.etag:
            return False
        return expected.checksum_sha256 is None or actual.checksum_sha256 == expected.checksum_sha256

    def _verify_plain(self, s3: Any, key: PlainKey, listed: tuple[int, str] | None) -> None:
        actual = self._read(s3, PLAIN_BUCKET, key.name)
        if (listed is None) != (actual is None):
            raise CrashCheckFailed(f"{key.name}: listed={listed is not None} but GET found={actual is not None}")
        if actual is not None and listed != (actual.size, actual.etag):
            raise CrashCheckFailed(f"{key.name}: listing says {listed}, GET {actual.size}/{actual.etag}")
        if self._matches(actual, key.state):
            if key.pending:
                self.stats.ambiguous += 1
            key.pending = []
            return
        for option in key.pending:
            if self._matches(actual, option):
                self.stats.ambiguous += 1
                self.stats.ambiguous_applied += 1
                if option is not None and not option.etag:  # a copy: learn its ETag
                    option = Content(option.sha256, option.size, actual.etag if actual else "")
                key.state, key.pending = option, []
                return
        raise CrashCheckFailed(
            f"{PLAIN_BUCKET}/{key.name}: holds {actual}, acknowledged {key.state}, in flight {key.pending}"
        )

    def _verify_uploads(self, s3: Any) -> None:
        """Open uploads may only exist for keys whose multipart op was cut
        short; they are aborted (through the server) so rounds stay small."""
        allowed = {k.name for w in self.workers for k in w.plain if k.multipart_pending}
        uploads = s3.list_multipart_uploads(Bucket=PLAIN_BUCKET).get("Uploads", [])
        for upload in uploads:
            if upload["Key"] not in allowed:
                raise CrashCheckFailed(f"an upload nobody left open exists: {upload['Key']}")
            s3.abort_multipart_upload(Bucket=PLAIN_BUCKET, Key=upload["Key"], UploadId=upload["UploadId"])
        for w in self.workers:
            for k in w.plain:
                k.multipart_pending = False

    def _verify_versioned(self, s3: Any, key: VersionedKey, listed: tuple[int, str] | None, full: bool) -> None:
        ids: dict[str, bool] = {}  # version id -> is a delete marker
        latest = []
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=VERSIONED_BUCKET, Prefix=key.name):
            for kind, marker in (("Versions", False), ("DeleteMarkers", True)):
                for v in page.get(kind, []):
                    if v["Key"] == key.name:
                        ids[v["VersionId"]] = marker
                        if v.get("IsLatest"):
                            latest.append(v)
        expected_ids = [vid for vid, _ in key.history]
        extra = [vid for vid in ids if vid not in expected_ids]
        missing = [vid for vid in expected_ids if vid not in ids]
        if missing:
            raise CrashCheckFailed(f"{key.name}: acknowledged versions lost: {missing}")
        if len(extra) > (1 if key.pending is not None else 0):
            raise CrashCheckFailed(f"{key.name}: versions nobody wrote: {extra}")
        if extra:
            new_id = extra[0]
            if ids[new_id] != isinstance(key.pending, Marker):
                raise CrashCheckFailed(f"{key.name}: in-flight version {new_id} has the wrong kind")
            assert key.pending is not None
            if not isinstance(key.pending, Marker):
                got = self._read(s3, VERSIONED_BUCKET, key.name, new_id)
                if not self._matches(got, key.pending):
                    raise CrashCheckFailed(f"{key.name}: in-flight version {new_id} is torn: {got}")
            key.history.append((new_id, key.pending))
            self.stats.ambiguous_applied += 1
        if key.pending is not None:
            self.stats.ambiguous += 1
        key.pending = None
        if key.history:
            newest_id, newest = key.history[-1]
            if len(latest) != 1 or latest[0]["VersionId"] != newest_id:
                raise CrashCheckFailed(f"{key.name}: latest is {latest}, expected {newest_id}")
        for vid, version in key.history:
            if isinstance(version, Content) and (full or vid not in key.verified):
                key.verified.add(vid)
                got = self._read(s3, VERSIONED_BUCKET, key.name, vid)
                if not self._matches(got, version):
                    raise CrashCheckFailed(f"{key.name}@{vid}: holds {got}, expected {version}")
        current = key.history[-1][1] if key.history else None
        current_content = current if isinstance(current, Content) else None
        got = self._read(s3, VERSIONED_BUCKET, key.name)
        if not self._matches(got, current_content):
            raise CrashCheckFailed(f"{key.name}: current is {got}, expected {current_content}")
        if (listed is None) != (current_content is None):
            raise CrashCheckFailed(f"{key.name}: listed={listed}, current={current_content}")

    # -- the end: collector, scrub, disk == metadata ---------------------------

    def admin(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run ``lightningstor-admin`` on this run's config and data dir."""
        return subprocess.run(
            [sys.executable, "-m", "lightningstor.admin", *args,
             "--config", str(self.config), "--data-dir", str(self.data_dir)],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip

    def final_check(self) -> Stats:
        """Stop the server, collect orphans, scrub, and compare disk with metadata;
        then restart once more and verify that nothing live was collected."""
        self.server.stop()
        collected = self.admin("collect", "--grace-seconds", "0", "--unsafe-short-grace")
        if collected.returncode != 0:
            raise CrashCheckFailed(f"collect failed: {collected.stdout}{collected.stderr}")
        for line in collected.stdout.splitlines():
            words = line.split()
            if line.startswith("collected"):
                self.stats.orphans_collected += int(words[1])
            elif line.startswith("removed"):
                self.stats.tmp_removed += int(words[1])
        referenced = check_metadata(self.data_dir / "metadata.db")
        on_disk = chunk_files(self.data_dir / "data")
        if set(on_disk) != set(referenced):
            raise CrashCheckFailed(
                f"chunk files without a record: {sorted(set(on_disk) - set(referenced))[:10]}; "
                f"records without a chunk file: {sorted(set(referenced) - set(on_disk))[:10]}"
            )
        leftovers = list((self.data_dir / "data" / "tmp").iterdir())
        if leftovers:
            raise CrashCheckFailed(f"temporary chunk files left after collect: {leftovers[:5]}")
        self.stats.chunk_files = len(on_disk)
        self.stats.chunk_bytes = sum(on_disk.values())
        self.stats.live_chunk_bytes = sum(referenced.values())
        scrubbed = self.admin("scrub")
        if scrubbed.returncode != 0:
            raise CrashCheckFailed(f"scrub found problems: {scrubbed.stdout}{scrubbed.stderr}")
        self.start()
        self.verify(full=True)
        self.server.stop()
        return self.stats


def chunk_files(storage_dir: Path) -> dict[str, int]:
    """chunk id -> file size, for every file under ``chunks/``."""
    out: dict[str, int] = {}
    for root, _dirs, files in os.walk(storage_dir / "chunks"):
        for name in files:
            out[name] = os.path.getsize(os.path.join(root, name))
    return out


def _leads_to(entry: bytes, holder: bytes) -> bool:
    """Whether a chunk-index entry (a JSON hint: bucket id ``b``, key ``k``,
    and ``u``/``n`` for a part) names the record at ``holder``: the object
    key or one of its versions, or the part record (decoded here without the
    server's code)."""
    hint = json.loads(entry)
    if holder.startswith(b"lightningstor/parts/"):
        return "u" in hint and holder == f"lightningstor/parts/{hint['u']}/{hint['n']:05d}".encode()
    tail = hint["b"].encode() + b"/" + hint["k"].encode("utf-8")
    return holder == b"lightningstor/objects/" + tail or holder.startswith(b"lightningstor/versions/" + tail + b"\x00")


def check_metadata(db: Path) -> dict[str, int]:
    """Read SQLite directly (not through the server's code): every chunk
    referenced by an object, version or part record has an index entry that
    leads to that record, and after collection every index entry belongs to
    a chunk some record references.  Returns chunk id -> size of the
    referenced chunks."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = dict(conn.execute("SELECT key, value FROM kv").fetchall())
    finally:
        conn.close()
    referenced: dict[str, tuple[bytes, int]] = {}
    named_manifests: dict[str, int] = {}  # manifest id -> chunks, from the records
    paged_chunks: dict[str, int] = {}  # manifest id -> chunks found in its pages
    for key, value in rows.items():
        holder = key
        if key.startswith(b"lightningstor/manifests/"):
            # A page of a paged chunk list: its chunks belong to the object.
            page = json.loads(value)
            holder = b"lightningstor/objects/" + page["b"].encode() + b"/" + page["k"].encode("utf-8")
            manifest_id = key[len(b"lightningstor/manifests/"):].split(b"/")[0].decode()
            paged_chunks[manifest_id] = paged_chunks.get(manifest_id, 0) + len(page["chunks"])
        elif not key.startswith((b"lightningstor/objects/", b"lightningstor/versions/", b"lightningstor/parts/")):
            continue
        record = json.loads(value.partition(b"\x00")[0])  # inline data follows a NUL
        if "mf" in record:
            if record["mf"]["id"] in named_manifests:
                raise CrashCheckFailed(f"manifest {record['mf']['id']} is named by two records")
            named_manifests[record["mf"]["id"]] = record["mf"]["n"]
        for chunk_id, _offset, size, _crc in record.get("chunks", ()):
            if chunk_id in referenced:
                raise CrashCheckFailed(f"chunk {chunk_id} is referenced by two records")
            referenced[chunk_id] = (holder, size)
    if paged_chunks != named_manifests:
        raise CrashCheckFailed(
            f"manifest pages {sorted(paged_chunks.items())[:5]} differ from what records name "
            f"{sorted(named_manifests.items())[:5]}"
        )
    index = {k[len(b"lightningstor/chunks/"):].decode(): v for k, v in rows.items()
             if k.startswith(b"lightningstor/chunks/")}  # fmt: skip
    dangling = {c: v for c, v in index.items() if c not in referenced or not _leads_to(v, referenced[c][0])}
    if dangling:
        raise CrashCheckFailed(f"dangling chunk index entries: {list(dangling.items())[:5]}")
    unindexed = set(referenced) - set(index)
    if unindexed:
        raise CrashCheckFailed(f"referenced chunks without an index entry: {sorted(unindexed)[:5]}")
    return {c: size for c, (_key, size) in referenced.items()}


def kill_and_cleanup(run: CrashRun) -> None:
    """Stop the server whatever state the run ended in (for ``finally``)."""
    if run.server.proc is not None:
        run.server.stop(signal.SIGKILL)
