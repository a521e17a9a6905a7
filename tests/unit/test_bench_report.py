"""bench/report.py and bench/limits.py: the limits table and what the
durable-commit limit says about PUT at concurrency 1."""

from __future__ import annotations

from pathlib import Path

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
