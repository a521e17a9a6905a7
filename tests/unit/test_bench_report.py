"""bench/report.py and bench/limits.py: the limits table and what the
durable-commit limit says about PUT at concurrency 1."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench import limits
from bench.phases import Figure
from bench.report import Results, table, targets


def test_durable_commit_is_measured_and_cleaned_up(tmp_path: Path) -> None:
    ms = limits.durable_commit_ms(str(tmp_path), count=20)
    assert 0 < ms < 10_000
    assert list(tmp_path.iterdir()) == []


def test_limits_table_shows_each_unit() -> None:
    results = Results(limits={"md5": 650.4, "durable_commit": 0.4242})
    results.servers["LightningStor"] = {"4 KiB PUT c=1": Figure("4 KiB PUT c=1", 404, "req/s")}
    text = table(results)
    assert "| MD5, one core | 650 MB/s |" in text
    assert "| one durable SQLite commit of a 4 KiB row (median) | 0.42 ms |" in text


def test_put_at_concurrency_one_is_set_against_the_commit_bound() -> None:
    results = Results(limits={"durable_commit": 2.5})
    results.servers["LightningStor"] = {"4 KiB PUT c=1": Figure("4 KiB PUT c=1", 350, "req/s")}
    assert "4 KiB PUT c=1: 350 req/s; one durable commit takes 2.50 ms here, so no durable server exceeds 400 PUT/s" in (
        targets(results)
    )
    assert "durable commit" not in targets(Results(limits={"durable_commit": 2.5}))


def test_cpu_per_request_ratio_reads_as_the_others() -> None:
    """Less CPU per request is better: the ratio column puts moto's over ours,
    so 3.0x means a third of moto's CPU, as 3.0x means three times its rate."""
    name = "server CPU per 4 KiB GET c=16"
    results = Results()
    results.servers["LightningStor"] = {name: Figure(name, 800, "us/req")}
    results.servers["moto"] = {name: Figure(name, 2400, "us/req")}
    assert f"| {name} | 800 µs/req | 2,400 µs/req | 3.0x |" in table(results)


def test_every_ratio_target_of_the_issue_that_a_run_measures_is_checked() -> None:
    """The four parallel streams against two cores' MD5, and moto: 5x on
    small-object figures, ahead on large ones."""
    results = Results(limits={"md5": 800.0})
    mp = "1024 MiB multipart (16 MiB parts x4)"
    results.servers["LightningStor"] = {
        mp: Figure(mp, 600, "MB/s"),
        "4 KiB GET c=1": Figure("4 KiB GET c=1", 2400, "req/s"),
        "256 MiB PUT": Figure("256 MiB PUT", 300, "MB/s"),
    }
    results.servers["moto"] = {
        mp: Figure(mp, 60, "MB/s"),
        "4 KiB GET c=1": Figure("4 KiB GET c=1", 550, "req/s"),
        "256 MiB PUT": Figure("256 MiB PUT", 100, "MB/s"),
    }
    text = targets(results)
    assert "4 parallel streams (multipart, 4 parts in flight) / two cores' MD5: 0.38 (target >= 0.7) NOT met" in text
    assert "4 KiB GET c=1 / moto: 4.36 (target >= 5.0) NOT met" in text
    assert "256 MiB PUT / moto: 3.00 (target >= 1.0) met" in text
    assert f"{mp} / moto: 10.00 (target >= 1.0) met" in text


def test_figures_with_failed_requests_void_their_checks_and_ratios() -> None:
    """A refused request is quick, so a rate counting refusals can pass any
    target: a check or ratio made from such a figure says it is invalid,
    and the run counts as failed."""
    get = "4 KiB GET c=16"
    results = Results(limits={"durable_commit": 2.5})
    results.servers["LightningStor"] = {get: Figure(get, 8000, "req/s", errors=64)}
    results.servers["moto"] = {get: Figure(get, 320, "req/s")}
    results.ceiling = {get: Figure(get, 10_000, "req/s")}
    text = targets(results)
    assert f"- {get} / trivial twisted.web: INVALID (64 failed requests)" in text
    assert f"- {get} / moto: INVALID (64 failed requests)" in text
    assert "met" not in text
    assert f"| {get} | 8,000 req/s (64 errors) | 320 req/s | invalid (errors) |" in table(results)
    assert results.failed() == 64
    results.servers["LightningStor"][get] = Figure(get, 8000, "req/s")
    results.ceiling = {get: Figure(get, 10_000, "req/s", errors=3)}
    assert results.failed() == 3
    assert "10,000 req/s (3 errors)" in table(results)
    assert f"- {get} / trivial twisted.web: INVALID (3 failed requests)" in targets(results)


def test_a_reduced_run_says_so_above_its_checks() -> None:
    results = Results(reduced="listing keys 300 (targets: 100,000)")
    walk = "ListObjectsV2 full walk (300 keys)"
    results.servers["LightningStor"] = {walk: Figure(walk, 61_518, "keys/s")}
    text = targets(results)
    assert text.splitlines()[0] == (
        "- (reduced run: listing keys 300 (targets: 100,000); the checks below are indicative only)"
    )
    assert "ListObjectsV2 walk keys/s: 61518.00 (target >= 50000) met" in text


def test_the_server_counted_once_sums_each_process_private_file_pages(tmp_path: Path, monkeypatch: Any) -> None:
    """Copy-on-write pages of a library's data are one process's own: two
    workers with 4 KiB each hold 8 KiB, where the pages they share count
    once (the larger count)."""
    from bench import servers

    def smaps(private_file: int, shared: int, anon: int) -> str:
        return (
            "7f0000000000-7f0000010000 rw-p 00001000 fd:01 4242 /usr/lib/libpython3.11.so\n"
            f"Rss: {private_file + shared} kB\nShared_Clean: {shared} kB\nShared_Dirty: 0 kB\n"
            f"Private_Clean: 0 kB\nPrivate_Dirty: {private_file} kB\n"
            "55d000000000-55d000100000 rw-p 00000000 00:00 0 [heap]\n"
            f"Rss: {anon} kB\nShared_Clean: 0 kB\nShared_Dirty: 0 kB\nPrivate_Clean: 0 kB\nPrivate_Dirty: {anon} kB\n"
        )

    files = {1: smaps(4, 40, 100), 2: smaps(4, 36, 200)}
    real_open = open

    def fake_open(path: str, *args: Any, **kwargs: Any) -> Any:
        for pid, text in files.items():
            if path == f"/proc/{pid}/smaps":
                target = tmp_path / f"smaps-{pid}"
                target.write_text(text)
                return real_open(target, *args, **kwargs)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", fake_open)
    assert servers.server_set_bytes([1, 2]) == (100 + 200 + 4 + 4 + 40) * 1024


def test_the_generator_reports_a_chunked_body_cut_short() -> None:
    """A connection closed inside a chunk is an error, not a loop waiting
    for bytes that never come (it spun without yielding, so the test runs
    it in a thread it can give up on)."""
    import asyncio
    import threading

    from bench.loadgen import _read_response

    async def read() -> Any:
        reader = asyncio.StreamReader()
        reader.feed_data(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1000\r\n" + b"x" * 100)
        reader.feed_eof()
        return await _read_response(reader, "GET")

    outcome: list[BaseException | Any] = []

    def run() -> None:
        try:
            outcome.append(asyncio.run(read()))
        except BaseException as e:  # noqa: BLE001 - inspected below
            outcome.append(e)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(5.0)
    assert outcome, "still reading a body that has ended"
    assert isinstance(outcome[0], ConnectionError), outcome[0]
