"""Prometheus metrics of a real server: names, types, exact counts after scripted S3 calls."""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import make_client
from tests.integration.server import ServerProcess
from tests.integration.test_workers import _put_many

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

SPEC_METRICS = {  # SPEC §10.2: family name -> (type, label names)
    "lightningstor_requests": ("counter", {"operation", "status"}),
    "lightningstor_request_duration_seconds": ("histogram", {"operation"}),
    "lightningstor_object_size_bytes": ("histogram", {"operation"}),
    "lightningstor_objects_total": ("gauge", set()),
    "lightningstor_storage_bytes": ("gauge", set()),
    "lightningstor_multipart_uploads_active": ("gauge", set()),
    "lightningstor_s3_errors": ("counter", {"code", "status"}),
}


# Families registered only once there is something to count (metrics.py).
LAZY_METRICS = {
    "lightningstor_storage_read_repairs": ("counter", {"node"}),  # distributed backend only
    "lightningstor_storage_node_suspect": ("gauge", {"node"}),
    "lightningstor_scrub_errors": ("counter", {"kind"}),
    "lightningstor_grpc_requests": ("counter", {"method", "code"}),
    "lightningstor_grpc_request_duration_seconds": ("histogram", {"method"}),
    "lightningstor_metadata_cache_reads": ("counter", {"result"}),  # SQLite, after a first hit
    "lightningstor_metadata_cache_bytes": ("gauge", set()),
    "lightningstor_storage_freed_chunks_waiting": ("gauge", set()),  # once a chunk waits to be freed
    "lightningstor_storage_freed_chunks_deleted_early": ("counter", set()),
    "lightningstor_thread_pool_busy_threads": ("gauge", {"pool"}),  # sampled every 5 s
    "lightningstor_thread_pool_queued_jobs": ("gauge", {"pool"}),
    "lightningstor_thread_pool_size": ("gauge", {"pool"}),
    "lightningstor_thread_pool_jobs": ("counter", {"pool"}),
    "lightningstor_metadata_queued_transactions": ("gauge", set()),  # SQLite, once it committed
    "lightningstor_metadata_queued_read_batches": ("gauge", set()),
}


def _scrape_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as reply:
        assert reply.status == 200
        assert reply.headers["Content-Type"].startswith("text/plain")
        return reply.read().decode()


def _samples(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_metric_names_and_types_are_the_specs(server: ServerProcess) -> None:
    """/metrics on the S3 port (no credentials) exposes exactly SPEC §10.2's families with
    their types and label names, once each has been touched."""
    s3 = make_client(server.endpoint)
    bucket = f"m-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    with pytest.raises(ClientError):
        s3.get_object(Bucket=bucket, Key="missing")
    families = {f.name: f for f in text_string_to_metric_families(_scrape_text(f"{server.endpoint}/metrics"))}
    for name, (kind, labels) in SPEC_METRICS.items():
        assert name in families, name
        assert families[name].type == kind, name
        seen = {k for s in families[name].samples for k in s.labels if k != "le"}
        assert seen == labels, name
    # Anything else is one of the documented families registered on first use
    # (this session-wide server may have served gRPC calls already).
    assert set(families) - set(SPEC_METRICS) <= set(LAZY_METRICS)


def test_scripted_calls_give_exact_counter_deltas(server: ServerProcess) -> None:
    """Three PutObject, one CreateBucket, one GetObject of a missing key and one HEAD of
    one add exactly those counts by operation and status, the NoSuchKey errors by code,
    three duration observations and the three object sizes."""
    url = f"{server.endpoint}/metrics"
    s3 = make_client(server.endpoint, request_checksum_calculation="when_required")
    before = _samples(_scrape_text(url))
    bucket = f"m-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    sizes = [10, 1000, 200_000]
    for n, size in enumerate(sizes):
        s3.put_object(Bucket=bucket, Key=f"k{n}", Body=b"a" * size)
    with pytest.raises(ClientError) as missing:
        s3.get_object(Bucket=bucket, Key="nope")
    assert missing.value.response["Error"]["Code"] == "NoSuchKey"
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="nope")
    after = _samples(_scrape_text(url))

    def delta(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    total = "lightningstor_requests_total"
    assert delta(total, operation="CreateBucket", status="200") == 1
    assert delta(total, operation="PutObject", status="200") == 3
    assert delta(total, operation="GetObject", status="404") == 1
    assert delta(total, operation="HeadObject", status="404") == 1
    assert delta(total, operation="GetObject", status="200") == 0
    assert delta("lightningstor_s3_errors_total", code="NoSuchKey", status="404") == 2
    assert delta("lightningstor_request_duration_seconds_count", operation="PutObject") == 3
    assert delta("lightningstor_object_size_bytes_count", operation="PutObject") == 3
    assert delta("lightningstor_object_size_bytes_sum", operation="PutObject") == sum(sizes)
    # The scrape before this one is counted too, under its own name.
    assert delta(total, operation="Metrics", status="200") == 1


def test_copies_and_completed_uploads_observe_the_size_they_wrote(server: ServerProcess) -> None:
    """CopyObject, UploadPartCopy and CompleteMultipartUpload state no size
    in their requests: the object size histogram observes what they wrote
    (the copy, the copied range, the assembled object), and nothing for a
    refused one."""
    url = f"{server.endpoint}/metrics"
    s3 = make_client(server.endpoint, request_checksum_calculation="when_required")
    bucket = f"m-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="src", Body=b"s" * 300_000)
    before = _samples(_scrape_text(url))
    s3.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "src"})
    with pytest.raises(ClientError):
        s3.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "src"}, CopySourceIfMatch='"0"')
    upload = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    first = s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload, PartNumber=1, Body=b"p" * (5 << 20))
    second = s3.upload_part_copy(Bucket=bucket, Key="mp", UploadId=upload, PartNumber=2,
                                 CopySource={"Bucket": bucket, "Key": "src"}, CopySourceRange="bytes=0-999")  # fmt: skip
    parts = [{"PartNumber": 1, "ETag": first["ETag"]}, {"PartNumber": 2, "ETag": second["CopyPartResult"]["ETag"]}]
    s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload, MultipartUpload={"Parts": parts})
    after = _samples(_scrape_text(url))

    def delta(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    observed = {
        op: (delta("lightningstor_object_size_bytes_count", operation=op),
             delta("lightningstor_object_size_bytes_sum", operation=op))
        for op in ("CopyObject", "UploadPart", "UploadPartCopy", "CompleteMultipartUpload")
    }  # fmt: skip
    assert observed == {
        "CopyObject": (1, 300_000),
        "UploadPart": (1, 5 << 20),
        "UploadPartCopy": (1, 1000),
        "CompleteMultipartUpload": (1, (5 << 20) + 1000),
    }


def test_chunked_bodies_observe_the_size_they_stored(server: ServerProcess) -> None:
    """A PutObject and an UploadPart with a plain ``Transfer-Encoding:
    chunked`` body state no size in their headers: the histogram observes
    what was stored (neither was observed before)."""
    import http.client

    from tests.integration.test_streaming_uploads import _signed_headers

    url = f"{server.endpoint}/metrics"
    s3 = make_client(server.endpoint)
    bucket = f"m-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    upload = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    before = _samples(_scrape_text(url))
    for path, size in ((f"/{bucket}/te", 150_000), (f"/{bucket}/mp?partNumber=1&uploadId={upload}", 4_000)):
        headers = _signed_headers("PUT", f"{server.endpoint}{path}",
                                  {"x-amz-content-sha256": "UNSIGNED-PAYLOAD", "Transfer-Encoding": "chunked"})  # fmt: skip
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        try:
            body = b"c" * size
            conn.request("PUT", path, body=iter([body[: size // 2], body[size // 2 :]]), headers=headers, encode_chunked=True)
            response = conn.getresponse()
            assert response.status == 200, response.read()
        finally:
            conn.close()
    after = _samples(_scrape_text(url))

    def delta(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert [(delta("lightningstor_object_size_bytes_count", operation=op),
             delta("lightningstor_object_size_bytes_sum", operation=op)) for op in ("PutObject", "UploadPart")] == [
        (1, 150_000), (1, 4_000)]  # fmt: skip
    s3.abort_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload)


def test_signed_get_of_metrics_path_is_s3_not_the_scrape(server: ServerProcess) -> None:
    """A signed GET /metrics is ListObjects on a bucket named "metrics", not the scrape."""
    s3 = make_client(server.endpoint)
    with pytest.raises(ClientError) as info:
        s3.list_objects_v2(Bucket="metrics")
    assert info.value.response["Error"]["Code"] == "NoSuchBucket"


def _metrics_port(server: ServerProcess, since: int = 0, timeout: float = 10.0) -> int:
    """The metrics port from the first "Metrics listening" line after ``server.output[since]``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in server.output[since:]:
            m = re.search(r"Metrics listening on [0-9.]+:(\d+)", line)
            if m:
                return int(m.group(1))
        time.sleep(0.02)
    raise AssertionError("no metrics listener:\n" + "".join(server.output[-30:]))


def test_metrics_addr_listener_and_store_gauges(tmp_data: Path) -> None:
    """With server.metrics_addr, /metrics is served there and not on the S3 port; after a
    restart the gauges count the stored object versions (a versioned overwrite is two,
    delete markers and deleted objects none), their bytes (not those of parts of open
    uploads) and the open multipart uploads."""
    config = tmp_data.parent / "metrics.toml"
    config.write_text('[server]\nmetrics_addr = "127.0.0.1:0"\n')
    server = ServerProcess(tmp_data, config=str(config)).start()
    try:
        s3 = make_client(server.endpoint)
        s3.create_bucket(Bucket="gauges")
        s3.put_object(Bucket="gauges", Key="a", Body=b"x" * 1000)
        s3.put_object(Bucket="gauges", Key="b", Body=b"y" * 234)
        s3.put_object(Bucket="gauges", Key="gone", Body=b"z" * 99)
        s3.delete_object(Bucket="gauges", Key="gone")
        pending = s3.create_multipart_upload(Bucket="gauges", Key="pending")
        s3.upload_part(Bucket="gauges", Key="pending", UploadId=pending["UploadId"], PartNumber=1,
                       Body=b"p" * 77)  # fmt: skip
        s3.create_bucket(Bucket="gauges-versioned")
        s3.put_bucket_versioning(Bucket="gauges-versioned", VersioningConfiguration={"Status": "Enabled"})
        s3.put_object(Bucket="gauges-versioned", Key="v", Body=b"1" * 100)
        s3.put_object(Bucket="gauges-versioned", Key="v", Body=b"2" * 50)  # both versions stay
        s3.delete_object(Bucket="gauges-versioned", Key="v")  # a delete marker: counts nothing
        with pytest.raises(urllib.error.HTTPError) as denied:
            urllib.request.urlopen(f"{server.endpoint}/metrics", timeout=5)
        assert denied.value.code == 404  # S3 (an unsigned ListObjects of no bucket), not the scrape
        since = len(server.output)
        server.restart()
        port = _metrics_port(server, since)
        # The first count runs in the background right after start-up.
        deadline = time.monotonic() + 10
        samples = _samples(_scrape_text(f"http://127.0.0.1:{port}/metrics"))
        while _value(samples, "lightningstor_objects_total") == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
            samples = _samples(_scrape_text(f"http://127.0.0.1:{port}/metrics"))
        assert _value(samples, "lightningstor_objects_total") == 2 + 2
        assert _value(samples, "lightningstor_storage_bytes") == 1234 + 150
        assert _value(samples, "lightningstor_multipart_uploads_active") == 1
    finally:
        server.stop()


def test_grpc_calls_are_counted_by_method_and_code(tmp_data: Path) -> None:
    """A fresh server exposes exactly the spec's families; after scripted gRPC
    calls, lightningstor_grpc_requests_total counts each by method and status
    code (OK, NOT_FOUND) and the duration histogram has one observation each."""
    from lightningstor.client import LightningStorClient
    from lightningstor.client import errors as cerrors
    from tests.integration.server import ROOT_ACCESS_KEY, ROOT_SECRET_KEY

    server = ServerProcess(tmp_data).start()
    try:
        url = f"{server.endpoint}/metrics"
        families = {f.name for f in text_string_to_metric_families(_scrape_text(url))}
        assert not families & set(LAZY_METRICS)
        client = LightningStorClient.connect(
            f"grpc://{server.grpc_endpoint}", access_key=ROOT_ACCESS_KEY, secret_key=ROOT_SECRET_KEY, timeout=30
        )
        try:
            client.create_bucket("grpc-metrics")
            client.put_object("grpc-metrics", "a", b"1")
            client.put_object("grpc-metrics", "b", b"2" * 3000)
            client.copy_object("grpc-metrics", "b", "grpc-metrics", "c")
            with pytest.raises(cerrors.NoSuchKey):
                client.head_object("grpc-metrics", "missing")
        finally:
            client.close()
        after = _samples(_scrape_text(url))
        families = {f.name: f for f in text_string_to_metric_families(_scrape_text(url))}
        for name in ("lightningstor_grpc_requests", "lightningstor_grpc_request_duration_seconds"):
            kind, labels = LAZY_METRICS[name]
            assert families[name].type == kind
            assert {k for s in families[name].samples for k in s.labels if k != "le"} == labels
        total = "lightningstor_grpc_requests_total"
        assert _value(after, total, method="CreateBucket", code="OK") == 1
        assert _value(after, total, method="PutObject", code="OK") == 2
        assert _value(after, total, method="HeadObject", code="NOT_FOUND") == 1
        assert _value(after, "lightningstor_grpc_request_duration_seconds_count", method="PutObject") == 2
        # S3 request counters are not touched by gRPC calls; the sizes written
        # are observed as S3's are (gRPC writes were left out).
        assert _value(after, "lightningstor_requests_total", operation="PutObject", status="200") == 0
        assert _value(after, "lightningstor_object_size_bytes_count", operation="PutObject") == 2
        assert _value(after, "lightningstor_object_size_bytes_sum", operation="PutObject") == 3001
        assert _value(after, "lightningstor_object_size_bytes_sum", operation="CopyObject") == 3000
    finally:
        server.stop()


def test_read_cache_hits_are_counted(tmp_data: Path) -> None:
    """After a fresh server answered GETs of one object, /metrics shows the
    SQLite read cache's hits (copied from the worker every 5 s) and a
    non-zero size; a new key's first read is a miss."""
    server = ServerProcess(tmp_data).start()
    try:
        s3 = make_client(server.endpoint)
        s3.create_bucket(Bucket="cached")
        s3.put_object(Bucket="cached", Key="k", Body=b"x" * 100)
        for _ in range(5):
            assert s3.get_object(Bucket="cached", Key="k")["Body"].read() == b"x" * 100
        url = f"{server.endpoint}/metrics"
        deadline = time.monotonic() + 15
        samples = _samples(_scrape_text(url))
        while _value(samples, "lightningstor_metadata_cache_reads_total", result="hit") < 5:
            assert time.monotonic() < deadline, "no cache hits counted"
            time.sleep(0.2)
            samples = _samples(_scrape_text(url))
        assert _value(samples, "lightningstor_metadata_cache_reads_total", result="miss") >= 1
        assert _value(samples, "lightningstor_metadata_cache_bytes") > 100
    finally:
        server.stop()


@pytest.mark.parametrize("workers", [1, 2])
def test_freed_chunks_waiting_rise_then_fall(tmp_data: Path, workers: int) -> None:
    """Overwrites and a delete queue the old versions' chunks for
    storage.free_delay_seconds: lightningstor_storage_freed_chunks_waiting
    (copied every 5 s, summed over the worker processes, each with its own
    queue) rises to exactly their number, then falls to 0 once the delay has
    passed; none was deleted early.  A fresh server exposes neither family."""
    config = tmp_data.parent / "freed.toml"
    # Every body is stored as one chunk (none inline): one freed chunk per overwrite.
    config.write_text("[storage]\nfree_delay_seconds = 10\ninline_threshold_bytes = 0\n")
    server = ServerProcess(tmp_data, config=str(config), extra_args=["--workers", str(workers)]).start()
    try:
        pids = set(server.ready_workers(workers).values()) if workers > 1 else set()
        url = f"{server.endpoint}/metrics"
        waiting = "lightningstor_storage_freed_chunks_waiting"
        families = {f.name: f for f in text_string_to_metric_families(_scrape_text(url))}
        assert waiting not in families and "lightningstor_storage_freed_chunks_deleted_early" not in families
        s3 = make_client(server.endpoint, max_pool_connections=16)
        s3.create_bucket(Bucket="freed")
        keys = [f"k{n}" for n in range(32)]

        def put_all() -> set[int]:
            """PUT every key; the pids of the workers that answered (none with one process)."""
            if workers == 1:
                for key in keys:
                    s3.put_object(Bucket="freed", Key=key, Body=key.encode())
                return set()
            return {pid for _, pid in _put_many(s3, "freed", keys).values()}

        put_all()
        freed, seen = 0, set()
        for _ in range(5):  # until both workers freed some (connections spread over them)
            seen |= put_all()
            freed += len(keys)
            if seen >= pids:
                break
        assert seen >= pids
        s3.delete_object(Bucket="freed", Key="k0")
        freed += 1

        def value() -> float:
            return _value(_samples(_scrape_text(url)), waiting)

        deadline = time.monotonic() + 10
        while value() != freed:
            assert time.monotonic() < deadline, f"{value()} freed chunks shown waiting, not {freed}"
            time.sleep(0.2)
        families = {f.name: f for f in text_string_to_metric_families(_scrape_text(url))}
        for name in (waiting, "lightningstor_storage_freed_chunks_deleted_early"):
            assert families[name].type == LAZY_METRICS[name][0]
        deadline = time.monotonic() + 30  # the delay, its one-second batch, a copy
        while value() != 0:
            assert time.monotonic() < deadline, f"{value()} freed chunks still shown waiting"
            time.sleep(0.2)
        assert _value(_samples(_scrape_text(url)), "lightningstor_storage_freed_chunks_deleted_early_total") == 0
    finally:
        server.stop()


@pytest.mark.parametrize("workers", [1, 2])
def test_thread_pools_are_shown_summed_over_workers(tmp_data: Path, workers: int) -> None:
    """The io and cpu pools' gauges appear within a sample period of their
    first job, summed over the worker processes: 8 io and 2 cpu threads
    each; nothing is left busy or queued once the writes are done, and the
    io pool counts jobs.  The metadata store's queue gauges are there too."""
    config = tmp_data.parent / "pools.toml"
    config.write_text("[storage]\ninline_threshold_bytes = 0\n")  # every body in a chunk file: io jobs
    server = ServerProcess(tmp_data, config=str(config), extra_args=["--workers", str(workers)]).start()
    try:
        pids = set(server.ready_workers(workers).values()) if workers > 1 else set()
        s3 = make_client(server.endpoint, max_pool_connections=16)
        s3.create_bucket(Bucket="pools")
        keys = [f"k{n}" for n in range(32)]
        if workers == 1:
            for key in keys:
                s3.put_object(Bucket="pools", Key=key, Body=key.encode())
        seen: set[int] = set()
        for _ in range(5 if workers > 1 else 0):
            # Until every worker wrote some (connections spread over them).
            seen |= {pid for _, pid in _put_many(s3, "pools", keys).values()}
            if seen >= pids:
                break
        assert seen >= pids
        url = f"{server.endpoint}/metrics"
        expected = {
            ("lightningstor_thread_pool_size", "io"): 8.0 * workers,
            ("lightningstor_thread_pool_size", "cpu"): 2.0 * workers,
            ("lightningstor_thread_pool_busy_threads", "io"): 0.0,
            ("lightningstor_thread_pool_queued_jobs", "io"): 0.0,
            ("lightningstor_thread_pool_busy_threads", "cpu"): 0.0,
            ("lightningstor_thread_pool_queued_jobs", "cpu"): 0.0,
        }

        def shown() -> dict[tuple[str, str], float | None]:
            samples = _samples(_scrape_text(url))
            return {(name, pool): samples.get((name, frozenset({("pool", pool)}))) for name, pool in expected}

        deadline = time.monotonic() + 15  # a sample period in every worker, on a loaded box
        while shown() != expected:
            assert time.monotonic() < deadline, shown()
            time.sleep(0.2)
        assert _value(_samples(_scrape_text(url)), "lightningstor_thread_pool_jobs_total", pool="io") >= 32
        # The SQLite store's queues, idle again (every worker committed), from their own samples.
        queues = [(name, frozenset()) for name in (
            "lightningstor_metadata_queued_transactions", "lightningstor_metadata_queued_read_batches")]
        while [_samples(_scrape_text(url)).get(q) for q in queues] != [0.0, 0.0]:
            assert time.monotonic() < deadline, [_samples(_scrape_text(url)).get(q) for q in queues]
            time.sleep(0.2)
    finally:
        server.stop()


def test_made_up_methods_add_no_series(server: ServerProcess) -> None:
    """Unsigned requests with invented methods on a sub-resource are counted
    as MethodNotAllowed: the method is no label.  Each used to add a
    ``Unsupported:<method>:acl`` series (and 17 histogram buckets) for
    good, as many as a client cared to invent, without credentials."""
    import socket

    def made_up(n: int) -> None:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(f"MADEUP{n}X /anybucket?acl HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            assert sock.recv(4096).startswith(b"HTTP/1.1 ")

    made_up(0)  # the first one may add the MethodNotAllowed series,
    _scrape_text(f"{server.endpoint}/metrics")  # and the first scrape its own
    before = _scrape_text(f"{server.endpoint}/metrics")
    for n in range(1, 6):
        made_up(n)
    after = _scrape_text(f"{server.endpoint}/metrics")
    assert "MADEUP" not in after
    assert len(after.splitlines()) == len(before.splitlines())
    assert _value(_samples(after), "lightningstor_requests_total", operation="MethodNotAllowed", status="405") >= 6
