"""``--workers 2``: several reactor processes behind one S3 port.

One real ``twistd lightningstor --workers 2`` serves the module; the tests
prove that connections spread over both worker processes, that concurrent
writers in different processes neither lose nor tear objects (SQLite and the
local chunk store shared between processes), that ``/metrics`` sums every
worker, and that SIGTERM to the supervisor stops them all.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import make_client
from tests.integration.server import ROOT_ACCESS_KEY, ROOT_SECRET_KEY, Daemon, ServerProcess, start_workers

WORKER_HEADER = "x-lightningstor-worker"


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    # No delay before freed chunks are deleted: a GET racing an overwrite
    # in the other worker must still never fail (read again, or whole).
    proc = start_workers(tmp_path_factory.mktemp("workers"), "[storage]\nfree_delay_seconds = 0\n")
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def s3(workers: ServerProcess) -> object:
    # when_required: botocore's checksum-validating body cannot parse a 5xx
    # error document (AttributeError instead of ClientError).
    return make_client(workers.endpoint, max_pool_connections=32, response_checksum_validation="when_required")


@pytest.fixture(scope="module")
def bucket(s3: object) -> str:
    name = f"w-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)  # type: ignore[attr-defined]
    return name


def _body(size: int) -> bytes:
    """Random bytes followed by their SHA-256: a torn or mixed body fails the check."""
    payload = os.urandom(size)
    return payload + hashlib.sha256(payload).digest()


def _intact(body: bytes) -> bool:
    return len(body) >= 32 and hashlib.sha256(body[:-32]).digest() == body[-32:]


def _worker(response: dict) -> int:
    return int(response["ResponseMetadata"]["HTTPHeaders"][WORKER_HEADER])


def _put_many(s3: object, bucket: str, keys: list[str]) -> dict[str, tuple[bytes, int]]:
    """PUT each key once, 16 at a time; ``{key: (body, worker pid)}``."""

    def put(key: str) -> tuple[str, bytes, int]:
        body = _body(random.randint(1, 64 * 1024))
        r = s3.put_object(Bucket=bucket, Key=key, Body=body)  # type: ignore[attr-defined]
        return key, body, _worker(r)

    with ThreadPoolExecutor(16) as pool:
        return {key: (body, pid) for key, body, pid in pool.map(put, keys)}


def test_concurrent_connections_land_in_both_workers(workers: ServerProcess, s3: object, bucket: str) -> None:
    """Requests on concurrent connections are answered by both worker
    processes (the response header names the pid), and never by the supervisor."""
    pids = set(workers.ready_workers(2).values())
    seen: set[int] = set()
    for _ in range(5):
        written = _put_many(s3, bucket, [f"spread/{uuid.uuid4().hex}" for _ in range(64)])
        seen |= {pid for _, pid in written.values()}
        if seen == pids:
            break
    assert seen == pids
    assert workers.proc is not None and workers.proc.pid not in seen


def _burst_shares(endpoint: str, path: str, bursts: int, timeout: float = 30) -> list[int]:
    """Open 16 connections at once, send one GET on each, and return per burst
    how many of the 16 the busier worker answered."""
    return [max(pids.values()) for pids in _bursts(endpoint, path, bursts, timeout)]


def _bursts(endpoint: str, path: str, bursts: int, timeout: float = 30) -> list[dict[str, int]]:
    """Per burst of 16 connections (one GET each): responses per worker pid."""
    host, port = endpoint.split("//", 1)[1].rsplit(":", 1)
    result = []
    for _ in range(bursts):
        conns = [socket.create_connection((host, int(port)), timeout=timeout) for _ in range(16)]
        pids: dict[str, int] = {}
        try:
            for conn in conns:
                conn.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
            for conn in conns:
                head = b""
                while b"\r\n\r\n" not in head:
                    piece = conn.recv(65536)
                    assert piece, "connection closed before the response headers"
                    head += piece
                lines = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
                pid = next(line.split(":", 1)[1].strip() for line in lines if line.lower().startswith(WORKER_HEADER))
                pids[pid] = pids.get(pid, 0) + 1
        finally:
            for conn in conns:
                conn.close()
        result.append(pids)
        time.sleep(0.2)
    return result


def _presigned_path(s3: object, bucket: str, key: str) -> str:
    """A presigned GET of a one-byte object, as a request target; then the
    client's pooled keep-alive connections are closed, because the workers
    balance *all* open connections and a leftover one would count."""
    s3.put_object(Bucket=bucket, Key=key, Body=b"x")  # type: ignore[attr-defined]
    url = s3.generate_presigned_url(  # type: ignore[attr-defined]
        "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=600
    )
    s3._endpoint.http_session.close()  # type: ignore[attr-defined]
    time.sleep(0.3)  # let the workers see those connections close
    return "/" + url.split("//", 1)[1].split("/", 1)[1]


def test_a_burst_of_connections_is_shared_by_the_workers(workers: ServerProcess, s3: object, bucket: str) -> None:
    """Sixteen keep-alive connections opened at once (a client's pool, a
    benchmark) are split 8/8 between both workers: a worker that would hold
    more than its fair share of the open connections leaves the next one to
    the other (lightningstor.worker_balance).  Before, one worker took 9.8
    of 16 on average and up to 14, even accepting one per wake-up; with
    Twisted's default, 14.7.  Two of the nine bursts may be off: when the
    box's load keeps a worker off the CPU for over 5 ms, the other takes a
    connection anyway rather than keep it waiting (the starvation guard)."""
    path = _presigned_path(s3, bucket, "burst")
    shares = _burst_shares(workers.endpoint, path, 9)
    assert shares.count(8) >= 7, shares


def test_a_stopped_worker_does_not_hold_up_new_connections(workers: ServerProcess, s3: object, bucket: str) -> None:
    """Starvation guard: with worker 1 stopped (SIGSTOP: alive, its slot in
    the connection table still counted, accepting nothing), worker 0 is soon
    above its fair share, yet it takes every connection of a burst within
    moments (one per 5 ms while the other accepts nothing, all of them
    after 50 ms), and the other worker takes its share again once it
    continues."""
    pids = workers.ready_workers(2)
    path = _presigned_path(s3, bucket, "stopped")
    os.kill(pids[1], signal.SIGSTOP)
    try:
        started = time.monotonic()
        (answered,) = _bursts(workers.endpoint, path, 1, timeout=10)
        elapsed = time.monotonic() - started
    finally:
        os.kill(pids[1], signal.SIGCONT)
    assert answered == {str(pids[0]): 16}
    assert elapsed < 3.0, elapsed
    time.sleep(0.3)
    assert _burst_shares(workers.endpoint, path, 3).count(8) >= 2


def test_concurrent_writers_lose_nothing(s3: object, bucket: str) -> None:
    """Distinct keys written concurrently through both workers all exist
    afterwards with exactly the bytes written, and the listing shows them all."""
    keys = [f"unique/{i:04d}" for i in range(200)]
    written = _put_many(s3, bucket, keys)
    assert len({pid for _, pid in written.values()}) == 2
    listed: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="unique/"):  # type: ignore[attr-defined]
        listed += [obj["Key"] for obj in page.get("Contents", [])]
    assert listed == keys

    def get(key: str) -> bool:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()  # type: ignore[attr-defined]
        return body == written[key][0]

    with ThreadPoolExecutor(16) as pool:
        assert all(pool.map(get, keys))


def test_overlapping_put_get_delete_never_tear(workers: ServerProcess, s3: object, bucket: str) -> None:
    """16 threads PUT, GET and DELETE the same 6 keys at random through both
    workers: every GET returns one complete body that was written for that
    key (or 404), and afterwards each key's state matches the listing.

    The server deletes freed chunks at once here (``free_delay_seconds = 0``):
    a GET that read the record just before a DELETE or an overwrite in the
    other worker removed its chunks reads the key again instead of
    answering 500.  The SDK retries a 500 once, which would hide it, so the
    server's access log is checked too.
    """
    keys = [f"hot/{i}" for i in range(6)]
    first_line = len(workers.output)
    bodies: dict[str, set[bytes]] = {key: set() for key in keys}
    lock = threading.Lock()
    problems: list[str] = []
    read_races: list[str] = []

    def run(seed: int) -> None:
        rnd = random.Random(seed)
        for _ in range(20):
            key = rnd.choice(keys)
            op = rnd.random()
            if op < 0.45:
                body = _body(rnd.randint(0, 96 * 1024))
                with lock:
                    bodies[key].add(body)
                s3.put_object(Bucket=bucket, Key=key, Body=body)  # type: ignore[attr-defined]
            elif op < 0.85:
                try:
                    got = s3.get_object(Bucket=bucket, Key=key)["Body"].read()  # type: ignore[attr-defined]
                except ClientError as e:
                    if e.response["ResponseMetadata"]["HTTPStatusCode"] == 500:
                        read_races.append(f"GET {key}: {e}")
                    elif e.response["Error"]["Code"] != "NoSuchKey":
                        problems.append(f"GET {key}: {e}")
                    continue
                with lock:
                    known = got in bodies[key]
                if not _intact(got) or not known:
                    problems.append(f"GET {key}: torn or foreign body of {len(got)} bytes")
            else:
                s3.delete_object(Bucket=bucket, Key=key)  # type: ignore[attr-defined]

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(run, range(16)))
    assert problems == []
    present = set()
    for key in keys:
        try:
            got = s3.get_object(Bucket=bucket, Key=key)["Body"].read()  # type: ignore[attr-defined]
        except ClientError as e:
            assert e.response["Error"]["Code"] == "NoSuchKey"
            continue
        assert _intact(got) and got in bodies[key]
        present.add(key)
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="hot/")  # type: ignore[attr-defined]
    assert {obj["Key"] for obj in listed.get("Contents", [])} == present
    assert read_races == []
    answered_500 = [line for line in workers.output[first_line:] if f'"GET /{bucket}/hot/' in line and '" 500 ' in line]
    assert answered_500 == []


def _one_connection_per_worker(endpoint: str, target: str, pids: set[int]) -> dict[int, http.client.HTTPConnection]:
    """Keep-alive connections, one held by each worker (a connection is
    accepted by exactly one), found by the worker header of a GET.  Tried
    for up to 30 s: when a worker is slow to accept (a loaded machine), the
    other takes its connections after 5 ms (worker_balance), and 64 quick
    tries once all went to one worker."""
    host, port = endpoint.split("//", 1)[1].rsplit(":", 1)
    found: dict[int, http.client.HTTPConnection] = {}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        conn.request("GET", target)
        response = conn.getresponse()
        response.read()
        pid = int(response.headers[WORKER_HEADER])
        if pid in found:
            conn.close()
        else:
            found[pid] = conn
        if set(found) == pids:
            return found
        time.sleep(0.01)
    raise AssertionError(f"30 s of connections reached only workers {sorted(found)}")


def _target(s3: object, method: str, bucket: str, key: str) -> str:
    url = s3.generate_presigned_url(method, Params={"Bucket": bucket, "Key": key}, ExpiresIn=600)  # type: ignore[attr-defined]
    return "/" + url.split("//", 1)[1].split("/", 1)[1]


def test_a_worker_never_answers_from_its_cache_what_another_changed(
    workers: ServerProcess, s3: object, bucket: str
) -> None:
    """Each worker keeps the records it read or wrote in memory
    (lightningstor/metadata/readcache.py).  60 times: one worker reads the
    object (so it has it cached), the other overwrites or deletes it, and the
    first must answer the new body (or 404) at once."""
    key = "cached/" + uuid.uuid4().hex
    s3.put_object(Bucket=bucket, Key=key, Body=b"first")  # type: ignore[attr-defined]
    get, put, delete = (_target(s3, m, bucket, key) for m in ("get_object", "put_object", "delete_object"))
    conns = _one_connection_per_worker(workers.endpoint, get, set(workers.ready_workers(2).values()))
    a, b = conns.values()
    current: bytes | None = b"first"
    rnd = random.Random(5)
    try:
        for step in range(60):
            reader, writer = (a, b) if step % 2 else (b, a)
            for _ in range(2):  # the second read is answered from the reader's cache
                reader.request("GET", get)
                response = reader.getresponse()
                body = response.read()
                assert (response.status, body) == ((200, current) if current is not None else (404, body))
            if rnd.random() < 0.75:
                current = b"step %d " % step + os.urandom(rnd.randint(0, 2048))
                writer.request("PUT", put, body=current)
            else:
                current = None
                writer.request("DELETE", delete)
            response = writer.getresponse()
            response.read()
            assert response.status in (200, 204)
            reader.request("GET", get)
            response = reader.getresponse()
            body = response.read()
            if current is None:
                assert response.status == 404, (step, body[:80])
            else:
                assert (response.status, body) == (200, current), step
    finally:
        for conn in conns.values():
            conn.close()


HELD = ("hit", "unchanged")
"""Reads of a record the worker's cache held as the database has it: answered
from memory, or (``unchanged``) read again because a write of another key
sharing the entry's counter slot made it stale (lightningstor/metadata/readcache.py)."""


def _cache_reads(endpoint: str, *results: str) -> float:
    """The workers' point reads of their metadata caches with these results."""
    return sum(_metric_total(endpoint, "lightningstor_metadata_cache_reads_total", result=r) for r in results)


def _wait_for_cache_reads(endpoint: str, results: tuple[str, ...], at_least: float) -> float:
    """The workers copy their cache counters to the metrics every 5 s."""
    deadline = time.monotonic() + 12
    while (value := _cache_reads(endpoint, *results)) < at_least and time.monotonic() < deadline:
        time.sleep(0.25)
    return value


@pytest.fixture
def fresh_workers(tmp_path: Path) -> Iterator[ServerProcess]:
    """Two workers of their own, for a test that counts every metadata read:
    a minute passes before the primary worker's first background pass (the
    usage fold, whose reads and writes would add to those counted), and the
    test is over well before."""
    proc = start_workers(tmp_path, "")
    yield proc
    proc.stop()


def test_what_one_worker_wrote_the_other_reads_from_its_cache(fresh_workers: ServerProcess) -> None:
    """A record written through one worker is answered from the other
    worker's read cache, with no database read: the writer offers what it
    committed through a shared ring (lightningstor/metadata/published.py).
    30 objects PUT through one worker's connection, then read through the
    other's: every read is a cache hit, none a miss.  The PUTs, one at a
    time, of keys no worker has read, read nothing either: each assumes its
    key is new (core/newkeys.py).

    Keys share the caches' counter slots (65,534 of them), and each PUT
    writes two keys (the record and a usage row), so a write sometimes
    makes an entry of another key stale, and its next read goes to the
    database: about one run in forty had one, counted then as a miss.
    Such a read, answered as the entry held, is counted as ``unchanged``:
    it counts here as a read of a record held, never as a miss."""
    workers = fresh_workers
    s3 = make_client(workers.endpoint, response_checksum_validation="when_required")
    bucket = f"w-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    keys = [f"shared/{uuid.uuid4().hex}/{i}" for i in range(30)]
    pids = set(workers.ready_workers(2).values())
    conns = _one_connection_per_worker(workers.endpoint, _target(s3, "get_object", bucket, keys[0]), pids)
    writer, reader = conns.values()
    try:
        # First PUTs through the writer: it reads what every PUT to the
        # bucket needs (its quota limits) and keeps it, and it learns that
        # commits come one at a time (earlier tests wrote concurrently).
        for n in range(40):
            writer.request("PUT", _target(s3, "put_object", bucket, f"{keys[0]}/first{n}"), body=b"first")
            response = writer.getresponse()
            response.read()
            assert response.status == 200
        time.sleep(5.5)  # the workers copy their counters every 5 s: what came before is in
        misses = _cache_reads(workers.endpoint, "miss")
        for key in keys:
            writer.request("PUT", _target(s3, "put_object", bucket, key), body=key.encode())
            response = writer.getresponse()
            response.read()
            assert response.status == 200
        time.sleep(5.5)
        assert _cache_reads(workers.endpoint, "miss") == misses  # no PUT read its key first
        held = _cache_reads(workers.endpoint, *HELD)
        for key in keys:
            reader.request("GET", _target(s3, "get_object", bucket, key))
            response = reader.getresponse()
            assert (response.status, response.read()) == (200, key.encode())
        # Each GET reads the bucket's record and the object's, both held.
        assert _wait_for_cache_reads(workers.endpoint, HELD, held + 2 * len(keys)) >= held + 2 * len(keys)
        assert _cache_reads(workers.endpoint, "miss") - misses == 0
    finally:
        for conn in conns.values():
            conn.close()


def test_a_multipart_completion_leaves_every_workers_cache_in_place(
    workers: ServerProcess, s3: object, bucket: str
) -> None:
    """Completing (or aborting) a multipart upload removes its part records
    with a range delete; that used to make every cached record of every
    worker miss once.  An object read through both workers is still
    answered from their caches after a completion: no miss."""
    key = f"kept/{uuid.uuid4().hex}"
    s3.put_object(Bucket=bucket, Key=key, Body=b"kept")  # type: ignore[attr-defined]
    conns = _one_connection_per_worker(workers.endpoint, _target(s3, "get_object", bucket, key),
                                       set(workers.ready_workers(2).values()))  # fmt: skip

    def read_through_both() -> None:
        for conn in conns.values():
            conn.request("GET", _target(s3, "get_object", bucket, key))
            response = conn.getresponse()
            assert (response.status, response.read()) == (200, b"kept")

    try:
        read_through_both()  # both hold it now
        upload = s3.create_multipart_upload(Bucket=bucket, Key=f"mp/{uuid.uuid4().hex}")  # type: ignore[attr-defined]
        part = s3.upload_part(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"],  # type: ignore[attr-defined]
                              PartNumber=1, Body=b"p" * 1000)  # fmt: skip
        s3.complete_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"],  # type: ignore[attr-defined]
                                     MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})  # fmt: skip
        time.sleep(5.5)  # the workers copy their counters every 5 s: what came before is in
        misses, held = _cache_reads(workers.endpoint, "miss"), _cache_reads(workers.endpoint, *HELD)
        read_through_both()
        # Each GET reads the bucket's record and the object's: all held.
        assert _wait_for_cache_reads(workers.endpoint, HELD, held + 4) >= held + 4
        assert _cache_reads(workers.endpoint, "miss") == misses
    finally:
        for conn in conns.values():
            conn.close()


def test_a_bucket_access_change_reaches_every_worker_at_once(workers: ServerProcess, s3: object) -> None:
    """Both workers answer an anonymous GET (allowed by the bucket's policy)
    and so hold the bucket in their read cache; RestrictPublicBuckets,
    turned on through either worker, refuses the next anonymous GET on both
    at once, and turning it off lets them in again.  The bucket cache used
    to keep a worker's copy for a second."""
    name = f"w-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)  # type: ignore[attr-defined]
    s3.delete_public_access_block(Bucket=name)  # type: ignore[attr-defined]
    s3.put_object(Bucket=name, Key="k", Body=b"public")  # type: ignore[attr-defined]
    s3.put_bucket_policy(Bucket=name, Policy=json.dumps({"Version": "2012-10-17", "Statement": [  # type: ignore[attr-defined]
        {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{name}/*"}]}))
    target = f"/{name}/k"
    conns = _one_connection_per_worker(workers.endpoint, target, set(workers.ready_workers(2).values()))
    restrict = {"BlockPublicAcls": False, "IgnorePublicAcls": False, "BlockPublicPolicy": False,
                "RestrictPublicBuckets": True}

    def statuses() -> list[int]:
        found = []
        for conn in conns.values():
            conn.request("GET", target)
            response = conn.getresponse()
            response.read()
            found.append(response.status)
        return found

    try:
        for _ in range(3):
            assert statuses() == [200, 200]
            s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration=restrict)  # type: ignore[attr-defined]
            assert statuses() == [403, 403]
            s3.delete_public_access_block(Bucket=name)  # type: ignore[attr-defined]
    finally:
        for conn in conns.values():
            conn.close()


def _metric_total(endpoint: str, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples with these labels (0 if there is none yet)."""
    with urllib.request.urlopen(f"{endpoint}/metrics", timeout=10) as r:
        text = r.read().decode()
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def _requests_total(endpoint: str, operation: str) -> float:
    return _metric_total(endpoint, "lightningstor_requests_total", operation=operation)


def test_metrics_sum_every_worker(workers: ServerProcess, s3: object, bucket: str) -> None:
    """/metrics counts the requests of both workers, whichever one answers
    the scrape: the PutObject counter grows by exactly the PUTs sent."""
    before = _requests_total(workers.endpoint, "PutObject")
    written = _put_many(s3, bucket, [f"metrics/{i}" for i in range(48)])
    assert len({pid for _, pid in written.values()}) == 2
    # A worker counts a request in its finish hook, just after the response
    # went out: on a loaded box the client may scrape before the last one is
    # counted.  It must reach exactly 48, and stay there.
    deadline = time.monotonic() + 5
    while _requests_total(workers.endpoint, "PutObject") - before < 48 and time.monotonic() < deadline:
        time.sleep(0.05)
    for _ in range(4):  # several scrapes: any worker may answer
        assert _requests_total(workers.endpoint, "PutObject") - before == 48


def test_grpc_port_is_served_by_the_workers(workers: ServerProcess) -> None:
    """The gRPC port the supervisor reserved answers health checks (the
    workers listen on it with SO_REUSEPORT)."""
    for _ in range(4):
        with grpc.insecure_channel(workers.grpc_endpoint) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_sigterm_to_supervisor_drains_and_stops_every_worker(tmp_data: Path) -> None:
    """SIGTERM to the supervisor: new connections are refused at once, the
    uploads in flight on 4 connections (whichever workers hold them) complete
    with 200 and persist, then both workers and the supervisor exit cleanly."""
    server = ServerProcess(tmp_data, extra_args=["--workers", "2"]).start()
    socks: list[socket.socket] = []
    try:
        pids = list(server.ready_workers(2).values())
        make_client(server.endpoint).create_bucket(Bucket="drain")  # type: ignore[attr-defined]
        data = os.urandom(1024 * 1024)
        for i in range(4):
            url = f"{server.endpoint}/drain/inflight{i}"
            req = AWSRequest("PUT", url, data=data, headers={"Content-Length": str(len(data))})
            S3SigV4Auth(Credentials(ROOT_ACCESS_KEY, ROOT_SECRET_KEY), "s3", "us-east-1").add_auth(req)
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
            head = [f"PUT /drain/inflight{i} HTTP/1.1", f"Host: 127.0.0.1:{server.port}"]
            head += [f"{k}: {v}" for k, v in req.headers.items() if k.lower() != "host"]
            sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + data[: len(data) // 2])
            socks.append(sock)
        time.sleep(0.3)
        assert server.proc is not None
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
        for sock in socks:
            sock.sendall(data[len(data) // 2 :])
            reply = sock.recv(4096)
            assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
        assert server.proc.wait(30) in (0, -signal.SIGTERM)
        server.proc = None
    finally:
        for sock in socks:
            sock.close()
        server.stop()
    assert not any(_alive(pid) for pid in pids)
    assert any("All workers stopped" in line for line in server.output)
    server.extra_args = []  # read back with a single process
    server.start()
    try:
        s3 = make_client(server.endpoint)
        for i in range(4):
            assert s3.get_object(Bucket="drain", Key=f"inflight{i}")["Body"].read() == data  # type: ignore[attr-defined]
    finally:
        server.stop()


def _gauge(endpoint: str, name: str) -> float:
    with urllib.request.urlopen(f"{endpoint}/metrics", timeout=10) as r:
        text = r.read().decode()
    values = [s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name]
    assert len(values) == 1, values  # one aggregated sample, not one per worker
    return values[0]


def test_stopping_workers_record_freed_chunks_and_a_restart_deletes_them(tmp_path: Path) -> None:
    """Worker processes share the chunk directory, so a chunk one worker
    freed may still be streamed by a sibling's GET: a clean stop of a
    server with workers does not delete the freed chunks still waiting out
    their delay (which cut such GETs off mid-body).  It records them with
    their due time, and the restarted server deletes them once due, not
    after the orphan collector's 24-hour grace (they stayed that long
    before).  The objects written since read back whole."""
    server = start_workers(tmp_path, "[storage]\nfree_delay_seconds = 10\ninline_threshold_bytes = 0\n")
    chunks = tmp_path / "data" / "data" / "chunks"

    def files() -> set[str]:
        return {name for _dirs, _sub, names in os.walk(chunks) for name in names}

    try:
        s3 = make_client(server.endpoint)
        s3.create_bucket(Bucket="freed")  # type: ignore[attr-defined]
        s3.put_object(Bucket="freed", Key="k", Body=b"old" * 1000)  # type: ignore[attr-defined]
        old = files()
        new = os.urandom(3000)
        s3.put_object(Bucket="freed", Key="k", Body=new)  # type: ignore[attr-defined]
        current = files() - old
        assert current  # the old chunk waits out its delay in the worker that freed it
    finally:
        server.stop()
    assert old <= files()  # still there after the stop: its delay is not over
    assert "Recorded 1 freed chunks for deletion when their delay is over" in "".join(server.output)
    server.start()
    try:
        server.ready_workers(2)
        deadline = time.monotonic() + 60.0
        while files() & old and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not files() & old, "the recorded chunk was not deleted after the restart"
        assert current <= files()
        body = make_client(server.endpoint).get_object(Bucket="freed", Key="k")["Body"].read()  # type: ignore[attr-defined]
        assert body == new
    finally:
        server.stop()
    assert "Deleted 1 freed chunks a stopped server had recorded" in "".join(server.output)


def test_killed_primary_is_replaced_and_its_gauges_win(tmp_data: Path) -> None:
    """A worker that dies after start-up is restarted.  The primary restarted
    recounts the store, and its gauge value (3 objects) is what /metrics
    reports, whichever worker answers: the other worker's zeros and the dead
    primary's old value do not mask it."""
    server = ServerProcess(tmp_data, extra_args=["--workers", "2"]).start()
    try:
        pids = server.ready_workers(2)
        s3 = make_client(server.endpoint)
        s3.create_bucket(Bucket="gauges")  # type: ignore[attr-defined]
        for i in range(3):
            s3.put_object(Bucket="gauges", Key=f"k{i}", Body=b"x")  # type: ignore[attr-defined]
        os.kill(pids[0], signal.SIGKILL)
        deadline = time.monotonic() + 20
        while server.ready_workers(2)[0] == pids[0]:
            assert time.monotonic() < deadline, "".join(server.output[-30:])
            time.sleep(0.1)
        deadline = time.monotonic() + 10
        while _gauge(server.endpoint, "lightningstor_objects_total") != 3:
            assert time.monotonic() < deadline, "the restarted primary's count never showed"
            time.sleep(0.1)
        for _ in range(6):
            assert _gauge(server.endpoint, "lightningstor_objects_total") == 3
    finally:
        server.stop()


def test_a_replaced_worker_takes_its_share_again(tmp_data: Path) -> None:
    """Worker 1 killed (SIGKILL): while it is gone, worker 0 takes every new
    connection (the supervisor freed the dead worker's slot in the
    connection table); its replacement claims the slot and the next bursts
    are split 8/8 again between worker 0 and the new process."""
    server = ServerProcess(tmp_data, extra_args=["--workers", "2"]).start()
    try:
        pids = server.ready_workers(2)
        s3 = make_client(server.endpoint)
        s3.create_bucket(Bucket="respawn")  # type: ignore[attr-defined]
        path = _presigned_path(s3, "respawn", "k")
        os.kill(pids[1], signal.SIGKILL)
        deadline = time.monotonic() + 10
        while not any(f"(pid {pids[1]}) exited" in line for line in list(server.output)):
            assert time.monotonic() < deadline, "".join(server.output[-30:])
            time.sleep(0.02)
        (answered,) = _bursts(server.endpoint, path, 1, timeout=10)
        assert answered == {str(pids[0]): 16}
        deadline = time.monotonic() + 20
        while server.ready_workers(2)[1] == pids[1]:
            assert time.monotonic() < deadline, "".join(server.output[-30:])
            time.sleep(0.1)
        new = server.ready_workers(2)
        time.sleep(0.5)  # "ready" may precede the S3 port's adoption by a moment
        bursts = _bursts(server.endpoint, path, 3)
        assert sum(b == {str(new[0]): 8, str(new[1]): 8} for b in bursts) >= 2, (new, bursts)
    finally:
        server.stop()


def test_worker_start_failure_stops_the_server(tmp_data: Path, tmp_path: Path) -> None:
    """A worker that cannot start (its TLS certificate file holds no
    certificate: only the workers load it) makes the supervisor exit by
    itself with status 1 instead of serving nothing."""
    (tmp_path / "bad.pem").write_text("not a certificate\n")
    config = tmp_path / "bad.toml"
    config.write_text(f'[server.tls]\ncert_file = "{tmp_path}/bad.pem"\nkey_file = "{tmp_path}/bad.pem"\n')
    twistd = str(Path(sys.executable).with_name("twistd"))
    args = [twistd, "-n", "--pidfile=", "lightningstor", "--data-dir", str(tmp_data),
            "--s3-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0", "--workers", "2",
            "--config", str(config)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=30, cwd=str(tmp_path))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "during start-up" in done.stdout + done.stderr
    assert "holds no valid PEM certificate" in done.stdout + done.stderr


@pytest.mark.parametrize("daemon", [False, True])
def test_an_unknown_plugin_name_stops_start_up_with_its_message(tmp_data: Path, tmp_path: Path, daemon: bool) -> None:
    """A backend name no plugin provides is refused before any worker starts
    (and before twistd daemonizes): status 1 and the message, in one line,
    to the shell, where a daemon's workers would have died with no stderr
    and the shell been told it started."""
    config = tmp_path / "bad.toml"
    config.write_text('[storage]\nbackend = "no-such-backend"\n')
    twistd = str(Path(sys.executable).with_name("twistd"))
    mode = ["--pidfile", str(tmp_path / "p.pid"), "--logfile", str(tmp_path / "s.log")] if daemon else ["-n", "--pidfile="]
    args = [twistd, *mode, "lightningstor", "--data-dir", str(tmp_data), "--s3-addr", "127.0.0.1:0",
            "--grpc-addr", "127.0.0.1:0", "--workers", "2", "--config", str(config)]  # fmt: skip
    done = subprocess.run(args, capture_output=True, text=True, timeout=30, cwd=str(tmp_path))
    started = tmp_path / "p.pid"
    if started.exists():  # the old behaviour: a daemon that started; stop it
        os.kill(int(started.read_text()), signal.SIGKILL)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "storage.backend: no storage backend plugin named 'no-such-backend'" in done.stderr
    assert "Traceback" not in done.stderr
    assert not started.exists()


def test_tls_and_metrics_listener_are_shared_by_the_workers(tmp_path: Path) -> None:
    """With [server.tls] and server.metrics_addr, the workers adopt both
    sockets the supervisor bound: HTTPS requests are answered by both workers
    (TLS 1.3, the test CA's certificate) and the separate /metrics listener
    answers with the sum of their requests."""
    import ssl

    from tests.integration.certs import make_pki

    pki = make_pki(tmp_path / "pki")
    config = tmp_path / "tls.toml"
    config.write_text(pki.config().replace("[server.tls]", '[server]\nmetrics_addr = "127.0.0.1:0"\n\n[server.tls]', 1))
    data = tmp_path / "data"
    data.mkdir()
    server = ServerProcess(data, config=str(config), extra_args=["--workers", "2"]).start()
    try:
        pids = set(server.ready_workers(2).values())
        ctx = ssl.create_default_context(cafile=str(pki.ca_file))
        seen: set[int] = set()

        def fetch(_: int) -> int:
            with urllib.request.urlopen(f"https://127.0.0.1:{server.port}/health", context=ctx, timeout=10) as r:
                return int(r.headers[WORKER_HEADER])

        for _ in range(10):
            with ThreadPoolExecutor(8) as pool:
                seen |= set(pool.map(fetch, range(32)))
            if seen == pids:
                break
        assert seen == pids
        metrics_port = _metrics_port(server)
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as r:
            assert b"lightningstor_requests_total" in r.read()
    finally:
        server.stop()


def _metrics_port(server: ServerProcess) -> int:
    """The separate metrics listener's port, from the worker's log line."""
    import re

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for line in list(server.output):
            m = re.search(r"Metrics listening on [0-9.]+:(\d+)", line)
            if m:
                return int(m.group(1))
        time.sleep(0.05)
    raise AssertionError("no metrics listener line:\n" + "".join(server.output[-30:]))


def test_workers_and_supervisor_share_a_log_file_without_losing_a_line(tmp_data: Path, tmp_path: Path) -> None:
    """twistd --logfile with two workers: three processes write one file.
    Every line is whole JSON, each of 200 PUTs through both workers has
    exactly one access line, and the supervisor's lines are there too (the
    workers' LogFiles wrote at their own offsets, over each other's lines)."""
    log = tmp_path / "server.log"
    config = tmp_path / "json.toml"
    config.write_text('[logging]\nformat = "json"\n')
    twistd = str(Path(sys.executable).with_name("twistd"))
    args = [twistd, "-n", "--pidfile=", "--logfile", str(log), "lightningstor", "--data-dir", str(tmp_data),
            "--s3-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0", "--workers", "2", "--config", str(config)]
    env = dict(os.environ, LIGHTNINGSTOR_ROOT_ACCESS_KEY=ROOT_ACCESS_KEY, LIGHTNINGSTOR_ROOT_SECRET_KEY=ROOT_SECRET_KEY)
    proc = subprocess.Popen(args, env=env, cwd=str(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while "Worker 1 ready" not in (log.read_text() if log.exists() else ""):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text() if log.exists() else ""
            time.sleep(0.1)
        port = next(json.loads(line)["port"] for line in log.read_text().splitlines()
                    if json.loads(line)["message"].startswith("S3 API listening"))  # fmt: skip
        s3 = make_client(f"http://127.0.0.1:{port}")
        s3.create_bucket(Bucket="logged")  # type: ignore[attr-defined]
        keys = [f"k{i:03d}" for i in range(200)]
        written = _put_many(s3, "logged", keys)
        assert len({pid for _, pid in written.values()}) == 2
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    records = [json.loads(line) for line in log.read_text().splitlines()]  # a torn line fails here
    puts = [r["key"] for r in records if r["namespace"] == "lightningstor.access" and r.get("operation") == "PutObject"]
    assert sorted(puts) == keys
    supervisor = [r["message"] for r in records if r["namespace"] == "lightningstor.supervisor"]
    assert "All workers stopped" in supervisor and any(m.startswith("Worker 1 ready") for m in supervisor)


def test_a_daemonized_server_keeps_its_pid_file_through_the_supervisor(tmp_data: Path, tmp_path: Path) -> None:
    """twistd without -n: the shell gets status 0 once the server is up
    (twistd reports that before the supervisor program replaces the process,
    same pid); the pid file names the supervisor, whose children answer S3;
    SIGTERM stops everything and removes the pid file."""
    daemon = Daemon(tmp_data, tmp_path, workers=2)
    try:
        text = daemon.wait_for("Worker 1 ready")
        with open(f"/proc/{daemon.pid}/cmdline", "rb") as f:
            assert b"lightningstor.supervisor" in f.read()
        port = int(text.split("S3 API listening on 127.0.0.1:", 1)[1].split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as r:
            worker = int(r.headers[WORKER_HEADER])
        with open(f"/proc/{worker}/status") as f:
            assert f"PPid:\t{daemon.pid}\n" in f.read()
    finally:
        daemon.stop()
    assert not daemon.pidfile.exists()
    assert "All workers stopped" in daemon.text()


def test_sighups_while_the_supervisor_and_workers_start_are_not_fatal(tmp_data: Path, tmp_path: Path) -> None:
    """SIGHUP (systemctl reload) sent from the moment twistd returns, while
    its process becomes the supervisor program and while each worker starts:
    nothing dies of SIGHUP's default action (twistd's process before the
    exec, the supervisor before its handlers, a worker before its own; each
    stopped the server).  The signals wait, and the workers reload once up."""
    daemon = Daemon(tmp_data, tmp_path, workers=2)
    try:
        deadline = time.monotonic() + 30
        while daemon.text().count("ready (pid") < 2:
            os.kill(daemon.pid, signal.SIGHUP)
            assert daemon.running(), daemon.text()[-3000:]
            assert time.monotonic() < deadline, daemon.text()[-3000:]
            time.sleep(0.02)
        time.sleep(1.0)
        assert daemon.running(), daemon.text()[-3000:]
        text = daemon.text()
        assert "exited with status" not in text, text[-3000:]
        assert text.count("Received SIGHUP") >= 2  # each worker got at least the one that waited
    finally:
        daemon.stop()


def test_a_restart_that_fails_in_start_up_is_tried_again_while_the_other_serves(tmp_path: Path) -> None:
    """Worker 1 killed while its config file is broken (an edit in
    progress): its restart fails during start-up.  The server does not stop:
    worker 0 keeps answering, the restart is tried again later and later,
    and once the file is mended worker 1 comes back."""
    server = start_workers(tmp_path, "[server]\nshutdown_timeout_seconds = 5\n")
    config = Path(server.config or "")
    good = config.read_text()
    try:
        pids = server.ready_workers(2)
        config.write_text("[server\n")  # not TOML
        os.kill(pids[1], signal.SIGKILL)
        deadline = time.monotonic() + 30
        while sum("during start-up; trying again in" in line for line in list(server.output)) < 2:
            assert time.monotonic() < deadline, "".join(server.output[-30:])
            assert server.proc is not None and server.proc.poll() is None, "".join(server.output[-30:])
            time.sleep(0.1)
        text = "".join(server.output)
        assert "trying again in 2 s" in text and "trying again in 4 s" in text
        with urllib.request.urlopen(f"{server.endpoint}/health", timeout=10) as r:
            assert int(r.headers["x-lightningstor-worker"]) == pids[0]
        config.write_text(good)
        deadline = time.monotonic() + 30
        while server.ready_workers(2)[1] == pids[1]:
            assert time.monotonic() < deadline, "".join(server.output[-30:])
            time.sleep(0.1)
        assert server.proc is not None and server.proc.poll() is None
    finally:
        # Ended by the signal, as twistd ends (a failed worker: status 1).
        assert server.stop() == -signal.SIGTERM


def test_a_worker_signalled_twice_stops_once_without_a_traceback(tmp_path: Path) -> None:
    """SIGTERM from the supervisor and SIGINT or SIGTERM sent to the whole
    process group (Ctrl-C, a kill of the group) reach a worker together:
    the second one is ignored, where Twisted logged a ReactorNotRunning
    traceback at critical level.  The worker stops once and is replaced."""
    server = start_workers(tmp_path, "[server]\nshutdown_timeout_seconds = 5\n")
    try:
        pids = server.ready_workers(2)
        try:
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGTERM):
                os.kill(pids[1], signum)
        except ProcessLookupError:
            pass  # already gone
        deadline = time.monotonic() + 30
        while server.ready_workers(2)[1] == pids[1]:
            assert time.monotonic() < deadline, "".join(server.output[-30:])
            time.sleep(0.1)
        text = "".join(server.output)
        assert "ReactorNotRunning" not in text and "Traceback" not in text, text[-3000:]
        assert text.count(f"(pid {pids[1]}) exited") == 1
    finally:
        server.stop()
