"""The bounded soak (bench/soak.py) in its short mode: 16 clients for about
15 s against the real server with the full mixed workload (small and
multi-chunk PUTs, overwrites, GET, HEAD, list, delete, multipart, copy), then
every key read back against the clients' models.

Pins the soak's promises at CI scale: no 5xx (503 SlowDown would be reported
apart, and is allowed), no unexpected error answers, no read that disagreed
with what was acknowledged, and no acknowledged object lost.  The 5-minute,
64-client run and its figures are in docs/reliability.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.soak import MIX, render, run_soak


@pytest.mark.parametrize("workers", [1, 2])
def test_short_soak_loses_nothing_and_answers_no_5xx(tmp_path: Path, workers: int) -> None:
    """Zero 5xx, zero lost objects, every kind of operation exercised.  With
    two worker processes a client's connections land on both, so reads
    often follow writes another worker made: each worker's read cache must
    answer them exactly (lightningstor/metadata/readcache.py, published.py)."""
    report = run_soak(15, 16, seed=20261126, rss_interval=1.0, scratch=tmp_path, workers=workers)
    print("\n" + render(report))
    assert report.server_errors == 0, report.unexpected
    assert report.unexpected == []
    assert report.mismatches == []
    assert report.lost == []
    assert report.objects_verified == 16 * 12
    assert report.live_objects > 0
    assert {op for op, _ in MIX} <= {op for op, n in report.ops.items() if n > 0}
    # Every answer was a success, or deliberate load shedding (503 SlowDown).
    refused = sum(n for status, n in report.statuses.items() if not 200 <= status < 300)
    assert refused == report.slowdown
    assert report.requests > 200
    assert len(report.rss_samples) >= 10
